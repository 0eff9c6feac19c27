"""Our own shards of a translate output folder: what makes a distributed job resumable (no Ray here).

Ray's blocks are not stable across runs, so a job is cut into shards of its own: a row goes to shard
``int(key[:16], 16) % shards`` where ``key`` is its resume key (`resume.resume_key`: id + content + settings).
The shard count is chosen on the first run and kept in the folder's job state (`STATE_NAME`), so a rerun puts
every unchanged row in the same shard.

A run first **plans** (`plan_translate`, in the driver, one streaming pass): it writes each shard's input rows
to a staging file (``.staging/shard-00017.jsonl``) and records the count and an order-free digest (the sum of
the keys) of each shard. A shard is **committed** once ``part-00017.parquet`` is in place: an actor writes it
to a hidden temporary file and renames it (`write_shard`). A shard is **done** when its committed file holds
exactly the planned keys and no failed row with attempts left (`shard_done`); a rerun does only the shards
that are not. A rerun of a shard keeps the rows of its committed file whose key is unchanged (ok rows, and
rows failed for good) and translates the rest, so a row whose text changed moved to another shard and is left
out of its old one: no row is ever written twice. When the job ends the driver records every shard in the
folder's manifest (`write_manifest`, the layout of ``redtrans translate -o DIR/``) and removes the staging.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from redtrans.datafiles import (
    MANIFEST_NAME,
    RowSchema,
    Shard,
    cells,
    open_rows,
    output_format,
    read_manifest,
    shard_name,
    write_manifest,
)
from redtrans.errors import ConfigError, InputError
from redtrans.jsonl import attempts_of, counts_against_cap, lock_exclusive, read_jsonl, retry_pending
from redtrans.limits import check_text
from redtrans.resume import resume_key
from redtrans.translate_file import OUTPUT_COLUMNS, ColumnPlan, FileFields, _bad_row, _row_id
from redtrans.translator import Item, Translator

STATE_NAME = ".ray-job.json"
LOCK_NAME = ".lock"
STAGING_DIR = ".staging"
SHARD_ROWS = 1000
"""Rows per shard by default: the work a killed actor loses, and the grain of the progress bar."""
_DIGEST_MOD = 1 << 128
_STAGING_BUFFER = 8 << 20  # bytes of staged rows held before they are appended to their files

OUTPUT_TYPES: dict[str, str] = {**OUTPUT_COLUMNS, "key": "string", "settings": "string"}
"""Our columns of every shard, in order, with their Parquet types; the input columns a job keeps follow
(`Layout`). Every shard of a job has one schema."""


def shard_of(key: str, shards: int) -> int:
    """The shard a row with resume key `key` (hex) belongs to."""
    return int(key[:16], 16) % shards


@dataclass
class ShardCount:
    """How many rows a shard holds and the sum of their keys (mod 2**128): equal sets of keys, equal counts."""

    rows: int = 0
    digest: int = 0

    def add(self, key: str) -> None:
        self.rows += 1
        self.digest = (self.digest + int(key, 16)) % _DIGEST_MOD


@dataclass
class JobState:
    """What a folder's first run chose, kept for every rerun (`STATE_NAME`)."""

    shards: int
    settings: str
    format: str = "redtrans-ray-job/1"


@dataclass(frozen=True)
class Layout:
    """The columns of a job's shards: ours (`OUTPUT_TYPES`), then the input columns kept (`ColumnPlan`, as a
    single-process run keeps them), of the types seen over the whole input (`datafiles.RowSchema`)."""

    columns: ColumnPlan = field(default_factory=ColumnPlan)
    schema: Any = None
    """The shards' `pyarrow.Schema`; None: ours only (`_arrow_schema`)."""
    as_text: frozenset[str] = frozenset()
    """Kept columns of mixed types, written as JSON text."""

    def arrow(self) -> Any:
        return self.schema if self.schema is not None else _arrow_schema()

    def row(self, ours: Mapping[str, Any], staged: Mapping[str, Any]) -> dict[str, Any]:
        """An output row: our columns of `ours` (a result, or a committed row), then the staged row's kept input."""
        out = self.columns.compose({name: ours.get(name) for name in OUTPUT_TYPES}, staged.get("input") or {})
        return cells(out, self.as_text)


@dataclass
class Plan:
    """The shards of a run: where they are staged and what each must hold."""

    folder: Path
    shards: int
    settings: str
    expected: list[ShardCount]
    total: int
    layout: Layout = field(default_factory=Layout)

    def staging(self, shard: int) -> Path:
        return staging_file(self.folder, shard)


@dataclass
class ShardSummary:
    """What one shard's run did (an actor returns it to the driver)."""

    shard: int
    rows: int = 0
    written: int = 0  # translated by this run, ok or failed
    reused: int = 0  # kept from the shard's committed file
    flagged: int = 0  # ok rows with flags
    failed: int = 0  # rows of the shard without a usable translation
    failed_ids: list[str] = field(default_factory=list)


def staging_file(folder: Path, shard: int) -> Path:
    return folder / STAGING_DIR / f"shard-{shard:05d}.jsonl"


def read_state(folder: Path) -> JobState | None:
    path = folder / STATE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return JobState(int(data["shards"]), str(data["settings"]), str(data.get("format", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable job state: {exc}", path=path) from None


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_folder(folder: Path) -> None:
    """An output of a Ray job is a dataset folder (`datafiles.output_format`): new, empty, or one a Ray job
    wrote — not a file, nor a folder a single-process run wrote (its shards carry no keys). InputError otherwise."""
    if output_format(folder) != "dataset":
        raise InputError("--ray writes a folder of Parquet shards: give a folder (out/), not a file", path=folder)
    if (folder / MANIFEST_NAME).is_file() and not (folder / STATE_NAME).is_file():
        raise InputError("was written by a run without --ray; give --ray another folder", path=folder)


def lock_folder(folder: Path) -> IO[str]:
    """Hold the folder's lock (``.lock``) for a job: a second driver on the same folder gets InputError."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_NAME).open("a")
    lock_exclusive(handle, folder)
    return handle


def plan_translate(
    input_path: str | Path,
    folder: str | Path,
    fields: FileFields,
    settings: str,
    total: int,
    src: str | None = None,
    tgt: str | None = None,
    shard_rows: int = SHARD_ROWS,
    min_shards: int = 1,
    overwrite: bool = False,
    columns: ColumnPlan | None = None,
) -> Plan:
    """Stage the input's rows by shard (one streaming pass) and return the `Plan`. The shard count is the
    folder's (kept from its first run), else ``max(min_shards, ceil(total / shard_rows))``. ConfigError when
    the folder was made with other settings (every row would be redone under the same name) unless
    `overwrite`, which starts the folder over (`clear_folder`) whatever its settings, as ``translate
    --overwrite`` empties a single-process output. `columns`: the input columns the rows keep (none by
    default), staged with each row."""
    folder = Path(folder)
    check_folder(folder)
    if overwrite:
        clear_folder(folder)
    state = read_state(folder)
    if state is not None and state.settings != settings:
        raise ConfigError(
            "was made with other settings (model file, languages, prompt version, profile, term base, examples or "
            "engine options): every row would be redone; give --overwrite to redo them, or write to another folder",
            path=folder,
        )
    if state is None:
        state = JobState(max(min_shards, math.ceil(total / max(1, shard_rows)), 1), settings)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_text(folder / STATE_NAME, json.dumps(asdict(state)) + "\n")
    staging = folder / STAGING_DIR
    if staging.is_dir():
        for old in staging.iterdir():
            old.unlink()
    staging.mkdir(exist_ok=True)
    expected = [ShardCount() for _ in range(state.shards)]
    columns = columns or ColumnPlan()
    types = RowSchema(OUTPUT_TYPES)
    buffers: dict[int, list[str]] = {}
    buffered = 0
    rows = 0

    def flush() -> None:
        nonlocal buffered
        for shard, lines in buffers.items():
            with staging_file(folder, shard).open("a", encoding="utf-8") as handle:
                handle.writelines(lines)
        buffers.clear()
        buffered = 0

    source = open_rows(input_path)
    for number, row in source:
        row_id = _row_id(source, row, fields, number)
        text = fields.get(row, "text")
        row_src, row_tgt = fields.get(row, "src") or None, fields.get(row, "tgt") or None
        key = resume_key(row_id, {"text": text, "src": row_src, "tgt": row_tgt}, settings)
        shard = shard_of(key, state.shards)
        expected[shard].add(key)
        staged = {"id": row_id, "where": source.where(number), "field": fields.text, "text": text,
                  "src": row_src or src, "tgt": row_tgt or tgt, "key": key}  # fmt: skip
        if columns.kept:
            staged["input"] = {name: row[name] for name in columns.kept if name in row}
            types.observe({columns.kept[name]: value for name, value in staged["input"].items()})
        line = json.dumps(staged, ensure_ascii=False) + "\n"
        buffers.setdefault(shard, []).append(line)
        buffered += len(line)
        rows += 1
        if buffered >= _STAGING_BUFFER:
            flush()
    flush()
    schema = types.schema()  # ours alone when nothing is kept: the shards of earlier runs stay valid
    return Plan(folder, state.shards, settings, expected, rows, Layout(columns, schema, types.as_text))


def clear_folder(folder: Path) -> None:
    """Start a job's folder over: its manifest first (the folder is no dataset from then on), the committed and
    temporary shards, then the job state (so a run killed meanwhile leaves a folder a Ray job still owns)."""
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    for entry in (*folder.glob("part-*.parquet"), *folder.glob(".part-*.tmp")):
        entry.unlink(missing_ok=True)
    (folder / STATE_NAME).unlink(missing_ok=True)


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "list<string>": pa.list_(pa.string())}
    return pa.schema([pa.field(name, types[kind]) for name, kind in OUTPUT_TYPES.items()])


def read_shard(folder: Path, shard: int, columns: list[str] | None = None) -> list[dict[str, Any]] | None:
    """The rows of a committed shard (None when it has no file)."""
    import pyarrow.parquet as pq

    path = folder / shard_name(shard)
    if not path.is_file():
        return None
    try:
        rows: list[dict[str, Any]] = pq.read_table(path, columns=columns).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise InputError(f"cannot read a committed shard: {exc}", path=path) from None
    return rows


def redo(row: dict[str, Any], retry_failed: bool = False) -> bool:
    """Whether a committed row is translated again: a failed row with attempts left (`jsonl.retry_pending`),
    or with `retry_failed` any failed row (its count starts again), as in `translate_file`."""
    return retry_pending(row) or (retry_failed and row.get("status") == "failed")


def shard_done(expected: ShardCount, rows: list[dict[str, Any]] | None, retry_failed: bool = False) -> bool:
    """A committed shard holds exactly the planned keys and no row to redo (`redo`)."""
    if rows is None:
        return expected.rows == 0
    found = ShardCount()
    for row in rows:
        found.add(str(row["key"]))
        if redo(row, retry_failed):
            return False
    return found == expected


def write_shard(folder: Path, shard: int, rows: list[dict[str, Any]], schema: Any = None) -> None:
    """Commit shard `shard` (of `schema`, by default ours: `Layout.arrow`): written to a hidden temporary file,
    renamed into place (atomic); an empty shard has no file (an earlier one is removed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = folder / shard_name(shard)
    if not rows:
        target.unlink(missing_ok=True)
        return
    schema = schema if schema is not None else _arrow_schema()
    table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def translate_shard(
    translator: Translator,
    folder: Path,
    shard: int,
    settings: str,
    retry_failed: bool = False,
    layout: Layout | None = None,
) -> ShardSummary:
    """Do one shard: its staged rows, keeping those of its committed file whose key is unchanged and that need
    no retry (`redo`; `retry_failed` retries every failed row with its count reset), translating the rest,
    then commit it (`write_shard`) in the job's `layout` (every row's kept input columns from its staged row).
    A row whose own text cannot be translated (`limits.check_text`) is failed with its reason without an engine
    call, as `translate_file` does."""
    staging = staging_file(folder, shard)
    staged = [row for _, row in read_jsonl(staging)] if staging.is_file() else []
    before = {str(row["key"]): row for row in read_shard(folder, shard) or []}
    summary = ShardSummary(shard, rows=len(staged))
    out: dict[str, dict[str, Any]] = {}
    attempts: dict[str, int] = {}
    items: list[Item] = []
    for row in staged:
        old = before.get(row["key"])
        if old is not None and not redo(old, retry_failed):
            out[row["key"]] = old
            summary.reused += 1
            continue
        if old is not None and not retry_failed:
            attempts[row["id"]] = attempts_of(old)
        problem = check_text(row["text"], row.get("field", "text"), profile=translator.profile)
        if problem is not None:
            stamp = {"key": row["key"], "attempts": attempts.get(row["id"], 0)}
            out[row["key"]] = _bad_row(row["id"], row["text"], row["src"], row["tgt"], problem, translator, stamp,
                                       settings)  # fmt: skip
            summary.written += 1
            continue
        try:
            items.append(Item(row["id"], row["text"], row["tgt"], row["src"]))
        except (ValueError, KeyError) as exc:
            raise InputError(f"{row['where']}: {exc}") from None
    keys = {row["id"]: row["key"] for row in staged}
    for result in translator.translate(items):
        data = result.to_dict()
        if not result.ok:  # an unavailable engine does not count against the cap (`jsonl.counts_against_cap`)
            data["attempts"] = attempts.get(result.id, 0) + counts_against_cap(data)
        data["key"], data["settings"] = keys[result.id], settings
        out[data["key"]] = data
        summary.written += 1
    layout = layout or Layout()
    rows = [layout.row(out[row["key"]], row) for row in staged]
    for row in rows:
        if row.get("status") == "failed":
            summary.failed += 1
            summary.failed_ids.append(str(row["id"]))
        elif row.get("flags"):
            summary.flagged += 1
    write_shard(folder, shard, rows, layout.arrow())
    return summary


def pending_shards(plan: Plan, retry_failed: bool = False) -> tuple[list[int], list[ShardSummary]]:
    """The shards a run must do, and the summaries of those already done (their rows count as skipped). A shard
    of another schema than the plan's (the kept columns, or their types, changed) is rewritten."""
    import pyarrow.parquet as pq

    todo: list[int] = []
    done: list[ShardSummary] = []
    schema = plan.layout.arrow()
    for shard, expected in enumerate(plan.expected):
        rows = read_shard(plan.folder, shard, ["id", "key", "status", "attempts", "flags", "reason"])
        path = plan.folder / shard_name(shard)
        same = rows is None or pq.read_schema(path).equals(schema, check_metadata=False)
        if not same or not shard_done(expected, rows, retry_failed):
            todo.append(shard)
            continue
        summary = ShardSummary(shard, rows=expected.rows, reused=expected.rows)
        for row in rows or []:
            if row.get("status") == "failed":
                summary.failed += 1
                summary.failed_ids.append(str(row["id"]))
            elif row.get("flags"):
                summary.flagged += 1
        done.append(summary)
    return todo, done


def finish(plan: Plan) -> Path:
    """Record the committed shards in the folder's manifest (`datafiles.write_manifest`: atomic, and shard files
    it does not name are removed), then remove killed actors' temporary files and the staging. Returns the
    manifest's path."""
    import pyarrow.parquet as pq

    from redtrans import __version__

    shards = []
    for shard in range(plan.shards):
        path = plan.folder / shard_name(shard)
        if path.is_file():
            shards.append(Shard(path.name, pq.ParquetFile(path).metadata.num_rows))
    target = write_manifest(plan.folder, shards, plan.layout.arrow(), f"redtrans {__version__} (ray)")
    for entry in plan.folder.iterdir():
        if entry.name.startswith(".part-") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)
    staging = plan.folder / STAGING_DIR
    if staging.is_dir():
        for old in staging.iterdir():
            old.unlink()
        with contextlib.suppress(OSError):
            staging.rmdir()
    return target


def iter_output(folder: str | Path) -> Iterator[dict[str, Any]]:
    """Every row of a finished folder, shard by shard (tests, the benchmark's comparisons)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for entry in manifest.shards if manifest is not None else []:
        yield from read_shard(folder, int(entry.file[5:10])) or []


def counts(summaries: Mapping[int, ShardSummary]) -> dict[str, int]:
    """Totals over shard summaries: rows, written, reused, flagged, failed."""
    keys = ("rows", "written", "reused", "flagged", "failed")
    return {k: sum(getattr(s, k) for s in summaries.values()) for k in keys}

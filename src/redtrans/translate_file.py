"""The `translate` stage on files: rows in, rows out, resumable, validated up front.

Input is anything `redtrans.datafiles` reads: JSON Lines (its own reader: errors name file:line), CSV/TSV,
Parquet, a dataset folder (ours or saved with ``save_to_disk``) or a Hub id already in the local HF cache
(errors name the row: ``posts.csv: row 7: field 'text' is missing or empty``). Fields are mapped by `FileFields`
whatever the format, nested ones included (``--text-field translation.zh``: the 🤗 translation schema). A row
without an id is ``line-N`` (JSONL) or ``row-N`` (other formats).

Output rows are ours (`OUTPUT_COLUMNS`: id, text, translation, src, tgt, flags, model, prompt_version, status,
and error/attempts on failed rows) plus the input's own columns (`ColumnPlan`: all by default, none, or a list);
an input column whose name is one of ours is kept as ``input.NAME``. The translation can be written into a
nested field instead (``--translation-field translation.en``), which writes the 🤗 translation schema back.

The output's format is its path's (`datafiles.output_format`): ``.jsonl`` is appended row by row (how a run
resumes); ``.csv``, ``.tsv``, ``.parquet`` and a dataset folder are journaled the same way
(`datafiles.journal_path`: ``out.parquet.journal.jsonl`` next to a file, ``out/.journal.jsonl`` inside a
folder) and converted when the run ends: **every** row of the journal, ok and failed alike, with its
``status`` (and ``error``/``attempts`` on failed rows), exactly as the JSONL output would hold it. A killed run
leaves the journal (and the output of the last finished run, if any); the next run resumes from the journal and
rewrites the output. Keep the journal: it is what makes re-runs resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.datafiles import (
    FieldPath,
    RowSource,
    export_journal,
    files_extra,
    journal_path,
    open_rows,
    output_format,
)
from redtrans.errors import InputError
from redtrans.jsonl import JSONLError, JSONLWriter, read_jsonl, retry_pending
from redtrans.languages import UnknownLanguageError, get_language
from redtrans.translator import Item, Translator

OUTPUT_COLUMNS: dict[str, str] = {
    "id": "string",
    "text": "string",
    "translation": "string",
    "src": "string",
    "tgt": "string",
    "flags": "list<string>",
    "model": "string",
    "prompt_version": "string",
    "status": "string",
    "error": "string",
    "attempts": "int64",
    "retried_for": "list<string>",
}
"""The columns a translate row holds besides the input's, in order, with their Parquet types: a CSV/Parquet
output has every one of them whether or not a run flagged or failed anything, so outputs of runs load together."""
RESERVED_COLUMNS = frozenset(OUTPUT_COLUMNS) | {"key", "settings"}
"""Names an input column cannot keep (it is written as ``input.NAME``): ours, and the resume key's (resume.py)."""
INPUT_PREFIX = "input."


@dataclass
class FileFields:
    """Which input fields hold what (a dotted name reads a nested field: `datafiles.FieldPath`), and where the
    translation goes in output rows (``translation``, or nested: ``translation.en``)."""

    text: str = "text"
    id: str = "id"
    src: str = "src"
    tgt: str = "tgt"
    translation: str = "translation"

    def get(self, row: Mapping[str, Any], name: str) -> Any:
        """The value of field `name` (``text``, ``id``, ``src``, ``tgt``) in an input row."""
        return FieldPath(getattr(self, name)).get(row)


@dataclass(frozen=True)
class ColumnPlan:
    """Which input columns output rows keep, and under which names (`plan_columns`)."""

    kept: dict[str, str] = field(default_factory=dict)
    """Input column → its output name (``input.NAME`` when the name is one of ours)."""
    translation: str = "translation"

    @property
    def renamed(self) -> dict[str, str]:
        return {name: out for name, out in self.kept.items() if name != out}

    def notice(self) -> str | None:
        """The one line saying which input columns were renamed, or None."""
        if not self.renamed:
            return None
        pairs = ", ".join(f"{name} → {out}" for name, out in self.renamed.items())
        return f"input columns named like output columns are kept under {INPUT_PREFIX!r}: {pairs}"

    def compose(self, result: dict[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
        """An output row: ours (`result`), then the kept input columns, the translation at its field."""
        path = FieldPath(self.translation)
        out: dict[str, Any] = {}
        for key, value in result.items():
            if key != "translation":
                out[key] = value
            elif not path.nested:
                out[path.parts[0]] = value  # in its place, under the name asked for
        for name, out_name in self.kept.items():
            if name in row:
                out[out_name] = row[name]
        if path.nested:
            if path.parts[0] in row and path.parts[0] not in self.kept:
                out[path.parts[0]] = row[path.parts[0]]  # the object the translation goes into
            path.set(out, result.get("translation"))
        return out

    def types(self) -> dict[str, str]:
        """Parquet types of the output's own columns (`OUTPUT_COLUMNS`, the translation where it goes)."""
        path = FieldPath(self.translation)
        if path.nested:
            return {k: v for k, v in OUTPUT_COLUMNS.items() if k != "translation"}
        return {(path.parts[0] if k == "translation" else k): v for k, v in OUTPUT_COLUMNS.items()}


def plan_columns(columns: Sequence[str], fields: FileFields, keep: str | Sequence[str] = "all") -> ColumnPlan:
    """The `ColumnPlan` for an input with `columns`: `keep` is ``all``, ``none`` or column names (a list, or
    one comma-separated string). A field mapped onto our column of the same name (``--text-field text``) is
    ours already; a kept column named like one of ours becomes ``input.NAME``. InputError for a named column
    the input does not have."""
    target = FieldPath(fields.translation)
    if isinstance(keep, str):
        keep = "all" if keep.strip().lower() == "all" else [] if keep.strip().lower() == "none" else keep.split(",")
    if keep == "all":
        ours = {spec for spec in (fields.text, fields.id, fields.src, fields.tgt) if spec in OUTPUT_COLUMNS}
        wanted = [c for c in columns if c not in ours and not (target.nested and c == target.parts[0])]
    else:
        wanted = [c.strip() for c in keep if c.strip()]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise InputError(
                f"--keep-columns names {', '.join(map(repr, missing))}, which the input does not have "
                f"(it has {', '.join(columns) or 'no columns'})"
            )
    reserved = (RESERVED_COLUMNS - {"translation"}) | {target.parts[0]}
    kept = {c: (INPUT_PREFIX + c if c in reserved and not (target.nested and c == target.parts[0]) else c)
            for c in wanted}  # fmt: skip
    return ColumnPlan(kept, fields.translation)


@dataclass
class FileSummary:
    total: int
    skipped: int  # done before this run (resume), including rows failed for good
    written: int  # rows translated by this run, ok or failed
    flagged: int  # ok rows with quality flags
    failed: int  # rows of the output without a usable translation (this run's and earlier ones')
    journal: Path | None = None  # the JSONL journal of a CSV/TSV/Parquet/dataset output


def check_output_path(path: str | Path) -> str:
    """The format of an output path (`datafiles.output_format`), checked before any work: InputError for a path
    that names none, MissingExtraError for a Parquet output without the ``files`` extra."""
    fmt = output_format(path)
    if fmt in {"parquet", "dataset"}:
        files_extra("pyarrow.parquet")
    return fmt


def _row_id(source: RowSource, row: dict[str, Any], fields: FileFields, number: int) -> str:
    value = fields.get(row, "id")
    if value is None or value == "":
        return f"line-{number}" if source.kind == "jsonl" else f"row-{number}"
    return str(value)


def validate_input(path: str | Path, fields: FileFields, columns: dict[str, None] | None = None) -> int:
    """Check every row before any work starts; return the row count. Raises InputError (first 10 problems;
    a JSONLError for JSON Lines). `columns`, when given, is filled with the input's columns in first-seen order."""
    source = open_rows(path)
    problems: list[str] = []
    seen: set[str] = set()
    target = FieldPath(fields.translation)
    count = 0
    for number, row in source:
        count += 1
        if columns is not None:
            columns.update(dict.fromkeys(row))
        where = source.where(number)
        text = fields.get(row, "text")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: field {fields.text!r} is missing or empty")
        for key in ("src", "tgt"):
            code = fields.get(row, key)
            if code is not None and code != "":
                try:
                    get_language(str(code))
                except UnknownLanguageError as exc:
                    problems.append(f"{where}: {exc}")
        if target.nested and (problem := target.container_problem(row)):
            problems.append(f"{where}: {problem}")
        row_id = _row_id(source, row, fields, number)
        if row_id in seen:
            problems.append(f"{where}: duplicate id {row_id!r}")
        seen.add(row_id)
        if len(problems) >= 10:
            break
    if problems and source.kind == "jsonl":
        raise JSONLError(path, 0, "invalid input:\n" + "\n".join(problems))
    if problems:
        # One problem reads as one line (posts.csv: row 7: field 'text' is missing or empty).
        raise InputError(problems[0] if len(problems) == 1 else "invalid input:\n" + "\n".join(problems))
    return count


def input_columns(path: str | Path) -> list[str]:
    """The input's columns in first-seen order (one pass over its rows)."""
    columns: dict[str, None] = {}
    for _, row in open_rows(path):
        columns.update(dict.fromkeys(row))
    return list(columns)


def iter_items(
    path: str | Path,
    fields: FileFields,
    default_src: str | None,
    default_tgt: str | None,
    skip: set[str],
    rows: dict[str, dict[str, Any]] | None = None,
) -> Iterator[Item]:
    """Items of the rows whose ids are not in `skip`; `rows`, when given, gets each yielded item's input row by
    id (the caller pops it when the item's result is written)."""
    source = open_rows(path)
    for number, row in source:
        row_id = _row_id(source, row, fields, number)
        if row_id in skip:
            continue
        src = fields.get(row, "src") or default_src
        tgt = fields.get(row, "tgt") or default_tgt
        try:
            item = Item(row_id, fields.get(row, "text"), str(tgt) if tgt else None, str(src) if src else None)
        except (ValueError, KeyError) as exc:
            raise source.error(number, str(exc)) from None
        if rows is not None:
            rows[row_id] = row
        yield item


def translate_file(
    translator: Translator,
    input_path: str | Path,
    output_path: str | Path,
    fields: FileFields | None = None,
    src: str | None = None,
    tgt: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    validated_rows: int | None = None,
    keep: str | Sequence[str] = "all",
    columns: Sequence[str] | None = None,
) -> FileSummary:
    """Translate `input_path` into `output_path`, skipping ids already done. `on_progress(done, total)`.

    The output's format is its path's (see the module docstring): a JSONL output is written row by row; the
    others are journaled as JSONL (`datafiles.journal_path`) and converted from the whole journal, ok and
    failed rows, when the run ends. `keep` chooses the input columns output rows keep (`plan_columns`).

    A row is done only when it succeeded: a failed one is written with `status: failed`, its `error` and its
    `attempts`, and the next run drops it from the output and tries again, up to `jsonl.MAX_ATTEMPTS` in all; then it
    stays failed. The caller reports `failed` (the CLI exits 1 with the count).
    `validated_rows` / `columns`: the row count and columns from an earlier `validate_input` of this file (saves
    a pass)."""
    fields = fields or FileFields()
    fmt = check_output_path(output_path)  # before any work: an output we cannot write is refused first
    seen_columns: dict[str, None] = {}
    total = validated_rows if validated_rows is not None else validate_input(input_path, fields, seen_columns)
    if columns is None:
        columns = list(seen_columns) if validated_rows is None else input_columns(input_path)
    plan = plan_columns(columns, fields, keep)
    journal = journal_path(output_path) if fmt != "jsonl" else None
    rows_path = journal or Path(output_path)
    written = flagged = failed = 0
    # Locked before the output is read; failed rows with attempts left are taken out of it to be done again.
    with JSONLWriter(rows_path, drop=retry_pending) as writer:
        attempts = {str(row.get("id")): int(row.get("attempts") or 1) for row in writer.dropped}
        done: set[str] = set()
        failed_before = 0  # failed for good in earlier runs
        for _, row in read_jsonl(rows_path):
            done.add(str(row.get("id")))
            failed_before += row.get("status") == "failed"
        skipped = len(done)
        if on_progress:
            on_progress(skipped, total)
        in_flight: dict[str, dict[str, Any]] = {}  # input rows of the items the translator holds
        for result in translator.translate(iter_items(input_path, fields, src, tgt, done, in_flight)):
            row = plan.compose(result.to_dict(), in_flight.pop(result.id, {}))
            if not result.ok:
                row["attempts"] = attempts.get(result.id, 0) + 1
                failed += 1
            writer.write(row)
            written += 1
            flagged += bool(result.flags) and result.ok
            if on_progress:
                on_progress(skipped + written, total)
        if journal is not None:  # every row is flushed as written; converted while the lock is still held
            export_journal(journal, output_path, plan.types())
    return FileSummary(total, skipped, written, flagged, failed + failed_before, journal)

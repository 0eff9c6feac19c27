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
``status`` (and ``error``/``reason``/``attempts`` on failed rows), exactly as the JSONL output would hold it. A
killed run leaves the journal (and the output of the last finished run, if any); the next run resumes from the
journal and rewrites the output. Keep the journal: it is what makes re-runs resumable.

A row is done for its **resume key** (`redtrans.resume`: its text and own languages, and the run's settings),
recorded in ``key`` and ``settings``; a row whose input changed is redone (its new line supersedes the old one),
and an output made with other settings for every row is refused unless ``overwrite``. Bad input follows the
contract of docs/design.md: a bad file is refused before any work, a row whose own text cannot be translated
(`limits.check_text`) fails alone with its ``reason``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.datafiles import (
    FieldPath,
    RowSource,
    export_journal,
    files_extra,
    journal_path,
    open_rows,
    output_format,
)
from redtrans.errors import InputError, storage_errors
from redtrans.jsonl import JSONLWriter, attempts_of, counts_against_cap, read_jsonl, retry_pending
from redtrans.languages import UnknownLanguageError, get_language
from redtrans.limits import RowProblem, check_text, printable
from redtrans.resume import KEY_FIELD, SETTINGS_FIELD, check_settings, resume_key, settings_digest, translation_settings
from redtrans.text.profiles import PlatformProfile
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
    "reason": "string",
    "attempts": "int64",
    "retried_for": "list<string>",
    "key": "string",
    "settings": "string",
}
"""The columns a translate row holds besides the input's, in order, with their Parquet types: a CSV/Parquet
output has every one of them whether or not a run flagged or failed anything, so outputs of runs load together."""
RESERVED_COLUMNS = frozenset(OUTPUT_COLUMNS)
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
    changed: int = 0  # rows redone because their input or settings changed since the last run
    failures: list[dict[str, Any]] = field(default_factory=list)  # status, attempts, reason of each failed row


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


@dataclass
class InputCheck:
    """What `validate_input` found: the row count and the rows that fail on their own text (row-level)."""

    rows: int
    bad_rows: int = 0


def validate_input(
    path: str | Path,
    fields: FileFields,
    columns: dict[str, None] | None = None,
    strict: bool = False,
    profile: PlatformProfile | None = None,
) -> InputCheck:
    """Check every row before any work starts (the bad-input contract, docs/design.md).

    File-level problems raise one InputError line (the first of up to 10, and how many more): no rows, no row with the
    text field, duplicate ids, unknown language codes. Row-level problems (`limits.check_text`: empty or null
    text, not text, a lone surrogate, over the per-item limits) only fail their row when it is translated —
    unless `strict`, which raises them here too. `columns`, when given, is filled with the input's columns in
    first-seen order."""
    source = open_rows(path)
    problems: list[tuple[int, str]] = []  # (row number, what)
    seen: set[str] = set()
    target = FieldPath(fields.translation)
    count = bad = 0
    has_text_field = False
    first_fields: list[str] = []
    for number, row in source:
        count += 1
        if columns is not None:
            columns.update(dict.fromkeys(row))
        if count == 1:
            first_fields = list(row)
        text = fields.get(row, "text")
        has_text_field = has_text_field or text is not None or fields.text in row
        problem = check_text(text, fields.text, profile=profile)
        if problem is not None:
            bad += 1
            if strict:
                problems.append((number, problem.message))
        for key in ("src", "tgt"):
            code = fields.get(row, key)
            if code is not None and code != "":
                try:
                    get_language(str(code))
                except UnknownLanguageError as exc:
                    problems.append((number, str(exc)))
        if target.nested and (container := target.container_problem(row)):
            problems.append((number, container))
        row_id = _row_id(source, row, fields, number)
        if row_id in seen:
            problems.append((number, f"duplicate id {row_id!r}"))
        seen.add(row_id)
        if len(problems) >= 10:
            break
    if count == 0:
        raise InputError("has no rows: nothing to translate", path=source.label)
    if not has_text_field and not problems:
        names = ", ".join(first_fields[:12]) or "none"
        raise InputError(
            f"no row has a field {fields.text!r} (the first row's fields: {names}); name the text field with "
            "--text-field",
            path=source.label,
        )
    if problems:
        # One line (posts.csv: row 7: field 'text' is empty), however many problems there are.
        others = ", ".join(str(number) for number, _ in problems[1:])
        unit = "lines" if source.kind == "jsonl" else "rows"
        more = f" (and {len(problems) - 1}{'+' if len(problems) >= 10 else ''} more: {unit} {others})" if others else ""
        hint = "; without --strict such rows fail on their own" if strict and bad else ""
        raise InputError(f"{source.where(problems[0][0])}: {problems[0][1]}{more}{hint}")
    return InputCheck(count, bad)


def input_columns(path: str | Path) -> list[str]:
    """The input's columns in first-seen order (one pass over its rows)."""
    columns: dict[str, None] = {}
    for _, row in open_rows(path):
        columns.update(dict.fromkeys(row))
    return list(columns)


_KEPT = ("status", "attempts", "reason")
"""The fields of a previous row a rerun needs (rows are not held whole: an output may be millions of posts)."""


@dataclass
class _Previous:
    """What the output already holds for an id (its last line)."""

    key: str | None
    settings: str | None
    row: dict[str, Any]  # `_KEPT` fields only


def _read_previous(path: Path) -> tuple[dict[str, _Previous], dict[str, Any], int]:
    """The last line of each id, the model / tgt / prompt version of the last row (for a refusal message), and
    how many lines a later line of the same id supersedes (a run killed before it compacted the output)."""
    previous: dict[str, _Previous] = {}
    last: dict[str, Any] = {}
    lines = 0
    for _, row in read_jsonl(path):
        slim = {name: row[name] for name in _KEPT if name in row}
        previous[str(row.get("id"))] = _Previous(row.get(KEY_FIELD), row.get(SETTINGS_FIELD), slim)
        last = {name: row.get(name) for name in ("model", "tgt", "prompt_version")}
        lines += 1
    return previous, last, lines - len(previous)


def default_settings(translator: Translator) -> dict[str, Any]:
    """The settings of a translator whose engine spec is not known (a caller from Python): its config and the
    engine's own description, less what changes only speed."""
    engine = {k: v for k, v in translator.engine.describe().items() if k not in {"parallelism", "base_urls"}}
    return translation_settings(translator.config, engine)


def job_settings(settings: Mapping[str, Any], src: str | None, tgt: str | None) -> str:
    """The settings digest of a translate job (`resume.translation_settings` and the default languages): what
    every row's resume key covers, the same for a single-process run and a Ray job's shards."""
    return settings_digest({**settings, "default_src": src, "default_tgt": tgt})


def translate_file(
    translator: Translator,
    input_path: str | Path,
    output_path: str | Path,
    fields: FileFields | None = None,
    src: str | None = None,
    tgt: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    validated: InputCheck | None = None,
    keep: str | Sequence[str] = "all",
    columns: Sequence[str] | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    strict: bool = False,
) -> FileSummary:
    """Translate `input_path` into `output_path`, skipping rows already done. `on_progress(done, total)`.

    A row is done for its resume key (`redtrans.resume`): its id, text, own src/tgt and the run's settings —
    `settings` (what `resume.translation_settings` gives for the translator's config and engine spec; by
    default `default_settings(translator)`) and the default `src`/`tgt`. A row whose key changed is redone
    and its new line supersedes the old one (the output is compacted to the last line per id at the end). When
    every row of the output was made with other settings the run is refused (`SettingsChangedError`) unless
    `overwrite`, which empties the output first.

    The output's format is its path's (see the module docstring): a JSONL output is written row by row; the
    others are journaled as JSONL (`datafiles.journal_path`) and converted from the whole journal, ok and
    failed rows, when the run ends. `keep` chooses the input columns output rows keep (`plan_columns`).

    A row is done only when it succeeded. A failed one is written with `status: failed`, its `error`, `reason`
    and `attempts`; the next run tries it again, up to `jsonl.MAX_ATTEMPTS` counted attempts (an unavailable
    engine does not count; `retry_failed` starts the count again); a row whose own text cannot be translated
    (`limits.check_text`) fails at once, and again only once its text changes. The caller reports `failed`
    (the CLI exits 1 with the count). `validated` / `columns`: the check and columns from an earlier
    `validate_input` of this file (saves a pass)."""
    fields = fields or FileFields()
    fmt = check_output_path(output_path)  # before any work: an output we cannot write is refused first
    seen_columns: dict[str, None] = {}
    checked = validated or validate_input(input_path, fields, seen_columns, strict, translator.profile)
    if columns is None:
        columns = list(seen_columns) if validated is None else input_columns(input_path)
    plan = plan_columns(columns, fields, keep)
    run_settings = job_settings(settings if settings is not None else default_settings(translator), src, tgt)
    journal = journal_path(output_path) if fmt != "jsonl" else None
    rows_path = journal or Path(output_path)
    written = flagged = changed = skipped = 0
    failures: list[dict[str, Any]] = []
    # Locked before the output is read: one writer per output.
    with JSONLWriter(rows_path) as writer:
        if overwrite:
            writer.truncate()
        previous, last, superseded = _read_previous(rows_path)
        if previous:
            check_settings(output_path, (p.settings for p in previous.values()), run_settings,
                           "give --overwrite to redo them, or write to another --output", last)  # fmt: skip
        total = checked.rows
        stamps: dict[str, dict[str, Any]] = {}  # id → its key and attempts so far, for the result's row
        in_flight: dict[str, dict[str, Any]] = {}  # input rows of the items the translator holds

        def progress() -> None:
            if on_progress:
                on_progress(skipped + written, total)

        def record(row: dict[str, Any]) -> None:
            nonlocal written, flagged
            writer.write(row)
            written += 1
            if row.get("status") == "failed":
                failures.append({name: row[name] for name in _KEPT if name in row})
            else:
                flagged += bool(row.get("flags"))
            progress()

        def items() -> Iterator[Item]:
            """The rows left to do, as items; a row failing on its own text is recorded here, not translated."""
            nonlocal skipped, changed, superseded
            source = open_rows(input_path)
            for number, row in source:
                row_id = _row_id(source, row, fields, number)
                text = fields.get(row, "text")
                row_src, row_tgt = fields.get(row, "src") or None, fields.get(row, "tgt") or None
                key = resume_key(row_id, {"text": text, "src": row_src, "tgt": row_tgt}, run_settings)
                before = previous.get(row_id)
                attempts = 0
                if before is not None and before.key == key:
                    failed = before.row.get("status") == "failed"
                    if not failed or not (retry_failed or retry_pending(before.row)):
                        skipped += 1
                        if failed:
                            failures.append(before.row)
                        progress()
                        continue
                    attempts = 0 if retry_failed else attempts_of(before.row)
                elif before is not None:
                    changed += 1
                superseded += before is not None  # its new line will supersede the old one
                stamp = {"key": key, "attempts": attempts}
                problem = check_text(text, fields.text, profile=translator.profile)
                item_src, item_tgt = row_src or src, row_tgt or tgt
                if problem is not None or not isinstance(text, str):
                    assert problem is not None  # check_text finds a problem in anything but a string
                    bad = _bad_row(row_id, text, item_src, item_tgt, problem, translator, stamp, run_settings)
                    record(plan.compose(bad, row))
                    continue
                try:
                    item = Item(row_id, text, str(item_tgt) if item_tgt else None, str(item_src) if item_src else None)
                except (ValueError, KeyError) as exc:
                    raise source.error(number, str(exc)) from None
                stamps[row_id], in_flight[row_id] = stamp, row
                yield item

        progress()
        for result in translator.translate(items()):
            stamp = stamps.pop(result.id)
            row = result.to_dict()
            if not result.ok:
                row["attempts"] = stamp["attempts"] + counts_against_cap(row)
            row[KEY_FIELD], row[SETTINGS_FIELD] = stamp["key"], run_settings
            record(plan.compose(row, in_flight.pop(result.id, {})))
        if superseded:
            writer.compact()  # a redone row's new line supersedes its old one: one line per id
        if journal is not None:  # every row is flushed as written; converted while the lock is still held
            with storage_errors(output_path):
                export_journal(journal, output_path, plan.types())
    return FileSummary(total, skipped, written, flagged, len(failures), journal, changed, failures)


def _bad_row(
    row_id: str,
    text: Any,
    src: Any,
    tgt: Any,
    problem: RowProblem,
    translator: Translator,
    stamp: dict[str, Any],
    settings: str,
) -> dict[str, Any]:
    """The output row of a row whose text cannot be translated: failed with its reason, no engine call."""
    shown = printable(text) if isinstance(text, str) else text if text is None else str(text)
    return {
        "id": row_id, "text": shown, "translation": "", "src": str(src) if src else None,
        "tgt": str(tgt) if tgt else None, "flags": [], "model": translator.model,
        "prompt_version": prompts.PROMPT_VERSION, "status": "failed", "error": problem.message,
        "reason": problem.reason, "attempts": stamp["attempts"] + 1, KEY_FIELD: stamp["key"],
        SETTINGS_FIELD: settings,
    }  # fmt: skip

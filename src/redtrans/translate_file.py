"""The `translate` stage on files: rows in, rows out, resumable, validated up front.

Input is anything `redtrans.datafiles` reads: JSON Lines (its own reader: errors name file:line), CSV/TSV,
Parquet, a dataset folder saved with ``save_to_disk`` or a Hub id already in the local HF cache (errors name
the row: ``posts.csv: row 7: field 'text' is missing or empty``). Fields are mapped by `FileFields` whatever
the format. A row without an id is ``line-N`` (JSONL) or ``row-N`` (other formats).

Output is JSON Lines, appended row by row (how a run resumes). ``-o out.parquet`` is journaled the same way
in ``out.parquet.journal.jsonl`` next to it and converted when the run ends: the Parquet file holds **every**
row of the journal, ok and failed alike, with their ``status`` (and ``error``/``attempts`` on failed rows),
exactly as the JSONL output would. A killed run leaves the journal (and the Parquet file of the last
finished run, if any); the next run resumes from the journal and rewrites the Parquet file. Keep the journal:
it is what makes re-runs resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redtrans.datafiles import RowSource, is_parquet_output, journal_path, open_rows, write_parquet
from redtrans.errors import InputError
from redtrans.jsonl import JSONLError, JSONLWriter, read_jsonl, retry_pending
from redtrans.languages import UnknownLanguageError, get_language
from redtrans.translator import Item, Translator


@dataclass
class FileFields:
    """Which input fields hold what."""

    text: str = "text"
    id: str = "id"
    src: str = "src"
    tgt: str = "tgt"


@dataclass
class FileSummary:
    total: int
    skipped: int  # done before this run (resume), including rows failed for good
    written: int  # rows translated by this run, ok or failed
    flagged: int  # ok rows with quality flags
    failed: int  # rows of the output without a usable translation (this run's and earlier ones')
    journal: Path | None = None  # the JSONL journal of a Parquet output


def check_output_path(path: str | Path) -> None:
    """An output must be a file we can append to: InputError for a folder or a parent that is a file."""
    p = Path(path)
    if p.is_dir():
        raise InputError("is a folder; --output takes a file path (.jsonl, or .parquet)", path=p)
    if p.parent.exists() and not p.parent.is_dir():
        raise InputError(f"cannot write {p}: {p.parent} is not a folder")


def _row_id(source: RowSource, row: dict[str, Any], fields: FileFields, number: int) -> str:
    value = row.get(fields.id)
    if value is None or value == "":
        return f"line-{number}" if source.kind == "jsonl" else f"row-{number}"
    return str(value)


def validate_input(path: str | Path, fields: FileFields) -> int:
    """Check every row before any work starts; return the row count. Raises InputError (first 10 problems;
    a JSONLError for JSON Lines)."""
    source = open_rows(path)
    problems: list[str] = []
    seen: set[str] = set()
    count = 0
    for number, row in source:
        count += 1
        where = source.where(number)
        text = row.get(fields.text)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: field {fields.text!r} is missing or empty")
        for key in (fields.src, fields.tgt):
            code = row.get(key)
            if code is not None and code != "":
                try:
                    get_language(str(code))
                except UnknownLanguageError as exc:
                    problems.append(f"{where}: {exc}")
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


def iter_items(
    path: str | Path, fields: FileFields, default_src: str | None, default_tgt: str | None, skip: set[str]
) -> Iterator[Item]:
    source = open_rows(path)
    for number, row in source:
        row_id = _row_id(source, row, fields, number)
        if row_id in skip:
            continue
        src = row.get(fields.src) or default_src
        tgt = row.get(fields.tgt) or default_tgt
        try:
            yield Item(row_id, row[fields.text], str(tgt) if tgt else None, str(src) if src else None)
        except (ValueError, KeyError) as exc:
            raise source.error(number, str(exc)) from None


def translate_file(
    translator: Translator,
    input_path: str | Path,
    output_path: str | Path,
    fields: FileFields | None = None,
    src: str | None = None,
    tgt: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    validated_rows: int | None = None,
) -> FileSummary:
    """Translate `input_path` into `output_path`, skipping ids already done. `on_progress(done, total)`.

    A ``.parquet`` output is journaled as JSONL next to it (`datafiles.journal_path`) and written from the
    whole journal, ok and failed rows, when the run ends (see the module docstring).

    A row is done only when it succeeded: a failed one is written with `status: failed`, its `error` and its
    `attempts`, and the next run drops it from the output and tries again, up to `jsonl.MAX_ATTEMPTS` in all; then it
    stays failed. The caller reports `failed` (the CLI exits 1 with the count).
    `validated_rows`: the row count from an earlier `validate_input` of this file (saves a second pass)."""
    fields = fields or FileFields()
    total = validated_rows if validated_rows is not None else validate_input(input_path, fields)
    check_output_path(output_path)
    journal = journal_path(output_path) if is_parquet_output(output_path) else None
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
        for result in translator.translate(iter_items(input_path, fields, src, tgt, done)):
            row = result.to_dict()
            if not result.ok:
                row["attempts"] = attempts.get(result.id, 0) + 1
                failed += 1
            writer.write(row)
            written += 1
            flagged += bool(result.flags) and result.ok
            if on_progress:
                on_progress(skipped + written, total)
        if journal is not None:  # every row is flushed as written; converted while the lock is still held
            write_parquet((row for _, row in read_jsonl(journal)), output_path)
    return FileSummary(total, skipped, written, flagged, failed + failed_before, journal)

"""The `translate` stage on files: JSONL in, JSONL out, resumable, validated up front."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from redtrans.errors import InputError
from redtrans.jsonl import JSONLError, JSONLWriter, done_ids, read_jsonl
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
    skipped: int  # already in the output (resume)
    written: int
    flagged: int


def check_output_path(path: str | Path) -> None:
    """An output must be a file we can append to: InputError for a folder or a parent that is a file."""
    p = Path(path)
    if p.is_dir():
        raise InputError("is a folder; --output takes a JSONL file path", path=p)
    if p.parent.exists() and not p.parent.is_dir():
        raise InputError(f"cannot write {p}: {p.parent} is not a folder")


def validate_input(path: str | Path, fields: FileFields) -> int:
    """Check every row before any work starts; return the row count. Raises JSONLError (first 10 problems)."""
    problems: list[str] = []
    seen: set[str] = set()
    count = 0
    for number, row in read_jsonl(path):
        count += 1
        text = row.get(fields.text)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{path}:{number}: field {fields.text!r} is missing or empty")
        for key in (fields.src, fields.tgt):
            code = row.get(key)
            if code is not None:
                try:
                    get_language(str(code))
                except UnknownLanguageError as exc:
                    problems.append(f"{path}:{number}: {exc}")
        row_id = str(row.get(fields.id, f"line-{number}"))
        if row_id in seen:
            problems.append(f"{path}:{number}: duplicate id {row_id!r}")
        seen.add(row_id)
        if len(problems) >= 10:
            break
    if problems:
        raise JSONLError(path, 0, "invalid input:\n" + "\n".join(problems))
    return count


def iter_items(
    path: str | Path, fields: FileFields, default_src: str | None, default_tgt: str | None, skip: set[str]
) -> Iterator[Item]:
    for number, row in read_jsonl(path):
        row_id = str(row.get(fields.id, f"line-{number}"))
        if row_id in skip:
            continue
        src = row.get(fields.src) or default_src
        tgt = row.get(fields.tgt) or default_tgt
        try:
            yield Item(row_id, row[fields.text], str(tgt) if tgt else None, str(src) if src else None)
        except (ValueError, KeyError) as exc:
            raise JSONLError(path, number, str(exc)) from None


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
    """Translate `input_path` into `output_path`, skipping ids already there. `on_progress(done, total)`.

    `validated_rows`: the row count from an earlier `validate_input` of this file (saves a second pass)."""
    fields = fields or FileFields()
    total = validated_rows if validated_rows is not None else validate_input(input_path, fields)
    check_output_path(output_path)
    done = done_ids(output_path)
    skipped = len(done)
    written = flagged = 0
    if on_progress:
        on_progress(skipped, total)
    with JSONLWriter(output_path) as writer:
        for result in translator.translate(iter_items(input_path, fields, src, tgt, done)):
            writer.write(result.to_dict())
            written += 1
            flagged += bool(result.flags)
            if on_progress:
                on_progress(skipped + written, total)
    return FileSummary(total, skipped, written, flagged)

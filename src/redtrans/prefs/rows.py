"""Reading the rows the preference stages pass along: sources in, candidates rows out and back.

A candidates row (`prefs generate`):
``{id, source, src, tgt, reference?, candidates: [{text, system, model, seed, temperature, flags}, …2],
prompt_version, status: "ok"}``; a failed row has ``status: "failed"`` and ``error`` and is retried by the
next run. Files are append-only, so an id can appear more than once: the last row of an id wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redtrans.errors import InputError
from redtrans.jsonl import JSONLError, read_jsonl, repair_tail
from redtrans.languages import get_language
from redtrans.limits import RowProblem, check_text, printable


@dataclass
class Source:
    id: str
    text: str
    src: str | None
    tgt: str | None
    reference: str | None = None
    problem: RowProblem | None = None
    """Why this row's text cannot be translated (`redtrans.limits`): the row fails on its own, the rest go on."""


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None


def read_sources(
    path: Path, reference: Path | None = None, src: str | None = None, tgt: str | None = None, limit: int | None = None
) -> Iterator[Source]:
    """Sources of a JSONL file (`text` or `source`, optional `id`, `src`, `tgt`, `reference`) or of a text file
    with an optional line-aligned reference file. Ids default to the line number; two rows with one id are a
    JSONLError. A row whose text cannot be translated comes with its `problem` (`limits.check_text`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError("file not found", path=path)
    count = 0
    seen: set[str] = set()
    if path.suffix == ".jsonl":
        if reference is not None:
            raise InputError("a JSONL input carries its references in a `reference` field", path=reference)
        for line, row in read_jsonl(path):
            text = row.get("text", row.get("source"))
            problem = check_text(text, "text" if "text" in row else "source")
            row_id = str(row.get("id", line))
            if row_id in seen:
                raise JSONLError(path, line, f"duplicate id {row_id!r}")
            seen.add(row_id)
            ref = row.get("reference")
            if ref is not None and not isinstance(ref, str):
                raise JSONLError(path, line, "`reference` must be a string")
            try:
                row_src = get_language(row["src"]).code if row.get("src") else src
                row_tgt = get_language(row["tgt"]).code if row.get("tgt") else tgt
            except InputError as exc:
                raise JSONLError(path, line, exc.message) from None
            shown = text if problem is None and isinstance(text, str) else printable(str(text or ""))
            yield Source(row_id, shown, row_src, row_tgt, ref or None, problem)
            count += 1
            if limit is not None and count >= limit:
                return
        return
    lines = _text_lines(path)
    refs = _text_lines(Path(reference).expanduser()) if reference is not None else None
    if refs is not None and len(refs) != len(lines):
        raise InputError(f"{len(lines)} lines in {path} but {len(refs)} in the reference file", path=reference)
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        ref = refs[number - 1].replace("\\n", "\n") if refs is not None else None
        text = text.replace("\\n", "\n")
        yield Source(str(number), text, src, tgt, ref or None, check_text(text))
        count += 1
        if limit is not None and count >= limit:
            return


def latest_rows(path: Path, repair: bool = True) -> dict[str, dict[str, Any]]:
    """The last row of each id in an append-only stage output (a torn last line is cut off first, when `repair`:
    never on an input, whose bad last line is the user's to see, not ours to cut)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return {}
    if repair:
        repair_tail(path)
    rows: dict[str, dict[str, Any]] = {}
    for line, row in read_jsonl(path):
        if "id" not in row:
            raise JSONLError(path, line, "row has no `id`")
        rows[str(row["id"])] = row
    return rows


def succeeded_ids(path: Path) -> set[str]:
    """Ids whose last row succeeded: what a resumed run skips."""
    return {key for key, row in latest_rows(path).items() if row.get("status", "ok") != "failed"}


def candidate_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The usable candidates rows of a file (last row per id, failed ones left out) and how many failed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError("file not found", path=path)
    rows, failed = [], 0
    latest = latest_rows(path, repair=False)
    if not latest:
        raise InputError("has no rows", path=path)
    for key, row in latest.items():
        if row.get("status", "ok") == "failed":
            failed += 1
            continue
        cands = row.get("candidates")
        if not isinstance(cands, list) or len(cands) != 2 or not all(isinstance(c, dict) for c in cands):
            raise InputError(f"row {key!r} needs `candidates`: two objects with `text`", path=path)
        if not isinstance(row.get("source"), str):
            raise InputError(f"row {key!r} needs a string `source`", path=path)
        # The rows experts judge and models train on are refused whole (a set silently missing rows would change
        # what is measured): the same per-item limits as everywhere (`redtrans.limits`), known languages.
        for name, value in [("source", row["source"]), *((f"candidate {i + 1}", c.get("text")) for i, c in
                                                         enumerate(cands))]:  # fmt: skip
            problem = check_text(value, name)
            if problem is not None:
                raise InputError(f"row {key!r}: {problem.message}", path=path)
        for lang in ("src", "tgt"):
            if row.get(lang):
                try:
                    get_language(str(row[lang]))
                except InputError as exc:
                    raise InputError(f"row {key!r}: {exc.message}", path=path) from None
        rows.append(row)
    return rows, failed

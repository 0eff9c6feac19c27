"""JSON Lines I/O shared by every stage: line-numbered errors, append-only outputs and resume.

Appending a row is how progress is saved. A stage that restarts reads its output, skips the ids already
there and appends the rest; a torn last line (the process was killed mid-write) is detected and cut off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from redtrans.errors import InputError


class JSONLError(InputError):
    """Bad input, with the file and line it came from."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(message, path=path, line=line)


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; JSONLError on invalid UTF-8, invalid JSON or a non-object."""
    if Path(path).is_dir():
        raise InputError("is a folder, not a JSONL file", path=path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise JSONLError(path, number, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                hint = ""
                if number == 1 and not line.lstrip().startswith(("{", "[")) and ("," in line or "\t" in line):
                    hint = "; this looks like CSV/TSV, and the file is read as JSON Lines (one JSON object a line)"
                raise JSONLError(path, number, f"invalid JSON ({exc.msg} at column {exc.colno}){hint}") from None
            if not isinstance(row, dict):
                raise JSONLError(path, number, f"expected a JSON object, got {type(row).__name__}")
            yield number, row


def repair_tail(path: str | Path) -> int:
    """Cut a torn last line (no trailing newline or invalid JSON) off `path`; return bytes removed."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return 0
    with p.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        back = min(size, 1 << 20)
        handle.seek(size - back)
        tail = handle.read()
        if tail.endswith(b"\n"):
            last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
            try:
                json.loads(last or b"{}")
                return 0
            except ValueError:
                cut = len(last) + (len(tail) - len(tail.rstrip(b"\n")))
        else:
            cut = len(tail) - (tail.rfind(b"\n") + 1)
        handle.truncate(size - cut)
        return cut


def done_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already written to an output (after repairing a torn tail)."""
    p = Path(path)
    if not p.is_file():
        return set()
    repair_tail(p)
    return {str(row[key]) for _, row in read_jsonl(p) if key in row}


class JSONLWriter:
    """Appends rows, flushed line by line, so a killed run loses at most the row being written."""

    def __init__(self, path: str | Path, fsync_every: int = 50) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._handle: TextIO = self.path.open("a", encoding="utf-8")
        self._fsync_every, self._since_sync = fsync_every, 0

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        self._since_sync += 1
        if self._since_sync >= self._fsync_every:
            os.fsync(self._handle.fileno())
            self._since_sync = 0

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> JSONLWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

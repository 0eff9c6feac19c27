"""JSON Lines I/O shared by every stage: line-numbered errors, append-only outputs and resume.

Appending a row is how progress is saved. A stage that restarts reads its output, skips the ids already
there and appends the rest; a torn last line (the process was killed mid-write) is detected and cut off,
whatever its length. A writer holds an exclusive lock on its file (`flock`, released by the OS when the
process dies), so a second process writing the same output is refused instead of duplicating every row.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from redtrans.errors import InputError


class JSONLError(InputError):
    """Bad input, with the file and line it came from."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(message, path=path, line=line)


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; JSONLError on invalid UTF-8, invalid JSON or a non-object.
    A UTF-8 byte order mark at the start of the file is skipped."""
    if Path(path).is_dir():
        raise InputError("is a folder, not a JSONL file", path=path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise JSONLError(path, number, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 BOM (editors on Windows write one)
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


def _last_line_start(handle: BinaryIO, end: int) -> int:
    """Offset just after the last b"\\n" before `end` (0 when there is none), read backwards in blocks."""
    block = 1 << 20
    pos = end
    while pos > 0:
        start = max(0, pos - block)
        handle.seek(start)
        found = handle.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def repair_tail(path: str | Path) -> int:
    """Cut a torn last line (no trailing newline, or invalid JSON) off `path`, however long; return bytes removed."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return 0
    with p.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            end = size
            while end > 0:  # skip blank trailing lines
                handle.seek(end - 1)
                if handle.read(1) not in (b"\n", b"\r"):
                    break
                end -= 1
            start = _last_line_start(handle, end)
            handle.seek(start)
            try:
                json.loads(handle.read(end - start) or b"{}")
                return 0
            except ValueError:
                cut_at = start
        else:
            cut_at = _last_line_start(handle, size)
        handle.truncate(cut_at)
        return size - cut_at


def done_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already written to an output (after repairing a torn tail)."""
    p = Path(path)
    if not p.is_file():
        return set()
    repair_tail(p)
    return {str(row[key]) for _, row in read_jsonl(p) if key in row}


MAX_ATTEMPTS = 3
"""Attempts a row gets over all runs (the first included) before it is left `failed` for good."""


def retry_pending(row: dict[str, Any]) -> bool:
    """A row written `status: failed` that has attempts left: a re-run drops it and does it again."""
    return row.get("status") == "failed" and int(row.get("attempts") or 1) < MAX_ATTEMPTS


def stamp_attempts(row: dict[str, Any], dropped: list[dict[str, Any]], id_key: str = "id") -> dict[str, Any]:
    """`row` with `attempts` set when it failed: one more than its dropped earlier failures (`JSONLWriter.dropped`)."""
    if row.get("status") == "failed":
        before = max((int(r.get("attempts") or 1) for r in dropped if r.get(id_key) == row.get(id_key)), default=0)
        row["attempts"] = before + 1
    return row


def lock_exclusive(handle: IO[Any], path: Path) -> None:
    """Take an exclusive, non-blocking lock on an open output file; InputError if another process holds it."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputError(
            "is being written by another process; wait for it to finish or write to another file", path=path
        ) from None


class JSONLWriter:
    """Appends rows, flushed line by line, so a killed run loses at most the row being written. Holds an
    exclusive lock (a second writer of the same file gets InputError). `drop` removes rows before appending
    (a re-run's failed rows, which it writes again)."""

    def __init__(
        self, path: str | Path, fsync_every: int = 50, drop: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError("is a folder, not a file to write", path=self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The lock lives in a sidecar file, so `drop` can replace the output file while it is held.
        self._lock = self.path.with_name(self.path.name + ".lock").open("a")
        lock_exclusive(self._lock, self.path)
        repair_tail(self.path)
        self.dropped: list[dict[str, Any]] = []
        """The rows `drop` removed from the file (a re-run reads their attempts)."""
        if drop is not None:
            self._rewrite_without(drop)
        self._handle: TextIO = self.path.open("a", encoding="utf-8")
        self._fsync_every, self._since_sync = fsync_every, 0

    def _rewrite_without(self, drop: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the output without the rows `drop` selects (failed rows a run retries): a temp file and
        `os.replace`, so a kill at any moment leaves the old or the new file, never half of one."""
        if not self.path.is_file():
            return
        rows = [row for _, row in read_jsonl(self.path)]
        kept = [row for row in rows if not drop(row)]
        if len(kept) == len(rows):
            return
        self.dropped = [row for row in rows if drop(row)]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

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
        self._lock.close()  # releases the lock

    def __enter__(self) -> JSONLWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

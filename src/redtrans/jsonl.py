"""JSON Lines I/O shared by every stage: line-numbered errors, append-only outputs and resume.

Appending a row is how progress is saved. A stage that restarts reads its output, skips the ids already
there and appends the rest; a torn last line (the process was killed mid-write) is detected and cut off,
whatever its length. A writer holds an exclusive lock on its file (`flock`, released by the OS when the
process dies), so a second process writing the same output is refused instead of duplicating every row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from redtrans.errors import InputError, storage_errors


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
"""Attempts a row gets over all runs (the first included) before it is left `failed` for good. Only attempts
that *could* have succeeded count: see `counts_against_cap`."""

# Why a row failed (its `reason`), and what a re-run does about it.
INPUT_REASONS = frozenset({"empty", "invalid_text", "too_long"})
"""The row's own input cannot be translated (`redtrans.limits`): redone only once its input (and so its resume
key) changes, or with `--retry-failed`."""
UNAVAILABLE = "engine_unavailable"
"""Transient engine errors (timeouts, connection errors, HTTP 5xx and 429, every endpoint's breaker open):
the engine was not there to ask. Never counted against `MAX_ATTEMPTS`: every re-run retries the row."""
ENGINE_FAILED = "engine_error"
"""A permanent engine error (an HTTP 4xx such as a context overflow, an answer that is not a completion)."""
NO_TRANSLATION = "no_translation"
"""The engine answered, but no answer passed the checks (empty, an echo of the source, a refusal) after the retry."""


def attempts_of(row: dict[str, Any]) -> int:
    """A failed row's counted attempts (a row written before attempts were recorded: 1)."""
    value = row.get("attempts")
    return 1 if value is None else int(value)


def counts_against_cap(row: dict[str, Any]) -> bool:
    """Whether a failed row's attempt counts against `MAX_ATTEMPTS`: failed checks and permanent errors do,
    an engine that was unavailable does not."""
    return row.get("reason") != UNAVAILABLE


def retry_pending(row: dict[str, Any]) -> bool:
    """A row written `status: failed` that a re-run does again: an unavailable engine always, a failed check
    or permanent error while attempts are left, bad input never (its key changes when the input does)."""
    if row.get("status") != "failed" or row.get("reason") in INPUT_REASONS:
        return False
    return not counts_against_cap(row) or attempts_of(row) < MAX_ATTEMPTS


def stamp_attempts(row: dict[str, Any], dropped: list[dict[str, Any]], id_key: str = "id") -> dict[str, Any]:
    """`row` with `attempts` set when it failed: its dropped earlier failures' count (`JSONLWriter.dropped`),
    plus one when this failure counts against the cap (`counts_against_cap`)."""
    if row.get("status") == "failed":
        before = max((attempts_of(r) for r in dropped if r.get(id_key) == row.get(id_key)), default=0)
        row["attempts"] = before + counts_against_cap(row)
    return row


def failure_summary(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """(detail, what a re-run does) for the failed rows of a run, by reason: the message of RowsFailedError."""
    unavailable = sum(r.get("reason") == UNAVAILABLE for r in rows)
    bad_input = sum(r.get("reason") in INPUT_REASONS for r in rows)
    for_good = sum(not retry_pending(r) and r.get("reason") not in INPUT_REASONS for r in rows)
    pending = len(rows) - unavailable - bad_input - for_good
    parts, after = [], []
    if unavailable:
        parts.append(f"{unavailable} on an unavailable engine (timeouts, connection errors, 5xx, 429)")
        after.append("a re-run retries those whenever it runs (they do not count against the attempt cap)")
    if pending:
        parts.append(f"{pending} on failed checks or engine errors, with attempts left")
        after.append(f"a re-run retries those (up to {MAX_ATTEMPTS} attempts in all)")
    if for_good:
        parts.append(f"{for_good} after {MAX_ATTEMPTS} attempts")
        after.append("--retry-failed tries those again")
    if bad_input:
        reasons = sorted({str(r.get("reason")) for r in rows if r.get("reason") in INPUT_REASONS})
        parts.append(f"{bad_input} on bad input ({', '.join(reasons)})")
        after.append("fix those rows' text (a changed row is redone)")
    return "; ".join(parts) + "; their `error` field says why", "; ".join(after) or "re-run to retry them"


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file written in full or not at all: into a hidden temp file beside `path`, fsynced and renamed over
    it when the block ends; removed on any failure (a full disk leaves no partial file behind, and the old
    `path` untouched). Environment errors become StorageError naming `path`."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    encoding = None if "b" in mode else "utf-8"
    try:
        with storage_errors(target):
            with tmp.open(mode, encoding=encoding) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def dumps_row(row: dict[str, Any]) -> str:
    """One JSON line. A lone surrogate in a value (a text that failed as `invalid_text`) is written as a
    JSON escape, which every reader decodes back, instead of bytes that are not UTF-8."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row)
    return line + "\n"


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
        with storage_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The lock lives in a sidecar file, so `drop` can replace the output file while it is held.
            self._lock = self.path.with_name(self.path.name + ".lock").open("a")
        lock_exclusive(self._lock, self.path)
        self.dropped: list[dict[str, Any]] = []
        """The rows `drop` removed from the file (a re-run reads their attempts)."""
        try:
            with storage_errors(self.path):
                repair_tail(self.path)
                if drop is not None:
                    self._rewrite_without(drop)
                self._handle: TextIO = self.path.open("a", encoding="utf-8")
        except BaseException:
            self._lock.close()
            raise
        self._fsync_every, self._since_sync = fsync_every, 0

    def _rewrite_without(self, drop: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the output without the rows `drop` selects (failed rows a run retries), streamed: a temp
        file and `os.replace`, so a kill at any moment leaves the old or the new file, never half of one."""
        if not self.path.is_file():
            return
        if not any(drop(row) for _, row in read_jsonl(self.path)):
            return
        dropped: list[dict[str, Any]] = []
        with atomic_write(self.path) as out:
            for _, row in read_jsonl(self.path):
                if drop(row):
                    dropped.append(row)
                else:
                    out.write(dumps_row(row))
        self.dropped = dropped

    def compact(self, id_key: str = "id") -> int:
        """Keep only the last line of each id (a redone row's line supersedes the earlier ones), in the order of
        those last lines; return how many lines went. Streamed in two passes (memory: one int per id), written
        through `atomic_write`; the lock stays held and appending goes on in the new file."""
        with storage_errors(self.path):
            self._handle.flush()
            last: dict[str, int] = {}
            lines = 0
            for number, row in read_jsonl(self.path):
                last[str(row.get(id_key))] = number
                lines += 1
            if len(last) == lines:
                return 0
            keep = set(last.values())
            with atomic_write(self.path) as out:
                for number, row in read_jsonl(self.path):
                    if number in keep:
                        out.write(dumps_row(row))
            self._handle.close()
            self._handle = self.path.open("a", encoding="utf-8")
        return lines - len(keep)

    def truncate(self) -> None:
        """Empty the output (a run told to redo everything, `--overwrite`); the lock stays held."""
        with storage_errors(self.path):
            self._handle.truncate(0)
            self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        with storage_errors(self.path):
            self._handle.write(dumps_row(row))
            self._handle.flush()
            self._since_sync += 1
            if self._since_sync >= self._fsync_every:
                os.fsync(self._handle.fileno())
                self._since_sync = 0

    def close(self) -> None:
        try:
            if not self._handle.closed:
                with storage_errors(self.path):
                    try:
                        self._handle.flush()
                        os.fsync(self._handle.fileno())
                    finally:
                        self._handle.close()
        finally:
            self._lock.close()  # releases the lock

    def __enter__(self) -> JSONLWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

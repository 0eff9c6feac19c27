"""Input corpora, streamed: JSONL (source only or source + reference) or a pair of line-aligned text files.

Nothing here holds a corpus in memory. A cheap counting pass sizes each corpus (and checks that the two
files of a parallel pair have the same number of lines, before any model is loaded); the rows then stream
one at a time, mixed across corpora by their ratios in a deterministic order, so a resumed run sees exactly
the same sequence.

The bad-input contract (docs/design.md): a file that is missing, not UTF-8, not JSON Lines (invalid JSON, a
non-object line), without rows or without the text field, and a parallel pair whose files differ in length,
fail the run before any model loads (exit 2). A row whose own text cannot be used (empty, missing or not a
string, a lone surrogate, a NUL, over the per-item limits of `redtrans.limits`; an empty reference) is
never dropped silently: with ``on_bad_row="reject"`` each goes to ``rejects.jsonl`` as ``{file, line,
corpus, reason, code}`` and is counted (the command exits 1 with the count); with ``"fail"`` (``--strict``)
the first one stops the run with ``file:line: reason`` before any work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from redtrans.jsonl import JSONLError
from redtrans.limits import RowProblem, check_text
from redtrans.sampling.config import CorpusConfig


@dataclass
class SourceRow:
    """One source sentence of a corpus, with where it came from."""

    id: str  # "{corpus}:{line}": unique in a run, stable across runs on the same files
    corpus: str
    line: int
    source: str
    src: str
    tgt: str
    reference: str | None = None
    source_id: str | None = None  # the row's own id field (JSONL), kept for the user


@dataclass
class BadRow:
    file: str
    line: int
    corpus: str
    reason: str
    code: str = "empty"
    """The stable reason (`limits.check_text`): empty, invalid_text or too_long."""

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "corpus": self.corpus, "reason": self.reason, "code": self.code}


OnBadRow = Callable[[BadRow], None]


def _lines(path: str | Path) -> Generator[tuple[int, str], None, None]:
    """(line number, text) of a UTF-8 file; a line that is not UTF-8 is a JSONLError naming it (file-level)."""
    try:
        handle = open(Path(path).expanduser(), "rb")  # noqa: SIM115 - closed below, also when the caller stops
    except FileNotFoundError:
        raise JSONLError(path, 0, "file not found") from None
    except IsADirectoryError:
        raise JSONLError(path, 0, "is a folder, not a corpus file") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise JSONLError(path, number, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _text_problem(value: Any, field: str) -> RowProblem | None:
    problem = check_text(value, field)
    if problem is not None and problem.reason == "empty" and value is None:
        return RowProblem("empty", f"field {field!r} is missing")
    return problem


class Corpus:
    """A corpus of the config: its size (`count`) and its rows (`rows`), both streamed."""

    def __init__(self, config: CorpusConfig) -> None:
        self.config = config
        self.name = config.resolved_name()
        self.format = config.resolved_format()
        self.path = str(Path(config.path).expanduser())
        self.reference_path = str(Path(config.reference_path).expanduser()) if config.reference_path else None
        self._size: int | None = None

    def check(self, strict: bool = False) -> int:
        """Lines available (non-blank lines for JSONL; all lines of a text pair), capped by max_rows, after
        reading each once: a file that is missing, not UTF-8, not JSON Lines (invalid JSON, a non-object line)
        or has no rows, and a parallel pair whose line counts differ, raise JSONLError (file-level, before any
        model loads); a row whose own text cannot be used is rejected when the rows are read (with `strict`, the
        first one raises here instead)."""
        if self._size is not None:
            return self._size
        limit = self.config.max_rows
        bad: list[BadRow] = []
        if self.format == "jsonl":
            size = sum(1 for _, line in _lines(self.path) if line.strip())
            if limit is not None:
                size = min(size, limit)
            for _ in self._jsonl_rows(bad.append, size):
                pass
        else:
            size = sum(1 for _ in _lines(self.path))
            if self.reference_path:
                ref_size = sum(1 for _ in _lines(self.reference_path))
                if ref_size != size:
                    shorter, line = (self.reference_path, ref_size) if ref_size < size else (self.path, size)
                    raise JSONLError(
                        shorter,
                        line + 1,
                        f"parallel files differ in length: {self.path} has {size} lines, "
                        f"{self.reference_path} has {ref_size}; line {line + 1} has no partner",
                    )
            if limit is not None:
                size = min(size, limit)
            for _ in self._text_rows(bad.append, size):
                pass
        if limit is not None:
            size = min(size, limit)
        if size == 0 or len(bad) == size:
            what = "no rows" if size == 0 else f"no usable row ({bad[0].reason}, and so on)"
            raise JSONLError(self.path, 0, f"corpus {self.name!r} has {what}: nothing to sample")
        if strict and bad:
            first = bad[0]
            raise JSONLError(first.file, first.line, f"{first.reason} (on_bad_row: fail; {len(bad)} such rows)")
        self._size = size
        return size

    def rows(self, on_bad: OnBadRow) -> Generator[SourceRow, None, None]:
        """Good rows in file order; bad ones go to `on_bad` (which may raise to stop)."""
        limit = self.check()
        yield from (self._jsonl_rows if self.format == "jsonl" else self._text_rows)(on_bad, limit)

    def _row(self, line: int, source: str, reference: str | None, source_id: str | None) -> SourceRow:
        c = self.config
        return SourceRow(f"{self.name}:{line}", self.name, line, source, c.src, c.tgt, reference, source_id)

    def _text_rows(self, on_bad: OnBadRow, limit: int) -> Iterator[SourceRow]:
        sources = _lines(self.path)
        refs = _lines(self.reference_path) if self.reference_path else None
        try:
            pairs = zip_longest(sources, refs) if refs is not None else ((s, None) for s in sources)
            for number, (numbered, numbered_ref) in enumerate(pairs, start=1):
                if number > limit:
                    break
                if numbered is None or (refs is not None and numbered_ref is None):
                    # The files changed since `check`: refuse rather than mis-pair.
                    missing = self.path if numbered is None else self.reference_path
                    raise JSONLError(str(missing), number, "parallel files differ in length (changed while read)")
                source = numbered[1].rstrip("\r\n")
                if not source.strip():
                    on_bad(BadRow(self.path, number, self.name, "empty source line"))
                    continue
                problem = check_text(source, "source line")
                if problem is not None:
                    on_bad(BadRow(self.path, number, self.name, problem.message, problem.reason))
                    continue
                reference = None
                if numbered_ref is not None:
                    reference = numbered_ref[1].rstrip("\r\n")
                    if not reference.strip():
                        on_bad(BadRow(str(self.reference_path), number, self.name, "empty reference line"))
                        continue
                yield self._row(number, source, reference, None)
        finally:
            sources.close()
            if refs is not None:
                refs.close()

    def _jsonl_rows(self, on_bad: OnBadRow, limit: int) -> Iterator[SourceRow]:
        """Rows of a JSONL corpus, up to `limit` non-blank lines. Invalid JSON or a non-object is the whole file's
        problem (JSONLError); a row's own bad text goes to `on_bad`."""
        c = self.config
        seen = 0
        has_text_field = False
        for number, line in _lines(self.path):
            if not line.strip():
                continue
            if seen == limit:
                break
            seen += 1
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JSONLError(self.path, number, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(data, dict):
                raise JSONLError(self.path, number, f"expected a JSON object, got {type(data).__name__}")
            has_text_field = has_text_field or c.text_field in data
            problem = _text_problem(data.get(c.text_field), c.text_field)
            if problem is not None:
                on_bad(BadRow(self.path, number, self.name, problem.message, problem.reason))
                continue
            reference = data.get(c.reference_field)
            if reference is not None and (not isinstance(reference, str) or not reference.strip()):
                on_bad(BadRow(self.path, number, self.name, f"field {c.reference_field!r} is empty or not a string"))
                continue
            raw_id = data.get(c.id_field)
            yield self._row(number, data[c.text_field], reference, None if raw_id is None else str(raw_id))
        if seen and not has_text_field:
            raise JSONLError(self.path, 0, f"no row has a field {c.text_field!r} (set text_field for this corpus)")


def _split(n: int, weights: list[float]) -> list[int]:
    """`n` split in proportion to `weights` (largest remainder; ties to the earlier corpus)."""
    wsum = sum(weights)
    if n <= 0 or wsum <= 0:
        return [0] * len(weights)
    exact = [n * w / wsum for w in weights]
    out = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: (out[i] - exact[i], i))[: n - sum(out)]:
        out[i] += 1
    return out


def quotas(sizes: list[int], ratios: list[float | None], total: int | None) -> list[int]:
    """Rows to take from each corpus.

    Without ratios: every row, or `total` rows split in proportion to the corpus sizes. With ratios: the
    shares follow the ratios — of `total`, or of the largest mix the corpora can fill when `total` is None.
    A quota above what a corpus holds is kept (the shortfall is reported at the end, never hidden)."""
    if all(r is not None for r in ratios) and ratios:
        weights = [float(r) for r in ratios]  # type: ignore[arg-type]
        fill = int(min(s / w for s, w in zip(sizes, weights, strict=True)) * sum(weights) + 1e-9)
        return _split(fill if total is None else total, weights)
    if total is None or total >= sum(sizes):
        return list(sizes)
    return _split(total, [float(s) for s in sizes])


@dataclass
class MixState:
    taken: dict[str, int] = field(default_factory=dict)  # good rows emitted per corpus
    quota: dict[str, int] = field(default_factory=dict)
    exhausted: set[str] = field(default_factory=set)  # ran out of good rows before the quota


def mix(
    corpora: list[Corpus], row_quotas: list[int], on_bad: OnBadRow, state: MixState | None = None
) -> Iterator[SourceRow]:
    """Interleave the corpora's good rows so that, at every point of the stream, each corpus has given about
    its share of its quota (smooth, deterministic). A corpus that runs out of rows early is noted in `state`."""
    state = state if state is not None else MixState()
    streams = [c.rows(on_bad) for c in corpora]
    for corpus, q in zip(corpora, row_quotas, strict=True):
        state.quota[corpus.name] = q
        state.taken[corpus.name] = 0
    active = [i for i, q in enumerate(row_quotas) if q > 0]
    while active:
        # The corpus furthest behind its share goes next (ties: config order).
        i = min(active, key=lambda k: ((state.taken[corpora[k].name] + 1) / row_quotas[k], k))
        name = corpora[i].name
        row = next(streams[i], None)
        if row is None:
            state.exhausted.add(name)
            active.remove(i)
            continue
        state.taken[name] += 1
        if state.taken[name] >= row_quotas[i]:
            active.remove(i)
            streams[i].close()
        yield row

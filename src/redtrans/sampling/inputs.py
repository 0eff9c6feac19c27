"""Input corpora, streamed: JSONL (source only or source + reference) or a pair of line-aligned text files.

Nothing here holds a corpus in memory. A cheap counting pass sizes each corpus (and checks that the two
files of a parallel pair have the same number of lines, before any model is loaded); the rows then stream
one at a time, mixed across corpora by their ratios in a deterministic order, so a resumed run sees exactly
the same sequence.

Bad rows (invalid JSON, a non-object, empty or non-string text, an empty reference) are never dropped
silently: with ``on_bad_row="reject"`` each goes to ``rejects.jsonl`` as ``{file, line, corpus, reason}``
and is counted in the stats; with ``"fail"`` the first one stops the run with ``file:line: reason``.
A parallel pair whose files differ in length always fails fast: nothing after the shorter file's end
can be paired.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from redtrans.jsonl import JSONLError
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

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "corpus": self.corpus, "reason": self.reason}


OnBadRow = Callable[[BadRow], None]


def _open(path: str | Path) -> Any:
    try:
        return open(Path(path).expanduser(), encoding="utf-8")
    except FileNotFoundError:
        raise JSONLError(path, 0, "file not found") from None


def _count_lines(path: str | Path, non_blank: bool) -> int:
    n = 0
    with _open(path) as handle:
        for line in handle:
            if not non_blank or line.strip():
                n += 1
    return n


class Corpus:
    """A corpus of the config: its size (`count`) and its rows (`rows`), both streamed."""

    def __init__(self, config: CorpusConfig) -> None:
        self.config = config
        self.name = config.resolved_name()
        self.format = config.resolved_format()
        self.path = str(Path(config.path).expanduser())
        self.reference_path = str(Path(config.reference_path).expanduser()) if config.reference_path else None
        self._size: int | None = None

    def check(self) -> int:
        """Lines available (non-blank lines for JSONL; all lines of a text pair), capped by max_rows.

        Raises JSONLError when a file is missing or a parallel pair's line counts differ."""
        if self._size is not None:
            return self._size
        if self.format == "jsonl":
            size = _count_lines(self.path, non_blank=True)
        else:
            size = _count_lines(self.path, non_blank=False)
            if self.reference_path:
                ref_size = _count_lines(self.reference_path, non_blank=False)
                if ref_size != size:
                    shorter, line = (self.reference_path, ref_size) if ref_size < size else (self.path, size)
                    raise JSONLError(
                        shorter,
                        line + 1,
                        f"parallel files differ in length: {self.path} has {size} lines, "
                        f"{self.reference_path} has {ref_size}; line {line + 1} has no partner",
                    )
        if self.config.max_rows is not None:
            size = min(size, self.config.max_rows)
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
        with _open(self.path) as sources:
            refs = _open(self.reference_path) if self.reference_path else None
            try:
                pairs = zip_longest(sources, refs) if refs is not None else ((s, None) for s in sources)
                for number, (source, reference) in enumerate(pairs, start=1):
                    if number > limit:
                        break
                    if source is None or (refs is not None and reference is None):
                        # The files changed since `check`: refuse rather than mis-pair.
                        missing = self.path if source is None else self.reference_path
                        raise JSONLError(str(missing), number, "parallel files differ in length (changed while read)")
                    source = source.rstrip("\r\n")
                    if not source.strip():
                        on_bad(BadRow(self.path, number, self.name, "empty source line"))
                        continue
                    if reference is not None:
                        reference = reference.rstrip("\r\n")
                        if not reference.strip():
                            on_bad(BadRow(str(self.reference_path), number, self.name, "empty reference line"))
                            continue
                    yield self._row(number, source, reference, None)
            finally:
                if refs is not None:
                    refs.close()

    def _jsonl_rows(self, on_bad: OnBadRow, limit: int) -> Iterator[SourceRow]:
        c = self.config
        seen = 0
        with _open(self.path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                seen += 1
                if seen > limit:
                    break
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    on_bad(BadRow(self.path, number, self.name, f"invalid JSON ({exc.msg} at column {exc.colno})"))
                    continue
                if not isinstance(data, dict):
                    on_bad(BadRow(self.path, number, self.name, f"expected a JSON object, got {type(data).__name__}"))
                    continue
                text = data.get(c.text_field)
                if not isinstance(text, str) or not text.strip():
                    what = (
                        "missing" if c.text_field not in data else "empty" if isinstance(text, str) else "not a string"
                    )
                    on_bad(BadRow(self.path, number, self.name, f"field {c.text_field!r} is {what}"))
                    continue
                reference = data.get(c.reference_field)
                if reference is not None and (not isinstance(reference, str) or not reference.strip()):
                    on_bad(
                        BadRow(self.path, number, self.name, f"field {c.reference_field!r} is empty or not a string")
                    )
                    continue
                raw_id = data.get(c.id_field)
                yield self._row(number, text, reference, None if raw_id is None else str(raw_id))


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

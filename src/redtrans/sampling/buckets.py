"""ΔBLEU buckets and the stratified draw: weighted sampling without replacement, seeded, in O(target) memory.

The journal is read in streaming passes. Each row's random key comes from a hash of (seed, row id), not from
the order rows were journaled in, so the same journal, config and seed always give the same draw — also after
a resume that journaled rows in a different order.

Two methods:
- ``quota`` (stratified; default): pass 1 counts the eligible rows per bucket; bucket b gets
  target × w_b / Σw rows (largest remainder), and a bucket with fewer rows than its share passes the rest to
  the other buckets in proportion to their weights ("water filling"). Pass 2 keeps, per bucket, the rows with
  the smallest keys: a uniform sample without replacement of exactly the quota.
- ``weighted`` (Efraimidis–Spirakis A-Res): one pass; a row of bucket b gets key u^(1/w_b) and the rows
  with the `target` largest keys are kept. Each draw picks a row with probability proportional to its weight,
  so a bucket's share follows count_b × w_b.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.errors import ConfigError
from redtrans.jsonl import read_jsonl, repair_tail


class BucketError(ConfigError):
    """A bucket specification that cannot work."""


def bucket_label(low: float, high: float, last: bool) -> str:
    return f"[{low:g},{high:g}{']' if last else ')'}"


@dataclass
class Buckets:
    """Bucket edges, weights and exclusions; `index(x)` places a ΔBLEU value."""

    edges: list[float]
    weights: list[float]
    exclude: list[int | str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.edges) - 1:
            raise BucketError(f"{len(self.edges) - 1} buckets need as many weights, got {len(self.weights)}")
        self.labels = [
            bucket_label(a, b, i == len(self.edges) - 2)
            for i, (a, b) in enumerate(zip(self.edges, self.edges[1:], strict=False))
        ]
        excluded: set[int] = set()
        for item in self.exclude:
            if isinstance(item, int) or (isinstance(item, str) and item.lstrip("-").isdigit()):
                i = int(item)
                if not 0 <= i < len(self.labels):
                    raise BucketError(
                        f"exclude: no bucket {i} (there are {len(self.labels)}: 0…{len(self.labels) - 1})"
                    )
                excluded.add(i)
            elif item in self.labels:
                excluded.add(self.labels.index(item))
            else:
                raise BucketError(f"exclude: {item!r} is neither a bucket index nor one of {', '.join(self.labels)}")
        self.excluded = excluded

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, value: float) -> int | None:
        """Bucket of `value`; None when it lies outside the edges."""
        if value < self.edges[0] or value > self.edges[-1]:
            return None
        return min(bisect_right(self.edges, value) - 1, len(self.labels) - 1)

    def label(self, value: float | None) -> str | None:
        i = None if value is None else self.index(value)
        return None if i is None else self.labels[i]

    def weight(self, i: int) -> float:
        return 0.0 if i in self.excluded else float(self.weights[i])


def allocate(counts: list[int], weights: list[float], target: int) -> list[int]:
    """Rows per bucket: `target` split by weight, capped by what each bucket holds, the excess passed on to
    the buckets that still have rows, pro rata (water filling). Buckets of weight 0 get nothing."""
    quota = [0] * len(counts)
    active = [i for i, (c, w) in enumerate(zip(counts, weights, strict=True)) if c > 0 and w > 0]
    left = min(target, sum(counts[i] for i in active))
    while active and left > 0:
        wsum = sum(weights[i] for i in active)
        share = {i: left * weights[i] / wsum for i in active}
        full = [i for i in active if share[i] >= counts[i] - quota[i]]
        if full:
            for i in full:
                left -= counts[i] - quota[i]
                quota[i] = counts[i]
                active.remove(i)
            continue
        base = {i: int(share[i]) for i in active}
        rest = left - sum(base.values())
        for i in sorted(active, key=lambda i: (base[i] - share[i], i))[:rest]:
            base[i] += 1
        for i in active:
            quota[i] += base[i]
        left = 0
    return quota


def uniform_key(seed: int, row_id: str) -> float:
    """A uniform number in (0, 1) fixed by (seed, row id)."""
    digest = hashlib.blake2b(f"{seed}\x00{row_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def iter_scored(journal: str | Path) -> Iterator[dict[str, Any]]:
    """Journal rows that carry a ΔBLEU (streamed)."""
    path = Path(journal)
    if not path.is_file():
        return
    repair_tail(path)
    for _, row in read_jsonl(path):
        if isinstance(row.get("delta_bleu"), int | float):
            yield row


@dataclass
class Draw:
    rows: list[dict[str, Any]]  # drawn rows in key order (a seeded shuffle), each with `bucket` set
    available: list[int]  # eligible rows per bucket (before)
    quota: list[int]  # planned rows per bucket (quota method) or drawn rows (weighted)
    drawn: list[int]  # rows drawn per bucket (after)
    journal_rows: int  # scored rows in the journal
    ineligible: int  # scored rows that could not give an SFT example (see the target rule)
    out_of_range: int  # rows whose ΔBLEU lies outside the edges
    no_signal: int = 0  # rows whose round trip failed its checks: not a ΔBLEU signal, left out of the buckets


def draw(
    journal: str | Path | Callable[[], Iterable[dict[str, Any]]],
    buckets: Buckets,
    target: int,
    seed: int,
    method: str = "quota",
    eligible: Callable[[dict[str, Any]], bool] = lambda row: True,
    observe: Callable[[dict[str, Any]], None] | None = None,
    signal: Callable[[dict[str, Any]], bool] = lambda row: True,
) -> Draw:
    """Draw `target` rows (0 = all eligible rows of the buckets kept) from the journal's scored rows.

    `journal` is the journal's path, or a function giving a fresh iterable of scored rows for each pass.
    `observe` sees every scored row of the first pass (statistics without another pass). A row for which
    `signal` is false (a round trip that failed its checks) is in no bucket and counted as `no_signal`."""
    rows_of: Callable[[], Iterable[dict[str, Any]]] = journal if callable(journal) else lambda: iter_scored(journal)
    n = len(buckets)
    available = [0] * n
    journal_rows = ineligible = out_of_range = no_signal = 0
    for row in rows_of():
        journal_rows += 1
        if observe is not None:
            observe(row)
        i = buckets.index(float(row["delta_bleu"]))
        if not signal(row):
            no_signal += 1
        elif i is None:
            out_of_range += 1
        elif not eligible(row):
            ineligible += 1
        else:
            available[i] += 1
    weights = [buckets.weight(i) for i in range(n)]
    keep_all = target == 0
    if keep_all:
        quota = [0 if i in buckets.excluded else available[i] for i in range(n)]
    elif method == "quota":
        quota = allocate(available, weights, target)
    elif method == "weighted":
        quota = [0] * n
    else:
        raise BucketError(f"method: use quota or weighted, not {method!r}")

    heaps: list[list[tuple[float, str, dict[str, Any]]]] = [[] for _ in range(n)]
    pool: list[tuple[float, str, dict[str, Any]]] = []  # weighted method: min-heap of the largest keys
    if keep_all or method == "quota" or target > 0:
        for row in rows_of():
            i = buckets.index(float(row["delta_bleu"]))
            if i is None or not signal(row) or not eligible(row):
                continue
            u = uniform_key(seed, str(row["id"]))
            row["bucket"] = buckets.labels[i]
            if keep_all or method == "quota":
                if quota[i] == 0:
                    continue
                entry = (-u, str(row["id"]), row)  # max-heap on u: keep the smallest keys
                if len(heaps[i]) < quota[i]:
                    heapq.heappush(heaps[i], entry)
                elif entry > heaps[i][0]:
                    heapq.heapreplace(heaps[i], entry)
            else:
                w = weights[i]
                if w <= 0:
                    continue
                key = math.log(u) / w  # log of u^(1/w): same order, no underflow
                entry = (key, str(row["id"]), row)
                if len(pool) < target:
                    heapq.heappush(pool, entry)
                elif entry > pool[0]:
                    heapq.heapreplace(pool, entry)
    if keep_all or method == "quota":
        chosen = sorted(((-k, rid, row) for heap in heaps for k, rid, row in heap), key=lambda e: (e[0], e[1]))
    else:
        chosen = sorted(pool, key=lambda e: (-e[0], e[1]))
    rows = [row for _, _, row in chosen]
    drawn = [0] * n
    for row in rows:
        drawn[buckets.labels.index(row["bucket"])] += 1
    if method == "weighted" and not keep_all:
        quota = list(drawn)
    return Draw(rows, available, quota, drawn, journal_rows, ineligible, out_of_range, no_signal)

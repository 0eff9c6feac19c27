"""Round-trip scores: sentence BLEU (sacrebleu, effective order, the tokenizer `redtrans.scoring` picks for the
source language) and chrF, both on the 0–1 scale, and ΔBLEU = |BLEU(A, C₁) − BLEU(A, C₂)|.

Scoring runs in worker processes (`ScorePool`) in chunks, so it overlaps with generation and uses every core
when generation is fast (endpoints, the stand-in engine); `workers=1` scores in the calling process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from redtrans.scoring import bleu_metric, bleu_tokenizer

_METRICS: dict[str, Any] = {}


def _bleu(lang: str) -> Any:
    """Sentence BLEU with the tokenizer `redtrans.scoring` (and so the bench and SFT evaluation) uses for `lang`."""
    key = f"bleu:{bleu_tokenizer(lang)}"
    if key not in _METRICS:
        _METRICS[key] = bleu_metric(lang, effective_order=True)
    return _METRICS[key]


def _chrf() -> Any:
    if "chrf" not in _METRICS:
        from sacrebleu.metrics import CHRF

        _METRICS["chrf"] = CHRF()
    return _METRICS["chrf"]


def sentence_bleu(hypothesis: str, reference: str, lang: str) -> float:
    """Sentence BLEU of `hypothesis` against one reference in language `lang`, 0–1."""
    if not hypothesis.strip():
        return 0.0
    return _bleu(lang).sentence_score(hypothesis, [reference]).score / 100.0


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF (character 6-grams, β=2), 0–1."""
    if not hypothesis.strip():
        return 0.0
    return _chrf().sentence_score(hypothesis, [reference]).score / 100.0


@dataclass
class RoundTripScore:
    bleu1: float
    bleu2: float
    chrf1: float
    chrf2: float

    @property
    def delta(self) -> float:
        return abs(self.bleu1 - self.bleu2)


# One scoring job: (source A, its language, back translation C₁, back translation C₂).
Job = tuple[str, str, str, str]


def _clear_tokenizer_caches() -> None:
    """sacrebleu's tokenizers memoise up to 65,536 sentences each; a corpus streams past once, so the memo
    only grows memory. Cleared after every chunk: memory stays flat however long the run."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("sacrebleu.tokenizers") or module is None:
            continue
        for value in vars(module).values():
            call = getattr(value, "__call__", None) if isinstance(value, type) else None  # noqa: B004
            if call is not None and hasattr(call, "cache_clear"):
                call.cache_clear()


def score_chunk(jobs: Sequence[Job]) -> list[RoundTripScore]:
    """Scores of a chunk of round trips (runs in a worker process)."""
    try:
        return _score(jobs)
    finally:
        _clear_tokenizer_caches()


def _score(jobs: Sequence[Job]) -> list[RoundTripScore]:
    out = []
    for source, lang, back1, back2 in jobs:
        out.append(
            RoundTripScore(
                sentence_bleu(back1, source, lang),
                sentence_bleu(back2, source, lang),
                sentence_chrf(back1, source),
                sentence_chrf(back2, source),
            )
        )
    return out


def _warm() -> int:
    _bleu("zh"), _bleu("en"), _chrf()  # import sacrebleu and build tokenizers once per worker
    return os.getpid()


class _Done(Future):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.set_result(value)


class ScorePool:
    """Scores chunks in `workers` processes (spawned: safe next to a loaded in-process model's threads)."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            for future in [self._pool.submit(_warm) for _ in range(self.workers)]:
                future.result()

    def submit(self, jobs: Sequence[Job]) -> Future:
        if self._pool is None:
            return _Done(score_chunk(jobs))
        return self._pool.submit(score_chunk, list(jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ScorePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

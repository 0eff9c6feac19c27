"""Bench-specific scores: SNS output failures (empty, copied source, wrong language) and optional neural metrics.

Corpus BLEU, chrF++, their signatures and paired bootstrap significance live in `redtrans.scoring` (below the
stages, shared with `redtrans sft`'s evaluation) and are re-exported here for the bench's callers.
"""

from __future__ import annotations

from collections.abc import Callable

import regex

from redtrans.errors import ConfigError
from redtrans.scoring import (
    CorpusScore,
    PairedResult,
    bleu_metric,
    chrf_metric,
    corpus_scores,
    flat,
    paired_bootstrap,
    sentence_chrf,
)
from redtrans.text.langid import detect_language

__all__ = [
    "CorpusScore",
    "NeuralMetric",
    "NeuralMetricError",
    "PairedResult",
    "bleu_metric",
    "chrf_metric",
    "comet_metric",
    "corpus_scores",
    "flat",
    "is_copy",
    "is_empty",
    "is_wrong_language",
    "paired_bootstrap",
    "sentence_chrf",
]

_NORM = regex.compile(r"[\s\p{P}\p{S}]+")


# -- output failures ------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return _NORM.sub("", text).casefold()


def is_empty(hypothesis: str) -> bool:
    return not hypothesis.strip()


def is_copy(hypothesis: str, source: str) -> bool:
    """The source came back untranslated (ignoring spaces, punctuation and symbols such as emoji)."""
    norm = _norm(hypothesis)
    return bool(norm) and norm == _norm(source) and bool(regex.search(r"\p{L}", source))


def is_wrong_language(hypothesis: str, src: str, tgt: str) -> bool:
    """Language identification (script-based, `text.langid`) says the hypothesis is not in `tgt`."""
    if is_empty(hypothesis) or src == tgt:
        return False
    found = detect_language(hypothesis, {src, tgt})
    return found is not None and found != tgt


# -- neural metrics (optional) --------------------------------------------------------------------------
NeuralMetric = Callable[[list[str], list[str], list[str]], list[float]]
"""(sources, hypotheses, references) -> one score per segment; the system score is their mean."""


class NeuralMetricError(ConfigError):
    """A neural metric was asked for but cannot run here."""


def comet_metric(model_path: str, batch_size: int = 8) -> NeuralMetric:
    """A COMET scorer ``(sources, hypotheses, references) -> segment scores`` from a local checkpoint.

    Optional: needs the ``unbabel-comet`` package and a downloaded model (e.g. ``Unbabel/wmt22-comet-da``'s
    ``checkpoints/model.ckpt``); neither is installed by redtrans.
    """
    from pathlib import Path

    try:
        from comet import load_from_checkpoint
    except ImportError:
        raise NeuralMetricError(
            "COMET needs the unbabel-comet package (pip install unbabel-comet) and a local checkpoint; "
            "run without --comet to skip it"
        ) from None
    if not Path(model_path).is_file():
        raise NeuralMetricError(f"COMET checkpoint not found: {model_path} (give the path of model.ckpt)")
    model = load_from_checkpoint(model_path)

    def score(sources: list[str], hypotheses: list[str], references: list[str]) -> list[float]:
        data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references, strict=True)]
        return [float(x) for x in model.predict(data, batch_size=batch_size, gpus=0, progress_bar=False).scores]

    return score

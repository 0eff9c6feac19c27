"""Corpus scores shared by every stage, all from sacrebleu (nothing re-implemented): BLEU with the target
language's tokenizer, chrF++, their sacrebleu signatures, and paired bootstrap significance.

It sits below the stages: `redtrans bench` reports these numbers per slice and `redtrans sft` reports them on its
held-out rows, so the same hypotheses score the same in both, with the same signatures. Sampling's sentence BLEU
(ΔBLEU) takes its tokenizer choice from `bleu_tokenizer` here.

- **BLEU** uses ``redtrans.languages.get_language(tgt).bleu_tokenizer``: ``zh`` for Chinese (13a would see an
  unsegmented Chinese sentence as one token and score it near zero), ``13a`` for English (and sacrebleu's
  default ``13a`` when the target language is unknown). Reported on the paper's 0–1 scale (``bleu``) and the
  usual 0–100 (``bleu_100``) with the sacrebleu signature.
- **chrF++** is ``sacrebleu.metrics.CHRF(word_order=2)``: character 6-grams plus word uni- and bigrams. sacrebleu
  splits words on whitespace, so for unsegmented Chinese a "word" is a whole space-free chunk (usually a
  clause); those word n-grams rarely match and chrF++ on zh ≈ chrF on zh, slightly lower. That is sacrebleu's
  behaviour and what its CLI reports; we do not segment Chinese first.
- Text is scored on one line per segment, with runs of whitespace (line breaks of multi-line posts included)
  collapsed to one space (`flat`). BLEU and chrF++ read whitespace only as a token boundary, so the sacrebleu CLI
  gives the same numbers on files written that way.
- A corpus mixing target languages is not scored as one (its tokenizers differ): score per direction.

sacrebleu is imported when first used, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redtrans.languages import get_language

if TYPE_CHECKING:
    from sacrebleu.metrics import BLEU, CHRF

__all__ = [
    "CorpusScore",
    "PairedResult",
    "bleu_metric",
    "bleu_tokenizer",
    "chrf_metric",
    "corpus_scores",
    "flat",
    "paired_bootstrap",
    "sentence_chrf",
]


def flat(text: str) -> str:
    """One line, whitespace runs collapsed: how hypotheses and references are scored and written."""
    return " ".join(text.split())


def bleu_tokenizer(tgt: str | None) -> str:
    """The sacrebleu tokenizer for BLEU into `tgt` (from `redtrans.languages`); ``13a`` when `tgt` is None."""
    return get_language(tgt).bleu_tokenizer if tgt else "13a"


def bleu_metric(tgt: str | None, *, effective_order: bool = False) -> BLEU:
    """sacrebleu BLEU with the tokenizer of `tgt` (`effective_order` for sentence-level scores)."""
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=bleu_tokenizer(tgt), effective_order=effective_order)


def chrf_metric() -> CHRF:
    """chrF++: sacrebleu ``CHRF(word_order=2)``."""
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=2)


@dataclass
class CorpusScore:
    """Corpus BLEU and chrF++ of one direction, with the sacrebleu signatures that reproduce them."""

    bleu: float
    """BLEU on the paper's 0–1 scale."""
    bleu_100: float
    """BLEU on sacrebleu's 0–100 scale."""
    chrf: float
    """chrF++, 0–100."""
    bleu_signature: str
    chrf_signature: str
    n: int
    """Segments scored."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "bleu": round(self.bleu, 4),
            "bleu_100": round(self.bleu_100, 2),
            "chrf++": round(self.chrf, 2),
            "bleu_signature": self.bleu_signature,
            "chrf_signature": self.chrf_signature,
        }


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], tgt: str | None) -> CorpusScore:
    """Corpus BLEU (tokenizer of `tgt`) and chrF++ of one direction, computed by sacrebleu."""
    hyps, refs = [flat(h) for h in hypotheses], [flat(r) for r in references]
    bleu, chrf = bleu_metric(tgt), chrf_metric()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return CorpusScore(b.score / 100, b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()), len(hyps))


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF++ (0–100) of one hypothesis."""
    return float(chrf_metric().sentence_score(flat(hypothesis), [flat(reference)]).score)


@dataclass
class PairedResult:
    metric: str
    score: float
    mean: float | None
    ci: float | None
    p_value: float | None
    difference: tuple[float, float] | None = None
    """The 95% interval of the difference to the baseline (this system − baseline), from the same resamples:
    its lower end ≥ −margin is what a non-inferiority claim needs ("not worse by more than the margin")."""


def paired_bootstrap(
    named: list[tuple[str, Sequence[str]]],
    references: Sequence[str],
    tgt: str,
    n_samples: int = 1000,
    seed: int = 12345,
) -> tuple[dict[str, str], dict[str, dict[str, PairedResult]]]:
    """sacrebleu's paired bootstrap resampling (``sacrebleu.significance.PairedTest``, test_type="bs") of every
    system against the first (the baseline), for BLEU and chrF++. Returns (signatures, {system: {metric: …}})."""
    from sacrebleu.significance import PairedTest

    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        systems: list[tuple[str, Sequence[str]]] = [(name, [flat(h) for h in hyps]) for name, hyps in named]
        test = PairedTest(
            systems,
            {"bleu": bleu_metric(tgt), "chrf++": chrf_metric()},
            [[flat(r) for r in references]],
            test_type="bs",
            n_samples=n_samples,
        )
        signatures, table = test()
        intervals = _difference_intervals(systems, [flat(r) for r in references], tgt, n_samples, seed)
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous
    out: dict[str, dict[str, PairedResult]] = {}
    metric_names = [k for k in table if k != "System"]
    for row, name in enumerate(table["System"]):
        out[str(name)] = {}
        for metric_name in metric_names:
            result = table[metric_name][row]
            assert not isinstance(result, str)
            key = "bleu" if metric_name.upper().startswith("BLEU") else "chrf++"
            interval = intervals.get(str(name), {}).get(key)
            out[str(name)][key] = PairedResult(key, result.score, result.mean, result.ci, result.p_value, interval)
    sigs = {("bleu" if k.upper().startswith("BLEU") else "chrf++"): str(v) for k, v in signatures.items()}
    return sigs, out


def _difference_intervals(
    systems: Sequence[tuple[str, Sequence[str]]], references: Sequence[str], tgt: str, n_samples: int, seed: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """95% percentile intervals of each system's score minus the baseline's (the first), BLEU and chrF++, over the
    resamples sacrebleu's paired bootstrap draws with the same seed (`numpy.random.default_rng(seed).choice`), from
    the segment statistics sacrebleu's metrics extract for its own test."""
    import numpy as np

    n = len(references)
    if n == 0 or len(systems) < 2:
        return {}
    idxs = np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for key, metric in (("bleu", bleu_metric(tgt)), ("chrf++", chrf_metric())):

        def resampled(hyps: Sequence[str], metric: Any = metric) -> Any:
            stats = np.array(metric._extract_corpus_statistics(hyps, [references]), dtype="float32")
            return np.array([metric._compute_score_from_stats(sample.sum(0)).score for sample in stats[idxs]])

        base = resampled(systems[0][1])
        for name, hyps in systems[1:]:
            low, high = np.percentile(resampled(hyps) - base, [2.5, 97.5])
            out.setdefault(name, {})[key] = (float(low), float(high))
    return out

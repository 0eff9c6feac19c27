"""Scores, all from sacrebleu (nothing re-implemented): corpus BLEU with the target language's tokenizer,
chrF++, paired bootstrap significance; plus SNS fidelity and output-failure rates.

- **BLEU** uses ``redtrans.languages.get_language(tgt).bleu_tokenizer``: ``zh`` for Chinese (13a would see an
  unsegmented Chinese sentence as one token and score it near zero), ``13a`` for English. Reported on the paper's
  0–1 scale (``bleu``) and the usual 0–100 (``bleu_100``) with the sacrebleu signature.
- **chrF++** is ``sacrebleu.metrics.CHRF(word_order=2)``: character 6-grams plus word uni- and bigrams. sacrebleu
  splits words on whitespace, so for unsegmented Chinese a "word" is a whole space-free chunk (usually a
  clause); those word n-grams rarely match and chrF++ on zh ≈ chrF on zh, slightly lower. That is sacrebleu's
  behaviour and what its CLI reports; we do not segment Chinese first.
- Text is scored on one line per segment, with runs of whitespace (line breaks of multi-line posts included)
  collapsed to one space. BLEU and chrF++ read whitespace only as a token boundary, and this is exactly what is
  written to the plain-text files, so the sacrebleu CLI gives the same numbers on them.
- A slice mixing target languages is not scored as one corpus (its tokenizers differ); slices are per direction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex
from sacrebleu.metrics import BLEU, CHRF

from redtrans.errors import ConfigError
from redtrans.languages import get_language
from redtrans.text.langid import detect_language

_NORM = regex.compile(r"[\s\p{P}\p{S}]+")


def flat(text: str) -> str:
    """One line, whitespace runs collapsed: how hypotheses and references are scored and written."""
    return " ".join(text.split())


def bleu_metric(tgt: str) -> BLEU:
    return BLEU(tokenize=get_language(tgt).bleu_tokenizer)


def chrf_metric() -> CHRF:
    return CHRF(word_order=2)


@dataclass
class CorpusScore:
    bleu: float  # 0–1, the paper's scale
    bleu_100: float
    chrf: float  # chrF++, 0–100
    bleu_signature: str
    chrf_signature: str
    n: int

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "bleu": round(self.bleu, 4),
            "bleu_100": round(self.bleu_100, 2),
            "chrf++": round(self.chrf, 2),
            "bleu_signature": self.bleu_signature,
            "chrf_signature": self.chrf_signature,
        }


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], tgt: str) -> CorpusScore:
    """Corpus BLEU (tokenizer of `tgt`) and chrF++ of one direction, computed by sacrebleu."""
    hyps, refs = [flat(h) for h in hypotheses], [flat(r) for r in references]
    bleu, chrf = bleu_metric(tgt), chrf_metric()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return CorpusScore(b.score / 100, b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()), len(hyps))


def sentence_chrf(hypothesis: str, reference: str) -> float:
    return chrf_metric().sentence_score(flat(hypothesis), [flat(reference)]).score


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


# -- significance ---------------------------------------------------------------------------------------
@dataclass
class PairedResult:
    metric: str
    score: float
    mean: float | None
    ci: float | None
    p_value: float | None


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
        systems = [(name, [flat(h) for h in hyps]) for name, hyps in named]
        test = PairedTest(
            systems,
            {"bleu": bleu_metric(tgt), "chrf++": chrf_metric()},
            [[flat(r) for r in references]],
            test_type="bs",
            n_samples=n_samples,
        )
        signatures, table = test()
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
            key = "bleu" if metric_name.upper().startswith("BLEU") else "chrf++"
            out[str(name)][key] = PairedResult(key, result.score, result.mean, result.ci, result.p_value)
    sigs = {("bleu" if k.upper().startswith("BLEU") else "chrf++"): str(v) for k, v in signatures.items()}
    return sigs, out


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
        from comet import load_from_checkpoint  # type: ignore[import-not-found]
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

"""Translation quality during and after fine-tuning: held-out rows translated by the model being trained,
scored exactly as `redtrans bench` scores.

Generation goes through the ``hf`` engine: its config comes from ``EngineSpec(kind="hf", parallel=…)`` (so
``parallel`` means the batch size, as everywhere) and its request → prompt → generate → decode path is the one
that serves the trained adapter (`TrainedModelEngine` only binds it to the weights in memory instead of
loading them from disk). Requests are built as the translator builds them: chat ``messages`` from
`redtrans.prompts`, or the few-shot completion prompt with `prompts.COMPLETION_STOP` for base models.

Scores come from `redtrans.scoring`: corpus BLEU (tokenizer of the target language) and chrF++ per direction,
with their sacrebleu signatures; the same hypotheses give the same numbers in ``redtrans bench``. Trainer
metrics (``eval_bleu``, ``eval_chrf``, ``eval_bleu_zh-en``, …) are on sacrebleu's 0–100 scale (the bench's
``bleu_100`` and ``chrf++``), macro-averaged over directions when there are several.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redtrans import prompts
from redtrans.engines.base import GenRequest
from redtrans.engines.hf import HFConfig, HFEngine
from redtrans.engines.spec import EngineSpec
from redtrans.scoring import CorpusScore, corpus_scores
from redtrans.train.data import Example

__all__ = [
    "TrainedModelEngine",
    "TranslationEval",
    "score_by_direction",
    "score_translations",
    "sft_trainer_class",
    "translation_requests",
]


def score_by_direction(hypotheses: Sequence[str], examples: Sequence[Example]) -> dict[str, CorpusScore]:
    """`redtrans.scoring.corpus_scores` of each direction (``src-tgt``) the examples hold."""
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.direction, []).append(i)
    return {
        direction: corpus_scores(
            [hypotheses[i] for i in idx], [examples[i].reference for i in idx], examples[idx[0]].tgt
        )
        for direction, idx in sorted(groups.items())
    }


def score_translations(hypotheses: Sequence[str], examples: Sequence[Example]) -> dict[str, float]:
    """Trainer metrics: ``bleu_<src>-<tgt>``, ``chrf_<src>-<tgt>`` (0–100) per direction and ``bleu``, ``chrf``
    (their macro average)."""
    scores = score_by_direction(hypotheses, examples)
    out: dict[str, float] = {}
    for direction, s in scores.items():
        out[f"bleu_{direction}"], out[f"chrf_{direction}"] = round(s.bleu_100, 2), round(s.chrf, 2)
    out["bleu"] = round(sum(s.bleu_100 for s in scores.values()) / len(scores), 2)
    out["chrf"] = round(sum(s.chrf for s in scores.values()) / len(scores), 2)
    return out


def translation_requests(examples: Sequence[Example], max_new_tokens: int) -> list[GenRequest]:
    """Greedy requests for the examples' prompts, as the translator sends them."""
    return [
        GenRequest(messages=e.prompt, max_tokens=max_new_tokens)
        if isinstance(e.prompt, list)
        else GenRequest(prompt=e.prompt, max_tokens=max_new_tokens, stop=list(prompts.COMPLETION_STOP))
        for e in examples
    ]


class TrainedModelEngine(HFEngine):
    """The ``hf`` engine over a model already in memory (the one being trained) instead of one read from disk.

    Generation, prompts and decoding are `HFEngine`'s; around each call the model is put in eval mode and the
    tokenizer pads on the left, and both are restored afterwards, so training continues unchanged."""

    def __init__(self, config: HFConfig, model: Any, tokenizer: Any) -> None:  # noqa: D107
        import torch

        self.config = config
        self._torch = torch
        self.model = config.model or "trained"
        self._model, self._tok = model, tokenizer
        self._device = next(model.parameters()).device
        self.chat = tokenizer.chat_template is not None
        self.parallelism = max(1, config.batch_size)

    def generate(self, requests: list[GenRequest]) -> list[Any]:
        was_training, side = self._model.training, self._tok.padding_side
        self._model.eval()
        self._tok.padding_side = "left"
        try:
            return super().generate(requests)
        finally:
            self._tok.padding_side = side
            if was_training:
                self._model.train()


def trained_model_engine(model: Any, tokenizer: Any, batch_size: int, name: str = "trained") -> TrainedModelEngine:
    """A `TrainedModelEngine` whose config is the hf kind's, resolved from an `EngineSpec`."""
    config = EngineSpec(kind="hf", model=name, parallel=batch_size).engine_config()
    assert isinstance(config, HFConfig)
    return TrainedModelEngine(config, model, tokenizer)


class TranslationEval:
    """Translates a few held-out rows with the model being trained and scores them (BLEU, chrF++).

    Every process generates the same rows (required under DeepSpeed ZeRO-3, where forward passes are collective;
    transformers' `generate` then keeps the processes in step); only the main process writes."""

    def __init__(
        self, examples: list[Example], tokenizer: Any, max_new_tokens: int, batch_size: int, name: str = "trained"
    ) -> None:
        self.examples, self.tokenizer = examples, tokenizer
        self.max_new_tokens, self.batch_size, self.name = max_new_tokens, batch_size, name
        self.last_samples: list[dict[str, Any]] = []
        self.last_scores: dict[str, CorpusScore] = {}

    def __call__(self, model: Any) -> dict[str, float]:
        engine = trained_model_engine(model, self.tokenizer, self.batch_size, self.name)
        results = engine.generate(translation_requests(self.examples, self.max_new_tokens))
        hyps = [r.text.strip() for r in results]
        self.last_samples = [
            {"id": e.id, "direction": e.direction, "reference": e.reference, "translation": h}
            for e, h in zip(self.examples, hyps, strict=True)
        ]
        self.last_scores = score_by_direction(hyps, self.examples)
        return score_translations(hyps, self.examples)


_TRAINER_CLASS: type | None = None


def sft_trainer_class() -> type:
    """`trl.SFTTrainer` whose evaluation also reports translation quality (`eval_bleu`, `eval_chrf`, …), so the
    scores reach every logger (JSON lines, TensorBoard) with the evaluation loss. Training itself is TRL's."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        from trl import SFTTrainer

        class RedTransSFTTrainer(SFTTrainer):
            translation_eval: TranslationEval | None = None

            def evaluation_loop(
                self,
                dataloader: Any,
                description: str,
                prediction_loss_only: bool | None = None,
                ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "eval",
            ) -> Any:
                output = super().evaluation_loop(
                    dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
                )
                if self.translation_eval is not None and output.metrics is not None:
                    scores = self.translation_eval(self.accelerator.unwrap_model(self.model))
                    output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in scores.items()})
                return output

        _TRAINER_CLASS = RedTransSFTTrainer
    return _TRAINER_CLASS

"""`RePOTrainer`: TRL's `DPOTrainer` plus the RePO truth term on expert rewrites (imports TRL; load it lazily).

Everything of DPO stays TRL's: tokenization, collation, the reference (a second model, the PEFT adapter
switched off, or `precompute_ref_log_probs`), the sigmoid loss and its metrics (`rewards/*`, `logps/*`, …).
The subclass only

- keeps the dataset's boolean ``rewritten`` column through TRL's column filter and collator into the batch
  (a bool tensor over the pairs; it never reaches the model's forward);
- reads the policy's per-token log-probabilities of the chosen answers from the forward pass TRL already runs
  (no second policy forward), and adds ``lambda_truth · T`` to TRL's loss, where T is the per-token mean NLL
  of the chosen answer averaged over the batch's rows that are expert rewrites (docs/training.md, "RePO");
- logs ``truth_nll`` (T over the logging window, gathered over processes) beside TRL's metrics, also when
  ``lambda_truth`` is 0, so a DPO baseline reports the same number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

TRUTH_TERMS = ("rewritten", "all_chosen")


@dataclass
class PreferenceCollatorWithRewritten(DataCollatorForPreference):
    """TRL's preference collator, also returning ``rewritten`` (bool, one per pair) when the rows carry it."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = super().torch_call(examples)
        if examples and "rewritten" in examples[0]:
            out["rewritten"] = torch.tensor([bool(e["rewritten"]) for e in examples], dtype=torch.bool)
        return out


class _FirstForward:
    """Calls the wrapped model and keeps the outputs of the first call (the policy forward of TRL's loss)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.outputs: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        if self.outputs is None:
            self.outputs = out
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def truth_nll_per_row(
    per_token_logps: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token mean NLL of each chosen answer, its token count) from TRL's ``[chosen; rejected]`` batch.

    `per_token_logps` are the log-probabilities of the next tokens (``[2B, L-1]``, 0 where masked);
    `completion_mask` the collator's ``[2B, L]`` mask."""
    shift_mask = completion_mask[:, 1:].to(per_token_logps.dtype)
    seq_len = shift_mask.size(1)
    logps = per_token_logps[:, -seq_len:]
    chosen_logps, _ = logps.chunk(2, dim=0)
    chosen_mask, _ = shift_mask.chunk(2, dim=0)
    tokens = chosen_mask.sum(dim=1)
    nll = -(chosen_logps * chosen_mask).sum(dim=1) / tokens.clamp(min=1.0)
    return nll, tokens


def masked_truth_term(nll: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, number of rows in it): the mean of `nll` over the selected rows that kept ≥ 1 answer token; T = 0
    (still attached to the graph) when there are none."""
    weights = rows.to(nll.dtype) * (tokens > 0).to(nll.dtype)
    count = weights.sum()
    term = (nll * weights).sum() / count.clamp(min=1.0)
    return term, count


class RePOTrainer(DPOTrainer):
    """`trl.DPOTrainer` + ``lambda_truth`` × the masked truth term (see the module docstring)."""

    def __init__(self, *args: Any, lambda_truth: float = 1.0, truth_term: str = "rewritten", **kwargs: Any) -> None:
        if truth_term not in TRUTH_TERMS:
            raise ValueError(f"truth_term must be one of {', '.join(TRUTH_TERMS)}, not {truth_term!r}")
        if lambda_truth < 0:
            raise ValueError(f"lambda_truth must be >= 0, not {lambda_truth}")
        self.lambda_truth = float(lambda_truth)
        self.truth_term = truth_term
        if kwargs.get("data_collator") is None:
            dpo_args = kwargs.get("args")  # give args and processing_class as keywords
            tokenizer = kwargs.get("processing_class")
            if dpo_args is not None and tokenizer is not None and hasattr(tokenizer, "pad_token_id"):
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                kwargs["data_collator"] = PreferenceCollatorWithRewritten(
                    pad_token_id=tokenizer.pad_token_id,
                    max_length=dpo_args.max_length,
                    truncation_mode=dpo_args.truncation_mode,
                    pad_to_multiple_of=dpo_args.pad_to_multiple_of,
                )
        super().__init__(*args, **kwargs)

    def _set_signature_columns_if_needed(self) -> None:
        # TRL keeps only the tokenized columns (remove_unused_columns); `rewritten` must reach the collator.
        super()._set_signature_columns_if_needed()
        columns: list[str] = list(self._signature_columns or [])
        if "rewritten" not in columns:
            self._signature_columns = [*columns, "rewritten"]  # type: ignore[assignment]

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != "rewritten"}
        return super().compute_ref_log_probs(model, inputs)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        inputs = dict(inputs)
        rewritten = inputs.pop("rewritten", None)
        recorder = _FirstForward(model)
        result = super().compute_loss(recorder, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        if recorder.outputs is None or getattr(recorder.outputs, "log_probs", None) is None:
            raise RuntimeError("RePOTrainer: TRL's loss made no policy forward with per-token log-probabilities")
        nll, tokens = truth_nll_per_row(recorder.outputs.log_probs, inputs["completion_mask"])
        if self.truth_term == "all_chosen":
            rows = torch.ones_like(nll, dtype=torch.bool)
        elif rewritten is None:
            rows = torch.zeros_like(nll, dtype=torch.bool)
        else:
            rows = rewritten.to(nll.device).bool()
        term, count = masked_truth_term(nll, tokens, rows)
        if self.lambda_truth:
            loss = loss + self.lambda_truth * term

        mode = "train" if getattr(self.model, "training", False) else "eval"
        total = self.accelerator.gather(count.detach().reshape(1)).sum()
        summed = self.accelerator.gather((term.detach() * count.detach()).reshape(1)).sum()
        if total.item() > 0:
            self._metrics[mode]["truth_nll"].append((summed / total).item())
        return (loss, result[1]) if return_outputs else loss

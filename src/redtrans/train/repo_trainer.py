"""`RePOTrainer`: TRL's `DPOTrainer` plus the RePO truth term on expert rewrites (imports TRL; load it lazily).

Everything of DPO stays TRL's: tokenization, collation, the reference (a second model, the PEFT adapter
switched off, or `precompute_ref_log_probs`), the per-pair sigmoid loss and its metrics (`rewards/*`,
`logps/*`, …). The subclass

- keeps the dataset's boolean ``rewritten`` column (and, for the random-rewrite ablation, a ``truth`` answer)
  through TRL's column filter, tokenizer and collator into the batch; they never reach the model's forward;
- makes the objective a **per-pair sum averaged over every pair of one optimizer step**, across gradient
  accumulation and processes: ℓᵢ = ℓ_DPO,ᵢ + λ·rᵢ·Tᵢ, L = (1/N) Σᵢ ℓᵢ, N = the pairs of the step on all
  processes (counted by `_get_num_items_in_batch`, gathered). A micro-batch contributes Σ_{i∈mb} ℓᵢ · W/N
  (W = processes; data parallelism averages gradients over W), so micro-batch size, accumulation and device
  count give the same objective and the same gradients (docs/training.md, "The objective, exactly");
- reads Tᵢ, the NLL of the chosen answer y_t (``truth_reduction``: ``sequence`` = −log π(y_t|x), the paper's;
  ``token_mean`` = that over its token count), from the policy forward TRL already runs (no second forward),
  or from one extra policy forward over the ``truth`` answers when the rows carry them;
- logs ``truth_nll`` (the per-token mean NLL of the covered rows' own y_t, gathered over processes, whatever the
  reduction and target trained) beside TRL's metrics, also when λ is 0, so every arm reports the same number;
  with ``truth`` answers also ``truth_target_nll``, the same of the answers the truth term trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

TRUTH_TERMS = ("rewritten", "all_chosen")
TRUTH_REDUCTIONS = ("sequence", "token_mean")
TRUTH_KEYS = ("truth_input_ids", "truth_attention_mask", "truth_completion_mask")


@dataclass
class PreferenceCollatorWithRewritten(DataCollatorForPreference):
    """TRL's preference collator, also returning ``rewritten`` (bool, one per pair) when the rows carry it, and the
    ``truth`` sequences (prompt + truth answer, padded and truncated as TRL does the chosen ones) when they carry
    ``truth_ids``."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = super().torch_call(examples)
        if examples and "rewritten" in examples[0]:
            out["rewritten"] = torch.tensor([bool(e["rewritten"]) for e in examples], dtype=torch.bool)
        if examples and "truth_ids" in examples[0]:
            truth = super().torch_call(
                [{"prompt_ids": e["prompt_ids"], "chosen_ids": e["truth_ids"], "rejected_ids": []} for e in examples]
            )
            rows = len(examples)
            out["truth_input_ids"] = truth["input_ids"][:rows]
            out["truth_attention_mask"] = truth["attention_mask"][:rows]
            out["truth_completion_mask"] = truth["completion_mask"][:rows]
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


def answer_nll(per_token_logps: torch.Tensor, completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL of each answer, its token count): `per_token_logps` are the log-probabilities of the next tokens
    (``[R, L-1]``, 0 where masked, as TRL's forward returns them), `completion_mask` the collator's ``[R, L]``."""
    shift_mask = completion_mask[:, 1:].to(per_token_logps.dtype)
    logps = per_token_logps[:, -shift_mask.size(1) :]
    return -(logps * shift_mask).sum(dim=1), shift_mask.sum(dim=1)


def truth_per_row(nll_sum: torch.Tensor, tokens: torch.Tensor, reduction: str) -> torch.Tensor:
    """Tᵢ: the sequence NLL −log π(y_t|x) (``sequence``) or its per-token mean (``token_mean``)."""
    return nll_sum if reduction == "sequence" else nll_sum / tokens.clamp(min=1.0)


class RePOTrainer(DPOTrainer):
    """`trl.DPOTrainer` + ``lambda_truth`` × the truth term, one per-pair objective per optimizer step (see the
    module docstring)."""

    # compute_loss returns the micro-batch's share of the step's mean (see `_get_num_items_in_batch`): the
    # Trainer must not divide it by the accumulation steps again.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        lambda_truth: float = 1.0,
        truth_term: str = "rewritten",
        truth_reduction: str = "sequence",
        **kwargs: Any,
    ) -> None:
        if truth_term not in TRUTH_TERMS:
            raise ValueError(f"truth_term must be one of {', '.join(TRUTH_TERMS)}, not {truth_term!r}")
        if truth_reduction not in TRUTH_REDUCTIONS:
            raise ValueError(f"truth_reduction must be one of {', '.join(TRUTH_REDUCTIONS)}, not {truth_reduction!r}")
        if lambda_truth < 0:
            raise ValueError(f"lambda_truth must be >= 0, not {lambda_truth}")
        self.lambda_truth = float(lambda_truth)
        self.truth_term = truth_term
        self.truth_reduction = truth_reduction
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
        self._restore_lora_dropout()

    def _restore_lora_dropout(self) -> None:
        """TRL's `disable_dropout` zeroes every `nn.Dropout`, LoRA's included; LoRA's is set back to its configured
        `lora_dropout`. It never reaches π_ref (the adapter switched off, or a separate model), so the reference
        log-probabilities stay deterministic, and with B = 0 it leaves the first step's rewards at 0."""
        peft_config = getattr(self.model, "peft_config", None)
        if self.model is None or not isinstance(peft_config, dict):
            return
        for name, module in self.model.named_modules():
            parts = name.split(".")
            if len(parts) >= 2 and parts[-2] == "lora_dropout" and isinstance(module, torch.nn.Dropout):
                adapter = peft_config.get(parts[-1])
                if adapter is not None:
                    module.p = float(getattr(adapter, "lora_dropout", 0.0) or 0.0)

    # ------------------------------------------------------------------------------------------------- data

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        """TRL's tokenization; a ``truth`` column is tokenized by the same code (as the chosen answer of a
        stand-in pair) into ``truth_ids``."""
        has_truth = "truth" in (getattr(dataset, "column_names", None) or [])
        prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not has_truth or "truth_ids" in prepared.column_names:
            return prepared
        stand_in = dataset.remove_columns(["chosen", "rejected"]).rename_column("truth", "chosen")
        stand_in = stand_in.add_column("rejected", list(stand_in["chosen"]))
        tokenized = super()._prepare_dataset(stand_in, processing_class, args, f"{dataset_name} truth")
        if tokenized["prompt_ids"] != prepared["prompt_ids"]:
            raise RuntimeError("RePOTrainer: the truth answers tokenized against other prompts than the pairs")
        return prepared.add_column("truth_ids", tokenized["chosen_ids"])

    def _set_signature_columns_if_needed(self) -> None:
        # TRL keeps only the tokenized columns (remove_unused_columns); ours must reach the collator.
        super()._set_signature_columns_if_needed()
        columns: list[str] = list(self._signature_columns or [])
        self._signature_columns = [*columns, *(c for c in ("rewritten", "truth_ids") if c not in columns)]  # type: ignore[assignment]

    def _get_num_items_in_batch(self, batch_samples: list[Any], device: torch.device) -> torch.Tensor | None:
        """N: the pairs of one optimizer step on all processes (the batches TRL collates hold [chosen; rejected])."""
        if not batch_samples or "input_ids" not in batch_samples[0]:
            return None
        pairs = sum(int(batch["input_ids"].size(0)) // 2 for batch in batch_samples)
        count = torch.tensor(pairs, device=device, dtype=torch.float32)
        if self.args.world_size > 1:
            count = self.accelerator.gather(count.reshape(1)).sum()
        return count

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != "rewritten" and k not in TRUTH_KEYS}
        return super().compute_ref_log_probs(model, inputs)

    # ------------------------------------------------------------------------------------------------- loss

    def _truth_forward(self, model: Any, truth: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed NLL, tokens) of the ``truth`` answers under the policy: one more forward, through the unwrapped
        module so data parallelism sees one forward per backward (its gradient hooks fire once per parameter)."""
        module = self.accelerator.unwrap_model(model)
        mask = truth["truth_completion_mask"]
        labels = truth["truth_input_ids"].masked_fill(mask == 0, -100)
        outputs = module(
            input_ids=truth["truth_input_ids"],
            attention_mask=truth["truth_attention_mask"],
            labels=labels,
            use_cache=False,
            fused_lm_head=True,
        )
        return answer_nll(outputs.log_probs, mask)

    def _log_mean_nll(
        self, mode: str, name: str, nll_sum: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor
    ) -> None:
        """Log the per-token mean NLL averaged over `rows` of every process (nothing when no process has one)."""
        per_token = (nll_sum / tokens.clamp(min=1.0)).detach()
        count = self.accelerator.gather(rows.sum().detach().reshape(1)).sum()
        total = self.accelerator.gather((per_token * rows).sum().detach().reshape(1)).sum()
        if count.item() > 0:
            self._metrics[mode][name].append((total / count).item())

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        inputs = dict(inputs)
        rewritten = inputs.pop("rewritten", None)
        truth = {k: inputs.pop(k) for k in TRUTH_KEYS if k in inputs}
        recorder = _FirstForward(model)
        result = super().compute_loss(recorder, inputs, return_outputs, num_items_in_batch)
        dpo_mean = result[0] if return_outputs else result  # TRL: the mean of ℓ_DPO,ᵢ over this micro-batch
        if recorder.outputs is None or getattr(recorder.outputs, "log_probs", None) is None:
            raise RuntimeError("RePOTrainer: TRL's loss made no policy forward with per-token log-probabilities")
        pairs = inputs["input_ids"].size(0) // 2
        own_sum, own_tokens = answer_nll(recorder.outputs.log_probs, inputs["completion_mask"])
        own_sum, own_tokens = own_sum[:pairs], own_tokens[:pairs]  # the chosen half of [chosen; rejected]
        nll_sum, tokens = self._truth_forward(model, truth) if truth else (own_sum, own_tokens)
        if self.truth_term == "all_chosen":
            rows = torch.ones_like(nll_sum, dtype=torch.bool)
        elif rewritten is None:
            rows = torch.zeros_like(nll_sum, dtype=torch.bool)
        else:
            rows = rewritten.to(nll_sum.device).bool()
        r = rows.to(nll_sum.dtype) * (tokens > 0).to(nll_sum.dtype)  # a y_t truncated away has no term
        summed = dpo_mean * pairs
        if self.lambda_truth:
            summed = summed + self.lambda_truth * (r * truth_per_row(nll_sum, tokens, self.truth_reduction)).sum()
        training = bool(getattr(self.model, "training", False))
        if num_items_in_batch is not None and training:
            loss = summed * self.accelerator.num_processes / num_items_in_batch
        else:  # evaluation (and a direct call): the mean over this batch's pairs
            loss = summed / max(pairs, 1)

        mode = "train" if training else "eval"
        own_rows = rows.to(own_sum.dtype) * (own_tokens > 0).to(own_sum.dtype)
        self._log_mean_nll(mode, "truth_nll", own_sum, own_tokens, own_rows)  # the row's own y_t, in every arm
        if truth:
            self._log_mean_nll(mode, "truth_target_nll", nll_sum, tokens, r)  # what the ablation trained on
        return (loss, result[1]) if return_outputs else loss

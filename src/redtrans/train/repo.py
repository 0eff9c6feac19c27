"""RePO (RedTrans stage 3): DPO on expert preferences plus a term pulling the policy toward expert rewrites.

    L = (1/N) Σᵢ [ ℓ_DPO,ᵢ(sigmoid, β) + λ · rᵢ · Tᵢ ],   Tᵢ = −log π(y_t,ᵢ | xᵢ)  (or its per-token mean)

over the N pairs of one optimizer step (all micro-batches, all processes); rᵢ = 1 on rows whose chosen answer
is an expert rewrite y_t. The exact definition is in docs/training.md ("RePO");
`redtrans.train.repo_trainer.RePOTrainer` implements it on TRL's `DPOTrainer`, whose reference handling,
collation and logging stay as they are.

- The config is `RePOConfig`: our fields (model, data, λ, the truth term's rows, unit and target, LoRA) as a
  pydantic `StageConfig`, and any `trl.DPOConfig` field under TRL's own name at the top level (``beta``,
  ``learning_rate``, ``precompute_ref_log_probs``, …), checked against TRL's types and by building TRL's
  `DPOConfig` — without its hardware checks when the config is loaded or planned (bf16 on a GPU config is
  valid on a laptop), with them when the run starts (`RePOConfig.dpo_args`).
- The starting model is the SFT model, and it is also the reference π_ref. An SFT LoRA adapter is **merged**
  into its base first (not stacked): the policy is then an ordinary model, a new RePO adapter (``use_peft``)
  is trained on top of it, and TRL's "adapter switched off" reference is exactly the SFT model. With LoRA the
  merged SFT model is written to ``output_dir/base`` so the RePO adapter has a base on disk to load from.
- Dropout: TRL's ``disable_dropout`` (default true) zeroes every dropout module, LoRA's included;
  `RePOTrainer` sets LoRA's back to ``lora_dropout`` on purpose (it never touches π_ref). ``lora_dropout: 0``
  is TRL's behaviour.
- Data: JSON Lines in TRL's preference format (what ``redtrans prefs export`` writes): ``prompt`` (chat
  messages), ``chosen`` and ``rejected`` (assistant messages, or strings) plus ``rewritten`` (bool, default
  false) and ``id``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from redtrans.config import StageConfig, load_config
from redtrans.errors import ConfigError, InputError
from redtrans.jsonl import JSONLError, read_jsonl
from redtrans.limits import MAX_SEGMENTS_PER_ITEM, MAX_TEXT_CHARS, check_messages, check_text

__all__ = [
    "RePOConfig",
    "RePOResult",
    "item_key",
    "load_preference_rows",
    "load_repo_config",
    "other_item_truth",
    "run_repo",
]

# TRL DPOConfig fields we set ourselves (or that mean something else here).
_OWN_TRL_FIELDS = {"bf16"}

DEFAULT_TRUTH_REDUCTION: Literal["sequence", "token_mean"] = "sequence"
"""The truth term's unit by default: the paper's −log π(y_t|x); `benchmarks/repo_arms.py` measured it at λ 1 above
`token_mean` at λ 1 and equal to it at the same strength (docs/training.md)."""
DEFAULT_LAMBDA = 1.0


def _dpo_fields() -> dict[str, Any]:
    """`trl.DPOConfig` field name → its type (imported lazily: TRL is heavy)."""
    global _DPO_FIELDS
    if _DPO_FIELDS is None:
        from trl import DPOConfig

        _DPO_FIELDS = typing.get_type_hints(DPOConfig)
    return _DPO_FIELDS


_DPO_FIELDS: dict[str, Any] | None = None


class RePOConfig(StageConfig):
    """Settings of `redtrans repo`. Any `trl.DPOConfig` field may also be given at the top level under TRL's name
    (``beta``, ``learning_rate``, ``per_device_train_batch_size``, ``max_steps``, ``precompute_ref_log_probs``,
    ``max_length``, ``loss_type``, …); they are collected into `trl` and validated by TRL's `DPOConfig`."""

    # --- model ---
    model_name_or_path: str = "runs/sft"
    """The SFT model, which is also the reference π_ref: a full model directory (e.g. `redtrans sft` with
    `use_peft: false`, or its `merged/`), an SFT LoRA adapter directory (merged into its base before training),
    a `.gguf` file or a registry name."""
    base_model: str | None = None
    """Base of an SFT adapter when the path recorded in its adapter_config.json is not valid here."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype when loading: auto = bfloat16 when bf16 training is on, else float32."""
    trust_remote_code: bool = False
    """Allow model code shipped with the model directory (transformers' `trust_remote_code`)."""

    # --- data ---
    train_file: str = ""
    """Preference pairs, JSON Lines: `prompt` (messages), `chosen`, `rejected` (assistant messages or strings),
    `rewritten` (bool: the chosen answer is an expert rewrite y_t), `id`."""
    eval_file: str | None = None
    """Held-out pairs in the same form; evaluation logs `eval_loss`, `eval_truth_nll` and TRL's reward metrics."""
    eval_split: float = Field(default=0.0, ge=0)
    """When there is no `eval_file`: share (< 1) or number (>= 1) of *prompts* held out of `train_file` (all
    pairs of a prompt go to the same side); 0 = no evaluation."""

    # --- the RePO objective ---
    loss: Literal["repo", "dpo"] = "repo"
    """repo: DPO + lambda_truth × the truth term; dpo: the baseline, TRL's sigmoid DPO (λ forced to 0;
    `truth_nll` is still logged)."""
    lambda_truth: float = Field(default=DEFAULT_LAMBDA, ge=0)
    """λ, the weight of the truth term: each covered row adds λ·Tᵢ to its pair's loss, and the step's loss is the
    mean over all its pairs (docs/training.md). Its scale depends on `truth_reduction`."""
    truth_reduction: Literal["sequence", "token_mean"] = DEFAULT_TRUTH_REDUCTION
    """Tᵢ's unit. sequence: −log π(y_t|x), the summed NLL of the rewrite's tokens — the paper's KL to a point
    mass on y_t; token_mean: that divided by the rewrite's token count (every rewrite weighs the same). A λ
    carries over as λ_sequence ≈ λ_token_mean / (mean tokens of a rewrite)."""
    truth_term: Literal["rewritten", "all_chosen"] = "rewritten"
    """Rows the truth term covers: rewritten (RePO: rows with `rewritten: true`) or all_chosen (the RPO-style
    ablation: every chosen answer)."""
    truth_target: Literal["own", "other_item"] = "own"
    """The y_t of the truth term. own: the row's chosen answer (its expert rewrite); other_item: the ablation of
    docs/training.md — another item's rewrite (a seeded cyclic shift over the covered items, so no item keeps
    its own), while the DPO pair keeps the real one. Costs one more policy forward per step."""

    # --- LoRA (PEFT) ---
    use_peft: bool = True
    """Train a LoRA adapter on the (merged) SFT model; π_ref is the adapter switched off. False = full
    fine-tuning (π_ref is a second copy of the model, or `precompute_ref_log_probs: true`)."""
    lora_r: int = Field(default=16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(default=32, ge=1)
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the LoRA path. TRL's `disable_dropout` (on by default) zeroes every dropout module; RePO sets
    the LoRA ones back to this value on purpose (π_ref, the adapter switched off, never sees them); 0 = TRL's
    behaviour."""
    lora_target_modules: list[str] | str = "all-linear"
    """Modules that get adapters: `all-linear` or a list of names (the LM head cannot: TRL reads its weight)."""
    use_rslora: bool = False
    """Rank-stabilized LoRA scaling (alpha / sqrt(r))."""
    merge_adapter: bool = False
    """Also write `output_dir/merged`: the RePO adapter folded into its base, a plain model directory."""

    # --- run ---
    resume_from_checkpoint: str | None = "auto"
    """auto: resume from the newest `checkpoint-*` in `output_dir` if there is one; a path; null: start over."""
    bf16: bool | None = None
    """bfloat16 mixed precision; unset = on where the GPU has it, off (fp32) on CPU."""
    trl: dict[str, Any] = Field(default_factory=dict)
    """`trl.DPOConfig` fields (given here or at the top level); defaults are TRL's, except `output_dir`
    (runs/repo) and `report_to` (auto: tensorboard when installed)."""

    @model_validator(mode="before")
    @classmethod
    def _collect_trl_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = set(cls.model_fields)
        trl_fields = _dpo_fields()
        data = dict(data)
        collected = dict(data.pop("trl", None) or {})
        for key in list(data):
            if key not in own and key in trl_fields and key not in _OWN_TRL_FIELDS:
                collected[key] = data.pop(key)
        for key in ("eval_strategy", "save_strategy", "logging_strategy"):
            if collected.get(key) is False:  # YAML 1.1 reads an unquoted `no` as false
                collected[key] = "no"
        data["trl"] = collected
        return data

    @model_validator(mode="after")
    def _check_trl_fields(self) -> RePOConfig:
        fields = _dpo_fields()
        for key, value in self.trl.items():
            if key not in fields or key in _OWN_TRL_FIELDS:
                raise ValueError(f"trl.{key}: not a field of trl.DPOConfig (or set it at the top level)")
            try:  # keep the coerced value: YAML 1.1 reads `2e-4` as a string, TRL wants the float
                self.trl[key] = TypeAdapter(fields[key]).validate_python(value, strict=False)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"{key}: {first['msg']} (got {value!r})") from None
            except Exception:  # a type pydantic cannot express: TRL's DPOConfig checks it below
                pass
        self.dpo_args(hardware=False)  # TRL's own checks (loss types, schedulers, …); hardware's at the start
        return self

    @property
    def output_dir(self) -> str:
        return str(self.trl.get("output_dir", "runs/repo"))

    @property
    def effective_lambda(self) -> float:
        """λ as trained: 0 for the DPO baseline."""
        return 0.0 if self.loss == "dpo" else self.lambda_truth

    def use_bf16(self) -> bool:
        from redtrans.train.modeling import use_bf16

        return use_bf16(self.bf16)

    def dpo_args(self, has_eval: bool | None = None, hardware: bool = True) -> Any:
        """The `trl.DPOConfig` of this run (built before the model, so DeepSpeed ZeRO-3 can shard while loading).
        `hardware=False` validates every field without the checks of this machine's devices (bf16, tf32), as a
        plan drawn on a laptop for a GPU run needs; the run builds it with them."""
        from trl import DPOConfig

        from redtrans.train.modeling import cpu_only_multiprocess, without_hardware_checks

        args: dict[str, Any] = {
            "output_dir": "runs/repo",
            "bf16": self.use_bf16(),
            "fp16": False,
            "report_to": _report_to(self.trl.get("report_to", "auto")),
            "activation_checkpointing": True,  # TRL's default, by the name transformers 5 reads without a warning
            "activation_checkpointing_kwargs": {"use_reentrant": False},
        }
        if cpu_only_multiprocess():
            args["use_cpu"] = True  # torchrun / `accelerate launch --multi_gpu` without GPUs: gloo on CPU
        args.update({k: v for k, v in self.trl.items() if k != "report_to"})
        if "gradient_checkpointing" in args:  # transformers 5 name; the old one warns
            args["activation_checkpointing"] = args.pop("gradient_checkpointing")
        if "gradient_checkpointing_kwargs" in args:
            args["activation_checkpointing_kwargs"] = args.pop("gradient_checkpointing_kwargs")
        if has_eval is False:
            args["eval_strategy"] = "no"
        elif has_eval and "eval_strategy" not in self.trl:
            args["eval_strategy"] = "steps"
            args.setdefault("eval_steps", 50)
        if not hardware:
            args = without_hardware_checks(args)
        try:
            return DPOConfig(**args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trl.DPOConfig: {exc}") from None


def load_repo_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RePOConfig:
    """The config from a YAML file (optional) with dotted overrides on top (`redtrans.config.load_config`)."""
    return load_config(RePOConfig, path, overrides)


@dataclass
class RePOResult:
    """What a run produced."""

    output_dir: str
    """The RePO adapter (LoRA) or full model: pass it to `--engine hf --model`."""
    base_model: str | None
    """The adapter's base as recorded in adapter_config.json (`output_dir/base` after an SFT adapter), or None."""
    merged_dir: str | None
    """`output_dir/merged` with `merge_adapter`."""
    train_metrics: dict[str, Any]
    """Trainer metrics (train_runtime, train_loss, …)."""
    eval_metrics: dict[str, Any]
    """Final held-out metrics (eval_loss, eval_truth_nll, eval_rewards/margins, …); empty without eval data."""
    history: list[dict[str, Any]]
    """Every log record of the run (TRL's `state.log_history`): loss, truth_nll, rewards/…, per logging step."""
    global_step: int = 0
    """Optimizer steps done (including those before a resume)."""
    main_process: bool = True
    """Whether this is the main process of a distributed run (the one that wrote the outputs)."""


# ----------------------------------------------------------------------------------------------- data


def _messages(value: Any, role: str | None, where: tuple[Path, int], name: str) -> list[dict[str, str]] | str:
    path, line = where
    if isinstance(value, str):
        if not value.strip():
            raise JSONLError(path, line, f"`{name}` is empty")
        unlimited = 2**62 if name == "prompt" else None  # a completion prompt (few-shot) may be long
        problem = check_text(
            value, name, max_chars=unlimited or MAX_TEXT_CHARS, max_segments=unlimited or MAX_SEGMENTS_PER_ITEM
        )
        if problem is not None:
            raise JSONLError(path, line, problem.message)
        return [{"role": role, "content": value}] if role else value
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value)
    ):
        raise JSONLError(path, line, f"`{name}` must be a string or a non-empty list of {{role, content}} messages")
    if role and value[-1].get("role") != role:
        raise JSONLError(path, line, f"the last message of `{name}` must have role {role!r}")
    messages = [{"role": str(m.get("role")), "content": m["content"]} for m in value]
    problem = check_messages(messages, name)  # the same per-item limits as every stage (`redtrans.limits`)
    if problem is not None:
        raise JSONLError(path, line, problem.message)
    return messages


def load_preference_rows(path: str | Path) -> list[dict[str, Any]]:
    """TRL preference rows (`prompt`, `chosen`, `rejected`) + `rewritten`, `id`; a bad row names file:line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data file not found: {p}")
    rows = []
    for line, row in read_jsonl(p):
        where = (p, line)
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            raise JSONLError(p, line, f"a preference row needs prompt, chosen, rejected (missing {', '.join(missing)})")
        prompt = _messages(row["prompt"], None, where, "prompt")
        role = "assistant" if isinstance(prompt, list) else None
        rewritten = row.get("rewritten", False)
        if not isinstance(rewritten, bool):
            raise JSONLError(p, line, f"`rewritten` must be true or false, got {rewritten!r}")
        rows.append(
            {
                "id": str(row.get("id", f"{p.name}:{line}")),
                "prompt": prompt,
                "chosen": _messages(row["chosen"], role, where, "chosen"),
                "rejected": _messages(row["rejected"], role, where, "rejected"),
                "rewritten": rewritten,
            }
        )
    if not rows:
        raise InputError("no rows", path=p)
    return rows


def split_rows(config: RePOConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) rows: `eval_file`, or `eval_split` of the prompts of `train_file` (pairs of one prompt stay
    together, so a y_t never sits on both sides)."""
    train = load_preference_rows(config.train_file)
    if config.eval_file:
        return train, load_preference_rows(config.eval_file)
    if config.eval_split <= 0:
        return train, []
    prompts = sorted({item_key(r) for r in train})
    n = int(config.eval_split) if config.eval_split >= 1 else math.ceil(len(prompts) * config.eval_split)
    n = min(n, len(prompts) - 1)
    random.Random(int(config.trl.get("seed", 42))).shuffle(prompts)
    held = set(prompts[:n])
    key = [item_key(r) in held for r in train]
    return [r for r, k in zip(train, key, strict=True) if not k], [r for r, k in zip(train, key, strict=True) if k]


def item_key(row: dict[str, Any]) -> str:
    """A pair's source item: its prompt (every pair of one item has the same prompt messages)."""
    return json.dumps(row["prompt"], ensure_ascii=False, sort_keys=True)


def other_item_truth(rows: list[dict[str, Any]], covered: str = "rewritten", seed: int = 42) -> list[dict[str, Any]]:
    """The rows with a ``truth`` answer for the random-rewrite ablation: every covered row (``rewritten``, or every
    row with ``all_chosen``) gets the chosen answer of *another* item (prompt), by a seeded cyclic shift over the
    covered items in random order (no item keeps its own; the k-th distinct rewrite of an item maps to the k-th
    of its partner, modulo their count); other rows keep their own. The pairs are unchanged."""
    by_item: dict[str, list[Any]] = {}
    for row in rows:
        if covered == "all_chosen" or row["rewritten"]:
            answers = by_item.setdefault(item_key(row), [])
            if row["chosen"] not in answers:
                answers.append(row["chosen"])
    items = sorted(by_item)
    if len(items) < 2:
        raise ConfigError(
            f"truth_target: other_item needs rewrites of at least two items (prompts); the data has {len(items)}"
        )
    random.Random(seed).shuffle(items)
    partner = {item: items[(i + 1) % len(items)] for i, item in enumerate(items)}
    out = []
    for row in rows:
        truth = row["chosen"]
        key = item_key(row)
        if key in partner:
            own, theirs = by_item[key], by_item[partner[key]]
            truth = theirs[own.index(row["chosen"]) % len(theirs)] if row["chosen"] in own else truth
        out.append({**row, "truth": truth})
    return out


def to_dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    keys = ("prompt", "chosen", "rejected", "rewritten") + (("truth",) if rows and "truth" in rows[0] else ())
    return Dataset.from_list([{k: r[k] for k in keys} for r in rows])


# ---------------------------------------------------------------------------------------------- model


def _report_to(value: Any) -> Any:
    if value == "auto":
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else "none"
    return value


@dataclass
class LoadedSFT:
    """The SFT model ready for RePO: adapters merged, plus where it came from."""

    model: Any
    tokenizer: Any
    recorded_base: str | None
    """A path the model can be reloaded from (directory or .gguf); None when it exists only merged in memory."""
    adapter: str | None
    """The SFT adapter directory that was merged, if any."""


def load_sft_model(config: RePOConfig, bf16: bool) -> LoadedSFT:
    """The SFT model of `config.model_name_or_path` (an SFT adapter is merged into its base), and its tokenizer."""
    import torch
    from transformers import AutoTokenizer

    from redtrans.train.modeling import load_dense_model, resolve_base

    dtype = torch.bfloat16 if (config.dtype == "auto" and bf16) else getattr(torch, config.dtype, torch.float32)
    name = config.model_name_or_path
    path = Path(name).expanduser()
    kw = {"trust_remote_code": config.trust_remote_code}
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base = config.base_model or json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        ref, gguf_file, _ = resolve_base(base)
        model = load_dense_model(ref, gguf_file, dtype, **kw)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        has_tok = (path / "tokenizer_config.json").is_file()
        tok_kw = {} if has_tok or not gguf_file else {"gguf_file": gguf_file}
        tokenizer = AutoTokenizer.from_pretrained(str(path) if has_tok else ref, **tok_kw, **kw)
        loaded = LoadedSFT(model, tokenizer, None, str(path.resolve()))
    else:
        ref, gguf_file, recorded = resolve_base(name)
        model = load_dense_model(ref, gguf_file, dtype, **kw)
        tokenizer = AutoTokenizer.from_pretrained(ref, **({"gguf_file": gguf_file} if gguf_file else {}), **kw)
        loaded = LoadedSFT(model, tokenizer, recorded, None)
    if loaded.tokenizer.pad_token is None:
        loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
    return loaded


def lora_config(config: RePOConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        use_rslora=config.use_rslora,
        task_type="CAUSAL_LM",
    )


@dataclass
class RePOSetup:
    """A configured trainer and what went into it (see `build_repo_trainer`)."""

    trainer: Any
    tokenizer: Any
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    base_model: str | None
    log: Any


def build_repo_trainer(config: RePOConfig, callbacks: list[Any] | None = None) -> RePOSetup:
    """Data, SFT model (merged), reference and `RePOTrainer` for `config`, without training."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from redtrans.train.callbacks import JSONLLogCallback
    from redtrans.train.repo_trainer import RePOTrainer

    if not config.train_file:
        raise ConfigError("train_file is required")
    train_rows, eval_rows = split_rows(config)
    seed = int(config.trl.get("seed", 42))
    if config.truth_target == "other_item" and config.effective_lambda:
        train_rows = other_item_truth(train_rows, config.truth_term, seed)
    bf16 = config.use_bf16()
    args = config.dpo_args(has_eval=bool(eval_rows))  # before the model: ZeRO-3 shards while loading
    out = Path(args.output_dir)
    loaded = load_sft_model(config, bf16)
    if loaded.adapter and is_deepspeed_zero3_enabled():
        raise ConfigError(
            "model_name_or_path: an SFT adapter cannot be merged under ZeRO-3 (sharded weights); merge it first "
            "(`redtrans sft … --set merge_adapter=true`) and give the merged directory"
        )
    base = loaded.recorded_base
    if config.use_peft and base is None:
        # the RePO adapter's base is the merged SFT model: write it so the adapter can be loaded and served
        base = str((out / "base").resolve())
        if args.process_index == 0 and not (out / "base" / "config.json").is_file():
            loaded.model.save_pretrained(out / "base")
            loaded.tokenizer.save_pretrained(out / "base")
    ref_model = None
    if not config.use_peft and not args.precompute_ref_log_probs:
        ref_model = load_sft_model(config, bf16).model  # π_ref: a frozen copy of the (merged) SFT model
    log = JSONLLogCallback(out / "logs.jsonl")
    trainer = RePOTrainer(
        model=loaded.model,
        ref_model=ref_model,
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=to_dataset(eval_rows) if eval_rows else None,
        processing_class=loaded.tokenizer,
        peft_config=lora_config(config) if config.use_peft else None,
        callbacks=[log, *(callbacks or [])],
        lambda_truth=config.effective_lambda,
        truth_term=config.truth_term,
        truth_reduction=config.truth_reduction,
    )
    return RePOSetup(trainer, loaded.tokenizer, train_rows, eval_rows, base if config.use_peft else None, log)


def run_repo(config: RePOConfig, callbacks: list[Any] | None = None) -> RePOResult:
    """Train RePO (or the DPO baseline) from the SFT model; the same code in every process of a launch."""
    from redtrans.prompts import PROMPT_VERSION
    from redtrans.train.callbacks import full_disk_stops_cleanly
    from redtrans.train.modeling import save_run
    from redtrans.train.sft import last_checkpoint

    out = Path(config.output_dir)
    resume = config.resume_from_checkpoint
    if resume == "auto":
        resume = last_checkpoint(out)
    elif resume is not None and not Path(resume).is_dir():
        raise ConfigError(f"resume_from_checkpoint: no checkpoint directory {resume}")
    setup = build_repo_trainer(config, callbacks)
    trainer = setup.trainer
    with full_disk_stops_cleanly(out):
        train_metrics = dict(trainer.train(resume_from_checkpoint=resume).metrics)
    eval_metrics: dict[str, Any] = dict(trainer.evaluate()) if setup.eval_rows else {}
    setup.log.close()
    record = {
        "base_model": setup.base_model,
        "prompt_version": PROMPT_VERSION,
        "loss": config.loss,
        "lambda_truth": config.effective_lambda,
        "truth_term": config.truth_term,
        "truth_reduction": config.truth_reduction,
        "truth_target": config.truth_target,
        "world_size": trainer.args.world_size,
        "global_step": trainer.state.global_step,
        "resumed_from": resume,
        "train_pairs": len(setup.train_rows),
        "train_rewritten": sum(r["rewritten"] for r in setup.train_rows),
        "eval_pairs": len(setup.eval_rows),
        "train": train_metrics,
        "eval": eval_metrics,
        "config": config.model_dump(mode="json"),
    }
    merged_dir = save_run(trainer, out, setup.base_model, record, merge=config.use_peft and config.merge_adapter)
    return RePOResult(
        output_dir=str(out),
        base_model=setup.base_model,
        merged_dir=merged_dir,
        train_metrics=train_metrics,
        eval_metrics=eval_metrics,
        history=list(trainer.state.log_history),
        global_step=int(trainer.state.global_step),
        main_process=trainer.is_world_process_zero(),
    )

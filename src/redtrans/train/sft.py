"""Supervised fine-tuning (RedTrans stage 2): LoRA or full fine-tuning with TRL's `SFTTrainer`.

The data are translation pairs. Whatever form they arrive in, each becomes a TRL *conversational
prompt-completion* example whose prompt is built by `redtrans.prompts` — the very messages the translator sends
at inference — and whose completion is the target as the assistant turn. Loss is computed on the completion
only (TRL's ``completion_only_loss``); the model's own chat template renders both, so the end-of-turn token is
part of what the model learns to produce.

Accepted rows (JSON Lines, one object a line):

- ``messages``: TRL conversational rows as ``redtrans sample`` writes them (the last message is the assistant
  answer); optional ``id``, ``src``, ``tgt``.
- ``prompt`` + ``completion``: TRL conversational prompt-completion rows (message lists; a string completion
  is taken as the assistant text).
- ``source`` + ``target`` (+ ``src``, ``tgt``): plain parallel pairs, turned into messages with
  `redtrans.prompts.sft_messages`. Models without a chat template (base models) get the few-shot completion
  prompt of `redtrans.prompts.completion_prompt` instead, as the ``hf`` engine sends them.

Outputs in ``output_dir``: the PEFT adapter (``adapter_config.json`` naming the base model, loadable by the
``hf`` engine and by ``vllm serve --enable-lora``) or the full model, the tokenizer, ``checkpoint-*/``
directories (a rerun resumes from the last one), ``logs.jsonl`` (every log/eval record as a JSON line),
``eval_results.json`` (final held-out loss, BLEU and chrF++, sample translations) and, with
``merge_adapter``, ``merged/`` (a plain transformers model with the adapter folded in).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.config import ConfigError, load_config
from redtrans.jsonl import JSONLError, JSONLWriter, read_jsonl
from redtrans.prompts import PROMPT_VERSION, completion_prompt, prompt_completion

__all__ = [
    "SFTResult",
    "SFTRunConfig",
    "load_sft_config",
    "load_sft_rows",
    "merge_adapter",
    "run_sft",
]


@dataclass
class SFTRunConfig:
    """Settings of `redtrans sft`. Names follow TRL (`SFTConfig`, `ModelConfig`) where they overlap.

    Any other `trl.SFTConfig` / `transformers.TrainingArguments` field can be given in `extra_args`.
    """

    # --- model ---
    model_name_or_path: str = "qwen2.5-coder-0.5b"
    """Base model: a transformers model directory, a `.gguf` file (dequantized by transformers' `gguf_file=`),
    a name from the redtrans model registry (e.g. `qwen2.5-coder-0.5b`, resolved to its GGUF), or a Hugging Face
    Hub id (`org/name`, downloaded by transformers where a hub is reachable)."""
    dtype: str = "auto"
    """Weights dtype when loading: auto (bfloat16 when bf16 training is on, else float32), float32, bfloat16,
    float16."""
    trust_remote_code: bool = False
    """Allow model code shipped with the model directory (transformers' `trust_remote_code`)."""

    # --- data ---
    train_file: str = ""
    """Training data, JSON Lines: `messages` rows (what `redtrans sample` writes), `prompt`/`completion` rows,
    or plain pairs `{source, target, src, tgt}`."""
    eval_file: str | None = None
    """Held-out data in the same forms. When unset, `eval_split` rows are held out of `train_file`."""
    eval_split: float = 0.05
    """Held-out share of `train_file` when there is no `eval_file`: a fraction (< 1) or a row count (>= 1);
    0 disables evaluation."""
    max_train_samples: int | None = None
    """Use only the first N training rows (after holding out the eval split)."""
    max_eval_samples: int | None = 200
    """Use at most N held-out rows for the evaluation loss."""
    src: str | None = None
    """Source language (ISO 639-1) for plain pairs without a `src` field; detected from the text when unset."""
    tgt: str | None = None
    """Target language for plain pairs without a `tgt` field; detected from the target text when unset."""

    # --- LoRA (PEFT) ---
    use_peft: bool = True
    """Train a LoRA adapter (True) or fine-tune every weight (False)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path."""
    lora_target_modules: list[str] | str = "all-linear"
    """Modules that get adapters: `all-linear` or a list of module names (e.g. [q_proj, k_proj, v_proj, o_proj])."""
    lora_modules_to_save: list[str] | None = None
    """Modules trained fully and saved with the adapter (e.g. [lm_head, embed_tokens] after adding tokens)."""
    use_rslora: bool = False
    """Rank-stabilized LoRA scaling (alpha / sqrt(r))."""
    merge_adapter: bool = False
    """Also write `output_dir/merged`: the base model with the adapter folded in (a plain transformers model)."""

    # --- training (trl.SFTConfig / TrainingArguments) ---
    output_dir: str = "runs/sft"
    """Where the adapter/model, checkpoints and logs go."""
    max_length: int | None = 1024
    """Longest tokenized example (prompt + completion); longer ones are truncated (TRL `keep_start`)."""
    completion_only_loss: bool = True
    """Loss on the translation only (True), or on the whole sequence, prompt included (False)."""
    packing: bool = False
    """Pack several examples into each `max_length` block (TRL packing)."""
    num_train_epochs: float = 1.0
    """Passes over the training set (ignored when `max_steps` > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 = run `num_train_epochs`."""
    per_device_train_batch_size: int = 8
    """Examples per device per forward pass."""
    per_device_eval_batch_size: int = 8
    """Examples per device per evaluation forward pass (and per generation batch)."""
    gradient_accumulation_steps: int = 1
    """Forward passes accumulated per optimizer step."""
    learning_rate: float = 1e-4
    """Peak learning rate (AdamW). TRL defaults to 2e-5, which suits full fine-tuning; LoRA wants ~1e-4."""
    lr_scheduler_type: str = "cosine"
    """Learning-rate schedule (transformers `SchedulerType`: linear, cosine, constant, …)."""
    warmup_steps: float = 0.03
    """Warm-up: a step count (>= 1) or a fraction of the total steps (< 1)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    optim: str | None = None
    """Optimizer (transformers `OptimizerNames`); unset = transformers' default (`adamw_torch_fused`)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: much less memory for ~30% more compute."""
    bf16: bool | None = None
    """bfloat16 mixed precision; unset = on where the hardware has it (CUDA with bf16), off on CPU (fp32)."""
    seed: int = 42
    """Random seed (data split, shuffling, LoRA init, dropout)."""
    logging_steps: float = 10
    """Log every N steps (or a fraction of the run when < 1)."""
    eval_strategy: str = "steps"
    """When to evaluate during training: no, steps, epoch. Evaluation always also runs once at the end."""
    eval_steps: float | None = 200
    """Evaluate every N steps (with `eval_strategy: steps`)."""
    save_strategy: str = "steps"
    """When to write checkpoints: no, steps, epoch."""
    save_steps: float = 200
    """Checkpoint every N steps (with `save_strategy: steps`)."""
    save_total_limit: int | None = 3
    """Keep at most N checkpoints (oldest deleted first)."""
    resume_from_checkpoint: str | None = "auto"
    """auto: resume from the last `checkpoint-*` in `output_dir` if there is one; a path: resume from it;
    null: start from scratch."""
    report_to: list[str] | str = "auto"
    """Experiment trackers (transformers `report_to`): auto = tensorboard when installed, else none."""
    dataloader_num_workers: int = 0
    """Data-loading worker processes."""
    extra_args: dict[str, Any] = field(default_factory=dict)
    """Any other `trl.SFTConfig` / `TrainingArguments` field, passed through as is."""

    # --- translation quality on held-out rows ---
    eval_generate_rows: int = 16
    """Held-out rows translated (greedy) at each evaluation and at the end, scored with sacrebleu BLEU and
    chrF++ against their references; 0 disables."""
    eval_max_new_tokens: int = 128
    """Token budget of those translations."""

    def __post_init__(self) -> None:
        if isinstance(self.resume_from_checkpoint, str) and self.resume_from_checkpoint.lower() in {"", "no", "none"}:
            self.resume_from_checkpoint = None
        if self.eval_split < 0:
            raise ValueError("eval_split must be >= 0")
        if self.eval_strategy not in {"no", "steps", "epoch"}:
            raise ValueError(f"eval_strategy must be no, steps or epoch, not {self.eval_strategy!r}")
        if self.dtype not in {"auto", "float32", "bfloat16", "float16"}:
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype!r}")


def load_sft_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SFTRunConfig:
    """The config from a YAML file (optional) with overrides applied on top."""
    return load_config(SFTRunConfig, path, overrides)


@dataclass
class SFTResult:
    """What a run produced."""

    output_dir: str
    """The adapter (PEFT) or full model directory: pass it to `--engine hf --model`."""
    merged_dir: str | None
    """The merged model directory, when `merge_adapter` was set."""
    base_model: str
    """The base model as recorded in adapter_config.json (a directory or a .gguf path)."""
    train_metrics: dict[str, Any]
    """Trainer metrics of the run (train_runtime, train_loss, …) plus `train_tokens` and `train_tokens_per_second`."""
    eval_metrics: dict[str, Any]
    """Final held-out metrics (eval_loss, eval_bleu, eval_chrf); empty without an eval split."""
    resumed_from: str | None
    """The checkpoint the run resumed from, if any."""
    main_process: bool = True
    """Whether this is the main process of a distributed run (the one that wrote the outputs)."""


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Example:
    """One training pair in TRL conversational prompt-completion form, plus what evaluation needs."""

    id: str
    prompt: list[dict[str, str]] | str
    completion: list[dict[str, str]] | str
    reference: str
    src: str | None
    tgt: str | None


def _detect(text: str) -> str | None:
    from redtrans.text.langid import detect_language

    return detect_language(text)


def _row_to_example(
    row: dict[str, Any], where: tuple[Path, int], src: str | None, tgt: str | None, chat: bool
) -> Example:
    path, line = where
    rid = str(row.get("id", f"{path.name}:{line}"))
    row_src, row_tgt = row.get("src") or src, row.get("tgt") or tgt
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(m, dict) for m in messages):
            raise JSONLError(path, line, "`messages` must be a list of at least two {role, content} objects")
        if messages[-1].get("role") != "assistant":
            raise JSONLError(path, line, "the last message must be the assistant's answer (the translation)")
        if not chat:
            raise JSONLError(path, line, "`messages` rows need a model with a chat template")
        reference = str(messages[-1].get("content", ""))
        prompt, completion = [dict(m) for m in messages[:-1]], [dict(messages[-1])]
    elif "prompt" in row and "completion" in row:
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        if not isinstance(prompt, list) or not isinstance(completion, list) or not completion:
            raise JSONLError(
                path, line, "`prompt` must be a list of messages (conversational prompt-completion, as TRL defines)"
            )
        if not chat:
            raise JSONLError(path, line, "conversational `prompt`/`completion` rows need a model with a chat template")
        reference = str(completion[-1].get("content", ""))
    elif "source" in row and "target" in row:
        source, reference = row["source"], row["target"]
        if not isinstance(source, str) or not isinstance(reference, str) or not source.strip() or not reference.strip():
            raise JSONLError(path, line, "`source` and `target` must be non-empty strings")
        row_src = row_src or _detect(source)
        row_tgt = row_tgt or _detect(reference)
        if not row_src or not row_tgt:
            raise JSONLError(path, line, "cannot tell the language pair: give `src`/`tgt` fields or set src/tgt")
        if chat:
            pc = prompt_completion(source, reference, row_src, row_tgt)
            prompt, completion = pc["prompt"], pc["completion"]
        else:
            prompt, completion = completion_prompt(source, row_src, row_tgt), " " + reference + "\n"
    else:
        raise JSONLError(
            path,
            line,
            "a row needs `messages`, `prompt`+`completion`, or `source`+`target` (got "
            f"{', '.join(sorted(row)) or 'no fields'})",
        )
    if not reference.strip():
        raise JSONLError(path, line, "empty translation (assistant answer)")
    if row_tgt is None:
        row_tgt = _detect(reference)
    return Example(rid, prompt, completion, reference, row_src, row_tgt)


def load_sft_rows(path: str | Path, src: str | None = None, tgt: str | None = None, chat: bool = True) -> list[Example]:
    """Read a JSONL training file into examples; `JSONLError` names the file and line of a bad row."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data file not found: {p}")
    examples = [_row_to_example(row, (p, line), src, tgt, chat) for line, row in read_jsonl(p)]
    if not examples:
        raise ConfigError(f"{p}: no rows")
    return examples


def split_examples(config: SFTRunConfig, chat: bool) -> tuple[list[Example], list[Example]]:
    """(train, eval) examples following `train_file`, `eval_file`, `eval_split` and the sample limits."""
    train = load_sft_rows(config.train_file, config.src, config.tgt, chat)
    if config.eval_file:
        held = load_sft_rows(config.eval_file, config.src, config.tgt, chat)
    elif config.eval_split > 0:
        n_eval = int(config.eval_split) if config.eval_split >= 1 else math.ceil(len(train) * config.eval_split)
        n_eval = min(n_eval, len(train) - 1)
        order = list(range(len(train)))
        random.Random(config.seed).shuffle(order)
        held_idx = set(order[:n_eval])
        held = [e for i, e in enumerate(train) if i in held_idx]
        train = [e for i, e in enumerate(train) if i not in held_idx]
    else:
        held = []
    if config.max_train_samples is not None:
        train = train[: config.max_train_samples]
    if config.max_eval_samples is not None:
        held = held[: config.max_eval_samples]
    return train, held


def to_dataset(examples: list[Example]) -> Any:
    """A `datasets.Dataset` of TRL prompt-completion rows."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])


# ---------------------------------------------------------------------------------------------- model


def resolve_base(name_or_path: str) -> tuple[str, str | None, str]:
    """(from_pretrained reference, gguf_file or None, the base path to record in adapter_config.json)."""
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf" or (not p.exists() and "/" not in name_or_path):
        from redtrans.engines.models import ModelError, resolve_gguf

        try:
            gguf, _ = resolve_gguf(name_or_path)
        except ModelError as exc:
            raise ConfigError(f"model_name_or_path: {exc}") from None
        gguf = gguf.resolve()
        return str(gguf.parent), gguf.name, str(gguf)
    if not p.exists() and name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~")):
        return name_or_path, None, name_or_path  # a Hugging Face Hub id (org/name), fetched by transformers
    if not p.is_dir():
        raise ConfigError(f"model_name_or_path: no model directory, .gguf file or registry name {name_or_path!r}")
    if not (p / "config.json").is_file():
        raise ConfigError(f"model_name_or_path: {p} is not a transformers model directory (no config.json)")
    return str(p.resolve()), None, str(p.resolve())


def _use_bf16(config: SFTRunConfig) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def load_tokenizer(config: SFTRunConfig) -> Any:
    """The base model's tokenizer (with a pad token)."""
    from transformers import AutoTokenizer

    ref, gguf_file, _ = resolve_base(config.model_name_or_path)
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(ref, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_dense_model(ref: str, gguf_file: str | None, dtype: Any, **kwargs: Any) -> Any:
    """`AutoModelForCausalLM.from_pretrained`, with a GGUF file dequantized into an ordinary trainable model.

    transformers marks a GGUF-loaded model as quantized even when every weight was unpacked to dense tensors,
    and then refuses to train or save it; the marker is dropped once the weights are known to be dense."""
    from transformers import AutoModelForCausalLM

    if gguf_file is None:
        return AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, **kwargs)
    from transformers import GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        ref, gguf_file=gguf_file, dtype=dtype, quantization_config=GgufConfig(dequantize=True), **kwargs
    )
    packed = [name for name, module in model.named_modules() if "gguf" in type(module).__name__.lower()]
    if packed:
        raise ConfigError(f"{gguf_file}: weights stayed GGUF-packed ({packed[0]}, …); they cannot be trained")
    model.hf_quantizer = None
    for cfg in {
        id(model.config): model.config,
        id(model.config.get_text_config()): model.config.get_text_config(),
    }.values():
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    return model


def load_model(config: SFTRunConfig, bf16: bool) -> tuple[Any, str]:
    """The base model and the base path to record in adapter_config.json."""
    import torch

    ref, gguf_file, recorded = resolve_base(config.model_name_or_path)
    dtype = {"auto": torch.bfloat16 if bf16 else torch.float32}.get(config.dtype) or getattr(torch, config.dtype)
    model = load_dense_model(ref, gguf_file, dtype, trust_remote_code=config.trust_remote_code)
    return model, recorded


def peft_config(config: SFTRunConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        modules_to_save=config.lora_modules_to_save,
        use_rslora=config.use_rslora,
        task_type="CAUSAL_LM",
    )


def _report_to(config: SFTRunConfig) -> list[str] | str:
    if config.report_to == "auto":
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else "none"
    return config.report_to


def _cpu_only_multiprocess() -> bool:
    import os

    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def trl_config(config: SFTRunConfig, bf16: bool, has_eval: bool) -> Any:
    """The `trl.SFTConfig` for this run (built before the model, so DeepSpeed ZeRO-3 can shard at load)."""
    from trl import SFTConfig

    args: dict[str, Any] = {
        "output_dir": config.output_dir,
        "max_length": config.max_length,
        "completion_only_loss": config.completion_only_loss,
        "packing": config.packing,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "bf16": bf16,
        "fp16": False,
        "seed": config.seed,
        "data_seed": config.seed,
        "logging_steps": config.logging_steps,
        "eval_strategy": config.eval_strategy if has_eval else "no",
        "eval_steps": config.eval_steps,
        "save_strategy": config.save_strategy,
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "report_to": _report_to(config),
        "dataloader_num_workers": config.dataloader_num_workers,
        "disable_tqdm": False,
    }
    # transformers 5 renamed gradient checkpointing to activation checkpointing (the old names still work)
    ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )
    args[ckpt] = config.gradient_checkpointing
    args[f"{ckpt}_kwargs"] = {"use_reentrant": False}
    if config.optim is not None:
        args["optim"] = config.optim
    if _cpu_only_multiprocess():
        # torchrun / `accelerate launch --multi_gpu` on a machine without GPUs: train on CPU over gloo
        args["use_cpu"] = True
    args.update(config.extra_args)
    try:
        return SFTConfig(**args)
    except TypeError as exc:
        raise ConfigError(f"extra_args: {exc}") from None


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` directory with a trainer state in `output_dir`, if any."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    found = [
        (int(p.name.split("-", 1)[1]), p)
        for p in d.glob("checkpoint-*")
        if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(found)[1]) if found else None


# ------------------------------------------------------------------------------------------ callbacks


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class JSONLLogCallback(_callback_base()):  # type: ignore[misc]
    """Appends every log and evaluation record to `output_dir/logs.jsonl` (main process only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: JSONLWriter | None = None

    def _write(self, state: Any, kind: str, values: dict[str, Any]) -> None:
        if not state.is_world_process_zero:
            return
        if self._writer is None:
            self._writer = JSONLWriter(self.path, fsync_every=1)
        row = {"time": round(time.time(), 3), "kind": kind, "step": state.global_step, "epoch": state.epoch}
        row.update({k: v for k, v in values.items() if isinstance(v, int | float | str | bool | None)})
        self._writer.write(row)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        logs = logs or {}
        self._write(state, "eval" if any(k.startswith("eval_") for k in logs) else "log", logs)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def score_translations(hypotheses: list[str], examples: list[Example]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, tokenizer of the target language) and chrF++ per direction, averaged.

    Keys: ``bleu``, ``chrf`` (macro-averaged over directions) and ``bleu_<src>-<tgt>``, ``chrf_<src>-<tgt>``."""
    from sacrebleu.metrics import BLEU, CHRF

    from redtrans.languages import get_language

    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault((e.src, e.tgt), []).append(i)
    out: dict[str, float] = {}
    bleus, chrfs = [], []
    for (src, tgt), idx in sorted(groups.items(), key=lambda kv: str(kv[0])):
        tokenize = "13a"
        if tgt:
            try:
                tokenize = get_language(tgt).bleu_tokenizer
            except Exception:  # unknown code: sacrebleu's default tokenizer
                tokenize = "13a"
        hyps = [hypotheses[i] for i in idx]
        refs = [[examples[i].reference for i in idx]]
        bleu = BLEU(tokenize=tokenize).corpus_score(hyps, refs).score
        chrf = CHRF(word_order=2).corpus_score(hyps, refs).score
        name = f"{src or 'xx'}-{tgt or 'xx'}"
        out[f"bleu_{name}"], out[f"chrf_{name}"] = round(bleu, 2), round(chrf, 2)
        bleus.append(bleu)
        chrfs.append(chrf)
    out["bleu"] = round(sum(bleus) / len(bleus), 2)
    out["chrf"] = round(sum(chrfs) / len(chrfs), 2)
    return out


def generate_translations(
    model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int, batch_size: int, synced: bool = False
) -> list[str]:
    """Greedy translations of `examples`' prompts with the model being trained (left-padded batches)."""
    import torch

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos = [tokenizer.eos_token_id]
    end_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_turn is not None and end_turn not in eos:
        eos.append(end_turn)
    outputs: list[str] = []
    try:
        device = next(model.parameters()).device
        for i in range(0, len(examples), max(1, batch_size)):
            batch = examples[i : i + batch_size]
            texts = [
                tokenizer.apply_chat_template(e.prompt, tokenize=False, add_generation_prompt=True)
                if isinstance(e.prompt, list)
                else e.prompt
                for e in batch
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    eos_token_id=eos,
                    pad_token_id=tokenizer.pad_token_id,
                    use_cache=True,
                    synced_gpus=synced,
                )
            for row in out[:, enc["input_ids"].shape[1] :]:
                text = tokenizer.decode(row, skip_special_tokens=True)
                outputs.append(text.split("\n")[0].strip() if not isinstance(batch[0].prompt, list) else text.strip())
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return outputs


class TranslationEval:
    """Translates a few held-out rows with the model being trained and scores them (BLEU, chrF++).

    Every process generates the same rows (required under DeepSpeed ZeRO-3, where forward passes are
    collective); only the main process writes."""

    def __init__(self, examples: list[Example], tokenizer: Any, max_new_tokens: int, batch_size: int) -> None:
        self.examples, self.tokenizer = examples, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.last_samples: list[dict[str, str]] = []

    def __call__(self, model: Any) -> dict[str, float]:
        from transformers.integrations import is_deepspeed_zero3_enabled

        hyps = generate_translations(
            model, self.tokenizer, self.examples, self.max_new_tokens, self.batch_size, is_deepspeed_zero3_enabled()
        )
        self.last_samples = [
            {"id": e.id, "reference": e.reference, "translation": h} for e, h in zip(self.examples, hyps, strict=True)
        ]
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
                if self.translation_eval is not None:
                    scores = self.translation_eval(self.accelerator.unwrap_model(self.model))
                    output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in scores.items()})
                return output

        _TRAINER_CLASS = RedTransSFTTrainer
    return _TRAINER_CLASS


# -------------------------------------------------------------------------------------------- the run


def _fix_adapter_base(adapter_dir: Path, base: str) -> None:
    """Record the real base (a .gguf path for GGUF bases) so `hf` engine and PEFT find it."""
    cfg_path = adapter_dir / "adapter_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Fold a LoRA adapter into its base model and save a plain transformers model (+ tokenizer) in `out_dir`."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    adapter = Path(adapter_dir)
    base = base or json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    ref, gguf_file, _ = resolve_base(base)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = load_dense_model(ref, gguf_file, torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    tok_src = str(adapter) if (adapter / "tokenizer_config.json").is_file() else ref
    AutoTokenizer.from_pretrained(tok_src, **({} if tok_src == str(adapter) else kwargs)).save_pretrained(out)
    return out


@dataclass
class SFTSetup:
    """A configured trainer and what went into it (see `build_trainer`)."""

    trainer: Any
    tokenizer: Any
    train_examples: list[Example]
    eval_examples: list[Example]
    base_model: str
    translation_eval: TranslationEval | None
    log: JSONLLogCallback


def build_trainer(config: SFTRunConfig, callbacks: list[Any] | None = None) -> SFTSetup:
    """Load data, tokenizer and model and build the TRL trainer for `config`, without training."""
    if not config.train_file:
        raise ConfigError("train_file is required")
    for name in ("train_file", "eval_file"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"{name}: data file not found: {value}")
    bf16 = _use_bf16(config)
    # The tokenizer first: whether it has a chat template decides the prompt form of plain pairs.
    tokenizer = load_tokenizer(config)
    train_ex, eval_ex = split_examples(config, chat=tokenizer.chat_template is not None)
    # The TrainingArguments before the model, so DeepSpeed ZeRO-3 can partition it while loading.
    args = trl_config(config, bf16, has_eval=bool(eval_ex))
    model, base = load_model(config, bf16)
    log = JSONLLogCallback(Path(config.output_dir) / "logs.jsonl")
    trainer = sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=to_dataset(train_ex),
        eval_dataset=to_dataset(eval_ex) if eval_ex else None,
        processing_class=tokenizer,
        peft_config=peft_config(config) if config.use_peft else None,
        callbacks=[log, *(callbacks or [])],
    )
    gen_eval = None
    if eval_ex and config.eval_generate_rows > 0:
        gen_eval = TranslationEval(
            eval_ex[: config.eval_generate_rows],
            tokenizer,
            config.eval_max_new_tokens,
            config.per_device_eval_batch_size,
        )
        trainer.translation_eval = gen_eval
    return SFTSetup(trainer, tokenizer, train_ex, eval_ex, base, gen_eval, log)


def run_sft(config: SFTRunConfig, callbacks: list[Any] | None = None) -> SFTResult:
    """Fine-tune `config.model_name_or_path` on `config.train_file`; see the module docstring for outputs.

    Works the same under `accelerate launch` (DDP, DeepSpeed ZeRO-3): every process calls it; only the main
    process writes logs and outputs."""
    out = Path(config.output_dir)
    resume = config.resume_from_checkpoint
    if resume == "auto":
        resume = last_checkpoint(out)
    elif resume is not None and not Path(resume).is_dir():
        raise ConfigError(f"resume_from_checkpoint: no checkpoint directory {resume}")
    setup = build_trainer(config, callbacks)
    trainer = setup.trainer

    train_output = trainer.train(resume_from_checkpoint=resume)
    train_metrics: dict[str, Any] = dict(train_output.metrics)
    # non-padding tokens the model was trained on in this run (all processes), as TRL counts them
    train_metrics["train_tokens"] = int(getattr(trainer, "_total_train_tokens", 0))
    if train_metrics.get("train_runtime"):
        train_metrics["train_tokens_per_second"] = train_metrics["train_tokens"] / train_metrics["train_runtime"]

    eval_metrics: dict[str, Any] = {}
    if setup.eval_examples:
        eval_metrics = trainer.evaluate()
    setup.log.close()
    trainer.save_model(str(out))
    merged_dir: str | None = None
    if trainer.is_world_process_zero():
        if config.use_peft:
            _fix_adapter_base(out, setup.base_model)
        record = {
            "base_model": setup.base_model,
            "prompt_version": PROMPT_VERSION,
            "world_size": trainer.args.world_size,
            "global_step": trainer.state.global_step,
            "resumed_from": resume,
            "train_examples": len(setup.train_examples),
            "eval_examples": len(setup.eval_examples),
            "train": train_metrics,
            "eval": eval_metrics,
            "samples": setup.translation_eval.last_samples if setup.translation_eval else [],
            "config": dataclasses.asdict(config),
        }
        (out / "eval_results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    if config.use_peft and config.merge_adapter:
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            merged_dir = str(merge_adapter(out, out / "merged", setup.base_model))
    trainer.accelerator.wait_for_everyone()
    return SFTResult(
        output_dir=str(out),
        merged_dir=merged_dir,
        base_model=setup.base_model,
        train_metrics=train_metrics,
        eval_metrics=eval_metrics,
        resumed_from=resume,
        main_process=trainer.is_world_process_zero(),
    )

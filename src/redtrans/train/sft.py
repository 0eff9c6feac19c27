"""Supervised fine-tuning (RedTrans stage 2): LoRA or full fine-tuning with TRL's `SFTTrainer`.

The glue of a run, as TRL's ``scripts/sft.py``: the config, then data (`redtrans.train.data`), model
(`redtrans.train.modeling`), trainer and translation evaluation (`redtrans.train.evaluate`), train, save.

**Config.** `SFTRunConfig` is a `redtrans.config.StageConfig`: redtrans' own fields (data files, held-out
split, evaluation by translation, resume, merge) are declared and documented there. TRL's fields keep TRL's
names and meaning: every `trl.ModelConfig` field (``model_name_or_path``, ``lora_r``, ``use_peft``, …) lands
in ``model``, every `trl.SFTConfig` / `TrainingArguments` field (``learning_rate``, ``max_steps``, …) in
``training``; both are type-checked against TRL's own annotations and then validated by building TRL's own
classes, so an unknown or wrong field is a `ConfigError` naming it. A plain TRL SFT YAML (what ``trl sft
--config`` takes) is accepted too: ``dataset_name`` (a local JSON Lines file or a folder of
``<split>.jsonl``) and the other `trl.ScriptArguments` fields map onto ours. Where redtrans' defaults differ
from TRL's (`MODEL_DEFAULTS`, `TRAINING_DEFAULTS`: LoRA on all linear layers, lr 1e-4 with a cosine schedule,
periodic evaluation and checkpoints, TensorBoard when installed), they are given explicitly.

Outputs in ``output_dir``: the PEFT adapter (``adapter_config.json`` naming the base model, loadable by the
``hf`` engine and by ``vllm serve --enable-lora``) or the full model, the tokenizer, ``checkpoint-*/``
directories (a rerun resumes from the last one), ``logs.jsonl`` (every log/eval record as a JSON line),
``eval_results.json`` (final held-out loss, BLEU and chrF++ with sacrebleu signatures, sample translations)
and, with ``merge_adapter``, ``merged/`` (a plain transformers model with the adapter folded in).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from redtrans.config import StageConfig, apply_override, read_yaml_mapping, validate_config
from redtrans.errors import ConfigError
from redtrans.prompts import PROMPT_VERSION
from redtrans.train.data import Example, split_examples, to_dataset
from redtrans.train.modeling import (
    cpu_only_multiprocess,
    load_model,
    load_tokenizer,
    merge_adapter,
    save_run,
    use_bf16,
    without_hardware_checks,
)

__all__ = [
    "JSONLLogCallback",
    "load_dense_model",
    "resolve_base",
    "MODEL_DEFAULTS",
    "TRAINING_DEFAULTS",
    "SFTResult",
    "SFTRunConfig",
    "build_trainer",
    "last_checkpoint",
    "load_sft_config",
    "load_sft_rows",
    "merge_adapter",
    "model_config",
    "run_sft",
    "trl_config",
]

# re-exported: public names other stages (train/repo.py) and callers import from here
from redtrans.train.callbacks import JSONLLogCallback, full_disk_stops_cleanly  # noqa: E402
from redtrans.train.data import load_sft_rows  # noqa: E402
from redtrans.train.modeling import load_dense_model, resolve_base  # noqa: E402

MODEL_DEFAULTS: dict[str, Any] = {
    "model_name_or_path": "qwen2.5-coder-0.5b",
    "use_peft": True,
    "lora_target_modules": "all-linear",
    "dtype": None,  # None: the training precision (bfloat16 with bf16, else float32); TRL's "auto" = the weights'
}
"""`trl.ModelConfig` values where redtrans' defaults differ from TRL's."""

TRAINING_DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/sft",
    "num_train_epochs": 1.0,  # TRL: 3
    "learning_rate": 1e-4,  # TRL's 2e-5 suits full fine-tuning; LoRA wants ~1e-4
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "completion_only_loss": True,
    "activation_checkpointing": True,
    "activation_checkpointing_kwargs": {"use_reentrant": False},  # DDP with LoRA needs the non-reentrant one
    "eval_strategy": "steps",
    "eval_steps": 200,
    "save_steps": 200,
    "save_total_limit": 3,
    "report_to": "auto",  # tensorboard when installed, else none
    "bf16": None,  # on where the hardware has it (CUDA with bf16), fp32 on CPU
}
"""`trl.SFTConfig` values where redtrans' defaults differ from TRL's."""

_RENAMED = {  # transformers 5 renamed gradient checkpointing to activation checkpointing
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


@functools.cache
def _trl_fields() -> tuple[dict[str, Any], dict[str, Any]]:
    """(ModelConfig field → type, SFTConfig field → type): TRL's own annotations."""
    from trl import ModelConfig, SFTConfig

    def init_fields(cls: type) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}

    return init_fields(ModelConfig), init_fields(SFTConfig)


def _from_trl_script_args(values: dict[str, Any]) -> dict[str, Any]:
    """Map `trl.ScriptArguments` fields of a plain TRL SFT YAML onto ours (``dataset_name`` → ``train_file``…)."""
    out = dict(values)
    name = out.pop("dataset_name", None)
    train_split = out.pop("dataset_train_split", "train")
    test_split = out.pop("dataset_test_split", "test")
    if out.pop("dataset_config", None) is not None:
        raise ValueError("dataset_config: only local JSON Lines data is read here (give dataset_name: FILE.jsonl)")
    if out.pop("dataset_streaming", False):
        raise ValueError("dataset_streaming: not supported; the data are read from local JSON Lines files")
    out.pop("ignore_bias_buffers", None)  # a DDP detail of TRL's scripts; the Trainer handles DDP here
    if "datasets" in out:
        raise ValueError("datasets (a dataset mixture): give one train_file (JSON Lines) instead")
    if name is not None:
        p = Path(str(name)).expanduser()
        if p.is_dir():
            out.setdefault("train_file", str(p / f"{train_split}.jsonl"))
            if (p / f"{test_split}.jsonl").is_file():
                out.setdefault("eval_file", str(p / f"{test_split}.jsonl"))
        elif p.suffix in {".jsonl", ".json"} or p.is_file():
            out.setdefault("train_file", str(p))
        else:
            raise ValueError(
                f"dataset_name: {name!r} is not a local JSON Lines file or a folder of <split>.jsonl files "
                "(nothing is downloaded from a hub here)"
            )
    return out


class SFTRunConfig(StageConfig):
    """Settings of `redtrans sft`: redtrans' own fields here; TRL's fields in `model` and `training`, by TRL's
    names. Flat input (``lora_r: 8``, ``learning_rate: 1e-4``) is sorted into them on validation."""

    # --- data ---
    train_file: str = ""
    """Training data, JSON Lines: `messages` rows (what `redtrans sample` writes), `prompt`/`completion` rows,
    or plain pairs `{source, target, src, tgt}`."""
    eval_file: str | None = None
    """Held-out data in the same forms. When unset, `eval_split` rows are held out of `train_file`."""
    eval_split: float = Field(default=0.05, ge=0)
    """Held-out share of `train_file` when there is no `eval_file`: a fraction (< 1) or a row count (>= 1);
    0 disables evaluation."""
    max_train_samples: int | None = Field(default=None, ge=1)
    """Use only the first N training rows (after holding out the eval split)."""
    max_eval_samples: int | None = Field(default=200, ge=1)
    """Use at most N held-out rows for the evaluation loss."""
    src: str | None = None
    """Source language (ISO 639-1) for plain pairs without a `src` field; detected from the text when unset."""
    tgt: str | None = None
    """Target language for plain pairs without a `tgt` field; detected from the target text when unset."""

    trust_remote_code: bool = False
    """Allow model code shipped with the model directory (transformers' `trust_remote_code`)."""

    # --- run ---
    resume_from_checkpoint: str | None = "auto"
    """auto: resume from the last `checkpoint-*` in `output_dir` if there is one; a path: resume from it;
    null: start from scratch."""
    merge_adapter: bool = False
    """Also write `output_dir/merged`: the base model with the adapter folded in (a plain transformers model)."""

    # --- translation quality on held-out rows ---
    eval_generate_rows: int = Field(default=16, ge=0)
    """Held-out rows translated (greedy, by the hf engine over the model being trained) at each evaluation and at
    the end, scored with `redtrans.scoring` (sacrebleu BLEU and chrF++, as `redtrans bench`); 0 disables."""
    eval_max_new_tokens: int = Field(default=128, ge=1)
    """Token budget of those translations."""

    # --- TRL's own fields ---
    model: dict[str, Any] = Field(default_factory=lambda: dict(MODEL_DEFAULTS))
    """`trl.ModelConfig` fields (model_name_or_path, dtype, trust_remote_code, use_peft, lora_r, lora_alpha,
    lora_dropout, lora_target_modules, lora_modules_to_save, use_rslora, …); may be given at the top level.
    `model_name_or_path` is a model directory, a `.gguf` file, a registry name or a Hub id."""
    training: dict[str, Any] = Field(default_factory=lambda: dict(TRAINING_DEFAULTS))
    """`trl.SFTConfig` / `transformers.TrainingArguments` fields (output_dir, max_steps, learning_rate,
    per_device_train_batch_size, max_length, packing, eval_steps, save_steps, seed, bf16, report_to, …); may be
    given at the top level."""

    @model_validator(mode="before")
    @classmethod
    def _sort_fields(cls, data: Any) -> Any:
        """Flat TRL-named keys → `model` / `training` (on top of redtrans' defaults); TRL script args mapped."""
        if not isinstance(data, dict):
            return data
        values = _from_trl_script_args(data)
        model_fields, training_fields = _trl_fields()
        given_model = values.pop("model", None)
        given_training = values.pop("training", None)
        # a config dumped by model_dump() already holds the defaults: merge given values on top of them
        model = {**MODEL_DEFAULTS, **(given_model or {})}
        training = {**TRAINING_DEFAULTS, **(given_training or {})}
        for key in list(values):
            if key in cls.model_fields:
                continue
            target = _RENAMED.get(key, key)
            if key in model_fields:
                model[key] = values.pop(key)
            elif target in training_fields:
                training[target] = values.pop(key)
        for key, value in list(training.items()):
            if key.endswith("_strategy") and value is False:  # YAML 1.1 reads an unquoted `no` as false
                training[key] = "no"
        resume = values.get("resume_from_checkpoint")
        if resume is False or (isinstance(resume, str) and resume.strip().lower() in {"", "no", "none"}):
            values["resume_from_checkpoint"] = None
        return {**values, "model": model, "training": training}

    @property
    def output_dir(self) -> str:
        return str(self.training.get("output_dir") or "runs/sft")

    @property
    def model_name_or_path(self) -> str:
        return str(self.model["model_name_or_path"])

    @property
    def use_peft(self) -> bool:
        return bool(self.model.get("use_peft"))


def _check_types(values: dict[str, Any], fields: dict[str, Any]) -> list[str]:
    """Check (and coerce in place: YAML 1.1 reads ``1e-4`` as a string) `values` against TRL's annotations."""
    problems = []
    for key, value in values.items():
        if value is None or key not in fields:
            continue
        if key == "report_to" and value == "auto":
            continue
        adapter: TypeAdapter[Any] = TypeAdapter(fields[key])
        try:
            checked = adapter.validate_python(value)
        except ValidationError as exc:
            try:  # a list field given one string, as TRL's command line takes it (`lora_target_modules: all-linear`)
                adapter.validate_python([value]) if isinstance(value, str) else None
            except ValidationError:
                pass
            else:
                if isinstance(value, str):
                    continue
            problems.append(f"{key}: {exc.errors()[0]['msg']} (got {value!r})")
            continue
        if isinstance(checked, int | float) and not isinstance(checked, bool) and isinstance(value, str):
            values[key] = checked
    return problems


def check_config(config: SFTRunConfig, source: str = "config", hardware: bool = True) -> SFTRunConfig:
    """Validate the TRL fields: types against TRL's annotations, then values by building `trl.ModelConfig` and
    `trl.SFTConfig` themselves. ConfigError (naming `source` and the field) on any problem. `hardware=False`
    leaves out the checks of this machine's devices (a plan for a GPU run drawn without one); `run_sft` makes
    them when it starts."""
    model_fields, training_fields = _trl_fields()
    problems = _check_types(config.model, model_fields) + _check_types(config.training, training_fields)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    model_config(config, source)
    trl_config(config, use_bf16(config.training.get("bf16")), has_eval=True, source=source, hardware=hardware)
    return config


def load_sft_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, hardware: bool = True
) -> SFTRunConfig:
    """The config from a YAML file (redtrans fields, TRL fields, or a plain TRL SFT YAML), dotted `overrides`
    on top (`redtrans.config.parse_overrides`), validated by our model and by TRL's classes (`check_config`)."""
    values: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    source = str(path) if path else "config"
    for key, value in (overrides or {}).items():
        # `--set key=null` is meant (merge_overrides skips None: unset CLI options, which the CLI leaves out here)
        apply_override(values, key, value)
    config = validate_config(SFTRunConfig, values, source)
    return check_config(config, source, hardware)


def model_config(config: SFTRunConfig, source: str = "config") -> Any:
    """TRL's `ModelConfig` of this run."""
    from trl import ModelConfig

    try:
        return ModelConfig(**config.model)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: trl.ModelConfig: {exc}") from None


def trl_config(config: SFTRunConfig, bf16: bool, has_eval: bool, source: str = "config", hardware: bool = True) -> Any:
    """The `trl.SFTConfig` for this run (built before the model, so DeepSpeed ZeRO-3 can shard at load);
    `hardware=False`: validated without the checks of this machine's devices (`without_hardware_checks`)."""
    from trl import SFTConfig

    args = dict(config.training)
    args["bf16"] = bf16
    args.setdefault("fp16", False)
    args.setdefault("data_seed", args.get("seed", 42))
    if args.get("report_to") == "auto":
        args["report_to"] = ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else "none"
    if not has_eval:
        args["eval_strategy"] = "no"
    if cpu_only_multiprocess():
        # torchrun / `accelerate launch --multi_gpu` on a machine without GPUs: train on CPU over gloo
        args["use_cpu"] = True
    if not hardware:
        args = without_hardware_checks(args)
    try:
        return SFTConfig(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: trl.SFTConfig: {exc}") from None


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
    """Final held-out metrics (eval_loss, eval_bleu, eval_chrf, per direction); empty without an eval split."""
    resumed_from: str | None
    """The checkpoint the run resumed from, if any."""
    main_process: bool = True
    """Whether this is the main process of a distributed run (the one that wrote the outputs)."""
    eval_scores: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Final translation scores per direction, as `redtrans bench` reports them (with sacrebleu signatures)."""


@dataclass
class SFTSetup:
    """A configured trainer and what went into it (see `build_trainer`)."""

    trainer: Any
    tokenizer: Any
    train_examples: list[Example]
    eval_examples: list[Example]
    base_model: str
    translation_eval: Any
    log: Any


def build_trainer(config: SFTRunConfig, callbacks: list[Any] | None = None) -> SFTSetup:
    """Load data, tokenizer and model and build the TRL trainer for `config`, without training."""
    from trl import get_peft_config

    from redtrans.train.callbacks import JSONLLogCallback
    from redtrans.train.evaluate import TranslationEval, sft_trainer_class

    if not config.train_file:
        raise ConfigError("train_file is required")
    for name in ("train_file", "eval_file"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"{name}: data file not found: {value}")
    model_args = model_config(config)
    bf16 = use_bf16(config.training.get("bf16"))
    # The tokenizer first: whether it has a chat template decides the prompt form of plain pairs.
    tokenizer = load_tokenizer(model_args, config.trust_remote_code)
    train_ex, eval_ex = split_examples(
        config.train_file,
        config.eval_file,
        eval_split=config.eval_split,
        seed=int(config.training.get("seed", 42)),
        max_train_samples=config.max_train_samples,
        max_eval_samples=config.max_eval_samples,
        src=config.src,
        tgt=config.tgt,
        chat=tokenizer.chat_template is not None,
    )
    # The TrainingArguments before the model, so DeepSpeed ZeRO-3 can partition it while loading.
    args = trl_config(config, bf16, has_eval=bool(eval_ex))
    model, base = load_model(model_args, bf16, config.trust_remote_code)
    log = JSONLLogCallback(Path(args.output_dir) / "logs.jsonl")
    trainer = sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=to_dataset(train_ex),
        eval_dataset=to_dataset(eval_ex) if eval_ex else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[log, *(callbacks or [])],
    )
    gen_eval = None
    if eval_ex and config.eval_generate_rows > 0:
        gen_eval = TranslationEval(
            eval_ex[: config.eval_generate_rows],
            tokenizer,
            config.eval_max_new_tokens,
            args.per_device_eval_batch_size,
            name=args.output_dir,
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

    with full_disk_stops_cleanly(out):
        train_output = trainer.train(resume_from_checkpoint=resume)
    train_metrics: dict[str, Any] = dict(train_output.metrics)
    # non-padding tokens the model was trained on in this run (all processes), as TRL counts them
    train_metrics["train_tokens"] = int(getattr(trainer, "_total_train_tokens", 0))
    if train_metrics.get("train_runtime"):
        train_metrics["train_tokens_per_second"] = train_metrics["train_tokens"] / train_metrics["train_runtime"]

    eval_metrics: dict[str, Any] = {}
    if setup.eval_examples:
        eval_metrics = trainer.evaluate()
    eval_scores = (
        {d: s.as_dict() for d, s in setup.translation_eval.last_scores.items()} if setup.translation_eval else {}
    )
    setup.log.close()
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
        "scores": eval_scores,
        "samples": setup.translation_eval.last_samples if setup.translation_eval else [],
        "config": config.model_dump(mode="json"),
    }
    base = setup.base_model if config.use_peft else None
    merged_dir = save_run(trainer, out, base, record, merge=config.use_peft and config.merge_adapter)
    return SFTResult(
        output_dir=str(out),
        merged_dir=merged_dir,
        base_model=setup.base_model,
        train_metrics=train_metrics,
        eval_metrics=eval_metrics,
        resumed_from=resume,
        main_process=trainer.is_world_process_zero(),
        eval_scores=eval_scores,
    )

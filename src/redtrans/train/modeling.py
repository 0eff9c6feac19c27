"""The base model of a fine-tuning run: where it comes from, how it loads, and folding a LoRA adapter into it.

Takes TRL's own `trl.ModelConfig` (``model_name_or_path``, ``dtype``, ``model_revision``, the ``lora_*`` fields),
as TRL's scripts do. ``model_name_or_path`` is a transformers model directory, a ``.gguf`` file, a name
from the redtrans model registry (``qwen2.5-coder-0.5b``, resolved to its GGUF) or a Hugging Face Hub id. GGUF
files are dequantized by transformers (``gguf_file=``, ``GgufConfig(dequantize=True)``) into an ordinary
trainable model; the adapter records the ``.gguf`` path as its base, which the ``hf`` engine loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redtrans.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from trl import ModelConfig

__all__ = [
    "fix_adapter_base",
    "load_dense_model",
    "load_model",
    "load_tokenizer",
    "merge_adapter",
    "resolve_base",
    "use_bf16",
    "without_hardware_checks",
]


def resolve_base(name_or_path: str) -> tuple[str, str | None, str]:
    """(from_pretrained reference, gguf_file or None, the base path to record in adapter_config.json)."""
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf" or (not p.exists() and "/" not in name_or_path):
        from redtrans.engines.models import resolve_gguf

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


def use_bf16(bf16: bool | None) -> bool:
    """bf16 mixed precision: as given, or (None) where the hardware has it (CUDA with bf16)."""
    import torch

    if bf16 is not None:
        return bf16
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def without_hardware_checks(args: dict[str, Any]) -> dict[str, Any]:
    """`TrainingArguments` fields as they are validated when a run is planned rather than started: every check
    of values stays, the ones of this machine's devices go (transformers refuses `bf16`/`tf32` where no GPU has
    them unless `use_cpu`). The run itself builds its arguments from the fields as given."""
    return {**args, "use_cpu": True, "tf32": None}


def load_tokenizer(model_args: ModelConfig, trust_remote_code: bool = False) -> Any:
    """The base model's tokenizer (with a pad token)."""
    from transformers import AutoTokenizer

    ref, gguf_file, _ = resolve_base(str(model_args.model_name_or_path))
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": model_args.model_revision}
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

    if kwargs.get("quantization_config") is not None:
        raise ConfigError("load_in_4bit / load_in_8bit: a GGUF base cannot be loaded quantized; use a model directory")
    kwargs.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_pretrained(
        ref, gguf_file=gguf_file, dtype=dtype, quantization_config=GgufConfig(dequantize=True), **kwargs
    )
    packed = [name for name, module in model.named_modules() if "gguf" in type(module).__name__.lower()]
    if packed:
        raise ConfigError(f"{gguf_file}: weights stayed GGUF-packed ({packed[0]}, …); they cannot be trained")
    model.hf_quantizer = None  # type: ignore[assignment]
    for cfg in {
        id(model.config): model.config,
        id(model.config.get_text_config()): model.config.get_text_config(),
    }.values():
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    return model


def load_model(model_args: ModelConfig, bf16: bool, trust_remote_code: bool = False) -> tuple[Any, str]:
    """The base model (as TRL's scripts load it, GGUF bases included) and the base path to record in
    adapter_config.json. ``dtype`` None loads in the training precision (bfloat16 with bf16, else float32)."""
    import torch
    from trl import get_quantization_config

    ref, gguf_file, recorded = resolve_base(str(model_args.model_name_or_path))
    dtype: Any = model_args.dtype
    if dtype is None:
        dtype = torch.bfloat16 if bf16 else torch.float32
    elif dtype != "auto":
        dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": model_args.model_revision}
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    model = load_dense_model(ref, gguf_file, dtype, **kwargs)
    return model, recorded


def fix_adapter_base(adapter_dir: Path, base: str) -> None:
    """Record the real base (a .gguf path for GGUF bases) so the `hf` engine and PEFT find it."""
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
    ref, gguf_file, _ = resolve_base(str(base))
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = load_dense_model(ref, gguf_file, torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    tok_src = str(adapter) if (adapter / "tokenizer_config.json").is_file() else ref
    AutoTokenizer.from_pretrained(tok_src, **({} if tok_src == str(adapter) else kwargs)).save_pretrained(out)
    return out


def cpu_only_multiprocess() -> bool:
    """Several processes (accelerate launch) and no GPU: the trainers then run DDP over gloo on the CPU."""
    import os

    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def save_run(trainer: Any, out: Path, base_model: str | None, record: dict[str, Any], *, merge: bool) -> str | None:
    """The end of a training run, on every process: save the weights (an adapter names the base it was loaded
    from), `eval_results.json` from the main process, and the merged model when `merge` (LoRA runs); returns
    once every process is done, with the merged folder (main process) or None."""
    trainer.save_model(str(out))
    merged_dir: str | None = None
    if trainer.is_world_process_zero():
        if base_model:
            fix_adapter_base(out, base_model)  # a no-op for full fine-tuning (no adapter_config.json)
        (out / "eval_results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    if merge:
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            merged_dir = str(merge_adapter(out, out / "merged", base_model))
    trainer.accelerator.wait_for_everyone()
    return merged_dir

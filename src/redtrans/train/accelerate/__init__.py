"""Launch configs for `accelerate launch`: multi_gpu.yaml (DDP), zero3.yaml + ds_zero3.json (DeepSpeed ZeRO-3)."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
MULTI_GPU = CONFIG_DIR / "multi_gpu.yaml"
ZERO3 = CONFIG_DIR / "zero3.yaml"
DS_ZERO3 = CONFIG_DIR / "ds_zero3.json"

LAUNCH_CONFIGS = {"multi_gpu": MULTI_GPU, "zero3": ZERO3}


def launch_config(name: str) -> str:
    """The packaged accelerate config `name` (multi_gpu, zero3) as YAML text, with the DeepSpeed file named by
    its installed absolute path, so `accelerate launch --config_file` works from a wheel as from a checkout:
    ``redtrans launch-config zero3 > zero3.yaml``."""
    import yaml

    from redtrans.errors import ConfigError

    if name not in LAUNCH_CONFIGS:
        raise ConfigError(f"unknown launch config {name!r}: use one of {', '.join(LAUNCH_CONFIGS)}")
    data = yaml.safe_load(LAUNCH_CONFIGS[name].read_text(encoding="utf-8"))
    deepspeed = data.get("deepspeed_config") or {}
    if "deepspeed_config_file" in deepspeed:
        deepspeed["deepspeed_config_file"] = str(DS_ZERO3)
    header = f"# redtrans launch config {name!r} (from {LAUNCH_CONFIGS[name]})\n"
    return header + yaml.safe_dump(data, sort_keys=False)

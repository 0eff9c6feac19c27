"""Launch configs for `accelerate launch`: multi_gpu.yaml (DDP), zero3.yaml + ds_zero3.json (DeepSpeed ZeRO-3)."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
MULTI_GPU = CONFIG_DIR / "multi_gpu.yaml"
ZERO3 = CONFIG_DIR / "zero3.yaml"
DS_ZERO3 = CONFIG_DIR / "ds_zero3.json"

"""How text is generated: one interface, three engines, one factory."""

from __future__ import annotations

from typing import Any

from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult

ENGINES = ("llamacpp", "openai", "hf")

__all__ = ["ENGINES", "Engine", "EngineError", "GenRequest", "GenResult", "create_engine"]


def create_engine(engine: str | None = None, model: str | None = None, **options: Any) -> Engine:
    """Build an engine by kind. `model` may also imply it: an http(s)://…/v1 URL selects `openai`,
    a directory selects `hf`, anything else (registry name, .gguf path) selects `llamacpp`.

    `options` are fields of that engine's config (LlamaCppConfig, OpenAIConfig, HFConfig).
    """
    from pathlib import Path

    if engine is None:
        if model and model.startswith(("http://", "https://")):
            engine = "openai"
        elif model and Path(model).expanduser().is_dir():
            engine = "hf"
        else:
            engine = "llamacpp"
    if engine == "llamacpp":
        from redtrans.engines.llamacpp import LlamaCppConfig, LlamaCppEngine

        cfg = LlamaCppConfig(**options)
        if model:
            cfg.model = model
        return LlamaCppEngine(cfg)
    if engine == "openai":
        from redtrans.engines.openai import OpenAIConfig, OpenAIEngine

        urls = options.pop("base_urls", None)
        if model and model.startswith(("http://", "https://")):
            urls = [u.strip() for u in model.split(",") if u.strip()]
            model = options.pop("served_model", None) or "default"
        cfg = OpenAIConfig(**options)
        if urls:
            cfg.base_urls = list(urls)
        if model:
            cfg.model = model
        return OpenAIEngine(cfg)
    if engine == "hf":
        from redtrans.engines.hf import HFConfig, HFEngine

        cfg = HFConfig(**options)
        if model:
            cfg.model = model
        return HFEngine(cfg)
    raise EngineError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")

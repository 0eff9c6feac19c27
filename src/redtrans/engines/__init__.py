"""How text is generated: one interface, engine kinds in a registry, one spec that says which to build."""

from __future__ import annotations

from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult
from redtrans.engines.spec import ENGINE_KINDS, EngineSpec, create_engine, engine_class, register_engine

__all__ = [
    "ENGINE_KINDS",
    "Engine",
    "EngineError",
    "EngineSpec",
    "GenRequest",
    "GenResult",
    "create_engine",
    "engine_class",
    "register_engine",
]

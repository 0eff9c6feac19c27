"""`EngineSpec`: which engine, which model, how parallel — resolved in one place for every stage.

The CLI, serve, bench, sampling and SFT evaluation all describe an engine with an `EngineSpec` and call
`create_engine(spec)`; none maps engine options by itself. `parallel` has one meaning for every kind: how
many requests the engine generates at once (llama.cpp contexts in the deterministic mode or slots in the
throughput mode, requests in flight to an OpenAI-compatible fleet, the hf engine's batch size). Kinds are
looked up lazily by name (like sacrebleu's tokenizers), so the core imports no native or torch code until an
engine is built; `register_engine` adds one.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from redtrans.config import StageConfig, validate_config
from redtrans.errors import ConfigError

if TYPE_CHECKING:
    from redtrans.engines.base import Engine

ENGINE_KINDS: dict[str, str] = {
    "llamacpp": "redtrans.engines.llamacpp:LlamaCppEngine",
    "openai": "redtrans.engines.openai:OpenAIEngine",
    "hf": "redtrans.engines.hf:HFEngine",
    "standin": "redtrans.engines.standin:StandInEngine",
}
"""Engine kind → ``module:Class``, imported when first built."""


def register_engine(kind: str, target: str | type[Engine]) -> None:
    """Add (or replace) an engine kind: a ``module:Class`` path or the class itself."""
    if isinstance(target, str):
        ENGINE_KINDS[kind] = target
    else:
        ENGINE_KINDS[kind] = f"{target.__module__}:{target.__qualname__}"


def engine_class(kind: str) -> type[Engine]:
    """The engine class registered under `kind` (imported now)."""
    try:
        module, _, name = ENGINE_KINDS[kind].partition(":")
    except KeyError:
        raise ConfigError(f"unknown engine {kind!r}: use one of {', '.join(ENGINE_KINDS)}") from None
    cls: type[Engine] = getattr(importlib.import_module(module), name)
    return cls


def is_endpoint(model: str | None) -> bool:
    return bool(model) and str(model).lstrip().startswith(("http://", "https://"))


def infer_kind(model: str | None) -> str:
    """http(s)://…/v1 endpoint(s) → openai, a directory → hf, anything else (a registry name, .gguf) → llamacpp."""
    if is_endpoint(model):
        return "openai"
    if model and Path(model).expanduser().is_dir():
        return "hf"
    return "llamacpp"


class EngineSpec(StageConfig):
    """Which engine generates, with which model, how parallel, and the engine's own further settings."""

    kind: str | None = None
    """llamacpp (in-process GGUF) | openai (OpenAI-compatible endpoints) | hf (transformers / PEFT adapter) |
    standin (a fast deterministic stand-in for tests and measurements) | a kind added with `register_engine`;
    None = inferred from `model`: http(s)://…/v1 → openai, a directory → hf, else llamacpp."""
    model: str | None = None
    """Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m), a .gguf path, a model or adapter
    directory, or OpenAI-compatible endpoints (`http://a:8000/v1,http://b:8000/v1`). None = the kind's default."""
    parallel: int | None = Field(default=None, ge=1)
    """Requests generated at once. llamacpp: independent single-thread contexts in the deterministic mode (default:
    one per usable core, as memory allows; outputs do not depend on it), parallel slots of one context in the
    throughput mode (default 4); openai: requests in flight to the endpoints; hf: batch size (its throughput
    mode). None = the default."""
    served_model: str | None = None
    """Model name sent to OpenAI-compatible endpoints (what `vllm serve` calls it); openai only."""
    deterministic: bool | None = None
    """Byte-identical output for the same input, model, settings and PROMPT_VERSION on the same build and
    instruction set, whatever else is queued (batches of other sizes round differently; docs/determinism.md).
    llamacpp: each request's numbers are a function of the request alone (its system prompt computed once and
    restored, one thread per context), so outputs depend neither on `parallel` nor on the core count; hf: batches
    of one. Not openai (a remote batcher decides). None = off; `redtrans translate` and `redtrans bench` turn it
    on (`with_default_mode`)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Further fields of the engine's own config (LlamaCppConfig, OpenAIConfig, HFConfig, StandInConfig), e.g.
    `n_threads`, `timeout_s`, `base_model`. A field that `model`/`parallel`/`served_model` sets is refused here."""

    def resolved(self) -> EngineSpec:
        """A copy with `kind` inferred and the fields checked against that kind (ConfigError otherwise)."""
        kind = self.kind or infer_kind(self.model)
        if kind not in ENGINE_KINDS:
            raise ConfigError(f"unknown engine {kind!r}: use one of {', '.join(ENGINE_KINDS)}")
        if self.served_model and kind != "openai":
            raise ConfigError(
                f"--served-model / served_model is the model name sent to OpenAI-compatible endpoints; the "
                f"{kind} engine has none (give --model http://host:port/v1 to use an endpoint)"
            )
        if self.deterministic and kind not in DETERMINISTIC_KINDS:
            raise ConfigError(
                f"the {kind} engine cannot promise deterministic output (a remote batcher decides what is decoded "
                "together); leave deterministic off for it"
            )
        if self.deterministic and kind not in PARALLEL_DETERMINISTIC_KINDS and (self.parallel or 1) > 1:
            raise ConfigError(
                f"the {kind} engine's deterministic mode decodes one sequence at a time; parallel={self.parallel} is "
                "its throughput mode (outputs may then vary between runs): give one or the other"
            )
        if kind in {"llamacpp", "hf"} and is_endpoint(self.model):
            raise ConfigError(
                f"the {kind} engine runs a model in this process (a registry name, a .gguf file or a model "
                "directory), not an http(s)://…/v1 endpoint: drop --engine (or use kind openai) for an endpoint"
            )
        if kind == "openai" and self.model is not None and not is_endpoint(self.model):
            raise ConfigError(
                f"the openai engine needs http(s)://…/v1 endpoint(s) as --model, not {self.model!r} "
                "(the served model name goes in --served-model)"
            )
        return self.model_copy(update={"kind": kind})

    def asked_parallelism(self) -> int | None:
        """The parallelism this spec asks for: `parallel`, or the engine's own option for it (e.g. `n_parallel`);
        None = the engine's default."""
        if self.parallel is not None:
            return self.parallel
        kind = self.resolved().kind
        assert kind is not None
        own = engine_class(kind).spec_fields.get("parallel")
        return self.options.get(own) if own else None

    def engine_config(self) -> StageConfig:
        """The resolved kind's own config, validated now (before any model loads)."""
        spec = self.resolved()
        assert spec.kind is not None
        cls = engine_class(spec.kind)
        mapped = {
            cls.spec_fields[name]: value for name, value in spec._spec_values().items() if name in cls.spec_fields
        }
        for name, value in spec._spec_values().items():
            if name not in cls.spec_fields:
                raise ConfigError(f"the {spec.kind} engine takes no {name} (given {value!r})")
        clash = sorted(set(mapped) & set(spec.options))
        if clash:
            raise ConfigError(
                f"engine options {', '.join(clash)} repeat what model/parallel/served_model set; give each once"
            )
        return validate_config(cls.config_class, {**spec.options, **mapped}, f"{spec.kind} engine")

    def _spec_values(self) -> dict[str, Any]:
        values = {"model": self.model, "parallel": self.parallel, "served_model": self.served_model,
                  "deterministic": self.deterministic or None}  # fmt: skip
        return {k: v for k, v in values.items() if v is not None}

    def decoding(self) -> str | None:
        """How this spec decodes in its deterministic mode (`Engine.deterministic_decoding`, e.g. llamacpp's
        ``prefix-restore-1t``); None in the throughput mode. Two schemes give different outputs."""
        spec = self.resolved()
        assert spec.kind is not None
        return engine_class(spec.kind).deterministic_decoding if spec.deterministic else None

    def identity(self) -> dict[str, Any]:
        """What outputs made with this spec depend on (bench binds its caches to it): the resolved fields, with
        the deterministic scheme (`decoding`), and without `parallel` where outputs do not depend on it (the
        deterministic mode of llamacpp: independent contexts)."""
        spec = self.resolved()
        identity = spec.model_dump(mode="json")
        decoding = spec.decoding()
        if decoding is not None:
            identity["decoding"] = decoding
            if spec.kind in PARALLEL_DETERMINISTIC_KINDS:
                identity["parallel"] = None
        return identity

    def key(self) -> str:
        """A stable identity (engines with equal keys are interchangeable: stages share one loaded model)."""
        return self.resolved().model_dump_json()

    def label(self) -> str:
        """Short human description: ``llamacpp:qwen2.5-coder-1.5b×4``."""
        spec = self.resolved()
        return f"{spec.kind}:{spec.served_model or spec.model or 'default'}" + (
            f"×{spec.parallel}" if spec.parallel else ""
        )


DETERMINISTIC_KINDS = frozenset({"llamacpp", "hf", "standin"})
"""Engine kinds that can decode byte-identically run after run (in-process)."""

PARALLEL_DETERMINISTIC_KINDS = frozenset({"llamacpp"})
"""Deterministic kinds whose `parallel` keeps the mode (llamacpp: that many independent contexts); for the others
(hf, standin) a parallelism above one is the throughput mode."""


def with_default_mode(spec: EngineSpec, deterministic: bool | None = None) -> EngineSpec:
    """`spec` with the mode `redtrans translate` and `redtrans bench` use: deterministic when asked (True), off
    when asked (False); by default (None) on for the kinds that can give it — for hf only while no parallelism is
    set (its ``--parallel N`` is the batched throughput mode); llamacpp's ``--parallel N`` is N contexts."""
    if spec.deterministic is not None:
        return spec
    if deterministic is None:
        kind = spec.resolved().kind
        deterministic = kind in DETERMINISTIC_KINDS and (
            kind in PARALLEL_DETERMINISTIC_KINDS or spec.asked_parallelism() is None
        )
    return spec.model_copy(update={"deterministic": deterministic})


def create_engine(spec: EngineSpec | None = None, /, **fields: Any) -> Engine:
    """Build the engine a spec describes: ``create_engine(EngineSpec(model="qwen2.5-coder-0.5b"))`` or, for
    short, ``create_engine(model="qwen2.5-coder-0.5b", parallel=2)`` (fields of `EngineSpec`)."""
    if spec is None:
        spec = validate_config(EngineSpec, fields, "engine")
    elif fields:
        spec = spec.model_copy(update=fields)
    config = spec.engine_config()
    resolved = spec.resolved()
    assert resolved.kind is not None
    return engine_class(resolved.kind)(config)  # type: ignore[call-arg]

"""The engine interface: a batch of generation requests in, results out, in the same order.

Engines know nothing of SNS text or translation: they generate. Each engine batches internally
(llama.cpp slots, concurrent HTTP requests) so callers hand over whole batches.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from redtrans.errors import EngineError

if TYPE_CHECKING:
    from redtrans.config import StageConfig

__all__ = ["Engine", "EngineError", "GenRequest", "GenResult"]


@dataclass
class GenRequest:
    """One generation: chat `messages` (instruct models) or a raw `prompt` (base models)."""

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0  # greedy by default: deterministic translations
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None
    """A GBNF grammar the output must match (engines with `supports_grammar`; others reject it)."""

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenRequest needs exactly one of `messages` or `prompt`")


@dataclass
class GenResult:
    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the server reused from its cache (llama.cpp, vLLM when reported)
    seconds: float = 0.0  # time the engine spent on this request (queueing included)
    error: str | None = None

    @classmethod
    def from_openai(cls, data: dict[str, Any], elapsed: float) -> GenResult:
        """From an OpenAI-style chat/text completion response (llama.cpp's and vLLM's are the same shape)."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EngineError(f"the upstream answer has no `choices`: {str(data)[:200]!r}")
        choice = choices[0]
        text = (choice.get("message") or {}).get("content") if "message" in choice else choice.get("text")
        usage = data.get("usage") or {}
        return cls(
            text=text or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
            seconds=elapsed,
        )


class Engine(ABC):
    """Generates text. Subclasses set `name`, `model` and `chat` and implement `generate`."""

    name: str = "engine"
    config_class: ClassVar[type[StageConfig]]
    """The kind's own config model (built by `EngineSpec.engine_config`)."""
    spec_fields: ClassVar[dict[str, str]] = {}
    """Which config field each `EngineSpec` field (model, parallel, served_model) sets for this kind."""
    model: str = ""
    chat: bool = True  # accepts chat messages; False = completion prompts only (base models)
    parallelism: int = 1  # how many requests it decodes together; callers size batches by it
    supports_grammar: bool = False  # honours GenRequest.grammar (constrained decoding)
    supports_submit: bool = False  # `submit` runs requests independently (slots): follow-ups need no new round

    @abstractmethod
    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Results in request order. A failed request gives finish_reason="error", not an exception,
        unless the whole engine is unusable (then EngineError)."""

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        """Queue one request and return at once (engines with `supports_submit`). `ahead` queues it before
        requests still waiting: a follow-up (a retry) then overlaps with the batch it came from."""
        raise NotImplementedError(f"{self.name} generates in batches: use generate()")

    async def agenerate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Async twin; engines with native async I/O override it."""
        return await asyncio.to_thread(self.generate, requests)

    def describe(self) -> dict[str, Any]:
        """What produced a result, for provenance in outputs and reports."""
        return {"engine": self.name, "model": self.model, "chat": self.chat, "parallelism": self.parallelism}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model / connections."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

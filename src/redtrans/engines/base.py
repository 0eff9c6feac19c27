"""The engine interface: a batch of generation requests in, results out, in the same order.

Engines know nothing of SNS text or translation: they generate. Each engine batches internally
(llama.cpp slots, concurrent HTTP requests) so callers hand over whole batches.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from redtrans.errors import EngineError

if TYPE_CHECKING:
    from redtrans.config import StageConfig

__all__ = ["Engine", "EngineError", "GenRequest", "GenResult", "openai_body"]


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
    deadline: float | None = None
    """When the caller stops waiting, as a `time.monotonic()` instant; None = no deadline. Engines that wait
    on the network (openai) bound every attempt's timeout, each backoff and each `Retry-After` by it and give
    an error result once it has passed, instead of working for nobody. In-process engines ignore it."""

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenRequest needs exactly one of `messages` or `prompt`")

    def remaining(self) -> float | None:
        """Seconds left before `deadline` (negative once past), None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()


def openai_body(
    request: GenRequest, *, model: str | None = None, grammar_field: str | None = "grammar"
) -> dict[str, Any]:
    """The OpenAI-style completion body of `request`, built here only: the OpenAI-compatible engine posts it
    (to /chat/completions when it has `messages`, else /completions) and the llama.cpp engine hands it to
    xllamacpp's `handle_chat_completions` / `handle_completions`. `model` is the served model name (omitted
    when None); a grammar travels in `grammar_field` ("grammar" for llama.cpp), and an endpoint without one
    cannot take grammars (EngineError: sending an unknown field would be rejected or silently ignored)."""
    body: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    if model is not None:
        body["model"] = model
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = request.stop
    if request.grammar:
        if not grammar_field:
            raise EngineError("this endpoint takes no grammar: set grammar_field (llama.cpp: grammar)")
        body[grammar_field] = request.grammar
    if request.messages is not None:
        body["messages"] = request.messages
    else:
        body["prompt"] = request.prompt
    return body


@dataclass
class GenResult:
    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the server reused from its cache (llama.cpp, vLLM when reported)
    seconds: float = 0.0  # time the engine spent on this request (queueing included)
    error: str | None = None
    transient: bool = False
    """An error result because the engine was unavailable (timeouts, connection errors, HTTP 5xx and 429, every
    endpoint's breaker open): asking again later may succeed, and a row failed only by such errors does not
    count against its attempt cap. False for permanent errors (an HTTP 4xx, an answer that is not one)."""

    @classmethod
    def from_openai(cls, data: Any, elapsed: float) -> GenResult:
        """From an OpenAI-style chat/text completion response (llama.cpp's and vLLM's are the same shape).
        An answer of another shape (no `choices`, no text) raises EngineError; engines turn that into an
        error result for the one request (`GenResult.from_openai_or_error`), never an exception for the batch."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EngineError(f"the upstream answer has no `choices`: {str(data)[:200]!r}")
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        if text is not None and not isinstance(text, str):
            raise EngineError(f"the upstream answer's text is not a string: {str(choice)[:200]!r}")
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        details = usage.get("prompt_tokens_details")
        return cls(
            text=text or "",
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            cached_tokens=_count(details.get("cached_tokens")) if isinstance(details, dict) else 0,
            seconds=elapsed,
        )

    @classmethod
    def failed(cls, error: str, elapsed: float = 0.0, transient: bool = False) -> GenResult:
        """An error result: the request failed, the batch goes on. `transient`: the engine was unavailable."""
        return cls("", "error", seconds=elapsed, error=error, transient=transient)

    @classmethod
    def from_openai_or_error(cls, data: Any, elapsed: float) -> GenResult:
        """`from_openai`, with an answer of the wrong shape as an error result instead of an exception."""
        try:
            return cls.from_openai(data, elapsed)
        except EngineError as exc:
            return cls.failed(str(exc), elapsed)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Engine(ABC):
    """Generates text. Subclasses set `name`, `model` and `chat` and implement `generate`."""

    name: str = "engine"
    config_class: ClassVar[type[StageConfig]]
    """The kind's own config model (built by `EngineSpec.engine_config`)."""
    spec_fields: ClassVar[dict[str, str]] = {}
    """Which config field each `EngineSpec` field (model, parallel, served_model) sets for this kind."""
    speed_fields: ClassVar[frozenset[str]] = frozenset()
    """Config fields that change only speed or transport, never an output (slots, concurrency, timeouts,
    endpoints, keys): left out of the settings a resume key covers (`redtrans.resume.engine_settings`)."""
    model: str = ""
    chat: bool = True  # accepts chat messages; False = completion prompts only (base models)
    parallelism: int = 1  # how many requests it decodes together; callers size batches by it
    supports_grammar: bool = False  # honours GenRequest.grammar (constrained decoding)
    deterministic: bool = False  # byte-identical output whatever else is queued
    deterministic_decoding: ClassVar[str | None] = None
    """How the kind decodes in its deterministic mode (None: it has none). Recorded with results and binding bench
    caches: two schemes give different outputs for the same request (llamacpp: ``prefix-restore-1t``)."""
    supports_submit: bool = False  # `submit` runs requests independently (slots): follow-ups need no new round

    @abstractmethod
    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Results in request order. A failed request gives finish_reason="error", not an exception,
        unless the whole engine is unusable (then EngineError)."""

    def generate_until(self, requests: list[GenRequest], cancelled: Callable[[], bool]) -> list[GenResult]:
        """`generate`, given up (EngineError) as soon as `cancelled()` is true. Engines that can stop a batch in
        flight (the openai engine: its HTTP calls are cancelled) override it; this one checks before starting."""
        if cancelled():
            raise EngineError("cancelled: nobody waits for this batch any more")
        return self.generate(requests)

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        """Queue one request and return at once (engines with `supports_submit`). `ahead` queues it before
        requests still waiting: a follow-up (a retry) then overlaps with the batch it came from."""
        raise NotImplementedError(f"{self.name} generates in batches: use generate()")

    async def agenerate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Async twin; engines with native async I/O override it."""
        return await asyncio.to_thread(self.generate, requests)

    def describe(self) -> dict[str, Any]:
        """What produced a result, for provenance in outputs and reports."""
        described = {"engine": self.name, "model": self.model, "chat": self.chat, "parallelism": self.parallelism,
                     "deterministic": self.deterministic}  # fmt: skip
        if self.deterministic and self.deterministic_decoding:
            described["decoding"] = self.deterministic_decoding
        return described

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model / connections."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

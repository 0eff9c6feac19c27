"""Any OpenAI-compatible chat/completions endpoint: vLLM, SGLang, llama.cpp's server, OpenAI.

Requests are spread round-robin over several base URLs with bounded concurrency per engine, a timeout per
request and retries with exponential backoff on connection errors, 429 and 5xx. This is how redtrans scales
past one machine: point it at a fleet of `vllm serve` replicas.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from typing import Any

import httpx
from pydantic import Field, field_validator

from redtrans.config import StageConfig
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult


class OpenAIConfig(StageConfig):
    """Settings of the OpenAI-compatible engine."""

    base_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], min_length=1)
    """One or more endpoints ending in /v1; requests are spread over them round-robin."""
    model: str = "default"
    """The served model name (what `vllm serve` calls it)."""
    api_key: str | None = None
    """Bearer token; default from $OPENAI_API_KEY, none when unset."""
    concurrency: int = Field(default=8, ge=1)
    """Requests in flight at once, over all endpoints."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Per-request timeout."""
    max_retries: int = Field(default=3, ge=0)
    """Retries of a request on connection errors, timeouts, 429 and 5xx, with exponential backoff."""
    backoff_s: float = 0.5
    """First backoff; doubles each retry, with jitter."""
    chat: bool = True
    """Use /chat/completions (instruct models); False = /completions with raw prompts."""
    grammar_field: str | None = None
    """Request field that carries a GBNF grammar, for servers with constrained decoding: "grammar" for
    llama.cpp's server. None = grammars are not sent (OpenAI itself rejects unknown fields), and the
    translator retries with a stricter prompt instead."""

    @field_validator("base_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        """`http://a/v1,http://b/v1` (as --model gives them) → a list; trailing slashes dropped."""
        if isinstance(value, str):
            value = [u for u in (part.strip() for part in value.split(",")) if u]
        if isinstance(value, list):
            value = [str(u).strip().rstrip("/") for u in value]
        return value


class OpenAIEngine(Engine):
    name = "openai"
    config_class = OpenAIConfig
    spec_fields = {"model": "base_urls", "served_model": "model", "parallel": "concurrency"}

    def __init__(self, config: OpenAIConfig | None = None, **overrides: Any) -> None:
        self.config = config or OpenAIConfig(**overrides)
        if not self.config.base_urls:
            raise EngineError("the openai engine needs at least one base URL")
        self.model = self.config.model
        self.chat = self.config.chat
        self.parallelism = max(1, self.config.concurrency)
        self.supports_grammar = bool(self.config.grammar_field)
        self._urls = itertools.cycle([u.rstrip("/") for u in self.config.base_urls])
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, request: GenRequest) -> GenResult:
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = request.stop
        if request.grammar:
            if not self.config.grammar_field:
                raise EngineError("this endpoint takes no grammar: set grammar_field (llama.cpp: grammar)")
            body[self.config.grammar_field] = request.grammar
        if request.messages is not None:
            body["messages"] = request.messages
            route = "/chat/completions"
        else:
            body["prompt"] = request.prompt
            route = "/completions"
        started = time.perf_counter()
        last_error = ""
        async with sem:
            for attempt in range(self.config.max_retries + 1):
                url = next(self._urls) + route
                try:
                    response = await client.post(url, json=body, headers=self._headers)
                    if response.status_code == 200:
                        return GenResult.from_openai(response.json(), time.perf_counter() - started)
                    last_error = f"HTTP {response.status_code} from {url}: {response.text[:300]}"
                    if response.status_code != 429 and response.status_code < 500:
                        break  # a client error will not change on retry
                except (httpx.TransportError, ValueError) as exc:
                    last_error = f"{type(exc).__name__} from {url}: {exc}"
                if attempt < self.config.max_retries:
                    delay = self.config.backoff_s * 2**attempt
                    await asyncio.sleep(delay * (0.5 + random.random()))
        return GenResult("", "error", seconds=time.perf_counter() - started, error=last_error)

    async def agenerate(self, requests: list[GenRequest]) -> list[GenResult]:
        sem = asyncio.Semaphore(self.parallelism)
        limits = httpx.Limits(max_connections=self.parallelism, max_keepalive_connections=self.parallelism)
        async with httpx.AsyncClient(timeout=self.config.timeout_s, limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, sem, r) for r in requests)))

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return asyncio.run(self.agenerate(requests))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "base_urls": list(self.config.base_urls)}

"""In-process GGUF inference with xllamacpp (llama.cpp's server, without HTTP in the request path).

Concurrent requests are decoded together in llama.cpp's parallel slots: `generate` submits a batch from a
thread pool as wide as the slot count and llama.cpp's continuous batching interleaves them.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult
from redtrans.engines.models import DEFAULT_MODEL, resolve_gguf


@dataclass
class LlamaCppConfig:
    """Settings of the embedded engine."""

    model: str = DEFAULT_MODEL
    """Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m) or a path to a .gguf file."""
    n_parallel: int = 4
    """Parallel slots: requests decoded together."""
    n_ctx_per_slot: int = 2048
    """Context tokens per slot (prompt + output of one request)."""
    n_threads: int = 0
    """CPU threads; 0 = all cores."""
    chat: bool | None = None
    """Force chat (instruct) or completion (base) mode; None = from the registry (paths: chat)."""


class LlamaCppEngine(Engine):
    name = "llamacpp"

    def __init__(self, config: LlamaCppConfig | None = None, **overrides: Any) -> None:
        import xllamacpp  # the `local` extra; imported here so the core needs no native wheel

        self.config = config or LlamaCppConfig(**overrides)
        path, spec = resolve_gguf(self.config.model)
        self.model = spec.name if spec else str(path)
        self.path = path
        self.chat = self.config.chat if self.config.chat is not None else (spec.chat if spec else True)
        self.parallelism = max(1, self.config.n_parallel)
        threads = self.config.n_threads or os.cpu_count() or 1
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = self.parallelism
        params.n_ctx = self.config.n_ctx_per_slot * self.parallelism
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.temp = 0.0
        params.verbosity = -1  # llama.cpp logs nothing but errors
        params.hostnames = ["127.0.0.1"]  # its HTTP listener stays on loopback
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - native loader errors are untyped
            raise EngineError(f"llama.cpp could not load {path}: {exc}") from exc
        self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="llamacpp-slot")

    @property
    def listening_address(self) -> str:
        """llama.cpp's own OpenAI-compatible HTTP endpoint for this model (loopback)."""
        return str(self._server.listening_address)

    def _one(self, request: GenRequest) -> GenResult:
        body: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = request.stop
        started = time.perf_counter()
        if request.messages is not None:
            if not self.chat:
                raise EngineError(f"{self.model} is a base model: send a completion `prompt`, not messages")
            body["messages"] = request.messages
            response = self._server.handle_chat_completions(body)
        else:
            body["prompt"] = request.prompt
            response = self._server.handle_completions(body)
        elapsed = time.perf_counter() - started
        if not isinstance(response, dict) or "choices" not in response:
            message = response.get("error", response) if isinstance(response, dict) else response
            return GenResult("", "error", seconds=elapsed, error=str(message))
        return GenResult.from_openai(response, elapsed)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        if len(requests) == 1:
            return [self._one(requests[0])]
        return list(self._pool.map(self._one, requests))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "n_ctx_per_slot": self.config.n_ctx_per_slot}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        server = getattr(self, "_server", None)
        if server is not None:
            del self._server

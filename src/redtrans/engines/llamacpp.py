"""In-process GGUF inference with xllamacpp (llama.cpp's server, without HTTP in the request path).

Concurrent requests are decoded together in llama.cpp's parallel slots: one worker thread per slot feeds
its slot and llama.cpp's continuous batching interleaves them. Workers pick requests by prompt affinity: a
slot keeps the KV cache of the last prompt it ran, so a request whose system prompt (or few-shot prefix)
matches what the slot last held skips re-reading it. Without that, a zh→en post landing on a slot that last
translated en→zh re-processes the whole system prompt, which on a CPU costs more than batching gains.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from concurrent.futures import Future
from typing import Any

from pydantic import Field

from redtrans.config import StageConfig
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult, openai_body
from redtrans.engines.models import DEFAULT_MODEL, resolve_gguf


class LlamaCppConfig(StageConfig):
    """Settings of the embedded engine."""

    model: str = DEFAULT_MODEL
    """Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m) or a path to a .gguf file."""
    n_parallel: int = Field(default=4, ge=1)
    """Parallel slots: requests decoded together."""
    n_ctx_per_slot: int = Field(default=2048, ge=64)
    """Context tokens per slot (prompt + output of one request)."""
    n_threads: int = Field(default=0, ge=0)
    """CPU threads; 0 = all cores."""
    deterministic: bool = False
    """One slot and no prompt-cache reuse, so every prompt is computed whole and every sequence decoded alone:
    greedy output is byte-identical whatever else is queued (several slots decode in one batch, and a reused
    prefix leaves a suffix batch whose size depends on the previous request; both round differently).
    Overrides n_parallel."""
    chat: bool | None = None
    """Force chat (instruct) or completion (base) mode; None = from the registry (paths: chat)."""


class LlamaCppEngine(Engine):
    name = "llamacpp"
    config_class = LlamaCppConfig
    spec_fields = {"model": "model", "parallel": "n_parallel", "deterministic": "deterministic"}
    supports_grammar = True
    supports_submit = True

    def __init__(self, config: LlamaCppConfig | None = None, **overrides: Any) -> None:
        import xllamacpp  # the `local` extra; imported here so the core needs no native wheel

        self.config = config or LlamaCppConfig(**overrides)
        path, spec = resolve_gguf(self.config.model)
        self.model = spec.name if spec else str(path)
        self.path = path
        self.chat = self.config.chat if self.config.chat is not None else (spec.chat if spec else True)
        self.deterministic = self.config.deterministic
        self.parallelism = 1 if self.deterministic else max(1, self.config.n_parallel)
        threads = self.threads = self.config.n_threads or os.cpu_count() or 1
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = self.parallelism
        params.n_ctx = self.config.n_ctx_per_slot * self.parallelism
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.temp = 0.0
        params.verbosity = -1  # llama.cpp logs nothing but errors
        params.hostnames = ["127.0.0.1"]  # its HTTP listener stays on loopback
        # ... and takes only requests with this process's own random key (other local users and processes,
        # or a browser page reaching loopback, get 401). In-process calls below do not go through HTTP.
        self._api_key = secrets.token_urlsafe(32)
        params.api_keys = [self._api_key]
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - native loader errors are untyped
            raise EngineError(f"llama.cpp could not load {path}: {exc}") from exc
        self._pending: list[tuple[str, GenRequest, Future[GenResult]]] = []  # (prefix key, request, future)
        self._wakeup = threading.Condition()
        self._closing = False
        self._slot_keys: list[str | None] = [None] * self.parallelism
        self._oldest_passed_over = 0
        self._workers = [
            threading.Thread(target=self._work, args=(slot,), name=f"llamacpp-slot-{slot}", daemon=True)
            for slot in range(self.parallelism)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def listening_address(self) -> str:
        """llama.cpp's own OpenAI-compatible HTTP endpoint for this model (loopback). It requires `api_key`
        as a bearer token on every route but /health: `OpenAIConfig(base_urls=[…/v1], api_key=engine.api_key)`."""
        return str(self._server.listening_address)

    @property
    def api_key(self) -> str:
        """The random key of this engine's HTTP listener (new for every engine; never logged)."""
        return self._api_key

    def _take(self, slot: int) -> tuple[GenRequest, Future[GenResult]] | None:
        """The next request for `slot` (None once closing): the oldest pending one whose prompt prefix this
        slot already holds, else the oldest. The oldest is passed over at most 4 × slots times, so a request
        with a different prefix is not starved while matching ones keep arriving."""
        with self._wakeup:
            while not self._pending and not self._closing:
                self._wakeup.wait()
            if not self._pending:
                return None
            held, index = self._slot_keys[slot], 0
            if self._oldest_passed_over < 4 * self.parallelism:
                index = next((i for i, (key, _, _) in enumerate(self._pending) if key == held), 0)
            self._oldest_passed_over = self._oldest_passed_over + 1 if index else 0
            self._slot_keys[slot], request, future = self._pending.pop(index)
            return request, future

    def _work(self, slot: int) -> None:
        while (task := self._take(slot)) is not None:
            request, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._one(request, slot))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller waiting on the future
                future.set_exception(exc)

    def _one(self, request: GenRequest, slot: int) -> GenResult:
        if request.messages is not None and not self.chat:
            raise EngineError(f"{self.model} is a base model: send a completion `prompt`, not messages")
        body = openai_body(request)
        body["id_slot"] = slot  # llama.cpp runs it in this slot (waiting if busy): the affinity above holds
        if self.deterministic:
            # A reused prefix leaves only the rest of the prompt to compute, in a batch whose size depends on the
            # previous request; its numerics then differ in the last bits (docs/determinism.md).
            body["cache_prompt"] = False
        started = time.perf_counter()
        if request.messages is not None:
            response = self._server.handle_chat_completions(body)
        else:
            response = self._server.handle_completions(body)
        elapsed = time.perf_counter() - started
        if isinstance(response, dict) and "choices" not in response and "error" in response:
            return GenResult.failed(str(response["error"]), elapsed)
        return GenResult.from_openai_or_error(response, elapsed)

    def _enqueue(self, requests: list[GenRequest], ahead: bool = False) -> list[Future[GenResult]]:
        futures: list[Future[GenResult]] = [Future() for _ in requests]
        with self._wakeup:
            if self._closing:
                raise EngineError("the llama.cpp engine is closed")
            queued = [(_prefix_key(r), r, f) for r, f in zip(requests, futures, strict=True)]
            self._pending = queued + self._pending if ahead else self._pending + queued
            self._wakeup.notify_all()
        return futures

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        return self._enqueue([request], ahead)[0]

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return [future.result() for future in self._enqueue(requests)]

    def describe(self) -> dict[str, Any]:
        # The thread count is recorded because it changes outputs, in the deterministic mode too (docs/determinism.md).
        return {**super().describe(), "path": str(self.path), "n_ctx_per_slot": self.config.n_ctx_per_slot,
                "n_threads": self.threads}  # fmt: skip

    def close(self) -> None:
        with self._wakeup:
            self._closing = True  # workers finish what is pending, then exit
            self._wakeup.notify_all()
        for worker in self._workers:
            worker.join()
        server = getattr(self, "_server", None)
        if server is not None:
            del self._server


def _prefix_key(request: GenRequest) -> str:
    """What a slot's KV cache can reuse: the system prompt of a chat, the few-shot head of a completion."""
    if request.messages:
        return request.messages[0].get("content", "")
    return (request.prompt or "")[:1024]

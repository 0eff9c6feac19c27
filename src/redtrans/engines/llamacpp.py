"""In-process GGUF inference with xllamacpp (llama.cpp's server, without HTTP in the request path).

Two modes (`LlamaCppConfig.deterministic`; docs/determinism.md):

- **Deterministic** (the default of `redtrans translate` and `redtrans bench`): k independent llama.cpp contexts,
  each with one slot and one CPU thread, decode one sequence each. A chat request's leading system message is
  computed once, alone, and saved (llama.cpp's slot save, through the engine's loopback listener); before each
  request it is restored into the context and only the rest of the prompt is computed. So every number a request
  goes through — its system prompt computed alone, the rest in a batch of its own tokens, one thread — is a
  function of the request: the output depends neither on what else is queued, nor on k, nor on which context
  runs it, nor on the machine's core count (for one build and instruction set). Requests without such a prefix
  (completion prompts, a lone user turn) are computed whole.
- **Throughput**: one context whose parallel slots are decoded together in one batch: one worker thread per slot
  feeds its slot and llama.cpp's continuous batching interleaves them. Workers pick requests by prompt affinity:
  a slot keeps the KV cache of the last prompt it ran, so a request whose system prompt (or few-shot prefix)
  matches what the slot last held skips re-reading it. Which requests share a batch, and how much of a prompt a
  slot reuses, depend on the queue: some outputs change from run to run.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, model_validator

from redtrans.config import StageConfig
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult, openai_body
from redtrans.engines.models import DEFAULT_MODEL, resolve_gguf

DETERMINISTIC_DECODING = "prefix-restore-1t"
"""The deterministic mode's scheme: a saved system-prompt prefix restored before each request, one thread per
context. Its outputs differ from those of round 2's mode (every prompt computed whole on all cores)."""

THROUGHPUT_SLOTS = 4
"""Parallel slots of the throughput mode when `n_parallel` is not given."""

PREFIXES_KEPT = 64
"""Saved system-prompt prefixes kept on disk (the least recently used one beyond this is deleted)."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: `taskset -c 0` gives 1)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_contexts(model_path: Path) -> int:
    """The deterministic mode's contexts when none are asked for: one per usable core, but no more than half the
    available memory holds (each context keeps its own repacked copy of the weights, about the GGUF's size)."""
    cores = usable_cores()
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no such sysconf here: cores alone
        return cores
    return max(1, min(cores, available // 2 // max(1, model_path.stat().st_size)))


class LlamaCppConfig(StageConfig):
    """Settings of the embedded engine."""

    model: str = DEFAULT_MODEL
    """Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m) or a path to a .gguf file."""
    n_parallel: int | None = Field(default=None, ge=1)
    """Requests decoded at once: independent single-thread contexts in the deterministic mode (None = one per
    usable core, as many as half the available memory holds: each context keeps its own repacked copy of the
    weights; outputs do not depend on it), parallel slots of one context in the throughput mode (None = 4)."""
    n_ctx_per_slot: int = Field(default=2048, ge=64)
    """Context tokens per slot or context (prompt + output of one request)."""
    n_threads: int = Field(default=0, ge=0)
    """CPU threads of the throughput mode's context; 0 = all cores. The deterministic mode runs one thread per
    context (so its outputs do not depend on the core count) and takes no other value."""
    deterministic: bool = False
    """Byte-identical greedy output whatever else is queued, for any `n_parallel` and core count (module
    docstring). False = the throughput mode: slots decoded together, some outputs vary between runs."""
    chat: bool | None = None
    """Force chat (instruct) or completion (base) mode; None = from the registry (paths: chat)."""

    @model_validator(mode="after")
    def _one_thread_per_context(self) -> LlamaCppConfig:
        if self.deterministic and self.n_threads > 1:
            raise ValueError(
                f"n_threads={self.n_threads}: the deterministic mode runs one thread per context (outputs would "
                "otherwise depend on it); use n_parallel / --parallel N for N contexts, or the throughput mode"
            )
        return self


class _Context:
    """One llama.cpp context (an `xllamacpp.Server`) and a client for the slot routes of its loopback listener."""

    def __init__(self, server: Any, api_key: str) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=str(server.listening_address),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(120.0),  # a slot file of a long prompt on a slow disk; never unbounded
        )

    def post(self, route: str, body: dict[str, Any], params: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            response = self.http.post(route, json=body, params=params)
        except httpx.HTTPError as exc:
            raise EngineError(f"llama.cpp's listener did not answer {route}: {exc}") from exc
        if response.status_code != 200:
            raise EngineError(f"llama.cpp refused {route}: HTTP {response.status_code} {response.text[:200]}")
        answer: dict[str, Any] = response.json()
        return answer

    def slot(self, action: str, filename: str) -> dict[str, Any]:
        """Save the slot's KV cache to `filename` (in the server's slot folder) or restore it from there."""
        return self.post("/slots/0", {"filename": filename}, {"action": action})

    def close(self) -> None:
        self.http.close()
        del self.server  # llama.cpp's loop and listener stop when the last reference goes


class _PrefixStore:
    """Saved system-prompt prefixes shared by the contexts: each computed once (by the first context that needs
    it; others needing it meanwhile wait for it), at most `limit` kept on disk."""

    def __init__(self, directory: Path, limit: int = PREFIXES_KEPT) -> None:
        self.directory, self.limit = directory, limit
        self._saved: OrderedDict[str, Future[str]] = OrderedDict()  # system text → file name, once saved
        self._users: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, system: str, save: Callable[[str], object]) -> Iterator[str]:
        """The file name of `system`'s saved prefix, kept on disk while the block runs; `save(name)` computes and
        saves it there when no context has yet."""
        with self._lock:
            future = self._saved.get(system)
            owner = future is None
            if future is None:
                future = self._saved[system] = Future()
            self._saved.move_to_end(system)
            self._users[system] += 1
        try:
            if owner:
                name = hashlib.sha256(system.encode()).hexdigest()[:32] + ".bin"
                try:
                    save(name)
                except BaseException as exc:
                    with self._lock:
                        self._saved.pop(system, None)  # not saved: the next request tries again
                    future.set_exception(exc)
                    raise
                future.set_result(name)
            yield future.result()
        finally:
            with self._lock:
                self._users[system] -= 1
                if not self._users[system]:
                    del self._users[system]
                self._evict()

    def _evict(self) -> None:
        for system in list(self._saved):
            if len(self._saved) <= self.limit:
                return
            future = self._saved[system]
            if self._users[system] or not future.done():
                continue
            del self._saved[system]
            if future.exception() is None:
                (self.directory / future.result()).unlink(missing_ok=True)


class LlamaCppEngine(Engine):
    name = "llamacpp"
    config_class = LlamaCppConfig
    spec_fields = {"model": "model", "parallel": "n_parallel", "deterministic": "deterministic"}
    speed_fields = frozenset({"n_parallel"})
    supports_grammar = True
    supports_submit = True
    deterministic_decoding = DETERMINISTIC_DECODING

    def __init__(self, config: LlamaCppConfig | None = None, **overrides: Any) -> None:
        import xllamacpp  # the `local` extra; imported here so the core needs no native wheel

        self._xllamacpp = xllamacpp
        self.config = config or LlamaCppConfig(**overrides)
        path, spec = resolve_gguf(self.config.model)
        self.model = spec.name if spec else str(path)
        self.path = path
        self.chat = self.config.chat if self.config.chat is not None else (spec.chat if spec else True)
        self.deterministic = self.config.deterministic
        # llama.cpp's HTTP listeners take only requests with this engine's own random key (other local users and
        # processes, or a browser page reaching loopback, get 401). Generation does not go through HTTP.
        self._api_key = secrets.token_urlsafe(32)
        self._slot_dir: Path | None = None
        self._contexts: list[_Context] = []
        try:
            if self.deterministic:
                self.parallelism = self.config.n_parallel or default_contexts(path)
                self.threads = 1
                self._slot_dir = Path(tempfile.mkdtemp(prefix="redtrans-prefixes-"))
                self._prefixes = _PrefixStore(self._slot_dir)
                self._contexts = [self._start(slots=1, threads=1) for _ in range(self.parallelism)]
            else:
                self.parallelism = self.config.n_parallel or THROUGHPUT_SLOTS
                self.threads = self.config.n_threads or os.cpu_count() or 1
                self._contexts = [self._start(slots=self.parallelism, threads=self.threads)]
        except BaseException:
            self._release()
            raise
        self._pending: list[tuple[str, GenRequest, Future[GenResult]]] = []  # (prefix key, request, future)
        self._wakeup = threading.Condition()
        self._closing = False
        self._slot_keys: list[str | None] = [None] * self.parallelism
        self._oldest_passed_over = 0
        self._workers = [
            threading.Thread(target=self._work, args=(slot,), name=f"llamacpp-{slot}", daemon=True)
            for slot in range(self.parallelism)
        ]
        for worker in self._workers:
            worker.start()

    def _start(self, slots: int, threads: int) -> _Context:
        params = self._xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_parallel = slots
        params.n_ctx = self.config.n_ctx_per_slot * slots
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.temp = 0.0
        params.verbosity = -1  # llama.cpp logs nothing but errors
        params.hostnames = ["127.0.0.1"]  # its HTTP listener stays on loopback
        params.api_keys = [self._api_key]
        if self._slot_dir is not None:
            params.slot_save_path = f"{self._slot_dir}/"
            # What a request reuses must be exactly the restored prefix: no host-memory prompt cache (it can load
            # a longer old prompt instead), no KV shifting, no context checkpoints (slot state the file lacks).
            params.cache_ram_mib = 0
            params.n_cache_reuse = 0
            params.n_ctx_checkpoints = 0
            params.n_threads_http = 2  # the listener only serves this engine's slot routes
        try:
            server = self._xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - native loader errors are untyped
            raise EngineError(f"llama.cpp could not load {self.path}: {exc}") from exc
        return _Context(server, self._api_key)

    @property
    def listening_address(self) -> str:
        """llama.cpp's own OpenAI-compatible HTTP endpoint for this model (loopback; the first context's in the
        deterministic mode). It requires `api_key` as a bearer token on every route but /health:
        `OpenAIConfig(base_urls=[…/v1], api_key=engine.api_key)`."""
        return str(self._contexts[0].server.listening_address)

    @property
    def api_key(self) -> str:
        """The random key of this engine's HTTP listener (new for every engine; never logged)."""
        return self._api_key

    def _take(self, worker: int) -> tuple[GenRequest, Future[GenResult]] | None:
        """The next request for `worker` (None once closing). Deterministic: the oldest. Throughput: the oldest
        pending one whose prompt prefix this slot already holds, else the oldest; the oldest is passed over at
        most 4 × slots times, so a request with a different prefix is not starved while matching ones arrive."""
        with self._wakeup:
            while not self._pending and not self._closing:
                self._wakeup.wait()
            if not self._pending:
                return None
            held, index = self._slot_keys[worker], 0
            if not self.deterministic and self._oldest_passed_over < 4 * self.parallelism:
                index = next((i for i, (key, _, _) in enumerate(self._pending) if key == held), 0)
            self._oldest_passed_over = self._oldest_passed_over + 1 if index else 0
            self._slot_keys[worker], request, future = self._pending.pop(index)
            return request, future

    def _work(self, worker: int) -> None:
        while (task := self._take(worker)) is not None:
            request, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._one(request, worker))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller waiting on the future
                future.set_exception(exc)

    def _one(self, request: GenRequest, worker: int) -> GenResult:
        if request.messages is not None and not self.chat:
            raise EngineError(f"{self.model} is a base model: send a completion `prompt`, not messages")
        body = openai_body(request)
        started = time.perf_counter()
        if not self.deterministic:
            context = self._contexts[0]
            body["id_slot"] = worker  # llama.cpp runs it in this slot (waiting if busy): the affinity above holds
            return self._generate(context, body, started)
        context = self._contexts[worker]
        body["id_slot"] = 0
        system = _leading_system(request)
        if system is None:
            body["cache_prompt"] = False  # nothing to restore: the prompt is computed whole
            return self._generate(context, body, started)
        try:
            with self._prefixes.lease(system["content"], lambda name: self._save_prefix(context, system, name)) as name:
                context.slot("restore", name)
        except EngineError as exc:
            return GenResult.failed(str(exc), time.perf_counter() - started)
        body["cache_prompt"] = True  # reuses exactly the restored prefix: the rest is computed in one batch
        return self._generate(context, body, started)

    def _save_prefix(self, context: _Context, system: dict[str, str], name: str) -> None:
        """Compute the system turn alone (as the chat template renders it) in `context` and save it as `name`."""
        rendered = context.post("/apply-template", {"messages": [system], "add_generation_prompt": False})
        text = rendered.get("prompt")
        if not isinstance(text, str) or not text:
            raise EngineError(f"llama.cpp's /apply-template gave no prompt: {str(rendered)[:200]}")
        body = {"prompt": text, "max_tokens": 0, "temperature": 0.0, "cache_prompt": False, "id_slot": 0}
        response = context.server.handle_completions(body)
        if not isinstance(response, dict) or "error" in response:
            raise EngineError(f"llama.cpp could not compute a system prompt: {str(response)[:200]}")
        context.slot("save", name)

    def _generate(self, context: _Context, body: dict[str, Any], started: float) -> GenResult:
        if "messages" in body:
            response = context.server.handle_chat_completions(body)
        else:
            response = context.server.handle_completions(body)
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
        # Threads change outputs in the throughput mode; the deterministic mode always runs one per context.
        described = {**super().describe(), "path": str(self.path), "n_ctx_per_slot": self.config.n_ctx_per_slot,
                     "n_threads": self.threads}  # fmt: skip
        if self.deterministic:
            described["contexts"] = self.parallelism
        return described

    def close(self) -> None:
        with self._wakeup:
            self._closing = True  # workers finish what is pending, then exit
            self._wakeup.notify_all()
        for worker in self._workers:
            worker.join()
        self._release()

    def _release(self) -> None:
        contexts, self._contexts = self._contexts, []
        for context in contexts:
            context.close()
        if self._slot_dir is not None:
            shutil.rmtree(self._slot_dir, ignore_errors=True)
            self._slot_dir = None


def _leading_system(request: GenRequest) -> dict[str, str] | None:
    """The system turn a chat request starts with, when more turns follow it: the prefix the deterministic mode
    computes once and restores."""
    messages = request.messages
    if messages and len(messages) > 1 and messages[0].get("role") == "system":
        return messages[0]
    return None


def _prefix_key(request: GenRequest) -> str:
    """What a slot's KV cache can reuse: the system prompt of a chat, the few-shot head of a completion."""
    if request.messages:
        return request.messages[0].get("content", "")
    return (request.prompt or "")[:1024]

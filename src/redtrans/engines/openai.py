"""Any OpenAI-compatible chat/completions endpoint: vLLM, SGLang, llama.cpp's server, OpenAI.

Requests are spread round-robin over several base URLs with bounded concurrency per engine, a timeout per
attempt and retries with exponential backoff on connection errors, timeouts, 429 and 5xx. This is how
redtrans scales past one machine: point it at a fleet of `vllm serve` replicas.

One pooled `httpx.AsyncClient` serves the engine for its whole life, so connections are kept alive across
batches. A pooled async client belongs to one event loop, so the engine owns one: a background thread runs
it, `generate()` (any thread) and `agenerate()` (any other loop) hand their batch to it and wait, and
`close()` closes the client and stops the loop, bounded in time.

Time limits: an attempt waits at most `timeout_s`; a request's `GenRequest.deadline` (a `time.monotonic()`
instant) bounds everything else as well — each attempt's timeout, each backoff, each `Retry-After` wait and
the wait for a free slot — so a request ends, as an error result, when its caller stops waiting. A 429 or
503 answer's `Retry-After` (seconds or an HTTP date) is honoured up to `retry_after_cap_s`: its endpoint
gets no request before then, while other endpoints keep serving.

Each endpoint has a circuit breaker: after `breaker_failures` consecutive timeouts, connection errors or 5xx
answers it opens, and requests go to the other endpoints — or fail at once, with an error result, when every
endpoint is open — instead of waiting on an upstream that is down. A hung upstream produces no failures until
its calls time out, so a watchdog looks at each endpoint: when calls have waited `breaker_stall_s` and nothing
answered meanwhile, it asks `GET /models` (waiting at most `breaker_cooldown_s`); no answer (or a 5xx) opens
the breaker at once. When a breaker opens, the calls in flight to that endpoint are cut: each is retried
elsewhere or fails now, so a hang does not hold slots and callers until their deadlines. After
`breaker_cooldown_s` one request goes to it as a probe (outside the concurrency slots), and one more each
cooldown, until one gets an answer and closes the breaker; probes still hanging from the outage are then cut
and retried. An upstream that recovers thus gets traffic again within about a cooldown, whatever the length
of the hang. `OpenAIEngine.breaker_states()` reports each endpoint's state for a metric.

Failures are per request: a timeout, an HTTP error or an answer that is not an OpenAI completion (no
`choices`, not JSON) gives that request `finish_reason="error"` with the reason in `error`; the rest of the
batch is unaffected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import json
import os
import random
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
from pydantic import Field, field_validator, model_validator

from redtrans.config import StageConfig
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult, openai_body

T = TypeVar("T")

_DEADLINE_SLACK_S = 0.05
"""An attempt cancelled this close to its request's deadline was cut by it (not by its caller leaving)."""

SHARD_CONNECTIONS = 16
"""Connections per pooled client. httpcore walks its whole pool on every request and release (a few µs per
connection), which at 128 connections cost ~7 ms of CPU per request; an endpoint's connections are therefore
spread over clients of at most this many, each request taking the least busy (benchmarks/fleet_client.py)."""

CLOSE_TIMEOUT_S = 5.0
CANCEL_POLL_S = 0.1  # how often generate_until looks at its cancel check
"""How long `close()` waits for the client's connections to close and the loop's thread to end."""


class OpenAIConfig(StageConfig):
    """Settings of the OpenAI-compatible engine."""

    base_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], min_length=1)
    """One or more endpoints ending in /v1; requests are spread over them round-robin."""
    model: str = "default"
    """The served model name (what `vllm serve` calls it)."""
    api_key: str | None = None
    """Bearer token; default from $OPENAI_API_KEY, none when unset."""
    concurrency: int = Field(default=8, ge=1)
    """Requests in flight at once, over all endpoints (also the size of the engine's connection pool)."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Timeout of one attempt (each of connect, write, read); a request's deadline shortens it."""
    max_retries: int = Field(default=3, ge=0)
    """Retries of a request on connection errors, timeouts, 429 and 5xx, with exponential backoff."""
    backoff_s: float = Field(default=0.5, ge=0)
    """First backoff; doubles each retry, with jitter."""
    retry_after_cap_s: float = Field(default=30.0, ge=0)
    """Longest `Retry-After` (of a 429 or 503 answer) honoured: the endpoint gets no request for that long,
    at most this many seconds; never past a request's deadline."""
    breaker_failures: int = Field(default=5, ge=1)
    """Consecutive failures of one endpoint (timeouts, connection errors, 5xx) that open its circuit breaker:
    requests then go to the other endpoints, or fail at once when every endpoint is open."""
    breaker_cooldown_s: float = Field(default=2.0, gt=0)
    """How long an open endpoint gets no request; then one request goes as a probe (half-open), and another
    every cooldown until one gets an answer, which closes the breaker. Also the longest wait for a liveness
    check (`breaker_stall_s`)."""
    breaker_stall_s: float = Field(default=1.0, gt=0)
    """Calls that have waited this long on an endpoint that answered nothing meanwhile trigger a liveness check
    (`GET {base_url}/models`, at most once a cooldown): no answer within `breaker_cooldown_s`, or a 5xx, opens
    the breaker and cuts those calls. A slow but live upstream answers the check and keeps its calls."""
    http_client: Literal["auto", "aiohttp", "httpx"] = "auto"
    """HTTP client: aiohttp costs about a quarter of httpx's CPU per request (0.5 vs 2.1 ms here, see
    benchmarks/fleet_client.py), which decides throughput against a fleet; auto = aiohttp when installed
    (and no httpx `event_hooks` were given), else httpx."""
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

    @model_validator(mode="after")
    def _one_credential(self) -> OpenAIConfig:
        """user:password in an endpoint URL and a bearer key (`api_key` or $OPENAI_API_KEY) are two credentials
        for one endpoint: the answers would depend on which the upstream reads, so neither is guessed."""
        key_source = "api_key" if self.api_key else "$OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None
        with_user = [n for n, url in enumerate(self.base_urls) if urllib.parse.urlsplit(url).username is not None]
        if key_source and with_user:
            raise ValueError(
                f"two credentials for one endpoint: user:password in base URL {with_user[0] + 1} and {key_source}; "
                "give one (unset the key, or take the user:password out of the URL)"
            )
        return self


BREAKER_STATES = ("closed", "half_open", "open")
"""States of an endpoint's circuit breaker; a state's index here is its gauge value (0 = healthy)."""


@dataclass
class _Endpoint:
    """One base URL and what the engine knows of it (changed only on the engine's loop)."""

    url: str
    not_before: float = 0.0
    """No request before this `time.monotonic()` instant (a Retry-After)."""
    state: str = "closed"
    """closed: requests flow | open: none until `probe_at` | half_open: a probe went, awaiting its answer."""
    failures: int = 0
    """Consecutive failures (timeouts, connection errors, 5xx)."""
    probe_at: float = 0.0
    """When an open (or half-open) endpoint may take its next probe."""
    calls: dict[asyncio.Future[Any], tuple[float, bool]] = field(default_factory=dict)
    """Calls in flight → (when sent, sent while the breaker was not closed: a probe)."""
    cut: set[asyncio.Future[Any]] = field(default_factory=set)
    """Calls cancelled by the breaker (not by their callers)."""
    answered_at: float = 0.0
    """When the endpoint last answered anything."""
    checked_at: float = -1e9
    """When its last liveness check began."""
    checking: bool = False

    def usable(self, now: float) -> bool:
        return self.state == "closed" and self.not_before <= now

    def probe_due(self, now: float) -> bool:
        return self.state != "closed" and self.probe_at <= now and self.not_before <= now


class _Attempt(Exception):
    """One failed attempt: why, whether another may help, how long the server asked us to wait, and whether
    the engine was unavailable (`GenResult.transient`) even when another attempt now would not help."""

    def __init__(self, message: str, retry: bool, retry_after: float | None = None, unavailable: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.unavailable = unavailable


class _PastDeadline(Exception):
    """Waiting longer (backoff, Retry-After) would end past the request's deadline."""


class OpenAIEngine(Engine):
    name = "openai"
    config_class = OpenAIConfig
    spec_fields = {"model": "base_urls", "served_model": "model", "parallel": "concurrency"}
    speed_fields = frozenset({
        "base_urls", "api_key", "concurrency", "timeout_s", "max_retries", "backoff_s", "retry_after_cap_s",
        "breaker_failures", "breaker_cooldown_s", "http_client",
    })  # fmt: skip

    def __init__(
        self,
        config: OpenAIConfig | None = None,
        *,
        event_hooks: dict[str, list[Callable[..., Any]]] | None = None,
        **overrides: Any,
    ) -> None:
        """`event_hooks`: httpx event hooks (async functions; they run on the engine's loop) given to every
        pooled client, e.g. to count requests on the wire in a measurement."""
        self.config = config or OpenAIConfig(**overrides)
        self._event_hooks = event_hooks or {}
        if not self.config.base_urls:
            raise EngineError("the openai engine needs at least one base URL")
        self.model = self.config.model
        self.chat = self.config.chat
        self.parallelism = max(1, self.config.concurrency)
        self.supports_grammar = bool(self.config.grammar_field)
        self._endpoints = [_Endpoint(u.rstrip("/")) for u in self.config.base_urls]
        self._next = 0
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
        self._headers = {"Content-Type": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._closed = False
        self._close_lock = threading.Lock()
        self._loop = _new_loop()
        # The thread holds the loop, not the engine: an engine dropped without close() is still collected,
        # and its finalizer stops the loop.
        self._thread = threading.Thread(target=_run_loop, args=(self._loop,), name="openai-engine", daemon=True)
        self._thread.start()
        self._slots, self._transport = self._submit(self._open()).result()
        self._finalizer = weakref.finalize(self, _stop_loop, self._loop, self._thread, self._transport)

    # -- the owned loop ---------------------------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _open(self) -> tuple[asyncio.Semaphore, _Transport]:
        """The slots, the pooled client(s) and the breaker's watchdog, kept for the engine's life (on its loop)."""
        kind = self.config.http_client
        if kind == "auto":
            kind = "aiohttp" if _has_aiohttp() and not self._event_hooks else "httpx"
        if kind == "aiohttp" and self._event_hooks:
            raise EngineError("event_hooks are httpx hooks: use http_client httpx (or auto) with them")
        urls = [e.url for e in self._endpoints]
        transport: _Transport
        if kind == "aiohttp":
            transport = _AiohttpTransport(urls, self._headers, self.config.timeout_s)
        else:
            transport = _HttpxTransport(urls, self._headers, self.config.timeout_s, self.parallelism, self._event_hooks)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(transport))
        return asyncio.Semaphore(self.parallelism), transport

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("the openai engine is closed")

    # -- the interface ----------------------------------------------------------------------------------

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self._check_open()
        if threading.current_thread() is self._thread:
            raise EngineError("generate() called on the openai engine's own loop: use agenerate()")
        return self._submit(self._batch(requests)).result()

    def generate_until(self, requests: list[GenRequest], cancelled: Callable[[], bool]) -> list[GenResult]:
        """`generate`, whose HTTP calls are cancelled (their slots freed at once) when `cancelled()` turns true:
        serve stops a batch nobody waits for any more, even while its calls hang on an unresponsive upstream."""
        self._check_open()
        if cancelled():
            raise EngineError("cancelled: nobody waits for this batch any more")
        future = self._submit(self._batch(requests))
        while True:
            try:
                return future.result(timeout=CANCEL_POLL_S)
            except concurrent.futures.TimeoutError:
                if cancelled():
                    future.cancel()
                    raise EngineError("cancelled: nobody waits for this batch any more") from None

    async def agenerate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Runs on the engine's loop; the caller's loop only waits. Cancelling the caller cancels the batch."""
        self._check_open()
        if threading.current_thread() is self._thread:
            return await self._batch(requests)
        return await asyncio.wrap_future(self._submit(self._batch(requests)))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "base_urls": [_redact(u) for u in self.config.base_urls]}

    def breaker_states(self) -> dict[str, str]:
        """Each endpoint's circuit breaker, by base URL (credentials removed): "closed" (healthy), "half_open"
        (a probe is due or in flight) or "open". For a gauge, export `BREAKER_STATES.index(state)` per
        endpoint (0 closed, 1 half-open, 2 open); safe to call from any thread."""
        return {_redact(e.url): e.state for e in self._endpoints}

    def close(self) -> None:
        """Close the pooled client and stop the loop, waiting at most about `CLOSE_TIMEOUT_S`; batches still
        running are cancelled. Closing twice is harmless."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    # -- one batch, one request -------------------------------------------------------------------------

    async def _batch(self, requests: list[GenRequest]) -> list[GenResult]:
        # Bodies first: a request the endpoint cannot take (a grammar without grammar_field) fails the call.
        bodies = [openai_body(r, model=self.config.model, grammar_field=self.config.grammar_field) for r in requests]
        return list(await asyncio.gather(*(self._one(r, b) for r, b in zip(requests, bodies, strict=True))))

    async def _one(self, request: GenRequest, body: dict[str, Any]) -> GenResult:
        started = time.perf_counter()
        route = "/chat/completions" if request.messages is not None else "/completions"
        content = json.dumps(body, ensure_ascii=False).encode()
        last_error = ""
        transient = True  # until an answer says otherwise: a deadline or an open breaker is the engine's state
        try:
            async with asyncio.timeout_at(self._loop_deadline(request)):
                for attempt in range(self.config.max_retries + 1):
                    try:
                        data, elapsed = await self._send(request, route, content, started, last_error)
                        return GenResult.from_openai_or_error(data, elapsed)
                    except _Attempt as failure:
                        last_error = str(failure)
                        transient = failure.retry or failure.unavailable
                        if not failure.retry or attempt == self.config.max_retries:
                            break
                        if failure.retry_after is None:
                            delay = self.config.backoff_s * 2**attempt * (0.5 + random.random())
                            remaining = request.remaining()
                            if remaining is not None and delay >= remaining:
                                raise _PastDeadline from None
                            await asyncio.sleep(delay)
        except (TimeoutError, _PastDeadline):
            last_error = f"deadline reached; last error: {last_error}" if last_error else "deadline reached"
            transient = True
        return GenResult.failed(last_error, time.perf_counter() - started, transient=transient)

    def _loop_deadline(self, request: GenRequest) -> float | None:
        """The request's deadline on this loop's clock (asyncio's clock is `time.monotonic`)."""
        remaining = request.remaining()
        return None if remaining is None else self._loop.time() + remaining

    async def _send(
        self, request: GenRequest, route: str, content: bytes, started: float, last_error: str
    ) -> tuple[Any, float]:
        """One attempt. A probe due on an open endpoint goes first, without waiting for a slot (so a hung
        upstream's recovery is seen within a cooldown); otherwise, once a slot is free, the next usable
        endpoint round-robin. Every endpoint open: fail now. Every usable one asked to wait (Retry-After):
        wait without a slot for the first to be free — or give up now if that is past the deadline."""
        while True:
            now = time.monotonic()
            probe = next((e for e in self._endpoints if e.probe_due(now)), None)
            if probe is not None:
                probe.state, probe.probe_at = "half_open", now + self.config.breaker_cooldown_s
                return await self._attempt(probe, route, content, request, started)
            if all(e.state != "closed" for e in self._endpoints):
                raise _Attempt(self._all_open(last_error), retry=False, unavailable=True)
            async with self._slots:
                now = time.monotonic()
                count = len(self._endpoints)
                for step in range(count):
                    endpoint = self._endpoints[(self._next + step) % count]
                    if endpoint.usable(now):
                        self._next = (self._next + step + 1) % count
                        return await self._attempt(endpoint, route, content, request, started)
            waiting = [e.not_before for e in self._endpoints if e.state == "closed"]
            if not waiting:
                continue  # they opened while this request waited for a slot: probe or fail, above
            wait = min(waiting) - now
            remaining = request.remaining()
            if remaining is not None and wait >= remaining:
                raise _PastDeadline
            await asyncio.sleep(wait)

    def _all_open(self, last_error: str) -> str:
        soonest = min(e.probe_at for e in self._endpoints) - time.monotonic()
        message = (
            f"circuit open for every endpoint after {self.config.breaker_failures} consecutive failures "
            f"(next probe in {max(0.0, soonest):.1f} s)"
        )
        return f"{message}; last error: {last_error}" if last_error else message

    def _record(self, endpoint: _Endpoint, ok: bool) -> None:
        """An answer (any HTTP status below 500) closes the endpoint's breaker; a failure on a half-open
        endpoint, or the `breaker_failures`-th in a row, opens it for a cooldown."""
        if ok:
            endpoint.answered_at = time.monotonic()
            if endpoint.state != "closed":
                endpoint.state, endpoint.failures = "closed", 0
                # Probes still hanging from the outage would hold their callers: ask them again, now.
                self._cut(endpoint, lambda probe: probe)
            endpoint.failures = 0
            return
        endpoint.failures += 1
        if endpoint.state != "closed" or endpoint.failures >= self.config.breaker_failures:
            self._trip(endpoint)

    def _trip(self, endpoint: _Endpoint) -> None:
        """Open the breaker and cut every call in flight to the endpoint. The first probe goes a cooldown after
        it opened; a failed probe does not delay the next one, due a cooldown after it was sent."""
        if endpoint.state == "closed":
            endpoint.probe_at = max(endpoint.probe_at, time.monotonic() + self.config.breaker_cooldown_s)
        endpoint.state = "open"
        self._cut(endpoint, lambda probe: True)

    @staticmethod
    def _cut(endpoint: _Endpoint, which: Callable[[bool], bool]) -> None:
        for call, (_, probe) in list(endpoint.calls.items()):
            if which(probe) and not call.done():
                endpoint.cut.add(call)
                call.cancel()

    async def _watch(self, transport: _Transport) -> None:
        """The breaker's watchdog: a liveness check of each endpoint whose calls wait and that answers nothing."""
        stall, cooldown = self.config.breaker_stall_s, self.config.breaker_cooldown_s
        while True:
            await asyncio.sleep(min(0.25, stall / 2))
            now = time.monotonic()
            for endpoint in self._endpoints:
                if endpoint.checking or endpoint.state == "open" or not endpoint.calls:
                    continue
                oldest = min(sent for sent, _ in endpoint.calls.values())
                if now - oldest < stall or now - endpoint.answered_at < stall or now - endpoint.checked_at < cooldown:
                    continue
                endpoint.checking, endpoint.checked_at = True, now
                asyncio.get_running_loop().create_task(self._liveness(transport, endpoint))

    async def _liveness(self, transport: _Transport, endpoint: _Endpoint) -> None:
        try:
            status = await transport.get(endpoint.url, endpoint.url + "/models", self.config.breaker_cooldown_s)
        except _TransportError:
            alive = False
        else:
            alive = status < 500
        finally:
            endpoint.checking = False
        if alive:
            endpoint.answered_at = time.monotonic()
        elif endpoint.calls and endpoint.state != "open":
            self._trip(endpoint)

    async def _attempt(
        self, endpoint: _Endpoint, route: str, content: bytes, request: GenRequest, started: float
    ) -> tuple[Any, float]:
        url = endpoint.url + route
        remaining = request.remaining()
        timeout = self.config.timeout_s if remaining is None else max(0.001, min(self.config.timeout_s, remaining))
        call = asyncio.ensure_future(self._transport.post(endpoint.url, url, content, timeout))
        endpoint.calls[call] = (time.monotonic(), endpoint.state != "closed")
        try:
            status, content, retry_after_header = await call
        except _TransportError as exc:
            self._record(endpoint, ok=False)
            raise _Attempt(f"{exc.kind} from {_redact(url)}: {exc}", retry=True) from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if call in endpoint.cut and (current is None or current.cancelling() == 0):
                # Cut by the breaker, not by the caller: another endpoint, or a fast failure, or (a stale probe
                # of a recovered endpoint) the same one again.
                raise _Attempt(f"no answer from {_redact(url)}: its circuit opened or recovered", retry=True) from None
            call.cancel()
            remaining = request.remaining()
            if remaining is not None and remaining <= _DEADLINE_SLACK_S:
                # Cut by the request's deadline (which bounds the attempt's timeout too): a timeout as well.
                self._record(endpoint, ok=False)
            raise
        finally:
            endpoint.calls.pop(call, None)
            endpoint.cut.discard(call)
        self._record(endpoint, ok=status < 500)
        url = _redact(url)
        if status == 200:
            try:
                data = json.loads(content)
            except ValueError:
                text = content[:200].decode(errors="replace")
                raise _Attempt(f"the answer from {url} is not JSON: {text!r}", retry=False) from None
            return data, time.perf_counter() - started
        message = f"HTTP {status} from {url}: {content[:300].decode(errors='replace')}"
        retry_after = _retry_after(retry_after_header) if status in (429, 503) else None
        if retry_after is not None:  # this endpoint takes nothing before then; the others go on serving
            wait = min(retry_after, self.config.retry_after_cap_s)
            endpoint.not_before = max(endpoint.not_before, time.monotonic() + wait)
        raise _Attempt(message, retry=status == 429 or status >= 500, retry_after=retry_after)


class _TransportError(Exception):
    """No HTTP answer: `kind` is ConnectError, ReadTimeout, RemoteProtocolError, … (httpx's names)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Transport:
    """POST bytes, get (status, body, Retry-After) back; the pooled clients live as long as the engine."""

    async def post(self, base: str, url: str, content: bytes, timeout: float) -> tuple[int, bytes, str | None]:
        raise NotImplementedError

    async def get(self, base: str, url: str, timeout: float) -> int:
        """The status of a GET (the breaker's liveness check); _TransportError when nothing answers."""
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


def _has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _tls_context(urls: list[str]) -> ssl.SSLContext | None:
    """One TLS context for every client (loading the CA bundle costs ~0.2 s), None without https endpoints."""
    if not any(u.startswith("https:") for u in urls):
        return None
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


class _AiohttpTransport(_Transport):
    """One aiohttp session: its pool keeps connections per host; the engine's slots bound what is in flight."""

    def __init__(self, urls: list[str], headers: dict[str, str], timeout_s: float) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        tls = _tls_context(urls)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=tls if tls is not None else True)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=headers, trust_env=True, timeout=aiohttp.ClientTimeout(total=timeout_s)
        )

    async def post(self, base: str, url: str, content: bytes, timeout: float) -> tuple[int, bytes, str | None]:
        aiohttp = self._aiohttp
        try:
            async with self._session.post(url, data=content, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return response.status, await response.read(), response.headers.get("Retry-After")
        except TimeoutError:
            raise _TransportError("ReadTimeout", f"no answer within {timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise _TransportError("ConnectError", str(exc)) from None
        except aiohttp.ServerDisconnectedError as exc:
            raise _TransportError("RemoteProtocolError", str(exc) or "server disconnected") from None
        except aiohttp.ClientError as exc:
            raise _TransportError(type(exc).__name__, str(exc)) from None

    async def get(self, base: str, url: str, timeout: float) -> int:
        aiohttp = self._aiohttp
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.read()
                return response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _TransportError(type(exc).__name__, str(exc) or "no answer") from None

    async def aclose(self) -> None:
        await self._session.close()


class _HttpxTransport(_Transport):
    """httpx clients, each endpoint's connections spread over clients of at most `SHARD_CONNECTIONS`."""

    def __init__(
        self,
        urls: list[str],
        headers: dict[str, str],
        timeout_s: float,
        parallelism: int,
        event_hooks: dict[str, list[Callable[..., Any]]],
    ) -> None:
        shards = -(-parallelism // SHARD_CONNECTIONS)
        # The slots bound ordinary requests; probes of open endpoints run outside them, so a pool has no hard
        # bound (a hung probe must not keep the next one from connecting).
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=SHARD_CONNECTIONS)
        tls = _tls_context(urls)
        self.clients: dict[str, list[httpx.AsyncClient]] = {
            url: [
                httpx.AsyncClient(
                    timeout=timeout_s,
                    limits=limits,
                    headers=headers,
                    verify=tls if tls is not None else False,
                    event_hooks=event_hooks,
                )
                for _ in range(shards)
            ]
            for url in urls
        }
        self._loads = {url: [0] * shards for url in urls}

    async def post(self, base: str, url: str, content: bytes, timeout: float) -> tuple[int, bytes, str | None]:
        loads = self._loads[base]
        shard = min(range(len(loads)), key=loads.__getitem__)
        loads[shard] += 1
        try:
            response = await self.clients[base][shard].post(url, content=content, timeout=timeout)
        except httpx.TransportError as exc:  # timeouts included
            raise _TransportError(type(exc).__name__, str(exc)) from None
        finally:
            loads[shard] -= 1
        return response.status_code, response.content, response.headers.get("retry-after")

    async def get(self, base: str, url: str, timeout: float) -> int:
        try:
            response = await self.clients[base][0].get(url, timeout=timeout)
        except httpx.TransportError as exc:
            raise _TransportError(type(exc).__name__, str(exc)) from None
        return response.status_code

    async def aclose(self) -> None:
        clients = [c for shard in self.clients.values() for c in shard]
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


def _redact(url: str) -> str:
    """`url` without the user:password it may carry (for errors, provenance and metric labels)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the serve extra): about 15 % less CPU per request than asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, transport: _Transport) -> None:
    """Cancel what runs on the engine's loop, close the clients, stop the loop: bounded by CLOSE_TIMEOUT_S."""

    async def close_clients() -> None:
        with contextlib.suppress(Exception):
            await transport.aclose()

    async def shutdown() -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S / 2)
        await asyncio.wait_for(close_clients(), CLOSE_TIMEOUT_S / 2)

    if loop.is_closed() or not thread.is_alive():
        return
    if threading.current_thread() is thread:  # closed from a callback on its own loop: cannot wait here
        loop.create_task(close_clients()).add_done_callback(lambda _: loop.stop())
        return
    with contextlib.suppress(Exception):  # closing is best effort, bounded in time
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(CLOSE_TIMEOUT_S)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(CLOSE_TIMEOUT_S)


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())

"""The serving logic, independent of the web framework: admission, batching, deadlines, cache, auth, limits.

A request is validated, its texts are normalised and looked up in the cache; what is missing becomes a
job on a bounded queue (full → 429 with Retry-After). `max_concurrency` worker tasks each take a job plus
whatever else is queued, up to `max_batch_items` texts, and translate them in one `Translator.translate`
call in a thread, so concurrent requests fill the engine's parallel slots together. Identical texts in
flight are translated once. A request that outlives its deadline gets 504; its texts leave the queue at
once (freeing the slot) if no other request waits for them. Nothing here grows without bound: the queue,
the in-flight table (≤ queue + batches), the LRU and the rate-limit table are all capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import sys
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from redtrans import prompts
from redtrans.engines.base import Engine
from redtrans.languages import UnknownLanguageError
from redtrans.serve.cache import CacheEntry, TranslationCache, cache_key, normalise_text, open_store
from redtrans.serve.config import ServeConfig
from redtrans.serve.protocol import TranslateRequest, TranslateResponse, Translation
from redtrans.translator import ENGINE_ERROR, Item, Translator, TranslatorConfig

log = logging.getLogger("redtrans.serve")


class ServiceError(Exception):
    """An answer other than 200: HTTP status, machine-readable code, message for humans."""

    def __init__(
        self, status: int, code: str, message: str, item: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.item = item
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.item is not None:
            error["item"] = self.item
        return {"error": error}


# -- logging ----------------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, plus the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Route redtrans.serve and uvicorn's loggers to one JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("redtrans.serve", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the service logs requests itself, structured


# -- auth and rate limits ---------------------------------------------------------------------------------
class RateLimiter:
    """Token buckets per caller; the table of callers is an LRU capped at `max_callers`."""

    def __init__(self, rate: float, burst: int, max_callers: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(burst or max(1.0, 2 * rate))
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, who: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[who] = (tokens, now)
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return wait


class Authenticator:
    """API keys checked by their sha256 digest; the plain key is never stored."""

    def __init__(self, digests: dict[str, str]) -> None:
        self._digests = digests  # digest → key name

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, authorization: str | None, api_key: str | None, client: str | None) -> str:
        """The caller's name for logs and rate limits; raises 401 when keys are required and this one is bad."""
        if not self.enabled:
            return f"client:{client or 'unknown'}"
        key = api_key
        if key is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                key = value.strip()
        headers = {"WWW-Authenticate": "Bearer"}
        if not key:
            message = "send an API key: `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            raise ServiceError(401, "missing_api_key", message, None, headers)
        name = self._digests.get(hashlib.sha256(key.encode("utf-8")).hexdigest())
        if name is None:
            raise ServiceError(401, "invalid_api_key", "the API key is not valid", None, headers)
        return f"key:{name}"


# -- metrics ----------------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one service (own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("redtrans_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram(
            "redtrans_request_seconds",
            "Latency of translate requests",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.items = Counter("redtrans_items", "Texts answered, by how", ["source"], registry=r)
        self.rejected = Counter("redtrans_rejected", "Requests refused, by reason", ["reason"], registry=r)
        self.batch_seconds = Histogram(
            "redtrans_batch_seconds",
            "Wall time of one engine batch",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.batch_items = Histogram(
            "redtrans_batch_items", "Texts per engine batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.queue_depth = Gauge("redtrans_queue_depth", "Jobs waiting for a worker", registry=r)
        self.in_flight = Gauge("redtrans_texts_in_flight", "Distinct texts queued or being translated", registry=r)
        self.ready = Gauge("redtrans_ready", "1 when the model is loaded", registry=r)


# -- the service ------------------------------------------------------------------------------------------
@dataclass
class _Done:
    entry: CacheEntry | None  # None: the engine failed
    batch_started: float
    engine_s: float
    error: str | None = None


@dataclass(eq=False)
class _Job:
    units: list[_Unit] = field(default_factory=list)  # the texts this request put in flight
    taken: bool = False  # a worker took it off the queue


@dataclass(eq=False)
class _Unit:
    """One distinct text being translated, shared by every request that asks for it meanwhile."""

    key: str
    item: Item
    future: asyncio.Future[_Done]
    job: _Job
    waiters: int = 0
    started: bool = False


@dataclass
class Outcome:
    """A finished translate call: the response and its timings (for headers and logs)."""

    response: TranslateResponse
    engine_ms: float
    queue_ms: float
    items: int
    cached: int
    texts: list[str] = field(default_factory=list)


class TranslationService:
    """Owns the engine, the translators, the queue, the workers and the cache. Use from one event loop."""

    def __init__(self, config: ServeConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine: Engine | None = engine
        self._owns_engine = engine is None
        self.metrics = Metrics()
        self.auth = Authenticator(config.key_digests())
        self.limiter = RateLimiter(config.rate_limit_rps, config.rate_limit_burst)
        self.cache = TranslationCache(None, 0)
        self.load_error: str | None = None
        self._pending: deque[_Job] = deque()  # live jobs only: a job nobody waits for is removed at once
        self._has_work = asyncio.Event()
        self._started = False
        self._in_flight: dict[str, _Unit] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._loader: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="redtrans-batch")
        self._batch_ewma_s = 1.0
        self._prompt_version = f"{prompts.PROMPT_VERSION}/{config.mode}/{config.profile}"
        self.metrics.queue_depth.set_function(lambda: len(self._pending))
        self.metrics.in_flight.set_function(lambda: len(self._in_flight))

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._workers) and self.engine is not None

    @property
    def model(self) -> str:
        return self.engine.model if self.engine is not None else (self.config.model or "")

    async def start(self) -> None:
        """Open the cache, then load the engine in the background (readyz turns 200 when done)."""
        config = self.config
        store = await asyncio.to_thread(open_store, config.cache, config.cache_max_entries, config.cache_ttl_s)
        self.cache = TranslationCache(store, config.cache_memory_items, config.cache_ttl_s)
        self._started = True
        log.info(
            "starting",
            extra={
                "fields": {
                    "cache": self.cache.describe(),
                    "auth": "api keys" if self.auth.enabled else "open",
                    "max_concurrency": config.max_concurrency,
                    "max_queue": config.max_queue,
                }
            },
        )
        if self.engine is not None:
            self._start_workers()
        else:
            self._loader = asyncio.create_task(self._load_engine())

    async def _load_engine(self) -> None:
        from redtrans.engines import EngineSpec, create_engine

        config = self.config
        spec = EngineSpec(
            kind=config.engine,
            model=config.model,
            parallel=config.parallel,
            served_model=config.served_model,
            options=dict(config.engine_options),
        )
        started = time.perf_counter()
        try:
            self.engine = await asyncio.get_running_loop().run_in_executor(self._pool, lambda: create_engine(spec))
        except Exception as exc:  # noqa: BLE001 - reported on /readyz and in the log, the process stays up
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("engine failed to load", extra={"fields": {"error": self.load_error}})
            return
        log.info(
            "engine ready",
            extra={"fields": {**self.engine.describe(), "load_s": round(time.perf_counter() - started, 2)}},
        )
        self._start_workers()

    def _start_workers(self) -> None:
        assert self.engine is not None
        tconfig = TranslatorConfig(
            profile=self.config.profile,
            mode=self.config.mode,  # type: ignore[arg-type]
            batch_size=self.config.max_batch_items,
        )
        for n in range(self.config.max_concurrency):
            translator = Translator(self.engine, tconfig)
            self._workers.append(asyncio.create_task(self._worker(translator), name=f"redtrans-worker-{n}"))
        self.metrics.ready.set(1)

    async def stop(self) -> None:
        """After the server stopped taking requests (and finished those in flight): free everything."""
        self.metrics.ready.set(0)
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        while self._pending:  # requests still queued (only past the graceful timeout) are failed
            job = self._pending.popleft()
            for unit in job.units:
                if not unit.future.done():
                    unit.future.set_result(_Done(None, time.monotonic(), 0.0, "shutting down"))
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        await self.cache.close()
        self._pool.shutdown(wait=True)
        if self.engine is not None and self._owns_engine:
            await asyncio.to_thread(self.engine.close)
        log.info("stopped")

    # -- per-request checks ---------------------------------------------------------------------------
    def identify(self, authorization: str | None, api_key: str | None, client: str | None) -> str:
        who = self.auth.identify(authorization, api_key, client)
        wait = self.limiter.acquire(who)
        if wait > 0:
            self.metrics.rejected.labels("rate_limited").inc()
            raise ServiceError(
                429,
                "rate_limited",
                f"rate limit of {self.config.rate_limit_rps:g} requests/s exceeded; retry after the indicated time",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return who

    def _check(self, request: TranslateRequest) -> list[Item]:
        config = self.config
        if not request.items:
            raise ServiceError(422, "empty_batch", "`items` is empty: send at least one {text, tgt}")
        if len(request.items) > config.max_items:
            raise ServiceError(
                422, "too_many_items", f"{len(request.items)} items in one request; the limit is {config.max_items}"
            )
        items: list[Item] = []
        for n, it in enumerate(request.items):
            if len(it.text) > config.max_text_chars:
                raise ServiceError(
                    422,
                    "text_too_long",
                    f"item {n} has {len(it.text)} characters; the limit is {config.max_text_chars}",
                    item=n,
                )
            text = normalise_text(it.text)
            if not text:
                raise ServiceError(422, "empty_text", f"item {n} has no text", item=n)
            tgt = it.tgt or request.tgt
            if not tgt:
                raise ServiceError(422, "missing_tgt", f"item {n} has no `tgt` and the request none either", item=n)
            try:
                items.append(Item(it.id if it.id is not None else str(n), text, tgt, it.src))
            except UnknownLanguageError as exc:
                raise ServiceError(422, "unknown_language", f"item {n}: {exc}", item=n) from exc
        return items

    def retry_after(self) -> int:
        if self.config.retry_after_s:
            return self.config.retry_after_s
        depth = len(self._pending)
        waves = depth / self.config.max_concurrency + 1
        return max(1, min(120, math.ceil(waves * self._batch_ewma_s)))

    # -- translate ------------------------------------------------------------------------------------
    async def translate(self, request: TranslateRequest) -> Outcome:
        admitted = time.monotonic()
        if not self.ready:
            detail = f"the engine failed to load: {self.load_error}" if self.load_error else "the model is loading"
            raise ServiceError(503, "not_ready", detail, headers={"Retry-After": "5"})
        items = self._check(request)
        model = self.model
        keys = [cache_key(i.text, i.src, i.tgt, model, self._prompt_version) for i in items]
        entries: dict[str, CacheEntry] = {}
        lookup: list[str] = []
        for key in keys:
            entry = self.cache.get_memory(key)
            if entry is None:
                lookup.append(key)
            else:
                entries[key] = entry
        if lookup:
            try:
                entries.update(await self.cache.get_many(list(dict.fromkeys(lookup))))
            except Exception as exc:  # noqa: BLE001 - a cache outage degrades to translating
                log.warning("cache read failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        cached = sum(1 for k in keys if k in entries)
        engine_s = queue_s = 0.0
        missing = list(dict.fromkeys(k for k in keys if k not in entries))
        if missing:
            by_key = dict(zip(keys, items, strict=True))
            done, enqueued = await self._run(missing, by_key, admitted, request)
            for key, result in done.items():
                if result.entry is None:
                    self.metrics.items.labels("error").inc(sum(1 for k in keys if k == key))
                    raise ServiceError(502, "engine_error", f"the engine failed: {result.error}")
                entries[key] = result.entry
                engine_s = max(engine_s, result.engine_s)
                queue_s = max(queue_s, result.batch_started - enqueued)
        self.metrics.items.labels("cache").inc(cached)
        self.metrics.items.labels("engine").inc(len(keys) - cached)
        translations = []
        for item, key in zip(items, keys, strict=True):
            entry = entries[key]
            translations.append(
                Translation(
                    id=item.id,
                    translation=entry.translation,
                    src=entry.src,
                    tgt=item.tgt,
                    detected=item.src is None,
                    flags=entry.flags,
                    cached=key not in missing,
                )
            )
        response = TranslateResponse(
            translations=translations,
            model=model,
            prompt_version=prompts.PROMPT_VERSION,
            engine_ms=round(engine_s * 1000, 3),
            queue_ms=round(max(0.0, queue_s) * 1000, 3),
        )
        texts = [i.text for i in items] if self.config.log_text else []
        return Outcome(response, engine_s * 1000, max(0.0, queue_s) * 1000, len(items), cached, texts)

    async def _run(
        self, keys: list[str], items: dict[str, Item], admitted: float, request: TranslateRequest
    ) -> tuple[dict[str, _Done], float]:
        """Wait for `keys` to be translated (queueing what is not in flight yet); also when queueing began."""
        timeout = self.config.request_timeout_s
        if request.deadline_ms is not None:
            timeout = min(timeout, request.deadline_ms / 1000)
        deadline = admitted + timeout
        fresh = [k for k in keys if k not in self._in_flight]
        enqueued = time.monotonic()
        if fresh:
            if len(self._pending) >= self.config.max_queue:
                self.metrics.rejected.labels("overloaded").inc()
                raise ServiceError(
                    429,
                    "overloaded",
                    "the service is at capacity; retry after the indicated time",
                    headers={"Retry-After": str(self.retry_after())},
                )
            loop = asyncio.get_running_loop()
            job = _Job()
            job.units = [_Unit(k, items[k], loop.create_future(), job) for k in fresh]
            for unit in job.units:
                self._in_flight[unit.key] = unit
            self._pending.append(job)
            self._has_work.set()
        units = [self._in_flight[k] for k in keys]
        for unit in units:
            unit.waiters += 1
        finished = False
        try:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                await asyncio.wait([u.future for u in units], timeout=remaining)
            if all(u.future.done() for u in units):
                finished = True
                return {u.key: u.future.result() for u in units}, enqueued
            self.metrics.rejected.labels("deadline").inc()
            raise ServiceError(
                504, "deadline_exceeded", f"not translated within {timeout:g} s; the service is busy or the text long"
            )
        finally:
            if not finished:  # deadline or the client went away: let go of what nobody else waits for
                for unit in units:
                    unit.waiters -= 1
                    if unit.waiters <= 0 and not unit.started and not unit.future.done():
                        unit.future.cancel()
                        if self._in_flight.get(unit.key) is unit:
                            del self._in_flight[unit.key]
                        self._drop_if_dead(unit.job)

    def _drop_if_dead(self, job: _Job) -> None:
        """Free the queue slot of a job none of whose texts anybody waits for any more."""
        if not job.taken and all(u.future.done() for u in job.units):
            job.taken = True
            with contextlib.suppress(ValueError):
                self._pending.remove(job)

    async def _next_job(self, wait_s: float | None) -> _Job | None:
        """The oldest queued job; waits for one up to `wait_s` (None = forever, 0 = not at all)."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while not self._pending:
            self._has_work.clear()
            if deadline is None:
                await self._has_work.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._has_work.wait(), left)
            except TimeoutError:
                return None
        job = self._pending.popleft()
        job.taken = True
        return job

    async def _worker(self, translator: Translator) -> None:
        loop = asyncio.get_running_loop()
        limit = self.config.max_batch_items
        wait_s = self.config.batch_wait_ms / 1000
        while True:
            first = await self._next_job(None)
            assert first is not None
            jobs = [first]
            count = len(first.units)
            until = time.monotonic() + wait_s
            while count < limit:
                job = await self._next_job(max(0.0, until - time.monotonic()))
                if job is None:
                    break
                jobs.append(job)
                count += len(job.units)
            now = time.monotonic()
            # Texts whose requests all gave up (deadline, disconnect) were cancelled: skip them.
            units = [u for j in jobs for u in j.units if not u.started and not u.future.done() and u.waiters > 0]
            if not units:
                continue
            for unit in units:
                unit.started = True
            try:
                await self._batch(translator, units, loop)
            except asyncio.CancelledError:
                for unit in units:
                    if not unit.future.done():
                        unit.future.set_result(_Done(None, now, 0.0, "shutting down"))
                raise
            finally:
                for unit in units:
                    if self._in_flight.get(unit.key) is unit:
                        del self._in_flight[unit.key]

    async def _batch(self, translator: Translator, units: list[_Unit], loop: asyncio.AbstractEventLoop) -> None:
        started = time.monotonic()
        before = translator.engine_seconds

        def work() -> dict[str, CacheEntry]:
            results = translator.translate([u.item for u in units])
            now = time.time()
            return {
                u.key: CacheEntry(r.translation, r.src, list(r.flags), now)
                for u, r in zip(units, results, strict=True)
                if ENGINE_ERROR not in r.flags  # failures are never cached
            }

        entries: dict[str, CacheEntry] = {}
        try:
            entries = await loop.run_in_executor(self._pool, work)
            error = None
        except Exception as exc:  # noqa: BLE001 - the engine is unusable: the waiting requests get 502
            error = f"{type(exc).__name__}: {exc}"
            log.error("batch failed", extra={"fields": {"error": error, "texts": len(units)}})
        elapsed = time.monotonic() - started
        engine_s = translator.engine_seconds - before
        self._batch_ewma_s = 0.8 * self._batch_ewma_s + 0.2 * elapsed
        self.metrics.batch_seconds.observe(elapsed)
        self.metrics.batch_items.observe(len(units))
        log.info(
            "batch",
            extra={
                "fields": {"texts": len(units), "s": round(elapsed, 3), "engine_s": round(engine_s, 3), "error": error}
            },
        )
        self.cache.add(entries)
        for unit in units:
            entry = entries.get(unit.key)
            if entry is not None:
                done = _Done(entry, started, engine_s)
            else:
                done = _Done(None, started, engine_s, error or "the engine returned an error for this text")
            if not unit.future.done():
                unit.future.set_result(done)

"""The serving logic, independent of the web framework: admission, budgets, cache, engine lifecycle.

A request is validated, its texts are normalised and looked up in the cache (a bounded wait: a slow store
counts as a miss); what is missing is checked against the request's budgets (segments per item, model calls)
and handed to the `Batcher`, which groups concurrent requests into one `Translator.translate` call per batch
in a thread, so they fill the engine's parallel slots together. A request past its deadline gets 504, and
work nobody waits for any more is dropped: from the queue at once, and from a started batch between model
calls (each worker's translator talks to the engine through `_GuardedEngine`, which checks the batch's
cancel flag and its call budget before every call). Nothing here grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from redtrans import prompts
from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.errors import EngineError
from redtrans.languages import LANGUAGES, UnknownLanguageError, chinese_script, language_tag, to_chinese_script
from redtrans.limits import check_text as row_problem
from redtrans.limits import count_calls
from redtrans.serve.auth import Authenticator
from redtrans.serve.batcher import Batcher, CancelCheck, DeadlineExceeded, Done, Draining, QueueFull, Unit
from redtrans.serve.cache import CacheEntry, TranslationCache, cache_key, normalise_text, open_store
from redtrans.serve.config import ServeConfig
from redtrans.serve.errors import ServiceError
from redtrans.serve.logging import fields
from redtrans.serve.markup import TagHandling
from redtrans.serve.metrics import Metrics
from redtrans.serve.protocol import TranslateItem, TranslateRequest, TranslateResponse, Translation
from redtrans.serve.ratelimit import RateLimit
from redtrans.text.langid import detect_language, warm_up
from redtrans.text.profiles import load_profile
from redtrans.translator import ENGINE_ERROR, Item, Translator, TranslatorConfig
from redtrans.webguard import ClientAddress, FailureThrottle, HostAllowList

log = logging.getLogger("redtrans.serve")
SHUTTING_DOWN = "the service is shutting down"
NO_TRANSLATION = "no_translation"
"""The code of a text the engine answered without a usable translation (empty, echo, refusal after the retry)."""


def no_translation(item: int, reason: str | None) -> ServiceError:
    """422 `no_translation`: a status the official SDKs do not retry, so a deterministic refusal is not re-asked."""
    why = (reason or "no usable translation").removeprefix(f"{NO_TRANSLATION}: ")
    message = f"item {item} has no usable translation ({why}); it was retried once and is not cached"
    return ServiceError(422, NO_TRANSLATION, message, item=item)


class BatchCancelled(EngineError):
    """Nobody waits for the batch's texts any more (or its call budget is spent): stop calling the model."""


class _GuardedEngine(Engine):
    """The engine as one worker's translator sees it: before every model call it checks the running batch's
    cancel flag and call budget, and splits large `generate` calls so a cancel takes effect between chunks."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name, self.model, self.chat = inner.name, inner.model, inner.chat
        self.parallelism = inner.parallelism
        self.supports_grammar, self.supports_submit = inner.supports_grammar, inner.supports_submit
        self.cancelled: CancelCheck = lambda: False
        self.budget = 0
        self.calls = 0
        self.deadline: float | None = None

    def arm(self, cancelled: CancelCheck, budget: int, deadline: float | None = None) -> None:
        self.cancelled, self.budget, self.calls, self.deadline = cancelled, budget, 0, deadline

    def _bounded(self, request: GenRequest) -> GenRequest:
        """The request with the batch's deadline: the engine's timeouts and retries end when its callers' do."""
        if self.deadline is not None and (request.deadline is None or request.deadline > self.deadline):
            request.deadline = self.deadline
        return request

    def _admit(self, n: int) -> None:
        if self.cancelled():
            raise BatchCancelled("cancelled: no request waits for these texts any more")
        if self.calls + n > self.budget:
            raise BatchCancelled(f"the batch's budget of {self.budget} model calls is spent")
        self.calls += n

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        step = max(1, 4 * self.parallelism)
        out: list[GenResult] = []
        for i in range(0, len(requests), step):
            chunk = [self._bounded(r) for r in requests[i : i + step]]
            self._admit(len(chunk))
            # A call in flight is given up when nobody waits any more (a hung upstream frees the worker at once).
            out.extend(self.inner.generate_until(chunk, self.cancelled))
        return out

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        self._admit(1)
        return self.inner.submit(self._bounded(request), ahead=ahead)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


@dataclass
class _Payload:
    item: Item
    calls: int  # planned model calls (a retry may add one per segment)
    markup: TagHandling | None = None


@dataclass
class Work:
    """One text of a request as the service handles it: the pipeline's `Item`, the target tag asked for
    when it names a Chinese script (`zh-Hant`, `ZH-HANS`, `zh-TW`), applied to the answer with OpenCC, and
    the text's markup handling (HTML/XML on the MT routes)."""

    item: Item
    tag: str | None = None
    markup: TagHandling | None = None
    detected: bool | None = None  # the service detected `item.src` itself (markup: on the text without tags)
    original: str = ""  # the normalised text before markup folding


@dataclass
class Outcome:
    """A finished translate call: the response and its timings (for headers and logs)."""

    response: TranslateResponse
    engine_ms: float
    queue_ms: float
    items: int
    cached: int
    texts: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """What a translate call has spent so far (filled while its translations come in)."""

    items: int
    texts: list[str]
    cached: int = 0
    engine_s: float = 0.0
    queue_s: float = 0.0

    def outcome(self, translations: list[Translation], model: str) -> Outcome:
        """The call's response and timings, once its translations are in."""
        engine_ms, queue_ms = self.engine_s * 1000, max(0.0, self.queue_s) * 1000
        response = TranslateResponse(
            translations=translations,
            model=model,
            prompt_version=prompts.PROMPT_VERSION,
            engine_ms=round(engine_ms, 3),
            queue_ms=round(queue_ms, 3),
        )
        return Outcome(response, engine_ms, queue_ms, self.items, self.cached, self.texts)


@dataclass
class Lines:
    """A post translated line by line (streaming): `parts[n]` is the index of its line's translation in
    `translations` (which yields them in order, each when done), or the line itself when it has nothing to
    translate (a blank line). `tally` is complete once `translations` is exhausted."""

    parts: list[int | str]
    translations: AsyncGenerator[Translation, None]
    tally: Tally
    src: str | None
    tgt: str


async def _nothing() -> AsyncGenerator[tuple[str, Done[CacheEntry]], None]:
    return
    yield  # an empty async generator


class TranslationService:
    """Owns the engine, the translators, the batcher and the cache. Use from one event loop."""

    def __init__(self, config: ServeConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine: Engine | None = engine
        self._owns_engine = engine is None
        self.metrics = Metrics()
        self.auth = Authenticator(config.key_digests())
        self.limiter = RateLimit("memory", config.rate_limit_rps, config.rate_limit_burst)
        self.shared_limiter: RateLimit | None = None
        if config.rate_limit_rps > 0 and config.rate_limit_storage != "memory":
            self.shared_limiter = RateLimit(
                config.rate_limit_storage, config.rate_limit_rps, config.rate_limit_burst, config.rate_limit_timeout_s
            )
        self.clients = ClientAddress(config.trusted_proxies)
        self.key_failures = FailureThrottle(config.max_key_failures, 60) if self.auth.enabled else None
        self.hosts = HostAllowList(config.allowed_hosts)
        self.cache = TranslationCache(None, 0)
        self.load_error: str | None = None
        self.profile = load_profile(config.profile)
        self.batcher: Batcher[_Payload, CacheEntry] = Batcher(
            self._run_batch,
            max_queue=config.max_queue,
            max_batch_items=config.max_batch_items,
            batch_wait_ms=config.batch_wait_ms,
            on_cancel=lambda where, n: self.metrics.cancelled.labels(where).inc(n),
        )
        self._translators: list[tuple[Translator, _GuardedEngine]] = []
        self._markup_translators: dict[tuple[int, TagHandling], Translator] = {}
        self.characters: OrderedDict[str, int] = OrderedDict()
        """Characters translated per caller by this process (DeepL's `/v2/usage`); an LRU of 10,000 callers."""
        self._loader: asyncio.Task[None] | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._pool = ThreadPoolExecutor(config.max_concurrency + 1, thread_name_prefix="redtrans-batch")
        self._prompt_version = f"{prompts.PROMPT_VERSION}/{config.mode}/{config.profile}"
        self.abandoned_threads = False
        self.metrics.queue_depth.set_function(lambda: len(self.batcher.pending))
        self.metrics.in_flight.set_function(lambda: len(self.batcher.in_flight))

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.batcher.started and self.engine is not None

    @property
    def model(self) -> str:
        return self.engine.model if self.engine is not None else (self.config.model or "")

    async def start(self) -> None:
        """Open the cache, then load the engine in the background (readyz turns 200 when done)."""
        config = self.config
        store = await asyncio.to_thread(
            open_store, config.cache, config.cache_max_entries, config.cache_ttl_s, max(1.0, config.cache_timeout_s)
        )
        self.cache = TranslationCache(store, config.cache_memory_items, config.cache_ttl_s)
        log.info(
            "starting",
            extra=fields(
                cache=self.cache.describe(),
                auth="api keys" if self.auth.enabled else "open",
                rate_limit=self.shared_limiter.describe() if self.shared_limiter else "memory",
                max_concurrency=config.max_concurrency,
                max_queue=config.max_queue,
            ),
        )
        if self.engine is not None:
            self._start_workers()
        else:
            self._loader = asyncio.create_task(self._load_engine())

    async def _load_engine(self) -> None:
        from redtrans.engines import create_engine

        spec = self.config.engine_spec()
        started = time.perf_counter()

        def load() -> Engine:
            engine = create_engine(spec)
            warm_up()  # lingua's Latin-script models, or the first English post waits seconds for them
            return engine

        try:
            self.engine = await asyncio.get_running_loop().run_in_executor(self._pool, load)
        except Exception as exc:  # noqa: BLE001 - reported on /readyz and in the log, the process stays up
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("engine failed to load", extra=fields(error=self.load_error))
            return
        log.info("engine ready", extra=fields(**self.engine.describe(), load_s=round(time.perf_counter() - started, 2)))
        self._start_workers()

    def _start_workers(self) -> None:
        assert self.engine is not None
        tconfig = TranslatorConfig(
            profile=self.config.profile, mode=self.config.mode, batch_size=self.config.max_batch_items
        )
        for _ in range(self.config.max_concurrency):
            guard = _GuardedEngine(self.engine)
            self._translators.append((Translator(guard, tconfig), guard))
        self.batcher.start(self.config.max_concurrency)
        self.metrics.ready.set(1)

    def _translator(self, index: int, markup: TagHandling | None) -> Translator:
        """Worker `index`'s translator; for texts with markup, one whose profile protects their tags."""
        translator, guard = self._translators[index]
        if markup is None:
            return translator
        tagged = self._markup_translators.get((index, markup))
        if tagged is None:
            tagged = Translator(guard, translator.config)
            tagged.profile = markup.profile(translator.profile)
            while len(self._markup_translators) >= 64 * max(1, len(self._translators)):  # bounded: ignore_tags vary
                self._markup_translators.pop(next(iter(self._markup_translators)))
            self._markup_translators[(index, markup)] = tagged
        return tagged

    def _version(self, markup: TagHandling | None) -> str:
        """The cache key's version part: the same text as markup is another translation."""
        return self._prompt_version if markup is None else f"{self._prompt_version}/{markup.key}"

    def begin_drain(self, grace_s: float) -> None:
        """Shutdown began: requests still waiting after `grace_s` get 503 `shutting_down` (JSON), so every
        connection is answered before the server's own grace period ends."""
        if self._drain_timer is None:
            loop = asyncio.get_running_loop()
            self._drain_timer = loop.call_later(max(0.0, grace_s), self.batcher.drain, SHUTTING_DOWN)

    async def stop(self) -> None:
        """After the server stopped taking requests (and answered those in flight): free everything, bounded."""
        self.metrics.ready.set(0)
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        await self.batcher.stop()
        await self.cache.close()
        if self.shared_limiter is not None:
            await self.shared_limiter.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        busy = [t for t in getattr(self._pool, "_threads", ()) if t.is_alive()]
        deadline = time.monotonic() + 2.0
        for thread in busy:  # a batch stuck in a hung upstream call is not waited for past this bound
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in busy):
            self.abandoned_threads = True
            log.warning("engine calls still running at shutdown; not waiting for them")
        elif self.engine is not None and self._owns_engine:
            await asyncio.to_thread(self.engine.close)
        log.info("stopped")

    # -- per-request checks ---------------------------------------------------------------------------
    def authenticate(
        self,
        authorization: str | None,
        api_key: str | None,
        peer: str | None,
        forwarded_for: str | None = None,
        body_key: str | None = None,
        how: str | None = None,
    ) -> str:
        """The caller, or 401 on a missing or wrong key; 429 for an address past `max_key_failures` wrong keys a
        minute (every attempt from it then, so guessing stops)."""
        client = self.clients.resolve(peer, forwarded_for)
        throttle = self.key_failures
        if throttle is not None:
            wait = throttle.retry_after(client)
            if wait > 0:
                self.metrics.rejected.labels("key_failures").inc()
                raise ServiceError(
                    429,
                    "too_many_key_failures",
                    f"more than {self.config.max_key_failures} wrong API keys a minute from this address; "
                    "retry after the indicated time",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        try:
            if how is None:
                return self.auth.identify(authorization, api_key, client, body_key)
            return self.auth.identify(authorization, api_key, client, body_key, how)
        except ServiceError as exc:
            if throttle is not None and exc.code == "invalid_api_key":
                throttle.failed(client)
            raise

    async def identify(
        self,
        authorization: str | None,
        api_key: str | None,
        peer: str | None,
        forwarded_for: str | None = None,
        body_key: str | None = None,
        how: str | None = None,
    ) -> str:
        """The caller (401 on a bad key), charged one request against its rate limit (429 when spent)."""
        who = self.authenticate(authorization, api_key, peer, forwarded_for, body_key, how)
        wait = await self._rate_wait(who)
        if wait > 0:
            self.metrics.rejected.labels("rate_limited").inc()
            raise ServiceError(
                429,
                "rate_limited",
                f"rate limit of {self.config.rate_limit_rps:g} requests/s exceeded; retry after the indicated time",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return who

    async def _rate_wait(self, who: str) -> float:
        if self.config.rate_limit_rps <= 0:
            return 0.0
        if self.shared_limiter is None:
            return await self.limiter.acquire(who)
        try:
            return await asyncio.wait_for(self.shared_limiter.acquire(who), self.config.rate_limit_timeout_s)
        except Exception as exc:  # noqa: BLE001 - Redis slow or down: this process's own window decides
            self.metrics.rate_limit_fallbacks.inc()
            log.warning("shared rate limit unavailable", extra=fields(error=f"{type(exc).__name__}: {exc}"))
            return await self.limiter.acquire(who)

    def count_characters(self, caller: str, n: int) -> None:
        self.characters[caller] = self.characters.pop(caller, 0) + n
        while len(self.characters) > 10_000:
            self.characters.popitem(last=False)

    def check_text(self, text: str, n: int = 0) -> None:
        """422 for a text no route takes: over `max_text_chars`, with a lone surrogate, or blank."""
        if len(text) > self.config.max_text_chars:
            raise ServiceError(
                422,
                "text_too_long",
                f"item {n} has {len(text)} characters; the limit is {self.config.max_text_chars}",
                item=n,
            )
        problem = row_problem(text, max_chars=self.config.max_text_chars, max_segments=2**62)  # segments: 413 below
        if problem is not None and problem.reason == "invalid_text":  # a lone surrogate, a NUL (`redtrans.limits`)
            what = (
                "a NUL character"
                if "NUL" in problem.message
                else "a lone UTF-16 surrogate (half of an emoji cut in two?)"
            )
            raise ServiceError(422, "invalid_text", f"item {n} holds {what}; send valid Unicode", item=n)
        if not text.strip():
            raise ServiceError(422, "empty_text", f"item {n} has no text", item=n)

    def _check(self, request: TranslateRequest, markup: TagHandling | None = None) -> list[Work]:
        config = self.config
        if not request.items:
            raise ServiceError(422, "empty_batch", "`items` is empty: send at least one {text, tgt}")
        if len(request.items) > config.max_items:
            raise ServiceError(
                422, "too_many_items", f"{len(request.items)} items in one request; the limit is {config.max_items}"
            )
        items: list[Work] = []
        for n, it in enumerate(request.items):
            self.check_text(it.text, n)
            original = normalise_text(it.text)
            if not original:
                raise ServiceError(422, "empty_text", f"item {n} has no text", item=n)
            text = markup.fold(original) if markup else original
            tgt = it.tgt or request.tgt
            if not tgt:
                raise ServiceError(422, "missing_tgt", f"item {n} has no `tgt` and the request none either", item=n)
            src, detected = it.src, None
            if markup is not None and src is None:  # detected on what a reader sees, not on the tags
                src, detected = detect_language(markup.strip(text), list(LANGUAGES)) or None, True
            try:
                item = Item(it.id if it.id is not None else str(n), text, tgt, src)
                tag = language_tag(tgt) if chinese_script(tgt) else None
            except UnknownLanguageError as exc:
                raise ServiceError(422, "unknown_language", f"item {n}: {exc}", item=n) from exc
            items.append(Work(item, tag, markup, detected, original))
        return items

    def _budget(self, items: list[tuple[int, Item]], markup: TagHandling | None = None) -> dict[int, int]:
        """Planned model calls per item index; 413 past the per-item segment or per-request call budget."""
        config = self.config
        calls: dict[int, int] = {}
        profile = markup.profile(self.profile) if markup else self.profile
        for n, item in items:
            segments, calls[n] = count_calls(item.text, profile, config.mode, config.max_segments_per_item)
            if segments > config.max_segments_per_item:
                self.metrics.rejected.labels("too_many_segments").inc()
                raise ServiceError(
                    413,
                    "too_many_segments",
                    f"item {n} has more than {config.max_segments_per_item} segments (lines with text); "
                    "split the text over several items or requests",
                    item=n,
                )
        total = sum(calls.values())
        if total > config.max_model_calls:
            self.metrics.rejected.labels("too_many_model_calls").inc()
            raise ServiceError(
                413,
                "too_many_model_calls",
                f"this request needs {total} model calls; the limit is {config.max_model_calls} per request: "
                "send fewer or shorter items",
            )
        return calls

    def retry_after(self) -> int:
        if self.config.retry_after_s:
            return self.config.retry_after_s
        return self.batcher.retry_after(self.config.max_concurrency)

    async def _lookup(self, keys: list[str], deadline: float) -> dict[str, CacheEntry]:
        """Store lookup bounded by `cache_timeout_s` and the deadline; a slow or failing store is a miss."""
        if not keys or self.cache.store is None:
            return {}
        wait = min(self.config.cache_timeout_s, max(0.0, deadline - time.monotonic()))
        try:
            return await asyncio.wait_for(self.cache.get_many(keys), wait)
        except TimeoutError:
            self.metrics.cache_timeouts.inc()
            log.warning("cache read timed out", extra=fields(timeout_s=round(wait, 3), keys=len(keys)))
        except Exception as exc:  # noqa: BLE001 - a cache outage degrades to translating
            log.warning("cache read failed", extra=fields(error=f"{type(exc).__name__}: {exc}"))
        return {}

    # -- translate ------------------------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if not self.ready:
            detail = f"the engine failed to load: {self.load_error}" if self.load_error else "the model is loading"
            raise ServiceError(503, "not_ready", detail, headers={"Retry-After": "5"})

    def _timeout(self, deadline_ms: int | None) -> float:
        timeout = self.config.request_timeout_s
        return timeout if deadline_ms is None else min(timeout, deadline_ms / 1000)

    async def translate(
        self,
        request: TranslateRequest,
        admitted: float | None = None,
        partial: bool = False,
        markup: TagHandling | None = None,
    ) -> Outcome:
        """Translate a request's items (every API's translate route comes here). An item with no usable
        translation (an empty answer, an echo, a refusal after the retry) is 422 `no_translation` for the whole
        request; with `partial` (the native batch route) it is answered `status: failed` beside the others, and
        only a request whose every item failed is 422. `markup`: the texts are HTML/XML (see `serve.markup`)."""
        admitted = time.monotonic() if admitted is None else admitted
        self._ensure_ready()
        work = self._check(request, markup)
        outcome = self._from_memory(work)
        if outcome is None:
            outcome = await self._run(work, admitted, self._timeout(request.deadline_ms), partial)
        failed = [n for n, t in enumerate(outcome.response.translations) if t.status == "failed"]
        if failed and len(failed) == len(work):
            raise no_translation(failed[0], outcome.response.translations[failed[0]].error)
        return outcome

    def translate_from_memory(self, request: TranslateRequest, markup: TagHandling | None = None) -> Outcome | None:
        """The answer when every text is in the in-memory LRU, at once (no await, no task: the cache-hit path is
        most of a busy service's requests); None when one is not. Raises what `translate` raises for bad input."""
        self._ensure_ready()
        return self._from_memory(self._check(request, markup))

    def _from_memory(self, work: list[Work]) -> Outcome | None:
        entries = []
        for w in work:
            entry = self.cache.get_memory(self._key(w))
            if entry is None:
                return None
            entries.append(entry)
        texts = [w.item.text for w in work] if self.config.log_text else []
        tally = Tally(items=len(work), texts=texts, cached=len(work))
        self.metrics.item("cache").inc(len(work))
        translations = [self._answer(w, entry, True, None) for w, entry in zip(work, entries, strict=True)]
        return tally.outcome(translations, self.model)

    def _key(self, w: Work) -> str:
        return cache_key(w.item.text, w.item.src, w.item.tgt or "", self.model, self._version(w.markup))

    @staticmethod
    def _answer(w: Work, entry: CacheEntry, cached: bool, detected: bool | None) -> Translation:
        """The translation of `w` from its entry: the script its target asks for, its markup unfolded."""
        text = to_chinese_script(entry.translation, w.tag) if w.tag else entry.translation
        if w.detected is not None:
            detected = w.detected
        elif detected is None:
            detected = w.item.src is None
        return Translation(
            id=w.item.id,
            translation=w.markup.unfold(text, w.original) if w.markup else text,
            src=entry.src,
            tgt=w.tag or w.item.tgt or "",
            detected=detected,
            flags=entry.flags,
            cached=cached,
        )

    async def translate_lines(
        self,
        text: str,
        src: str | None,
        tgt: str,
        admitted: float | None = None,
        deadline_ms: int | None = None,
    ) -> Lines:
        """One post translated as one item per line (for streaming answers): the same checks and budgets as
        the post as one item; the source is detected once for the whole post, so every line has the same one.
        Input errors are raised here; the lines' translations come from `Lines.translations`, each as soon as
        it and those before it are done."""
        admitted = time.monotonic() if admitted is None else admitted
        self._ensure_ready()
        (post,) = self._check(TranslateRequest(items=[TranslateItem(text=text, src=src, tgt=tgt)]))
        self._budget([(0, post.item)])
        detected = post.item.src or detect_language(post.item.text, list(LANGUAGES))
        parts: list[int | str] = []
        work: list[Work] = []
        for n, line in enumerate(post.item.text.split("\n")):
            if not line.strip():
                parts.append(line)
                continue
            parts.append(len(work))
            work.append(Work(Item(str(n), line, post.item.tgt, detected), post.tag))
        tally = Tally(items=len(work), texts=[w.item.text for w in work] if self.config.log_text else [])
        translations = self._translations(work, admitted, self._timeout(deadline_ms), post.item.src is None, tally)
        return Lines(parts, translations, tally, detected, post.tag or post.item.target)

    async def _run(self, work: list[Work], admitted: float, timeout: float, partial: bool = False) -> Outcome:
        """The translations of `work` in order, as one response."""
        tally = Tally(items=len(work), texts=[w.item.text for w in work] if self.config.log_text else [])
        translations = [t async for t in self._translations(work, admitted, timeout, None, tally, partial)]
        return tally.outcome(translations, self.model)

    async def _translations(
        self,
        work: list[Work],
        admitted: float,
        timeout: float,
        detected: bool | None,
        tally: Tally,
        partial: bool = False,
    ) -> AsyncGenerator[Translation, None]:
        """Cache, budgets, batcher: the translations of `work` in order, each as soon as it and those before it
        are done (`detected` overrides the flag); `tally` collects the counts and times as they come. A text
        with no usable translation raises 422 `no_translation`, or with `partial` is yielded `status: failed`."""
        deadline = admitted + timeout
        items = [w.item for w in work]
        keys = [self._key(w) for w in work]
        entries: dict[str, CacheEntry] = {}
        failures: dict[str, str] = {}  # key → why it has no usable translation
        tokens: dict[str, tuple[int, int]] = {}  # key → what translating it cost (nothing when cached)
        lookup: list[str] = []
        for key in keys:
            entry = self.cache.get_memory(key)
            if entry is None:
                lookup.append(key)
            else:
                entries[key] = entry
        entries.update(await self._lookup(list(dict.fromkeys(lookup)), deadline))
        tally.cached = sum(1 for k in keys if k in entries)
        missing = list(dict.fromkeys(k for k in keys if k not in entries))
        outcomes: AsyncGenerator[tuple[str, Done[CacheEntry]], None] = _nothing()
        if missing:
            first = {k: n for n, k in reversed(list(enumerate(keys)))}
            markup = work[0].markup  # one request, one markup handling
            calls = self._budget([(first[k], items[first[k]]) for k in missing], markup)
            payloads = {k: _Payload(items[first[k]], calls[first[k]], markup) for k in missing}
            outcomes = self.batcher.each(payloads, deadline)
        enqueued = time.monotonic()
        async with contextlib.aclosing(outcomes):
            for n, (w, key) in enumerate(zip(work, keys, strict=True)):
                while key not in entries and key not in failures:  # answered in this same order
                    answered, result = await self._next_outcome(outcomes, timeout)
                    tally.engine_s = max(tally.engine_s, result.engine_s)
                    tally.queue_s = max(tally.queue_s, result.batch_started - enqueued)
                    if result.value is not None:
                        entries[answered] = result.value
                        tokens[answered] = result.tokens
                        continue
                    if result.code == NO_TRANSLATION:
                        failures[answered] = result.error or "no usable translation"
                        continue
                    self.metrics.items.labels("error").inc(sum(1 for k in keys if k == answered))
                    if result.error == SHUTTING_DOWN:
                        raise ServiceError(503, "shutting_down", SHUTTING_DOWN + "; retry elsewhere")
                    raise ServiceError(502, "engine_error", f"the engine failed: {result.error}")
                item = w.item
                if key in failures:
                    self.metrics.item("failed").inc()
                    if not partial:
                        raise no_translation(n, failures[key])
                    yield Translation(
                        id=item.id,
                        translation=None,
                        src=item.src or "",
                        tgt=w.tag or item.tgt or "",
                        detected=w.detected
                        if w.detected is not None
                        else item.src is None
                        if detected is None
                        else detected,
                        flags=[],
                        cached=False,
                        status="failed",
                        error=f"{NO_TRANSLATION}: {failures[key]}",
                    )
                    continue
                self.metrics.item("engine" if key in missing else "cache").inc()
                answer = self._answer(w, entries[key], key not in missing, detected)
                yield answer.costing(tokens.pop(key, (0, 0)))  # a text asked twice is paid once

    async def _next_outcome(
        self, outcomes: AsyncGenerator[tuple[str, Done[CacheEntry]], None], timeout: float
    ) -> tuple[str, Done[CacheEntry]]:
        """The batcher's next answer, its refusals as HTTP errors."""
        try:
            return await anext(outcomes)
        except QueueFull:
            self.metrics.rejected.labels("overloaded").inc()
            raise ServiceError(
                429,
                "overloaded",
                "the service is at capacity; retry after the indicated time",
                headers={"Retry-After": str(self.retry_after())},
            ) from None
        except Draining:
            raise ServiceError(503, "shutting_down", SHUTTING_DOWN + "; retry elsewhere") from None
        except DeadlineExceeded:
            self.metrics.rejected.labels("deadline").inc()
            raise ServiceError(
                504,
                "deadline_exceeded",
                f"not translated within {timeout:g} s; the service is busy or the text long",
            ) from None

    # -- batches --------------------------------------------------------------------------------------
    async def _run_batch(
        self, index: int, units: list[Unit[_Payload, CacheEntry]], cancelled: CancelCheck
    ) -> Mapping[str, Done[CacheEntry]]:
        guard = self._translators[index][1]
        # Each segment may be retried once: twice the planned calls is the batch's hard cap.
        guard.arm(cancelled, 2 * sum(max(1, u.payload.calls) for u in units), max(u.deadline for u in units))
        started = time.monotonic()
        groups: dict[TagHandling | None, list[Unit[_Payload, CacheEntry]]] = {}
        for unit in units:  # texts with markup go through a translator that protects their tags
            groups.setdefault(unit.payload.markup, []).append(unit)
        engine_s = 0.0
        loop = asyncio.get_running_loop()

        def settle(
            unit: Unit[_Payload, CacheEntry], entry: CacheEntry, engine_s: float, tokens: tuple[int, int]
        ) -> None:
            self.cache.add({unit.key: entry})
            self.batcher.settle(unit, Done(entry, started, engine_s, tokens=tokens))

        def settle_failed(unit: Unit[_Payload, CacheEntry], reason: str, engine_s: float) -> None:
            self.batcher.settle(unit, Done(None, started, engine_s, reason, NO_TRANSLATION))

        def work() -> dict[str, CacheEntry]:
            nonlocal engine_s
            now = time.time()
            answered: dict[str, CacheEntry] = {}
            for markup, group in groups.items():
                translator = self._translator(index, markup)
                before = translator.engine_seconds
                for unit, r in zip(group, translator.translate([u.payload.item for u in group]), strict=True):
                    spent = engine_s + translator.engine_seconds - before
                    if ENGINE_ERROR in r.flags:  # no translation at all: the waiting requests get 502
                        continue
                    # Its waiters have it now, not when the whole batch is done (a stream sends it at once).
                    if not r.ok:  # empty, echo, refusal after the retry: 422 no_translation, never cached
                        loop.call_soon_threadsafe(settle_failed, unit, r.error or ", ".join(r.flags), spent)
                        continue
                    answered[unit.key] = CacheEntry(r.translation, r.src, list(r.flags), now)
                    tokens = (r.prompt_tokens, r.completion_tokens)
                    loop.call_soon_threadsafe(settle, unit, answered[unit.key], spent, tokens)
                engine_s += translator.engine_seconds - before
            return answered

        entries: dict[str, CacheEntry] = {}
        error: str | None = None
        try:
            entries = await loop.run_in_executor(self._pool, work)
        except BatchCancelled as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the engine is unusable: the waiting requests get 502
            error = f"{type(exc).__name__}: {exc}"
            log.error("batch failed", extra=fields(error=error, texts=len(units)))
        elapsed = time.monotonic() - started
        self.metrics.batch_seconds.observe(elapsed)
        self.metrics.batch_items.observe(len(units))
        log.info(
            "batch",
            extra=fields(
                texts=len(units), s=round(elapsed, 3), engine_s=round(engine_s, 3), calls=guard.calls, error=error
            ),
        )
        out: dict[str, Done[CacheEntry]] = {}
        for unit in units:
            entry = entries.get(unit.key)
            reason = error or "the engine returned an error for this text"
            out[unit.key] = Done(entry, started, engine_s, None if entry is not None else reason)
        return out

"""The translation cache: (normalised text, src, tgt, model, prompt version) → translation.

SNS traffic repeats itself ("哈哈哈", "yyds", copy-pasted comments), so a cache pays for itself. A bounded
in-process LRU answers hits without I/O; behind it a durable store survives restarts and is shared by
replicas: SQLite (through SQLAlchemy) by default, Redis when the URL says redis://.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import unicodedata
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import regex

log = logging.getLogger("redtrans.serve")
_TRAILING_SPACE = regex.compile(r"[ \t\u3000]+$", regex.MULTILINE)


@dataclass
class CacheEntry:
    translation: str
    src: str
    flags: list[str] = field(default_factory=list)
    created: float = 0.0

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> CacheEntry:
        data = json.loads(raw)
        return cls(data["translation"], data["src"], list(data.get("flags", [])), float(data.get("created", 0.0)))


def normalise_text(text: str) -> str:
    """What is translated and keyed: NFC, LF line ends, no trailing blanks on lines or the text."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return _TRAILING_SPACE.sub("", text).strip()


def cache_key(text: str, src: str | None, tgt: str, model: str, prompt_version: str) -> str:
    """Key of a normalised text; `src` None (to be detected) is its own key component ("auto")."""
    raw = "\x1f".join((prompt_version, model, src or "auto", tgt, text))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class CacheStore:
    """A durable key → entry store. A `blocking` store (SQLite) also offers `get_sync`/`put_sync`: point
    reads run on the event loop (a primary-key lookup costs less than a thread hop) and writes in the worker
    thread that produced the translations."""

    blocking = False

    def get_sync(self, keys: list[str]) -> dict[str, CacheEntry]:
        raise NotImplementedError

    def put_sync(self, entries: dict[str, CacheEntry]) -> None:
        raise NotImplementedError

    async def get_many(self, keys: list[str]) -> dict[str, CacheEntry]:
        raise NotImplementedError

    async def put_many(self, entries: dict[str, CacheEntry]) -> None:
        raise NotImplementedError

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> str:
        return type(self).__name__


class SQLiteStore(CacheStore):
    """A SQLite file through SQLAlchemy Core (WAL mode; pruned to `max_entries`, oldest first)."""

    def __init__(self, url: str, max_entries: int = 1_000_000) -> None:
        from sqlalchemy import Column, Float, MetaData, String, Table, Text, create_engine, event

        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.max_entries = max_entries
        self._engine = create_engine(url, pool_size=4, max_overflow=4, connect_args={"check_same_thread": False})

        @event.listens_for(self._engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        metadata = MetaData()
        self._table = Table(
            "translation_cache",
            metadata,
            Column("key", String(64), primary_key=True),
            Column("value", Text, nullable=False),
            Column("created", Float, nullable=False, index=True),
        )
        metadata.create_all(self._engine)
        self._writes = 0

    blocking = True

    def get_sync(self, keys: list[str]) -> dict[str, CacheEntry]:
        from sqlalchemy import select

        table = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(select(table.c.key, table.c.value).where(table.c.key.in_(keys))).all()
        return {key: CacheEntry.loads(value) for key, value in rows}

    def put_sync(self, entries: dict[str, CacheEntry]) -> None:
        from sqlalchemy import func, select
        from sqlalchemy.dialects.sqlite import insert

        table = self._table
        rows = [{"key": k, "value": e.dumps(), "created": e.created} for k, e in entries.items()]
        statement = insert(table)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.key], set_={"value": excluded.value, "created": excluded.created}
        )
        with self._engine.begin() as conn:
            conn.execute(statement, rows)
            self._writes += len(rows)
            if self._writes >= 1000:
                self._writes = 0
                count = conn.execute(select(func.count()).select_from(table)).scalar_one()
                if count > self.max_entries:
                    oldest = select(table.c.key).order_by(table.c.created).limit(count - self.max_entries)
                    conn.execute(table.delete().where(table.c.key.in_(oldest.scalar_subquery())))

    async def get_many(self, keys: list[str]) -> dict[str, CacheEntry]:
        return await asyncio.to_thread(self.get_sync, keys) if keys else {}

    async def put_many(self, entries: dict[str, CacheEntry]) -> None:
        if entries:
            await asyncio.to_thread(self.put_sync, entries)

    async def close(self) -> None:
        self._engine.dispose()

    def describe(self) -> str:
        return f"sqlite ({self.url.removeprefix('sqlite:///')})"


class RedisStore(CacheStore):
    """Redis (any server speaking its protocol); entries expire after the TTL when one is set."""

    PREFIX = "redtrans:tc:"

    def __init__(self, url: str, ttl_s: float = 0.0, timeout_s: float = 2.0) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # the client is optional
            raise RuntimeError(f"the cache URL {url!r} needs the Redis client: pip install redis") from exc
        self.url = url
        self.ttl_s = ttl_s
        # A hung server must not hold a caller: every socket operation is bounded (callers bound it further).
        self._client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def get_many(self, keys: list[str]) -> dict[str, CacheEntry]:
        if not keys:
            return {}
        values = await self._client.mget([self.PREFIX + k for k in keys])
        return {k: CacheEntry.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def put_many(self, entries: dict[str, CacheEntry]) -> None:
        if not entries:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, entry in entries.items():
                pipe.set(self.PREFIX + key, entry.dumps(), ex=int(self.ttl_s) or None)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()

    def describe(self) -> str:
        host = self.url.split("@")[-1]  # never log a password
        return f"redis ({host})"


def open_store(url: str, max_entries: int = 1_000_000, ttl_s: float = 0.0, timeout_s: float = 2.0) -> CacheStore | None:
    """The store a cache URL names; None for "none"/"off"/"". `timeout_s` bounds Redis socket operations."""
    if url.strip().lower() in {"", "none", "off", "false"}:
        return None
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, ttl_s, timeout_s)
    if url.startswith("sqlite:"):
        return SQLiteStore(url, max_entries)
    if "://" not in url:  # a bare path
        return SQLiteStore(f"sqlite:///{Path(url).expanduser()}", max_entries)
    raise ValueError(f"unsupported cache URL {url!r}: use sqlite:///path, redis://host:port/db or none")


class TranslationCache:
    """A bounded LRU in memory in front of an optional durable store. Used from one event loop.

    New entries go into the LRU at once and into the store write-behind (a background task, in batches,
    at most `write_buffer` entries pending), so a store write never delays an answer; `close` flushes. Every
    store write and the final flush are bounded by `write_timeout_s` (a hung store loses entries, not time);
    reads are bounded by the caller (`TranslationService` waits at most `cache_timeout_s`).
    """

    def __init__(
        self,
        store: CacheStore | None,
        memory_items: int = 50_000,
        ttl_s: float = 0.0,
        write_buffer: int = 10_000,
        write_timeout_s: float = 5.0,
    ) -> None:
        self.store = store
        self.write_timeout_s = write_timeout_s
        self.memory_items = memory_items
        self.ttl_s = ttl_s
        self.write_buffer = write_buffer
        self._memory: OrderedDict[str, CacheEntry] = OrderedDict()
        self._pending: dict[str, CacheEntry] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.hits = 0
        self.misses = 0
        self.dropped_writes = 0

    @property
    def enabled(self) -> bool:
        return self.store is not None or self.memory_items > 0

    def _fresh(self, entry: CacheEntry) -> bool:
        return not self.ttl_s or time.time() - entry.created <= self.ttl_s

    def _remember(self, key: str, entry: CacheEntry) -> None:
        if self.memory_items <= 0:
            return
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def get_memory(self, key: str) -> CacheEntry | None:
        """The hot path: no I/O."""
        entry = self._memory.get(key)
        if entry is None:
            return None
        if not self._fresh(entry):
            del self._memory[key]
            return None
        self._memory.move_to_end(key)
        return entry

    async def get_many(self, keys: list[str]) -> dict[str, CacheEntry]:
        found: dict[str, CacheEntry] = {}
        missing: list[str] = []
        for key in keys:
            entry = self.get_memory(key)
            if entry is None:
                missing.append(key)
            else:
                found[key] = entry
        if missing and self.store is not None:
            stored = await self.store.get_many(missing)  # SQLite in a thread: a caller's timeout can let go
            for key, entry in stored.items():
                if self._fresh(entry):
                    found[key] = entry
                    self._remember(key, entry)
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def remember_many(self, entries: dict[str, CacheEntry]) -> None:
        """Into the in-memory LRU only (event-loop thread)."""
        now = time.time()
        for key, entry in entries.items():
            entry.created = entry.created or now
            self._remember(key, entry)

    def add(self, entries: dict[str, CacheEntry]) -> None:
        """Into the LRU now and the store soon (write-behind)."""
        self.remember_many(entries)
        if self.store is None or not entries:
            return
        for key, entry in entries.items():
            if len(self._pending) >= self.write_buffer and key not in self._pending:
                self.dropped_writes += 1  # the store is far behind: keep memory bounded, lose a cache entry
                continue
            self._pending[key] = entry
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="redtrans-cache-writer")
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
            if self._closing:
                return

    async def _flush(self) -> None:
        store = self.store
        while self._pending and store is not None:
            batch, self._pending = self._pending, {}
            try:
                await asyncio.wait_for(store.put_many(batch), self.write_timeout_s)
            except Exception as exc:  # noqa: BLE001 - a cache outage must not fail translations
                error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                log.warning("cache write failed", extra={"fields": {"error": error, "entries": len(batch)}})

    async def put_many(self, entries: dict[str, CacheEntry]) -> None:
        """Into the LRU and the store, now."""
        self.remember_many(entries)
        if self.store is not None:
            await self.store.put_many(entries)

    async def close(self) -> None:
        """Flush pending writes, then close the store."""
        self._closing = True
        if self._writer is not None:
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, self.write_timeout_s + 1)
        await self._flush()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.close(), self.write_timeout_s)

    def describe(self) -> str:
        store = self.store.describe() if self.store is not None else "memory only" if self.memory_items else "off"
        return f"{store}, LRU {self.memory_items} entries"

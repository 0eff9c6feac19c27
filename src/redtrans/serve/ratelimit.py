"""Rate limits shared by every replica: the `limits` library's moving window on Redis.

With `rate_limit_storage: memory` (the default) each process keeps its own exact token bucket
(`auth.RateLimiter`). With a Redis URL, the callers' windows live in Redis, so N replicas behind a load balancer
grant a caller `rate_limit_rps` in all, not N times it. A token bucket needs a compare-and-set the `limits`
storages do not offer, so the shared limit is the closest moving window: `burst` requests per
ceil(burst / rps) seconds (never more than `rps` sustained, `burst` at once). Redis is asked with a short
timeout; when it does not answer, the caller of `acquire` decides locally (see `TranslationService.identify`).
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


class SharedRateLimiter:
    """A moving-window limit per caller in Redis (`limits.aio`, redis-py's asyncio client)."""

    def __init__(self, url: str, rate: float, burst: int, timeout_s: float, prefix: str = "redtrans-ratelimit") -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        amount, seconds = window(rate, burst)
        self.item = RateLimitItemPerSecond(amount, seconds)
        self.storage = RedisStorage(
            f"async+{url}",
            implementation="redispy",
            key_prefix=prefix,
            socket_timeout=max(0.1, timeout_s),
            socket_connect_timeout=max(0.1, timeout_s),
        )
        self.limiter = MovingWindowRateLimiter(self.storage)

    def describe(self) -> str:
        return f"redis moving window {self.item.amount}/{self.item.multiples}s"

    async def acquire(self, who: str) -> float:
        """0 when the request may go ahead, else the seconds until the window lets the caller in again."""
        if await self.limiter.hit(self.item, who):
            return 0.0
        stats = await self.limiter.get_window_stats(self.item, who)
        return max(0.001, stats.reset_time - time.time())

    async def close(self) -> None:
        client: Any = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

"""Who is calling, and may they: API keys (checked by sha256 digest) and per-caller token buckets. The client's
address behind trusted proxies and the Host allow-list are `redtrans.webguard`'s, shared with the annotation app."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict

from redtrans.serve.config import hash_key
from redtrans.serve.errors import ServiceError


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


_SCHEMES = frozenset({"bearer", "deepl-auth-key"})
"""`Authorization` schemes that carry an API key: OpenAI's (and ours) and DeepL's."""


class Authenticator:
    """API keys checked by their sha256 digest; the plain key is never stored."""

    def __init__(self, digests: dict[str, str]) -> None:
        self._digests = digests  # digest → key name

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    @staticmethod
    def presented_key(authorization: str | None, api_key: str | None) -> str | None:
        if api_key is not None:
            return api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() in _SCHEMES:
                return value.strip()
        return None

    def identify(
        self, authorization: str | None, api_key: str | None, client: str | None, body_key: str | None = None
    ) -> str:
        """The caller's name for logs and rate limits; raises 401 when keys are required and this one is bad.
        `body_key`: a key sent in the request body (LibreTranslate's `api_key` field), used when no header has one."""
        if not self.enabled:
            return f"client:{client or 'unknown'}"
        key = self.presented_key(authorization, api_key) or body_key
        headers = {"WWW-Authenticate": "Bearer"}
        if not key:
            message = "send an API key: `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            raise ServiceError(401, "missing_api_key", message, None, headers)
        digest = hash_key(key)
        name = next((n for d, n in self._digests.items() if hmac.compare_digest(d, digest)), None)
        if name is None:
            raise ServiceError(401, "invalid_api_key", "the API key is not valid", None, headers)
        return f"key:{name}"

"""Who is calling, and may they: API keys (checked by sha256 digest), per-caller token buckets, the client
address behind trusted proxies only, and the Host allow-list of an open service."""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Iterable

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


class ClientAddress:
    """The client's address: the peer's, or the `X-Forwarded-For` entry a trusted proxy added.

    The header is read right to left and trusted only while each hop is a configured proxy, so a client cannot
    choose its own address (and rate-limit bucket) by sending the header itself.
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if peer is None or not forwarded_for or not self._networks or not self._trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            client = hop
            if not self._trusted(hop):
                break
        return client


class HostAllowList:
    """`Host:` header values an open (keyless) service answers; a guard against DNS rebinding."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self._hosts = {h.lower() for h in hosts}
        self.any = "*" in self._hosts

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        if not host_header:
            return False
        host = host_header.strip().lower()
        if host.startswith("["):  # [::1]:8080
            name = host.split("]")[0] + "]"
            return name in self._hosts or name.strip("[]") in self._hosts
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self._hosts

"""What both HTTP servers (`serve` and the annotation app) decide about a peer before any route runs: the
client's address behind trusted proxies only, the `Host:` allow-list of an open service, the cap on one
client's open connections, and the throttle on failed credentials. One policy, so the two servers cannot
disagree on who a client is or how much of the server it may hold."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable


class ClientAddress:
    """The client's address: the peer's, or the `X-Forwarded-For` entry a trusted proxy added.

    The header is read right to left and trusted only while each hop is a configured proxy, so a client cannot
    choose its own address (and rate-limit bucket) by sending the header itself.
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusts(self, address: str) -> bool:
        """Whether `address` is a configured proxy."""
        return bool(self._networks) and self._trusted(address)

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


class ConnectionCap:
    """Open connections per client address, capped, so one client's idle connections cannot take every
    connection the server has. Addresses of trusted proxies are not capped (their connections carry many
    clients). One instance per server; call `opened` when a connection is made (False: refuse it) and `closed`
    when it goes (only for connections `opened` accepted)."""

    def __init__(self, per_client: int, trusted: ClientAddress | None = None) -> None:
        self.per_client = per_client
        self._trusted = trusted
        self._open: dict[str, int] = {}

    def opened(self, address: str | None) -> bool:
        if address is None or (self._trusted is not None and self._trusted.trusts(address)):
            return True
        count = self._open.get(address, 0)
        if count >= self.per_client:
            return False
        self._open[address] = count + 1
        return True

    def closed(self, address: str | None) -> None:
        if address is None or address not in self._open:
            return
        left = self._open[address] - 1
        if left > 0:
            self._open[address] = left
        else:
            del self._open[address]

    def count(self, address: str) -> int:
        return self._open.get(address, 0)


class FailureThrottle:
    """Failed credentials per client address (the `limits` library's moving window in memory): past `limit`
    failures within `window_s`, the address is refused — every attempt, a right key too, or guessing would go on
    — until the oldest failure leaves the window. `retry_after(address)` is 0 when it may try."""

    def __init__(self, limit: int = 10, window_s: int = 60) -> None:
        from limits import RateLimitItemPerSecond
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.limit, self.window_s = limit, window_s
        self._item = RateLimitItemPerSecond(limit, window_s)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, address: str | None) -> float:
        key = address or "unknown"
        if self._limiter.test(self._item, key):
            return 0.0
        stats = self._limiter.get_window_stats(self._item, key)
        return max(1.0, stats.reset_time - time.time())

    def failed(self, address: str | None) -> None:
        self._limiter.hit(self._item, address or "unknown")

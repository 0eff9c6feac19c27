"""What both HTTP servers (`serve` and the annotation app) decide about a peer before any route runs: the
client's address behind trusted proxies only, the `Host:` allow-list of an open service, the bounds on its
connections (a header deadline, a total cap and a cap per client address, built into uvicorn's protocol), and
the throttle on failed credentials. One policy, so the two servers cannot disagree on who a client is or how
much of the server it may hold."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, cast


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
    """Failed credentials per key, in memory: serve keys it by client address (wrong API keys), the annotation
    app by account and address (wrong passwords). Past `limit` failures within `window_s` a key waits:

    - without `backoff_s` (serve): until enough failures have left the window. Every attempt is refused
      meanwhile, a right key too, or guessing would go on;
    - with `backoff_s` (the app): `backoff_s` after its last failure, doubling with each further failure, at
      most `window_s`. Keyed by account *and* address, so it is never a lockout of an account, or of everyone
      behind an address.

    `retry_after(key)` is 0 when the key may try; `failed` counts a failure. `attempt` does both at once (the
    try counts as a failure until `succeeded` forgets the key's failures), so parallel guesses cannot all pass
    one check. Per process, forgotten on restart; keys whose failures all left the window are dropped once a
    window, so memory holds at most the failures of two windows. Thread-safe: the app checks logins in a thread
    pool. (The `limits` library's windows have no backoff: hence this small class.)"""

    def __init__(self, limit: int = 10, window_s: float = 60.0, backoff_s: float | None = None) -> None:
        if limit < 1 or window_s <= 0 or (backoff_s is not None and backoff_s <= 0):
            raise ValueError("limit must be at least 1, window_s and backoff_s above 0")
        self.limit, self.window_s, self.backoff_s = limit, window_s, backoff_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + window_s

    def retry_after(self, key: str | None) -> float:
        """Seconds the key must wait before its next try; 0 when it may try."""
        with self._lock:
            return self._wait(key or "unknown", time.monotonic())

    def failed(self, key: str | None) -> None:
        with self._lock:
            self._count(key or "unknown", time.monotonic())

    def attempt(self, key: str | None) -> float:
        """The wait (nothing counted), or 0 with this try counted as a failure until `succeeded(key)`."""
        key, at = key or "unknown", time.monotonic()
        with self._lock:
            wait = self._wait(key, at)
            if wait == 0:
                self._count(key, at)
            return wait

    def succeeded(self, key: str | None) -> None:
        """Forget the key's failures (a right password ends its backoff)."""
        with self._lock:
            self._failures.pop(key or "unknown", None)

    def _recent(self, key: str, at: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= at - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _wait(self, key: str, at: float) -> float:
        times = self._recent(key, at)
        if times is None or len(times) < self.limit:
            return 0.0
        if self.backoff_s is None:  # until the failure that reached the limit leaves the window
            until = times[len(times) - self.limit] + self.window_s
        else:
            until = times[-1] + min(self.window_s, self.backoff_s * 2 ** (len(times) - self.limit))
        return max(0.0, until - at)

    def _count(self, key: str, at: float) -> None:
        times = self._recent(key, at)
        if times is None:
            # a bound for callers that count without checking; a checked key never gets near it
            times = self._failures[key] = deque(maxlen=self.limit + 64)
        times.append(at)
        if at >= self._next_sweep:  # once a window: drop the keys whose failures all left it
            for stale in list(self._failures):
                self._recent(stale, at)
            self._next_sweep = at + self.window_s


class ConnectionGuards(asyncio.Protocol):
    """Bounds uvicorn leaves to the application, mixed into its HTTP protocol (`guarded_protocol` builds the
    class): a deadline for every request's line and headers, from the connection's opening or from the first
    byte of a later request on a kept-alive connection (uvicorn arms no timer until a first response, and any
    byte disarms its keep-alive timer, so a trickling or silent client holds its connection for ever: slow
    loris); `max_connections` open at once; `per_client` (a `ConnectionCap`) per client address. A connection
    over a bound is answered 408/503 and closed: JSON `{"error": {"code", "message"}}` (serve's API
    convention), or text for a browser app (`json_errors` False)."""

    connections: set[Any]
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    header_timeout_s: float = 10.0
    max_connections: int = 1000
    per_client: ConnectionCap = ConnectionCap(100)
    json_errors: bool = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._header_timer: asyncio.TimerHandle | None = None
        self._capped: str | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._reject(503, "too_many_connections", "the server has too many open connections; retry shortly")
            return
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if not self.per_client.opened(address):
            message = f"this client has {self.per_client.per_client} connections open already; reuse them"
            self._reject(503, "too_many_client_connections", message)
            return
        self._capped = address
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._arm()  # the first byte of a request starts its header deadline
        super().data_received(data)
        if not self._between_requests():
            self._disarm()  # its headers are in: the body has its own deadline

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._between_requests() and not self.transport.is_closing():
            message = f"the request headers did not arrive within {self.header_timeout_s:g} s"
            self._reject(408, "header_timeout", message)

    def _reject(self, status: int, code: str, message: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(raw_error(status, code, message, self.json_errors))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._capped is not None:
            self.per_client.closed(self._capped)
            self._capped = None
        super().connection_lost(exc)


_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def raw_error(status: int, code: str, message: str, json_body: bool = True) -> bytes:
    """A whole HTTP/1.1 error response that closes its connection (written before any route could answer)."""
    if json_body:
        body, media = json.dumps({"error": {"code": code, "message": message}}).encode(), "application/json"
    else:
        body, media = message.encode(), "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: {media}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def guarded_protocol(
    name: str,
    *,
    header_timeout_s: float,
    max_connections: int,
    per_client: ConnectionCap,
    json_errors: bool = True,
) -> type[ConnectionGuards]:
    """The HTTP protocol class of one server (uvicorn's `http` setting): uvicorn's httptools protocol (llhttp,
    C; h11 where httptools is not installed) with `ConnectionGuards`. Its caps are shared by all its
    connections (one event loop)."""
    base: type
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is in the serve extra, not the prefs one
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    settings = {
        "header_timeout_s": header_timeout_s,
        "max_connections": max_connections,
        "per_client": per_client,
        "json_errors": json_errors,
    }
    return cast(type[ConnectionGuards], type(name, (ConnectionGuards, base), settings))

"""What both HTTP servers (`serve` and the annotation app) decide about a peer before any route runs: the
client's address behind trusted proxies only, and the `Host:` allow-list of an open service. One policy, so
the two servers cannot disagree on who a client is."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


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

"""Running the app under uvicorn, with the bounds uvicorn leaves to the application.

- **Header timeout** (`header_timeout_s`): uvicorn's h11 protocol arms no timer until a first response, and any
  byte received disarms its keep-alive timer, so a client trickling a header (or sending nothing) holds its
  connection for as long as it likes (slow loris). `GuardedH11Protocol` gives every request's line and headers
  a deadline from the connection's opening (or from the first byte of a later request on a kept-alive
  connection) and answers 408 JSON, then closes.
- **Connection cap** (`max_connections`): a new connection over the cap gets 503 JSON and is closed (uvicorn's
  own `limit_concurrency` answers text/plain).
- **Body timeout**: in the app's middleware (`body_timeout_s`, 408 JSON).
- **Bounded shutdown**: on SIGTERM/SIGINT uvicorn stops accepting and waits for requests in flight; just before
  its `graceful_shutdown_s` ends, requests still waiting are answered 503 `shutting_down` (JSON, never uvicorn's
  `500 text/plain` of a cancelled task). Engine calls still stuck after that (a hung upstream) are not waited
  for more than a few seconds: the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from redtrans.engines.base import Engine
from redtrans.serve.config import ServeConfig
from redtrans.serve.logging import setup_logging

log = logging.getLogger("redtrans.serve")

_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def _raw_error(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (set by `protocol_class`)."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._reject(503, "too_many_connections", "the server has too many open connections; retry shortly")
            return
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
            self.transport.write(_raw_error(status, code, message))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_class(config: ServeConfig) -> type[GuardedH11Protocol]:
    return type(
        "ServeH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": config.header_timeout_s, "max_connections": config.max_connections},
    )


class _Server(uvicorn.Server):
    """uvicorn's server that tells the service when shutdown begins, so waiting requests get JSON in time."""

    on_shutdown: Any = None

    async def shutdown(self, sockets: Any = None) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
        await super().shutdown(sockets)


def build_server(config: ServeConfig, engine: Engine | None = None) -> uvicorn.Server:
    """A uvicorn server for the app with every bound of `config` applied (not started)."""
    from redtrans.serve.app import create_app

    app = create_app(config, engine)
    service = app.state.service
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_config": None,
        "access_log": False,
        "http": protocol_class(config),
        "ws": "none",
        "lifespan": "on",
        "timeout_graceful_shutdown": config.graceful_shutdown_s,
        "timeout_keep_alive": config.keep_alive_s,
        "server_header": False,
        "proxy_headers": False,  # X-Forwarded-For is the service's to read, from trusted_proxies only
    }
    server = _Server(uvicorn.Config(app, **options))
    grace = config.graceful_shutdown_s
    server.on_shutdown = lambda: service.begin_drain(max(0.0, grace - min(1.0, grace / 4)))
    server.service = service  # type: ignore[attr-defined]
    return server


def run(config: ServeConfig, engine: Engine | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish the requests in flight (up to graceful_shutdown_s)."""
    setup_logging(config.log_level)
    server = build_server(config, engine)
    server.run()
    if server.service.abandoned_threads:  # type: ignore[attr-defined]
        # Engine calls stuck in a hung upstream would hold the interpreter's exit until they time out.
        for handler in logging.getLogger("redtrans.serve").handlers:
            handler.flush()
        os._exit(0)

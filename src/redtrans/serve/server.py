"""Running the app under uvicorn, with the bounds uvicorn leaves to the application.

- **Header timeout** (`header_timeout_s`): uvicorn's h11 protocol arms no timer until a first response, and any
  byte received disarms its keep-alive timer, so a client trickling a header (or sending nothing) holds its
  connection for as long as it likes (slow loris). `GuardedH11Protocol` gives every request's line and headers
  a deadline from the connection's opening (or from the first byte of a later request on a kept-alive
  connection) and answers 408 JSON, then closes.
- **Connection caps** (`max_connections`, and `max_connections_per_client` per client address through
  `webguard.ConnectionCap`, shared with the annotation app): a new connection over a cap gets 503 JSON and is
  closed (uvicorn's own `limit_concurrency` answers text/plain), so one client's 1,000 idle connections
  cannot lock every other client out.
- **Body timeout**: in the app's middleware (`body_timeout_s`, 408 JSON).
- **Bounded shutdown**: on SIGTERM/SIGINT uvicorn stops accepting and waits for requests in flight; just before
  its `graceful_shutdown_s` ends, requests still waiting are answered 503 `shutting_down` (JSON, never uvicorn's
  `500 text/plain` of a cancelled task). Engine calls still stuck after that (a hung upstream) are not waited
  for more than a few seconds: the process exits, with status 0 (uvicorn re-raises SIGTERM after its
  shutdown, which made the process die of the signal, −15, after a clean drain).
- **Checked before binding** (`check_before_binding`): everything that can be validated without loading the
  model — the engine's own options (types, values), the model file or registry name, the cache and
  rate-limit stores' client packages — so a bad setting exits 2 with one line, and only a failure of the load
  itself leaves `/readyz` at 503 `failed`. Messages never echo a credential.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # httptools: in the serve extra

from redtrans.engines.base import Engine
from redtrans.errors import ConfigError, RedtransError
from redtrans.serve.config import ServeConfig
from redtrans.serve.logging import redact, setup_logging
from redtrans.webguard import ClientAddress, ConnectionCap

log = logging.getLogger("redtrans.serve")

_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def _raw_error(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Guards:
    """A header deadline and connection caps, on either of uvicorn's HTTP protocols (set by `protocol_class`)."""

    connections: set[Any]
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    header_timeout_s: float = 10.0
    max_connections: int = 1000
    per_client: ConnectionCap = ConnectionCap(100)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._header_timer: asyncio.TimerHandle | None = None
        self._capped: str | None = None
        super().connection_made(transport)  # type: ignore[misc]
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
        super().data_received(data)  # type: ignore[misc]
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
        if self._capped is not None:
            self.per_client.closed(self._capped)
            self._capped = None
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedH11Protocol(_Guards, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol (pure Python), guarded."""


class GuardedHttpToolsProtocol(_Guards, HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol (llhttp, C), guarded: a cache hit spends a third of its CPU in h11 otherwise."""


def protocol_class(config: ServeConfig) -> type[_Guards]:
    """The protocol of one server (httptools; GuardedH11Protocol is the same on h11): its caps are shared by
    all its connections (one event loop)."""
    cap = ConnectionCap(config.max_connections_per_client, ClientAddress(config.trusted_proxies))
    return type(
        "ServeHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": config.header_timeout_s, "max_connections": config.max_connections, "per_client": cap},
    )


class _Server(uvicorn.Server):
    """uvicorn's server that tells the service when shutdown begins, so waiting requests get JSON in time, and
    ends a SIGTERM shutdown with status 0 (uvicorn re-raises the signal once it has drained)."""

    on_shutdown: Any = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and self._captured_signals and self._captured_signals[-1] == sig:
            self._captured_signals.pop()  # a drained SIGTERM shutdown is a clean exit

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


def check_before_binding(config: ServeConfig) -> None:
    """ConfigError (exit 2, one line, credentials redacted) for whatever can be known wrong without loading the
    model: the engine's options, the model's file or name, the packages the cache and rate-limit stores need."""
    try:
        spec = config.engine_spec().resolved()
        spec.engine_config()  # the engine's own config: types and values of engine_options
        model = spec.model
        if spec.kind == "llamacpp" and model:
            from redtrans.engines.models import get_spec

            path = Path(model).expanduser()
            if path.suffix == ".gguf" or path.exists():
                if not path.is_file():
                    raise ConfigError(f"model file not found: {path}")
            else:
                get_spec(model)
        if spec.kind == "hf" and model and not Path(model).expanduser().is_dir():
            raise ConfigError(f"the hf engine needs a model directory: {model} is none")
        redis_urls = [
            u for u in (config.cache, config.rate_limit_storage) if u.startswith(("redis", "rediss", "unix:"))
        ]
        if redis_urls and importlib.util.find_spec("redis") is None:
            raise ConfigError("a Redis cache or rate-limit store needs the redis package: pip install redis")
    except RedtransError as exc:
        raise ConfigError(redact(exc.message)) from None


def run(config: ServeConfig, engine: Engine | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish the requests in flight (up to graceful_shutdown_s)."""
    if engine is None:
        check_before_binding(config)
    setup_logging(config.log_level)
    server = build_server(config, engine)
    server.run()
    if server.service.abandoned_threads:  # type: ignore[attr-defined]
        # Engine calls stuck in a hung upstream would hold the interpreter's exit until they time out.
        for handler in logging.getLogger("redtrans.serve").handlers:
            handler.flush()
        os._exit(0)

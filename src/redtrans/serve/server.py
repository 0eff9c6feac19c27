"""Running the app under uvicorn, with the bounds uvicorn leaves to the application.

- **Header timeout** (`header_timeout_s`) and **connection caps** (`max_connections`, and
  `max_connections_per_client` per client address): `webguard.ConnectionGuards` in uvicorn's protocol, the
  same as the annotation app's. uvicorn arms no timer until a first response and any byte disarms its
  keep-alive timer (slow loris), and its own `limit_concurrency` answers text/plain: here a request's line and
  headers have a deadline (408 JSON), a connection over a cap gets 503 JSON and is closed, so one client's
  1,000 idle connections cannot lock every other client out.
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

import importlib.util
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from redtrans.engines.base import Engine
from redtrans.errors import ConfigError, RedtransError
from redtrans.serve.config import ServeConfig
from redtrans.serve.logging import redact, setup_logging
from redtrans.webguard import ClientAddress, ConnectionCap, ConnectionGuards, guarded_protocol

log = logging.getLogger("redtrans.serve")


def protocol_class(config: ServeConfig) -> type[ConnectionGuards]:
    """The HTTP protocol of one server, with the header deadline and connection caps of `config`."""
    return guarded_protocol(
        "ServeHttpProtocol",
        header_timeout_s=config.header_timeout_s,
        max_connections=config.max_connections,
        per_client=ConnectionCap(config.max_connections_per_client, ClientAddress(config.trusted_proxies)),
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

"""Running the app under uvicorn: `run(config)` serves until SIGTERM/SIGINT, then shuts down within bounds."""

from __future__ import annotations

from typing import Any

from redtrans.engines.base import Engine
from redtrans.serve.config import ServeConfig
from redtrans.serve.logging import setup_logging


def run(config: ServeConfig, engine: Engine | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish the requests in flight (up to graceful_shutdown_s)."""
    import uvicorn

    from redtrans.serve.app import create_app

    setup_logging(config.log_level)
    app = create_app(config, engine)
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": config.graceful_shutdown_s,
        "timeout_keep_alive": config.keep_alive_s,
        "server_header": False,
    }
    uvicorn.run(app, **options)

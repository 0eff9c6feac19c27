"""Production serving: `redtrans serve`, an HTTP translation API over the embedded model or an upstream fleet.

Modules, as vLLM's entrypoints: `protocol` (wire models), `config` (settings), `batcher` (queue, batches,
deadlines; no HTTP), `service` (the serving logic), `auth`, `metrics`, `logging`, `cache`, `app` (routes,
middleware, exception handlers) and `server` (uvicorn).
"""

from redtrans.serve.config import ServeConfig, ServeConfigError, hash_key, load_config

__all__ = ["ServeConfig", "ServeConfigError", "create_app", "hash_key", "load_config", "run"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: importing the config needs no FastAPI
    if name == "create_app":
        from redtrans.serve.app import create_app

        return create_app
    if name == "run":
        from redtrans.serve.server import run

        return run
    raise AttributeError(name)

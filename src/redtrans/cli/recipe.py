"""The `recipe` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redtrans.cli._app import (
    app,
)
from redtrans.console import err_console

recipe_app = typer.Typer(help="The whole recipe: sample → sft → prefs → dpo/repo → bench → report.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("run")
def recipe_run_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (docs/recipe.md).")],
    from_: Annotated[str | None, typer.Option("--from", help="Rerun this stage and every later one afresh.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print the plan (each stage: run/resume/skip and why); run nothing.")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="KEY=VALUE override of the recipe, dotted, YAML values.")
    ] = None,
) -> None:
    """Run the recipe's stages in order; unchanged finished stages are skipped, killed ones resume."""
    from redtrans.config import parse_overrides
    from redtrans.recipe import load_recipe, plan_recipe, run_recipe

    config = load_recipe(recipe, parse_overrides(set_ or []))
    if dry_run:
        typer.echo(f"plan for {config.out}:")
        for decision in plan_recipe(config, from_, until):
            typer.echo("  " + decision.line())
        return
    run_recipe(config, from_, until, echo=lambda line: err_console.print(line, highlight=False, markup=False))
    err_console.print(f"report → {config.out / 'report' / 'report.md'}, report.html", highlight=False)

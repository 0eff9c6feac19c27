"""The `termbase` commands."""

from __future__ import annotations

from typing import Annotated

import typer

from redtrans.cli._app import (
    app,
)
from redtrans.console import err_console

termbase_app = typer.Typer(help="Slang / meme term bases: check and describe them.", no_args_is_help=True)
app.add_typer(termbase_app, name="termbase")


@termbase_app.command("check")
def termbase_check_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="Term base files (YAML/JSONL); none: built-in.")] = None,
) -> None:
    """Check term bases: schema, duplicates and conflicts, each reported as FILE:LINE; exit 2 on errors."""
    from redtrans.text.termbase import BUILTIN, TermBaseError, check_files

    entries, problems = check_files(paths or [BUILTIN])
    for problem in problems:
        typer.echo(str(problem))
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise TermBaseError(errors)
    err_console.print(f"{len(entries)} entries OK ({len(problems)} warnings)")


@termbase_app.command("stats")
def termbase_stats_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="Term base files (YAML/JSONL); none: built-in.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Entries, surface forms, directions and tags of term bases."""
    import json

    from redtrans.text.termbase import BUILTIN, check_files, stats

    entries, _ = check_files(paths or [BUILTIN])
    counts = stats(entries)
    if as_json:
        typer.echo(json.dumps(counts, ensure_ascii=False))
        return
    for key, value in counts.items():
        typer.echo(f"{key}: {value}")

"""The typer app, its one error boundary and the options several commands share."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from redtrans.console import err_console, progress_bar
from redtrans.engines.spec import ENGINE_KINDS
from redtrans.errors import InputError, MissingExtraError, RedtransError, redact, storage_error_of


class _ErrorBoundary(TyperGroup):
    """Every command runs inside this group's `invoke`: the one place user errors become exit codes."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except RedtransError as exc:
            self._fail(exc)
        except UsageError as exc:
            # A bad option or argument: one line and one hint, as every other user error (not click's panel).
            message = escape(redact(exc.format_message()))
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            if exc.ctx is not None:
                err_console.print(f"Try '{exc.ctx.command_path} -h' for help.", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:
            # An optional dependency of an extra the install lacks: one line naming the extra, not a traceback.
            missing = MissingExtraError.of(exc, ctx.invoked_subcommand)
            if missing is None:
                raise
            self._fail(missing)
        except Exception as exc:
            # Disk full, permission denied on an output: the environment, not a bug (no traceback), also when a
            # library reports it in its own exception type (safetensors, torch).
            storage = storage_error_of(exc)
            if storage is None:
                raise
            self._fail(storage)

    @staticmethod
    def _fail(exc: RedtransError) -> NoReturn:
        # The message is data (paths, posts, "[q_proj, v_proj]"): escaped, so rich reads no markup in it; no secret
        # (a password in a URL, an API key) is shown.
        err_console.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


PIPED_HELP_WIDTH = 130
"""Columns of `--help` when stdout is not a terminal: rich fits its panels to 80 columns there and cuts a word
longer than a cell ("qwen2.5-coder-1.…"); at this width every help text of every command fits whole
(tests/test_packaging.py). A terminal keeps its own width; a wider COLUMNS wins."""
if not sys.stdout.isatty():
    import os

    import typer.rich_utils

    typer.rich_utils.MAX_WIDTH = max(PIPED_HELP_WIDTH, int(os.environ.get("COLUMNS", "0") or 0))

app = typer.Typer(
    name="redtrans",
    help="SNS-aware machine translation with LLMs (the RedTrans recipe).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_ErrorBoundary,
    # -h on every command: click contexts inherit help_option_names from their parent (sub-apps included).
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"redtrans {version('redtrans')}")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from redtrans import __version__

            typer.echo(f"redtrans {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """SNS-aware machine translation with LLMs (the RedTrans recipe)."""


models_app = typer.Typer(help="List and prepare the embedded models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        "-e",
        help=f"{' | '.join(ENGINE_KINDS)} (default: inferred from --model; standin is a fast deterministic stand-in "
        "for tests and measurements)",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m), a .gguf path, "
        "a model/adapter directory, or http(s)://host/v1 endpoints (comma-separated).",
    ),
]


def _read_stdin() -> str:
    """All of stdin as UTF-8 text; InputError (not a traceback) for bytes that are not UTF-8."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


SetOpt = Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE override, dotted (systems.0.parallel=2).")]
DbOpt = Annotated[str, typer.Option("--db", help="Store: SQLite path or URL (sqlite:///…, postgresql://…).")]
_DB_DEFAULT = "runs/annotate/annotate.db"


def _stage_progress(label: str, unit: str, run: Any) -> Any:
    with progress_bar(unit) as bar:
        task = bar.add_task(label, total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))

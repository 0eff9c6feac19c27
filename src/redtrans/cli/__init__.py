"""The command line: parses options and calls one stage. No logic lives here; one module per stage.

One error boundary (`_ErrorBoundary`): a `RedtransError` from any command prints one line and exits with its
code (2: could not do what was asked; 1: rows failed); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

# isort: off
# Importing a module registers its commands; the order here is the order of `redtrans --help`.
from redtrans.cli import translate, models, serve, train, bench, sample, prefs, recipe, termbase  # noqa: F401
from redtrans.cli._app import app

# isort: on

__all__ = ["app", "main"]


def main() -> None:
    app()

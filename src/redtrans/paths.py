"""Where redtrans keeps its cache (assembled models, downloaded suites)."""

from __future__ import annotations

import os
from pathlib import Path


def redtrans_home() -> Path:
    """``$REDTRANS_HOME``, default ``~/.cache/redtrans``."""
    return Path(os.environ.get("REDTRANS_HOME") or Path.home() / ".cache" / "redtrans").expanduser()

"""One exception tree for every stage (as httpx's `_exceptions.py`): what a user can fix, and how the CLI exits.

```
RedtransError              exit 2: the command could not do what was asked; one line, no traceback
├── ConfigError            a config file, override or option that does not fit (names the field)
├── InputError             input data that cannot be used (names file:line where there is one)
│   ├── JSONLError         (redtrans.jsonl) invalid JSON / UTF-8, a non-object line
│   ├── LanguageError      an unknown language code
│   ├── ProfileError       a platform markup profile that cannot be read
│   └── SuiteError         a benchmark suite that cannot be found or read
├── EngineError            an engine that cannot generate (unreachable endpoint, bad answer, bad options)
│   └── ModelError         a model that cannot be found, assembled or verified
├── MissingExtraError      an optional dependency that is not installed: names the extra to install
├── StorageError           the environment: no space left, permission denied, a read-only file system
├── RowsFailedError        exit 1: the command ran, but some rows failed (see its message for which a re-run retries)
└── ConflictError          exit 1: the command ran, but left conflicting records as they were (it says how to decide)
```

Anything else that escapes a command is a bug and keeps its traceback, except an `OSError` of the environment
(`STORAGE_ERRNOS`: disk full, permission denied): the CLI boundary reports it as a StorageError would. The
exception classes also derive from the builtin they replaced (`ValueError`, `RuntimeError`) so existing
`except ValueError` callers keep working.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path


class RedtransError(Exception):
    """Base of every error redtrans raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code: int = 2

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.message, self.path, self.line = message, (str(path) if path is not None else None), line
        where = f"{self.path}:{line}: " if self.path is not None and line else f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{message}")


class ConfigError(RedtransError, ValueError):
    """A config file, `--set` override, environment variable or option value that does not fit its model."""


class InputError(RedtransError, ValueError):
    """Input data that cannot be used: names the file and line where there is one."""


class LanguageError(InputError):
    """A language code that is not in the table (`redtrans.languages`)."""


class ProfileError(InputError):
    """A platform markup profile that is unknown or invalid."""


class SuiteError(InputError):
    """A benchmark suite that cannot be found, downloaded or read."""


class EngineError(RedtransError, RuntimeError):
    """The engine could not produce results: unreachable endpoint, an answer that is not one, bad options."""


class ModelError(EngineError):
    """A model that cannot be found, assembled or verified."""


EXTRAS: dict[str, tuple[str, ...]] = {
    "xllamacpp": ("local",),
    "pyarrow": ("files",),
    "datasets": ("files",),
    "pandas": ("files",),
    "pydantic_settings": ("serve",),
    "fastapi": ("serve", "prefs"),
    "fastapi_offline": ("serve",),
    "uvicorn": ("serve", "prefs"),
    "prometheus_client": ("serve",),
    "limits": ("serve",),
    "multipart": ("serve", "prefs"),
    "sqlalchemy": ("prefs", "serve"),
    "torch": ("train",),
    "transformers": ("train",),
    "trl": ("train",),
    "peft": ("train",),
    "accelerate": ("train",),
    "gguf": ("train",),
    "tensorboard": ("train",),
    "deepspeed": ("deepspeed",),
    "argon2": ("prefs",),
    "krippendorff": ("prefs",),
    "psycopg": ("prefs",),
    "alembic": ("prefs",),
}
"""Top-level module → the extras that install it (pyproject.toml), the likeliest first, for `MissingExtraError.of`."""
COMMAND_EXTRAS = {"annotate": "prefs", "prefs": "prefs", "serve": "serve"}
"""The extra a command's modules come from, where a module is in several (fastapi: serve and prefs)."""


class MissingExtraError(RedtransError):
    """An optional dependency is not installed: one line naming the extra, ``pip install 'redtrans[files]'``."""

    def __init__(self, extra: str, module: str, needed_for: str = "") -> None:
        self.extra, self.module = extra, module
        what = f" for {needed_for}" if needed_for else ""
        super().__init__(
            f"{module} is not installed: redtrans needs its {extra!r} extra{what}; "
            f"install it with: pip install 'redtrans[{extra}]'"
        )

    @classmethod
    def of(cls, exc: ModuleNotFoundError, command: str | None = None) -> MissingExtraError | None:
        """The error for a failed import of a module an extra installs (the `command`'s own extra where the
        module is in several); None for any other module, or one that is installed (a bug, not an install)."""
        import importlib.util

        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS or importlib.util.find_spec(top) is not None:
            return None
        extras = EXTRAS[top]
        preferred = COMMAND_EXTRAS.get(command or "")
        return cls(preferred if preferred in extras else extras[0], top)


_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
SECRET_ENV = ("OPENAI_API_KEY", "REDTRANS_API_KEYS", "REDTRANS_ANNOTATE_PASSWORD", "HF_TOKEN")
"""Environment variables whose values are never shown in a message."""


def redact(text: str) -> str:
    """`text` without secrets: the ``user:password@`` of every URL (``scheme://***@host``) and the value of any
    `SECRET_ENV` variable. The CLI prints every error through it."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 6:
            text = text.replace(value, "***")
    return text


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})
"""OSError numbers that say the environment, not the input or a bug, stopped a write."""


class StorageError(RedtransError):
    """An output cannot be written: no space left on the device, permission denied, a read-only file system.
    Rows journaled before it are kept and temporary files removed: free space (or fix the permission) and
    re-run the same command to resume."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | Path | None = None) -> StorageError:
        where = path if path is not None else exc.filename
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        message = f"{reason} on {where}" if where is not None else reason
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = "what was written before it is kept: free space and re-run the same command to resume"
        else:
            hint = "fix the permission (or write elsewhere) and re-run the same command"
        return cls(f"{message}; {hint}")


def storage_error_of(exc: BaseException, path: str | Path | None = None) -> StorageError | None:
    """The StorageError an exception stands for, None when it is not the environment's: an `OSError` of
    `STORAGE_ERRNOS` in its chain, or a library's own error that says the disk is full (safetensors' and
    torch's writers report ENOSPC in their own exception types)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in STORAGE_ERRNOS:
            return StorageError.from_os_error(seen, path)
        text = str(seen)
        if "No space left on device" in text or "os error 28" in text:
            return StorageError.from_os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def storage_errors(path: str | Path | None = None) -> Iterator[None]:
    """Raise an environment `OSError` (`STORAGE_ERRNOS`) met inside as a StorageError naming `path`."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise StorageError.from_os_error(exc, path) from None


class RowsFailedError(RedtransError):
    """The command ran to the end but `failed` rows have no usable output. `detail` says why; `retry` what
    a re-run does about them (by default: retries them)."""

    exit_code = 1

    def __init__(
        self,
        failed: int,
        total: int,
        where: str | Path | None = None,
        detail: str = "",
        retry: str = "re-run the same command to retry them",
    ) -> None:
        self.failed, self.total = failed, total
        target = f" in {where}" if where is not None else ""
        super().__init__(f"{failed} of {total} rows failed{target}{': ' + detail if detail else ''}; {retry}")


class ConflictError(RedtransError):
    """The command ran, but records that conflict were listed and left as they were, until an option decides."""

    exit_code = 1

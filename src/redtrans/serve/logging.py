"""Structured logs of the service: one JSON object a line on stderr, credentials redacted from every line.

Every record of `redtrans.serve` and uvicorn goes through `JsonFormatter`: ``ts, level, logger, msg`` plus the
record's `fields`. Before a line is written, user:password in URLs, bearer tokens and API-key headers are
replaced by ``***`` in the message, every field and any traceback, so an upstream URL such as
``http://user:pass@gpu-1:8000/v1`` never reaches a log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

log = logging.getLogger("redtrans.serve")

_SECRETS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"), r"\1***:***@"),  # scheme://user:pass@
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+@"), r"\1***@"),  # scheme://token@
    (re.compile(r"(?i)\b(bearer|deepl-auth-key)\s+[^\s\"',}]+"), r"\1 ***"),
    (re.compile(r"(?i)((?:api[_-]?key|password|passwd|secret|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"), r"\1***"),
)
_MAYBE = re.compile(r"(?i)://[^\s]*@|bearer|deepl-auth-key|api[_-]?key|passw(?:or)?d|secret|token")
"""What every pattern above needs: a line without it is left as it is after one search (each request writes an
access-log line, and the four substitutions cost more than the rest of a cache hit)."""


def redact(text: str) -> str:
    """`text` with credentials replaced by ``***`` (URL user:password, bearer tokens, key=value secrets)."""
    if _MAYBE.search(text) is None:
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, plus the record's `fields`; credentials redacted."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # Redacted once, as the line it is written as: every field, the traceback, any value's str() included.
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Route redtrans.serve and uvicorn's loggers to one JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("redtrans.serve", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the service logs requests itself, structured


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("msg", extra=fields(a=1))``: structured fields of a record."""
    return {"fields": values}

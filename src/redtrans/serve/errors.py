"""`ServiceError`: an answer other than 200, raised anywhere in serving and turned into JSON by the app's
exception handler, in the shape of the API the route belongs to (`conventions.render`)."""

from __future__ import annotations

import json
import re
from typing import Any


class ServiceError(Exception):
    """An answer other than 200: HTTP status, machine-readable code, message for humans."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        item: int | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.item = item
        self.headers = headers or {}
        self.param = param  # the request field to blame, for APIs that name one (OpenAI's `param`)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.item is not None:
            error["item"] = self.item
        return {"error": error}

    def encode(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=False).encode()


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def invalid_json_hint(raw: bytes) -> str:
    """What to add to a JSON parse error of `raw`: a lone UTF-16 surrogate escape is the usual culprit when the
    body has surrogate escapes (a valid pair parses)."""
    if _SURROGATE_ESCAPE.search(raw):
        return " (a lone UTF-16 surrogate such as \\ud83d without its pair, half of an emoji cut in two?)"
    return ""

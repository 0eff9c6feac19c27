"""Errors in the caller's convention: each API family answers errors the way its own clients parse them.

| paths | convention | error body | status changes |
|---|---|---|---|
| `/v1/translate`, ops routes, unknown paths | redtrans | `{"error": {"code", "message", "item"?}}` | none |
| `/v1/*` (OpenAI) | OpenAI | `{"error": {"message", "type", "param", "code"}}` | none |
| `/v2/*` (DeepL) | DeepL | `{"message"}` | 401 → 403, 422 → 400 |
| `/translate`, `/languages` (LibreTranslate) | LibreTranslate | `{"error"}` | 401 → 403, 422 → 400 |

The machine-readable `code` stays ours everywhere (OpenAI's body carries it; the others' clients read the
status only), so one table in docs/serve.md explains every error.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from starlette.responses import Response

from redtrans.serve.errors import ServiceError

Convention = Literal["redtrans", "openai", "deepl", "libretranslate"]

NATIVE_TRANSLATE = "/v1/translate"
LIBRETRANSLATE_PATHS = frozenset({"/translate", "/languages"})

_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_MT_STATUS = {401: 403, 422: 400}  # DeepL and LibreTranslate: bad key 403, bad request 400


def convention(path: str) -> Convention:
    if path == NATIVE_TRANSLATE:
        return "redtrans"
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path == "/v2" or path.startswith("/v2/"):
        return "deepl"
    if path in LIBRETRANSLATE_PATHS:
        return "libretranslate"
    return "redtrans"


def openai_error(exc: ServiceError) -> dict[str, Any]:
    kind = _OPENAI_TYPES.get(exc.status) or ("server_error" if exc.status >= 500 else "invalid_request_error")
    return {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}}


def render(exc: ServiceError, path: str) -> Response:
    """The JSON response for `exc` on a request to `path`."""
    kind = convention(path)
    status, headers = exc.status, dict(exc.headers)
    body: dict[str, Any]
    if kind == "openai":
        body = openai_error(exc)
    elif kind in ("deepl", "libretranslate"):
        status = _MT_STATUS.get(status, status)
        if status != exc.status:
            headers.pop("WWW-Authenticate", None)
        body = {"message": exc.message} if kind == "deepl" else {"error": exc.message}
    else:
        body = exc.body()
    data = json.dumps(body, ensure_ascii=False).encode()
    return Response(data, status, headers=headers, media_type="application/json")

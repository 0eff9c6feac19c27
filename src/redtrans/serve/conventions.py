"""Errors in the caller's convention: each API family answers errors the way its own clients parse them.

| paths | convention | error body | status changes |
|---|---|---|---|
| `/v1/translate`, ops routes, unknown paths | redtrans | `{"error": {"code", "message", "item"?}}` | none |
| `/v1/*` (OpenAI) | OpenAI | `{"error": {"message", "type", "param", "code"}}` | 422 → 400 |
| `/v2/*` (DeepL) | DeepL | `{"message"}` | 401 → 403, 422 → 400 |
| `/translate`, `/languages`, `/detect` (LibreTranslate) | LibreTranslate | `{"error"}` | 401 → 403, 422 → 400 |

A bad request is 400 where the API's own servers say 400 (OpenAI and vLLM, DeepL, LibreTranslate); `422
no_translation` (the engine answered, but with no usable translation) keeps its 422 everywhere: a status none
of the official SDKs retries, so a deterministic refusal is not asked again 2–5 times.

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
LIBRETRANSLATE_PATHS = frozenset({"/translate", "/languages", "/detect", "/frontend/settings"})

_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_STATUS: dict[Convention, dict[int, int]] = {
    "redtrans": {},
    "openai": {422: 400},  # OpenAI and vLLM: a bad request is 400
    "deepl": {401: 403, 422: 400},  # DeepL and LibreTranslate: bad key 403, bad request 400
    "libretranslate": {401: 403, 422: 400},
}
KEEPS_STATUS = frozenset({"no_translation"})
"""Codes answered with their own status in every convention."""
KEY_HOW: dict[Convention, str] = {
    "redtrans": "`Authorization: Bearer KEY` or `X-API-Key: KEY`",
    "openai": "`Authorization: Bearer KEY`",
    "deepl": "`Authorization: DeepL-Auth-Key KEY`",
    "libretranslate": "the `api_key` field (or `Authorization: Bearer KEY`)",
}
"""How each API's clients send a key, for the message of a request without one."""


def convention(path: str) -> Convention:
    if path == NATIVE_TRANSLATE:
        return "redtrans"
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path in ("/v2", "/v3") or path.startswith(("/v2/", "/v3/")):
        return "deepl"
    if path in LIBRETRANSLATE_PATHS:
        return "libretranslate"
    return "redtrans"


def status_in(kind: Convention, exc: ServiceError) -> int:
    """The status `exc` is answered with in convention `kind`."""
    if exc.code in KEEPS_STATUS:
        return exc.status
    return _STATUS[kind].get(exc.status, exc.status)


def openai_error(exc: ServiceError, status: int | None = None) -> dict[str, Any]:
    status = status_in("openai", exc) if status is None else status
    kind = _OPENAI_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}}


def render(exc: ServiceError, path: str) -> Response:
    """The JSON response for `exc` on a request to `path`."""
    kind = convention(path)
    status, headers = status_in(kind, exc), dict(exc.headers)
    if status != exc.status:
        headers.pop("WWW-Authenticate", None)
    body: dict[str, Any]
    if kind == "openai":
        body = openai_error(exc, status)
    elif kind == "deepl":
        body = {"message": exc.message}
    elif kind == "libretranslate":
        body = {"error": exc.message}
    else:
        body = exc.body()
    data = json.dumps(body, ensure_ascii=False).encode()
    return Response(data, status, headers=headers, media_type="application/json")

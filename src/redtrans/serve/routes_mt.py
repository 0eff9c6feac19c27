"""MT-API-compatible routes: DeepL's `POST /v2/translate` and LibreTranslate's `POST /translate` and
`GET /languages`, so plugins and tools written for those services translate with redtrans unchanged.

Both take JSON or form-encoded bodies (the only routes that accept forms: their clients send them), use
their own language codes (DeepL: `EN-US`, `ZH-HANT`, …; LibreTranslate: `en`, `zh`, `auto`) and their own
auth (DeepL: `Authorization: DeepL-Auth-Key KEY`; LibreTranslate: the `api_key` field), and answer errors in
their own shape (`conventions.render`). Underneath they are `/v1/translate`: the same service, keys, rate
limits, cache, budgets and metrics.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from redtrans.languages import LANGUAGES
from redtrans.serve.errors import ServiceError
from redtrans.serve.protocol import TranslateItem, TranslateRequest, Translation
from redtrans.serve.protocol_compat import (
    DeepLError,
    DeepLRequest,
    DeepLResponse,
    DeepLTranslation,
    LibreDetected,
    LibreError,
    LibreLanguage,
    LibreRequest,
    LibreResponse,
    error_responses,
)
from redtrans.serve.service import TranslationService
from redtrans.serve.watch import unless_disconnected

DEEPL = "/v2/translate"
LIBRE = "/translate"
FORM_PATHS = frozenset({DEEPL, LIBRE})
"""Routes that accept form-encoded bodies (everything else is JSON only when keys are off)."""
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

_DEEPL_ERRORS = error_responses(
    DeepLError,
    {
        400: "Bad request (wrong parameters, unknown language)",
        403: "Missing or invalid key (`Authorization: DeepL-Auth-Key KEY`)",
        413: "Request too large",
        429: "Too many requests; see Retry-After",
        504: "Deadline exceeded",
    },
)
_LIBRE_ERRORS = error_responses(
    LibreError,
    {
        400: "Bad request",
        403: "Missing or invalid `api_key`",
        413: "Request too large",
        429: "Slow down; see Retry-After",
        504: "Deadline exceeded",
    },
)


def _form_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }


async def _fields(request: Request, lists: frozenset[str]) -> dict[str, Any]:
    """The body as a mapping: JSON, or a form (fields in `lists` are always lists; others repeated are lists)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in FORM_TYPES:
        form = await request.form()
        out: dict[str, Any] = {}
        for key in form:
            values = [v for v in form.getlist(key) if isinstance(v, str)]
            out[key] = values if key in lists or len(values) > 1 else values[0] if values else None
        return out
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(422, "invalid_request", f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ServiceError(422, "invalid_request", "the body must be a JSON object")
    return data


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise ServiceError(422, "invalid_request", message) from exc


def _json(answer: BaseModel) -> Response:
    return Response(answer.model_dump_json(exclude_none=True).encode(), media_type="application/json")


def build_router(service: TranslationService) -> APIRouter:
    router = APIRouter()

    async def translate(request: Request, items: list[TranslateItem], admitted: float) -> list[Translation]:
        """The shared middle of both APIs: the service's translations, the outcome kept for the access log."""
        outcome = await unless_disconnected(request, service.translate(TranslateRequest(items=items), admitted))
        request.scope.setdefault("state", {})["outcome"] = outcome
        return outcome.response.translations

    @router.post(
        DEEPL,
        response_model=DeepLResponse,
        response_model_exclude_none=True,
        responses=_DEEPL_ERRORS,
        openapi_extra=_form_schema(DeepLRequest),
        tags=["DeepL-compatible"],
        summary="Translate texts (DeepL API v2)",
    )
    async def deepl_translate(request: Request) -> Response:
        admitted = time.monotonic()
        body: DeepLRequest = _validate(DeepLRequest, await _fields(request, frozenset({"text"})))
        items = [TranslateItem(text=t, src=body.source_lang, tgt=body.target_lang) for t in body.text]
        done = await translate(request, items, admitted)
        return _json(
            DeepLResponse(
                translations=[
                    DeepLTranslation(
                        detected_source_language=t.src.upper(),
                        text=t.translation,
                        billed_characters=len(text) if body.show_billed_characters else None,
                    )
                    for t, text in zip(done, body.text, strict=True)
                ]
            )
        )

    @router.post(
        LIBRE,
        response_model=LibreResponse,
        response_model_exclude_none=True,
        responses=_LIBRE_ERRORS,
        openapi_extra=_form_schema(LibreRequest),
        tags=["LibreTranslate-compatible"],
        summary="Translate text (LibreTranslate API)",
    )
    async def libre_translate(request: Request) -> Response:
        admitted = time.monotonic()
        data = await _fields(request, frozenset())
        state = request.scope.setdefault("state", {})
        if state.get("caller") is None:  # keys on and none in a header: the key is the body's `api_key`
            client = request.scope.get("client")
            key = data.get("api_key")
            state["caller"] = await service.identify(
                request.headers.get("authorization"),
                request.headers.get("x-api-key"),
                client[0] if client else None,
                request.headers.get("x-forwarded-for"),
                body_key=key if isinstance(key, str) else "",
            )
        body: LibreRequest = _validate(LibreRequest, data)
        if body.format != "text":
            raise ServiceError(422, "unsupported_format", "only `format: text` is supported (no HTML handling)")
        texts = [body.q] if isinstance(body.q, str) else body.q
        src = None if body.source.lower() == "auto" else body.source
        items = [TranslateItem(text=t, src=src, tgt=body.target) for t in texts]
        done = await translate(request, items, admitted)
        # redtrans's detector gives no score: a detected language is reported with confidence 100.
        detected = [LibreDetected(confidence=100.0, language=t.src) for t in done] if src is None else None
        alternatives: list[list[str]] | None = [[] for _ in done] if body.alternatives else None
        if isinstance(body.q, str):
            answer = LibreResponse(
                translatedText=done[0].translation,
                detectedLanguage=detected[0] if detected else None,
                alternatives=alternatives[0] if alternatives else None,
            )
        else:
            answer = LibreResponse(
                translatedText=[t.translation for t in done], detectedLanguage=detected, alternatives=alternatives
            )
        return _json(answer)

    @router.get(
        "/languages",
        response_model=list[LibreLanguage],
        responses=_LIBRE_ERRORS,
        tags=["LibreTranslate-compatible"],
        summary="Supported languages (LibreTranslate API)",
    )
    async def languages() -> list[LibreLanguage]:
        codes = list(LANGUAGES)
        return [LibreLanguage(code=c, name=LANGUAGES[c].name, targets=[t for t in codes if t != c]) for c in codes]

    return router

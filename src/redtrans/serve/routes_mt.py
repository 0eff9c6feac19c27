"""MT-API-compatible routes, so plugins and tools written for DeepL or LibreTranslate translate with redtrans
unchanged (the official `deepl` and `libretranslatepy` clients included):

- DeepL: `POST /v2/translate` (with `tag_handling` html/xml and `ignore_tags`), `GET|POST /v2/languages`,
  `GET|POST /v2/usage`; glossary routes answer DeepL's 404 "not supported" (the term base is ours).
- LibreTranslate: `POST /translate` (with `format: html`), `POST /detect`, `GET|POST /languages`; `zt` is
  Traditional Chinese, as in LibreTranslate installs.

Both take JSON or form-encoded bodies (the only routes that accept forms: their clients send them; forms are
UTF-8, invalid bytes are 400), use their own language codes (DeepL: `EN-US`, `ZH-HANT`, …; LibreTranslate:
`en`, `zt`, `auto`) and their own auth (DeepL: `Authorization: DeepL-Auth-Key KEY`; LibreTranslate: the
`api_key` field), and answer errors in their own shape (`conventions.render`). Underneath they are
`/v1/translate`: the same service, keys, rate limits, cache, budgets and metrics. A text without a usable
translation is 422 `no_translation` for the request (never a 200 with a refusal in it).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from redtrans.languages import LANGUAGES
from redtrans.serve.conventions import KEY_HOW
from redtrans.serve.errors import ServiceError, invalid_json_hint
from redtrans.serve.markup import TagHandling
from redtrans.serve.protocol import TranslateItem, TranslateRequest, Translation
from redtrans.serve.protocol_compat import (
    DEEPL_REFUSED,
    DeepLError,
    DeepLLanguage,
    DeepLRequest,
    DeepLResponse,
    DeepLTranslation,
    DeepLUsage,
    LibreDetected,
    LibreDetectRequest,
    LibreError,
    LibreLanguage,
    LibreRequest,
    LibreResponse,
    error_responses,
)
from redtrans.serve.service import TranslationService
from redtrans.serve.watch import translate_for
from redtrans.text.langid import detect_language

DEEPL = "/v2/translate"
LIBRE = "/translate"
LIBRE_DETECT = "/detect"
FORM_PATHS = frozenset({DEEPL, LIBRE, LIBRE_DETECT, "/v2/languages", "/v2/usage", "/languages"})
"""Routes that accept form-encoded bodies (everything else is JSON only when keys are off)."""
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
BODY_KEY_PATHS = frozenset({LIBRE, LIBRE_DETECT})
"""LibreTranslate routes whose key may come in the body's `api_key` field (checked by the route)."""

TRADITIONAL = "zt"
"""LibreTranslate's code for Traditional Chinese (Argos Translate's)."""

_DEEPL_ERRORS = error_responses(
    DeepLError,
    {
        400: "Bad request (wrong parameters, unknown language, an unsupported field)",
        403: "Missing or invalid key (`Authorization: DeepL-Auth-Key KEY`)",
        404: "Not supported here (glossaries)",
        413: "Request too large",
        422: "No usable translation (`no_translation`)",
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
        422: "No usable translation (`no_translation`)",
        429: "Slow down; see Retry-After",
        504: "Deadline exceeded",
    },
)
GLOSSARY_MESSAGE = (
    "glossaries are not supported by this server: redtrans keeps slang and meme terms in its own term base "
    "(docs/serve.md)"
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


def _bad_encoding(exc: UnicodeDecodeError) -> ServiceError:
    return ServiceError(
        400,
        "invalid_encoding",
        f"the form is not UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} at {exc.start})",
    )


def _urlencoded(raw: bytes) -> list[tuple[str, str]]:
    """A urlencoded body as UTF-8 — raw bytes and %-escapes alike (what DeepL and LibreTranslate do; Starlette
    reads raw bytes as Latin-1)."""
    try:
        return urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise _bad_encoding(exc) from None


def _multipart(raw: bytes, content_type: str) -> list[tuple[str, str]]:
    """The text fields of a multipart body, each decoded as UTF-8 (a part's own charset is not honoured;
    files are skipped)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServiceError(400, "invalid_request", "multipart body without a boundary")
    fields: list[tuple[bytes, bytes, bool]] = []  # name, value, is a file
    current: dict[str, Any] = {}

    def on_part_begin() -> None:
        current.clear()
        current.update(header=b"", headers=[], data=bytearray(), field=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["header"] += data[start:end]

    def on_header_end() -> None:
        current["headers"].append((current["field"].lower(), current["header"]))
        current["field"], current["header"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current["data"] += data[start:end]

    def on_part_end() -> None:
        disposition = dict(current["headers"]).get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        fields.append((options.get(b"name", b""), bytes(current["data"]), b"filename" in options))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(raw)
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 - python-multipart's parse errors have no common base
        raise ServiceError(400, "invalid_request", f"invalid multipart body: {exc}") from None
    try:
        return [(name.decode("utf-8"), value.decode("utf-8")) for name, value, is_file in fields if not is_file]
    except UnicodeDecodeError as exc:
        raise _bad_encoding(exc) from None


async def fields(request: Request, lists: frozenset[str]) -> dict[str, Any]:
    """The body (and query) as a mapping: JSON, or a UTF-8 form (fields in `lists` are always lists; others
    repeated are lists). Query parameters fill fields the body does not have (GET routes, curl -G)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    pairs: list[tuple[str, str]] = list(request.query_params.multi_items())
    data: dict[str, Any] = {}
    if media in FORM_TYPES or (not raw.strip() and request.method == "GET"):
        if media == "multipart/form-data":
            pairs += _multipart(raw, request.headers["content-type"])
        elif raw.strip():
            pairs += _urlencoded(raw)
    else:
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ServiceError(422, "invalid_request", f"the body is not JSON: {exc}{invalid_json_hint(raw)}") from exc
        if not isinstance(parsed, dict):
            raise ServiceError(422, "invalid_request", "the body must be a JSON object")
        data = parsed
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    for key, values in grouped.items():
        if key not in data:
            data[key] = values if key in lists or len(values) > 1 else values[0]
    return data


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise ServiceError(422, "invalid_request", message) from exc


def _json(answer: BaseModel | list[Any]) -> Response:
    if isinstance(answer, list):
        data = json.dumps([a.model_dump(exclude_none=True) for a in answer], ensure_ascii=False).encode()
    else:
        data = answer.model_dump_json(exclude_none=True).encode()
    return Response(data, media_type="application/json")


def _libre_code(code: str) -> str:
    """A LibreTranslate code as a language tag (`zt` → `zh-Hant`)."""
    return "zh-Hant" if code.lower() == TRADITIONAL else code


def _deepl_languages(kind: str) -> list[DeepLLanguage]:
    names = {code: lang.name for code, lang in LANGUAGES.items()}
    if kind != "target":
        return [DeepLLanguage(language=code.upper(), name=name) for code, name in names.items()]
    regional = {
        "en": [("EN-GB", "English (British)"), ("EN-US", "English (American)")],
        "pt": [("PT-BR", "Portuguese (Brazilian)"), ("PT-PT", "Portuguese (European)")],
        "zh": [("ZH", "Chinese"), ("ZH-HANS", "Chinese (simplified)"), ("ZH-HANT", "Chinese (traditional)")],
    }
    out: list[DeepLLanguage] = []
    for code, name in names.items():
        for tag, label in regional.get(code, [(code.upper(), name)]):
            out.append(DeepLLanguage(language=tag, name=label, supports_formality=False))
    return out


def build_router(service: TranslationService) -> APIRouter:
    router = APIRouter()

    async def translate(
        request: Request, items: list[TranslateItem], admitted: float, markup: TagHandling | None = None
    ) -> list[Translation]:
        """The shared middle of both APIs: the service's translations, the outcome kept for the access log."""
        outcome = await translate_for(request, service, TranslateRequest(items=items), admitted, markup=markup)
        return outcome.response.translations

    async def body_key_caller(request: Request, data: dict[str, Any]) -> None:
        """LibreTranslate: with keys on and none in a header, the key is the body's `api_key` (checked here,
        after the body was read within `max_body_bytes` and `body_timeout_s`)."""
        state = request.scope.setdefault("state", {})
        if state.get("caller") is not None:
            return
        client = request.scope.get("client")
        key = data.get("api_key")
        state["caller"] = await service.identify(
            request.headers.get("authorization"),
            request.headers.get("x-api-key"),
            client[0] if client else None,
            request.headers.get("x-forwarded-for"),
            body_key=key if isinstance(key, str) else "",
            how=KEY_HOW["libretranslate"],
        )

    # -- DeepL ------------------------------------------------------------------------------------------------
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
        data = await fields(request, frozenset({"text", "ignore_tags", "glossary_ids"}))
        for name in DEEPL_REFUSED:
            if data.get(name) not in (None, "", []):
                raise ServiceError(
                    400, "unsupported_field", f"`{name}` is not supported by this server; send the request without it"
                )
        body: DeepLRequest = _validate(DeepLRequest, data)
        markup = TagHandling(body.tag_handling, tuple(body.ignore_tags)) if body.tag_handling else None
        items = [TranslateItem(text=t, src=body.source_lang, tgt=body.target_lang) for t in body.text]
        done = await translate(request, items, admitted, markup)
        service.count_characters(request.scope.get("state", {}).get("caller", "-"), sum(len(t) for t in body.text))
        return _json(
            DeepLResponse(
                translations=[
                    DeepLTranslation(
                        detected_source_language=t.src.upper(),
                        text=t.text,
                        billed_characters=len(text) if body.show_billed_characters else None,
                    )
                    for t, text in zip(done, body.text, strict=True)
                ]
            )
        )

    @router.post("/v2/languages", include_in_schema=False)
    @router.get(
        "/v2/languages",
        response_model=list[DeepLLanguage],
        response_model_exclude_none=True,
        responses=_DEEPL_ERRORS,
        tags=["DeepL-compatible"],
        summary="Source or target languages (`type=source|target`, DeepL API v2)",
    )
    async def deepl_languages(request: Request) -> Response:
        data = await fields(request, frozenset())
        kind = str(data.get("type") or "source").lower()
        if kind not in ("source", "target"):
            raise ServiceError(422, "invalid_request", "`type` must be `source` or `target`")
        return _json(_deepl_languages(kind))

    @router.post("/v2/usage", include_in_schema=False)
    @router.get(
        "/v2/usage",
        response_model=DeepLUsage,
        response_model_exclude_none=True,
        responses=_DEEPL_ERRORS,
        tags=["DeepL-compatible"],
        summary="Characters translated for this key by this process (no limit: DeepL API v2 usage)",
    )
    async def deepl_usage(request: Request) -> Response:
        caller = request.scope.get("state", {}).get("caller", "-")
        return _json(DeepLUsage(character_count=service.characters.get(caller, 0)))

    @router.api_route(
        "/v2/glossaries{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    @router.api_route(
        "/v3/glossaries{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    @router.api_route("/v2/glossary-language-pairs", methods=["GET"], include_in_schema=False)
    async def deepl_glossaries(request: Request) -> Response:
        raise ServiceError(404, "not_supported", GLOSSARY_MESSAGE)

    # -- LibreTranslate ---------------------------------------------------------------------------------------
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
        data = await fields(request, frozenset())
        await body_key_caller(request, data)
        body: LibreRequest = _validate(LibreRequest, data)
        texts = [body.q] if isinstance(body.q, str) else body.q
        src = None if body.source.lower() == "auto" else _libre_code(body.source)
        tgt = _libre_code(body.target)
        items = [TranslateItem(text=t, src=src, tgt=tgt) for t in texts]
        markup = TagHandling("html") if body.format == "html" else None
        done = await translate(request, items, admitted, markup)
        # redtrans's detector gives no score: a detected language is reported with confidence 100.
        detected = [LibreDetected(confidence=100.0, language=t.src) for t in done] if src is None else None
        alternatives: list[list[str]] | None = [[] for _ in done] if body.alternatives else None
        if isinstance(body.q, str):
            answer = LibreResponse(
                translatedText=done[0].text,
                detectedLanguage=detected[0] if detected else None,
                alternatives=alternatives[0] if alternatives else None,
            )
        else:
            answer = LibreResponse(
                translatedText=[t.text for t in done], detectedLanguage=detected, alternatives=alternatives
            )
        return _json(answer)

    @router.post(
        LIBRE_DETECT,
        response_model=list[LibreDetected],
        responses=_LIBRE_ERRORS,
        openapi_extra=_form_schema(LibreDetectRequest),
        tags=["LibreTranslate-compatible"],
        summary="Detect the language of a text (LibreTranslate API)",
    )
    async def libre_detect(request: Request) -> Response:
        data = await fields(request, frozenset())
        await body_key_caller(request, data)
        body: LibreDetectRequest = _validate(LibreDetectRequest, data)
        service.check_text(body.q)
        found = detect_language(body.q, list(LANGUAGES))
        return _json([LibreDetected(confidence=100.0, language=found)] if found else [])

    @router.post("/languages", include_in_schema=False)
    @router.get(
        "/languages",
        response_model=list[LibreLanguage],
        responses=_LIBRE_ERRORS,
        tags=["LibreTranslate-compatible"],
        summary="Supported languages (LibreTranslate API; no key needed, as in LibreTranslate)",
    )
    async def languages() -> Response:
        codes = [*LANGUAGES, TRADITIONAL]
        names = {c: lang.name for c, lang in LANGUAGES.items()} | {TRADITIONAL: "Chinese (traditional)"}
        return _json([LibreLanguage(code=c, name=names[c], targets=[t for t in codes if t != c]) for c in codes])

    return router

"""HTTP routes over the TranslationService (FastAPI): parsing and response shaping, nothing else.

The native API (`/v1/translate`) and the probes live here; the client-compatible APIs have their own routers
(`routes_openai`: OpenAI chat completions; `routes_mt`: DeepL and LibreTranslate) over the same service, and
`docs` serves Swagger UI and ReDoc from an installed package. Cross-cutting work is middleware and exception
handlers, as in vLLM's entrypoints: `GuardMiddleware` (pure ASGI, outermost) checks the API key before a body
is read, limits and times the body, and writes the metrics and the access log line of every translate route;
every error, raised anywhere, reaches a client as JSON in the convention of the API it called
(`conventions.render`: ours, OpenAI's, DeepL's or LibreTranslate's) through the exception handlers
(`ServiceError`, request validation, 404/405, and anything unexpected as 500).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from redtrans.engines.base import Engine
from redtrans.serve import routes_mt, routes_openai
from redtrans.serve.config import ServeConfig
from redtrans.serve.conventions import KEY_HOW, convention, render
from redtrans.serve.docs import DOCS, OAUTH2_REDIRECT, REDOC, STATIC, install_docs
from redtrans.serve.errors import ServiceError, invalid_json_hint
from redtrans.serve.logging import fields
from redtrans.serve.protocol import ErrorResponse, Health, TranslateRequest, TranslateResponse
from redtrans.serve.service import TranslationService
from redtrans.serve.watch import translate_for

log = logging.getLogger("redtrans.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRANSLATE = "/v1/translate"
TRANSLATE_ROUTES = {
    TRANSLATE: "translate",
    routes_openai.CHAT: "openai",
    routes_openai.COMPLETIONS: "openai",
    routes_openai.RESPONSES: "openai",
    routes_mt.DEEPL: "deepl",
    routes_mt.LIBRE: "libretranslate",
}
"""Routes that translate, by API: metrics and the access log count them."""
CHARGED_ROUTES = frozenset({*TRANSLATE_ROUTES, routes_mt.LIBRE_DETECT})
"""Routes whose caller is identified and charged a rate-limit token before the body is read (LibreTranslate's
key may be in the body: then its route does it)."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "Missing or invalid API key",
        413: "Body larger than max_body_bytes, or over the request's segment / model-call budget",
        422: "Invalid request (code says which rule: too_many_items, text_too_long, unknown_language, …)",
        429: "Rate limited or overloaded; see Retry-After",
        502: "The engine failed",
        503: "The model is not loaded yet, or the service is shutting down",
        504: "Deadline exceeded",
    }.items()
}


SUPPORTED_ROUTES = {
    "openai": ", ".join(routes_openai.ROUTES) + " (stored completions and responses are not kept)",
    "deepl": f"POST {routes_mt.DEEPL}, GET|POST /v2/languages, GET|POST /v2/usage (glossaries, documents, "
    "rephrasing, style rules and translation memories are not supported)",
}
"""What a 404/405 under an API's prefix names, so a client learns what it can call."""


def error_response(exc: ServiceError, path: str = TRANSLATE) -> Response:
    """`exc` as JSON in the convention of the API `path` belongs to."""
    return render(exc, path)


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/health", "/languages"})
"""Probes (vLLM's `/health` too) and LibreTranslate's language list: always answered (no key, any Host), they
reveal nothing (LibreTranslate serves `/languages` without a key; its client sends one on a GET body)."""
OPS_PATHS = frozenset({"/metrics", DOCS, OAUTH2_REDIRECT, REDOC, "/openapi.json", "/version"})
"""Need a key when keys are on, unless `open_ops` (and so do the docs' assets under `/docs/static/`)."""


def _is_ops(path: str) -> bool:
    return path in OPS_PATHS or path.startswith(STATIC + "/")


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class GuardMiddleware:
    """Pure ASGI middleware in front of the routes. Before a body is read: the Host allow-list and JSON-only
    bodies of an open (keyless) service, the API key (every route but the probes, and the ops routes unless
    `open_ops`), the rate limit, the body limit (413 before it is read into memory). While it is read: the body
    timeout (408). After: the metrics and access log of translate requests."""

    def __init__(self, app: ASGIApp, service: TranslationService) -> None:
        self.app = app
        self.service = service
        self.config = service.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = _state(scope)
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, sending, state)
        except ServiceError as exc:
            state["error"] = exc.code
            if status == 0:  # nothing sent yet
                await error_response(exc, scope["path"])(scope, receive, sending)
        route = TRANSLATE_ROUTES.get(scope["path"])
        if route is not None and scope["method"] == "POST":
            self._account(route, scope["path"], state, status, time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        path = scope["path"]
        service, config = self.service, self.config
        keys_on = service.auth.enabled
        client = scope.get("client")
        peer = client[0] if client else None
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if not keys_on and not service.hosts.allows(headers.get("host")):
            raise ServiceError(
                421,
                "host_not_allowed",
                "this Host is not served: add it to allowed_hosts (or configure API keys) to serve it",
            )
        authorization, api_key = headers.get("authorization"), headers.get("x-api-key")
        forwarded = headers.get("x-forwarded-for")
        how = KEY_HOW[convention(path)]
        body_key_route = (
            path in routes_mt.BODY_KEY_PATHS and keys_on and not service.auth.presented_key(authorization, api_key)
        )
        if path in CHARGED_ROUTES and scope["method"] == "POST":
            if not body_key_route:  # else LibreTranslate's `api_key` field is checked by its route
                state["caller"] = await service.identify(authorization, api_key, peer, forwarded, how=how)
        elif keys_on and not (config.open_ops and _is_ops(path)):
            state["caller"] = service.authenticate(authorization, api_key, peer, forwarded, how=how)
        else:
            state["caller"] = f"client:{service.clients.resolve(peer, forwarded) or 'unknown'}"
        if scope["method"] in _BODY_METHODS and not keys_on:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            forms = path in routes_mt.FORM_PATHS and media in routes_mt.FORM_TYPES
            if media != "application/json" and not forms:
                raise ServiceError(
                    415, "unsupported_media_type", "send the body as JSON with `Content-Type: application/json`"
                )
        limit = config.max_body_bytes
        message = f"the request body is larger than {limit} bytes; send fewer or shorter items"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise ServiceError(413, "body_too_large", message)
        seen = 0
        body_done = False
        body_deadline = time.monotonic() + config.body_timeout_s

        async def limited() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body: disconnect notices, no timeout
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, body_deadline - time.monotonic())):  # no task, unlike wait_for
                    msg = await receive()
            except TimeoutError:
                raise ServiceError(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {config.body_timeout_s:g} s",
                    headers={"Connection": "close"},  # the rest of the body is not waited for
                ) from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise ServiceError(413, "body_too_large", message)
                body_done = not msg.get("more_body", False)
            else:
                body_done = True
            return msg

        await self.app(scope, limited, send)

    def _account(self, route: str, path: str, state: dict[str, Any], status: int, seconds: float) -> None:
        metrics = self.service.metrics
        metrics.request(route, status).inc()
        metrics.latency.observe(seconds)
        if not self.config.access_log:
            return
        record: dict[str, Any] = {
            "method": "POST",
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 2),
            "caller": state.get("caller", "-"),
        }
        if state.get("error"):
            record["error"] = state["error"]
        outcome = state.get("outcome")
        if outcome is not None:
            record.update(
                items=outcome.items,
                cached=outcome.cached,
                engine_ms=round(outcome.engine_ms, 1),
                queue_ms=round(outcome.queue_ms, 1),
            )
            if outcome.texts:
                record["texts"] = outcome.texts
        log.info("request", extra=fields(**record))


def _describe(exc: ValidationError | RequestValidationError) -> str:
    errors = list(exc.errors())
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _install_error_handlers(app: FastAPI) -> None:
    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        _state(request.scope)["error"] = exc.code
        return error_response(exc, request.scope["path"])

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return await service_error(request, ServiceError(422, "invalid_request", _describe(exc)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code in (404, 405):  # name what the API the client speaks does answer here
            kind = convention(request.url.path)
            if kind in SUPPORTED_ROUTES:
                message = f"no route {request.method} {request.url.path}: this server answers {SUPPORTED_ROUTES[kind]}"
        return await service_error(request, ServiceError(exc.status_code, code, message, None, dict(exc.headers or {})))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc)
        return await service_error(
            request, ServiceError(500, "internal_error", "unexpected server error; it was logged")
        )

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The FastAPI app. `engine`: use this engine (not closed on shutdown) instead of building one."""
    service = TranslationService(config, engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="redtrans",
        summary="SNS-aware machine translation: posts, comments and titles with their emoji, hashtags and slang.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks look for a provider on every request; serve has Prometheus metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service

    async def translate(request: Request) -> Response:
        """Translate `items` (each `{text, tgt, src?}`), answered in order with flags and the source language."""
        started = time.perf_counter()
        admitted = time.monotonic()
        raw = await request.body()
        try:
            body = TranslateRequest.model_validate_json(raw)
        except ValidationError as exc:
            hint = invalid_json_hint(raw) if any(e["type"] == "json_invalid" for e in exc.errors()) else ""
            raise ServiceError(422, "invalid_request", _describe(exc) + hint) from exc
        outcome = await translate_for(request, service, body, admitted, partial=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return Response(
            outcome.response.model_dump_json().encode(),
            media_type="application/json",
            headers={
                "X-Engine-Ms": f"{outcome.engine_ms:.3f}",
                "X-Queue-Ms": f"{outcome.queue_ms:.3f}",
                "X-Service-Ms": f"{elapsed_ms:.3f}",
            },
        )

    # The busiest route is a plain Starlette route: it takes the raw request anyway, and FastAPI's per-request
    # dependency solving was a tenth of a cache hit's CPU. Its OpenAPI entry comes from `translate_doc`.
    app.router.add_route(TRANSLATE, translate, methods=["POST"], include_in_schema=False)
    translate_doc = APIRoute(
        TRANSLATE,
        translate,
        methods=["POST"],
        response_model=TranslateResponse,
        responses=_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TranslateRequest"}}},
            }
        },
        summary="Translate a batch of posts",
    )

    @app.get(
        "/healthz", response_model=Health, response_model_exclude_none=True, summary="Liveness: the process answers"
    )
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}}, summary="Readiness: model loaded")
    async def readyz() -> Response:
        if service.ready:
            body = Health(status="ready", model=service.model, engine=service.engine.name if service.engine else None)
            return JSONResponse(body.model_dump(exclude_none=True))
        detail = f"engine failed to load: {service.load_error}" if service.load_error else "loading the model"
        state = "failed" if service.load_error else "loading"
        return JSONResponse(Health(status=state, detail=detail).model_dump(exclude_none=True), 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        service.metrics.observe_breakers(service.engine)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [translate_doc, *app.routes]
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            request_schema = TranslateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(request_schema.pop("$defs", {}))
            components["TranslateRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(routes_openai.build_router(service))
    app.include_router(routes_mt.build_router(service))
    install_docs(app)
    _install_error_handlers(app)
    app.add_middleware(GuardMiddleware, service=service)
    return app

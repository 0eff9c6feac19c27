"""HTTP routes over the TranslationService: FastAPI, nothing but request parsing and response shaping."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from redtrans.engines.base import Engine
from redtrans.serve.config import ServeConfig
from redtrans.serve.protocol import ErrorResponse, Health, TranslateRequest, TranslateResponse
from redtrans.serve.service import ServiceError, TranslationService

log = logging.getLogger("redtrans.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "Missing or invalid API key",
        413: "Body larger than max_body_bytes",
        422: "Invalid request (code says which rule: too_many_items, text_too_long, unknown_language, …)",
        429: "Rate limited or overloaded; see Retry-After",
        502: "The engine failed",
        503: "The model is not loaded yet",
        504: "Deadline exceeded",
    }.items()
}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Response(body, status, headers=headers, media_type="application/json")


class BodyLimit:
    """Pure ASGI middleware: 413 for bodies over the limit, before they are read into memory."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.limit} bytes; send fewer or shorter items"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _error(413, "body_too_large", message)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(message)
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _error(413, "body_too_large", message)(scope, receive, send)


class _TooLarge(Exception):
    pass


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
    )
    app.state.service = service
    metrics = service.metrics
    access_log = config.access_log

    @app.post(
        "/v1/translate",
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
    async def translate(request: Request) -> Response:
        """Translate `items` (each `{text, tgt, src?}`), answered in order with flags and the source language."""
        started = time.perf_counter()
        who = "-"
        status = 200
        outcome = None
        code = None
        try:
            headers = request.headers
            client = request.client.host if request.client else None
            who = service.identify(headers.get("authorization"), headers.get("x-api-key"), client)
            raw = await request.body()
            try:
                body = TranslateRequest.model_validate_json(raw)
            except ValidationError as exc:
                raise ServiceError(422, "invalid_request", _describe(exc)) from exc
            outcome = await service.translate(body)
            elapsed_ms = (time.perf_counter() - started) * 1000
            response = Response(
                outcome.response.model_dump_json().encode(),
                media_type="application/json",
                headers={
                    "X-Engine-Ms": f"{outcome.engine_ms:.3f}",
                    "X-Queue-Ms": f"{outcome.queue_ms:.3f}",
                    "X-Service-Ms": f"{elapsed_ms:.3f}",
                },
            )
        except Exception as exc:  # noqa: BLE001 - never a bare 500 page: a JSON error and a log line
            if isinstance(exc, _TooLarge):
                exc = ServiceError(413, "body_too_large", str(exc))
            elif not isinstance(exc, ServiceError):
                log.exception("unexpected error")
                exc = ServiceError(500, "internal_error", "unexpected server error; it was logged")
            status, code = exc.status, exc.code
            response = Response(
                json.dumps(exc.body(), ensure_ascii=False).encode(),
                exc.status,
                headers=exc.headers,
                media_type="application/json",
            )
        seconds = time.perf_counter() - started
        metrics.requests.labels("translate", str(status)).inc()
        metrics.latency.observe(seconds)
        if access_log:
            fields: dict[str, Any] = {
                "method": "POST",
                "path": "/v1/translate",
                "status": status,
                "ms": round(seconds * 1000, 2),
                "caller": who,
            }
            if code:
                fields["error"] = code
            if outcome is not None:
                fields.update(
                    items=outcome.items,
                    cached=outcome.cached,
                    engine_ms=round(outcome.engine_ms, 1),
                    queue_ms=round(outcome.queue_ms, 1),
                )
                if outcome.texts:
                    fields["texts"] = outcome.texts
            log.info("request", extra={"fields": fields})
        return response

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
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            request_schema = TranslateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(request_schema.pop("$defs", {}))
            components["TranslateRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def run(config: ServeConfig, engine: Engine | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish the requests in flight (up to graceful_shutdown_s)."""
    import uvicorn

    from redtrans.serve.service import setup_logging

    setup_logging(config.log_level)
    app = create_app(config, engine)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=config.graceful_shutdown_s,
        timeout_keep_alive=config.keep_alive_s,
        server_header=False,
    )

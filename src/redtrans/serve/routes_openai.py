"""OpenAI-compatible routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`.

Any OpenAI client translates with redtrans by naming a direction as the model: `redtrans-zh-en`, `redtrans-en-zh`
(every `redtrans-SRC-TGT` of the language table, tags such as `redtrans-en-zh-Hant` too), `redtrans-TGT`
(source detected) or `redtrans` (source detected, its default target). The last `user` message is the post;
`extra_body={"redtrans": {"src", "tgt", "deadline_ms"}}` overrides the model name. The request goes through
the same service as `/v1/translate` (keys, rate limits, cache, budgets, metrics); errors are OpenAI error
objects (`conventions.render`). `stream: true` answers Server-Sent Events: the post is translated line by
line (the source detected once for the whole post), one chunk per line in order, each sent as soon as that
line (and every line before it) is translated, then the final chunk (`finish_reason: "stop"`, usage with
`stream_options.include_usage`), then `data: [DONE]`. An error before the first line has its HTTP status; one
after it is a `data: {"error": …}` event (the official client raises it) that ends the stream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import regex
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from redtrans import prompts
from redtrans.errors import LanguageError
from redtrans.languages import LANGUAGES, default_target, get_language
from redtrans.serve.conventions import openai_error
from redtrans.serve.errors import ServiceError
from redtrans.serve.protocol import TranslateItem, TranslateRequest, Translation
from redtrans.serve.protocol_compat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    OpenAIErrorResponse,
    RedtransInfo,
    Usage,
    error_responses,
)
from redtrans.serve.service import TranslationService
from redtrans.serve.watch import unless_disconnected
from redtrans.text.langid import detect_language

PREFIX = "redtrans"
CHAT = "/v1/chat/completions"
_UNITS = regex.compile(r"\p{Han}|[\p{L}\p{N}]+|[^\s\p{L}\p{N}]")
_ERRORS = error_responses(
    OpenAIErrorResponse,
    {
        401: "Missing or invalid API key (`Authorization: Bearer KEY`)",
        404: "Unknown model",
        413: "Body or budget too large",
        422: "Invalid request",
        429: "Rate limited or overloaded; see Retry-After",
        502: "The engine failed",
        503: "Not ready or shutting down",
        504: "Deadline exceeded",
    },
)


def model_ids() -> list[str]:
    """`redtrans`, the first-class directions, then every other pair of the language table."""
    first = [f"{PREFIX}-zh-en", f"{PREFIX}-en-zh"]
    pairs = [f"{PREFIX}-{s}-{t}" for s in sorted(LANGUAGES) for t in sorted(LANGUAGES) if s != t]
    return [PREFIX, *first, *(p for p in pairs if p not in first)]


def parse_model(name: str) -> tuple[str | None, str | None]:
    """(src, tgt) a model id names; None = detect (src) / the source's default target (tgt). 404 if unknown."""
    if name == PREFIX:
        return None, None
    rest = name[len(PREFIX) + 1 :] if name.startswith(PREFIX + "-") else ""
    for n, ch in enumerate(rest):
        if ch == "-" and rest[:n].lower() in LANGUAGES:
            try:
                get_language(rest[n + 1 :])
            except LanguageError:
                continue
            return rest[:n].lower(), rest[n + 1 :]
    if rest:
        try:
            get_language(rest)
            return None, rest
        except LanguageError:
            pass
    raise ServiceError(
        404,
        "model_not_found",
        f"the model {name!r} does not exist: use `redtrans`, `redtrans-SRC-TGT` (e.g. redtrans-zh-en) or "
        "`redtrans-TGT`; GET /v1/models lists them",
        param="model",
    )


def units(text: str) -> int:
    """Text units for `usage`: a Han character, a word or number, a symbol."""
    return len(_UNITS.findall(text))


def _post(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, list):
            content = "".join(p.text or "" for p in content if p.type == "text")
        if content and content.strip():
            return content
        break
    raise ServiceError(422, "invalid_request", "the last user message has no text to translate", param="messages")


def _describe(exc: ValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]]
    param = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else None
    return "; ".join(parts), param


def _sse(data: BaseModel | str) -> bytes:
    text = data if isinstance(data, str) else data.model_dump_json(exclude_none=True)
    return f"data: {text}\n\n".encode()


def build_router(service: TranslationService) -> APIRouter:
    router = APIRouter(tags=["OpenAI-compatible"])
    created = int(time.time())

    @router.get("/v1/models", response_model=ModelList, responses=_ERRORS, summary="Translation directions as models")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=m, created=created) for m in model_ids()])

    @router.get("/v1/models/{model}", response_model=ModelCard, responses=_ERRORS, summary="One model")
    async def get_model(model: str) -> ModelCard:
        parse_model(model)
        return ModelCard(id=model, created=created)

    @router.post(
        CHAT,
        response_model=ChatCompletion,
        responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE (stream)"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ChatCompletionRequest.model_json_schema()}},
            }
        },
        summary="Translate the last user message (OpenAI chat completions)",
    )
    async def chat_completions(request: Request) -> Response:
        admitted = time.monotonic()
        try:
            body = ChatCompletionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            message, param = _describe(exc)
            raise ServiceError(422, "invalid_request", message, param=param) from exc
        text = _post(body)
        src, tgt = parse_model(body.model)
        extra = body.redtrans
        deadline_ms = extra.deadline_ms if extra else None
        if extra is not None:
            src, tgt = extra.src or src, extra.tgt or tgt
        try:
            tgt = tgt or default_target(src or detect_language(text, list(LANGUAGES)))
        except LanguageError as exc:
            raise ServiceError(422, "unknown_language", str(exc), param="redtrans.src") from exc
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        fingerprint = f"{prompts.PROMPT_VERSION}/{service.model}"
        state: dict[str, Any] = request.scope.setdefault("state", {})
        if not body.stream:
            items = [TranslateItem(text=text, src=src, tgt=tgt)]
            outcome = await unless_disconnected(
                request, service.translate(TranslateRequest(items=items, deadline_ms=deadline_ms), admitted)
            )
            state["outcome"] = outcome
            t = outcome.response.translations[0]
            prompt_units, answer_units = (0, 0) if t.cached else (units(text), units(t.translation))
            answer = ChatCompletion(
                id=ident,
                created=now,
                model=body.model,
                choices=[Choice(message=AssistantMessage(content=t.translation))],
                usage=Usage(
                    prompt_tokens=prompt_units,
                    completion_tokens=answer_units,
                    total_tokens=prompt_units + answer_units,
                ),
                system_fingerprint=fingerprint,
                redtrans=RedtransInfo(src=t.src, tgt=t.tgt, detected=t.detected, flags=t.flags, cached=t.cached),
            )
            return Response(answer.model_dump_json().encode(), media_type="application/json")

        lines = await unless_disconnected(request, service.translate_lines(text, src, tgt, admitted, deadline_ms))
        stream = lines.translations
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        # The first line decides the status: an error before it (overloaded, deadline, engine) is answered as
        # an OpenAI error with its status; once the stream is open, an error is an `error` event that ends it.
        first: Translation | None = None
        if any(isinstance(part, int) for part in lines.parts):
            try:
                first = await unless_disconnected(request, anext(stream))
            except BaseException:
                await stream.aclose()
                raise

        def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None) -> bytes:
            choices = [] if usage is not None else [ChunkChoice(delta=delta, finish_reason=finish)]
            data = ChatCompletionChunk(
                id=ident, created=now, model=body.model, choices=choices, system_fingerprint=fingerprint, usage=usage
            )
            return _sse(data)

        async def events() -> AsyncIterator[bytes]:
            translations: list[Translation] = []
            try:
                yield chunk(Delta(role="assistant", content=""))
                spent = 0
                last = len(lines.parts) - 1
                for n, part in enumerate(lines.parts):
                    if isinstance(part, int):  # each line leaves as soon as it (and those before it) is done
                        t = first if first is not None and not translations else await anext(stream)
                        translations.append(t)
                        piece = t.translation
                        spent += 0 if t.cached else units(piece)
                    else:
                        piece = part
                    yield chunk(Delta(content=piece + ("\n" if n < last else "")))
                yield chunk(Delta(), "stop")
                if include_usage:
                    cached = all(t.cached for t in translations)
                    asked = 0 if cached else units(text)
                    usage = Usage(prompt_tokens=asked, completion_tokens=spent, total_tokens=asked + spent)
                    yield chunk(Delta(), usage=usage)
                yield _sse("[DONE]")
            except ServiceError as exc:
                state["error"] = exc.code
                yield _sse(json.dumps(openai_error(exc), ensure_ascii=False))
            finally:
                await stream.aclose()
                state["outcome"] = lines.tally.outcome(translations, service.model)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return router

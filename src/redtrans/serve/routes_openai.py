"""OpenAI-compatible routes: `GET /v1/models[/{id}]`, `POST /v1/chat/completions`, `POST /v1/completions` and
`POST /v1/responses`, plain and streamed, so the official `openai` client and its helpers (`chat.completions.
stream`, `responses.create`, `responses.stream`, …) translate with redtrans unchanged.

Any OpenAI client translates by naming a direction as the model: `redtrans-zh-en`, `redtrans-en-zh` (every
`redtrans-SRC-TGT` of the language table, tags such as `redtrans-en-zh-Hant` too), `redtrans-TGT` (source
detected) or `redtrans` (source detected, its default target). The post is the last `user` message (chat), the
`prompt` (completions; a list of prompts gives a choice each) or the last user input (responses); other
messages and `instructions` are ignored. `extra_body={"redtrans": {"src", "tgt", "deadline_ms"}}` overrides
the model name. Sampling options are ignored (the translator sets its own); fields that would change what the
answer means (`tools`, `response_format`, `logprobs`, `n > 1`, `echo`, …) are 400 naming the field, never
silently dropped. Errors are OpenAI error objects with OpenAI's statuses (a bad request is 400); a text the
engine answered without a usable translation is 422 `no_translation`.

Every route goes through the same service as `/v1/translate` (keys, rate limits, cache, budgets, metrics).
Streams translate the post line by line (the source detected once for the whole post), each line's piece sent
as soon as it and every line before it are done. The first line decides the status: an error before it is
an HTTP error; after it, the route's own streaming error (`data: {"error": …}` for chat and completions,
`response.failed` for responses) ends the stream, with no `[DONE]` / `response.completed`.

`usage` holds the model's token counts where the engine reports them (llama.cpp, the openai engine, hf); else
text units (a Han character, a word or number, a symbol); a cached answer costs 0.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import regex
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from redtrans import __version__, prompts
from redtrans.errors import LanguageError
from redtrans.languages import LANGUAGES, default_target, get_language
from redtrans.serve.conventions import openai_error
from redtrans.serve.errors import ServiceError, invalid_json_hint
from redtrans.serve.protocol import TranslateItem, TranslateRequest, Translation
from redtrans.serve.protocol_compat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionChoice,
    CompletionRequest,
    Delta,
    ModelCard,
    ModelList,
    OpenAIErrorResponse,
    RedtransInfo,
    RedtransOptions,
    ResponsesRequest,
    TextCompletion,
    Usage,
    error_responses,
    response_object,
)
from redtrans.serve.service import Lines, TranslationService
from redtrans.serve.watch import translate_for, unless_disconnected
from redtrans.text.langid import detect_language

PREFIX = "redtrans"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
ROUTES = (
    f"POST {CHAT}",
    f"POST {COMPLETIONS}",
    f"POST {RESPONSES}",
    "GET /v1/models",
    "GET /v1/models/{model}",
)
"""What a 404 under /v1 names (stored completions and responses are not kept: their routes are 404 too)."""
_UNITS = regex.compile(r"\p{Han}|[\p{L}\p{N}]+|[^\s\p{L}\p{N}]")
_ERRORS = error_responses(
    OpenAIErrorResponse,
    {
        400: "Invalid request, or a field that would change the answer's meaning and is not supported",
        401: "Missing or invalid API key (`Authorization: Bearer KEY`)",
        404: "Unknown model or route",
        413: "Body or budget too large",
        422: "No usable translation (`no_translation`)",
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
    """Text units for `usage` where the engine counts no tokens: a Han character, a word or number, a symbol."""
    return len(_UNITS.findall(text))


def usage_of(post: str, answers: list[Translation]) -> tuple[int, int]:
    """(prompt, completion) of a post's answers: the engine's token counts where it reports them, else text
    units; nothing for cached answers."""
    fresh = [t for t in answers if not t.cached]
    if not fresh:
        return 0, 0
    prompt, completion = sum(t.tokens[0] for t in fresh), sum(t.tokens[1] for t in fresh)
    if prompt or completion:
        return prompt, completion
    return units(post), sum(units(t.text) for t in fresh)


def _json_or_sse(request_model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI of a route that reads `request_model` as JSON and answers JSON or, with `stream`, SSE."""
    return {
        "responses": {**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE (stream)"}},
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_model.model_json_schema()}},
            }
        },
    }


def _describe(exc: ValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]]
    param = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else None
    return "; ".join(parts), param


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, param = _describe(exc)
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            message += invalid_json_hint(raw)
        raise ServiceError(422, "invalid_request", message, param=param) from exc


def _refuse(unsupported: list[tuple[str, str]]) -> None:
    """400 naming the first field that would change what the answer means."""
    if unsupported:
        field, why = unsupported[0]
        raise ServiceError(
            400, "unsupported_field", f"`{field}` is not supported by this translation server: {why}", param=field
        )


def _sse(data: BaseModel | dict[str, Any] | str, event: str | None = None) -> bytes:
    if isinstance(data, BaseModel):
        text = data.model_dump_json(exclude_none=True)
    elif isinstance(data, dict):
        text = json.dumps(data, ensure_ascii=False)
    else:
        text = data
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


@dataclass
class Ask:
    """One post to translate, from any of the routes."""

    text: str
    src: str | None
    tgt: str
    deadline_ms: int | None


def _ask(text: str, model: str, extra: RedtransOptions | None) -> Ask:
    src, tgt = parse_model(model)
    deadline_ms = extra.deadline_ms if extra else None
    if extra is not None:
        src, tgt = extra.src or src, extra.tgt or tgt
    try:
        tgt = tgt or default_target(src or detect_language(text, list(LANGUAGES)))
    except LanguageError as exc:
        raise ServiceError(422, "unknown_language", str(exc), param="redtrans.src") from exc
    return Ask(text, src, tgt, deadline_ms)


class StreamShape:
    """How a route writes its stream: the opening events, one piece of text, the end, the error."""

    def opening(self) -> list[bytes]:
        return []

    def piece(self, text: str) -> bytes:
        raise NotImplementedError

    def ending(self, text: str, usage: Usage, include_usage: bool) -> list[bytes]:
        raise NotImplementedError

    def failure(self, exc: ServiceError) -> bytes:
        return _sse(openai_error(exc))


def build_router(service: TranslationService) -> APIRouter:
    router = APIRouter(tags=["OpenAI-compatible"])
    created = int(time.time())

    def fingerprint() -> str:
        return f"{prompts.PROMPT_VERSION}/{service.model}"

    async def answer(request: Request, asks: list[Ask], admitted: float) -> list[Translation]:
        """The translations of `asks` (one request to the service), the outcome kept for the access log."""
        items = [TranslateItem(text=a.text, src=a.src, tgt=a.tgt) for a in asks]
        deadlines = [a.deadline_ms for a in asks if a.deadline_ms]
        body = TranslateRequest(items=items, deadline_ms=min(deadlines, default=None))
        outcome = await translate_for(request, service, body, admitted)
        return outcome.response.translations

    async def stream(request: Request, ask: Ask, admitted: float, shape: StreamShape, include_usage: bool) -> Response:
        lines: Lines = await unless_disconnected(
            request, service.translate_lines(ask.text, ask.src, ask.tgt, admitted, ask.deadline_ms)
        )
        pending = lines.translations
        state: dict[str, Any] = request.scope.setdefault("state", {})
        # The first line decides the status: an error before it (overloaded, deadline, engine, no translation)
        # is answered with its status; once the stream is open, an error is the route's error event.
        first: Translation | None = None
        if any(isinstance(part, int) for part in lines.parts):
            try:
                first = await unless_disconnected(request, anext(pending))
            except BaseException:
                await pending.aclose()
                raise

        async def events() -> AsyncIterator[bytes]:
            translations: list[Translation] = []
            try:
                for event in shape.opening():
                    yield event
                last = len(lines.parts) - 1
                pieces: list[str] = []
                for n, part in enumerate(lines.parts):
                    if isinstance(part, int):  # each line leaves as soon as it (and those before it) is done
                        t = first if first is not None and not translations else await anext(pending)
                        translations.append(t)
                        piece = t.text
                    else:
                        piece = part
                    pieces.append(piece + ("\n" if n < last else ""))
                    yield shape.piece(pieces[-1])
                prompt, completion = usage_of(ask.text, translations)
                usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
                for event in shape.ending("".join(pieces), usage, include_usage):
                    yield event
            except ServiceError as exc:
                state["error"] = exc.code
                yield shape.failure(exc)
            finally:
                await pending.aclose()
                state["outcome"] = lines.tally.outcome(translations, service.model)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- models -----------------------------------------------------------------------------------------------
    @router.get("/v1/models", response_model=ModelList, responses=_ERRORS, summary="Translation directions as models")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=m, created=created) for m in model_ids()])

    @router.get("/v1/models/{model}", response_model=ModelCard, responses=_ERRORS, summary="One model")
    async def get_model(model: str) -> ModelCard:
        parse_model(model)
        return ModelCard(id=model, created=created)

    # -- chat completions -------------------------------------------------------------------------------------
    @router.post(
        CHAT,
        response_model=ChatCompletion,
        **_json_or_sse(ChatCompletionRequest),
        summary="Translate the last user message (OpenAI chat completions)",
    )
    async def chat_completions(request: Request) -> Response:
        admitted = time.monotonic()
        body = _parse(ChatCompletionRequest, await request.body())
        _refuse(body.unsupported())
        ask = _ask(body.post(), body.model, body.redtrans)
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if body.stream:
            return await stream(
                request, ask, admitted, _ChatShape(ident, now, body.model, fingerprint()), body.include_usage()
            )
        (t,) = await answer(request, [ask], admitted)
        prompt, completion = usage_of(ask.text, [t])
        done = ChatCompletion(
            id=ident,
            created=now,
            model=body.model,
            choices=[Choice(message=AssistantMessage(content=t.text))],
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
            system_fingerprint=fingerprint(),
            redtrans=RedtransInfo(src=t.src, tgt=t.tgt, detected=t.detected, flags=t.flags, cached=t.cached),
        )
        return Response(done.model_dump_json().encode(), media_type="application/json")

    # -- completions ------------------------------------------------------------------------------------------
    @router.post(
        COMPLETIONS,
        response_model=TextCompletion,
        **_json_or_sse(CompletionRequest),
        summary="Translate the prompt (OpenAI completions; a list of prompts: a choice each)",
    )
    async def completions(request: Request) -> Response:
        admitted = time.monotonic()
        body = _parse(CompletionRequest, await request.body())
        _refuse(body.unsupported())
        prompts_in = body.prompts()
        ident = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if body.stream:
            if len(prompts_in) != 1:
                raise ServiceError(400, "unsupported_field", "streaming takes one prompt", param="prompt")
            ask = _ask(prompts_in[0], body.model, body.redtrans)
            shape = _CompletionShape(ident, now, body.model, fingerprint())
            return await stream(request, ask, admitted, shape, body.include_usage())
        asks = [_ask(text, body.model, body.redtrans) for text in prompts_in]
        done = await answer(request, asks, admitted)
        prompt = completion = 0
        for ask, t in zip(asks, done, strict=True):
            p, c = usage_of(ask.text, [t])
            prompt, completion = prompt + p, completion + c
        answer_ = TextCompletion(
            id=ident,
            created=now,
            model=body.model,
            choices=[CompletionChoice(index=n, text=t.text) for n, t in enumerate(done)],
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
            system_fingerprint=fingerprint(),
        )
        return Response(answer_.model_dump_json().encode(), media_type="application/json")

    # -- responses --------------------------------------------------------------------------------------------
    @router.post(
        RESPONSES,
        **_json_or_sse(ResponsesRequest),
        summary="Translate the last user input (OpenAI responses)",
    )
    async def responses(request: Request) -> Response:
        admitted = time.monotonic()
        body = _parse(ResponsesRequest, await request.body())
        _refuse(body.unsupported())
        model = body.model or PREFIX
        ask = _ask(body.post(), model, body.redtrans)
        ident = f"resp_{uuid.uuid4().hex}"
        message_id = f"msg_{uuid.uuid4().hex}"
        now = int(time.time())
        if body.stream:
            return await stream(request, ask, admitted, _ResponsesShape(ident, message_id, now, model), True)
        (t,) = await answer(request, [ask], admitted)
        prompt, completion = usage_of(ask.text, [t])
        data = response_object(ident, message_id, now, model, t.text, "completed", prompt, completion)
        data["redtrans"] = RedtransInfo(
            src=t.src, tgt=t.tgt, detected=t.detected, flags=t.flags, cached=t.cached
        ).model_dump()
        return Response(json.dumps(data, ensure_ascii=False).encode(), media_type="application/json")

    # -- vLLM's probes ----------------------------------------------------------------------------------------
    @router.get("/health", summary="200 when the model is loaded (vLLM's health probe), else 503", tags=["probes"])
    async def health() -> Response:
        return Response(status_code=200 if service.ready else 503)

    @router.get("/version", summary="The server's version (as vLLM has it)", tags=["probes"])
    async def version() -> dict[str, str]:
        return {"version": __version__}

    return router


class _ChatShape(StreamShape):
    def __init__(self, ident: str, created: int, model: str, fingerprint: str) -> None:
        self.ident, self.created, self.model, self.fingerprint = ident, created, model, fingerprint

    def chunk(self, delta: Delta, finish: str | None = None, usage: Usage | None = None) -> bytes:
        choices = [] if usage is not None else [ChunkChoice(delta=delta, finish_reason=finish)]
        return _sse(
            ChatCompletionChunk(
                id=self.ident,
                created=self.created,
                model=self.model,
                choices=choices,
                system_fingerprint=self.fingerprint,
                usage=usage,
            )
        )

    def opening(self) -> list[bytes]:
        return [self.chunk(Delta(role="assistant", content=""))]

    def piece(self, text: str) -> bytes:
        return self.chunk(Delta(content=text))

    def ending(self, text: str, usage: Usage, include_usage: bool) -> list[bytes]:
        events = [self.chunk(Delta(), "stop")]
        if include_usage:
            events.append(self.chunk(Delta(), usage=usage))
        return [*events, _sse("[DONE]")]


class _CompletionShape(StreamShape):
    def __init__(self, ident: str, created: int, model: str, fingerprint: str) -> None:
        self.ident, self.created, self.model, self.fingerprint = ident, created, model, fingerprint

    def chunk(self, text: str, finish: str | None = None, usage: Usage | None = None) -> bytes:
        choices = [] if usage is not None else [CompletionChoice(text=text, finish_reason=finish)]
        data = TextCompletion(
            id=self.ident,
            created=self.created,
            model=self.model,
            choices=choices,
            system_fingerprint=self.fingerprint,
            usage=usage,
        )
        return _sse(data)

    def piece(self, text: str) -> bytes:
        return self.chunk(text)

    def ending(self, text: str, usage: Usage, include_usage: bool) -> list[bytes]:
        events = [self.chunk("", "stop")]
        if include_usage:
            events.append(self.chunk("", usage=usage))
        return [*events, _sse("[DONE]")]


class _ResponsesShape(StreamShape):
    """The Responses API's event sequence (what the SDK's `responses.stream` helper accumulates)."""

    def __init__(self, ident: str, message_id: str, created: int, model: str) -> None:
        self.ident, self.message_id, self.created, self.model = ident, message_id, created, model
        self.sequence = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return _sse(data, kind)

    def snapshot(self, status: str, text: str | None = None, usage: Usage | None = None) -> dict[str, Any]:
        prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        data = response_object(self.ident, self.message_id, self.created, self.model, text, status, prompt, completion)
        if usage is None:
            data["usage"] = None
        return data

    def message(self, status: str, text: str) -> dict[str, Any]:
        return {**_message(self.message_id, status), "content": [_text_part(text)]}

    def opening(self) -> list[bytes]:
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        return [
            self.event("response.created", response=self.snapshot("in_progress")),
            self.event("response.in_progress", response=self.snapshot("in_progress")),
            self.event("response.output_item.added", output_index=0, item=_message(self.message_id, "in_progress")),
            self.event("response.content_part.added", **where, part=_text_part("")),
        ]

    def piece(self, text: str) -> bytes:
        return self.event(
            "response.output_text.delta",
            item_id=self.message_id,
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def ending(self, text: str, usage: Usage, include_usage: bool) -> list[bytes]:
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        return [
            self.event("response.output_text.done", **where, text=text, logprobs=[]),
            self.event("response.content_part.done", **where, part=_text_part(text)),
            self.event("response.output_item.done", output_index=0, item=self.message("completed", text)),
            self.event("response.completed", response=self.snapshot("completed", text, usage)),
        ]

    def failure(self, exc: ServiceError) -> bytes:
        data = self.snapshot("failed")
        data["error"] = {"code": exc.code, "message": exc.message}
        return self.event("response.failed", response=data)


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(ident: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": ident, "status": status, "role": "assistant", "content": []}

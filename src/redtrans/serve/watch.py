"""Work done for a client only while the client is there: a request whose client closed the connection is
cancelled at once, so its batch's waiters drop to zero and the batch stops (its engine calls are given up,
`Engine.generate_until`) instead of holding a worker until the request's deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from redtrans.serve.errors import ServiceError
from redtrans.serve.markup import TagHandling
from redtrans.serve.protocol import TranslateRequest
from redtrans.serve.service import Outcome, TranslationService

T = TypeVar("T")

POLL_S = 0.25
"""How often a waiting request looks for its client's disconnect."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; cancel it and raise ServiceError(499) as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise ServiceError(499, "client_closed_request", "the client closed the connection")
    finally:
        if not task.done():
            task.cancel()


async def translate_for(
    request: Request,
    service: TranslationService,
    body: TranslateRequest,
    admitted: float,
    *,
    partial: bool = False,
    markup: TagHandling | None = None,
) -> Outcome:
    """`service.translate(body)` for this request's client: answered at once when every text is in memory (no
    task, no disconnect watch: nothing is left to cancel), else translated while the client is there."""
    outcome = service.translate_from_memory(body, markup)
    if outcome is None:
        outcome = await unless_disconnected(request, service.translate(body, admitted, partial, markup))
    request.scope.setdefault("state", {})["outcome"] = outcome
    return outcome

"""Deterministic stand-ins for faults a real model or server cannot be made to produce on demand: engines,
and an OpenAI-compatible upstream on loopback (`StandInUpstream`)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import regex

from redtrans.engines.base import Engine, GenRequest, GenResult


class PseudoTranslator(Engine):
    """'Translates' zh→en by replacing each Han character with 'w' and en→zh by replacing each Latin word
    with '字', keeping markers — or dropping them when `drop_markers` is set, to exercise re-insertion."""

    name = "pseudo"
    model = "pseudo"

    def __init__(self, drop_markers: bool = False, preamble: str = "") -> None:
        self.drop_markers = drop_markers
        self.preamble = preamble
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.requests.extend(requests)
        results = []
        for request in requests:
            assert request.messages is not None
            text = request.messages[-1]["content"]
            system = request.messages[0]["content"]
            if "Translate this" in text:  # strict retry framing: the post is after the blank line
                text = text.split("\n\n", 1)[1]
            to_english = "to English" in system
            out = regex.sub(r"\p{Han}", "w", text) if to_english else regex.sub(r"[A-Za-z]+", "字", text)
            if self.drop_markers:
                out = regex.sub(r"⟨\d+⟩", "", out)
            results.append(GenResult(self.preamble + out))
        return results


class SlotPseudoTranslator(PseudoTranslator):
    """The same, submitting requests one by one to a pool, as the llama.cpp engine does with its slots."""

    supports_submit = True
    parallelism = 3

    def __init__(self, drop_markers: bool = False, preamble: str = "") -> None:
        super().__init__(drop_markers, preamble)
        self._pool = ThreadPoolExecutor(self.parallelism)

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        return self._pool.submit(lambda: self.generate([request])[0])


class LeakyTranslator(PseudoTranslator):
    """Leaves source text in its first answer, as small models do ("The奶茶 here…" into English, English
    echoed into Chinese); a grammar-constrained request or the strict retry prompt gets a clean answer."""

    supports_grammar = True

    def __init__(self, empty_under_grammar: bool = False) -> None:
        super().__init__()
        self.empty_under_grammar = empty_under_grammar

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results = super().generate(requests)
        for request, result in zip(requests, results, strict=True):
            text = request.messages[-1]["content"]
            if request.grammar is not None and self.empty_under_grammar:
                result.text = ""
            elif request.grammar is None and "Translate this" not in text:
                # Into English the first two Han characters stay; into Chinese the English comes back as is.
                han = regex.findall(r"\p{Han}", text)
                result.text = "".join(han[:2]) + result.text[2:] if han else text
        return results


@dataclass
class Reply:
    """What the stand-in upstream answers to one call."""

    status: int = 200
    body: Any = None
    """A dict (sent as JSON), bytes (sent as is), or None for an OpenAI completion echoing the request."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a slow or hung upstream)."""


class StandInUpstream:
    """An OpenAI-compatible upstream on a loopback port, for faults a real server does not produce on demand
    (429 with Retry-After, 5xx, hangs, answers without `choices`). HTTP/1.1 with keep-alive, one thread per
    connection; it counts calls and the TCP connections it accepted, and records when each call came.

    `behave(call_index, body) -> Reply` decides each answer; by default a chat/text completion whose text is
    ``echo: <last user message or prompt>``. A GET (the openai engine's liveness check of `/models`) goes through
    `behave` too, with index -1 and the body ``{"GET": path}``, and is counted in `gets`, not `calls`; by default
    it answers a model list.
    """

    def __init__(self, behave: Callable[[int, dict[str, Any]], Reply] | None = None) -> None:
        self.behave = behave or (lambda index, body: Reply())
        self.calls = 0
        self.gets = 0
        self.connections = 0
        self.call_times: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with upstream._lock:
                    upstream.connections += 1

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with upstream._lock:
                    index = upstream.calls
                    upstream.calls += 1
                    upstream.call_times.append(time.monotonic())
                    upstream.bodies.append(body)
                    upstream.headers.append(dict(self.headers))
                reply = upstream.behave(index, body)
                if reply.delay:
                    time.sleep(reply.delay)
                self._answer(reply, reply.body if reply.body is not None else completion(body))

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with upstream._lock:
                    upstream.gets += 1
                reply = upstream.behave(-1, {"GET": self.path})
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if reply.body is not None else {"object": "list", "data": [{"id": "standin"}]}
                self._answer(reply, payload)

            def _answer(self, reply: Reply, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout): nothing to answer
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256  # a real server's listen backlog (http.server's 5 drops bursts of connects)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandInUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def completion(body: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    """An OpenAI completion answering `body`: chat when it has messages, else a text completion."""
    if text is None:
        source = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
        text = f"echo: {source}"
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if "messages" in body:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    return {"id": "cmpl-standin", "object": "chat.completion", "choices": [choice], "usage": usage}

"""The OpenAI-compatible engine against a stand-in upstream on loopback (real HTTP, real sockets): one pooled
client for the engine's life, Retry-After, deadlines, and answers that are not completions."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import threading
import time

import pytest

from redtrans.engines import EngineError, GenRequest
from redtrans.engines.base import openai_body
from redtrans.engines.openai import OpenAIConfig, OpenAIEngine, _retry_after
from tests.stand_ins import Reply, StandInUpstream


def _chat(text: str, **kwargs: object) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": text}], **kwargs)  # type: ignore[arg-type]


def _engine(*urls: str, **fields: object) -> OpenAIEngine:
    return OpenAIEngine(OpenAIConfig(base_urls=list(urls), **fields))  # type: ignore[arg-type]


@pytest.fixture(params=["aiohttp", "httpx"])
def http_client(request: pytest.FixtureRequest) -> str:
    """Both HTTP clients the engine can use (aiohttp is preferred when installed)."""
    if request.param == "aiohttp":
        pytest.importorskip("aiohttp")
    return str(request.param)


def test_one_pooled_client_serves_every_batch_from_any_thread_or_loop(http_client: str) -> None:
    with StandInUpstream() as upstream:
        engine = _engine(upstream.url, concurrency=2, http_client=http_client)
        try:
            for batch in range(3):
                results = engine.generate([_chat(f"b{batch} r{i}") for i in range(4)])
                assert [r.text for r in results] == [f"echo: b{batch} r{i}" for i in range(4)]
            # agenerate from other event loops (each asyncio.run is a new loop) and sync calls from threads.
            for batch in range(2):
                results = asyncio.run(engine.agenerate([_chat(f"async {batch} {i}") for i in range(4)]))
                assert [r.text for r in results] == [f"echo: async {batch} {i}" for i in range(4)]
            threads = [threading.Thread(target=engine.generate, args=([_chat(f"t{i}")],)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert upstream.calls == 12 + 8 + 4
            assert upstream.connections <= 2  # kept alive across batches, loops and threads
            assert upstream.bodies[0]["model"] == "default" and upstream.bodies[0]["max_tokens"] == 256
        finally:
            engine.close()
        started = time.monotonic()
        engine.close()  # twice is harmless
        assert time.monotonic() - started < 0.5
        with pytest.raises(EngineError, match="closed"):
            engine.generate([_chat("late")])


def test_retry_after_in_seconds_and_as_a_date_is_honoured() -> None:
    def behave(index: int, body: dict) -> Reply:
        if index == 0:
            return Reply(429, {"error": "slow down"}, {"Retry-After": "1"})
        if index == 1:  # an HTTP date 3 s ahead: at least 2 s once cut to whole seconds
            return Reply(503, b"busy", {"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)})
        return Reply()

    with StandInUpstream(behave) as upstream:
        engine = _engine(upstream.url, backoff_s=0.0, max_retries=3)
        try:
            [result] = engine.generate([_chat("hi")])
        finally:
            engine.close()
    assert result.text == "echo: hi" and result.finish_reason == "stop"
    first, second, third = upstream.call_times
    assert second - first >= 0.95
    assert third - second >= 1.9


def test_retry_after_is_capped(http_client: str) -> None:
    script = {0: Reply(429, {"error": "come back in an hour"}, {"Retry-After": "3600"})}
    with StandInUpstream(lambda index, body: script.get(index, Reply())) as upstream:
        engine = _engine(upstream.url, backoff_s=0.0, retry_after_cap_s=0.3, http_client=http_client)
        try:
            [result] = engine.generate([_chat("hi")])
        finally:
            engine.close()
    assert result.text == "echo: hi"
    gap = upstream.call_times[1] - upstream.call_times[0]
    assert 0.28 <= gap < 2.0


def test_an_endpoint_that_asks_to_wait_is_skipped_while_another_serves() -> None:
    busy = StandInUpstream(lambda index, body: Reply(429, {"error": "busy"}, {"Retry-After": "60"}))
    with busy, StandInUpstream() as free:
        engine = _engine(busy.url, free.url, backoff_s=0.0, concurrency=1)
        try:
            started = time.monotonic()
            results = engine.generate([_chat(f"r{i}") for i in range(6)])
            assert time.monotonic() - started < 3
        finally:
            engine.close()
    assert [r.text for r in results] == [f"echo: r{i}" for i in range(6)]
    assert busy.calls == 1 and free.calls == 6


def test_the_deadline_bounds_timeouts_retries_and_retry_after(http_client: str) -> None:
    with StandInUpstream(lambda index, body: Reply(delay=3.0)) as hung:
        engine = _engine(hung.url, timeout_s=120, max_retries=3, backoff_s=0.01, http_client=http_client)
        try:
            started = time.monotonic()
            [result] = engine.generate([_chat("x", deadline=time.monotonic() + 0.5)])
            elapsed = time.monotonic() - started
        finally:
            engine.close()
    assert result.finish_reason == "error" and "deadline" in (result.error or ""), result.error
    assert 0.4 <= elapsed < 1.2

    # A Retry-After that ends past the deadline: give up now, not at the deadline, and send nothing more.
    with StandInUpstream(lambda index, body: Reply(503, {"error": "x"}, {"Retry-After": "10"})) as busy:
        engine = _engine(busy.url, max_retries=3, http_client=http_client)
        try:
            started = time.monotonic()
            [result] = engine.generate([_chat("x", deadline=time.monotonic() + 2.0)])
            elapsed = time.monotonic() - started
            # A deadline already past: nothing is sent.
            [late] = engine.generate([_chat("y", deadline=time.monotonic() - 1)])
        finally:
            engine.close()
    assert result.finish_reason == "error" and "HTTP 503" in (result.error or "") and elapsed < 0.5
    assert late.finish_reason == "error" and "deadline" in (late.error or "")
    assert busy.calls == 1


def test_an_answer_that_is_not_a_completion_fails_only_its_request(http_client: str) -> None:
    def behave(index: int, body: dict) -> Reply:
        content = body["messages"][-1]["content"]
        if content == "no choices":
            return Reply(200, {"object": "error", "message": "oops"})
        if content == "not json":
            return Reply(200, b"<html>proxy error</html>")
        if content == "choices of the wrong shape":
            return Reply(200, {"choices": [{"message": {"content": 42}}]})
        return Reply()

    with StandInUpstream(behave) as upstream:
        engine = _engine(upstream.url, http_client=http_client)
        try:
            results = engine.generate(
                [_chat(t) for t in ("fine", "no choices", "not json", "choices of the wrong shape")]
            )
        finally:
            engine.close()
    ok, no_choices, not_json, wrong = results
    assert ok.text == "echo: fine" and ok.finish_reason == "stop" and ok.prompt_tokens == 5
    assert no_choices.finish_reason == "error" and "no `choices`" in (no_choices.error or "")
    assert not_json.finish_reason == "error" and "not JSON" in (not_json.error or "")
    assert wrong.finish_reason == "error" and "not a string" in (wrong.error or "")
    assert upstream.calls == 4  # answers of the wrong shape are not retried


def test_close_is_bounded_with_a_request_in_flight(http_client: str) -> None:
    with StandInUpstream(lambda index, body: Reply(delay=30.0)) as hung:
        engine = _engine(hung.url, timeout_s=120, http_client=http_client)
        outcome: list[object] = []

        def call() -> None:
            try:
                outcome.append(engine.generate([_chat("x")]))
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcome.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        while hung.calls == 0:
            time.sleep(0.01)
        started = time.monotonic()
        engine.close()
        assert time.monotonic() - started < 6
        thread.join(6)
        assert outcome and not isinstance(outcome[0], list)  # the caller is released, not left hanging


def test_request_bodies_come_from_one_place() -> None:
    chat = openai_body(_chat("hi", max_tokens=7, seed=3, stop=["\n"]), model="m")
    assert chat == {"model": "m", "max_tokens": 7, "temperature": 0.0, "seed": 3, "stop": ["\n"],
                    "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    completion = openai_body(GenRequest(prompt="1, 2,", grammar="root ::= [0-9]"))
    assert completion == {"max_tokens": 256, "temperature": 0.0, "grammar": "root ::= [0-9]", "prompt": "1, 2,"}
    with pytest.raises(EngineError, match="grammar_field"):
        openai_body(GenRequest(prompt="x", grammar="root ::= x"), grammar_field=None)
    assert _retry_after("2.5") == 2.5 and _retry_after("soon") is None and _retry_after(None) is None
    assert 0 <= (_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True)) or -1) <= 30


def test_many_requests_in_flight_spread_over_small_pools() -> None:
    """With httpx, at concurrency 40 an endpoint's connections are spread over clients of at most 16 (httpcore
    walks its whole pool per request); every request is answered, and no more connections open than requests
    fly."""
    from redtrans.engines.openai import SHARD_CONNECTIONS

    with StandInUpstream(lambda index, body: Reply(delay=0.05)) as upstream:
        engine = _engine(upstream.url, concurrency=40, http_client="httpx")
        try:
            assert [len(c) for c in engine._transport.clients.values()] == [-(-40 // SHARD_CONNECTIONS)]  # type: ignore[attr-defined]
            for batch in range(2):
                results = engine.generate([_chat(f"{batch}-{i}") for i in range(120)])
                assert [r.text for r in results] == [f"echo: {batch}-{i}" for i in range(120)]
        finally:
            engine.close()
    assert upstream.calls == 240 and upstream.connections <= 40


def test_event_hooks_see_every_request_on_the_wire() -> None:
    seen: list[str] = []

    async def sent(request: object) -> None:
        seen.append(str(getattr(request, "url", "")))

    with StandInUpstream() as upstream:
        engine = OpenAIEngine(OpenAIConfig(base_urls=[upstream.url]), event_hooks={"request": [sent]})
        try:
            engine.generate([_chat("a"), GenRequest(prompt="b")])
        finally:
            engine.close()
    assert sorted(seen) == [upstream.url + "/chat/completions", upstream.url + "/completions"]


def test_transport_failures_are_named_alike_by_both_clients(http_client: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens: connection refused
    engine = _engine(dead, max_retries=0, http_client=http_client)
    with StandInUpstream(lambda index, body: Reply(delay=2.0)) as slow:
        slow_engine = _engine(slow.url, max_retries=0, timeout_s=0.2, http_client=http_client)
        try:
            [refused] = engine.generate([_chat("x")])
            [late] = slow_engine.generate([_chat("x")])
        finally:
            engine.close()
            slow_engine.close()
    assert refused.finish_reason == "error" and "ConnectError" in (refused.error or ""), refused.error
    assert late.finish_reason == "error" and "ReadTimeout" in (late.error or ""), late.error

"""The OpenAI-compatible engine's circuit breaker per endpoint, against stand-in upstreams on loopback that
fail or hang (faults a real server does not produce on demand)."""

from __future__ import annotations

import asyncio
import threading
import time

from redtrans.engines import GenRequest
from redtrans.engines.openai import BREAKER_STATES, OpenAIConfig, OpenAIEngine
from tests.stand_ins import Reply, StandInUpstream


def _chat(text: str, **kwargs: object) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": text}], **kwargs)  # type: ignore[arg-type]


def _engine(*urls: str, **fields: object) -> OpenAIEngine:
    return OpenAIEngine(OpenAIConfig(base_urls=list(urls), **fields))  # type: ignore[arg-type]


def _failing(index: int, body: dict) -> Reply:
    return Reply(500, {"error": "upstream broke"})


def test_an_open_endpoint_gets_no_requests_while_another_serves() -> None:
    with StandInUpstream(_failing) as broken, StandInUpstream() as healthy:
        engine = _engine(broken.url, healthy.url, concurrency=1, breaker_failures=2, breaker_cooldown_s=60,
                         backoff_s=0.0)  # fmt: skip
        try:
            results = engine.generate([_chat(f"r{i}") for i in range(10)])
            states = engine.breaker_states()
        finally:
            engine.close()
    assert [r.text for r in results] == [f"echo: r{i}" for i in range(10)]
    assert broken.calls == 2  # then open: the other endpoint takes everything
    assert states == {broken.url: "open", healthy.url: "closed"}
    assert [BREAKER_STATES.index(s) for s in states.values()] == [2, 0]


def test_every_endpoint_open_fails_fast_then_a_probe_closes_the_breaker() -> None:
    broken = threading.Event()
    broken.set()

    def behave(index: int, body: dict) -> Reply:
        return _failing(index, body) if broken.is_set() else Reply()

    with StandInUpstream(behave) as upstream:
        engine = _engine(upstream.url, breaker_failures=2, breaker_cooldown_s=0.4, backoff_s=0.0, max_retries=3)
        try:
            [first] = engine.generate([_chat("a")])
            assert first.finish_reason == "error" and "circuit open" in (first.error or "")
            assert "HTTP 500" in (first.error or "")  # the failure that opened it is named
            assert upstream.calls == 2
            assert engine.breaker_states() == {upstream.url: "open"}
            started = time.monotonic()
            results = engine.generate([_chat(f"fast {i}") for i in range(20)])
            assert time.monotonic() - started < 0.2  # nothing waits on an upstream that is down
            assert all(r.finish_reason == "error" and "circuit open" in (r.error or "") for r in results)
            assert upstream.calls == 2
            # After the cooldown one request probes; a failed probe opens the breaker again.
            time.sleep(0.45)
            [probe] = engine.generate([_chat("probe 1")])
            assert probe.finish_reason == "error" and upstream.calls == 3
            assert engine.breaker_states() == {upstream.url: "open"}
            # The upstream recovers: the next probe succeeds and closes the breaker (while a probe is in flight,
            # other requests still fail fast: half-open admits one).
            broken.clear()
            time.sleep(0.45)
            probe, during = engine.generate([_chat("probe 2"), _chat("during the probe")])
            assert probe.text == "echo: probe 2" and "circuit open" in (during.error or "")
            results = engine.generate([_chat(f"ok {i}") for i in range(4)])
            assert [r.text for r in results] == [f"echo: ok {i}" for i in range(4)]
            assert engine.breaker_states() == {upstream.url: "closed"}
        finally:
            engine.close()


def test_healthy_answers_resume_soon_after_a_hung_upstream_recovers() -> None:
    """The upstream hangs for 6 s (what it accepted meanwhile never answers) and then recovers. Requests arrive
    every 50 ms, each with a 4 s deadline, which bounds each attempt (the timeout is 120 s). Every request
    ends by its deadline, and healthy answers resume about one cooldown after the recovery. Without the
    breaker they resumed only when the requests hung at the recovery reached their deadlines (about 2.5 s)."""
    hang_s, deadline_s, recovered_at = 6.0, 4.0, [0.0]
    started = time.monotonic()

    def behave(index: int, body: dict) -> Reply:
        if time.monotonic() - started < hang_s:
            return Reply(delay=30.0)
        return Reply()

    with StandInUpstream(behave) as upstream:
        recovered_at[0] = started + hang_s
        engine = _engine(upstream.url, concurrency=4, timeout_s=120, max_retries=3, backoff_s=0.05,
                         breaker_failures=3, breaker_cooldown_s=0.5)  # fmt: skip
        outcomes: list[tuple[float, float, str]] = []  # (sent, done, finish_reason)

        async def one(i: int) -> None:
            sent = time.monotonic()
            [result] = await engine.agenerate([_chat(f"r{i}", deadline=sent + deadline_s)])
            outcomes.append((sent, time.monotonic(), result.finish_reason))

        async def drive() -> None:
            tasks = []
            for i in range(int((hang_s + 2.5) / 0.05)):
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0.05)
            await asyncio.gather(*tasks)

        try:
            asyncio.run(drive())
            calls_while_hung = sum(1 for t in upstream.call_times if t < recovered_at[0])
        finally:
            engine.close()
    assert all(done - sent < deadline_s + 0.2 for sent, done, _ in outcomes)  # no request outlives its deadline
    first_ok = min(done for sent, done, reason in outcomes if reason == "stop" and sent >= recovered_at[0])
    assert first_ok - recovered_at[0] < 5.0
    assert first_ok - recovered_at[0] < 1.5  # about one cooldown, in fact
    later = [reason for sent, _, reason in outcomes if sent >= recovered_at[0] + 1.0]
    assert later and all(reason == "stop" for reason in later)
    assert calls_while_hung < 20  # 120 requests arrived during the hang: most failed fast on the open breaker


def test_breaker_states_hide_credentials() -> None:
    with StandInUpstream() as upstream:
        url = upstream.url.replace("http://", "http://user:secret@")
        engine = _engine(url)
        try:
            [result] = engine.generate([_chat("hi")])
            assert result.text == "echo: hi"
            assert engine.breaker_states() == {upstream.url.replace("http://", "http://***@"): "closed"}
            assert "secret" not in str(engine.describe())
        finally:
            engine.close()


def test_a_hang_opens_the_breaker_and_cuts_the_calls_waiting_on_it() -> None:
    """Issue 32 item 5. The upstream hangs for 4 s (what it accepted meanwhile, a liveness check of /models
    included, never answers in time) and then recovers. Requests arrive every 100 ms with an 8 s deadline.
    Nothing times out within the hang, so only the watchdog can tell: calls waiting `breaker_stall_s` on an
    endpoint that answers nothing get a liveness check, its silence opens the breaker, and the calls in flight
    are cut — their requests end within stall + cooldown + a little, not at their deadlines — and the first
    request after the recovery is served within a cooldown + 1 s, as after a hang of any length."""
    hang_s, deadline_s, cooldown_s, stall_s = 4.0, 8.0, 0.5, 0.3
    started = time.monotonic()

    def behave(index: int, body: dict) -> Reply:
        if time.monotonic() - started < hang_s:
            return Reply(delay=30.0)
        return Reply()

    with StandInUpstream(behave) as upstream:
        recovered_at = started + hang_s
        engine = _engine(upstream.url, concurrency=4, breaker_failures=3, breaker_cooldown_s=cooldown_s,
                         breaker_stall_s=stall_s, backoff_s=0.05)  # fmt: skip
        outcomes: list[tuple[float, float, str]] = []  # (sent, done, finish_reason)

        async def one(i: int) -> None:
            sent = time.monotonic()
            [result] = await engine.agenerate([_chat(f"r{i}", deadline=sent + deadline_s)])
            outcomes.append((sent, time.monotonic(), result.finish_reason))

        async def drive() -> None:
            tasks = []
            for i in range(int((hang_s + 2.0) / 0.1)):
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0.1)
            await asyncio.gather(*tasks)

        try:
            asyncio.run(drive())
        finally:
            engine.close()
    during = [(sent, done) for sent, done, _ in outcomes if sent < recovered_at - 1.5]
    assert during and max(done - sent for sent, done in during) < stall_s + cooldown_s + 1.5
    first_ok = min(done for sent, done, reason in outcomes if reason == "stop" and sent >= recovered_at)
    assert first_ok - recovered_at < cooldown_s + 1.0
    assert upstream.gets >= 1  # the liveness checks

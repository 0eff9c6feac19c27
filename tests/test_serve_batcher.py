"""The request batcher on its own (no FastAPI, no engine) and the serve settings' sources."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from redtrans.errors import ConfigError
from redtrans.serve.batcher import Batcher, CancelCheck, DeadlineExceeded, Done, QueueFull, Unit
from redtrans.serve.config import ServeConfig, load_config


class Recorder:
    """A batch function that upper-cases, optionally slowly, polling the cancel check between keys."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[list[str]] = []
        self.done_keys: list[str] = []
        self.cancelled_batches = 0

    async def __call__(
        self, index: int, units: list[Unit[str, str]], cancelled: CancelCheck
    ) -> Mapping[str, Done[str]]:
        self.batches.append([u.key for u in units])
        started = time.monotonic()
        out: dict[str, Done[str]] = {}
        for unit in units:
            if cancelled():
                self.cancelled_batches += 1
                break
            await asyncio.sleep(self.delay)
            self.done_keys.append(unit.key)
            out[unit.key] = Done(unit.payload.upper(), started)
        return out


def run(coro_fn):  # noqa: ANN001, ANN201
    return asyncio.run(coro_fn())


def test_groups_concurrent_submits_into_one_batch_and_shares_keys() -> None:
    async def body() -> None:
        fn = Recorder()
        b: Batcher[str, str] = Batcher(fn, max_queue=8, max_batch_items=8, batch_wait_ms=50)
        b.start(1)
        far = time.monotonic() + 5
        r1, r2, r3 = await asyncio.gather(
            b.submit({"a": "a", "b": "b"}, far), b.submit({"b": "b", "c": "c"}, far), b.submit({"a": "a"}, far)
        )
        assert {k: d.value for k, d in r1.items()} == {"a": "A", "b": "B"}
        assert r2["c"].value == "C" and r3["a"].value == "A"
        assert fn.batches == [["a", "b", "c"]]  # one batch, each key once
        assert b.in_flight == {} and not b.pending
        await b.stop()

    run(body)


def test_queue_full_deadline_and_cancelled_queued_work() -> None:
    async def body() -> None:
        fn = Recorder(delay=0.3)
        b: Batcher[str, str] = Batcher(fn, max_queue=1, max_batch_items=1)
        b.start(1)
        far = time.monotonic() + 5
        first = asyncio.create_task(b.submit({"x": "x"}, far))
        await asyncio.sleep(0.05)  # taken by the worker
        queued = asyncio.create_task(b.submit({"y": "y"}, time.monotonic() + 0.1))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await b.submit({"z": "z"}, far)
        with pytest.raises(DeadlineExceeded):
            await queued
        assert not b.pending and "y" not in b.in_flight  # its slot is free at once
        assert (await first)["x"].value == "X"
        await asyncio.sleep(0.4)
        assert "y" not in fn.done_keys  # never worked on
        await b.stop()

    run(body)


def test_a_started_batch_is_told_when_nobody_waits() -> None:
    async def body() -> None:
        fn = Recorder(delay=0.1)
        b: Batcher[str, str] = Batcher(fn, max_queue=4, max_batch_items=50)
        b.start(1)
        payloads = {f"k{n}": f"k{n}" for n in range(20)}
        with pytest.raises(DeadlineExceeded):
            await b.submit(payloads, time.monotonic() + 0.25)
        await asyncio.sleep(0.3)
        assert fn.cancelled_batches == 1 and len(fn.done_keys) <= 4  # stopped, not 20 keys × 0.1 s
        await b.stop()

    run(body)


def test_drain_answers_waiters_and_refuses_new_work() -> None:
    async def body() -> None:
        b: Batcher[str, str] = Batcher(Recorder(delay=5), max_queue=4, max_batch_items=1)
        b.start(1)
        waiting = asyncio.create_task(b.submit({"a": "a"}, time.monotonic() + 30))
        await asyncio.sleep(0.05)
        b.drain("shutting down")
        result = await asyncio.wait_for(waiting, 1)
        assert result["a"].value is None and result["a"].error == "shutting down"
        await b.stop()

    run(body)


# -- settings -------------------------------------------------------------------------------------------------
def test_settings_come_from_yaml_env_and_options_in_that_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml_file = tmp_path / "serve.yaml"
    yaml_file.write_text("port: 9000\nmax_queue: 5\nmax_items: 7\n")
    monkeypatch.setenv("REDTRANS_SERVE_MAX_QUEUE", "6")
    monkeypatch.setenv("REDTRANS_SERVE_ENGINE_OPTIONS", '{"timeout_s": 9}')
    config = load_config(yaml_file, max_items=8, port=None)
    assert (config.port, config.max_queue, config.max_items) == (9000, 6, 8)
    spec = config.engine_spec()
    assert spec.options == {"timeout_s": 9} and spec.parallel == 4
    monkeypatch.setenv("REDTRANS_SERVE_MAX_QUEUE", "lots")
    with pytest.raises(ConfigError, match=r"\$REDTRANS_SERVE_MAX_QUEUE: max_queue"):
        load_config(yaml_file)
    monkeypatch.delenv("REDTRANS_SERVE_MAX_QUEUE")
    yaml_file.write_text("max_items: 0\n")
    with pytest.raises(ConfigError, match=r"serve\.yaml: max_items: .*greater than or equal to 1"):
        load_config(yaml_file)
    with pytest.raises(ConfigError, match="served_model"):
        ServeConfig(served_model="x", model="qwen2.5-coder-0.5b")
    with pytest.raises(ConfigError, match="log_level"):
        ServeConfig(log_level="loud")
    assert ServeConfig(log_level="DEBUG").log_level == "debug"
    assert "sha256 hex digest" in (ServeConfig.model_fields["api_keys"].description or "")


def test_metrics_export_each_upstream_circuit_breaker() -> None:
    from prometheus_client import generate_latest

    from redtrans.engines import create_engine
    from redtrans.serve.metrics import Metrics

    metrics = Metrics()
    with create_engine(model="http://user:secret@127.0.0.1:9/v1,http://127.0.0.1:10/v1") as engine:
        metrics.observe_breakers(engine)
    text = generate_latest(metrics.registry).decode()
    assert 'redtrans_upstream_breaker_state{endpoint="http://127.0.0.1:10/v1"} 0.0' in text
    assert "secret" not in text


def test_each_hands_out_keys_in_order_as_the_batch_settles_them() -> None:
    """A batch function that settles each key when it is done: `each` gives the first key to its caller while
    the batch is still working on the second, and the batch's own mapping does not overwrite it."""

    async def body() -> None:
        batcher: Batcher[str, str]

        async def settle_as_done(index: int, units: list[Unit[str, str]], cancelled: CancelCheck) -> dict:
            started = time.monotonic()
            for unit in units:
                await asyncio.sleep(0.3)
                batcher.settle(unit, Done(unit.payload.upper(), started))
            return {u.key: Done("late", started) for u in units}

        batcher = Batcher(settle_as_done, max_queue=8, max_batch_items=8)
        batcher.start(1)
        began = time.monotonic()
        seen: list[tuple[str, str | None, float]] = []
        async for key, done in batcher.each({"a": "a", "b": "b"}, began + 5):
            seen.append((key, done.value, time.monotonic() - began))
        assert [(k, v) for k, v, _ in seen] == [("a", "A"), ("b", "B")]
        assert seen[1][2] - seen[0][2] > 0.2  # "a" came out before "b" was done
        assert batcher.in_flight == {}

        # A caller that stops listening lets go: the batch sees nobody waits for the rest.
        stream = batcher.each({"c": "c", "d": "d", "e": "e"}, time.monotonic() + 5)
        assert (await anext(stream))[0] == "c"
        await stream.aclose()
        assert all(u.waiters == 0 for u in batcher.in_flight.values())
        await batcher.stop()

    run(body)

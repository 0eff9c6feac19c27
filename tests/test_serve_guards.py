"""Issue 11, serving: nothing unbounded, no door left open. Real uvicorn on loopback (the service's own
`build_server`), real sockets; test doubles only for a slow/hung engine and a Redis that never answers."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve import ToyEngine, request_target, toy_translate

from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.serve.config import ServeConfig, hash_key
from redtrans.serve.logging import fields, redact, setup_logging
from redtrans.serve.server import build_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(tmp_path: Path, **overrides: Any) -> ServeConfig:
    settings: dict[str, Any] = {"cache": "none", "access_log": False, "port": _free_port()}
    settings.update(overrides)
    return ServeConfig(**settings)


@contextmanager
def live(config: ServeConfig, engine: Engine | None) -> Iterator[tuple[str, Any]]:
    """`redtrans serve`'s uvicorn server on 127.0.0.1 in a thread; yields (base URL, server)."""
    server = build_server(config, engine)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.02)
        assert server.started
        yield base, server
    finally:
        server.should_exit = True
        thread.join(30)


class HangingEngine(Engine):
    """Blocks in `generate` until released (a hung upstream)."""

    name = "hang"
    model = "hang-1"

    def __init__(self) -> None:
        self.release = threading.Event()

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.release.wait(60)
        return [GenResult(toy_translate(*request_target(r))) for r in requests]


# -- budgets and cancellation ---------------------------------------------------------------------------------
def test_budgets_give_413_before_any_model_call(tmp_path: Path) -> None:
    engine = ToyEngine()
    with live(config_for(tmp_path, max_model_calls=10), engine) as (base, _):
        lines = "\n".join(f"第{n}行" for n in range(201))
        r = httpx.post(f"{base}/v1/translate", json={"items": [{"text": lines, "tgt": "en"}]})
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "too_many_segments" and r.json()["error"]["item"] == 0
        six = "\n".join(f"第{n}行" for n in range(6))
        items = [{"text": six, "tgt": "en"}, {"text": six + "\n再来", "tgt": "en"}]
        r = httpx.post(f"{base}/v1/translate", json={"items": items})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_model_calls"
        assert "13" in r.json()["error"]["message"] and "10" in r.json()["error"]["message"]
        assert engine.calls == 0
        ok = httpx.post(f"{base}/v1/translate", json={"items": [{"text": six, "tgt": "en"}]})
        assert ok.status_code == 200
    assert ServeConfig().max_segments_per_item == 200 and ServeConfig().max_model_calls == 1000


def test_a_started_batch_stops_when_its_request_is_past_its_deadline(tmp_path: Path) -> None:
    engine = ToyEngine(delay=0.1)
    engine.parallelism = 1  # the guard hands the engine at most 4 requests per call
    with live(config_for(tmp_path), engine) as (base, server):
        text = "\n".join(f"这是第{n}行评论" for n in range(100))
        r = httpx.post(f"{base}/v1/translate", json={"items": [{"text": text, "tgt": "en"}], "deadline_ms": 300})
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        time.sleep(0.8)
        done = len(engine.texts)
        assert done < 40, done  # not all 100 lines: the batch stopped between model calls
        time.sleep(0.3)
        assert len(engine.texts) == done
        assert server.service.batcher.in_flight == {}
        metrics = httpx.get(f"{base}/metrics").text
        assert 'redtrans_cancelled_total{where="batch"} 1.0' in metrics


# -- shutdown ---------------------------------------------------------------------------------------------------
def test_shutdown_with_a_hung_engine_is_bounded_and_answers_json(tmp_path: Path) -> None:
    engine = HangingEngine()
    config = config_for(tmp_path, graceful_shutdown_s=1.5)
    server = build_server(config, engine)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.02)
        result: dict[str, Any] = {}

        def client() -> None:
            result["r"] = httpx.post(
                f"{base}/v1/translate", json={"items": [{"text": "晚安", "tgt": "en"}]}, timeout=30
            )

        caller = threading.Thread(target=client)
        caller.start()
        time.sleep(0.3)
        stopping = time.monotonic()
        server.should_exit = True
        caller.join(10)
        r = result["r"]
        assert r.status_code == 503 and r.headers["content-type"] == "application/json", r.text
        assert r.json()["error"]["code"] == "shutting_down"
        thread.join(15)
        assert not thread.is_alive()
        assert time.monotonic() - stopping <= config.graceful_shutdown_s + 5
    finally:
        engine.release.set()


# -- doors ------------------------------------------------------------------------------------------------------
def test_keys_cover_ops_routes_unless_opened(tmp_path: Path) -> None:
    keys = {"ops": hash_key("k1")}
    with live(config_for(tmp_path, api_keys=keys), ToyEngine()) as (base, _):
        for path in ("/metrics", "/docs", "/openapi.json", "/nowhere"):
            r = httpx.get(base + path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key", path
            assert httpx.get(base + path, headers={"X-API-Key": "k1"}).status_code in (200, 404)
        assert httpx.get(f"{base}/nowhere", headers={"X-API-Key": "k1"}).json()["error"]["code"] == "not_found"
        assert httpx.get(f"{base}/healthz").status_code == 200 and httpx.get(f"{base}/readyz").status_code == 200
    with live(config_for(tmp_path, api_keys=keys, open_ops=True), ToyEngine()) as (base, _):
        assert all(httpx.get(base + p).status_code == 200 for p in ("/metrics", "/docs", "/openapi.json"))
        assert httpx.post(f"{base}/v1/translate", json={"items": []}).status_code == 401


def test_an_open_service_serves_loopback_hosts_and_json_bodies_only(tmp_path: Path) -> None:
    item = {"items": [{"text": "你好", "tgt": "en"}]}
    with live(config_for(tmp_path), ToyEngine()) as (base, _):
        rebinding = httpx.post(f"{base}/v1/translate", json=item, headers={"Host": "evil.example:8080"})
        assert rebinding.status_code == 421 and rebinding.json()["error"]["code"] == "host_not_allowed"
        assert httpx.get(f"{base}/metrics", headers={"Host": "evil.example"}).status_code == 421
        assert httpx.get(f"{base}/readyz", headers={"Host": "10.1.2.3:8080"}).status_code == 200  # probes
        body = json.dumps(item).encode()
        for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            r = httpx.post(f"{base}/v1/translate", content=body, headers={"Content-Type": media})
            assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", media
        assert httpx.post(f"{base}/v1/translate", content=body).status_code == 415  # no Content-Type
        assert httpx.post(f"{base}/v1/translate", json=item).status_code == 200
        assert httpx.post(f"{base}/v1/translate", json=item, headers={"Host": "localhost"}).status_code == 200
    with live(config_for(tmp_path, allowed_hosts=["mt.internal"]), ToyEngine()) as (base, _):
        assert httpx.post(f"{base}/v1/translate", json=item, headers={"Host": "mt.internal"}).status_code == 200
        assert httpx.post(f"{base}/v1/translate", json=item).status_code == 421


def _read_all(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything until the server closes (or `limit_s`), and when the close came."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pass
    return data, time.monotonic() - started


def test_slow_connections_are_not_held(tmp_path: Path) -> None:
    config = config_for(tmp_path, header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=5, max_connections=8)
    with live(config, ToyEngine()) as (_base, _):
        addr = ("127.0.0.1", config.port)
        silent = socket.create_connection(addr)
        data, took = _read_all(silent, 5)
        assert b" 408 " in data and b'"header_timeout"' in data and took < 2
        trickle = socket.create_connection(addr)
        started = time.monotonic()
        for ch in b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n":  # a byte every 0.1 s: never done
            try:
                trickle.send(bytes([ch]))
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        data, _ = _read_all(trickle, 2)
        assert b" 408 " in data and time.monotonic() - started < 4
        body = socket.create_connection(addr)
        body.sendall(
            b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"items": '
        )
        data, took = _read_all(body, 5)
        assert b" 408 " in data and b'"body_timeout"' in data and took < 2
        kept = socket.create_connection(addr)  # a kept-alive idle connection is kept past the header timeout
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        kept.sendall(request)
        time.sleep(0.2)
        assert b" 200 " in kept.recv(4096)
        time.sleep(1.0)
        kept.sendall(request)
        assert b" 200 " in kept.recv(4096)
        crowd = [socket.create_connection(addr) for _ in range(8)]
        data, _ = _read_all(crowd[-1], 2)
        assert b" 503 " in data and b'"too_many_connections"' in data
        for s in (silent, trickle, body, kept, *crowd):
            s.close()


def test_credentials_are_redacted_from_every_log_line(tmp_path: Path) -> None:
    assert redact("http://user:s3cret@gpu-1:8000/v1") == "http://***:***@gpu-1:8000/v1"
    assert "tok123" not in redact("Authorization: Bearer tok123") and "pw" not in redact("password=pw&x=1")
    stream = io.StringIO()
    setup_logging("info", stream)
    try:
        upstream = "http://user:s3cret@127.0.0.1:9/v1"  # the engine is built from it; nothing is sent
        with live(config_for(tmp_path, access_log=True, model=upstream, parallel=2), None) as (base, server):
            for _ in range(200):
                if server.service.ready or server.service.load_error:
                    break
                time.sleep(0.05)
            assert server.service.ready, server.service.load_error
        import logging

        logging.getLogger("redtrans.serve").info(
            "engine ready", extra=fields(base_urls=["https://u:topsecret@h/v1"], error="redis://:pw9@cache:6379/0")
        )
        text = stream.getvalue()
        assert "s3cret" not in text and "topsecret" not in text and "pw9" not in text
        assert "127.0.0.1:9" in text and text.count('"msg": "engine ready"') == 2
    finally:
        setup_logging("warning")


def test_forwarded_for_is_trusted_only_from_configured_proxies(tmp_path: Path) -> None:
    item = {"items": [{"text": "你好", "tgt": "en"}]}
    limits = {"rate_limit_rps": 0.2, "rate_limit_burst": 1}
    with live(config_for(tmp_path, **limits), ToyEngine()) as (base, _):
        codes = [
            httpx.post(f"{base}/v1/translate", json=item, headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(3)
        ]
        assert codes == [200, 429, 429]  # one caller (the peer), whatever the header says
    with live(config_for(tmp_path, trusted_proxies=["127.0.0.0/8"], **limits), ToyEngine()) as (base, _):
        headers = [{"X-Forwarded-For": f"198.51.100.7, 203.0.113.{n}"} for n in range(3)]
        codes = [httpx.post(f"{base}/v1/translate", json=item, headers=h).status_code for h in headers]
        assert codes == [200, 200, 200]  # behind a trusted proxy: each client its own bucket
        again = httpx.post(f"{base}/v1/translate", json=item, headers={"X-Forwarded-For": "203.0.113.1"})
        assert again.status_code == 429


def test_a_hung_redis_does_not_delay_answers(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the optional Redis client is not installed (pip install redis)")
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts connections (the kernel does), never answers
    url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
    try:
        config = config_for(tmp_path, cache=url, cache_timeout_s=0.2)
        with live(config, ToyEngine()) as (base, server):
            for text in ("你好", "晚安"):
                started = time.monotonic()
                r = httpx.post(f"{base}/v1/translate", json={"items": [{"text": text, "tgt": "en"}]}, timeout=30)
                assert r.status_code == 200 and time.monotonic() - started < 1.5
            assert "redtrans_cache_timeouts_total 2.0" in httpx.get(f"{base}/metrics").text
            stopping = time.monotonic()
            server.should_exit = True
        assert time.monotonic() - stopping < 10  # the write-behind flush to the hung store is bounded too
    finally:
        hung.close()

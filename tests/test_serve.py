"""`redtrans serve`: API contract, auth, limits, cache, overload, deadlines and graceful shutdown.

The engine here is a stand-in (`ToyEngine`): it "translates" by swapping scripts, deterministically, and
can be made slow or failing, so overload and deadlines can be produced on purpose. Everything else is
real: SQLite files, uvicorn on 127.0.0.1, a real OpenAI-compatible HTTP upstream, `redtrans serve` as a
process receiving SIGTERM. The real embedded model is exercised in test_serve_model.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import regex

from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult
from redtrans.serve.app import create_app
from redtrans.serve.config import ServeConfig, ServeConfigError, hash_key, load_config
from redtrans.serve.logging import setup_logging

ROOT = Path(__file__).resolve().parent.parent
JSON = {"Content-Type": "application/json"}


def toy_translate(text: str, target: str) -> str:
    """Chinese → 'ha' words; English → one 好 per word. Markers ⟨n⟩ stay."""
    if target == "English":
        return regex.sub(r" +", " ", regex.sub(r"\p{Han}", " ha ", text)).strip()
    return regex.sub(r"\p{Latin}+", "好", text)


def request_target(request: GenRequest) -> tuple[str, str]:
    assert request.messages is not None
    system = request.messages[0]["content"]
    target = "English" if " to English" in system else "Chinese"
    user = request.messages[-1]["content"]
    return user.split("\n\n")[-1], target


class ToyEngine(Engine):
    """A deterministic stand-in that can be slow (`delay` s per batch) or broken (`fail`)."""

    name = "toy"

    def __init__(self, delay: float = 0.0, fail: bool = False, model: str = "toy-1") -> None:
        self.delay = delay
        self.fail = fail
        self.model = model
        self.parallelism = 4
        self.calls = 0
        self.texts: list[str] = []
        self.closed = False
        self._lock = threading.Lock()

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        with self._lock:
            self.calls += 1
        if self.fail:
            raise EngineError("toy engine is down")
        time.sleep(self.delay)
        out = []
        for r in requests:
            text, target = request_target(r)
            with self._lock:
                self.texts.append(text)
            out.append(GenResult(toy_translate(text, target), seconds=self.delay))
        return out

    def close(self) -> None:
        self.closed = True


def make_config(tmp_path: Path, **overrides: Any) -> ServeConfig:
    settings: dict[str, Any] = {
        "cache": f"sqlite:///{tmp_path / 'cache.sqlite'}",
        "access_log": False,
        "allowed_hosts": [
            "redtrans",
            "127.0.0.1",
        ],  # the ASGI client's base URL (an open service serves listed hosts only)
    }
    settings.update(overrides)
    return ServeConfig(**settings)


@asynccontextmanager
async def serving(config: ServeConfig, engine: Engine | None) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, reached through httpx's ASGI transport."""
    app = create_app(config, engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://redtrans") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def post(client: httpx.AsyncClient, items: list[dict[str, Any]], **extra: Any) -> Any:
    headers = extra.pop("headers", None)
    return client.post("/v1/translate", json={"items": items, **extra}, headers=headers)


# -- contract -------------------------------------------------------------------------------------------------
def test_translate_contract_and_cache_hits(tmp_path: Path) -> None:
    engine = ToyEngine()

    async def body() -> None:
        async with serving(make_config(tmp_path), engine) as client:
            items = [
                {"text": "今天好开心 #探店# 🎉", "tgt": "en", "id": "p1"},
                {"text": "no cap best pizza", "tgt": "zh"},
                {"text": "hello", "src": "en", "tgt": "en"},
            ]
            r = await post(client, items)
            assert r.status_code == 200, r.text
            data = r.json()
            assert set(data) == {"translations", "model", "prompt_version", "engine_ms", "queue_ms"}
            assert data["model"] == "toy-1"
            t = data["translations"]
            assert [x["id"] for x in t] == ["p1", "1", "2"]
            assert t[0]["src"] == "zh" and t[0]["detected"] is True and t[0]["tgt"] == "en"
            assert "ha" in t[0]["translation"] and "🎉" in t[0]["translation"]
            assert t[1]["src"] == "en" and t[1]["translation"].count("好") == 4
            assert t[2] == {
                "id": "2",
                "translation": "hello",
                "src": "en",
                "tgt": "en",
                "detected": False,
                "flags": [],
                "cached": False,
                "status": "ok",
                "error": None,
            }
            assert all(isinstance(x["flags"], list) for x in t)
            assert not any(x["cached"] for x in t)
            assert float(r.headers["x-engine-ms"]) >= 0 and float(r.headers["x-service-ms"]) > 0
            calls = engine.calls

            again = await post(client, [items[1], items[0]])
            assert again.status_code == 200
            assert [x["cached"] for x in again.json()["translations"]] == [True, True]
            assert again.json()["translations"][1]["translation"] == t[0]["translation"]
            assert again.json()["engine_ms"] == 0
            assert engine.calls == calls  # served without the engine

            # A request-level default target, and whitespace variants share one cache entry.
            r3 = await client.post(
                "/v1/translate", json={"tgt": "en", "items": [{"text": "  今天好开心 #探店# 🎉  \r\n"}]}
            )
            assert r3.json()["translations"][0]["cached"] is True

    run(body)


def test_identical_texts_in_flight_are_translated_once(tmp_path: Path) -> None:
    engine = ToyEngine(delay=0.3)

    async def body() -> None:
        async with serving(make_config(tmp_path, max_concurrency=2), engine) as client:
            rs = await asyncio.gather(*(post(client, [{"text": "哈哈哈哈", "tgt": "en"}]) for _ in range(6)))
            assert [r.status_code for r in rs] == [200] * 6
            assert len({r.json()["translations"][0]["translation"] for r in rs}) == 1
            assert engine.texts.count("哈哈哈哈") == 1

    run(body)


def test_openapi_health_ready_and_metrics(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(make_config(tmp_path), ToyEngine()) as client:
            schema = (await client.get("/openapi.json")).json()
            op = schema["paths"]["/v1/translate"]["post"]
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/TranslateRequest"
            assert "items" in schema["components"]["schemas"]["TranslateRequest"]["properties"]
            assert "TranslateItem" in schema["components"]["schemas"]
            assert {"200", "401", "413", "422", "429", "504"} <= set(op["responses"])
            for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
                chat = schema["paths"][path]["post"]
                assert "text/event-stream" in chat["responses"]["200"]["content"], path
                assert "properties" in chat["requestBody"]["content"]["application/json"]["schema"], path
            assert (await client.get("/docs")).status_code == 200
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["model"] == "toy-1"
            await post(client, [{"text": "你好世界", "tgt": "en"}])
            await post(client, [{"text": "你好世界", "tgt": "en"}])
            await post(client, [{"text": "", "tgt": "en"}])
            metrics = (await client.get("/metrics")).text
            assert 'redtrans_requests_total{route="translate",status="200"} 2.0' in metrics
            assert 'redtrans_requests_total{route="translate",status="422"} 1.0' in metrics
            assert 'redtrans_items_total{source="cache"} 1.0' in metrics
            assert 'redtrans_items_total{source="engine"} 1.0' in metrics
            assert "redtrans_ready 1.0" in metrics
            assert "redtrans_request_seconds_bucket" in metrics

    run(body)


def test_not_ready_when_the_model_cannot_load(tmp_path: Path) -> None:
    config = make_config(tmp_path, model=str(tmp_path / "missing.gguf"))

    async def body() -> None:
        async with serving(config, None) as client:
            for _ in range(100):
                ready = await client.get("/readyz")
                if ready.json()["status"] != "loading":
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 503
            assert ready.json()["status"] == "failed" and "missing.gguf" in ready.json()["detail"]
            assert (await client.get("/healthz")).status_code == 200
            r = await post(client, [{"text": "你好", "tgt": "en"}])
            assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
            assert r.headers["retry-after"] == "5"

    run(body)


# -- auth and rate limits -------------------------------------------------------------------------------------
def test_api_keys_are_required_and_checked_by_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDTRANS_API_KEYS", f"ops:{hash_key('env-secret')}")
    config = make_config(tmp_path, api_keys={"mobile": hash_key("s3cret-key")})
    item = [{"text": "你好", "tgt": "en"}]

    async def body() -> None:
        async with serving(config, ToyEngine()) as client:
            missing = await post(client, item)
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await post(client, item, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
            # The digest itself is not a key.
            digest = await post(client, item, headers={"X-API-Key": hash_key("s3cret-key")})
            assert digest.status_code == 401
            assert (await post(client, item, headers={"Authorization": "Bearer s3cret-key"})).status_code == 200
            assert (await post(client, item, headers={"X-API-Key": "s3cret-key"})).status_code == 200
            assert (await post(client, item, headers={"X-API-Key": "env-secret"})).status_code == 200
            # Auth is checked before the body: a bad body without a key is still 401.
            bad = await client.post("/v1/translate", content=b"{not json")
            assert bad.status_code == 401
            # Probes and metrics stay open.
            assert (await client.get("/healthz")).status_code == 200

    run(body)


def test_config_refuses_plain_keys_and_unknown_settings(tmp_path: Path) -> None:
    with pytest.raises(ServeConfigError, match="sha256"):
        ServeConfig(api_keys={"app": "my-plain-password"})
    yaml_file = tmp_path / "serve.yaml"
    yaml_file.write_text("port: 9000\nmax_quue: 3\n")
    with pytest.raises(ServeConfigError, match=r"serve\.yaml.*max_quue"):
        load_config(yaml_file)
    yaml_file.write_text("max_queue: -1\n")
    with pytest.raises(ServeConfigError, match="max_queue"):
        load_config(yaml_file)
    with pytest.raises(ServeConfigError, match="REDTRANS_API_KEYS"):
        ServeConfig().key_digests({"REDTRANS_API_KEYS": "app:plaintext"})
    example = load_config(ROOT / "examples" / "serve.yaml", port=9999)
    assert example.port == 9999 and example.max_queue > 0


def test_rate_limit_per_key(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, api_keys={"a": hash_key("key-a"), "b": hash_key("key-b")}, rate_limit_rps=0.5, rate_limit_burst=2
    )
    item = [{"text": "你好", "tgt": "en"}]

    async def body() -> None:
        async with serving(config, ToyEngine()) as client:
            a = {"Authorization": "Bearer key-a"}
            codes = [(await post(client, item, headers=a)).status_code for _ in range(2)]
            assert codes == [200, 200]
            limited = await post(client, item, headers=a)
            assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
            # 0.5/s with a burst of 2 is a moving window of 2 requests per 4 s: the first leaves it 4 s on.
            assert 3 <= int(limited.headers["retry-after"]) <= 4
            # Another key has its own bucket.
            assert (await post(client, item, headers={"Authorization": "Bearer key-b"})).status_code == 200

    run(body)


# -- limits and bad input ------------------------------------------------------------------------------------
def test_limits_and_bad_input_give_clear_4xx(tmp_path: Path) -> None:
    config = make_config(tmp_path, max_items=3, max_text_chars=20, max_body_bytes=2000)

    async def body() -> None:
        async with serving(config, ToyEngine()) as client:

            async def error(r: Any, status: int, code: str) -> dict[str, Any]:
                response = await r
                assert response.status_code == status, response.text
                assert response.headers["content-type"] == "application/json"
                err = response.json()["error"]
                assert err["code"] == code and err["message"]
                return err

            await error(post(client, [{"text": "x", "tgt": "en"}] * 4), 422, "too_many_items")
            err = await error(
                post(client, [{"text": "ok", "tgt": "zh"}, {"text": "长" * 21, "tgt": "en"}]), 422, "text_too_long"
            )
            assert err["item"] == 1 and "20" in err["message"]
            await error(post(client, [{"text": "hi", "tgt": "klingon"}]), 422, "unknown_language")
            await error(post(client, [{"text": "hi"}]), 422, "missing_tgt")
            await error(post(client, [{"text": "  \n ", "tgt": "en"}]), 422, "empty_text")
            await error(post(client, []), 422, "empty_batch")
            await error(post(client, [{"text": "hi", "tgt": "zh", "colour": "red"}]), 422, "invalid_request")
            await error(client.post("/v1/translate", content=b"{nope", headers=JSON), 422, "invalid_request")
            await error(client.post("/v1/translate", json={"items": "hi"}), 422, "invalid_request")
            big = json.dumps({"items": [{"text": "x" * 3000, "tgt": "en"}]}).encode()
            await error(client.post("/v1/translate", content=big, headers=JSON), 413, "body_too_large")

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
                for _ in range(10):
                    yield b" " * 500

            await error(client.post("/v1/translate", content=chunks(), headers=JSON), 413, "body_too_large")
            assert (await post(client, [{"text": "长" * 20, "tgt": "en"}])).status_code == 200

    run(body)


# -- cache ---------------------------------------------------------------------------------------------------
def test_sqlite_cache_survives_restart_and_keys_on_model(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.sqlite"
    items = [{"text": "yyds 绝绝子", "tgt": "en"}, {"text": "哈哈哈", "tgt": "en"}]

    async def first() -> list[str]:
        async with serving(make_config(tmp_path), ToyEngine()) as client:
            r = await post(client, items)
            return [t["translation"] for t in r.json()["translations"]]

    translations = run(first)
    assert cache_file.is_file()
    restarted = ToyEngine()

    async def second() -> None:
        async with serving(make_config(tmp_path), restarted) as client:
            r = await post(client, items)
            assert [t["translation"] for t in r.json()["translations"]] == translations
            assert all(t["cached"] for t in r.json()["translations"])
            assert [t["src"] for t in r.json()["translations"]] == ["zh", "zh"]
            # Another direction is another key.
            r2 = await post(client, [{"text": "哈哈哈", "tgt": "ja"}])
            assert r2.json()["translations"][0]["cached"] is False

    run(second)
    assert restarted.calls == 1

    other_model = ToyEngine(model="toy-2")

    async def third() -> None:
        async with serving(make_config(tmp_path), other_model) as client:
            r = await post(client, items)
            assert not any(t["cached"] for t in r.json()["translations"])

    run(third)
    assert other_model.calls >= 1


def test_engine_errors_are_502_and_not_cached(tmp_path: Path) -> None:
    engine = ToyEngine(fail=True)

    async def body() -> None:
        async with serving(make_config(tmp_path), engine) as client:
            r = await post(client, [{"text": "你好", "tgt": "en"}])
            assert r.status_code == 502 and r.json()["error"]["code"] == "engine_error"
            engine.fail = False
            r = await post(client, [{"text": "你好", "tgt": "en"}])
            assert r.status_code == 200 and r.json()["translations"][0]["cached"] is False

    run(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_cache_survives_restart(tmp_path: Path, redis_url: str) -> None:
    config = make_config(tmp_path, cache=redis_url)

    async def once(engine: ToyEngine) -> list[bool]:
        async with serving(config, engine) as client:
            r = await post(client, [{"text": "笑死我了", "tgt": "en"}])
            assert r.status_code == 200
            return [t["cached"] for t in r.json()["translations"]]

    assert run(lambda: once(ToyEngine())) == [False]
    engine = ToyEngine()
    assert run(lambda: once(engine)) == [True]
    assert engine.calls == 0


# -- overload and deadlines -----------------------------------------------------------------------------------
def test_overload_gives_429_with_retry_after_and_stays_bounded(tmp_path: Path) -> None:
    engine = ToyEngine(delay=0.4)
    config = make_config(tmp_path, max_concurrency=1, max_queue=2, max_batch_items=1, request_timeout_s=20)

    async def body() -> None:
        async with serving(config, engine) as client:
            service = client.app.state.service  # type: ignore[attr-defined]
            rs = await asyncio.gather(*(post(client, [{"text": f"第{n}条评论", "tgt": "en"}]) for n in range(12)))
            codes = [r.status_code for r in rs]
            assert set(codes) == {200, 429}, codes
            assert 2 <= codes.count(200) <= 3  # two queued, and one more if a worker took one off meanwhile
            for r in rs:
                if r.status_code == 429:
                    assert r.json()["error"]["code"] == "overloaded"
                    assert int(r.headers["retry-after"]) >= 1
            assert service.batcher.in_flight == {} and len(service.batcher.pending) == 0
            # The service recovers: a new request goes through.
            assert (await post(client, [{"text": "恢复了", "tgt": "en"}])).status_code == 200

    run(body)


def test_deadline_gives_504_and_drops_queued_work(tmp_path: Path) -> None:
    engine = ToyEngine(delay=0.6)
    config = make_config(tmp_path, max_concurrency=1, max_batch_items=1, max_queue=1, request_timeout_s=5)

    async def body() -> None:
        async with serving(config, engine) as client:
            service = client.app.state.service  # type: ignore[attr-defined]
            slow = asyncio.create_task(post(client, [{"text": "第一条", "tgt": "en"}]))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            late = await post(client, [{"text": "第二条", "tgt": "en"}], deadline_ms=200)
            assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
            assert time.monotonic() - started < 0.5
            # The queue (one slot) was freed when the late request gave up: the next one is admitted at once.
            admitted = asyncio.create_task(post(client, [{"text": "第四条", "tgt": "en"}]))
            assert (await slow).status_code == 200
            assert (await admitted).status_code == 200
            await asyncio.sleep(0.1)
            assert "第二条" not in engine.texts  # given up before a worker took it: never translated
            assert service.batcher.in_flight == {}
            ok = await post(client, [{"text": "第三条", "tgt": "en"}], deadline_ms=3000)
            assert ok.status_code == 200

    run(body)


# -- logs ----------------------------------------------------------------------------------------------------
def test_structured_logs_leave_post_text_out_by_default(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("info", stream)
    secret = "我的秘密帖子内容"

    async def once(log_text: bool) -> None:
        config = make_config(tmp_path, access_log=True, log_text=log_text, api_keys={"app": hash_key("k")})
        async with serving(config, ToyEngine()) as client:
            r = await post(client, [{"text": secret, "tgt": "en"}], headers={"X-API-Key": "k"})
            assert r.status_code == 200

    try:
        run(lambda: once(False))
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        request = [x for x in lines if x["msg"] == "request"]
        assert len(request) == 1
        assert request[0]["status"] == 200 and request[0]["caller"] == "key:app" and request[0]["items"] == 1
        assert secret not in stream.getvalue()
        assert "k" not in {x.get("caller") for x in lines}
        stream.truncate(0)
        stream.seek(0)
        run(lambda: once(True))
        assert secret in stream.getvalue()
    finally:
        setup_logging("warning")


# -- real uvicorn --------------------------------------------------------------------------------------------
def test_graceful_shutdown_on_real_uvicorn_finishes_requests_in_flight(tmp_path: Path) -> None:
    import uvicorn

    engine = ToyEngine(delay=1.0)
    port = _free_port()
    app = create_app(make_config(tmp_path), engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    assert httpx.get(f"{base}/readyz").status_code == 200
    result: dict[str, Any] = {}

    def client() -> None:
        result["response"] = httpx.post(f"{base}/v1/translate", json={"items": [{"text": "晚安", "tgt": "en"}]})

    caller = threading.Thread(target=client)
    caller.start()
    time.sleep(0.3)  # the request is in the engine now
    server.should_exit = True
    caller.join(10)
    thread.join(10)
    assert not thread.is_alive()
    response = result["response"]
    assert response.status_code == 200 and response.json()["translations"][0]["translation"] == "ha ha"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz")
    assert engine.closed is False  # an engine handed in is the caller's to close


class _Upstream(BaseHTTPRequestHandler):
    """A slow OpenAI-compatible /v1/chat/completions endpoint."""

    delay = 0.0
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        messages = body["messages"]
        target = "English" if " to English" in messages[0]["content"] else "Chinese"
        text = messages[-1]["content"].split("\n\n")[-1]
        _Upstream.seen.append(body["model"])
        time.sleep(_Upstream.delay)
        out = {
            "choices": [
                {"message": {"role": "assistant", "content": toy_translate(text, target)}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        }
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_cli_serve_as_gateway_over_openai_upstream_and_sigterm(tmp_path: Path) -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    _Upstream.delay = 1.0
    port = _free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(f"cache: sqlite:///{tmp_path / 'gw.sqlite'}\ngraceful_shutdown_s: 20\n")
    exe = Path(sys.executable).with_name("redtrans")
    upstream_url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
    args = [str(exe), "serve", "--config", str(config), "--port", str(port), "--model", upstream_url]
    proc = subprocess.Popen(
        [*args, "--served-model", "fleet-model"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OPENAI_API_KEY": ""},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        result: dict[str, Any] = {}

        def client() -> None:
            items = [{"text": "晚安世界", "tgt": "en"}, {"text": "good night", "tgt": "zh"}]
            result["r"] = httpx.post(f"{base}/v1/translate", json={"items": items}, timeout=30)

        caller = threading.Thread(target=client)
        caller.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        caller.join(30)
        assert proc.wait(30) == 0  # a clean drain exits 0 (uvicorn alone re-raises SIGTERM: -15)
        r = result["r"]
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["model"] == "fleet-model" and _Upstream.seen[-1] == "fleet-model"
        assert [t["translation"] for t in data["translations"]] == ["ha ha ha ha", "好 好"]
        logs = [json.loads(line) for line in proc.stderr.read().decode().splitlines() if line.startswith("{")]
        assert any(x["msg"] == "request" and x["status"] == 200 for x in logs)
        assert any(x["msg"] == "stopped" for x in logs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        upstream.shutdown()

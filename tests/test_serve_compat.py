"""Serving that existing clients speak: OpenAI (the official `openai` client, plain and streaming), DeepL
`/v2/translate` and LibreTranslate `/translate` (plain HTTP as their clients send it), each with its own auth
and error shape; rate limits shared by replicas through Redis.

The engine is the `standin` kind (deterministic zh↔en without a model): everything else is real, `redtrans
serve` as a process, uvicorn on loopback, SQLite, redis-server when installed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from redtrans.engines.standin import StandInEngine
from redtrans.serve.app import create_app
from redtrans.serve.config import ServeConfig, hash_key
from redtrans.serve.ratelimit import RateLimit
from redtrans.serve.routes_openai import parse_model

KEY = "compat-key-1"
POST = "你好世界 🌍\n\n晚安 #晚安#"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _expected(text: str, tgt: str) -> str:
    """What the pipeline answers for `text` with the stand-in engine (the same translator the service runs)."""
    from redtrans.translator import Translator, TranslatorConfig

    return Translator(StandInEngine(), TranslatorConfig()).translate_text(text, tgt).translation


@contextmanager
def _serve(tmp: Path, config_yaml: str) -> Iterator[str]:
    """`redtrans serve --engine standin` with one API key and the given config; yields its base URL."""
    config = tmp / "serve.yaml"
    config.write_text(f"cache: sqlite:///{tmp / 'cache.sqlite'}\n" + config_yaml)
    port = _free_port()
    exe = Path(sys.executable).with_name("redtrans")
    env = {**os.environ, "REDTRANS_API_KEYS": f"app:{hash_key(KEY)}", "REDTRANS_HOME": str(tmp)}
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(config), "--port", str(port), "--engine", "standin"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small body limit and generous rate limits."""
    config = "max_body_bytes: 8192\nrate_limit_rps: 50\nrate_limit_burst: 200\n"
    with _serve(tmp_path_factory.mktemp("compat"), config) as base:
        yield base


# -- OpenAI ------------------------------------------------------------------------------------------------------
def test_openai_client_plain_and_streaming(server: str) -> None:
    openai = pytest.importorskip("openai", reason="pip install openai (the dev extra has it)")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids[:3] == ["redtrans", "redtrans-zh-en", "redtrans-en-zh"] and "redtrans-ja-en" in ids
    assert client.models.retrieve("redtrans-zh-en").id == "redtrans-zh-en"

    done = client.chat.completions.create(
        model="redtrans-zh-en", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": POST}]
    )
    lines = POST.split("\n")
    expected = "\n".join(_expected(line, "en") if line else "" for line in lines)
    assert done.choices[0].message.content == expected
    assert done.choices[0].finish_reason == "stop" and done.object == "chat.completion"
    assert done.usage is not None and done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert done.usage.prompt_tokens > 0
    info = (done.model_extra or {})["redtrans"]
    assert info["src"] == "zh" and info["tgt"] == "en" and info["detected"] is False

    # Auto-detect + default target, and the direction given in extra_body instead of the model name.
    auto = client.chat.completions.create(model="redtrans", messages=[{"role": "user", "content": "晚安"}])
    assert auto.choices[0].message.content == _expected("晚安", "en")
    english = "good night"
    by_extra = client.chat.completions.create(
        model="redtrans", messages=[{"role": "user", "content": english}], extra_body={"redtrans": {"tgt": "zh"}}
    )
    assert by_extra.choices[0].message.content == _expected(english, "zh")

    stream = client.chat.completions.create(
        model="redtrans-zh-en",
        messages=[{"role": "user", "content": POST}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == [_expected(lines[0], "en") + "\n", "\n", _expected(lines[2], "en")]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert "".join(pieces) == expected


def test_streaming_sends_each_line_when_it_is_done(tmp_path: Path) -> None:
    """Two slots, generation time growing with the answer: the short first line's chunk arrives while the long
    second line is still being generated, not with it."""
    openai = pytest.importorskip("openai", reason="pip install openai (the dev extra has it)")
    config = "engine_options: {slots: 2, delay_per_char_s: 0.01}\n"  # the long line: ~360 chars ≈ 3.6 s
    short, long = "晚安", "今天天气很好我们一起去公园散步然后吃饭看电影最后回家睡觉" * 2
    with _serve(tmp_path, config) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        stream = client.chat.completions.create(
            model="redtrans-zh-en", messages=[{"role": "user", "content": f"{short}\n{long}"}], stream=True
        )
        arrived: list[tuple[float, str]] = []
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                arrived.append((time.monotonic(), c.choices[0].delta.content))
    assert [text for _, text in arrived] == [_expected(short, "en") + "\n", _expected(long, "en")]
    # Sent together the gap would be ~0; the long line alone takes seconds more than the short one.
    assert arrived[1][0] - arrived[0][0] > 1.5


def test_streaming_error_after_the_first_line_is_an_error_event(tmp_path: Path) -> None:
    """The engine breaks after the first line was sent: the status (200) is gone, so the stream ends with an
    OpenAI error event, which the official client raises."""
    openai = pytest.importorskip("openai", reason="pip install openai (the dev extra has it)")
    with _serve(tmp_path, "engine_options: {slots: 1, fail_after: 1}\n") as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
        stream = client.chat.completions.create(
            model="redtrans-zh-en", messages=[{"role": "user", "content": "晚安\n早上好"}], stream=True
        )
        pieces: list[str] = []
        with pytest.raises(openai.APIError) as failed:
            for c in stream:
                if c.choices and c.choices[0].delta.content:
                    pieces.append(c.choices[0].delta.content)
    assert pieces == [_expected("晚安", "en") + "\n"]
    assert "the engine failed" in failed.value.message
    assert failed.value.body is not None and failed.value.body["code"] == "engine_error"  # type: ignore[index]


def test_openai_errors_are_openai_error_objects(server: str) -> None:
    openai = pytest.importorskip("openai", reason="pip install openai (the dev extra has it)")
    good = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    message = [{"role": "user", "content": "你好"}]
    with pytest.raises(openai.AuthenticationError) as auth:
        bad.chat.completions.create(model="redtrans-zh-en", messages=message)
    assert auth.value.status_code == 401
    assert auth.value.body == {
        "message": "the API key is not valid (keys are sent as `Authorization: Bearer KEY`)",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    with pytest.raises(openai.NotFoundError) as missing:
        good.chat.completions.create(model="gpt-4o", messages=message)
    assert isinstance(missing.value.body, dict) and missing.value.body["param"] == "model"
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as invalid:  # 400, as OpenAI and vLLM answer
        good.chat.completions.create(model="redtrans-zh-en", messages=[])
    assert isinstance(invalid.value.body, dict) and invalid.value.body["type"] == "invalid_request_error"
    assert invalid.value.body["param"] == "messages"
    with pytest.raises(openai.APIStatusError) as big:
        good.chat.completions.create(model="redtrans-zh-en", messages=[{"role": "user", "content": "长" * 9000}])
    assert big.value.status_code == 413 and isinstance(big.value.body, dict)
    assert big.value.body["code"] == "body_too_large"
    # Unknown routes and a missing key under /v1, as raw HTTP: the same shape.
    r = httpx.get(f"{server}/v1/nowhere", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(f"{server}/v1/chat/completions", json={"model": "redtrans", "messages": message})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    # The native route keeps its own shape.
    r = httpx.post(f"{server}/v1/translate", json={"items": []}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 422 and r.json() == {
        "error": {"code": "empty_batch", "message": "`items` is empty: send at least one {text, tgt}"}
    }


# -- DeepL and LibreTranslate ------------------------------------------------------------------------------------
def test_deepl_json_and_form_with_its_auth_and_errors(server: str) -> None:
    url = f"{server}/v2/translate"
    auth = {"Authorization": f"DeepL-Auth-Key {KEY}"}
    r = httpx.post(url, json={"text": ["晚安", "你好世界"], "target_lang": "EN-US"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "translations": [
            {"detected_source_language": "ZH", "text": _expected("晚安", "en")},
            {"detected_source_language": "ZH", "text": _expected("你好世界", "en")},
        ]
    }
    # Form-encoded, as DeepL's own clients send it (text repeated), with billed characters.
    form = {"text": ["good night"], "target_lang": "ZH", "source_lang": "EN", "show_billed_characters": "1"}
    r = httpx.post(url, data=form, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["translations"] == [
        {"detected_source_language": "EN", "text": _expected("good night", "zh"), "billed_characters": 10}
    ]
    # DeepL's error shape and status codes: 403 for a missing or wrong key, 400 for a bad request.
    for headers in ({}, {"Authorization": "DeepL-Auth-Key nope"}):
        r = httpx.post(url, json={"text": ["你好"], "target_lang": "EN"}, headers=headers)
        assert r.status_code == 403 and set(r.json()) == {"message"}, r.text
    r = httpx.post(url, json={"text": ["你好"]}, headers=auth)
    assert r.status_code == 400 and "target_lang" in r.json()["message"] and set(r.json()) == {"message"}
    r = httpx.post(url, json={"text": ["你好"], "target_lang": "XX-YY"}, headers=auth)
    assert r.status_code == 400 and "unknown language" in r.json()["message"]


def test_libretranslate_json_and_form_with_its_auth_and_errors(server: str) -> None:
    url = f"{server}/translate"
    r = httpx.post(url, json={"q": "晚安", "source": "auto", "target": "en", "api_key": KEY})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "translatedText": _expected("晚安", "en"),
        "detectedLanguage": {"confidence": 100.0, "language": "zh"},
    }
    r = httpx.post(url, json={"q": ["晚安", "你好世界"], "source": "zh", "target": "en", "api_key": KEY})
    assert r.status_code == 200 and r.json() == {
        "translatedText": [_expected("晚安", "en"), _expected("你好世界", "en")]
    }
    r = httpx.post(url, data={"q": "good night", "source": "en", "target": "zh", "api_key": KEY})
    assert r.status_code == 200 and r.json() == {"translatedText": _expected("good night", "zh")}
    # LibreTranslate's error shape: 403 for a missing or wrong `api_key`, 400 for a bad request.
    for key in ({}, {"api_key": "nope"}):
        r = httpx.post(url, json={"q": "晚安", "source": "auto", "target": "en", **key})
        assert r.status_code == 403 and set(r.json()) == {"error"}, r.text
    r = httpx.post(url, json={"q": "晚安"})  # the key is checked before the request's shape
    assert r.status_code == 403 and "API key" in r.json()["error"]
    r = httpx.post(url, json={"q": "晚安", "source": "auto", "api_key": KEY})
    assert r.status_code == 400 and "target" in r.json()["error"] and set(r.json()) == {"error"}
    r = httpx.post(url, json={"q": "晚安", "target": "en", "format": "markdown", "api_key": KEY})
    assert r.status_code == 400 and "format" in r.json()["error"]
    r = httpx.get(f"{server}/languages", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and {"code": "zh", "name": "Chinese"}.items() <= r.json()[0].items()


# -- in process: status codes per convention, the keyless form rule, metrics -----------------------------------
@asynccontextmanager
async def serving(config: ServeConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config)
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if app.state.service.ready:
                break
            await asyncio.sleep(0.02)
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def _config(tmp_path: Path, **overrides: Any) -> ServeConfig:
    settings: dict[str, Any] = {"cache": "none", "access_log": False, "engine": "standin"}
    settings.update(overrides)
    return ServeConfig(**settings)


CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/chat/completions", {"model": "redtrans-zh-en", "messages": [{"role": "user", "content": "晚安"}]}),
    "deepl": ("/v2/translate", {"text": ["晚安"], "target_lang": "EN"}),
    "libretranslate": ("/translate", {"q": "晚安", "source": "zh", "target": "en"}),
}


def _shape(api: str, body: Any) -> str:
    """The error code (openai) or message (deepl, libretranslate) of an error body in `api`'s shape."""
    if api == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
        return str(body["error"]["code"])
    key = "message" if api == "deepl" else "error"
    assert set(body) == {key}
    return str(body[key])


def test_429_504_and_forms_in_each_convention(tmp_path: Path) -> None:
    async def body() -> None:
        limited = _config(tmp_path, rate_limit_rps=0.2, rate_limit_burst=1)
        async with serving(limited) as client:
            for api, (path, payload) in CALLS.items():
                first = await client.post(path, json=payload)
                assert first.status_code == 200, (api, first.text)
                again = await client.post(path, json=payload)
                assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1, again.text
                assert "rate" in _shape(api, again.json())
                client.app.state.service.limiter = RateLimit("memory", 0.2, 1)  # type: ignore[attr-defined]  # afresh
            metrics = (await client.get("/metrics")).text
            for api in CALLS:
                assert f'redtrans_requests_total{{route="{api}",status="429"}} 1.0' in metrics
        slow = _config(tmp_path, engine_options={"delay_s": 1.0})
        async with serving(slow) as client:
            deadline = {
                "openai": {**CALLS["openai"][1], "redtrans": {"deadline_ms": 100}},
            }
            r = await client.post("/v1/chat/completions", json=deadline["openai"])
            assert r.status_code == 504 and _shape("openai", r.json()) == "deadline_exceeded"
        async with serving(_config(tmp_path)) as client:
            # Keys off: form bodies on the two MT routes only; everything else JSON only (415).
            r = await client.post("/v2/translate", data={"text": "晚安", "target_lang": "EN"})
            assert r.status_code == 200, r.text
            r = await client.post("/translate", data={"q": "晚安", "target": "en"})
            assert r.status_code == 200 and r.json()["detectedLanguage"]["language"] == "zh"
            for path in ("/v1/translate", "/v1/chat/completions"):
                r = await client.post(path, data={"text": "晚安"})
                assert r.status_code == 415, (path, r.text)
            assert _shape("openai", r.json()) == "unsupported_media_type"
            r = await client.post("/v2/translate", content=b"{not json", headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and "not JSON" in _shape("deepl", r.json())
            r = await client.post("/translate", json={"q": "x" * 6000, "target": "en"})
            assert r.status_code == 400 and "characters" in _shape("libretranslate", r.json())
            # A Traditional Chinese target gets Traditional output (OpenCC after the translation).
            r = await client.post(
                "/v2/translate", json={"text": ["后来"], "source_lang": "ZH", "target_lang": "ZH-HANT"}
            )
            assert r.status_code == 200 and r.json()["translations"][0]["text"] == "後來"

    asyncio.run(body())


def test_model_names() -> None:
    assert parse_model("redtrans") == (None, None)
    assert parse_model("redtrans-zh-en") == ("zh", "en")
    assert parse_model("redtrans-en-zh-Hant") == ("en", "zh-Hant")
    assert parse_model("redtrans-ja") == (None, "ja")
    for bad in ("gpt-4o", "redtrans-", "redtrans-xx-yy"):
        with pytest.raises(Exception, match="does not exist"):
            parse_model(bad)


# -- shared rate limits ----------------------------------------------------------------------------------------
def test_two_replicas_share_one_rate_limit_through_redis(tmp_path: Path, redis_url: str) -> None:
    pytest.importorskip("limits", reason="pip install limits (the serve extra has it)")
    keys = {"a": hash_key("key-a"), "b": hash_key("key-b")}
    config = _config(tmp_path, api_keys=keys, rate_limit_rps=0.5, rate_limit_burst=2, rate_limit_storage=redis_url)
    item = {"items": [{"text": "晚安", "tgt": "en"}]}
    a = {"Authorization": "Bearer key-a"}

    async def body() -> None:
        async with serving(config) as one, serving(config) as two:
            assert (await one.post("/v1/translate", json=item, headers=a)).status_code == 200
            assert (await two.post("/v1/translate", json=item, headers=a)).status_code == 200
            for client in (one, two):  # the bucket is spent on both replicas
                r = await client.post("/v1/translate", json=item, headers=a)
                assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
                assert 1 <= int(r.headers["retry-after"]) <= 4
            r = await two.post("/v2/translate", json={"text": ["晚安"], "target_lang": "EN"}, headers=a)
            assert r.status_code == 429 and set(r.json()) == {"message"}
            # Another key has its own window.
            assert (
                await two.post("/v1/translate", json=item, headers={"Authorization": "Bearer key-b"})
            ).status_code == 200
            assert "redtrans_rate_limit_fallbacks_total 0.0" in (await one.get("/metrics", headers=a)).text

    asyncio.run(body())


def test_an_unreachable_rate_limit_store_falls_back_to_the_local_bucket(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the optional Redis client is not installed (pip install redis)")
    pytest.importorskip("limits", reason="pip install limits (the serve extra has it)")
    dead = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    config = _config(tmp_path, rate_limit_rps=0.5, rate_limit_burst=1, rate_limit_storage=dead)
    item = {"items": [{"text": "晚安", "tgt": "en"}]}

    async def body() -> None:
        async with serving(config) as client:
            started = time.monotonic()
            codes = [(await client.post("/v1/translate", json=item)).status_code for _ in range(2)]
            assert codes == [200, 429] and time.monotonic() - started < 2
            metrics = (await client.get("/metrics")).text
            assert "redtrans_rate_limit_fallbacks_total 2.0" in metrics

    asyncio.run(body())

"""Bad input and bad configuration (issues 32 and 33): form bodies are UTF-8, a lone surrogate is each route's
4xx, a setting that cannot work exits 2 before binding (one line, no traceback, no secret echoed), one client
cannot hold every connection, wrong keys are throttled.

Real uvicorn on loopback (`build_server`) or `redtrans serve` as a process; the engine is the `standin` kind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_guards import _free_port, config_for, live

from redtrans.engines.standin import StandInEngine
from redtrans.serve.config import hash_key
from redtrans.translator import Translator, TranslatorConfig

POST = "这家店的奶茶绝绝子🧋"


def _expected(text: str, tgt: str) -> str:
    return Translator(StandInEngine(), TranslatorConfig()).translate_text(text, tgt).translation


def test_form_bodies_are_utf8(tmp_path: Path) -> None:
    """docs/serve.md's own curl example sends raw UTF-8 bytes in a urlencoded form: it reaches the model as the
    text it is (Starlette alone reads them as Latin-1: `è¿\\x99å…`, detected as French)."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with live(config_for(tmp_path), StandInEngine()) as (base, _):
        raw = f"text={POST}&target_lang=EN-US".encode()  # what `curl -d 'text=…'` sends
        r = httpx.post(f"{base}/v2/translate", content=raw, headers=form)
        assert r.status_code == 200, r.text
        assert r.json()["translations"] == [{"detected_source_language": "ZH", "text": _expected(POST, "en")}]
        r = httpx.post(f"{base}/translate", data={"q": POST, "source": "auto", "target": "en"})  # %-escaped
        assert r.status_code == 200 and r.json()["translatedText"] == _expected(POST, "en")
        assert r.json()["detectedLanguage"]["language"] == "zh"
        r = httpx.post(f"{base}/translate", data={"q": POST, "target": "en"}, files={"unused": ("a.txt", b"x")})
        assert r.status_code == 200 and r.json()["translatedText"] == _expected(POST, "en")  # multipart
        for bad in (b"text=\xff\xfe&target_lang=EN", b"text=%ff%fe&target_lang=EN"):
            r = httpx.post(f"{base}/v2/translate", content=bad, headers=form)
            assert r.status_code == 400 and "UTF-8" in r.json()["message"], r.text
        r = httpx.post(f"{base}/translate", content=b"q=%ED%A0%BD&target=en", headers=form)  # a surrogate
        assert r.status_code == 400 and "UTF-8" in r.json()["error"]


def test_a_lone_surrogate_is_each_routes_4xx(tmp_path: Path) -> None:
    """A half-cut emoji (a lone UTF-16 surrogate, `\\ud83d`) in JSON: 400 on the OpenAI, DeepL and
    LibreTranslate routes, the native route's documented 422; never a 500."""
    cut = '"\\ud83d 奶茶"'
    bodies = {
        "/v1/translate": f'{{"items": [{{"text": {cut}, "tgt": "en"}}]}}',
        "/v1/chat/completions": f'{{"model": "redtrans-zh-en", "messages": [{{"role": "user", "content": {cut}}}]}}',
        "/v1/completions": f'{{"model": "redtrans-zh-en", "prompt": {cut}}}',
        "/v1/responses": f'{{"model": "redtrans-zh-en", "input": {cut}}}',
        "/v2/translate": f'{{"text": [{cut}], "target_lang": "EN-US"}}',
        "/translate": f'{{"q": {cut}, "source": "zh", "target": "en"}}',
        "/detect": f'{{"q": {cut}}}',
    }
    with live(config_for(tmp_path), StandInEngine()) as (base, _):
        for path, body in bodies.items():
            r = httpx.post(base + path, content=body.encode(), headers={"Content-Type": "application/json"})
            assert r.status_code == (422 if path == "/v1/translate" else 400), (path, r.text)
            assert "surrogate" in r.text, (path, r.text)


def _serve_cli(tmp_path: Path, config: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps({"port": _free_port(), **config}))
    exe = Path(sys.executable).with_name("redtrans")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("REDTRANS_SERVE_", "OPENAI_API_KEY"))}
    return subprocess.run(
        [str(exe), "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, "REDTRANS_HOME": str(tmp_path), **env},
    )


@pytest.mark.parametrize(
    ("config", "env", "says"),
    [
        ({"engine_options": {"n_threads": "many"}}, {}, "n_threads"),
        ({"engine": "standin", "engine_options": {"no_such_option": 1}}, {}, "no_such_option"),
        ({"model": "qwen9-nonexistent"}, {}, "unknown model"),
        ({"model": "/nowhere/model.gguf"}, {}, "model file not found"),
        ({"engine": "standin", "cache": "postgresql://root:hunter2@db/x"}, {}, "unsupported cache URL"),
        ({"model": "http://user:hunter2@127.0.0.1:9/v1"}, {"OPENAI_API_KEY": "sk-hunter2"}, "two credentials"),
    ],
)
def test_a_setting_that_cannot_work_exits_2_before_binding(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str], says: str
) -> None:
    done = _serve_cli(tmp_path, config, **env)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert "Uvicorn running" not in done.stderr  # never bound


def test_one_client_cannot_hold_every_connection(tmp_path: Path) -> None:
    """One client's idle connections fill its own cap, not the server's: another client is still served."""
    config = config_for(tmp_path, max_connections=20, max_connections_per_client=5, header_timeout_s=30)
    with live(config, StandInEngine()) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            extra.settimeout(5)
            answer = extra.recv(4096)
            extra.close()
            assert b"503" in answer.split(b"\r\n")[0] and b"too_many_client_connections" in answer
            other = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            other.settimeout(10)
            body = json.dumps({"items": [{"text": "晚安", "tgt": "en"}]}).encode()
            other.sendall(
                b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            reply = b""
            while chunk := other.recv(4096):
                reply += chunk
            other.close()
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)  # closed connections leave the cap: the client may connect again
        assert httpx.post(f"{base}/v1/translate", json={"items": [{"text": "晚安", "tgt": "en"}]}).status_code == 200


def test_wrong_keys_are_throttled_per_address(tmp_path: Path) -> None:
    config = config_for(tmp_path, api_keys={"app": hash_key("right")}, max_key_failures=3)
    item = {"items": [{"text": "晚安", "tgt": "en"}]}
    with live(config, StandInEngine()) as (base, _):
        for _ in range(3):
            r = httpx.post(f"{base}/v1/translate", json=item, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
        # Past the limit every attempt from this address waits, the right key too (or guessing would go on).
        for key in ("wrong", "right"):
            r = httpx.post(f"{base}/v1/translate", json=item, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_key_failures"
            assert 1 <= int(r.headers["retry-after"]) <= 60
        # Another address is not affected.
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport) as other:
            r = other.post(f"{base}/v1/translate", json=item, headers={"Authorization": "Bearer right"})
            assert r.status_code == 200, r.text

"""Issue 32 item 2: nothing wrong returned as right. A text the engine answers with a refusal or nothing is
422 `no_translation` on every route (the native batch route: `status: failed` beside the other items), a
stream that already sent its 200 ends with the route's error event and no success marker, the official
client does not re-ask (422 is not retried), and failures are never cached.

Real uvicorn on loopback (`build_server`); the engine is a stand-in that refuses on cue (a real model cannot
be made to refuse on demand)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from test_serve import ToyEngine, request_target, toy_translate
from test_serve_guards import config_for, live

from redtrans.engines.base import GenRequest, GenResult

REFUSAL = "I'm sorry, but I can't assist with that."


class RefusingEngine(ToyEngine):
    """Refuses texts with 拒绝 in them and answers texts with 空 with nothing, every time (a retry too)."""

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        with self._lock:
            self.calls += 1
        out = []
        for request in requests:
            text, target = request_target(request)
            with self._lock:
                self.texts.append(text)
            answer = REFUSAL if "拒绝" in text else "" if "空" in text else toy_translate(text, target)
            out.append(GenResult(answer))
        return out


def _sse(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]


def test_refusals_and_empty_answers_are_422_no_translation_on_every_route(tmp_path: Path) -> None:
    engine = RefusingEngine()
    config = config_for(tmp_path, cache=f"sqlite:///{tmp_path / 'c.sqlite'}")
    chat = {"model": "redtrans-zh-en", "messages": [{"role": "user", "content": "请拒绝这个"}]}
    calls = {
        "/v1/chat/completions": chat,
        "/v1/completions": {"model": "redtrans-zh-en", "prompt": "空空如也"},
        "/v1/responses": {"model": "redtrans-zh-en", "input": "请拒绝这个"},
        "/v2/translate": {"text": ["今天很好", "请拒绝这个"], "target_lang": "EN-US"},
        "/translate": {"q": "空空如也", "source": "zh", "target": "en"},
    }
    with live(config, engine) as (base, _):
        for path, body in calls.items():
            for _ in range(2):  # the second time too: a failure is never cached
                r = httpx.post(base + path, json=body, timeout=30)
                assert r.status_code == 422, (path, r.text)
                text = r.text
                assert "no usable translation" in text and REFUSAL not in text, (path, text)
                if path.startswith("/v1/"):
                    assert r.json()["error"]["code"] == "no_translation"
        # The native batch route answers the other items, the failed one `status: failed` with its reason.
        items = [{"text": "今天很好", "tgt": "en"}, {"text": "请拒绝这个", "tgt": "en"}, {"text": "空的", "tgt": "en"}]
        r = httpx.post(f"{base}/v1/translate", json={"items": items}, timeout=30)
        assert r.status_code == 200, r.text
        ok, refused, empty = r.json()["translations"]
        assert ok["status"] == "ok" and ok["translation"] and ok["error"] is None
        for failed, why in ((refused, "refusal"), (empty, "empty")):
            assert failed["status"] == "failed" and failed["translation"] is None
            assert failed["error"].startswith("no_translation") and why in failed["error"]
        # A request whose every item failed has nothing right to return: 422.
        r = httpx.post(f"{base}/v1/translate", json={"items": items[1:]}, timeout=30)
        assert r.status_code == 422 and r.json()["error"] == {
            "code": "no_translation",
            "message": r.json()["error"]["message"],
            "item": 0,
        }
        # Nothing failed was cached: the refused text reaches the engine on every request.
        asked = sum(1 for t in engine.texts if "拒绝" in t)
        r = httpx.post(f"{base}/v1/translate", json={"items": [items[1]]}, timeout=30)
        assert r.status_code == 422 and sum(1 for t in engine.texts if "拒绝" in t) > asked


def test_streams_end_with_the_routes_error_event_and_no_success(tmp_path: Path) -> None:
    engine = RefusingEngine()
    with live(config_for(tmp_path), engine) as (base, _):
        # The first line fails: nothing was sent yet, so it is an ordinary 422.
        first = {"model": "redtrans-zh-en", "stream": True, "messages": [{"role": "user", "content": "拒绝\n晚安"}]}
        r = httpx.post(f"{base}/v1/chat/completions", json=first, timeout=30)
        assert r.status_code == 422 and r.json()["error"]["code"] == "no_translation"
        # A later line fails: the 200 is gone, the stream ends with an error event and no [DONE].
        later = {**first, "messages": [{"role": "user", "content": "晚安\n拒绝吧"}]}
        r = httpx.post(f"{base}/v1/chat/completions", json=later, timeout=30)
        assert r.status_code == 200
        events = _sse(r.text)
        assert "[DONE]" not in events and REFUSAL not in r.text
        assert json.loads(events[-1])["error"]["code"] == "no_translation"
        r = httpx.post(
            f"{base}/v1/completions",
            json={"model": "redtrans-zh-en", "stream": True, "prompt": "晚安\n拒绝吧"},
            timeout=30,
        )
        events = _sse(r.text)
        assert "[DONE]" not in events and json.loads(events[-1])["error"]["code"] == "no_translation"
        r = httpx.post(
            f"{base}/v1/responses",
            json={"model": "redtrans-zh-en", "stream": True, "input": "晚安\n拒绝吧"},
            timeout=30,
        )
        kinds = [json.loads(e)["type"] for e in _sse(r.text)]
        assert kinds[-1] == "response.failed" and "response.completed" not in kinds
        failed = json.loads(_sse(r.text)[-1])["response"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "no_translation"


def test_the_official_client_does_not_reask_a_refusal(tmp_path: Path) -> None:
    """422 is a status the openai client does not retry (it retries 408, 409, 429 and 5xx): a deterministic
    refusal costs one request, not 1 + max_retries."""
    openai = pytest.importorskip("openai", reason="pip install openai (the dev extra has it)")
    engine = RefusingEngine()
    with live(config_for(tmp_path), engine) as (base, _):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=3)
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            client.chat.completions.create(model="redtrans-zh-en", messages=[{"role": "user", "content": "请拒绝这个"}])
        assert isinstance(refused.value.body, dict) and refused.value.body["code"] == "no_translation"
        # One request: the first answer and the translator's own retry, nothing more.
        assert sum(1 for t in engine.texts if "拒绝" in t) == 2
        with pytest.raises(openai.APIError) as midway:
            for _ in client.chat.completions.create(
                model="redtrans-zh-en", messages=[{"role": "user", "content": "晚安\n拒绝吧"}], stream=True
            ):
                pass
        assert isinstance(midway.value.body, dict) and midway.value.body["code"] == "no_translation"

"""The model registry, the embedded llama.cpp engine and the OpenAI-compatible engine against real servers."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time

import httpx
import pytest

from redtrans.engines import EngineError, GenRequest, create_engine
from redtrans.engines.models import MODELS, ModelError, assemble, get_spec, resolve_gguf, sha256_file
from redtrans.engines.openai import OpenAIConfig, OpenAIEngine


def test_registry_names_and_errors(tmp_path) -> None:
    assert set(MODELS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "gemma3-270m"}
    assert len(get_spec("qwen2.5-coder-1.5b").chunks) == 22
    assert get_spec("gemma3-270m").chat is False
    with pytest.raises(ModelError, match="unknown model 'gpt-9'"):
        get_spec("gpt-9")
    with pytest.raises(ModelError, match="model file not found"):
        resolve_gguf(str(tmp_path / "missing.gguf"))


@pytest.mark.model
def test_assembly_verifies_and_replaces_a_corrupt_file(tmp_path, gguf_path) -> None:
    """A damaged cached model is detected by sha256 and re-assembled atomically (smallest model)."""
    spec = get_spec("gemma3-270m")
    home = tmp_path / "home"
    target = home / "models" / spec.filename
    target.parent.mkdir(parents=True)
    shutil.copyfile(gguf_path("gemma3-270m"), target)
    with target.open("r+b") as handle:  # flip one byte in the middle
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    path = assemble(spec, home=home)
    assert path == target
    assert sha256_file(path) == spec.sha256
    assert not list(target.parent.glob("*.part"))  # no temp files left behind
    # Second call trusts the verification marker and returns at once.
    started = time.perf_counter()
    assert assemble(spec, home=home) == target
    assert time.perf_counter() - started < 1.0


@pytest.mark.model
def test_llamacpp_generates_chat_and_completion(engine_0p5b, gguf_path) -> None:
    results = engine_0p5b.generate(
        [
            GenRequest(messages=[{"role": "user", "content": "Say the word 'banana' and nothing else."}], max_tokens=8),
            GenRequest(prompt="1, 2, 3, 4,", max_tokens=6, stop=["\n"]),
        ]
    )
    assert "banana" in results[0].text.lower()
    assert results[0].completion_tokens > 0 and results[0].finish_reason == "stop"
    assert "5" in results[1].text
    # Greedy decoding is deterministic.
    again = engine_0p5b.generate([GenRequest(prompt="1, 2, 3, 4,", max_tokens=6, stop=["\n"])])
    assert again[0].text == results[1].text


@pytest.mark.model
def test_llamacpp_honours_a_grammar(engine_0p5b) -> None:
    free = engine_0p5b.generate([GenRequest(prompt="1, 2, 3, 4,", max_tokens=6, stop=["\n"])])
    assert any(c.isdigit() for c in free[0].text)
    no_digits = GenRequest(prompt="1, 2, 3, 4,", max_tokens=6, stop=["\n"], grammar="root ::= [^0-9]*")
    yes_no = GenRequest(
        messages=[{"role": "user", "content": "Is the sky blue? Answer yes or no."}],
        max_tokens=4,
        grammar='root ::= "yes" | "no"',
    )
    constrained = engine_0p5b.generate([no_digits, yes_no])
    assert not any(c.isdigit() for c in constrained[0].text), constrained[0].text
    assert constrained[1].text in {"yes", "no"}


@pytest.mark.model
def test_llamacpp_slots_keep_their_system_prompt(gguf_path) -> None:
    """Requests go to the slot that last ran the same system prompt, so no slot re-reads one: with two
    directions' prompts interleaved over two slots, every request after the first round reuses its whole
    system prompt from the slot's cache."""
    engine = create_engine(kind="llamacpp", model=str(gguf_path("qwen2.5-coder-0.5b")), parallel=2)
    systems = [
        "You translate the user's message from Chinese to English. Output only the translation, nothing else.",
        "You translate the user's message from English to Chinese. Output only the translation, nothing else.",
    ]
    words = ["你好", "hello", "谢谢", "thanks", "再见", "goodbye", "早上好", "good morning"]

    def request(i: int, word: str) -> GenRequest:
        messages = [{"role": "system", "content": systems[i % 2]}, {"role": "user", "content": word}]
        return GenRequest(messages=messages, max_tokens=8)

    try:
        first = engine.generate([request(i, w) for i, w in enumerate(words[:2])])
        system_tokens = min(r.prompt_tokens for r in first) - 8  # the user turn is a few tokens
        later = engine.generate([request(i, w) for i, w in enumerate(words)])
        assert all(r.cached_tokens >= system_tokens for r in later), [r.cached_tokens for r in later]
        assert [r.text for r in later[:2]] == [r.text for r in first]
        engine.close()
        with pytest.raises(EngineError, match="closed"):
            engine.generate([request(0, "你好")])
    finally:
        engine.close()  # closing twice is harmless


@pytest.mark.model
def test_base_model_refuses_chat_messages(gguf_path) -> None:
    engine = create_engine(kind="llamacpp", model=str(gguf_path("gemma3-270m")), parallel=1, options={"chat": False})
    try:
        with pytest.raises(EngineError, match="base model"):
            engine.generate([GenRequest(messages=[{"role": "user", "content": "hi"}])])
        out = engine.generate([GenRequest(prompt="The capital of France is", max_tokens=4)])
        assert out[0].text.strip()
    finally:
        engine.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.model
def test_openai_engine_against_real_local_server(engine_0p5b) -> None:
    """llama.cpp's own OpenAI-compatible HTTP server on loopback, reached over real HTTP."""
    base = engine_0p5b.listening_address.rstrip("/") + "/v1"
    dead = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens here: connection refused, then retry
    key = engine_0p5b.api_key
    config = OpenAIConfig(base_urls=[dead, base], concurrency=2, max_retries=2, backoff_s=0.01, api_key=key)
    engine = OpenAIEngine(config)
    requests = [
        GenRequest(messages=[{"role": "user", "content": "Say the word 'banana' and nothing else."}], max_tokens=8),
        GenRequest(prompt="1, 2, 3, 4,", max_tokens=6, stop=["\n"]),
        GenRequest(messages=[{"role": "user", "content": "Say the word 'apple' and nothing else."}], max_tokens=8),
    ]
    results = engine.generate(requests)
    assert "banana" in results[0].text.lower()
    assert "5" in results[1].text
    assert "apple" in results[2].text.lower()
    assert all(r.finish_reason in {"stop", "length"} and r.completion_tokens > 0 for r in results)
    # Same answers as in-process: the endpoint serves the same model greedily.
    direct = engine_0p5b.generate(requests[:1])
    assert direct[0].text == results[0].text
    # A grammar travels in the field the server reads (llama.cpp: `grammar`); without one configured, the
    # engine refuses instead of sending a field an OpenAI endpoint would reject.
    digits = GenRequest(prompt="1, 2, 3, 4,", max_tokens=6, stop=["\n"], grammar="root ::= [^0-9]*")
    constrained = OpenAIEngine(OpenAIConfig(base_urls=[base], grammar_field="grammar", api_key=key)).generate([digits])
    assert constrained[0].finish_reason != "error" and not any(c.isdigit() for c in constrained[0].text)
    with pytest.raises(EngineError, match="grammar_field"):
        engine.generate([digits])
    engine.close()


@pytest.mark.model
def test_the_embedded_listener_refuses_requests_without_its_key(engine_0p5b) -> None:
    """llama.cpp's HTTP listener on loopback answers only requests carrying the engine's own random key."""
    base = engine_0p5b.listening_address.rstrip("/")
    body = {"prompt": "1, 2, 3,", "max_tokens": 2}
    assert httpx.post(f"{base}/v1/completions", json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert httpx.post(f"{base}/v1/completions", json=body, headers=wrong, timeout=30).status_code == 401
    for route in ("/v1/models", "/metrics", "/slots", "/props"):
        assert httpx.get(base + route, timeout=30).status_code == 401, route
    right = {"Authorization": f"Bearer {engine_0p5b.api_key}"}
    assert httpx.post(f"{base}/v1/completions", json=body, headers=right, timeout=60).status_code == 200
    without = OpenAIEngine(OpenAIConfig(base_urls=[base + "/v1"], max_retries=0))
    [refused] = without.generate([GenRequest(prompt="1, 2, 3,", max_tokens=2)])
    assert refused.finish_reason == "error" and "HTTP 401" in (refused.error or "")
    without.close()


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        type(self).calls += 1
        time.sleep(1.0)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_openai_engine_times_out_and_retries_then_reports_error() -> None:
    """A stalled upstream (a fault no real server produces on demand) ends in an error result, not a hang."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        engine = OpenAIEngine(OpenAIConfig(base_urls=[url], timeout_s=0.2, max_retries=2, backoff_s=0.01))
        started = time.perf_counter()
        [result] = engine.generate([GenRequest(prompt="x", max_tokens=4)])
        assert result.finish_reason == "error" and "ReadTimeout" in (result.error or "")
        assert _SlowHandler.calls == 3  # first try + 2 retries
        assert time.perf_counter() - started < 5
    finally:
        server.shutdown()


def test_openai_engine_does_not_retry_client_errors() -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        calls = 0

        def do_POST(self) -> None:  # noqa: N802
            type(self).calls += 1
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "model not found"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        engine = create_engine(model=url, options={"max_retries": 3})
        [result] = engine.generate([GenRequest(prompt="x")])
        assert result.finish_reason == "error" and "HTTP 404" in (result.error or "")
        assert NotFound.calls == 1
    finally:
        server.shutdown()

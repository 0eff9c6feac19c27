"""`POST /v1/translate` through the real embedded model (Qwen2.5-Coder-0.5B GGUF, llama.cpp slots)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import regex

from redtrans.serve.app import create_app
from redtrans.serve.config import ServeConfig

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_translate_a_zh_and_an_en_post_with_the_embedded_model(engine_0p5b, tmp_path: Path) -> None:
    config = ServeConfig(cache=f"sqlite:///{tmp_path / 'cache.sqlite'}", access_log=False)
    app = create_app(config, engine_0p5b)
    items = [
        {"text": "今天的晚饭太好吃了！😋 @小红", "tgt": "en"},
        {"text": "This coffee shop is so cozy ☕️", "tgt": "zh"},
    ]

    async def body() -> tuple[dict, dict]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as client:
                first = await client.post("/v1/translate", json={"items": items})
                assert first.status_code == 200, first.text
                second = await client.post("/v1/translate", json={"items": items})
                return first.json(), second.json()

    first, second = asyncio.run(body())
    zh_en, en_zh = first["translations"]
    assert first["model"] == "qwen2.5-coder-0.5b" and first["engine_ms"] > 0
    assert zh_en["src"] == "zh" and zh_en["detected"] is True
    outside_mention = zh_en["translation"].replace("@小红", "")
    assert regex.search(r"\p{Latin}{3}", outside_mention) and not regex.search(r"\p{Han}", outside_mention)
    assert "😋" in zh_en["translation"] and "@小红" in zh_en["translation"]  # a mention is kept as written
    assert en_zh["src"] == "en"
    assert len(regex.findall(r"\p{Han}", en_zh["translation"])) >= 3 and "☕" in en_zh["translation"]
    assert "wrong_language" not in zh_en["flags"] + en_zh["flags"]
    assert [t["cached"] for t in second["translations"]] == [True, True]
    assert [t["translation"] for t in second["translations"]] == [zh_en["translation"], en_zh["translation"]]

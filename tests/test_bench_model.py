"""The benchmark with a real model: the small Qwen, SNS pipeline vs plain prompt, on four of our own posts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redtrans.bench import BenchConfig, run_bench
from redtrans.bench.systems import SystemSpec
from redtrans.engines import EngineSpec
from redtrans.languages import get_language
from redtrans.text.langid import letter_share

pytestmark = pytest.mark.model

POSTS = [
    {"id": "a", "source": "这家店太好吃了🔥", "reference": "This place is so delicious 🔥", "src": "zh", "tgt": "en"},
    {
        "id": "b",
        "source": "周末去爬山了，好累",
        "reference": "Went hiking this weekend, so tired",
        "src": "zh",
        "tgt": "en",
    },
    {
        "id": "c",
        "source": "This matcha latte is so good 😭",
        "reference": "这杯抹茶拿铁太好喝了😭",
        "src": "en",
        "tgt": "zh",
    },
    {"id": "d", "source": "Sunny day at the beach", "reference": "海边的晴天", "src": "en", "tgt": "zh"},
]


def test_sns_and_plain_systems_on_a_real_model(tmp_path: Path, engine_0p5b) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "posts.jsonl"
    suite.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in POSTS), encoding="utf-8")
    systems = [
        SystemSpec("plain", engine=EngineSpec(model="qwen2.5-coder-0.5b"), mode="plain"),
        SystemSpec("sns", engine=EngineSpec(model="qwen2.5-coder-0.5b")),
    ]
    config = BenchConfig(suite="jsonl", data=str(suite), systems=systems, out=tmp_path / "out", bootstrap_samples=50)
    engines = {"plain": engine_0p5b, "sns": engine_0p5b}
    results = run_bench(config, engines=engines, show_progress=False)
    for run in results["systems"]:
        assert run["translated_this_run"] == 4 and run["engine"]["model"] == "qwen2.5-coder-0.5b"
    by_id = {seg["id"]: seg for seg in results["segments"]}
    for post in POSTS:
        hyp = by_id[post["id"]]["systems"]["sns"]["hypothesis"]
        assert hyp.strip() and letter_share(hyp, get_language(post["tgt"]).script) > 0.5, hyp
    assert "🔥" in by_id["a"]["systems"]["sns"]["hypothesis"]  # the pipeline protects emoji
    zh_en = next(s for s in results["slices"] if s["key"] == "zh-en")
    assert zh_en["scores"]["sns"]["chrf++"] > 10 and zh_en["scores"]["sns"]["fidelity_n"] == 1
    assert set(results["significance"]["en-zh"]["systems"]) == {"plain", "sns"}
    # a second run reads every hypothesis from the caches
    again = run_bench(config, engines=engines, show_progress=False)
    assert [s["translated_this_run"] for s in again["systems"]] == [0, 0]
    assert again["slices"] == results["slices"]

"""`redtrans sample` on the real embedded models: Qwen2.5-Coder-0.5B (chat) and Gemma 3 270M (base model,
few-shot completion prompts) round-trip three short sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex

from redtrans.sampling.config import ModelSpec, load_config
from redtrans.sampling.scoring import sentence_bleu
from redtrans.sampling.stage import run_sample

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine_gemma(gguf_path):
    from redtrans.engines.llamacpp import LlamaCppConfig, LlamaCppEngine

    gguf_path("gemma3-270m")  # assembled (or a clear skip)
    engine = LlamaCppEngine(LlamaCppConfig(model="gemma3-270m", n_parallel=2, n_ctx_per_slot=1024))
    yield engine
    engine.close()


def test_round_trips_with_two_real_models_of_different_families(tmp_path: Path, engine_0p5b, engine_gemma) -> None:
    assert engine_0p5b.chat and not engine_gemma.chat  # chat prompts vs few-shot completion prompts
    source = tmp_path / "posts.jsonl"
    rows = [
        {"id": "p1", "text": "明天会下雨", "reference": "It will rain tomorrow"},
        {"id": "p2", "text": "这本书很好看"},
        {"id": "p3", "text": "我爱我的猫", "reference": "I love my cat"},
    ]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = load_config(None, {"corpora": [{"path": str(source), "src": "zh", "tgt": "en"}]})
    config.output_dir = str(tmp_path / "out")
    config.m1, config.m2 = ModelSpec(model="qwen2.5-coder-0.5b"), ModelSpec(model="gemma3-270m")
    config.score_workers, config.target_size, config.edges, config.weights = 1, 3, [0.0, 1.0], [1.0]
    config.allow_flagged_targets = True
    report = run_sample(config, engines={"m1": engine_0p5b, "m2": engine_gemma})

    journal = [json.loads(line) for line in config.journal_path.read_text(encoding="utf-8").splitlines()]
    assert [r["source_id"] for r in journal] == ["p1", "p2", "p3"]
    for row in journal:
        assert row["models"] == {"m1": "qwen2.5-coder-0.5b", "m2": "gemma3-270m"}
        for m in ("m1", "m2"):
            forward, back = row["forward"][m], row["back"][m]
            assert regex.search(r"\p{Latin}", forward), (m, forward)  # B is English
            assert back and regex.search(r"\p{Han}", back), (m, back)  # C is Chinese again
            assert row["rt_bleu"][m] == pytest.approx(sentence_bleu(back, row["source"], "zh"), abs=1e-4)
            assert 0.0 <= row["rt_bleu"][m] <= 1.0
        assert row["delta_bleu"] == pytest.approx(abs(row["rt_bleu"]["m1"] - row["rt_bleu"]["m2"]), abs=2e-4)
    assert report.stats["before"]["rows"] == 3

    sft = {r["id"]: r for r in map(json.loads, (config.out / "sft.jsonl").read_text(encoding="utf-8").splitlines())}
    assert sft["posts:1"]["messages"][-1]["content"] == "It will rain tomorrow"  # the reference wins
    assert sft["posts:1"]["origin"] == "reference"
    by_line = {r["id"]: r for r in journal}
    row2 = by_line["posts:2"]  # no reference: the forward of the better round trip
    best = "m1" if row2["rt_bleu"]["m1"] >= row2["rt_bleu"]["m2"] else "m2"
    assert sft["posts:2"]["origin"] == best
    assert sft["posts:2"]["messages"][-1]["content"] == row2["forward"][best]

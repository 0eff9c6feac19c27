"""The issue's end-to-end demo with real models: 20 sources of ../shared/data/parallel-zhen, `prefs generate`
with two real models (Qwen2.5-Coder-0.5B and Gemma 3 270M), `annotate` on SQLite, a headless Chromium that logs in
and scores all 20 (some with rewrites), and `prefs export` giving exactly the rows the rules say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("argon2", reason="needs the prefs extra: pip install 'redtrans[prefs]'")

from typer.testing import CliRunner  # noqa: E402

from redtrans.cli import app  # noqa: E402
from redtrans.prefs.config import GenerateConfig  # noqa: E402
from redtrans.prefs.export import Judgment, PrefItem, apply_rules  # noqa: E402
from redtrans.prefs.generate import run_generate  # noqa: E402
from redtrans.prefs.rows import candidate_rows  # noqa: E402
from tests.conftest import shared_file  # noqa: E402
from tests.test_annotate import browser, login, score_current, server_factory, take_next  # noqa: E402, F401

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_twenty_parallel_zhen_posts_with_two_real_models(
    tmp_path: Path,
    gguf_path: Any,
    browser: Any,  # noqa: F811
    server_factory: Any,  # noqa: F811
) -> None:
    zh = shared_file("parallel-zhen", "train.zh-en.zh")
    en = shared_file("parallel-zhen", "train.zh-en.en")
    gguf_path("qwen2.5-coder-0.5b"), gguf_path("gemma3-270m")  # assembled now (or skipped), loaded by name
    cands = tmp_path / "candidates.jsonl"
    cfg = GenerateConfig(
        input=zh, reference=en, output=cands, src="zh", tgt="en", limit=20, batch_size=20,
        systems=[{"kind": "llamacpp", "model": "qwen2.5-coder-0.5b", "parallel": 2},
                 {"kind": "llamacpp", "model": "gemma3-270m", "parallel": 2}],
    )  # fmt: skip
    report = run_generate(cfg)
    assert report.written == 20
    rows, failed = candidate_rows(cands)
    assert failed == 0 and len(rows) == 20 and all(r["reference"] for r in rows)
    server = server_factory(rows)
    page = login(browser.new_context(), server.url, "ann")
    take_next(page, server.url)
    plan: dict[str, tuple[int, int, str | None]] = {}
    while "/item/" in page.url:
        key = page.get_attribute("#item-meta", "data-key")
        assert key is not None
        n = len(plan)
        s1, s2 = [(4, 2), (2, 5), (1, 2), (3, 3), (2, 1)][n % 5]
        rewrite = next(r["reference"] for r in rows if str(r["id"]) == key) if s1 < 3 and s2 < 3 else None
        plan[key] = (s1, s2, rewrite)
        score_current(page, s1, s2, rewrite, keyboard=n % 2 == 0)
    assert len(plan) == 20
    out = tmp_path / "prefs.jsonl"
    result = CliRunner().invoke(app, ["prefs", "export", "--db", server.config.db, "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {str(r["id"]): r for r in rows}
    items = [
        PrefItem(k, by_id[k]["source"], "zh", "en", [c["text"] for c in by_id[k]["candidates"]],
                 [Judgment("ann", [s1, s2], rw)])
        for k, (s1, s2, rw) in sorted(plan.items(), key=lambda kv: int(kv[0]))
    ]  # fmt: skip
    export = apply_rules(items, 3)
    assert sorted(got, key=lambda r: r["id"]) == sorted(export.rows, key=lambda r: r["id"])
    assert export.stats.pairs == 8 and export.stats.ties == 4
    # every row left out names why (a real model's candidate or a reference that does not keep the post's lines)
    assert all(e["detail"] for e in export.excluded)

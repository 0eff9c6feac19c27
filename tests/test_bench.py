"""The benchmark harness without a model: suites, tags, sacrebleu scores, resume, reports, CLI."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from typer.testing import CliRunner

import redtrans
from redtrans.bench import BenchConfig, BenchError, SuiteError, SystemSpecError, load_suite, parse_system, run_bench
from redtrans.bench.scoring import (
    NeuralMetricError,
    comet_metric,
    corpus_scores,
    is_copy,
    is_empty,
    is_wrong_language,
)
from redtrans.bench.suites import (
    REDTRANS_BENCH_SHA256,
    WMT23_FILES,
    Segment,
    download_redtrans_bench,
    resolve_redtrans_bench,
    select,
    stratified_sample,
)
from redtrans.bench.systems import SystemSpec, can_reuse, check_cache_config, with_mode, with_parallel
from redtrans.bench.tags import segment_fidelity, tag_source
from redtrans.engines import EngineSpec
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult
from redtrans.engines.standin import StandInEngine
from redtrans.errors import InputError
from tests.conftest import shared_file

SACREBLEU_CLI = Path(sys.executable).parent / "sacrebleu"

# Our own posts (written for these tests), with hand-written references.
POSTS = [
    (
        "zh",
        "en",
        "comment",
        "这家店绝绝子，yyds！🔥 #探店[话题]#",
        "This shop is amazing, the GOAT! 🔥 #ShopVisit[Topic]#",
    ),
    (
        "zh",
        "en",
        "comment",
        "笑死我了[笑哭R] @小红薯 你也来试试",
        "I'm dying of laughter [Laugh Cry R] @小红薯 try it too",
    ),
    ("zh", "en", "note-title", "成都三天两夜攻略🐼", "Chengdu 3 days 2 nights guide 🐼"),
    ("zh", "en", "note-title", "有 ross 这样的姐夫也超好笑", "Having a brother-in-law like Ross is super funny"),
    (
        "zh",
        "en",
        "note-content",
        "第一天：宽窄巷子\n第二天：大熊猫基地 https://example.com/panda\n第三天：火锅！",
        "Day 1: Kuanzhai Alley\nDay 2: the panda base https://example.com/panda\nDay 3: hotpot!",
    ),
    (
        "zh",
        "en",
        "note-content",
        "这个粉底液真的不卡粉，油皮亲妈，持妆一整天",
        "This foundation never cakes, a savior for oily skin, lasts all day",
    ),
    ("en", "zh", "comment", "This matcha latte is so good 😭🍵", "这杯抹茶拿铁太好喝了😭🍵"),
    ("en", "zh", "comment", "no cap this is the best pizza in town @foodie", "不骗你，这是城里最好吃的披萨 @foodie"),
    ("en", "zh", "note-title", "My first marathon!! 🏃‍♀️✨", "我的第一个马拉松！！🏃‍♀️✨"),
    ("en", "zh", "note-title", "Budget trip to Kyoto", "京都穷游"),
    (
        "en",
        "zh",
        "note-content",
        "Weekend in Chengdu 🐼\nHotpot first, then pandas.\nDetails: https://example.com/chengdu",
        "成都周末🐼\n先吃火锅，再看熊猫。\n详情：https://example.com/chengdu",
    ),
    ("en", "zh", "note-content", "Honestly the price is a steal, go get it", "说实话这个价格太香了，冲"),
]


def write_suite(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i, (src, tgt, cat, source, ref) in enumerate(POSTS):
            row = {"id": f"p{i}", "source": source, "reference": ref, "src": src, "tgt": tgt, "category": cat}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def degrade(text: str, i: int) -> str:
    """A deterministic imperfect hypothesis: drop a word or character, sometimes the emoji."""
    if i % 4 == 0:
        return text.replace("🔥", "").replace("😭", "")
    if i % 4 == 1:
        return " ".join(text.split(" ")[:-1]) or text[:-1]
    if i % 4 == 2:
        return text[: max(1, len(text) * 2 // 3)]
    return text


def write_outputs(path: Path, fn=degrade) -> Path:  # type: ignore[no-untyped-def]
    with path.open("w", encoding="utf-8") as handle:
        for i, post in enumerate(POSTS):
            handle.write(json.dumps({"id": f"p{i}", "translation": fn(post[4], i)}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "suite.jsonl")


# -- scores -----------------------------------------------------------------------------------------------
def test_scores_equal_sacrebleus_own() -> None:
    zh = [p for p in POSTS if p[1] == "zh"]
    hyps, refs = [degrade(p[4], i) for i, p in enumerate(zh)], [p[4] for p in zh]
    ours = corpus_scores(hyps, refs, "zh")
    flat_h, flat_r = [" ".join(h.split()) for h in hyps], [" ".join(r.split()) for r in refs]
    assert ours.bleu_100 == pytest.approx(BLEU(tokenize="zh").corpus_score(flat_h, [flat_r]).score)
    assert ours.bleu == pytest.approx(ours.bleu_100 / 100)
    assert ours.chrf == pytest.approx(CHRF(word_order=2).corpus_score(flat_h, [flat_r]).score)
    assert "tok:zh" in ours.bleu_signature and "nw:2" in ours.chrf_signature
    # 13a sees unsegmented Chinese as one token a clause: the zh tokenizer is what makes BLEU meaningful.
    near = (["这杯抹茶拿铁真的好喝", "成都的火锅太辣了"], ["这杯抹茶拿铁太好喝了", "成都的火锅真的太辣了"])
    assert BLEU(tokenize="13a").corpus_score(near[0], [near[1]]).score < 1
    assert corpus_scores(*near, "zh").bleu > 0.3
    en = [p for p in POSTS if p[1] == "en"]
    hyps, refs = [degrade(p[4], i) for i, p in enumerate(en)], [p[4] for p in en]
    ours = corpus_scores(hyps, refs, "en")
    assert "tok:13a" in ours.bleu_signature
    assert ours.bleu_100 == pytest.approx(BLEU(tokenize="13a").corpus_score(hyps, [refs]).score)
    assert 0 < ours.bleu < 1


def test_failure_rates() -> None:
    assert is_empty("  \n") and not is_empty("x")
    assert is_copy("这家店绝绝子！", "这家店 绝绝子") and not is_copy("This shop", "这家店")
    assert not is_copy("🔥", "🔥")  # nothing translatable: not an untranslated copy
    assert is_wrong_language("这家店太好了", "zh", "en") and not is_wrong_language("This shop rocks", "zh", "en")
    assert not is_wrong_language("", "zh", "en")


def test_run_matches_the_sacrebleu_cli_on_the_written_files(tmp_path: Path, suite_file: Path) -> None:
    hyps = write_outputs(tmp_path / "mine.jsonl")
    out = tmp_path / "out"
    results = run_bench(
        BenchConfig(suite="jsonl", data=str(suite_file), systems=[parse_system(f"outputs:{hyps}")], out=out),
        show_progress=False,
    )
    by_key = {s["key"]: s for s in results["slices"]}
    for direction, tok in (("zh-en", "13a"), ("en-zh", "zh")):
        cli = subprocess.run(
            [
                str(SACREBLEU_CLI),
                str(out / "text" / f"{direction}.ref"),
                "-i",
                str(out / "text" / f"mine.{direction}.hyp"),
            ]
            + ["-m", "bleu", "chrf", "--chrf-word-order", "2", "-tok", tok, "-b", "-w", "4"],
            capture_output=True,
            text=True,
            check=True,
        )
        bleu, chrf = json.loads(cli.stdout)
        scores = by_key[direction]["scores"]["mine"]
        assert scores["bleu_100"] == pytest.approx(bleu, abs=0.006)
        assert scores["chrf++"] == pytest.approx(chrf, abs=0.006)
        assert f"tok:{tok}" in scores["bleu_signature"]
    assert results["suite"]["sha256"] and results["suite"]["total"] == len(POSTS)
    for name in ("results.json", "results.md", "report.html"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["slices"] == results["slices"]


def test_slices_and_significance(tmp_path: Path, suite_file: Path) -> None:
    good = write_outputs(tmp_path / "good.jsonl", lambda text, i: text)
    bad = write_outputs(tmp_path / "bad.jsonl")
    results = run_bench(
        BenchConfig(
            suite="jsonl",
            data=str(suite_file),
            systems=[
                parse_system(f"outputs:{bad}"),
                parse_system(f"name=ref,outputs={good}"),
                parse_system(f"name=same,outputs={bad}"),
            ],
            out=tmp_path / "out",
            bootstrap_samples=200,
        ),
        show_progress=False,
    )
    keys = {s["key"]: s for s in results["slices"]}
    assert {"zh-en", "zh-en/comment", "zh-en/note-title", "zh-en/note-content", "en-zh/comment"} <= set(keys)
    assert keys["zh-en/comment"]["n"] == 2 and keys["en-zh"]["n"] == 6
    assert keys["zh-en/#topic"]["n"] == 1 and keys["zh-en/#sticker"]["n"] == 1 and keys["en-zh/#url"]["n"] == 1
    ref = keys["zh-en"]["scores"]["ref"]
    assert ref["bleu"] == pytest.approx(1.0) and ref["chrf++"] == pytest.approx(100.0) and ref["fidelity"] == 1.0
    assert keys["zh-en"]["scores"]["bad"]["fidelity"] < 1.0  # dropped an emoji
    sig = results["significance"]["zh-en"]
    assert sig["baseline"] == "bad" and "bs:200" in sig["signatures"]["bleu"]
    assert sig["systems"]["ref"]["bleu"]["score"] == pytest.approx(100.0)
    assert 0 <= sig["systems"]["ref"]["bleu"]["p_value"] <= 1
    # A system identical to the baseline gets sacrebleu's floor p-value (a zero difference is not chance, by
    # design), so each test says how many segments differ and the report calls such a pair identical.
    n, changed = keys["zh-en"]["n"], sig["changed"]
    assert changed["same"] == 0 and 0 < changed["ref"] <= n
    assert sig["systems"]["same"]["chrf++"]["p_value"] < 0.05
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| zh-en/comment | 2 |" in markdown and "CC BY-NC-SA" not in markdown
    assert f"- zh-en: same vs bad: identical hypotheses on all {n} segments" in markdown
    assert f"- zh-en: ref vs bad ({changed['ref']} of {n} segments differ): bleu" in markdown
    # ... and the system table (one row per system, the README's shape) marks it `=` instead of a p-value.
    assert "| system | en-zh BLEU | en-zh chrF++ | en-zh s/segment | zh-en BLEU |" in markdown
    ref_row = next(line for line in markdown.splitlines() if line.startswith("| ref | "))
    assert "(+" in ref_row and ", p " in ref_row and "| same | " in markdown and "(=)" in markdown


def test_neural_metric_hook(tmp_path: Path, suite_file: Path) -> None:
    hyps = write_outputs(tmp_path / "h.jsonl")

    def length_ratio(sources: list[str], hyps: list[str], refs: list[str]) -> list[float]:
        return [len(h) / max(1, len(r)) for h, r in zip(hyps, refs, strict=True)]

    results = run_bench(
        BenchConfig(suite="jsonl", data=str(suite_file), systems=[parse_system(f"outputs:{hyps}")], out=tmp_path / "o"),
        neural_metric=length_ratio,
        show_progress=False,
    )
    assert 0 < results["slices"][0]["scores"]["h"]["neural"] < 1
    if shutil.which("comet-score") is None:
        with pytest.raises(NeuralMetricError, match="unbabel-comet"):
            comet_metric(str(tmp_path / "model.ckpt"))


# -- tags and fidelity ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "src", "tags"),
    [
        (
            "今天去了#哈尔滨[话题]# 太冷了[哭惹R]😭 @小红薯 http://xhslink.com/abc",
            "zh",
            ["emoji", "topic", "sticker", "mention", "url", "len:medium"],
        ),
        ("I love this look 🥰\nso cute", "en", ["emoji", "multi-line", "len:short"]),
        ("有 ross 这样的姐夫也超好笑", "zh", ["code-mixed", "len:short"]),
        ("这家店绝绝子", "zh", ["len:short"]),
        ("#ootd today vibes", "en", ["topic", "len:short"]),
        ("mail me at a.b@example.com", "en", ["url", "len:short"]),
        (
            "Our trip to Chengdu was amazing, we ate hotpot every single day and saw the pandas twice, " * 2,
            "en",
            ["len:long"],
        ),
        ("这个粉底液真的不卡粉，油皮亲妈，持妆一整天", "zh", ["len:medium"]),
    ],
)
def test_tags_of_own_posts(text: str, src: str, tags: list[str]) -> None:
    assert tag_source(text, src) == tags


def test_slang_tag_needs_terms() -> None:
    assert "slang" not in tag_source("这家店绝绝子", "zh")
    assert "slang" in tag_source("这家店绝绝子", "zh", slang_terms=["绝绝子"])


def test_fidelity_of_a_hypothesis() -> None:
    source = "第一天：宽窄巷子 #成都[话题]#\n第二天 @小红薯 🐼 https://example.com/p"
    kept = "Day 1: Kuanzhai Alley #Chengdu[Topic]#\nDay 2 @小红薯 🐼 https://example.com/p"
    full = segment_fidelity(source, kept)
    assert full.all_kept is True and full.as_dict() == dict.fromkeys(full.as_dict(), True)
    assert segment_fidelity(source, kept.replace("🐼", "")).emoji is False
    assert segment_fidelity(source, kept.replace("#Chengdu[Topic]#", "Chengdu")).markup is False
    assert segment_fidelity(source, kept.replace("@小红薯", "")).mentions is False
    assert segment_fidelity(source, kept.replace("https://example.com/p", "")).urls is False
    one_line = segment_fidelity(source, kept.replace("\n", " "))
    assert one_line.lines is False and one_line.all_kept is False
    nothing = segment_fidelity("今天好开心", "So happy today")
    assert nothing.all_kept is None and not nothing.relevant
    assert segment_fidelity("#ootd today", "今天 #ootd").markup is True
    assert segment_fidelity("#ootd today", "今天穿搭").markup is False


# -- suites -----------------------------------------------------------------------------------------------
def _segments() -> list[Segment]:
    out = []
    for direction in ("zh-en", "en-zh"):
        for category, n in (("comment", 30), ("note-title", 20), ("note-content", 3)):
            for i in range(n):
                src, tgt = direction.split("-")
                out.append(Segment(f"{direction}-{category}-{i}", "x", "y", src, tgt, category))
    return out


def test_stratified_sample() -> None:
    segments = _segments()
    chosen, strata = stratified_sample(segments, 30, seed=7)
    assert len(chosen) == 30 and sum(strata.values()) == 30
    assert strata["en-zh/note-content"] == 3 and strata["zh-en/note-content"] == 3  # small strata give all
    assert strata["zh-en/comment"] == 6 and strata["zh-en/note-title"] == 6
    counts = Counter(f"{s.direction}/{s.category}" for s in chosen)
    assert dict(counts) == {k: v for k, v in strata.items() if v}
    order = [segments.index(s) for s in chosen]
    assert order == sorted(order)
    assert [s.id for s in stratified_sample(segments, 30, seed=7)[0]] == [s.id for s in chosen]
    assert [s.id for s in stratified_sample(segments, 30, seed=8)[0]] != [s.id for s in chosen]
    assert len(stratified_sample(segments, 10_000)[0]) == len(segments)


def test_limit_and_sample_are_exclusive(suite_file: Path) -> None:
    suite = load_suite("jsonl", suite_file)
    with pytest.raises(SuiteError, match="not both"):
        select(suite, limit=3, sample=3)
    assert [s.id for s in select(suite, limit=3).segments] == ["p0", "p1", "p2"]


def test_langs_keeps_one_direction_of_a_two_way_suite() -> None:
    real = shared_file("redtrans-bench", "RedTrans-Bench.json")
    en_zh = load_suite("redtrans-bench", real, langs="en-zh")
    assert {s.direction for s in en_zh.segments} == {"en-zh"} and 0 < en_zh.total < 2858
    # Applied before the draw: en→zh strata sort first, so half the sample is the other's en→zh half.
    both = select(load_suite("redtrans-bench", real), sample=120, seed=0)
    assert [s.id for s in select(en_zh, sample=60, seed=0).segments] == [
        s.id for s in both.segments if s.direction == "en-zh"
    ]
    with pytest.raises(SuiteError, match="no zh-zh segments .it holds en-zh, zh-en"):
        load_suite("redtrans-bench", real, langs="zh-zh")
    with pytest.raises(SuiteError, match="look like zh-en"):
        load_suite("redtrans-bench", real, langs="english")


def test_redtrans_bench_from_data_env_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shared_file("redtrans-bench", "RedTrans-Bench.json")
    suite = load_suite("redtrans-bench", real)
    assert suite.total == 2858 and suite.sha256 == REDTRANS_BENCH_SHA256 and suite.license == "CC BY-NC-SA 4.0"
    assert suite.segments[0].id == "redtrans-bench:0" and suite.segments[0].direction == "zh-en"
    assert Counter(s.category for s in suite.segments) == {"note-title": 985, "comment": 939, "note-content": 934}
    assert load_suite("redtrans-bench", real.parent).paths == [str(real)]  # a folder works too
    monkeypatch.setenv("REDTRANS_DATA", str(real))
    assert resolve_redtrans_bench() == real
    monkeypatch.delenv("REDTRANS_DATA")
    monkeypatch.setenv("REDTRANS_HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    shutil.copy(real, tmp_path / "data" / "RedTrans-Bench.json")
    assert resolve_redtrans_bench() == tmp_path / "data" / "RedTrans-Bench.json"


def test_a_modified_redtrans_bench_file_is_noted(tmp_path: Path) -> None:
    rows = [{"zh": "你好", "en": "hello", "source": "comment", "src_lang": "zh", "dst_lang": "en"}]
    path = tmp_path / "RedTrans-Bench.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    suite = load_suite("redtrans-bench", path)
    assert suite.segments == [Segment("redtrans-bench:0", "你好", "hello", "zh", "en", "comment")]
    assert "not comparable" in suite.notes[0]
    rows.append({"zh": "", "en": "x", "source": "comment", "src_lang": "zh", "dst_lang": "en"})
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(SuiteError, match="item 1: the 'zh' \\(source\\) text is empty"):
        load_suite("redtrans-bench", path)
    path.write_text(json.dumps([{"zh": "x", "source": "comment", "src_lang": "zh"}]), encoding="utf-8")
    with pytest.raises(SuiteError, match="item 0: missing field 'dst_lang'"):
        load_suite("redtrans-bench", path)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_is_sha256_checked(tmp_path: Path, file_server) -> None:  # type: ignore[no-untyped-def]
    root, base = file_server
    (root / "RedTrans-Bench.json").write_text("[]", encoding="utf-8")
    target = tmp_path / "home" / "data" / "RedTrans-Bench.json"
    with pytest.raises(SuiteError, match="sha256 is .* expected " + REDTRANS_BENCH_SHA256):
        download_redtrans_bench(target, f"{base}/RedTrans-Bench.json")
    assert not target.exists()
    shutil.copy(shared_file("redtrans-bench", "RedTrans-Bench.json"), root / "RedTrans-Bench.json")
    assert download_redtrans_bench(target, f"{base}/RedTrans-Bench.json") == target
    assert target.stat().st_size > 1_000_000


def test_unreachable_download_says_how_to_supply_the_file(tmp_path: Path) -> None:
    target = tmp_path / "data" / "RedTrans-Bench.json"
    with pytest.raises(SuiteError) as info:
        download_redtrans_bench(target, "http://127.0.0.1:9/RedTrans-Bench.json", timeout=5)
    message = str(info.value)
    for expected in ("--data PATH", "$REDTRANS_DATA", str(target), "HC-Guo/RedTrans", "CC BY-NC-SA 4.0"):
        assert expected in message


def test_langs_keeps_one_direction_of_wmt23(tmp_path: Path) -> None:
    for (src, tgt), (src_name, ref_name) in WMT23_FILES.items():
        (tmp_path / src_name).write_text(f"{src} one\n{src} two\n", encoding="utf-8")
        (tmp_path / ref_name).write_text(f"{tgt} one\n{tgt} two\n", encoding="utf-8")
    assert Counter(s.direction for s in load_suite("wmt23", tmp_path).segments) == {"zh-en": 2, "en-zh": 2}
    only = load_suite("wmt23", tmp_path, langs="en-zh")
    assert [(s.direction, s.source) for s in only.segments] == [("en-zh", "en one"), ("en-zh", "en two")]
    assert only.total == 2
    with pytest.raises(SuiteError, match="wmt23 has no zh-zh segments"):
        load_suite("wmt23", tmp_path, langs="zh-zh")


def test_wmt23_and_pair_suites(tmp_path: Path) -> None:
    src = shared_file("wmt23", "generaltest2023.zh-en.src.zh")
    wmt = load_suite("wmt23", src.parent)
    assert Counter(s.direction for s in wmt.segments) == {"zh-en": 1976, "en-zh": 2074}
    (tmp_path / "a.zh").write_text("你好\n再见\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("hello\nbye\n", encoding="utf-8")
    pair = load_suite("pair", f"{tmp_path / 'a.zh'},{tmp_path / 'a.en'}")
    assert [(s.id, s.src, s.tgt, s.reference) for s in pair.segments] == [
        ("pair:zh-en:0", "zh", "en", "hello"),
        ("pair:zh-en:1", "zh", "en", "bye"),
    ]
    (tmp_path / "b.en").write_text("hello\n", encoding="utf-8")
    with pytest.raises(SuiteError, match="has 2 lines but .* has 1"):
        load_suite("pair", f"{tmp_path / 'a.zh'},{tmp_path / 'b.en'}")
    with pytest.raises(SuiteError, match="unknown suite"):
        load_suite("flores")


# -- systems ----------------------------------------------------------------------------------------------
def test_parse_system() -> None:
    assert parse_system("default") == SystemSpec("default")
    plain = parse_system("plain")
    assert plain.mode == "plain" and plain.engine is not None and plain.engine.model == "qwen2.5-coder-1.5b"
    out = parse_system("outputs:runs/gpt.jsonl")
    assert (out.kind, out.name, out.outputs) == ("outputs", "gpt", "runs/gpt.jsonl")
    custom = parse_system("name=srv,engine=openai,model=http://a/v1,http://b/v1,served_model=m,parallel=8,mode=plain")
    assert custom.engine is not None
    assert (custom.name, custom.engine.kind, custom.engine.model, custom.mode) == (
        "srv",
        "openai",
        "http://a/v1,http://b/v1",
        "plain",
    )
    assert (custom.engine.parallel, custom.engine.served_model, custom.engine.options) == (8, "m", {})
    small = parse_system("model=qwen2.5-coder-0.5b,parallel=2")
    assert small.engine == EngineSpec(model="qwen2.5-coder-0.5b", parallel=2)
    # any other key is a field of the engine's own config, typed by it
    tuned = parse_system("name=t,model=qwen2.5-coder-0.5b,n_threads=2,chat=false")
    assert tuned.engine is not None and tuned.engine.options == {"n_threads": 2, "chat": False}
    assert tuned.engine.engine_config().n_threads == 2  # type: ignore[attr-defined]
    for bad in ("nonsense", "name=x,colour=red", "mode=fancy", "outputs:", "model=x,parallel=0",
                "model=x,served_model=m", "model=x,n_parallel=2,parallel=3"):  # fmt: skip
        with pytest.raises(SystemSpecError):
            parse_system(bad)


def test_quality_levers_as_systems_and_the_slang_slice(tmp_path: Path, suite_file: Path) -> None:
    """Each lever of docs/quality.md is a system key: bench runs them beside the default, binds each cache to its
    levers, and slices the posts the shipped term base matches as `slang` (绝绝子/yyds, 油皮亲妈, no cap)."""
    levers = parse_system("name=all,engine=standin,termbase=builtin,examples=builtin,shots=1,candidates=2")
    assert levers.levers == {"termbases": ["builtin"], "examples": "builtin", "shots": 1, "candidates": 2}
    assert parse_system("name=x,engine=standin,termbase=none").levers == {"termbases": []}
    assert "translator" not in parse_system("name=d,engine=standin").config()  # old bindings unchanged
    for bad in ("name=x,engine=standin,shots=two", "name=x,engine=standin,candidates=-1",
                f"name=x,engine=standin,termbase={tmp_path / 'missing.yaml'}"):  # fmt: skip
        with pytest.raises((SystemSpecError, InputError)):
            parse_system(bad)
    systems = [parse_system("name=base,engine=standin"), parse_system("name=tb,engine=standin,termbase=builtin")]
    results = run_bench(
        BenchConfig(suite="jsonl", data=str(suite_file), systems=systems, out=tmp_path / "out", bootstrap_samples=100),
        show_progress=False,
    )
    keys = {s["key"]: s for s in results["slices"]}
    assert keys["zh-en/#slang"]["n"] >= 2 and keys["en-zh/#slang"]["n"] >= 1
    assert set(keys["zh-en/#slang"]["scores"]) == {"base", "tb"}
    binding = json.loads(next((tmp_path / "out" / "hyps").glob("tb.config.json")).read_text())
    assert binding["translator"] == {"termbases": ["builtin"]}
    assert results["significance"]["zh-en"]["systems"]["tb"]["chrf++"]["p_value"] is not None
    # The posts without slang are a slice of their own, and the lever's difference is tested on both parts.
    for direction in ("zh-en", "en-zh"):
        slang, rest = keys[f"{direction}/#slang"], keys[f"{direction}/#slang-free"]
        assert slang["n"] + rest["n"] == keys[direction]["n"]
        for key in (f"{direction}/#slang", f"{direction}/#slang-free"):
            assert results["significance"][key]["n"] == keys[key]["n"]
            assert results["significance"][key]["systems"]["tb"]["chrf++"]["p_value"] is not None
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "zh-en/#slang-free: tb vs base" in markdown
    n_slang, n_free = keys["zh-en/#slang"]["n"], keys["zh-en/#slang-free"]["n"]
    assert f"| zh-en/#slang (n {n_slang}) chrF++ | zh-en/#slang-free (n {n_free}) chrF++ |" in markdown


def test_a_lever_system_reuses_the_baselines_rows_where_it_sends_the_same_requests(
    tmp_path: Path, suite_file: Path
) -> None:
    """On a deterministic engine a result is a function of its requests: where the term base matches nothing, the
    `tb` system's prompts are the baseline's, so bench takes those rows from the baseline (marked, not timed) and
    sends only the posts with hints to the engine. The hypotheses equal those of translating everything."""
    base, tb = (
        with_mode(parse_system(s), None)
        for s in ("name=base,engine=standin", "name=tb,engine=standin,termbase=builtin")
    )
    assert can_reuse(base, tb) and not can_reuse(tb, tb)
    for other in ("name=x,engine=standin,candidates=2", "name=x,engine=standin,model=other,termbase=builtin",
                  "name=x,engine=standin,mode=plain"):  # fmt: skip
        assert not can_reuse(base, with_mode(parse_system(other), None))
    # the throughput mode: what is decoded together changes outputs
    throughput = (with_mode(parse_system(s), False) for s in ("name=base,engine=standin", "name=tb,engine=standin"))
    assert not can_reuse(*throughput)

    def bench(out: str, engines: dict[str, Engine], reuse: bool = True, systems: tuple = (base, tb)) -> dict:
        config = BenchConfig(
            suite="jsonl", data=str(suite_file), systems=list(systems), out=tmp_path / out, reuse=reuse
        )
        return run_bench(config, engines=engines, show_progress=False)

    alone = StandInEngine()
    bench("alone", {"base": alone}, systems=(base,))
    engine = StandInEngine()
    reused = bench("reused", {"base": engine, "tb": engine})
    rows = _cache_lines(tmp_path / "reused" / "hyps" / "tb.jsonl")
    slang = {s["id"] for s in reused["segments"] if "slang" in s["tags"]}
    assert 0 < len(slang) < len(POSTS)
    assert {r["id"] for r in rows if "reused_from" in r} == {f"p{i}" for i in range(len(POSTS))} - slang
    assert all(r["reused_from"] == "base" and "seconds" not in r for r in rows if r["id"] not in slang)
    system = reused["systems"][1]
    assert (system["reused"], system["reused_this_run"], system["translated_this_run"]) == (
        len(POSTS) - len(slang),
        len(POSTS) - len(slang),
        len(slang),
    )
    assert system["timed"] == len(slang)
    markdown = (tmp_path / "reused" / "results.md").read_text(encoding="utf-8")
    assert (
        f"Rows taken from base (the same requests in the deterministic mode, so the same result): "
        f"tb {len(POSTS) - len(slang)}." in markdown
    )

    everything = StandInEngine()
    full = bench("full", {"base": everything, "tb": everything}, reuse=False)
    assert full["systems"][1]["reused"] == 0
    # only the posts with hints went to the engine
    assert alone.served < engine.served < everything.served
    assert [s["systems"] for s in full["segments"]] == [s["systems"] for s in reused["segments"]]
    # two engine objects: nothing says they decode alike, so nothing is reused
    apart = bench("apart", {"base": StandInEngine(), "tb": StandInEngine()})
    assert apart["systems"][1]["reused"] == 0
    # all from the cache, no engine loaded: the report still names each system's mode (the cache binds it)
    cached = bench("reused", {})
    assert [s["engine"]["from_cache"] for s in cached["systems"]] == [True, True]
    markdown = (tmp_path / "reused" / "results.md").read_text(encoding="utf-8")
    assert "Decoding: base: deterministic (standin); tb: deterministic (standin)." in markdown
    # the throughput mode read from the cache: the report names the parallelism the spec asks for
    fast = [
        with_mode(parse_system(s), None)
        for s in ("name=p2,engine=standin,parallel=2", "name=own,engine=standin,parallelism=3")
    ]
    bench("fast", {"p2": StandInEngine(), "own": StandInEngine()}, systems=fast)
    assert all(s["engine"]["from_cache"] for s in bench("fast", {}, systems=fast)["systems"])
    markdown = (tmp_path / "fast" / "results.md").read_text(encoding="utf-8")
    assert "Decoding: p2: throughput (parallelism 2); own: throughput (parallelism 3)." in markdown


def test_parallel_reaches_the_engine_spec_unless_the_system_sets_it() -> None:
    assert with_parallel(parse_system("default"), 4).engine == EngineSpec(model="qwen2.5-coder-1.5b", parallel=4)
    assert with_parallel(parse_system("model=x,parallel=2"), 4).engine.parallel == 2  # type: ignore[union-attr]
    own = with_parallel(parse_system("model=x,n_parallel=2"), 4).engine
    assert own is not None and own.parallel is None and own.engine_config().n_parallel == 2  # type: ignore[attr-defined]
    endpoint = with_parallel(parse_system("model=http://a/v1"), 16).engine
    assert endpoint is not None and endpoint.engine_config().concurrency == 16  # type: ignore[attr-defined]
    outputs = parse_system("outputs:x.jsonl")
    assert with_parallel(outputs, 4) == outputs


def test_an_unknown_engine_option_fails_before_any_model_loads(
    tmp_path: Path, suite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redtrans.bench import systems
    from redtrans.cli import app

    def no_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("an engine was built")

    monkeypatch.setattr(systems, "create_engine", no_engine)
    with pytest.raises(SystemSpecError, match="n_thread: unknown field"):
        parse_system("name=x,model=qwen2.5-coder-0.5b,n_thread=2")
    args = ["bench", "--suite", "jsonl", "--data", str(suite_file), "--out", str(tmp_path / "o"),
            "-S", "name=x,model=qwen2.5-coder-0.5b,n_thread=2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "n_thread: unknown field" in result.output
    assert not (tmp_path / "o").exists()


def test_the_cache_binding_follows_the_engine_spec(tmp_path: Path) -> None:
    path = tmp_path / "hyps" / "x.config.json"
    spec = parse_system("name=x,model=qwen2.5-coder-0.5b,parallel=2")
    check_cache_config(path, spec.config())
    check_cache_config(path, parse_system("name=x,model=qwen2.5-coder-0.5b,parallel=2").config())  # unchanged
    for changed in ("name=x,model=qwen2.5-coder-1.5b,parallel=2", "name=x,model=qwen2.5-coder-0.5b,parallel=2,"
                    "n_threads=1", "name=x,model=qwen2.5-coder-0.5b,parallel=2,mode=plain"):  # fmt: skip
        with pytest.raises(SystemSpecError, match="were made with"):
            check_cache_config(path, parse_system(changed).config())
    # a binding written by the previous version (engine options at the top level) still binds its cache
    legacy = {"name": "x", "kind": "engine", "engine": None, "model": "qwen2.5-coder-0.5b", "mode": "sns",
              "profile": "rednote", "options": {"n_parallel": 2}}  # fmt: skip
    path.write_text(json.dumps(legacy), encoding="utf-8")
    check_cache_config(path, spec.config())
    assert json.loads(path.read_text(encoding="utf-8")) == spec.config()  # rewritten in today's form
    path.write_text(json.dumps({**legacy, "options": {"n_parallel": 4}}), encoding="utf-8")
    with pytest.raises(SystemSpecError, match="were made with"):
        check_cache_config(path, spec.config())


def test_outputs_must_cover_the_selection(tmp_path: Path, suite_file: Path) -> None:
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": "p0", "translation": "x"}) + "\n", encoding="utf-8")
    config = BenchConfig(
        suite="jsonl", data=str(suite_file), systems=[parse_system(f"outputs:{partial}")], out=tmp_path
    )
    with pytest.raises(BenchError, match="lack 11 of the 12 selected segments"):
        run_bench(config, show_progress=False)
    text = tmp_path / "lines.txt"  # plain text: one hypothesis per line of the whole suite
    text.write_text("".join(p[4].replace("\n", " ") + "\n" for p in POSTS), encoding="utf-8")
    config.systems = [parse_system(f"outputs:{text}")]
    results = run_bench(config, show_progress=False)
    assert results["slices"][0]["scores"]["lines"]["chrf++"] == pytest.approx(100.0)


class ScriptedEngine(Engine):
    """A stand-in translator for the crash tests: returns the reference of a known post, and can fail or
    slow down after a number of requests (the faults a real engine can't be made to produce on cue)."""

    name = "scripted"
    model = "scripted"
    parallelism = 2

    def __init__(
        self, fail_after: int | None = None, delay: float = 0.0, no_answer_for: frozenset[str] = frozenset()
    ) -> None:
        self.fail_after, self.delay, self.calls, self.no_answer_for = fail_after, delay, 0, no_answer_for
        self.answers = {source: ref for _, _, _, source, ref in POSTS}

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results = []
        for request in requests:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise EngineError("scripted engine went away")
            self.calls += 1
            time.sleep(self.delay)
            text = request.messages[-1]["content"] if request.messages else request.prompt or ""
            text = text.split("\n\n", 1)[-1]  # the plain prompt puts the post after a blank line
            if text in self.no_answer_for:  # an upstream error on this one request: the row fails, the run goes on
                results.append(GenResult.failed("scripted: no answer for this post", 0.0))
                continue
            results.append(GenResult(self.answers.get(text, text.upper())))
        return results


def _cache_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_resume_after_the_engine_fails(tmp_path: Path, suite_file: Path) -> None:
    config = BenchConfig(
        suite="jsonl",
        data=str(suite_file),
        systems=[SystemSpec("scripted", engine=EngineSpec(model="scripted"), mode="plain")],
        out=tmp_path,
    )
    # plain mode sends each post as one request; windows are 4 × parallelism = 8 items
    with pytest.raises(EngineError):
        run_bench(config, engines={"scripted": ScriptedEngine(fail_after=9)}, show_progress=False)
    cache = tmp_path / "hyps" / "scripted.jsonl"
    first = _cache_lines(cache)
    assert [r["id"] for r in first] == [f"p{i}" for i in range(8)]
    engine = ScriptedEngine(delay=0.05)
    results = run_bench(config, engines={"scripted": engine}, show_progress=False)
    assert engine.calls == len(POSTS) - 8  # only the missing segments were translated
    rows = _cache_lines(cache)
    assert rows[:8] == first and [r["id"] for r in rows] == [f"p{i}" for i in range(12)]
    system = results["systems"][0]
    assert system["translated_this_run"] == 4
    assert results["slices"][0]["scores"]["scripted"]["chrf++"] == pytest.approx(100.0)
    # Each row records its time, so the time per segment spans both runs; this run's rows add up to its time.
    assert all(r["seconds"] >= 0 for r in rows) and system["timed"] == 12
    assert 4 * 0.05 <= sum(r["seconds"] for r in rows[8:]) <= system["seconds_this_run"] + 0.05  # (rounded to 0.1)
    assert system["seconds_per_segment"] == pytest.approx(sum(r["seconds"] for r in rows) / 12, abs=1e-3)
    by_group = {sl["group"]: sl for sl in results["slices"]}  # (the first direction slice comes first)
    assert results["slices"][0]["scores"]["scripted"]["timed"] == results["slices"][0]["n"]
    assert "seconds_per_segment" not in by_group["category"]["scores"]["scripted"]  # a window's time is not its own
    # everything cached: no engine is built at all ("scripted" is no real model, so building one would fail)
    again = run_bench(config, show_progress=False)
    assert again["systems"][0]["translated_this_run"] == 0 and again["systems"][0]["engine"]["from_cache"]
    assert again["slices"] == results["slices"]
    # rows cached before timing was recorded are left out of the mean, not counted as zero
    untimed = [{k: v for k, v in r.items() if k != "seconds"} if i < 8 else r for i, r in enumerate(rows)]
    cache.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in untimed), encoding="utf-8")
    partial = run_bench(config, show_progress=False)["systems"][0]
    assert partial["timed"] == 4
    assert partial["seconds_per_segment"] == pytest.approx(sum(r["seconds"] for r in rows[8:]) / 4, abs=1e-3)
    assert "| s/segment (timed) |" in (tmp_path / "results.md").read_text(encoding="utf-8")
    # a hypothesis made with another prompt version is stale: only that one is made again
    rows[0]["prompt_version"] = "rt-prompt-0"
    cache.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    engine = ScriptedEngine()
    assert (
        run_bench(config, engines={"scripted": engine}, show_progress=False)["systems"][0]["translated_this_run"] == 1
    )
    assert engine.calls == 1
    # the same name with another configuration must not reuse these hypotheses
    config.systems = [SystemSpec("scripted", engine=EngineSpec(model="scripted"), mode="sns")]
    with pytest.raises(BenchError, match="were made with"):
        run_bench(config, engines={"scripted": ScriptedEngine()}, show_progress=False)


def test_a_rerun_retries_failed_rows_even_when_every_row_is_cached(tmp_path: Path, suite_file: Path) -> None:
    """A failed row is not done: with every segment in the cache, one of them failed, the next run still loads
    the engine and retries it (and the progress counts it as left to do)."""
    config = BenchConfig(
        suite="jsonl",
        data=str(suite_file),
        systems=[SystemSpec("scripted", engine=EngineSpec(model="scripted"), mode="plain")],
        out=tmp_path,
    )
    failing = ScriptedEngine(no_answer_for=frozenset({POSTS[1][3]}))
    first = run_bench(config, engines={"scripted": failing}, show_progress=False)
    assert first["systems"][0]["failed"] == 1
    assert "scripted: **1 failed segment** (scored as empty" in (tmp_path / "results.md").read_text(encoding="utf-8")
    engine = ScriptedEngine()
    again = run_bench(config, engines={"scripted": engine}, show_progress=False)
    assert engine.calls == 1 and again["systems"][0]["translated_this_run"] == 1
    assert again["systems"][0]["failed"] == 0


def test_a_cache_is_done_for_its_resume_key_not_its_ids(tmp_path: Path, suite_file: Path) -> None:
    """Issue 32 item 3: a cached hypothesis is reused only for the exact settings it was made with: editing the
    system's term base file (same name, same path) redoes every segment; an unchanged rerun redoes none."""
    termbase = tmp_path / "slang.yaml"
    entry = "entries:\n  - {term: 绝绝子, meaning: amazing, translations: {en: [%s]}}\n"
    termbase.write_text("lang: zh\n" + entry % "amazing", encoding="utf-8")
    system = SystemSpec("tb", engine=EngineSpec(kind="standin"), levers={"termbases": [str(termbase)]})
    config = BenchConfig(suite="jsonl", data=str(suite_file), systems=[system], out=tmp_path)
    first = run_bench(config, show_progress=False)
    rows = _cache_lines(tmp_path / "hyps" / "tb.jsonl")
    assert len(rows) == len(POSTS) and len({r["settings"] for r in rows}) == 1 and all(r["key"] for r in rows)
    assert first["systems"][0]["translated_this_run"] == len(POSTS) and first["systems"][0]["failed"] == 0
    assert run_bench(config, show_progress=False)["systems"][0]["translated_this_run"] == 0
    termbase.write_text("lang: zh\n" + entry % "incredible", encoding="utf-8")
    assert run_bench(config, show_progress=False)["systems"][0]["translated_this_run"] == len(POSTS)


def test_resume_after_a_kill(tmp_path: Path, suite_file: Path) -> None:
    script = tmp_path / "run.py"
    # The repository (for tests.*) and the redtrans this test imports (a worktree's src, not the installed one).
    paths = [str(Path(__file__).resolve().parent.parent), str(Path(redtrans.__file__).parent.parent)]
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path[:0] = {paths!r}
            from tests.test_bench import ScriptedEngine
            from redtrans.bench import BenchConfig, run_bench
            from redtrans.bench.systems import SystemSpec
            from redtrans.engines import EngineSpec
            config = BenchConfig(suite="jsonl", data={str(suite_file)!r}, out={str(tmp_path)!r},
                                 systems=[SystemSpec("scripted", engine=EngineSpec(model="scripted"), mode="plain")])
            engine = ScriptedEngine(delay=0.3)
            engine.parallelism = 1  # windows of 4 posts: results are appended 4 at a time
            run_bench(config, engines={{"scripted": engine}}, show_progress=False)
            """
        ),
        encoding="utf-8",
    )
    cache = tmp_path / "hyps" / "scripted.jsonl"
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": ""})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if cache.is_file() and len(cache.read_text(encoding="utf-8").splitlines()) >= 3:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = _cache_lines(cache)
    assert 3 <= len(done_before) < len(POSTS), "the run was killed mid-way"
    engine = ScriptedEngine()
    results = run_bench(
        BenchConfig(
            suite="jsonl",
            data=str(suite_file),
            out=tmp_path,
            systems=[SystemSpec("scripted", engine=EngineSpec(model="scripted"), mode="plain")],
        ),
        engines={"scripted": engine},
        show_progress=False,
    )
    assert engine.calls == len(POSTS) - len(done_before)
    assert sorted(r["id"] for r in _cache_lines(cache)) == sorted(f"p{i}" for i in range(len(POSTS)))
    assert results["suite"]["selected"] == len(POSTS)


# -- CLI and HTML -----------------------------------------------------------------------------------------
def test_cli_bench(tmp_path: Path, suite_file: Path) -> None:
    from redtrans.cli import app

    hyps = write_outputs(tmp_path / "mine.jsonl")
    args = [
        "bench",
        "--suite",
        "jsonl",
        "--data",
        str(suite_file),
        "-S",
        f"outputs:{hyps}",
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| zh-en/note-title | 2 |" in result.stdout
    assert (tmp_path / "o" / "report.html").is_file()
    bad = CliRunner().invoke(app, ["bench", "--suite", "pair", "--data", "x.zh"])
    assert bad.exit_code == 2 and "SRC_FILE,REF_FILE" in bad.output
    bad = CliRunner().invoke(app, ["bench", "--suite", "jsonl", "--data", str(suite_file), "-S", "oops"])
    assert bad.exit_code == 2 and "cannot read system" in bad.output


def test_html_report_opens_in_headless_chromium(tmp_path: Path, suite_file: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium (make test installs it)")
    from playwright.sync_api import sync_playwright

    good = write_outputs(tmp_path / "good.jsonl", lambda text, i: text)
    bad = write_outputs(tmp_path / "bad.jsonl")
    out = tmp_path / "out"
    run_bench(
        BenchConfig(
            suite="jsonl",
            data=str(suite_file),
            systems=[parse_system(f"outputs:{bad}"), parse_system(f"outputs:{good}")],
            out=out,
            bootstrap_samples=100,
            worst=5,
        ),
        show_progress=False,
    )
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "").replace("http://xhslink", "")
    assert "<script src" not in html and "<link" not in html
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: requests.append(req.url))
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert page.locator("svg").count() >= 3
            assert page.locator("#worst tbody tr").count() == 10
            assert page.locator("#wcount").inner_text() == "10 shown"
            page.select_option("#wsystem", "bad")
            assert page.locator("#wcount").inner_text() == "5 shown"
            page.fill("#wfilter", "marathon")
            assert page.locator("#worst tbody tr:visible").count() <= 1
            assert "zh-en/note-content" in page.inner_text("body")
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith("file://") for url in requests), requests

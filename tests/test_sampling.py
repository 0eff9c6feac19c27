"""`redtrans sample` without a model: inputs, scores, buckets and the draw, export, resume after a kill, CLI.

The stand-in engine (redtrans.engines.standin) stands in for the LLMs so the pipeline itself is what runs;
the real embedded models are exercised in test_sampling_models.py.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU
from typer.testing import CliRunner

from redtrans.engines.base import EngineError
from redtrans.engines.spec import EngineSpec
from redtrans.jsonl import JSONLError
from redtrans.sampling.buckets import BucketError, Buckets, allocate, draw
from redtrans.sampling.config import ConfigError, ModelSpec, SampleConfig, cli_overrides, load_config
from redtrans.sampling.export import choose_target
from redtrans.sampling.inputs import Corpus, MixState, mix, quotas
from redtrans.sampling.roundtrip import build_engine
from redtrans.sampling.scoring import ScorePool, score_chunk, sentence_bleu
from redtrans.sampling.stage import run_sample

ROOT = Path(__file__).resolve().parent.parent
ZH = ["今天的晚饭太好吃了", "你不是我的菜", "这个价格也太香了吧", "周末一起去爬山吧", "我的猫今天特别乖",
      "这家店的咖啡一般般", "下雨天最适合睡觉", "新买的耳机音质很好", "地铁上人好多啊", "明天要早起上班"]  # fmt: skip
EN = ["Dinner today was so good", "You're not my type", "This price is such a steal", "Let's go hiking this weekend",
      "My cat was really good today", "The coffee here is so-so", "Rainy days are best for sleeping",
      "My new headphones sound great", "So many people on the subway",
      "Have to get up early for work tomorrow"]  # fmt: skip


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def standin(salt: int, **options: object) -> ModelSpec:
    return ModelSpec(kind="standin", options={"salt": salt, **options})


def pair_config(tmp_path: Path, n: int = 30, **fields: object) -> SampleConfig:
    zh = write_lines(tmp_path / "c.zh", [ZH[i % 10] + f"第{i}次" for i in range(n)])
    en = write_lines(tmp_path / "c.en", [EN[i % 10] + f" #{i}" for i in range(n)])
    config = load_config(None, {"corpora": [{"path": str(zh), "reference_path": str(en), "src": "zh", "tgt": "en"}]})
    config.output_dir = str(tmp_path / "out")
    config.m1, config.m2 = standin(1), standin(2)
    config.score_workers = 1
    for key, value in fields.items():
        setattr(config, key, value)
    return config


def journal_rows(config: SampleConfig) -> list[dict]:
    return [json.loads(line) for line in config.journal_path.read_text(encoding="utf-8").splitlines()]


# -- scores ---------------------------------------------------------------------------------------------
def test_sentence_bleu_uses_the_source_languages_tokenizer_and_effective_order() -> None:
    ref, hyp = "今天的晚饭太好吃了", "今天的晚饭很好吃"
    expected = BLEU(tokenize="zh", effective_order=True).sentence_score(hyp, [ref]).score / 100
    assert sentence_bleu(hyp, ref, "zh") == pytest.approx(expected)
    assert 0.1 < sentence_bleu(hyp, ref, "zh") < 1.0  # per-character tokens: partial credit
    # With the English tokenizer an unspaced Chinese sentence is one token: no credit at all.
    assert BLEU(tokenize="13a", effective_order=True).sentence_score(hyp, [ref]).score == 0.0
    assert sentence_bleu(ref, ref, "zh") == pytest.approx(1.0)
    assert sentence_bleu("The cat sat", "The cat sat on the mat", "en") == pytest.approx(
        BLEU(tokenize="13a", effective_order=True).sentence_score("The cat sat", ["The cat sat on the mat"]).score / 100
    )
    assert sentence_bleu("", ref, "zh") == 0.0


def test_score_pool_in_processes_matches_in_process_scores() -> None:
    jobs = [(ZH[i], "zh", ZH[i][: 3 + i % 4], ZH[(i + 1) % 10]) for i in range(10)]
    jobs += [(EN[i], "en", EN[i].lower(), EN[i]) for i in range(10)]
    with ScorePool(2) as pool:
        futures = [pool.submit(jobs[:10]), pool.submit(jobs[10:])]
        parallel = [s for f in futures for s in f.result()]
    assert parallel == score_chunk(jobs)
    assert all(s.delta == abs(s.bleu1 - s.bleu2) for s in parallel)
    assert parallel[10].bleu2 == pytest.approx(1.0) and parallel[10].bleu1 < 1.0


# -- buckets and the draw -------------------------------------------------------------------------------
def test_buckets_edges_labels_and_exclusion() -> None:
    b = Buckets([0.0, 0.1, 0.2, 0.4, 1.0], [1, 2, 3, 4], exclude=["[0,0.1)", 2])
    assert b.labels == ["[0,0.1)", "[0.1,0.2)", "[0.2,0.4)", "[0.4,1]"]
    assert [b.index(x) for x in (0.0, 0.0999, 0.1, 0.2, 0.39, 0.4, 1.0)] == [0, 0, 1, 2, 2, 3, 3]
    assert b.index(1.01) is None
    assert b.excluded == {0, 2} and b.weight(0) == 0 and b.weight(3) == 4
    with pytest.raises(BucketError, match="no bucket 7"):
        Buckets([0, 0.5, 1], [1, 1], exclude=[7])
    with pytest.raises(BucketError, match="neither a bucket index"):
        Buckets([0, 0.5, 1], [1, 1], exclude=["[0.5,0.9)"])


def test_allocate_splits_by_weight_and_passes_shortfalls_on() -> None:
    assert allocate([100, 100, 100, 100], [1, 2, 3, 4], 100) == [10, 20, 30, 40]
    quota = allocate([100, 5, 100, 100], [1, 2, 3, 4], 100)
    assert quota[1] == 5 and sum(quota) == 100
    assert quota[0] / quota[3] == pytest.approx(1 / 4, abs=0.03)
    assert quota[2] / quota[3] == pytest.approx(3 / 4, abs=0.03)
    assert allocate([3, 3, 3, 3], [1, 2, 3, 4], 100) == [3, 3, 3, 3]  # asked for more than there is
    assert allocate([50, 50, 50, 50], [0, 1, 1, 0], 40) == [0, 20, 20, 0]


def synthetic_rows(per_bucket: list[int], seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    edges = [0.0, 0.1, 0.2, 0.4, 1.0]
    rows = []
    for b, n in enumerate(per_bucket):
        for k in range(n):
            delta = rng.uniform(edges[b], edges[b + 1] - 1e-6)
            rows.append({"id": f"c:{b}-{k}", "corpus": "c", "delta_bleu": round(delta, 4), "reference": "x"})
    return rows


def test_quota_draw_hits_the_weights_exactly_and_is_deterministic() -> None:
    rows = synthetic_rows([500, 300, 300, 300])
    buckets = Buckets([0.0, 0.1, 0.2, 0.4, 1.0], [1, 2, 3, 4])
    first = draw(lambda: iter(rows), buckets, 200, seed=3)
    assert first.available == [500, 300, 300, 300]
    assert first.drawn == [20, 40, 60, 80]  # 200 × w / Σw
    ids = [r["id"] for r in first.rows]
    assert len(set(ids)) == 200
    assert [r["id"] for r in draw(lambda: iter(rows), buckets, 200, seed=3).rows] == ids
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)  # journal order does not matter: keys come from (seed, id)
    assert [r["id"] for r in draw(lambda: iter(shuffled), buckets, 200, seed=3).rows] == ids
    other = {r["id"] for r in draw(lambda: iter(rows), buckets, 200, seed=4).rows}
    assert other != set(ids)
    ablation = draw(lambda: iter(rows), Buckets(buckets.edges, [1, 2, 3, 4], exclude=[0]), 180, seed=3)
    assert ablation.drawn == [0, 40, 60, 80]


def test_quota_draw_is_uniform_inside_a_bucket() -> None:
    # 20 rows in one bucket, quota 5: each row should be drawn in 25% of seeds (binomial bounds, 4.5 σ).
    rows = synthetic_rows([20, 0, 0, 0])
    buckets = Buckets([0.0, 0.1, 0.2, 0.4, 1.0], [1, 1, 1, 1])
    seeds = 400
    counts = Counter(r["id"] for s in range(seeds) for r in draw(lambda: iter(rows), buckets, 5, seed=s).rows)
    p = 5 / 20
    sigma = math.sqrt(seeds * p * (1 - p))
    assert len(counts) == 20
    assert all(abs(c - seeds * p) < 4.5 * sigma for c in counts.values()), counts
    chi2 = sum((c - seeds * p) ** 2 / (seeds * p) for c in counts.values())
    assert chi2 < 43.8  # χ²(19 dof) at p = 0.001


def test_weighted_draw_picks_rows_in_proportion_to_their_weight() -> None:
    # Efraimidis–Spirakis: the first pick lands in bucket b with probability c_b·w_b / Σ c·w. Here the
    # buckets hold 100 rows each and weigh 1:2:3:4, so the first pick is 10/20/30/40 % — chi-square over seeds.
    rows = synthetic_rows([100, 100, 100, 100])
    buckets = Buckets([0.0, 0.1, 0.2, 0.4, 1.0], [1, 2, 3, 4])
    seeds = 1500
    hits = Counter()
    for s in range(seeds):
        hits[draw(lambda: iter(rows), buckets, 1, seed=s, method="weighted").rows[0]["bucket"]] += 1
    expected = {label: seeds * w / 10 for label, w in zip(buckets.labels, [1, 2, 3, 4], strict=True)}
    chi2 = sum((hits[k] - e) ** 2 / e for k, e in expected.items())
    assert chi2 < 16.27, (hits, chi2)  # χ²(3 dof) at p = 0.001
    # A larger draw: a bucket's share follows count × weight (without replacement, so only approximately).
    big = draw(lambda: iter(synthetic_rows([400, 400, 400, 400])), buckets, 200, seed=0, method="weighted")
    assert sum(big.drawn) == 200
    for got, share in zip(big.drawn, [0.1, 0.2, 0.3, 0.4], strict=True):
        assert abs(got - 200 * share) < 4.5 * math.sqrt(200 * share * (1 - share)), big.drawn


# -- inputs ---------------------------------------------------------------------------------------------
def test_jsonl_bad_rows_are_rejected_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text(
        '{"id": "a", "text": "你不是我的菜", "reference": "You are not my type"}\n'
        "\n"
        '{"text": null}\n'
        '{"text": ""}\n'
        '{"text": "半个表情\\ud83d"}\n'
        '{"text": "周末一起去爬山吧", "reference": ""}\n'
        '{"body": "没有文本字段"}\n'
        '{"text": "我的猫今天特别乖"}\n'
        f'{{"text": "{"长" * 6000}"}}\n',
        encoding="utf-8",
    )
    config = load_config(None, {"corpora": [{"path": str(path), "src": "zh", "tgt": "en"}]})
    corpus = Corpus(config.corpora[0])
    bad: list = []
    rows = list(corpus.rows(bad.append))
    assert [(r.id, r.line, r.reference, r.source_id) for r in rows] == [
        ("posts:1", 1, "You are not my type", "a"),
        ("posts:8", 8, None, None),
    ]
    assert [(b.line, b.code, b.reason.split(" (")[0]) for b in bad] == [
        (3, "empty", "field 'text' is missing"),
        (4, "empty", "field 'text' is empty"),
        (5, "invalid_text", "field 'text' has a lone UTF-16 surrogate U+D83D at character 5"),
        (6, "empty", "field 'reference' is empty or not a string"),
        (7, "empty", "field 'text' is missing"),
        (9, "too_long", "field 'text' has 6,000 characters; the limit is 5,000"),
    ]
    assert all(b.file == str(path) for b in bad)
    with pytest.raises(JSONLError, match=r"posts\.jsonl:3: field 'text' is missing.*6 such rows"):
        Corpus(config.corpora[0]).check(strict=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "ok"}\n{"text": "\xe9t\xe9"}\n', r"posts\.jsonl:2: not UTF-8"),
        (b'{"text": "ok"}\n{"text": "x"\n', r"posts\.jsonl:2: invalid JSON"),
        (b'{"text": "ok"}\n[1, 2]\n', r"posts\.jsonl:2: expected a JSON object, got list"),
        (b"\n\n", r"corpus 'posts' has no rows"),
        (b'{"body": "a"}\n', r"no row has a field 'text'"),
    ],
)
def test_a_corpus_that_is_not_jsonl_fails_before_any_model_loads(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_bytes(content)
    config = load_config(None, {"corpora": [{"path": str(path), "src": "zh", "tgt": "en"}]})
    config.output_dir, config.m1, config.m2 = str(tmp_path / "out"), standin(1), standin(2)
    with pytest.raises(JSONLError, match=message):
        run_sample(config)
    assert not (tmp_path / "out").exists()


def test_parallel_files_of_different_length_fail_before_anything_runs(tmp_path: Path) -> None:
    zh = write_lines(tmp_path / "a.zh", ZH[:5])
    en = write_lines(tmp_path / "a.en", EN[:4])
    config = pair_config(tmp_path)
    config.corpora[0].path, config.corpora[0].reference_path = str(zh), str(en)
    with pytest.raises(JSONLError, match=r"a\.en:5: parallel files differ in length.*5 lines.*4"):
        run_sample(config)
    assert not config.journal_path.exists()


def test_empty_lines_of_a_pair_are_reported_not_dropped(tmp_path: Path) -> None:
    zh = write_lines(tmp_path / "b.zh", [ZH[0], "", ZH[2], ZH[3]])
    en = write_lines(tmp_path / "b.en", [EN[0], EN[1], EN[2], "  "])
    config = pair_config(tmp_path)
    config.corpora[0].path, config.corpora[0].reference_path = str(zh), str(en)
    report = run_sample(config)
    rejects = [json.loads(line) for line in config.rejects_path.read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [
        (str(zh), 2, "empty source line"),
        (str(en), 4, "empty reference line"),
    ]
    assert report.run is not None and report.run.rejected == 2 and report.stats["run"]["rejected"] == 2
    assert [r["line"] for r in journal_rows(config)] == [1, 3]


def test_corpora_mix_by_ratio_in_a_smooth_deterministic_order(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a.txt", [f"甲{i}" for i in range(100)])
    b = write_lines(tmp_path / "b.txt", [f"乙{i}" for i in range(50)])
    data = {"corpora": [{"path": str(a), "src": "zh", "tgt": "en", "ratio": 3},
                        {"path": str(b), "src": "zh", "tgt": "en", "ratio": 1}]}  # fmt: skip
    config = load_config(None, data)
    corpora = [Corpus(c) for c in config.corpora]
    sizes = [c.check() for c in corpora]
    assert quotas(sizes, [3, 1], 40) == [30, 10]
    assert quotas(sizes, [3, 1], None) == [100, 33]  # the largest mix that keeps 3:1
    assert quotas(sizes, [None, None], 30) == [20, 10]  # no ratios: proportional to size
    state = MixState()
    rows = list(mix(corpora, [30, 10], lambda bad: None, state))
    assert Counter(r.corpus for r in rows) == {"a": 30, "b": 10}
    assert Counter(r.corpus for r in rows[:8]) == {"a": 6, "b": 2}  # every prefix follows the ratio
    assert [r.line for r in rows if r.corpus == "a"] == list(range(1, 31))  # file order inside a corpus
    assert [r.id for r in mix(corpora, [30, 10], lambda bad: None)] == [r.id for r in rows]
    short = MixState()
    assert len(list(mix(corpora, [30, 80], lambda bad: None, short))) == 80
    assert short.exhausted == {"b"} and short.taken["b"] == 50


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bucket_edges: unknown field"):
        load_config(None, {"bucket_edges": [0, 1]})
    config = pair_config(tmp_path, weights=[1, 2])
    with pytest.raises(ConfigError, match="weights: 4 buckets need 4 weights"):
        config.validate()
    config = pair_config(tmp_path)
    config.corpora[0].tgt = "zh"
    with pytest.raises(ConfigError, match="src and tgt are both"):
        config.validate()
    yaml_path = tmp_path / "s.yaml"
    yaml_path.write_text("corpora:\n  - {path: c.zh, src: zh, tgt: en}\nm1: qwen2.5-coder-0.5b\n", encoding="utf-8")
    loaded = load_config(yaml_path, {"m1.options.n_parallel": 3, "corpora.0.max_rows": 5})
    assert loaded.corpora[0].path == str(tmp_path / "c.zh")  # relative to the YAML file
    assert loaded.m1 == ModelSpec(model="qwen2.5-coder-0.5b", options={"n_parallel": 3})
    assert loaded.corpora[0].max_rows == 5


# -- the pipeline with the stand-in engine --------------------------------------------------------------
def test_sample_writes_journal_stats_histogram_and_trl_sft_sets(tmp_path: Path) -> None:
    config = pair_config(tmp_path, n=60, target_size=20, seed=5)
    report = run_sample(config)
    rows = journal_rows(config)
    assert len(rows) == 60 and len({r["id"] for r in rows}) == 60
    row = rows[0]
    for key in ("id", "corpus", "src", "tgt", "source", "reference", "forward", "back", "rt_bleu", "delta_bleu"):
        assert key in row
    assert row["models"] == {"m1": "standin-1", "m2": "standin-2"} and row["prompt_version"]
    assert set(row["forward"]) == set(row["back"]) == {"m1", "m2"}
    for r in rows:
        assert r["delta_bleu"] == pytest.approx(abs(r["rt_bleu"]["m1"] - r["rt_bleu"]["m2"]), abs=2e-4)
        assert r["rt_bleu"]["m1"] == pytest.approx(sentence_bleu(r["back"]["m1"], r["source"], "zh"), abs=1e-4)
    stats = json.loads(config.stats_path.read_text())
    assert sum(stats["before"]["bucket_counts"].values()) == 60
    assert sum(stats["after"]["bucket_counts"].values()) == 20 == stats["after"]["rows"]
    assert [b["drawn"] for b in stats["buckets"]] == list(stats["after"]["bucket_counts"].values())
    assert [b["available"] for b in stats["buckets"]] == list(stats["before"]["bucket_counts"].values())
    assert stats["buckets"][0]["bucket"] == "[0,0.1)" and stats["journal"]["rows"] == 60
    assert report.histogram_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sft = [json.loads(line) for line in (config.out / "sft.jsonl").read_text().splitlines()]
    pc = [json.loads(line) for line in (config.out / "sft.prompt_completion.jsonl").read_text().splitlines()]
    assert len(sft) == len(pc) == 20
    by_id = {r["id"]: r for r in rows}
    for example, other in zip(sft, pc, strict=True):
        assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
        source = by_id[example["id"]]
        assert example["messages"][1]["content"] == source["source"]
        assert example["messages"][2]["content"] == source["reference"] and example["origin"] == "reference"
        assert other["prompt"] == example["messages"][:2] and other["completion"] == example["messages"][2:]
        assert example["bucket"] == config_buckets_label(source["delta_bleu"])


def config_buckets_label(delta: float) -> str | None:
    return Buckets([0.0, 0.1, 0.2, 0.4, 1.0], [1, 2, 3, 4]).label(delta)


def test_target_rule_best_forward_and_draw_only_reuse_the_journal(tmp_path: Path) -> None:
    config = pair_config(tmp_path, n=40, target_size=10)
    run_sample(config)
    before = config.journal_path.read_bytes()
    config.target_rule = "best_forward"
    config.exclude = [0]
    report = run_sample(config, draw_only=True)
    assert config.journal_path.read_bytes() == before  # drawing again translates nothing
    assert report.run is None and report.stats["buckets"][0]["drawn"] == 0
    rows = {r["id"]: r for r in journal_rows(config)}
    for line in (config.out / "sft.jsonl").read_text().splitlines():
        example = json.loads(line)
        row = rows[example["id"]]
        best = "m1" if row["rt_bleu"]["m1"] >= row["rt_bleu"]["m2"] else "m2"
        assert example["origin"] == best and example["messages"][-1]["content"] == row["forward"][best]


def test_choose_target_rules() -> None:
    row = {"reference": "ref", "forward": {"m1": "one", "m2": "two"}, "rt_bleu": {"m1": 0.2, "m2": 0.6},
           "flags": {"m1": {"forward": []}, "m2": {"forward": ["retried"]}}}  # fmt: skip
    assert choose_target(row, "auto") == ("ref", "reference")
    assert choose_target(row, "best_forward") == ("two", "m2")
    row["flags"]["m2"]["forward"] = ["wrong_language"]
    assert choose_target(row, "best_forward") == ("one", "m1")  # the better one is flagged: the clean one
    assert choose_target(row, "best_forward", allow_flagged=True) == ("two", "m2")
    del row["reference"]
    assert choose_target(row, "reference") is None and choose_target(row, "auto") == ("one", "m1")


def test_a_crash_mid_run_keeps_finished_windows_and_the_rerun_completes(tmp_path: Path) -> None:
    config = pair_config(tmp_path, n=40, batch_size=4)
    engines = {"m1": build_engine(standin(1)), "m2": build_engine(standin(2, fail_after=40))}
    with pytest.raises(EngineError, match="failing after 40"):
        run_sample(config, engines=engines)
    partial = journal_rows(config)
    assert 0 < len(partial) < 40
    report = run_sample(config)
    rows = journal_rows(config)
    assert report.run is not None and report.run.skipped == len(partial)
    assert sorted(r["line"] for r in rows) == list(range(1, 41))  # nothing lost, nothing twice
    assert rows[: len(partial)] == partial


def test_resume_after_a_real_kill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    n = 48
    config = pair_config(tmp_path, n=n)
    out = tmp_path / "out"
    base = [sys.executable, "-m", "redtrans", "sample", "-i", config.corpora[0].path, "-r",
            str(config.corpora[0].reference_path), "--src", "zh", "--tgt", "en", "-o", str(out), "--target-size", "10",
            "--set", "m1.engine=standin", "--set", "m2.engine=standin", "--set", "batch_size=4",
            "--set", "score_workers=1", "--set", "m2.options={salt: 2}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    slow = subprocess.Popen([*base, "--set", "m1.options={salt: 1, delay_s: 0.15}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.is_file() and journal.read_text(encoding="utf-8").count("\n") >= 12:
            break
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait(10)
    killed_at = journal.read_text(encoding="utf-8").count("\n")
    assert 12 <= killed_at < n, "the run must be killed mid-way"
    with journal.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "c:99", "corpus": "c", "line": 9')  # a torn last line, as a kill mid-write leaves
    done = subprocess.run([*base, "--set", "m1.options={salt: 1}"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{n - killed_at} new, {killed_at} already journaled" in " ".join(done.stderr.split())
    rows = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["line"] for r in rows) == list(range(1, n + 1))
    assert len({r["id"] for r in rows}) == n
    assert len((out / "sft.jsonl").read_text().splitlines()) == 10


def test_a_journal_from_other_models_is_not_mixed_in(tmp_path: Path) -> None:
    config = pair_config(tmp_path, n=8)
    run_sample(config)
    config.m2 = standin(3)
    with pytest.raises(ConfigError, match="m2=standin-2.*cannot be mixed"):
        run_sample(config)


def test_a_changed_corpus_row_is_redone_and_supersedes_its_journal_line(tmp_path: Path) -> None:
    """Resume keys (issue 32 item 3): a row is journaled for its text; changing a line redoes that row only, its new
    line replaces the old one, and other settings for every row (here the pipeline's mode) are refused."""
    config = pair_config(tmp_path, n=8)
    run_sample(config)
    before = {r["line"]: r for r in journal_rows(config)}
    assert all(r["key"] and r["settings"] for r in before.values())
    zh = Path(config.corpora[0].path)
    lines = zh.read_text(encoding="utf-8").splitlines()
    lines[2] = "这家店的奶茶真的绝绝子"
    write_lines(zh, lines)
    report = run_sample(config)
    assert report.run is not None and (report.run.written, report.run.changed, report.run.skipped) == (1, 1, 7)
    after = journal_rows(config)
    assert sorted(r["line"] for r in after) == list(range(1, 9))  # one line per row: superseded, not added
    assert {r["line"]: r["source"] for r in after}[3] == "这家店的奶茶真的绝绝子"
    assert [r for r in after if r["line"] != 3] == [r for line, r in before.items() if line != 3]
    config.mode = "plain"
    with pytest.raises(ConfigError, match="all 8 rows were made with other settings.*another output_dir"):
        run_sample(config)


def test_cli_sample_validates_options(tmp_path: Path) -> None:
    from redtrans.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["sample", "--input", str(write_lines(tmp_path / "x.zh", ZH[:2])), "--src", "zh"])
    assert result.exit_code == 2 and "--input needs --src and --tgt" in result.output
    result = runner.invoke(app, ["sample", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output
    result = runner.invoke(app, ["sample", "-c", str(ROOT / "examples" / "sample.yaml"), "--weights", "1,2"])
    assert result.exit_code == 2 and "4 buckets need 4 weights" in result.output


def test_cli_overrides_parse_lists_bucket_labels_and_sets() -> None:
    options = {"input": Path("x.zh"), "reference": Path("x.en"), "src": "zh", "tgt": "en", "exclude": "[0,0.1), 3",
               "weights": "1,2.5", "m1": "qwen2.5-coder-0.5b", "seed": None}  # fmt: skip
    assert cli_overrides(options, ["m2.options.n_parallel=4", "method=weighted"]) == {
        "corpora": [{"path": "x.zh", "src": "zh", "tgt": "en", "reference_path": "x.en"}],
        "exclude": ["[0,0.1)", 3],
        "weights": [1.0, 2.5],
        "m1.model": "qwen2.5-coder-0.5b",
        "m2.options.n_parallel": 4,
        "method": "weighted",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cli_overrides({}, ["seed"])


def test_cli_sample_yaml_with_an_unknown_field_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    from redtrans.cli import app

    yaml_path = tmp_path / "s.yaml"
    yaml_path.write_text("corpora:\n  - {path: c.zh, src: zh, tgt: en}\nm1: {model: qwen2.5-coder-0.5b, colour: red}\n"
                         "bucket_edges: [0, 1]\n", encoding="utf-8")  # fmt: skip
    result = CliRunner().invoke(app, ["sample", "-c", str(yaml_path)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "m1.colour: unknown field" in result.output and "bucket_edges: unknown field" in result.output
    assert str(yaml_path) in result.output


def test_model_specs_are_engine_specs_and_overrides_reach_the_engine(tmp_path: Path) -> None:
    config = load_config(None, cli_overrides({"m2": "gemma3-270m"}, ["m1.parallel=2", "m2.label=gemma"]))
    assert isinstance(config.m1, EngineSpec) and config.m1.model == "qwen2.5-coder-1.5b"
    assert config.m1.engine_config().n_parallel == 2  # type: ignore[attr-defined]  # llama.cpp slots
    assert config.m2.provenance == "gemma" and config.m2.model_dump()["label"] == "gemma"
    config = load_config(None, {"m1.kind": "standin", "m1.parallel": 2, "m1.options": {"salt": 1}})
    engine = build_engine(config.m1)
    assert (engine.name, engine.parallelism, engine.model) == ("standin", 2, "standin-1")
    # older spellings: engine: for kind, options.served_model for served_model
    old = ModelSpec.model_validate({"engine": "openai", "model": "http://a/v1", "options": {"served_model": "m"}})
    assert (old.kind, old.served_model, old.options) == ("openai", "m", {})


def test_an_unknown_engine_option_fails_before_any_model_loads(tmp_path: Path) -> None:
    config = pair_config(tmp_path)
    config.m2 = ModelSpec(model="no-such-model-is-loaded", options={"n_thread": 2})
    with pytest.raises(ConfigError, match="m2: .*n_thread: unknown field"):
        run_sample(config)
    assert not config.journal_path.exists()

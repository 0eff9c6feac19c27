"""translate and sample as Ray Data jobs on a local Ray started here (num_cpus=2), stopped after (issue 34).

A worker (an actor, found through Ray's GCS state) and a driver are killed mid-job and the job rerun: every
row once, each the single-process run's answer. Sampling on the pool draws the single-process run's ids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'redtrans[ray]')")

from redtrans.engines import EngineSpec, create_engine  # noqa: E402
from redtrans.scale import shards as sh  # noqa: E402
from redtrans.scale.raydata import RayOptions, translate_ray  # noqa: E402
from redtrans.translate_file import translate_file  # noqa: E402
from redtrans.translator import Translator, TranslatorConfig  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["今天的奶茶好好喝😋", "this hotpot place is fire 🔥 #foodie", "周末去成都看熊猫 #旅行[话题]#",
         "no cap best latte ever", "姐妹们冲！这个粉底液真的不卡粉\n油皮亲妈"]  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray with 2 CPUs for this module; its GCS address for drivers in other processes."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src")}})  # fmt: skip
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _posts(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"p{i}", "text": f"{TEXTS[i % 5]} {i}", "likes": i}, ensure_ascii=False) + "\n")
    return path


def _single(posts: Path, out: Path, spec: EngineSpec) -> dict[str, dict]:
    with create_engine(spec) as engine:
        translate_file(Translator(engine, TranslatorConfig()), posts, out)
    return {row["id"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}


def _same_rows(folder: Path, single: dict[str, dict]) -> None:
    rows = list(sh.iter_output(folder))
    assert sorted(r["id"] for r in rows) == sorted(single)  # every row once: none lost, none duplicated
    for row in rows:
        expected = single[row["id"]]
        # The input's columns are kept, as in one process.
        assert (row["translation"], row["flags"], row["status"], row["likes"]) == (
            expected["translation"], expected["flags"], expected["status"], expected["likes"],
        )  # fmt: skip


def _shard_actors() -> list[int]:
    """Pids of the live translate actors, from Ray's GCS actor table."""
    from ray._private import state

    actors = state.actors().values()
    return [a["Pid"] for a in actors if "ShardTranslator" in a.get("ActorClassName", "") and a.get("State") == "ALIVE"]


def _wait(predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_translate_matches_single_process_and_survives_a_killed_worker(cluster: str, tmp_path: Path) -> None:
    posts = _posts(tmp_path / "posts.jsonl", 120)
    spec = EngineSpec(kind="standin", deterministic=True, options={"delay_s": 0.03})
    single = _single(posts, tmp_path / "single.jsonl", EngineSpec(kind="standin", deterministic=True))
    folder = tmp_path / "out"
    options = RayOptions(address=cluster, actors=2, shard_rows=10)
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(summary=translate_ray(spec, TranslatorConfig(), posts,
                                                                              folder, options)))  # fmt: skip
    job.start()
    _wait(lambda: any(folder.glob("part-*.parquet")) and len(_shard_actors()) == 2)
    killed = _shard_actors()[0]
    os.kill(killed, signal.SIGKILL)  # mid-job: Ray restarts the actor and its shard is done again
    job.join(timeout=300)
    summary = result["summary"]
    assert (summary.written, summary.failed, summary.shards, summary.actors) == (120, 0, 12, 2)
    assert killed not in _shard_actors()
    _same_rows(folder, single)
    assert not list(folder.glob(".part-*.tmp")) and not (folder / sh.STAGING_DIR).exists()
    again = translate_ray(spec, TranslatorConfig(), posts, folder, options)
    assert (again.written, again.skipped, again.shards_done) == (0, 120, 0)


DRIVER = """
import sys
from redtrans.engines import EngineSpec
from redtrans.scale.raydata import RayOptions, translate_ray
from redtrans.translator import TranslatorConfig
spec = EngineSpec(kind="standin", deterministic=True, options={"delay_s": 0.05})
translate_ray(spec, TranslatorConfig(), sys.argv[1], sys.argv[2], RayOptions(address=sys.argv[3], actors=2,
              shard_rows=10))
"""


def test_a_killed_driver_is_rerun_without_duplicates(cluster: str, tmp_path: Path) -> None:
    posts = _posts(tmp_path / "posts.jsonl", 160)
    folder = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(posts), str(folder), cluster], env=env)
    try:
        _wait(lambda: any(folder.glob("part-*.parquet")) or driver.poll() is not None)
        assert driver.poll() is None, "the driver ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    committed = len(list(folder.glob("part-*.parquet")))
    assert 1 <= committed < 16
    spec = EngineSpec(kind="standin", deterministic=True, options={"delay_s": 0.05})
    summary = translate_ray(spec, TranslatorConfig(), posts, folder, RayOptions(address=cluster, actors=2))
    assert summary.shards == 16 and summary.shards_done <= 16 - committed + 2  # shards committed meanwhile
    assert summary.skipped + summary.written == 160
    _same_rows(folder, _single(posts, tmp_path / "single.jsonl", EngineSpec(kind="standin", deterministic=True)))


@pytest.mark.model
def test_translate_with_the_0_5b_model_is_byte_identical(cluster: str, tmp_path: Path, gguf_path) -> None:
    """The deterministic mode: the same posts, the same answers on 2 actors as in one process (item 4)."""
    gguf_path("qwen2.5-coder-0.5b")
    posts = _posts(tmp_path / "posts.jsonl", 3)
    spec = EngineSpec(model="qwen2.5-coder-0.5b", deterministic=True)
    single = _single(posts, tmp_path / "single.jsonl", spec)
    summary = translate_ray(spec, TranslatorConfig(), posts, tmp_path / "out", RayOptions(address=cluster, actors=2))
    assert summary.written == 3
    _same_rows(tmp_path / "out", single)


def test_sample_on_ray_draws_the_single_process_ids(cluster: str, tmp_path: Path) -> None:
    from redtrans.sampling.config import ModelSpec, load_config
    from redtrans.sampling.stage import draw_and_export, run_sample
    from redtrans.scale.raydata import roundtrips_ray

    zh = tmp_path / "c.zh"
    en = tmp_path / "c.en"
    zh.write_text("".join(f"{TEXTS[i % 5].splitlines()[0]} 第{i}次\n" for i in range(60)), encoding="utf-8")
    en.write_text("".join(f"reference sentence number {i}\n" for i in range(60)), encoding="utf-8")

    def config(out: str):
        cfg = load_config(None, {"corpora": [{"path": str(zh), "reference_path": str(en), "src": "zh", "tgt": "en"}],
                                 "target_size": 20, "seed": 7, "score_workers": 1})  # fmt: skip
        cfg.output_dir = str(tmp_path / out)
        cfg.m1 = ModelSpec(kind="standin", options={"salt": 1})
        cfg.m2 = ModelSpec(kind="standin", options={"salt": 2})
        return cfg

    single = run_sample(config("single"))
    distributed = config("ray")
    run = roundtrips_ray(distributed, RayOptions(address=cluster, actors=2))
    assert (run.written, run.failed) == (60, 0)
    report = draw_and_export(distributed, run)

    def journal(cfg) -> dict[str, dict]:
        rows = map(json.loads, cfg.journal_path.read_text(encoding="utf-8").splitlines())
        return {r["id"]: {k: r[k] for k in ("delta_bleu", "bucket", "forward", "back")} for r in rows}

    def drawn(rep) -> list[str]:
        sft = next(Path(p) for p in rep.sft_files if p.endswith("sft.jsonl"))
        return [json.loads(line)["id"] for line in sft.read_text(encoding="utf-8").splitlines()]

    assert journal(distributed) == journal(config("single"))
    assert drawn(report) == drawn(single) and drawn(single)
    assert report.stats["buckets"] == single.stats["buckets"] and report.stats["after"] == single.stats["after"]
    assert sum(b["drawn"] for b in report.stats["buckets"]) == 20


def test_bench_on_ray_gives_the_single_process_hypotheses(cluster: str, tmp_path: Path) -> None:
    from redtrans.bench import BenchConfig, parse_system, run_bench
    from tests.test_bench import write_suite

    suite = write_suite(tmp_path / "suite.jsonl")
    systems = [parse_system("name=base,engine=standin")]

    def bench(out: str, options: RayOptions | None) -> dict:
        config = BenchConfig(suite="jsonl", data=str(suite), systems=systems, out=tmp_path / out,
                             bootstrap_samples=10, ray=options)  # fmt: skip
        return run_bench(config, show_progress=False)

    single = bench("single", None)
    distributed = bench("ray", RayOptions(address=cluster, actors=2))
    hyps = [json.loads(line) for line in (tmp_path / "ray" / "hyps" / "base.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "single" / "hyps" / "base.jsonl").read_text().splitlines()]
    assert [(h["id"], h["translation"], h["status"]) for h in hyps] == [
        (h["id"], h["translation"], h["status"]) for h in expected
    ]
    assert distributed["systems"][0]["engine"]["ray"] is True

    def scores(results: dict) -> list[dict]:  # everything but the timing
        return [{k: v for k, v in s["scores"]["base"].items() if k != "seconds_per_segment"} for s in results["slices"]]

    assert scores(distributed) == scores(single)

"""`redtrans sample` at scale: constant memory, and throughput against a real OpenAI-compatible server.

1. Memory: the whole stage (round trips through the SNS pipeline, scoring in worker processes, journal,
   stratified draw, SFT export, stats and histogram) on a 10k-row and a 100k-row synthetic zh→en JSONL corpus,
   with the fast deterministic stand-in engine in place of the LLMs (so the pipeline is what is measured).
   Each size runs in a fresh subprocess; peak RSS comes from resource.getrusage (the stage's process, and
   the largest scoring worker). Target: peak RSS at 100k ≤ 1.2 × peak RSS at 10k (main and workers).
2. Concurrency: rows/s of the same stage against llama.cpp's own OpenAI-compatible HTTP server (xllamacpp,
   127.0.0.1, Qwen2.5-Coder-0.5B, 4 slots) with the openai engine at concurrency 1 and 4 (a handful of rows
   each). Target: concurrency 4 at least 1.2 × the rows/s of concurrency 1.

    .venv/bin/python benchmarks/sample_scale.py [--sizes 10000,100000] [--server-rows 8] [--skip-server]

Headline on the last line: `sample_peak_rss_ratio_100k_vs_10k: R target: <= 1.2`; exit 1 on any miss.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

RSS_TARGET = 1.2
SPEEDUP_TARGET = 1.2
_HAN = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小"
    "么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
)


def make_corpus(path: Path, rows: int, seed: int = 0) -> None:
    """Short synthetic zh sentences with a reference, one JSON object a line (streamed to disk)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            text = "".join(rng.choice(_HAN) for _ in range(rng.randint(6, 14)))
            handle.write(json.dumps({"id": i, "text": text, "reference": f"sentence {i}"}, ensure_ascii=False) + "\n")


def child(corpus: str, out: str) -> None:
    """One run of the stage in this (fresh) process; prints a JSON line of measurements."""
    from redtrans.sampling.config import ModelConfig, load_config
    from redtrans.sampling.stage import run_sample

    config = load_config(None, {"corpora": [{"path": corpus, "src": "zh", "tgt": "en"}]})
    config.output_dir = out
    config.m1 = ModelConfig("", engine="standin", options={"salt": 1, "parallelism": 64})
    config.m2 = ModelConfig("", engine="standin", options={"salt": 2, "parallelism": 64})
    config.score_workers = 2
    config.target_size = 1000
    started = time.perf_counter()
    report = run_sample(config)
    wall = time.perf_counter() - started
    run = report.run
    assert run is not None
    print(
        json.dumps(
            {
                "rows": run.written,
                "seconds": wall,
                "rows_per_s": run.written / wall,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "drawn": sum(report.stats["after"]["bucket_counts"].values()),
                "buckets_before": report.stats["before"]["bucket_counts"],
            }
        )
    )


def scale(sizes: list[int], work: Path) -> list[dict]:
    results = []
    for n in sizes:
        corpus = work / f"corpus-{n}.jsonl"
        make_corpus(corpus, n)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(corpus), str(work / f"out-{n}")],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"child run of {n} rows failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["size"] = n
        print(
            f"stand-in pipeline, {n:>7} rows: {result['rows_per_s']:7.1f} rows/s, peak RSS "
            f"{result['peak_rss_mb']:.1f} MB (scoring workers {result['worker_peak_rss_mb']:.1f} MB), "
            f"{result['seconds']:.1f} s, drawn {result['drawn']}",
            flush=True,
        )
        results.append(result)
    return results


def server(rows: int, work: Path) -> tuple[float, float]:
    """rows/s through llama.cpp's HTTP server at openai-engine concurrency 1 and 4."""
    from redtrans.engines.llamacpp import LlamaCppConfig, LlamaCppEngine
    from redtrans.sampling.config import ModelConfig, load_config
    from redtrans.sampling.stage import run_sample

    corpus = work / "server.jsonl"
    sentences = ["明天会下雨", "我爱我的猫", "这本书很好看", "周末一起去爬山吧", "地铁上人好多啊", "新买的耳机音质很好",
                 "下雨天最适合睡觉", "我的猫今天特别乖", "这家店的咖啡一般般", "明天要早起上班"]  # fmt: skip
    with corpus.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(json.dumps({"text": sentences[i % len(sentences)]}, ensure_ascii=False) + "\n")
    rates = {}
    with LlamaCppEngine(LlamaCppConfig(model="qwen2.5-coder-0.5b", n_parallel=4)) as local:
        base = local.listening_address.rstrip("/") + "/v1"
        for concurrency in (1, 4):
            config = load_config(None, {"corpora": [{"path": str(corpus), "src": "zh", "tgt": "en"}]})
            config.output_dir = str(work / f"server-c{concurrency}")
            options = {"concurrency": concurrency, "timeout_s": 300}
            config.m1 = ModelConfig(base, engine="openai", options=options, label="qwen-0.5b-http-a")
            config.m2 = ModelConfig(base, engine="openai", options=options, label="qwen-0.5b-http-b")
            config.concurrent_models = False  # exactly `concurrency` requests in flight
            config.batch_size = rows  # one window: every phase (forward, back) offers all rows at once
            config.score_workers = 1
            config.target_size = rows
            started = time.perf_counter()
            report = run_sample(config)
            assert report.run is not None and report.run.written == rows, report.run
            rates[concurrency] = rows / (time.perf_counter() - started)
            print(f"OpenAI-compatible server ({base}), concurrency {concurrency}: {rates[concurrency]:.3f} rows/s",
                  flush=True)  # fmt: skip
    return rates[1], rates[4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="Two corpus sizes, small,large.")
    parser.add_argument("--server-rows", type=int, default=8, help="Rows per concurrency setting.")
    parser.add_argument("--skip-server", action="store_true", help="Only the memory part.")
    parser.add_argument("--skip-scale", action="store_true", help="Only the server part.")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    small, large = (int(x) for x in args.sizes.split(","))
    misses = []
    with tempfile.TemporaryDirectory(prefix="sample-scale-") as tmp:
        work = Path(tmp)
        # The memory runs come first: a child forked from a process that has loaded a model would inherit
        # its RSS high-water mark (Linux keeps ru_maxrss across fork + exec).
        if args.skip_scale:
            lo = hi = None
        else:
            lo, hi = scale([small, large], work)
        speedup = 0.0
        if not args.skip_server:
            c1, c4 = server(args.server_rows, work)
            speedup = c4 / c1
            print(f"sample_server_speedup_c4_vs_c1: {speedup:.2f} target: >= {SPEEDUP_TARGET}", flush=True)
            if speedup < SPEEDUP_TARGET:
                misses.append("server speedup")
    if lo is None or hi is None:  # server part only: its line above is the headline
        sys.exit(1 if misses else 0)
    ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"]
    worker_ratio = hi["worker_peak_rss_mb"] / lo["worker_peak_rss_mb"]
    growth = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 1024 * 1024 / (large - small)
    print(f"peak RSS growth: {growth:.0f} bytes per extra row; worker RSS ratio {worker_ratio:.3f}; "
          f"throughput {lo['rows_per_s']:.0f} → {hi['rows_per_s']:.0f} rows/s")  # fmt: skip
    if worker_ratio > RSS_TARGET:
        misses.append("worker RSS")
    if ratio > RSS_TARGET:
        misses.append("peak RSS")
    if misses:
        print(f"missed: {', '.join(misses)}")
    name = "_vs_".join(f"{n // 1000}k" if n % 1000 == 0 else str(n) for n in (large, small))
    print(f"sample_peak_rss_ratio_{name}: {ratio:.3f} target: <= {RSS_TARGET}")
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()

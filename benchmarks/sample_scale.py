"""`redtrans sample` at scale: constant memory, and throughput against a real OpenAI-compatible server.

1. Memory: the whole stage (round trips through the SNS pipeline, scoring in worker processes, journal,
   stratified draw, SFT export, stats and histogram) on a 10k-row and a 100k-row synthetic zh→en JSONL corpus,
   with the fast deterministic stand-in engine in place of the LLMs (so the pipeline is what is measured).
   Each size runs in a fresh subprocess; peak RSS comes from resource.getrusage (the stage's process, and
   the largest scoring worker). Target: peak RSS at 100k ≤ 1.2 × peak RSS at 10k (main and workers).
2. Concurrency: rows/s of the same stage against llama.cpp's own OpenAI-compatible HTTP server (xllamacpp,
   127.0.0.1, Qwen2.5-Coder-0.5B, 4 slots, 1 thread) with the openai engine at concurrency 1 and 4 (a
   handful of post-length rows each), reported with their ratio. What the pipeline controls is how many
   requests it keeps on the wire, counted at the HTTP layer: target at concurrency 4, never more than 4 and
   on average ≥ 0.6 × 4 while any is in flight (and never more than 1 at concurrency 1). Whether 4 in flight
   are faster than 1 is the server's business: on 2 busy shared cores llama.cpp gains nothing from batching.

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
UTILISATION_TARGET = 0.6
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
    from redtrans.sampling.config import ModelSpec, load_config
    from redtrans.sampling.stage import run_sample

    config = load_config(None, {"corpora": [{"path": corpus, "src": "zh", "tgt": "en"}]})
    config.output_dir = out
    config.m1 = ModelSpec(kind="standin", parallel=64, options={"salt": 1})
    config.m2 = ModelSpec(kind="standin", parallel=64, options={"salt": 2})
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


# Post-length sentences written for this benchmark (not from any test set): long enough that decoding, which
# parallel slots batch, outweighs evaluating the system prompt, which each slot does once per phase.
SERVER_SENTENCES = [
    "今天下班路上突然下起了大雨，我没带伞，只好在便利店门口等了半个小时。",
    "这家新开的火锅店味道还不错，就是排队的人太多了，周末去至少要等一个小时。",
    "我最近在学做蛋糕，第一次失败了，第二次总算成功了，家里人都说好吃。",
    "朋友推荐的这部电影真的很感人，看到最后我忍不住哭了，强烈推荐大家去看。",
    "地铁上有个小朋友一直在唱歌，声音特别可爱，整个车厢的人都被逗笑了。",
    "周末和朋友去海边露营，晚上看星星聊天到很晚，感觉所有的压力都消失了。",
    "新买的跑鞋穿起来很舒服，这个月已经跑了五十公里，感觉身体越来越好了。",
    "楼下的咖啡店换了新老板，咖啡变好喝了，价格也便宜了不少，以后天天来。",
]


class _InFlight:
    """Requests in flight at the HTTP layer: the peak, and the time integral (for the mean while busy)."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.area = self.busy = 0.0
        self._last = time.perf_counter()

    def change(self, delta: int) -> None:
        t = time.perf_counter()
        if self.now:
            self.area += self.now * (t - self._last)
            self.busy += t - self._last
        self._last = t
        self.now += delta
        self.peak = max(self.peak, self.now)

    @property
    def mean_busy(self) -> float:
        return self.area / self.busy if self.busy else 0.0


def counting_engine(base: str, concurrency: int, label: str, meter: _InFlight, api_key: str):  # noqa: ANN201
    """The openai engine with httpx event hooks that count requests on the wire (measurement only)."""
    import httpx

    from redtrans.engines.openai import OpenAIConfig, OpenAIEngine

    async def sent(request: httpx.Request) -> None:
        meter.change(+1)

    async def answered(response: httpx.Response) -> None:
        meter.change(-1)

    config = OpenAIConfig(base_urls=[base], concurrency=concurrency, timeout_s=600, api_key=api_key)
    engine = OpenAIEngine(config, event_hooks={"request": [sent], "response": [answered]})
    engine.model = label
    return engine


def server(rows: int, work: Path) -> dict[int, dict[str, float]]:
    """rows/s and requests in flight through llama.cpp's HTTP server at openai-engine concurrency 1 and 4."""
    from redtrans.engines.llamacpp import LlamaCppConfig, LlamaCppEngine
    from redtrans.sampling.config import load_config
    from redtrans.sampling.stage import run_sample

    corpus = work / "server.jsonl"
    with corpus.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(json.dumps({"text": SERVER_SENTENCES[i % len(SERVER_SENTENCES)]}, ensure_ascii=False) + "\n")
    out: dict[int, dict[str, float]] = {}
    # One llama.cpp thread: on busy shared cores its spinning threads stall each other (docs/serve.md).
    with LlamaCppEngine(LlamaCppConfig(model="qwen2.5-coder-0.5b", n_parallel=4, n_threads=1)) as local:
        base = local.listening_address.rstrip("/") + "/v1"
        for concurrency in (1, 4):
            config = load_config(None, {"corpora": [{"path": str(corpus), "src": "zh", "tgt": "en"}]})
            config.output_dir = str(work / f"server-c{concurrency}")
            config.concurrent_models = False  # m1's requests, then m2's: `concurrency` in flight at most
            config.batch_size = rows  # one window: every phase (forward, back) offers all rows at once
            config.score_workers = 1
            config.target_size = rows
            meter = _InFlight()
            engines = {m: counting_engine(base, concurrency, f"qwen-0.5b-http-{m}", meter, local.api_key)
                       for m in ("m1", "m2")}  # fmt: skip
            started = time.perf_counter()
            report = run_sample(config, engines=engines)
            elapsed = time.perf_counter() - started
            assert report.run is not None and report.run.written == rows, report.run
            out[concurrency] = {"rows_per_s": rows / elapsed, "peak": meter.peak, "mean": meter.mean_busy}
            print(f"OpenAI-compatible server ({base}), concurrency {concurrency}: {rows / elapsed:.4f} rows/s, "
                  f"in flight: peak {meter.peak}, mean while busy {meter.mean_busy:.2f}", flush=True)  # fmt: skip
    return out


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
        if not args.skip_server:
            measured = server(args.server_rows, work)
            ratio4 = measured[4]["rows_per_s"] / measured[1]["rows_per_s"]
            print(f"rows/s at concurrency 4 vs 1: {ratio4:.2f}× (no target: on 2 busy shared cores llama.cpp "
                  "gains nothing from batching; see docs/sampling.md)", flush=True)  # fmt: skip
            use = measured[4]["mean"] / 4
            ok = measured[4]["peak"] <= 4 and measured[1]["peak"] <= 1 and use >= UTILISATION_TARGET
            print(f"peak requests in flight: {measured[4]['peak']:.0f} at concurrency 4 (≤ 4), "
                  f"{measured[1]['peak']:.0f} at concurrency 1 (≤ 1)")  # fmt: skip
            print(f"sample_server_slot_utilisation_c4: {use:.2f} target: >= {UTILISATION_TARGET}", flush=True)
            if not ok:
                misses.append("server concurrency")
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

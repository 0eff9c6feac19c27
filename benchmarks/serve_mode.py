"""`redtrans serve` in the deterministic mode vs. its throughput mode: what serve's default engine mode costs.

Starts `redtrans serve` (no cache, so every request reaches the model) once per mode and round, the modes'
order rotated each round, and measures with distinct posts:
1. a lone client (concurrency 1): p50 latency — the deterministic mode decodes a request on one thread, the
   throughput mode on all cores;
2. load (concurrency 8): requests/s.

Modes: throughput = serve's default when this was written (`parallel: 4` slots, threads = cores, prompt cache);
deterministic = `engine_options: {deterministic: true}` with one single-thread context per usable core (the
same translation from any replica, and after a cache entry expires). The median over rounds is reported.

    python benchmarks/serve_mode.py                                        # 1.5B, 2 rounds
    python benchmarks/serve_mode.py --model qwen2.5-coder-0.5b --rounds 1 --single 4 --load 8   # a quick check

Last lines: ``serve_deterministic_vs_throughput_p50_c1: X target: <= 1.11`` (latency ratio) and
``serve_deterministic_vs_throughput_rps: X target: 0.9``; exit 1 when either is missed (the deterministic
mode should then not be serve's default).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

RPS_TARGET = 0.9
LATENCY_TARGET = 1 / 0.9

ZH = [
    "第{n}次来这家店，奶茶还是绝绝子🧋",
    "今天是减肥的第{n}天，但是火锅真的太香了😭",
    "第{n}个视频终于剪完了，求三连！",
    "这家店排了{n}分钟，值得吗？",
]
EN = [
    "day {n} of trying every ramen spot in town, this one slaps 🍜",
    "ok but why is this the {n}th time my order got lost 😤",
    "posting my outfit for the {n}th day in a row, thoughts?",
    "spent {n} minutes in line for this croissant and no regrets",
]

MODES: dict[str, dict[str, Any]] = {
    "throughput": {"parallel": 4, "engine_options": {"deterministic": False}},
    "deterministic": {"parallel": None, "engine_options": {"deterministic": True}},
}


def post(n: int, salt: str) -> dict[str, str]:
    if n % 2:
        return {"text": EN[n % len(EN)].format(n=f"{n}{salt}"), "tgt": "zh"}
    return {"text": ZH[n % len(ZH)].format(n=f"{n}{salt}"), "tgt": "en"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def measure(base: str, single: int, load: int, salt: str) -> tuple[float, float]:
    """(p50 latency in ms at concurrency 1, requests/s at concurrency 8) with posts no earlier run sent."""
    with httpx.Client(base_url=base, timeout=600) as client:

        def send(body: dict[str, str]) -> float:
            started = time.perf_counter()
            response = client.post("/v1/translate", json={"items": [body]})
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        for n in range(4):  # warm-up: both directions, not timed
            send(post(n, f"w{salt}"))
        latencies = [send(post(n, f"s{salt}")) for n in range(single)]
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, [post(n, f"l{salt}") for n in range(load)]))
        rps = load / (time.perf_counter() - started)
    return statistics.median(latencies), rps


def run_mode(args: argparse.Namespace, mode: str, salt: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="redtrans-serve-mode-") as tmp:
        port = free_port()
        config = Path(tmp) / "serve.yaml"
        settings = {"port": port, "model": args.model, "cache": "none", "request_timeout_s": 600, **MODES[mode]}
        config.write_text(json.dumps(settings), encoding="utf-8")
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "redtrans", "serve", "--config", str(config)],
                                      stdout=log, stderr=log)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve ({mode}) did not become ready:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            return measure(base, args.single, args.load, salt)
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--single", type=int, default=12, help="requests at concurrency 1")
    parser.add_argument("--load", type=int, default=48, help="requests at concurrency 8")
    args = parser.parse_args()
    p50: dict[str, list[float]] = {mode: [] for mode in MODES}
    rps: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        order = list(MODES)[round_index % 2 :] + list(MODES)[: round_index % 2]
        for mode in order:
            latency, rate = run_mode(args, mode, f"r{round_index}")
            p50[mode].append(latency)
            rps[mode].append(rate)
            print(f"round {round_index + 1} {mode:13} p50 c=1 {latency:8.0f} ms   c=8 {rate:.3f} requests/s",
                  file=sys.stderr)  # fmt: skip
    latency_ratio = statistics.median(p50["deterministic"]) / statistics.median(p50["throughput"])
    rps_ratio = statistics.median(rps["deterministic"]) / statistics.median(rps["throughput"])
    for mode in MODES:
        print(f"{mode:13} p50 latency at concurrency 1: {statistics.median(p50[mode]):8.0f} ms; "
              f"concurrency 8: {statistics.median(rps[mode]):.3f} requests/s")  # fmt: skip
    print(f"serve_deterministic_vs_throughput_p50_c1: {latency_ratio:.3f} target: <= {LATENCY_TARGET:.2f}")
    print(f"serve_deterministic_vs_throughput_rps: {rps_ratio:.3f} target: {RPS_TARGET}")
    return 0 if rps_ratio >= RPS_TARGET and latency_ratio <= LATENCY_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

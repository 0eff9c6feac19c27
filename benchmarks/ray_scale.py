"""`redtrans translate --ray` against the single process, on this machine (issue 34).

1. Speed: the stand-in engine, answering at once (so the pipeline's own CPU work is what is measured), on
   `--rows` synthetic posts (default 20,000; zh→en and en→zh alternating). The single process runs at each
   `--parallel` of `--parallels` (and the deterministic default) and its best rows/s is kept; then the same
   command with ``--ray ADDRESS --ray-actors 2`` against a local Ray cluster started first (``ray start
   --head``, as a user's cluster is there before the job). Both are whole CLI runs timed by wall clock; CPU
   seconds are machine-wide (/proc/stat: run this alone) and per 1k rows. Target: Ray ≥ 1.4 × the single
   process's rows/s.
2. Memory: the peak PSS summed over every process of the Ray session (GCS, raylet, workers and actors, the
   driver) — the object store's shared memory counted in the PSS of the processes that map it — sampled
   every 0.25 s, at `--rows` and at 10 × `--rows`. Target: peak at 10× ≤ 1.2 × peak at 1×.
3. Same answers: 40 posts (20 zh, 20 en lines of ../shared/data/parallel-zhen) translated by
   qwen2.5-coder-0.5b in the deterministic mode, single process vs ``--ray`` with 2 actors: the translations
   must be identical (``identical: 40/40``). Skipped (and reported) without the shared data or the model.

    .venv/bin/python benchmarks/ray_scale.py [--rows 20000] [--parallels 4,16] [--skip-memory] [--skip-model]

Headline on the last line: ``ray_vs_single_rows_per_s: X target: 1.4``; exit 1 on any miss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("REDTRANS_SHARED_DATA", ROOT.parent / "shared" / "data"))
SPEED_TARGET = 1.4
MEMORY_TARGET = 1.2
BIN = Path(sys.executable).parent
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}
"""The benchmark's own cluster listens on this machine only: no token (~/.ray/auth_token is shared by every Ray
user of the machine, and a token written by another would lock the drivers out)."""
_HAN = "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心多天"
_WORDS = ["the", "best", "latte", "ever", "no", "cap", "this", "place", "is", "fire", "weekend", "vibes", "hotpot",
          "first", "then", "pandas", "so", "good"]  # fmt: skip


def make_posts(path: Path, rows: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            if i % 2:
                text, src, tgt = "".join(rng.choice(_HAN) for _ in range(rng.randint(8, 24))) + " 😋", "zh", "en"
            else:
                text, src, tgt = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 14))) + " 🔥", "en", "zh"
            out.write(json.dumps({"id": f"p{i}", "text": text, "src": src, "tgt": tgt}, ensure_ascii=False) + "\n")
    return path


def cpu_seconds() -> float:
    """Machine-wide CPU seconds (user + nice + system + irq + softirq) from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return ticks / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, machine CPU seconds) of a command; exit on failure with its output."""
    cpu, start = cpu_seconds(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, used = time.perf_counter() - start, cpu_seconds() - cpu
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return wall, used


class RayCluster:
    """A local Ray started with `ray start --head` (2 CPUs' worth of this machine), stopped by `stop`."""

    def __init__(self, cpus: int) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rayb-"))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **NO_AUTH}
        cmd = [str(BIN / "ray"), "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false",
               f"--temp-dir={self.temp}", "--port=0"]  # fmt: skip
        started = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        found = re.search(r"--address='([^']+)'", started.stdout + started.stderr)
        if found is None:
            sys.exit(f"cannot read the address of the started Ray from:\n{started.stdout}")
        self.address = found.group(1)

    def pids(self, driver: int) -> set[int]:
        """The session's processes (those started with its temp dir, and their descendants) and the driver's."""
        import psutil

        roots = [driver]
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if str(self.temp) in " ".join(proc.info["cmdline"] or []):
                roots.append(proc.info["pid"])
        found: set[int] = set()
        for pid in roots:
            try:
                root = psutil.Process(pid)
                found.add(pid)
                found.update(child.pid for child in root.children(recursive=True))
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        """End this cluster's processes only, by pid (`ray stop` would end every Ray on the machine)."""
        import psutil

        procs = []
        for pid in self.pids(os.getpid()) - {os.getpid()}:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        shutil.rmtree(self.temp, ignore_errors=True)


def pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_pss_during(cluster: RayCluster, cmd: list[str], env: dict[str, str]) -> int:
    """Run `cmd`, sampling the summed PSS of the Ray session's processes and the driver's; the peak in bytes."""
    peak = 0
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sum(pss(p) for p in cluster.pids(driver.pid)))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _, err = driver.communicate()
    finally:
        stop.set()
        sampler.join()
    if driver.returncode != 0:
        sys.exit(f"failed ({driver.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return peak


def translations(path: Path) -> dict[str, str]:
    if path.is_dir():
        sys.path.insert(0, str(ROOT / "src"))
        from redtrans.scale.shards import iter_output

        return {row["id"]: row["translation"] for row in iter_output(path)}
    return {r["id"]: r["translation"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def model_posts(path: Path) -> Path | None:
    zh, en = SHARED / "parallel-zhen" / "train.zh-en.zh", SHARED / "parallel-zhen" / "train.zh-en.en"
    if not zh.is_file() or not en.is_file():
        return None
    with zh.open(encoding="utf-8") as z, en.open(encoding="utf-8") as e, path.open("w", encoding="utf-8") as out:
        for i, (zl, el) in enumerate(zip(z, e, strict=False)):
            if i >= 20:
                break
            out.write(json.dumps({"id": f"zh{i}", "text": zl.strip(), "src": "zh", "tgt": "en"}, ensure_ascii=False))
            out.write("\n" + json.dumps({"id": f"en{i}", "text": el.strip(), "src": "en", "tgt": "zh"},
                                        ensure_ascii=False) + "\n")  # fmt: skip
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--parallels", default="4,16", help="--parallel values of the single process (and none).")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **NO_AUTH}
    redtrans = str(BIN / "redtrans")
    misses: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    cluster = None
    try:
        posts = make_posts(work / "posts.jsonl", args.rows)
        best: tuple[float, float, str] | None = None  # rows/s, CPU s per 1k rows, setting
        for parallel in [None, *(int(p) for p in args.parallels.split(",") if p)]:
            out = work / f"single-{parallel}.jsonl"
            extra = ["--parallel", str(parallel)] if parallel else []
            wall, cpu = run([redtrans, "translate", "-i", str(posts), "-o", str(out), "--engine", "standin", *extra],
                            env)  # fmt: skip
            rate, per_k = args.rows / wall, cpu / args.rows * 1000
            setting = f"--parallel {parallel}" if parallel else "deterministic"
            print(f"single process ({setting}): {rate:.1f} rows/s, {per_k:.2f} CPU s per 1k rows", flush=True)
            if best is None or rate > best[0]:
                best = (rate, per_k, setting)
        assert best is not None
        cluster = RayCluster(os.cpu_count() or 2)
        mode = [] if best[2] == "deterministic" else best[2].split()
        ray_cmd = [redtrans, "translate", "-i", str(posts), "-o", str(work / "ray-out"), "--engine", "standin",
                   *mode, "--ray", cluster.address, "--ray-actors", str(args.actors)]  # fmt: skip
        peak_small = peak_pss_during(cluster, ray_cmd, env)
        shutil.rmtree(work / "ray-out")
        wall, cpu = run(ray_cmd, env)  # timed alone (no PSS sampler beside it)
        ray_rate, ray_per_k = args.rows / wall, cpu / args.rows * 1000
        print(f"--ray, {args.actors} actors ({best[2]}): {ray_rate:.1f} rows/s, {ray_per_k:.2f} CPU s per 1k rows "
              f"(a local Ray cluster already started)", flush=True)  # fmt: skip
        ratio = ray_rate / best[0]
        if not args.skip_memory:
            big = make_posts(work / "posts-10x.jsonl", args.rows * 10, seed=1)
            big_cmd = [*ray_cmd]
            big_cmd[big_cmd.index(str(posts))] = str(big)
            big_cmd[big_cmd.index(str(work / "ray-out"))] = str(work / "ray-out-10x")
            peak_big = peak_pss_during(cluster, big_cmd, env)
            growth = peak_big / max(1, peak_small)
            small_mib, big_mib = peak_small / 2**20, peak_big / 2**20
            print(f"peak PSS of the Ray session: {small_mib:.0f} MiB at {args.rows} rows, {big_mib:.0f} MiB at "
                  f"{args.rows * 10} rows ({growth:.3f}×, target ≤ {MEMORY_TARGET})")  # fmt: skip
            if growth > MEMORY_TARGET:
                misses.append("memory")
        if not args.skip_model:
            sample = model_posts(work / "model-posts.jsonl")
            if sample is None:
                print(f"identical: skipped (no {SHARED / 'parallel-zhen'})")
            else:
                single_out, ray_out = work / "model-single.jsonl", work / "model-ray"
                run([redtrans, "translate", "-i", str(sample), "-o", str(single_out), "-m", "qwen2.5-coder-0.5b"], env)
                run([redtrans, "translate", "-i", str(sample), "-o", str(ray_out), "-m", "qwen2.5-coder-0.5b",
                     "--ray", cluster.address, "--ray-actors", str(args.actors)], env)  # fmt: skip
                a, b = translations(single_out), translations(ray_out)
                same = sum(a[i] == b.get(i) for i in a)
                print(f"identical: {same}/{len(a)}")
                if same != len(a):
                    misses.append("identical")
        if ratio < SPEED_TARGET:
            misses.append("speed")
        if misses:
            print(f"missed: {', '.join(misses)}")
        print(f"ray_vs_single_rows_per_s: {ratio:.2f} target: {SPEED_TARGET}")
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()

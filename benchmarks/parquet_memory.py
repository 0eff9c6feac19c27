"""Peak memory of `redtrans translate` writing Parquet vs JSON Lines, 50,000 CSV rows, on the stand-in engine.

Issue 33 item 6: Parquet outputs were built in memory at the end of a run (455 MB peak vs 251 MB for JSONL on
50k rows). They are now journaled as JSONL and converted in chunks of rows by Arrow's JSON reader into a
`pyarrow.parquet.ParquetWriter` with a fixed schema (`redtrans.datafiles.export_journal`). Three runs, each in
its own process, on one generated CSV (id, text of 1-4 sentences, likes, user, created):

- ``jsonl``:         ``redtrans translate -i posts.csv -o out.jsonl --engine standin --tgt en``
- ``jsonl+pyarrow``: the same with pyarrow (``pyarrow.parquet``, ``pyarrow.json``) imported first
- ``parquet``:       ``… -o out.parquet``

and reads each process's peak resident set (``ru_maxrss`` from `os.wait4`: the kernel's high-water mark over the
whole run: reading, language id, translating and, for Parquet, the conversion). The stand-in engine answers at
once, so what differs between the runs is the output path alone. Checks that every output holds every row.

Why two baselines. When the issue was filed, a CSV was read with 🤗 datasets, so every run loaded pyarrow and
pandas (the 251 MB). CSV is now read with the standard library and the JSONL path loads no Arrow at all, so
``parquet / jsonl`` is mostly the price of importing pyarrow (~45 MB), which any Parquet writer pays and no
conversion can avoid. The lever (streaming instead of building the table in memory) is judged where it acts:
``parquet / jsonl+pyarrow``, the same libraries on both sides. Both ratios and the absolute peak are printed.

Streaming is also shown directly: `export_journal` alone, in a fresh process, on journals of 50k and 200k
translated rows (made up here): its peak RSS above the process's after imports is (nearly) the same at both.

Targets: Parquet's peak ≤ 1.2 × the ``jsonl+pyarrow`` run's and ≤ 300 MB. Headline (last line):
``parquet_vs_jsonl_peak_rss: RATIO target: 1.2`` (against ``jsonl+pyarrow``); exit 1 when a target is missed.

    python benchmarks/parquet_memory.py [--rows 50000]      # final numbers: run it alone on the machine
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIO_TARGET = 1.2
PEAK_TARGET_MB = 300.0
SENTENCES = [
    "今天的奶茶也太好喝了吧", "这家店绝绝子，yyds！🔥", "周末去爬山，累瘫了但是风景超美🏔️", "救命，这个妆容我爱了",
    "姐妹们冲鸭，真的不踩雷", "打工人的快乐就是下班", "笑死我了[笑哭R] @小红薯 你也来试试", "这个价格真的很良心",
    "#探店[话题]# 人均五十吃到撑", "不是我夸张，真的好吃到哭", "谁懂啊，这个颜色太温柔了", "下次还来，老板人超好",
]  # fmt: skip


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "likes", "user", "created"])
        for i in range(rows):
            text = "，".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 4)))
            writer.writerow([f"p{i}", text, rng.randint(0, 10_000), f"user{rng.randint(0, 999)}",
                             f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"])  # fmt: skip


PRELOAD = "import pyarrow.parquet, pyarrow.json; from redtrans.cli import main; main()"


def peak_rss_mb(output: Path, posts: Path, preload: bool = False) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of one `redtrans translate` run in its own process."""
    start = ["-c", PRELOAD] if preload else ["-m", "redtrans"]
    command = [sys.executable, *start, "translate", "-i", str(posts), "-o", str(output),
               "--engine", "standin", "--tgt", "en"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{stderr}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


EXPORT_ONLY = """
import json, random, sys
from pathlib import Path
rows, folder = int(sys.argv[1]), Path(sys.argv[2])
journal = folder / f"journal{rows}.jsonl"
rng = random.Random(0)
posts = ["今天的奶茶也太好喝了吧", "周末去爬山，累瘫了🏔️"]
with journal.open("w", encoding="utf-8") as out:
    for i in range(rows):
        row = {"id": f"p{i}", "text": "，".join(rng.choice(posts) for _ in range(rng.randint(1, 4))),
               "translation": "a good day " * rng.randint(1, 6), "src": "zh", "tgt": "en", "flags": [],
               "model": "standin-1", "prompt_version": "rt-prompt-2", "status": "ok", "likes": str(i % 10000),
               "user": f"user{i % 999}"}
        out.write(json.dumps(row, ensure_ascii=False) + "\\n")
import pyarrow.parquet, pyarrow.json
from redtrans.datafiles import export_journal
from redtrans.translate_file import OUTPUT_COLUMNS
def rss(key):
    return int(Path("/proc/self/status").read_text().split(key + ":")[1].split()[0]) / 1024
base = rss("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
export_journal(journal, folder / f"out{rows}.parquet", OUTPUT_COLUMNS)
print(rss("VmHWM") - base)
"""


def export_growth_mb(rows: int, folder: Path) -> float:
    """Peak RSS of `export_journal` alone above the process's after imports, on a journal of `rows` rows."""
    proc = subprocess.run([sys.executable, "-c", EXPORT_ONLY, str(rows), str(folder)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return float(proc.stdout.strip())


def count_rows(output: Path) -> int:
    if output.suffix == ".jsonl":
        with output.open(encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip())
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(output).metadata.num_rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parquet-memory-") as tmp:
        folder = Path(tmp)
        posts = folder / "posts.csv"
        make_csv(posts, args.rows)
        print(f"{args.rows} CSV rows ({posts.stat().st_size / 1e6:.1f} MB), stand-in engine, one process per run")
        results = {}
        for name, output, preload in (("jsonl", "out.jsonl", False), ("jsonl+pyarrow", "pa.jsonl", True),
                                      ("parquet", "out.parquet", False)):  # fmt: skip
            path = folder / output
            peak, seconds = peak_rss_mb(path, posts, preload)
            rows = count_rows(path)
            if rows != args.rows:
                print(f"{name}: {rows} rows, expected {args.rows}")
                return 1
            results[name] = peak
            print(f"{name:14} peak RSS {peak:7.1f} MB  ({seconds:.1f} s, {rows} rows)")
        growth = {rows: export_growth_mb(rows, folder) for rows in (50_000, 200_000)}
        print(f"export_journal alone: +{growth[50_000]:.1f} MB on 50k rows, +{growth[200_000]:.1f} MB on 200k rows")
    literal = results["parquet"] / results["jsonl"]
    ratio = results["parquet"] / results["jsonl+pyarrow"]
    ok = ratio <= RATIO_TARGET and results["parquet"] <= PEAK_TARGET_MB
    print(f"parquet / jsonl (no Arrow loaded in the JSONL run): {literal:.3f}")
    print(f"parquet peak {results['parquet']:.1f} MB, target ≤ {PEAK_TARGET_MB:.0f} MB")
    print(f"parquet_vs_jsonl_peak_rss: {ratio:.3f} target: {RATIO_TARGET}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

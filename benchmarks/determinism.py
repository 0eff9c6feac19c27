"""Same input, same output: the default (deterministic) mode against the throughput mode, in one run.

40 RedTrans-Bench posts (sources only) are translated twice per mode, bypassing every cache: the second time in
reverse order with 20 other posts queued between them. The deterministic mode must give byte-identical output;
the throughput mode (llama.cpp slots) is reported with how many outputs changed and the posts/s it buys.

    python benchmarks/determinism.py --data ../shared/data/redtrans-bench/RedTrans-Bench.json

Last line: ``default_mode_outputs_changed: N target: 0`` (exit 1 when N > 0).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from redtrans.engines import EngineSpec, create_engine
from redtrans.translator import Item, Translator


def load_posts(path: Path, n: int, seed: int) -> list[Item]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    picked = [data[i] for i in rng.sample(range(len(data)), n)]
    return [
        Item(f"p{i}", (r["zh"] if r["src_lang"] == "zh" else r["en"]).strip(), r["dst_lang"], r["src_lang"])
        for i, r in enumerate(picked)
    ]


def two_runs(spec: EngineSpec, main: list[Item], others: list[Item]) -> tuple[int, float]:
    """(outputs that differ between the two runs, posts/s of the first run)."""
    with create_engine(spec) as engine:
        translator = Translator(engine)
        translator.translate_text("warm up", "zh", "en")
        started = time.perf_counter()
        first = {r.id: r.translation for r in translator.translate(main)}
        rate = len(main) / (time.perf_counter() - started)
        mixed: list[Item] = []
        for k, item in enumerate(reversed(main)):
            mixed.append(item)
            if k % 2 == 0:
                mixed.append(others[(k // 2) % len(others)])
        second = {r.id: r.translation for r in translator.translate(mixed) if r.id in first}
    return sum(first[k] != second[k] for k in first), rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/redtrans-bench/RedTrans-Bench.json"))
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"needs RedTrans-Bench at {args.data} (--data PATH)", file=sys.stderr)
        return 2
    posts = load_posts(args.data, args.posts + 20, args.seed)
    main_posts, others = posts[: args.posts], posts[args.posts :]

    changed_det, rate_det = two_runs(EngineSpec(model=args.model, deterministic=True), main_posts, others)
    changed_thr, rate_thr = two_runs(EngineSpec(model=args.model, parallel=args.slots), main_posts, others)
    print(f"{'mode':34} {'outputs changed':>16} {'posts/s':>8}")
    print(f"{'deterministic (default, 1 slot)':34} {changed_det:>10}/{args.posts:<5} {rate_det:>8.2f}")
    print(f"{f'throughput (--parallel {args.slots})':34} {changed_thr:>10}/{args.posts:<5} {rate_thr:>8.2f}")
    print(f"throughput mode buys {rate_thr / rate_det:.2f}x posts/s; {changed_thr} of {args.posts} outputs then vary")
    print(f"default_mode_outputs_changed: {changed_det} target: 0")
    return 0 if changed_det == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

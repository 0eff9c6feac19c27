"""Same input, same output, at the throughput mode's speed: the default (deterministic) mode against the throughput
mode as it was when the new mode came (issue 35), in one run.

N RedTrans-Bench posts (sources only, whole posts: short and long ones) are translated, bypassing every cache,
by each mode in each round: after a warm-up on posts outside the timed set, once in order and once in reverse
order with other posts queued between them. A round's posts/s is every post of both passes over their seconds;
the modes' order rotates each round and the median over rounds is reported.

The default mode (`EngineSpec(deterministic=True)`: a saved system-prompt prefix restored before each request,
one single-thread context per usable core) must give byte-identical output
- between the two reordered passes of every round, and from round to round;
- with 1 context instead of k (`--parallel 1`, on both cores);
- in a child process pinned to one core (`taskset -c 0`; k is then 1) as on every core.

The baseline is pinned here (`THROUGHPUT_BASELINE`), not taken from defaults the code could change: llamacpp, 4
parallel slots, prompt cache, threads = the machine's cores.

    python benchmarks/determinism.py                                  # 40 posts, qwen2.5-coder-1.5b, 3 rounds
    python benchmarks/determinism.py --posts 12 --model qwen2.5-coder-0.5b --rounds 1 --others 6   # a quick check

Last line: ``deterministic_vs_throughput_posts_per_s: X target: 0.9``; exit 1 when X < 0.9 or any output of the
default mode changed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redtrans.engines import EngineSpec, create_engine
from redtrans.engines.llamacpp import default_contexts
from redtrans.engines.models import resolve_gguf
from redtrans.translator import Item, Translator

TARGET = 0.9

THROUGHPUT_SLOTS = 4
"""The baseline's parallel slots (the throughput mode's default when the new mode came)."""

WARMUP = [("热身一下", "en", "zh"), ("Just warming up", "zh", "en"), ("准备开始了", "en", "zh"),
          ("Getting ready now", "zh", "en")]  # fmt: skip
"""Translated before each timed run (not timed): fills the throughput slots' caches and saves the default mode's
system-prompt prefixes, as in a long run."""


def default_spec(model: str, contexts: int | None = None) -> EngineSpec:
    """The default mode of `redtrans translate` / `bench`; `contexts` None = one per usable core."""
    return EngineSpec(kind="llamacpp", model=model, deterministic=True, parallel=contexts)


def throughput_baseline(model: str) -> EngineSpec:
    """The throughput mode as it is pinned for this comparison: 4 slots, prompt cache, threads = cores."""
    return EngineSpec(kind="llamacpp", model=model, deterministic=False, parallel=THROUGHPUT_SLOTS,
                      options={"n_threads": os.cpu_count() or 1})  # fmt: skip


def load_posts(path: Path, n: int, seed: int) -> list[Item]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    picked = [data[i] for i in rng.sample(range(len(data)), n)]
    return [
        Item(f"p{i}", (r["zh"] if r["src_lang"] == "zh" else r["en"]).strip(), r["dst_lang"], r["src_lang"])
        for i, r in enumerate(picked)
    ]


def translate(translator: Translator, items: list[Item]) -> dict[str, str]:
    results = list(translator.translate(items))
    failed = [r.id for r in results if not r.ok]
    if failed:
        print(f"  ({len(failed)} rows failed: {', '.join(failed[:5])})", file=sys.stderr)
    return {r.id: r.translation for r in results}


def two_passes(spec: EngineSpec, main: list[Item], others: list[Item]) -> tuple[dict[str, str], int, float]:
    """(first pass's outputs, outputs that differ in the second pass, posts/s over both passes)."""
    with create_engine(spec) as engine:
        translator = Translator(engine)
        translate(translator, [Item(f"w{i}", text, tgt, src) for i, (text, tgt, src) in enumerate(WARMUP)])
        mixed: list[Item] = []
        for k, item in enumerate(reversed(main)):
            mixed.append(item)
            if k % 2 == 0 and others:
                mixed.append(others[(k // 2) % len(others)])
        started = time.perf_counter()
        first = translate(translator, main)
        second = translate(translator, mixed)
        rate = (len(main) + len(mixed)) / (time.perf_counter() - started)
    return first, sum(first[k] != second[k] for k in first), rate


def pinned_child(args: argparse.Namespace, main: list[Item]) -> dict[str, str]:
    """The default mode's outputs in a child process pinned to one core (as `taskset -c 0` runs it)."""
    core = min(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "outputs.json"
        command = [sys.executable, __file__, "--child", str(out), "--data", str(args.data), "--model", args.model,
                   "--posts", str(args.posts), "--others", str(args.others), "--seed", str(args.seed)]  # fmt: skip
        subprocess.run(command, check=True, preexec_fn=lambda: os.sched_setaffinity(0, {core}))  # noqa: PLW1509
        outputs: dict[str, str] = json.loads(out.read_text(encoding="utf-8"))
    return {k: outputs[k] for k in (item.id for item in main)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/redtrans-bench/RedTrans-Bench.json"))
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--others", type=int, default=20, help="posts queued between the second pass's")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"needs RedTrans-Bench at {args.data} (--data PATH)", file=sys.stderr)
        return 2
    posts = load_posts(args.data, args.posts + args.others, args.seed)
    main_posts, others = posts[: args.posts], posts[args.posts :]
    if args.child:  # the pinned run: the default mode, k from this process's one core
        with create_engine(default_spec(args.model)) as engine:
            outputs = translate(Translator(engine), main_posts)
        args.child.write_text(json.dumps(outputs, ensure_ascii=False), encoding="utf-8")
        return 0

    lengths = sorted(len(p.text) for p in main_posts)
    print(f"{args.posts} posts, {lengths[0]}–{lengths[-1]} characters (median {lengths[len(lengths) // 2]}); "
          f"{args.model}; {os.cpu_count()} cores; {args.rounds} rounds", file=sys.stderr)  # fmt: skip
    modes = {"default": default_spec(args.model), "throughput": throughput_baseline(args.model)}
    rates: dict[str, list[float]] = {name: [] for name in modes}
    changed: dict[str, list[int]] = {name: [] for name in modes}
    reference: dict[str, str] | None = None
    across_rounds = 0
    for round_index in range(args.rounds):
        names = list(modes)[round_index % 2 :] + list(modes)[: round_index % 2]
        for name in names:
            outputs, differ, rate = two_passes(modes[name], main_posts, others)
            rates[name].append(rate)
            changed[name].append(differ)
            print(f"round {round_index + 1} {name:10} {rate:.3f} posts/s, {differ}/{args.posts} changed in the "
                  "reordered pass", file=sys.stderr)  # fmt: skip
            if name == "default":
                reference = reference or outputs
                across_rounds += sum(reference[k] != outputs[k] for k in reference)
    assert reference is not None
    with create_engine(default_spec(args.model, contexts=1)) as engine:
        one_context = translate(Translator(engine), main_posts)
    pinned = pinned_child(args, main_posts)
    vs_one = sum(reference[k] != one_context[k] for k in reference)
    vs_pinned = sum(reference[k] != pinned[k] for k in reference)

    default_rate, throughput_rate = statistics.median(rates["default"]), statistics.median(rates["throughput"])
    ratio = default_rate / throughput_rate
    contexts = default_contexts(resolve_gguf(args.model)[0])
    print(f"{'mode':44} {'changed (reordered)':>20} {'posts/s (median)':>17}")
    print(f"{f'default: deterministic, {contexts} single-thread contexts':44} "
          f"{max(changed['default']):>13}/{args.posts:<6} {default_rate:>17.3f}")  # fmt: skip
    print(f"{f'throughput: {THROUGHPUT_SLOTS} slots, prompt cache, {os.cpu_count()} threads':44} "
          f"{max(changed['throughput']):>13}/{args.posts:<6} {throughput_rate:>17.3f}")  # fmt: skip
    print(f"default mode: {across_rounds} outputs changed across rounds; 1 context vs {contexts}: {vs_one} differ; "
          f"pinned to one core vs all: {vs_pinned} differ")  # fmt: skip
    print(f"rounds, posts/s: default {[round(r, 3) for r in rates['default']]}, "
          f"throughput {[round(r, 3) for r in rates['throughput']]}")  # fmt: skip
    default_changed = sum(changed["default"]) + across_rounds + vs_one + vs_pinned
    print(f"default_mode_outputs_changed: {default_changed} target: 0")
    print(f"deterministic_vs_throughput_posts_per_s: {ratio:.3f} target: {TARGET}")
    return 0 if default_changed == 0 and ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

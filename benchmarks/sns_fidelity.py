"""SNS fidelity and quality of the pipeline vs. a plain prompt on the same model (issue: core translator).

On a stratified RedTrans-Bench sample (seed 0, 20 per direction × category = 120 items) it translates with
`--mode plain` (one plain instruction, whole post) and `--mode sns` (the pipeline), then reports:
- among posts with something to keep (emoji, mention, URL, several lines), the share that keep all of it;
- posts with emoji that keep every emoji;
- corpus chrF++ (sacrebleu, word_order=2) per direction.
Targets: pipeline fidelity ≥ 0.98 and chrF++ per direction not below the plain prompt's.
Hypotheses are cached under --out, so a killed run resumes.

    python benchmarks/sns_fidelity.py --data ../shared/data/redtrans-bench/RedTrans-Bench.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from sacrebleu.metrics import CHRF

from redtrans.engines import EngineSpec, create_engine
from redtrans.jsonl import JSONLWriter, done_ids, read_jsonl
from redtrans.text.fidelity import fidelity
from redtrans.text.profiles import load_profile
from redtrans.text.spans import find_spans
from redtrans.translator import Item, Translator, TranslatorConfig


def stratified_sample(rows: list[dict], per_stratum: int, seed: int) -> list[tuple[int, dict]]:
    strata: dict[tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    for index, row in enumerate(rows):
        strata[(row["src_lang"], row["source"])].append((index, row))
    rng = random.Random(seed)
    picked: list[tuple[int, dict]] = []
    for key in sorted(strata):
        picked += rng.sample(strata[key], min(per_stratum, len(strata[key])))
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/redtrans-bench/RedTrans-Bench.json")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--per-stratum", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = all cores)")
    parser.add_argument("--out", default="runs/sns_fidelity")
    args = parser.parse_args()

    rows = json.loads(Path(args.data).read_text(encoding="utf-8"))
    sample = stratified_sample(rows, args.per_stratum, args.seed)
    items = {f"rtb-{i}": Item(f"rtb-{i}", r[r["src_lang"]], r["dst_lang"], r["src_lang"]) for i, r in sample}
    refs = {f"rtb-{i}": r[r["dst_lang"]] for i, r in sample}
    category = {f"rtb-{i}": r["source"] for i, r in sample}
    out = Path(args.out)
    spec = EngineSpec(kind="llamacpp", model=args.model, parallel=args.parallel, options={"n_threads": args.threads})
    engine = create_engine(spec)
    hyps: dict[str, dict[str, str]] = {}
    for mode in ("plain", "sns"):
        path = out / f"{mode}.jsonl"
        done = done_ids(path)
        todo = [item for key, item in items.items() if key not in done]
        translator = Translator(engine, TranslatorConfig(mode=mode))  # type: ignore[arg-type]
        started = time.perf_counter()
        with JSONLWriter(path) as writer:
            for n, result in enumerate(translator.translate(todo), start=1):
                writer.write(result.to_dict())
                print(f"\r{mode}: {len(done) + n}/{len(items)}", end="", file=sys.stderr, flush=True)
        print(f"\r{mode}: {len(items)} items, {time.perf_counter() - started:.0f}s this run", file=sys.stderr)
        hyps[mode] = {row["id"]: row["translation"] for _, row in read_jsonl(path)}
    engine.close()

    profile = load_profile("rednote")
    report: dict[str, dict] = {}
    for mode, hyp in hyps.items():
        relevant = kept = with_emoji = emoji_kept = 0
        for key, item in items.items():
            f = fidelity(item.text, hyp[key], profile)
            if f.relevant:
                relevant += 1
                kept += f.all_kept
            if any(s.kind == "emoji" for s in find_spans(item.text, profile)):
                with_emoji += 1
                emoji_kept += f.emoji
        chrf = {}
        for direction in ("zh", "en"):
            keys = [k for k, it in items.items() if it.src == direction]
            score = CHRF(word_order=2).corpus_score([hyp[k] for k in keys], [[refs[k] for k in keys]])
            chrf[f"{direction}->{items[keys[0]].tgt}"] = round(score.score, 2)
        report[mode] = {
            "fidelity_all_kept": round(kept / max(relevant, 1), 4),
            "relevant_posts": relevant,
            "posts_with_emoji": with_emoji,
            "posts_keeping_every_emoji": emoji_kept,
            "chrf++": chrf,
        }
    report["sample"] = {"items": len(items), "seed": args.seed, "categories": sorted(set(category.values()))}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    sns, plain = report["sns"], report["plain"]
    ok = sns["fidelity_all_kept"] >= 0.98 and all(sns["chrf++"][d] >= plain["chrf++"][d] for d in sns["chrf++"])
    for d in sns["chrf++"]:
        print(f"chrF++ {d}: sns {sns['chrf++'][d]} vs plain {plain['chrf++'][d]}")
    print(f"sns_fidelity: {sns['fidelity_all_kept']:.3f} target: 0.98")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

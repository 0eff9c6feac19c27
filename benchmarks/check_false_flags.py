"""False flags of the `untranslated`, `reply` and `refusal` checks on human translations (issue 29).

A human reference is a translation: every flag one of these checks raises on it is a false flag. The references
are the two sides of `../shared/data/parallel-zhen` (news, not a test set; nothing is tuned on RedTrans-Bench):
600 line pairs drawn with a fixed seed, each side checked as the translation of the other (the Chinese side as
an en→zh answer, the English side as a zh→en one), exactly as the translator checks an answer
(`checks.untranslated_words`, `checks.is_reply`, `checks.is_refusal`), with the shipped term base's kept words.

Target: at most 2% of the references flagged `untranslated` in each direction; exits 1 otherwise. The reply and
refusal rates are reported beside it. Last line: ``untranslated_false_flags: X target: 0.02`` (X = the worse
direction). Not a timing claim.

    python benchmarks/check_false_flags.py [--data ../shared/data/parallel-zhen] [--n 600] [--seed 29] [--show]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from redtrans.text import checks
from redtrans.text.termbase import builtin_termbase

TARGET = 0.02
DATA = Path("../shared/data/parallel-zhen")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train.zh-en.{zh,en}")
    parser.add_argument("--n", type=int, default=600, help="line pairs drawn")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--show", action="store_true", help="print every flagged reference")
    args = parser.parse_args()
    zh_path, en_path = args.data / "train.zh-en.zh", args.data / "train.zh-en.en"
    if not zh_path.is_file() or not en_path.is_file():
        print(f"parallel-zhen not found under {args.data} (train.zh-en.zh / .en)", file=sys.stderr)
        return 2
    zh = zh_path.read_text(encoding="utf-8").splitlines()
    en = en_path.read_text(encoding="utf-8").splitlines()
    pairs = [i for i in range(min(len(zh), len(en))) if zh[i].strip() and en[i].strip()]
    drawn = sorted(random.Random(args.seed).sample(pairs, args.n))
    print(f"{args.n} line pairs of {zh_path.parent} (seed {args.seed}; first lines {drawn[:5]})")
    termbase = builtin_termbase()
    worst = 0.0
    print("| direction | references | untranslated | reply | refusal |")
    print("|---|---|---|---|---|")
    shown: list[str] = []
    for src, tgt, sources, answers in (("en", "zh", en, zh), ("zh", "en", zh, en)):
        keep = termbase.kept_words(checks.words_language(src), tgt)
        counts = {"untranslated": 0, "reply": 0, "refusal": 0}
        for i in drawn:
            source, answer = sources[i], answers[i]
            found = {
                "untranslated": checks.untranslated_words(answer, source, src, tgt, keep),
                "reply": checks.is_reply(answer, source),
                "refusal": checks.is_refusal(answer, source),
            }
            for name, hit in found.items():
                if hit:
                    counts[name] += 1
                    shown.append(f"{src}→{tgt} line {i + 1} {name} {hit if hit is not True else ''}: {answer}")
        rates = {name: n / args.n for name, n in counts.items()}
        worst = max(worst, rates["untranslated"])
        print(f"| {src}→{tgt} | {args.n} | " + " | ".join(f"{counts[k]} ({rates[k]:.1%})" for k in counts) + " |")
    if args.show:
        print("\n".join(shown))
    print(f"untranslated_false_flags: {worst:.4f} target: {TARGET}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

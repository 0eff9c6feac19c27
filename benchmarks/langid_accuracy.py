"""Language identification on short SNS posts: the lingua-based `text.langid` vs the previous heuristic.

`benchmarks/data/langid_posts.jsonl` holds 210 short posts written for this benchmark (not taken from any
corpus), each labelled with its language: Chinese (Simplified and Traditional), English, code-mixed posts
labelled by their matrix language ("今天的OOTD是不是很chic" → zh, "This 奶茶 is so good" → en), Chinese-internet
Latin ("yyds 🔥", "xswl", "2333" → zh), and Portuguese, Vietnamese, Spanish, French and German. Both detectors
choose among all languages of the table. The baseline is the detector `text/langid.py` had before lingua (a
script rule plus function-word counts for Latin languages, English winning ties), copied here verbatim.

Target: accuracy ≥ 0.95 and above the baseline's; exits 1 otherwise. Last line:
``langid_accuracy: X target: 0.95``.

    python benchmarks/langid_accuracy.py [--data benchmarks/data/langid_posts.jsonl] [--show-errors]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import regex

from redtrans.jsonl import read_jsonl
from redtrans.languages import LANGUAGES
from redtrans.text.langid import detect_language, script_counts, warm_up

TARGET = 0.95
DATA = Path(__file__).parent / "data" / "langid_posts.jsonl"

# -- the baseline: redtrans.text.langid before lingua (git 2cc401d), verbatim ------------------------------
_WORD = regex.compile(r"\p{Latin}+")
_FUNCTION_WORDS = {
    "en": {"the", "and", "is", "you", "to", "of", "it", "this", "for", "my", "i", "so", "in", "that", "with"},
    "fr": {"le", "la", "les", "et", "est", "je", "vous", "une", "des", "pour", "pas", "dans", "ce"},
    "de": {"der", "die", "das", "und", "ist", "ich", "nicht", "ein", "eine", "mit", "zu", "auf", "sie"},
    "es": {"el", "los", "las", "y", "es", "que", "de", "en", "un", "una", "por", "para", "muy", "con"},
    "pt": {"o", "os", "e", "é", "que", "não", "um", "uma", "para", "com", "muito", "da", "do"},
    "it": {"il", "lo", "gli", "e", "è", "che", "non", "un", "una", "per", "con", "molto", "della"},
    "id": {"yang", "dan", "ini", "itu", "saya", "tidak", "dengan", "untuk", "ada", "sangat"},
    "vi": {"và", "là", "của", "không", "có", "những", "được", "tôi", "một", "này"},
}


def baseline_detect(text: str, candidates: Iterable[str] | None = None) -> str | None:
    allowed = set(candidates) if candidates else set(LANGUAGES)
    counts = script_counts(text)
    if not counts:
        return None
    if counts["Kana"] and "ja" in allowed:
        return "ja"
    weighted = Counter({k: v * (2 if k == "Han" else 1) for k, v in counts.items()})
    for script, _ in weighted.most_common():
        if script == "Latin":
            lang = _baseline_latin(text, allowed)
            if lang:
                return lang
            continue
        matches = [c for c in allowed if LANGUAGES[c].script == script]
        if matches:
            return matches[0]
    return None


def _baseline_latin(text: str, allowed: set[str]) -> str | None:
    latin = [c for c in allowed if LANGUAGES[c].script == "Latin"]
    if not latin:
        return None
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {c: sum(w in _FUNCTION_WORDS.get(c, ()) for w in words) for c in latin}
    best = max(scores.values())
    if best == 0 or scores.get("en") == best:
        return "en" if "en" in latin else sorted(latin)[0]
    return max(sorted(scores), key=lambda c: scores[c])


# -- measurement ---------------------------------------------------------------------------------------------
def evaluate(
    detect: Callable[[str], str | None], rows: list[dict[str, str]]
) -> tuple[float, dict[str, tuple[int, int]], list[tuple[dict[str, str], str | None]]]:
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors = []
    for row in rows:
        got = detect(row["text"])
        ok = got == row["lang"]
        per_kind[row["kind"]][0] += ok
        per_kind[row["kind"]][1] += 1
        if not ok:
            errors.append((row, got))
    correct = sum(c for c, _ in per_kind.values())
    return correct / len(rows), {k: (c, n) for k, (c, n) in per_kind.items()}, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--show-errors", action="store_true", help="List the posts each detector gets wrong.")
    args = parser.parse_args()
    rows = [row for _, row in read_jsonl(args.data)]
    t0 = time.perf_counter()
    old_acc, old_kinds, old_errors = evaluate(baseline_detect, rows)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm_up()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    new_acc, new_kinds, new_errors = evaluate(detect_language, rows)
    t_new = time.perf_counter() - t0
    print(f"{len(rows)} labelled posts from {args.data}")
    print(f"{'kind':10} {'baseline':>10} {'lingua':>10}")
    for kind in new_kinds:
        (oc, n), (nc, _) = old_kinds[kind], new_kinds[kind]
        print(f"{kind:10} {oc:>6}/{n:<3} {nc:>6}/{n:<3}")
    print(f"baseline (function words): {old_acc:.3f} in {t_old * 1000:.0f} ms")
    print(f"lingua + script + pinyin:  {new_acc:.3f} in {t_new * 1000:.0f} ms (+ {t_load:.1f} s model load)")
    if args.show_errors:
        for name, errors in (("baseline", old_errors), ("lingua", new_errors)):
            for row, got in errors:
                print(f"  {name} wrong: {row['id']} {row['text']!r} → {got} (label {row['lang']})")
    ok = new_acc >= TARGET and new_acc > old_acc
    if not ok:
        print(f"FAIL: need ≥ {TARGET} and above the baseline's {old_acc:.3f}", file=sys.stderr)
    print(f"langid_accuracy: {new_acc:.3f} target: {TARGET}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

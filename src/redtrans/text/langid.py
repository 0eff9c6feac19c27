"""Script-based language identification, good enough to route and check zh/en/ja/ko/… text.

SNS posts are short and code-mixed, so this counts letters per script instead of running a statistical
model; Latin-script languages are told apart by a handful of function words (English wins ties).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import regex

from redtrans.languages import LANGUAGES

_SCRIPTS = {
    "Han": regex.compile(r"\p{Han}"),
    "Kana": regex.compile(r"[\p{Hiragana}\p{Katakana}]"),
    "Hangul": regex.compile(r"\p{Hangul}"),
    "Latin": regex.compile(r"\p{Latin}"),
    "Cyrillic": regex.compile(r"\p{Cyrillic}"),
    "Arabic": regex.compile(r"\p{Arabic}"),
    "Thai": regex.compile(r"\p{Thai}"),
}
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


def script_counts(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, pattern in _SCRIPTS.items():
        n = len(pattern.findall(text))
        if n:
            counts[name] = n
    return counts


def letter_share(text: str, script: str) -> float:
    """Share of the text's letters (of the scripts we know) that belong to `script`."""
    counts = script_counts(text)
    total = sum(counts.values())
    if not total:
        return 0.0
    if script == "Japanese":
        return (counts["Kana"] + counts["Han"]) / total
    return counts[script] / total


def detect_language(text: str, candidates: Iterable[str] | None = None) -> str | None:
    """The most likely ISO code for `text`, or None when it has no letters.

    `candidates` narrows the answer (e.g. ``{"zh", "en"}`` for a zh↔en deployment).
    """
    allowed = set(candidates) if candidates else set(LANGUAGES)
    counts = script_counts(text)
    if not counts:
        return None
    # Japanese shares Han with Chinese: any kana makes it Japanese.
    if counts["Kana"] and "ja" in allowed:
        return "ja"
    # Weight Han characters ×2: one character carries about a word, a Latin letter about a fifth of one.
    weighted = Counter({k: v * (2 if k == "Han" else 1) for k, v in counts.items()})
    for script, _ in weighted.most_common():
        if script == "Latin":
            lang = _latin_language(text, allowed)
            if lang:
                return lang
            continue
        matches = [c for c in allowed if LANGUAGES[c].script == script]
        if matches:
            return matches[0]
    return None


def _latin_language(text: str, allowed: set[str]) -> str | None:
    latin = [c for c in allowed if LANGUAGES[c].script == "Latin"]
    if not latin:
        return None
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {c: sum(w in _FUNCTION_WORDS.get(c, ()) for w in words) for c in latin}
    best = max(scores.values())
    if best == 0 or scores.get("en") == best:
        return "en" if "en" in latin else sorted(latin)[0]
    return max(sorted(scores), key=lambda c: scores[c])

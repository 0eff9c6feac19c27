"""Language identification for short, code-mixed SNS posts: a script rule, Chinese-internet Latin, lingua.

Three steps, cheapest first:

1. **Script.** Letters are counted per script. Any kana makes a text Japanese; otherwise the scripts are
   ranked with Han characters weighted ×2 (a character carries about a word, a Latin letter about a fifth
   of one), so "今天的OOTD是不是很chic" is Chinese and "This 奶茶 is so good" English. A script that only
   one language of the candidates writes (Han → zh, Hangul → ko, Cyrillic → ru, …) decides at once.
2. **Pinyin abbreviations.** Latin text from the Chinese internet ("yyds 🔥", "xswl", "u1s1 awsl",
   "2333") is Chinese: when ``zh`` is a candidate and such tokens are at least half of the words, the
   answer is ``zh``. A lone abbreviation inside an English sentence ("this song is yyds") leaves it English.
3. **lingua** (`lingua-language-detector`, models shipped in its wheel, nothing downloaded) tells the
   Latin-script languages apart, restricted to the Latin-script candidates of our table: a zh↔en
   deployment (candidates ``{"zh", "en"}``) never loads a model. English wins near-ties (a margin of
   0.05 in lingua's confidence), as very short posts ("lol same", "ok") are English far more often on
   the platforms we serve than lingua's priors say.

Models load lazily on the first Latin-script text (about 10 s and 250 MB on 2 cores for the table's nine
Latin languages; `warm_up` loads them ahead). `benchmarks/langid_accuracy.py` measures this detector
against the previous function-word heuristic on 210 labelled posts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

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
_TOKEN = regex.compile(r"[\p{Latin}\p{N}]+")
_NOISE = regex.compile(r"https?://\S+|www\.\S+|[@#][\p{L}\p{N}_.]+")

# Chinese-internet abbreviations written in Latin letters (and digits): each stands for a Chinese phrase.
# Only tokens that are not also ordinary words of a Latin-script language of the table.
PINYIN_ABBREVIATIONS = frozenset(
    regex.split(
        r"\s+",
        """yyds xswl awsl u1s1 yysy nsdd zqsg dddd yygq xjj xgg plmm plgg bdjw kswl srds xmsl tql dbq gkd nbcs
        bhys djll szd yjgj cpdd blx ssfd zfb pyq xdm jms nbhs wbk yjjc bqs dssq ykd xsw zdjl jiayou niubi xiexie""",
    )
)
_LAUGH = regex.compile(r"^(?:h{3,}|2333+)$")  # 哈哈哈, and the 233 laugh


def is_pinyin_abbreviation(token: str) -> bool:
    """True for Chinese-internet Latin like ``yyds``, ``xswl``, ``hhhh``, ``23333``."""
    t = token.lower()
    return t in PINYIN_ABBREVIATIONS or bool(_LAUGH.match(t))


def script_counts(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, pattern in _SCRIPTS.items():
        n = len(pattern.findall(text))
        if n:
            counts[name] = n
    return counts


def script_of(char: str) -> str | None:
    """The script (of those counted here) of one character, or None (digits, punctuation, emoji, others)."""
    return next((name for name, pattern in _SCRIPTS.items() if pattern.match(char)), None)


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
    """The most likely ISO code for `text`, or None when it has nothing to tell a language by.

    `candidates` narrows the answer (e.g. ``{"zh", "en"}`` for a zh↔en deployment)."""
    allowed = set(candidates) if candidates else set(LANGUAGES)
    counts = script_counts(text)
    if "zh" in allowed and _pinyin_dominates(text, counts):
        return "zh"
    if not counts:
        return None
    # Japanese shares Han with Chinese: any kana makes it Japanese.
    if counts["Kana"] and "ja" in allowed:
        return "ja"
    weighted = Counter({k: v * (2 if k == "Han" else 1) for k, v in counts.items()})
    for script, _ in weighted.most_common():
        if script == "Latin":
            lang = _latin_language(text, allowed)
            if lang:
                return lang
            continue
        matches = [c for c in allowed if LANGUAGES[c].script == script]
        if matches:
            return sorted(matches)[0]
    return None


SHORT_SEGMENT_WORDS = 3.0
"""Below this many words' worth of letters (`word_units`) a segment is too short for lingua to tell the languages
of one script apart ("lol same", "ok", "ciao bella"): `segment_language` then takes the post's language."""


def word_units(text: str) -> float:
    """Words' worth of letters: 5 letters of an alphabet (Latin, Cyrillic, Arabic, Thai, Hangul jamo) make a word,
    and so do 1.5 characters of Chinese or Japanese (Han, kana) or 2.5 Hangul syllables."""
    counts = script_counts(text)
    cjk = counts["Han"] + counts["Kana"]
    alphabet = sum(n for script, n in counts.items() if script not in {"Han", "Kana", "Hangul"})
    return alphabet / 5 + cjk / 1.5 + counts["Hangul"] / 2.5


def writes(lang: str, script: str) -> bool:
    """True when `lang` is written in `script` (Japanese in Han and kana)."""
    own = LANGUAGES[lang].script
    return own == script or (own == "Japanese" and script in {"Han", "Kana"})


def main_script(text: str) -> str | None:
    """The script most of `text`'s letters are in, Han weighted ×2 as in `detect_language`; any kana → Kana."""
    counts = script_counts(text)
    if not counts:
        return None
    if counts["Kana"]:
        return "Kana"
    weighted = Counter({k: v * (2 if k == "Han" else 1) for k, v in counts.items()})
    return weighted.most_common(1)[0][0]


def segment_language(text: str, fallback: str, tgt: str, candidates: Iterable[str] | None = None) -> str:
    """The source language of one segment (a line of a post) for the translator.

    The rule, in order:

    1. Chinese-internet Latin ("yyds", "xswl 😂") is Chinese, whatever the length.
    2. A segment whose main script the target does not write and the post's language (`fallback`, given or
       detected for the whole post) does is in the post's language: a Latin line of an English post translated
       into Chinese is English. The segment is translated either way; telling English from French there would
       change only the prompt's wording, at the price of loading lingua's models.
    3. Otherwise the segment's own language (`detect_language`) — except when it has fewer than
       `SHORT_SEGMENT_WORDS` words' worth of letters (`word_units`) and several candidates write its script:
       then the post's language when it writes the script, else the target when it does, else the detector's
       answer. So "lol same" in an English post stays English, "ok" in a Chinese post translated into English is
       English (and copied), while "冲！" in an English post is Chinese whatever its length."""
    allowed = set(candidates) if candidates else set(LANGUAGES)
    counts = script_counts(text)
    if "zh" in allowed and _pinyin_dominates(text, counts):
        return "zh"
    script = main_script(text)
    if script is None:
        return fallback
    if not writes(tgt, script) and writes(fallback, script) and fallback in allowed:
        return fallback
    if word_units(text) < SHORT_SEGMENT_WORDS and sum(writes(c, script) for c in allowed) >= 2:
        # Too short for the detector to tell the languages of its script apart (asked only when needed).
        for lang in (fallback, tgt):
            if writes(lang, script):
                return lang
    return detect_language(text, allowed) or fallback


def _pinyin_dominates(text: str, counts: Counter[str]) -> bool:
    """Pinyin abbreviations are at least half of the Latin/number tokens (and there is no other script)."""
    if counts["Han"] or counts["Kana"] or counts["Hangul"]:
        return False  # the script rule decides
    tokens = _TOKEN.findall(_NOISE.sub(" ", text))
    hits = sum(is_pinyin_abbreviation(t) for t in tokens)
    return hits > 0 and 2 * hits >= len(tokens)


def _latin_language(text: str, allowed: set[str]) -> str | None:
    latin = sorted(c for c in allowed if LANGUAGES[c].script == "Latin")
    if not latin:
        return None
    if len(latin) == 1:
        return latin[0]
    cleaned = _NOISE.sub(" ", text)
    values = _detector(tuple(latin)).compute_language_confidence_values(cleaned)
    scores = {_LINGUA_CODES[v.language.name]: float(v.value) for v in values}
    if not scores:
        return "en" if "en" in latin else latin[0]
    best = max(latin, key=lambda c: scores.get(c, 0.0))
    english, top = scores.get("en", 0.0), scores[best]
    if best != "en" and "en" in latin and english >= min(top - ENGLISH_MARGIN, ENGLISH_RATIO * top):
        return "en"
    return best


ENGLISH_MARGIN = 0.05
"""English wins when its lingua confidence is within this of the best one (short posts)."""
ENGLISH_RATIO = 0.4
"""... or at least this share of the best one. Short English slang ("no cap best pizza": it 0.33, en 0.16;
"lol same") reads as Italian to lingua, while short posts really in another language leave English far below
(≤ 0.18 of the best on every such post of benchmarks/data/langid_posts.jsonl)."""

# lingua's Language enum names of the table's codes (ISO 639-1 in lingua's own `iso_code_639_1`).
_LINGUA_NAMES = {
    "zh": "CHINESE", "en": "ENGLISH", "ja": "JAPANESE", "ko": "KOREAN", "fr": "FRENCH", "de": "GERMAN",
    "es": "SPANISH", "pt": "PORTUGUESE", "it": "ITALIAN", "ru": "RUSSIAN", "ar": "ARABIC", "th": "THAI",
    "vi": "VIETNAMESE", "id": "INDONESIAN", "ms": "MALAY",
}  # fmt: skip
_LINGUA_CODES = {name: code for code, name in _LINGUA_NAMES.items()}
_lock = threading.Lock()


@lru_cache(maxsize=32)
def _detector(codes: tuple[str, ...]) -> Any:
    """A lingua detector for these languages (models are shared between detectors and load once)."""
    from lingua import Language, LanguageDetectorBuilder

    with _lock:
        return LanguageDetectorBuilder.from_languages(*(getattr(Language, _LINGUA_NAMES[c]) for c in codes)).build()


def warm_up(candidates: Iterable[str] | None = None) -> None:
    """Load lingua's models for the Latin-script candidates now rather than on the first post."""
    latin = sorted(c for c in (candidates or LANGUAGES) if LANGUAGES[c].script == "Latin")
    if len(latin) > 1:
        detector = _detector(tuple(latin))
        for sample in ("the", "hello there, how are you today"):
            detector.compute_language_confidence_values(sample)

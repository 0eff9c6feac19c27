"""Output clean-up and checks for one translated segment.

Clean-up removes what small instruct models add around a translation (a preamble line such as "Here is
the translation:", wrapping quotes, trailing notes). Checks name what is still wrong; the translator retries
once (constrained to the target's script, or with a stricter prompt) and flags what survives the retry.
"""

from __future__ import annotations

import regex

from redtrans.languages import get_language
from redtrans.text.langid import letter_share, script_counts
from redtrans.text.spans import MARKER

# Flags a result can carry (empty = clean).
MISSING_SPAN = "missing_span"  # a protected span/marker had to be re-inserted by position
WRONG_LANGUAGE = "wrong_language"
ECHO = "echo"  # the model returned the source unchanged
EMPTY = "empty"
TRUNCATED = "truncated"  # hit the token limit
RETRIED = "retried"
LENGTH_RATIO = "length_ratio"  # far shorter or longer than a translation of the source can be
REFUSAL = "refusal"  # assistant talk instead of a translation ("I'm sorry, but I can't…", "As an AI…")
ENGINE_ERROR = "engine_error"  # the engine gave no answer (error, timeout, an upstream answer that is not one)

FAILING = frozenset({ENGINE_ERROR, EMPTY, ECHO, REFUSAL})
"""Flags that leave no usable translation: a segment that still has one after its retry fails its row. The
other flags (a re-inserted span, a partly wrong language, an odd length, a truncation with text) are quality
flags on a usable answer: the row is done, and flagged."""

_PREAMBLE = regex.compile(
    r"^\s*(?:(?:sure|certainly|okay|ok)[,!.]?\s*)?"
    r"(?:here(?:'s| is| are)\b[^\n:：]{0,60}|(?:the )?(?:english |chinese )?translation(?: is)?|translated text"
    r"|以下是[^\n:：]{0,30}|翻译(?:如下|结果)?|译文)\s*[:：]\s*",
    regex.IGNORECASE,
)
_NOTE_LINE = regex.compile(r"^\s*[(（*]?\s*(?:note|notes|explanation|注|注释|说明)\b\s*[:：]", regex.IGNORECASE)
_QUOTES = {'"': '"', "“": "”", "「": "」", "『": "』", "'": "'", "‘": "’", "《": "》"}


def clean_output(output: str, source: str) -> str:
    """Strip preamble, trailing notes and quotes the source did not have; join stray line breaks."""
    text = output.strip()
    text = _PREAMBLE.sub("", text, count=1).strip()
    if "\n" not in source and "\n" in text:
        kept: list[str] = []
        for line in text.split("\n"):
            if _NOTE_LINE.match(line):
                break
            if line.strip():
                kept.append(line.strip())
        text = " ".join(kept)
        text = _PREAMBLE.sub("", text, count=1).strip()
    src = source.strip()
    for _ in range(2):
        quoted = len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]
        if quoted and not (src[:1] == text[0] and src[-1:] == text[-1]):
            text = text[1:-1].strip()
            continue
        break
    return text


def _normalise(text: str) -> str:
    return regex.sub(r"[\s\p{P}]+", "", text).casefold()


# Assistant talk that is never a translation, whatever the post says: the model speaking about itself.
_AI_TALK = regex.compile(
    r"\bas an? (?:ai|artificial intelligence|language model|ai (?:language )?model|ai assistant)\b"
    r"|\bi(?:'m| am) (?:just |only )?an? (?:ai|language model|ai (?:language )?model|ai assistant)\b"
    r"|作为(?:一个|一名)?(?:ai|AI|人工智能|语言模型|AI助手|人工智能助手)|我(?:只)?是(?:一个)?(?:ai|AI|人工智能|语言模型)",
    regex.IGNORECASE,
)
# Refusals and assistant replies: a translation can say these too ("对不起，我帮不了你" → "Sorry, I can't help you"),
# so each counts only when the post itself has nothing of the kind.
_REFUSAL = regex.compile(
    r"^\W*(?:(?:i'?m|i am) (?:so |very |really )?sorry|sorry|i apologi[sz]e|unfortunately)\b[^.!?\n]{0,40}?"
    r"\b(?:can(?:no|')t|cannot|am unable|'m unable|am not able|won'?t be able)\b"
    r"|\bi (?:can(?:no|')t|cannot|am unable to|'m unable to|won'?t) (?:assist|help|comply|fulfil+|provide|translate"
    r"|do that|engage)\b"
    r"|^\W*(?:抱歉|对不起|很抱歉|非常抱歉)[，,。！!]?\s*(?:我|但我)?(?:无法|不能|没法|不可以)"
    r"|我(?:无法|不能)(?:协助|帮助|帮你|提供|翻译|完成|满足|回答)",
    regex.IGNORECASE,
)
_SOURCE_REFUSAL = regex.compile(
    r"sorry|apolog|unfortunately|can(?:no|')t|cannot|unable|won'?t|对不起|抱歉|不好意思|遗憾|无法|不能|没法|不了|做不到|不可以",
    regex.IGNORECASE,
)
_ASSISTANT_REPLY = regex.compile(
    r"^\W*(?:sure|certainly|of course|okay|ok)[!,.]?\s+(?:here(?:'s| is| are)|i can|i'll|i will|let me)\b"
    r"|^\W*(?:好的|当然|没问题)[，,！!。]\s*(?:这是|以下是|下面是|我来|我可以)",
    regex.IGNORECASE,
)
_SOURCE_REPLY = regex.compile(r"sure|certainly|of course|okay|\bok\b|好的|当然|没问题|好滴|行", regex.IGNORECASE)
_SOURCE_AI = regex.compile(r"\bai\b|artificial intelligence|language model|人工智能|语言模型|机器人", regex.IGNORECASE)


def is_refusal(output: str, source: str) -> bool:
    """True when `output` is assistant talk instead of a translation of `source` (in either language):
    "I'm sorry, but I can't assist with that.", "As an AI…", "Sure! Here is…", "抱歉，我无法…", "作为AI…"."""
    text = MARKER.sub("", output).strip()
    if not text:
        return False
    return bool(
        (_AI_TALK.search(text) and not _SOURCE_AI.search(source))
        or (_REFUSAL.search(text) and not _SOURCE_REFUSAL.search(source))
        or (_ASSISTANT_REPLY.search(text) and not _SOURCE_REPLY.search(source))
    )


def check_output(output: str, source: str, src: str, tgt: str, n_markers: int) -> list[str]:
    """Flags for a cleaned segment translation (markers still in place)."""
    flags: list[str] = []
    bare = MARKER.sub("", output)
    if not bare.strip() and regex.search(r"\p{L}", MARKER.sub("", source)):
        return [EMPTY]
    if is_refusal(bare, MARKER.sub("", source)):
        return [REFUSAL]
    found = {int(m.group(1)) for m in MARKER.finditer(output)}
    if any(n not in found for n in range(1, n_markers + 1)):
        flags.append(MISSING_SPAN)
    if src != tgt and _normalise(bare) == _normalise(MARKER.sub("", source)) and len(_normalise(bare)) > 3:
        flags.append(ECHO)
    elif wrong_script(bare, src, tgt):
        flags.append(WRONG_LANGUAGE)
    source_units, output_units = length_units(MARKER.sub("", source)), length_units(bare)
    if (source_units >= 8 and output_units < 0.4 * source_units) or (
        output_units >= 20 and output_units > 3.5 * source_units
    ):
        flags.append(LENGTH_RATIO)
    return flags


_CJK_CHAR = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}]")
_WORD = regex.compile(r"[\p{L}\p{N}]+")


def names_only(text: str) -> bool:
    """True when every word is capitalised, in capitals or a number, with at least one word of letters: a line of
    proper names and codes ("PG: Doncic, Vincent, Bronny", "Courreges FW 2002"), which a translation may rightly
    keep as it is. Scripts without case (Han, kana, Hangul) never are."""
    words = _WORD.findall(MARKER.sub(" ", text))
    return any(w[0].isalpha() for w in words) and all(w[0].isupper() or w[0].isdigit() for w in words)


def length_units(text: str) -> float:
    """Rough content length comparable across scripts: a CJK character ≈ 1, a spaced word ≈ 1.6."""
    cjk = len(_CJK_CHAR.findall(text))
    words = len(_WORD.findall(_CJK_CHAR.sub(" ", text)))
    return cjk + 1.6 * words


def wrong_script(text: str, src: str, tgt: str) -> bool:
    """True when the text is mostly in the source's script though the target's script differs."""
    src_script, tgt_script = get_language(src).script, get_language(tgt).script
    if src_script == tgt_script:
        return False
    counts = script_counts(text)
    if sum(counts.values()) < 2:
        return False
    if tgt_script in {"Han", "Japanese", "Hangul", "Thai", "Arabic", "Cyrillic"}:
        # Brand names and code-mixing keep some Latin in CJK output, but some target script must be there.
        return letter_share(text, tgt_script) < 0.15 and letter_share(text, src_script) > 0.5
    # Into a spaced script, any run of source-script characters is untranslated text (not a brand name).
    return letter_share(text, src_script) > 0.3 or (
        src_script != "Latin"
        and bool(regex.search(rf"\p{{{_SCRIPT_PROPERTY.get(src_script, src_script)}}}{{2}}", text))
    )


_SCRIPT_PROPERTY = {"Japanese": "Han"}

# Code-point ranges of the scripts a translation into another script must not contain (Latin is absent on
# purpose: brand names and code-mixing keep Latin in Chinese, Japanese or Korean text).
_CJK_PUNCTUATION = ["\\u3000-\\u303f", "\\uff00-\\uffef"]
_HAN = ["\\u3400-\\u4dbf", "\\u4e00-\\u9fff", "\\uf900-\\ufaff"]
_SCRIPT_RANGES: dict[str, list[str]] = {
    "Han": _HAN + _CJK_PUNCTUATION,
    "Japanese": _HAN + ["\\u3040-\\u30ff"] + _CJK_PUNCTUATION,
    "Hangul": ["\\u1100-\\u11ff", "\\u3130-\\u318f", "\\uac00-\\ud7af"],
    "Thai": ["\\u0e00-\\u0e7f"],
    "Cyrillic": ["\\u0400-\\u04ff"],
    "Arabic": ["\\u0600-\\u06ff"],
}


def source_script_grammar(src: str, tgt: str) -> str | None:
    """A GBNF grammar for output free of the source's script, or None when the pair cannot be constrained
    that way (Latin sources; targets sharing characters with the source, such as Chinese and Japanese).

    A segment whose first answer leaked source text ("The奶茶 here…") or echoed the source is retried with the
    same prompt under this grammar: the slot already holds that prompt, so the retry costs only its output
    tokens, and the model has to say the leaked words in the target language."""
    src_ranges = _SCRIPT_RANGES.get(get_language(src).script)
    tgt_ranges = _SCRIPT_RANGES.get(get_language(tgt).script, [])
    if not src_ranges or set(src_ranges) & set(tgt_ranges):
        return None
    return f"root ::= [^{''.join(src_ranges)}]*"

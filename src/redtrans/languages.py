"""The language table: ISO 639-1 codes, names, scripts and the BLEU tokenizer each target needs.

One table serves prompts (names), language identification (scripts), checks and metrics (tokenizers), so
adding a language is one row here. zh and en are first-class; nothing else assumes two languages.

Language tags are BCP-47, parsed by `langcodes` (``pt-BR``, ``zh_Hant_TW``, ``EN`` all work); the pipeline
works on the table's ISO 639-1 code, and a Chinese tag's script is kept apart (`chinese_script`):
``zh-Hant``, ``zh-TW``, ``zh-HK``, ``zh-MO`` are Traditional; ``zh-Hans``, ``zh-CN``, ``zh-SG`` are
Simplified; a bare ``zh`` names no script and output is left as the model wrote it (Simplified in
practice). `to_chinese_script` converts a finished translation with OpenCC (regional phrasing for
Taiwan and Hong Kong), which is how a ``zh-Hant`` target gets Traditional output from models that write
Simplified. sacrebleu's ``zh`` tokenizer splits Traditional characters as it does Simplified ones, so the
table's one ``zh`` tokenizer serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import langcodes

from redtrans.errors import LanguageError


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # English name, used in prompts
    native: str
    script: str  # dominant script, as used by `redtrans.text.langid`
    bleu_tokenizer: str  # sacrebleu tokenizer for corpus/sentence BLEU into this language
    spaced: bool = True  # words separated by spaces (chrF++ word n-grams are meaningful)


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("zh", "Chinese", "中文", "Han", "zh", spaced=False),
        Language("en", "English", "English", "Latin", "13a"),
        Language("ja", "Japanese", "日本語", "Japanese", "char", spaced=False),
        Language("ko", "Korean", "한국어", "Hangul", "char"),
        Language("fr", "French", "Français", "Latin", "13a"),
        Language("de", "German", "Deutsch", "Latin", "13a"),
        Language("es", "Spanish", "Español", "Latin", "13a"),
        Language("pt", "Portuguese", "Português", "Latin", "13a"),
        Language("it", "Italian", "Italiano", "Latin", "13a"),
        Language("ru", "Russian", "Русский", "Cyrillic", "13a"),
        Language("ar", "Arabic", "العربية", "Arabic", "13a"),
        Language("th", "Thai", "ไทย", "Thai", "char", spaced=False),
        Language("vi", "Vietnamese", "Tiếng Việt", "Latin", "13a"),
        Language("id", "Indonesian", "Bahasa Indonesia", "Latin", "13a"),
        Language("ms", "Malay", "Bahasa Melayu", "Latin", "13a"),
    )
}


UnknownLanguageError = LanguageError  # the name stages used before the error tree


def _unknown(code: str) -> LanguageError:
    return UnknownLanguageError(
        f"unknown language {code!r}: use an ISO 639-1 code or BCP-47 tag (zh-Hant, pt-BR) of "
        f"{', '.join(sorted(LANGUAGES))}"
    )


@lru_cache(maxsize=1024)
def _parse_tag(code: str) -> Any:
    """`langcodes.Language` of a tag (canonical: ``iw`` → ``he``, ``zh_hant_tw`` → ``zh-Hant-TW``)."""
    try:
        return langcodes.Language.get(code.strip(), normalize=True)
    except (langcodes.LanguageTagError, ValueError):
        raise _unknown(code) from None


def get_language(code: str) -> Language:
    """Look a language up by ISO 639-1 code or BCP-47 tag (case-insensitive; ``zh-TW``/``zh_Hans`` → ``zh``)."""
    found = LANGUAGES.get(code.strip().lower()) if isinstance(code, str) else None
    if found is not None:
        return found
    key = _parse_tag(str(code)).language
    if key not in LANGUAGES:
        raise _unknown(code)
    return LANGUAGES[key]


ChineseScript = Literal["Hans", "Hant"]
_TRADITIONAL_REGIONS = {"TW", "HK", "MO"}
_SIMPLIFIED_REGIONS = {"CN", "SG", "MY"}


def chinese_script(tag: str | None) -> ChineseScript | None:
    """``Hant``/``Hans`` when `tag` is Chinese and names its script (or a region that implies one), else None.

    ``zh-Hant``, ``zh-TW``, ``zh-HK``, ``zh-MO`` → Hant; ``zh-Hans``, ``zh-CN``, ``zh-SG`` → Hans; ``zh``,
    ``en`` → None (no conversion asked for)."""
    if not tag or get_language(tag).code != "zh":
        return None
    parsed = _parse_tag(tag)
    if parsed.script in ("Hans", "Hant"):
        return parsed.script
    if parsed.territory in _TRADITIONAL_REGIONS:
        return "Hant"
    if parsed.territory in _SIMPLIFIED_REGIONS:
        return "Hans"
    return None


def opencc_config(tag: str | None) -> str | None:
    """The OpenCC conversion a target tag asks for: ``s2twp`` (Taiwan, with its phrasing), ``s2hk``, ``s2t``,
    ``t2s``; None when the tag asks for none."""
    script = chinese_script(tag)
    if script is None:
        return None
    if script == "Hans":
        return "t2s"
    region = _parse_tag(str(tag)).territory
    return {"TW": "s2twp", "HK": "s2hk", "MO": "s2hk"}.get(region or "", "s2t")


@lru_cache(maxsize=8)
def _converter(config: str) -> Any:
    import opencc

    return opencc.OpenCC(f"{config}.json")


def to_chinese_script(text: str, tag: str | None) -> str:
    """`text` in the script `tag` asks for (OpenCC), unchanged when it asks for none (``zh``, ``en``).

    Called on a finished translation: markers and spans are already restored, and OpenCC leaves Latin
    text, emoji and URLs as they are."""
    config = opencc_config(tag)
    if config is None or not text:
        return text
    return str(_converter(config).convert(text))


def language_tag(code: str) -> str:
    """The canonical BCP-47 form of a tag (``zh_hant_tw`` → ``zh-Hant-TW``); LanguageError if unknown."""
    get_language(code)
    return str(_parse_tag(code).to_tag())


def default_target(src: str | None) -> str:
    """The target a source goes to when none is given: English, or Chinese for an English source.

    One rule for text mode, file rows, serving and every stage (the `--tgt` help says the same)."""
    return "zh" if src is not None and get_language(src).code == "en" else "en"

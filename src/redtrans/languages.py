"""The language table: ISO 639-1 codes, names, scripts and the BLEU tokenizer each target needs.

One table serves prompts (names), language identification (scripts), checks and metrics (tokenizers), so
adding a language is one row here. zh and en are first-class; nothing else assumes two languages.

Language tags are BCP-47, parsed by `langcodes` (``pt-BR``, ``zh_Hant_TW``, ``EN`` all work); the pipeline
works on the table's ISO 639-1 code, and a Chinese tag's script is kept apart (`chinese_script`):
``zh-Hant``, ``zh-TW``, ``zh-HK``, ``zh-MO`` are Traditional; ``zh-Hans``, ``zh-CN``, ``zh-SG`` are
Simplified; a bare ``zh`` names no script and output is left as the model wrote it (Simplified in
practice). `to_chinese_script` converts a finished translation with OpenCC, which is how a ``zh-Hant``
target gets Traditional output from models that write Simplified: ``zh-Hant`` in Taiwan's standard
characters (``s2tw``: 裡, 麵, 吃, not OpenCC's generic ``s2t`` forms 裏, 麪, 喫 that read as unusual in Taiwan
and Hong Kong), ``zh-TW`` with Taiwan's phrasing too (``s2twp``: 方便麵 → 泡麵), ``zh-HK``/``zh-MO`` in Hong
Kong's (``s2hk``). A simplified character that stands for several traditional ones (干: 乾 dry, 幹 do; 发: 發,
髮 hair; 面: 面, 麵 noodles; 里: 里, 裡/裏; 台: 臺/台, 颱, 檯/枱) is chosen by OpenCC's phrase dictionaries;
where those get a common context wrong (頭髮幹了 for "the hair is dry"), a small reviewed table,
`PHRASE_FIXES`, corrects OpenCC's output afterwards, in each region's characters. sacrebleu's ``zh``
tokenizer splits Traditional characters as it does Simplified ones, so the table's one ``zh`` tokenizer
serves both.
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
    """The OpenCC conversion a target tag asks for: ``s2tw`` for ``zh-Hant`` (Taiwan's standard characters,
    no phrase conversion), ``s2twp`` for ``zh-TW`` (with Taiwan's phrasing), ``s2hk`` for ``zh-HK``/``zh-MO``,
    ``t2s`` for Simplified; None when the tag asks for none."""
    script = chinese_script(tag)
    if script is None:
        return None
    if script == "Hans":
        return "t2s"
    region = _parse_tag(str(tag)).territory
    return {"TW": "s2twp", "HK": "s2hk", "MO": "s2hk"}.get(region or "", "s2tw")


@lru_cache(maxsize=8)
def _converter(config: str) -> Any:
    import opencc

    return opencc.OpenCC(f"{config}.json")


# -- corrections after OpenCC ---------------------------------------------------------------------------------
# Reviewed by hand: each entry is OpenCC's output (Taiwan characters) → the right one. OpenCC reads 干 after a
# noun as 幹 ("do") where the noun is something that dries; reads 面 alone as "face" where it is noodles; and
# misses a few fixed words. Entries whose key a longer entry shares are exceptions (kept as OpenCC wrote them):
# the longest match wins. Hong Kong's table is this one in Hong Kong's characters (`_HK_CHARACTERS`).
_DRYING = ("頭髮", "衣服", "褲子", "襪子", "鞋子", "被子", "床單", "毛巾", "皮膚", "嘴巴", "嘴唇", "喉嚨", "嗓子",
           "眼睛", "地面", "地板", "油漆", "指甲油", "墨水", "膠水", "面膜")  # fmt: skip
_BEFORE_DRY = ("", "沒", "還沒", "都", "快", "已經", "全")
_NOT_DRY = ("幹嘛", "幹麼", "幹什麼", "幹啥", "幹活")  # 衣服幹嘛這麼貴: "why", not "dry"


def _phrase_fixes() -> dict[str, str]:
    fixes: dict[str, str] = {}
    for noun in _DRYING:
        for before in _BEFORE_DRY:
            fixes[f"{noun}{before}幹"] = f"{noun}{before}乾"
            fixes.update({f"{noun}{before}{word}": f"{noun}{before}{word}" for word in _NOT_DRY})
    fixes.update(
        {
            "沒幹透": "沒乾透",  # 还没干透: not dry through
            # OpenCC keeps 天干 (the heavenly stems) in 今天干嘛, 每天干活: "do" unless it is the stems
            "天干": "天幹",
            "天干地支": "天干地支",
            "十天干": "十天干",
            # 发 for hair after 新 (OpenCC reads 新发 as in 新发现)
            "新發型": "新髮型",
            "新發色": "新髮色",
            # 发 for hair after a measure word (染个发: have one's hair dyed)
            "染個發": "染個髮",
            "剪個發": "剪個髮",
            "理個發": "理個髮",
            "燙個發": "燙個髮",
            "一根發": "一根髮",
            "一根發芽": "一根發芽",
            # 面 alone for noodles, where the sentence can only mean noodles
            "吃什麼面": "吃什麼麵",
            "面坨了": "麵坨了",
            "面煮好": "麵煮好",
            "面煮熟": "麵煮熟",
            "面太軟": "麵太軟",
            "面太硬": "麵太硬",
            "面好吃": "麵好吃",
            "面很好吃": "麵很好吃",
            "面真好吃": "麵真好吃",
            "面超好吃": "麵超好吃",
            "表面好吃": "表面好吃",
            # 里 in fixed words and names: li (a unit), Mali
            "百裡挑一": "百里挑一",
            "馬裡": "馬里",
            "馬裡面": "馬裡面",
            "馬裡頭": "馬裡頭",
            "馬裡邊": "馬裡邊",
            # 台风 as stage presence, not a typhoon; TSMC's own name
            "颱風很穩": "臺風很穩",
            "颱風超穩": "臺風超穩",
            "舞臺颱風": "舞臺臺風",
            "臺積電": "台積電",
        }
    )
    return fixes


PHRASE_FIXES: dict[str, str] = _phrase_fixes()
"""OpenCC's output (Taiwan characters) → the right characters, applied after OpenCC (longest match first)."""
_HK_CHARACTERS = str.maketrans({"裡": "裏", "麵": "麪", "臺": "台"})


@lru_cache(maxsize=8)
def _fixer(config: str) -> tuple[Any, dict[str, str]]:
    """The compiled longest-match pattern and table for an OpenCC config's output."""
    import re

    if config == "s2hk":
        table = {k.translate(_HK_CHARACTERS): v.translate(_HK_CHARACTERS) for k, v in PHRASE_FIXES.items()}
    else:
        table = dict(PHRASE_FIXES)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))
    return pattern, table


def to_chinese_script(text: str, tag: str | None) -> str:
    """`text` in the script `tag` asks for (OpenCC, then `PHRASE_FIXES`), unchanged when it asks for none
    (``zh``, ``en``).

    Called on a finished translation: markers and spans are already restored, and OpenCC leaves Latin
    text, emoji and URLs as they are."""
    config = opencc_config(tag)
    if config is None or not text:
        return text
    converted = str(_converter(config).convert(text))
    if config == "t2s":
        return converted
    pattern, table = _fixer(config)
    return str(pattern.sub(lambda match: table[match.group(0)], converted))


def language_tag(code: str) -> str:
    """The canonical BCP-47 form of a tag (``zh_hant_tw`` → ``zh-Hant-TW``); LanguageError if unknown."""
    get_language(code)
    return str(_parse_tag(code).to_tag())


def default_target(src: str | None) -> str:
    """The target a source goes to when none is given: English, or Chinese for an English source.

    One rule for text mode, file rows, serving and every stage (the `--tgt` help says the same)."""
    return "zh" if src is not None and get_language(src).code == "en" else "en"

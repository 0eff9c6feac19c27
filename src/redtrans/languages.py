"""The language table: ISO 639-1 codes, names, scripts and the BLEU tokenizer each target needs.

One table serves prompts (names), language identification (scripts), checks and metrics (tokenizers), so
adding a language is one row here. zh and en are first-class; nothing else assumes two languages.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def get_language(code: str) -> Language:
    """Look a language up by ISO 639-1 code (case-insensitive; ``zh-CN``/``zh_Hans`` map to ``zh``)."""
    key = code.strip().lower().replace("_", "-").split("-")[0]
    try:
        return LANGUAGES[key]
    except KeyError:
        raise UnknownLanguageError(
            f"unknown language {code!r}: use an ISO 639-1 code from {', '.join(sorted(LANGUAGES))}"
        ) from None


def default_target(src: str | None) -> str:
    """The target a source goes to when none is given: English, or Chinese for an English source.

    One rule for text mode, file rows, serving and every stage (the `--tgt` help says the same)."""
    return "zh" if src is not None and get_language(src).code == "en" else "en"

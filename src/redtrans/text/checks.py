"""Output clean-up and checks for one translated segment.

Clean-up removes what small instruct models add around a translation (a preamble line such as "Here is
the translation:", wrapping quotes, trailing notes). Checks name what is still wrong; the translator retries
once (constrained to the target's script, or with a stricter prompt) and flags what survives the retry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import regex

from redtrans.languages import get_language
from redtrans.text.langid import is_pinyin_abbreviation, letter_share, script_counts
from redtrans.text.spans import MARKER
from redtrans.text.wordlists import zipf_table

# Flags a result can carry (empty = clean).
MISSING_SPAN = "missing_span"  # a protected span/marker had to be re-inserted by position
WRONG_LANGUAGE = "wrong_language"
ECHO = "echo"  # the model returned the source unchanged
EMPTY = "empty"
TRUNCATED = "truncated"  # hit the token limit
RETRIED = "retried"
LENGTH_RATIO = "length_ratio"  # far shorter or longer than a translation of the source can be
REFUSAL = "refusal"  # assistant talk instead of a translation ("I'm sorry, but I can't…", "As an AI…")
REPLY = "reply"  # the model answered the post (sympathy, advice, an offer of help, a question back) instead
UNTRANSLATED = "untranslated"  # source words left as they are ("氛围非常 immaculate", "低-key", "truly yyds")
ENGINE_ERROR = "engine_error"  # the engine gave no answer (error, timeout, an upstream answer that is not one)

FAILING = frozenset({ENGINE_ERROR, EMPTY, ECHO, REFUSAL, REPLY})
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


# Assistant replies: the model answering the post instead of translating it ("I'm sorry to hear that you're
# feeling this way… Is there anything specific you'd like to talk about?"). Each family is (what the answer
# says, what the post would have to say for a translation to say it): a reply counts only when the post has
# nothing of its family, so "I'm sorry to hear that" translated from "听到这个消息我很难过" is not one.
_REPLY_FAMILIES: tuple[tuple[regex.Pattern[str], regex.Pattern[str]], ...] = tuple(
    (regex.compile(answer, regex.IGNORECASE), regex.compile(post, regex.IGNORECASE))
    for answer, post in [
        (  # sympathy addressed to the poster
            r"\b(?:i'?m|i am) (?:so |really |very |truly )?sorry (?:to hear|that you|you(?:'re| are| feel)|for your)"
            r"|\bsorry to hear\b|\bit (?:sounds|seems) like you(?:'re| are| have| feel)"
            r"|\bi (?:can |completely |totally )?understand (?:how|that|what|why) you"
            r"|\bthat (?:sounds|must be|must feel) (?:really |so |very )?(?:hard|tough|difficult|frustrating|painful"
            r"|overwhelming|rough)|\bi(?:'m| am) here (?:for you|to (?:help|listen|support))"
            r"|(?:很|非常|真的)?(?:抱歉|遗憾|难过)(?:地)?(?:听到|得知)|听到(?:你|这)[^。！？!?]{0,12}(?:难过|遗憾|抱歉|心疼)"
            r"|听起来你|我(?:能|可以|完全|非常)?理解你(?:的感受|的心情|现在|为什么)|我(?:会)?(?:一直)?在这里(?:陪|倾听|支持|帮)",
            r"sorry|hear|sound|seem|understand|here for|抱歉|遗憾|难过|听到|听说|听起来|理解|陪|心疼",
        ),
        (  # an offer of help or advice the post did not ask for
            r"\b(?:is there anything|if there(?:'s| is) anything)\b[^.?!]{0,40}"
            r"\b(?:i can|you(?:'d| would) like|you want|to talk)\b|\bhow (?:can|may) i (?:help|assist)\b"
            r"|\bdon'?t hesitate to (?:reach|ask|contact)"
            r"|\bfeel free to (?:ask|share|reach|talk|let me)|\blet me know if (?:you|there)"
            r"|\bi(?:'d| would) be (?:happy|glad) to (?:help|assist|listen|talk)|\bi hope (?:this|that|my answer) helps"
            r"|\b(?:consider|try) (?:reaching out|talking) to\b"
            r"|\bseek(?:ing)? (?:professional|medical) (?:help|support)"
            r"|有什么(?:我)?(?:可以|能)(?:帮|为你)|如果你(?:需要|想)(?:聊聊|倾诉|帮助|找人|谈谈)|请随时(?:告诉|联系|找)我"
            r"|希望(?:这|以上|我的回答)(?:些)?(?:内容)?(?:对你)?(?:有所)?帮助|(?:寻求|联系)(?:专业|心理)(?:人士|医生|咨询|帮助)",
            r"help|assist|hesitate|feel free|let me know|happy to|glad to|reach out|professional|talk to"
            r"|帮|随时|告诉我|专业|联系|咨询|聊|倾诉",
        ),
        (  # a question back to the poster, where the post asked none
            r"\b(?:would you like|do you want|can you tell me|could you (?:tell|share|provide|clarify|explain)"
            r"|what (?:would|do|did) you|have you (?:tried|considered|thought)|are you (?:looking|asking))\b[^?]*\?"
            r"|你(?:想|愿意|要不要|需要)(?:和我|跟我)?(?:聊聊|谈谈|说说)[^？?]*[？?]|(?:能|可以)(?:告诉|跟)我[^？?]*[？?]"
            r"|你(?:有没有|是否)(?:试过|考虑过|想过)[^？?]*[？?]",
            r"[?？]|吗|呢|么|什么|怎么|为什么|为啥|谁|哪|几|多少|是不是|有没有|能不能|要不要|可不可以",
        ),
    ]
)


def is_reply(output: str, source: str) -> bool:
    """True when `output` answers `source` instead of translating it, in English or Chinese: sympathy addressed
    to the poster, an offer of help or advice, or a question back when the post asked none — each only when
    the post itself says nothing of the kind (checked against the source)."""
    text = MARKER.sub("", output)
    return any(answer.search(text) and not post.search(source) for answer, post in _REPLY_FAMILIES)


# -- words left untranslated ---------------------------------------------------------------------------------
COMMON_ZIPF = 3.0
"""An "ordinary word" of a language: at least once per million words of its text (wordfreq's Zipf scale, 3)."""
LOANWORD_ZIPF_GAP = 1.0
"""A word that the target language's text uses at least a tenth as often as the source language's (1.0 on the
Zipf scale) is a loanword of the target written as is — `app` (en 4.9, zh 4.8), `vlog`, `UI`, `wifi`, `diy`,
`cosplay` in Chinese — and is never flagged; `nice` (5.4 vs 3.5), `anymore` (4.9 vs 1.8) or `immaculate` are."""
_LATIN_WORD = regex.compile(r"(?<![\p{Latin}\p{N}_'])\p{Latin}+(?:'\p{Latin}+)?(?![\p{Latin}\p{N}_])")
_LATIN_TOKEN = regex.compile(r"[\p{Latin}\p{N}]+")
_INITIAL = regex.compile(r"(?:^|[.!?。！？:：]\s*)[\"'“‘(（]?(\p{Lu}\p{Ll}+)(?![\p{Latin}\p{N}])")


def words_language(src: str) -> str:
    """The language whose word list judges Latin words in a `src` text: `src` when it is written in Latin,
    else English (the Latin words of a Chinese or Japanese post are English far more often than not)."""
    return src if get_language(src).script == "Latin" else "en"


def untranslated_words(
    output: str,
    source: str,
    src: str,
    tgt: str,
    keep: Collection[str] | Callable[[], Collection[str]] = (),
    sentence_initial: bool = False,
) -> list[str]:
    """Words of `source` left as they are in `output`, a translation from `src` into `tgt` (markers ignored).

    - Latin words, when the target is written in another script or is another Latin-script language: an
      all-lowercase word of `output` that is a word of `source` (or part of one: the "key" of "低-key" for
      "lowkey") and an ordinary word of the source's language (`COMMON_ZIPF`, wordfreq's lists), unless the
      target's own text uses it as a loanword (`LOANWORD_ZIPF_GAP`), it is in `keep` (terms the term base keeps
      as written; a callable is called only when a word needs it) or every use of it in `source` is in capitals
      (an acronym). Capitalised words are names or brands; protected spans, hashtags and mentions are markers
      here and never seen. Into a Latin-script target from another script (Chinese into English), Latin words
      of the source are names, brands and loanwords the translation may keep, so only the next rule applies.
    - Chinese-internet Latin ("yyds", "xswl", "2333", `langid.PINYIN_ABBREVIATIONS`) of the source left in a
      translation into a Latin-script language other than Chinese: "truly yyds", "LMAO, xswl".

    `sentence_initial` also judges a capitalised word that starts a sentence ("Reminder：明天…") by its
    lowercase form: the translator's test of whether a line is already in the target language uses it (a name
    there costs a model call at worst), the check of answers does not (a name there would be a false flag).
    """
    bare, source = MARKER.sub(" ", output), MARKER.sub(" ", source)
    tgt_script = get_language(tgt).script
    found: list[str] = []
    if tgt_script == "Latin":
        source_tokens = {t.lower() for t in _LATIN_TOKEN.findall(source)}
        for token in _LATIN_TOKEN.findall(bare):
            if is_pinyin_abbreviation(token) and token.lower() in source_tokens and token not in found:
                found.append(token)
    if tgt_script == "Latin" and get_language(src).script != "Latin":
        return found
    written = _LATIN_WORD.findall(source)
    lowered = {w.lower() for w in written if not (len(w) > 1 and w.isupper())}
    initial = {m.group(1) for m in _INITIAL.finditer(bare)} if sentence_initial else set()
    candidates: list[str] = []  # lowercase words of the source, in order, each once
    for written_word in _LATIN_WORD.findall(bare):
        word = written_word.lower() if written_word in initial else written_word
        if len(word) < 2 or not word.islower() or word in candidates or word in found:
            continue
        if word in lowered or (len(word) >= 3 and any(_affix(word, w) for w in lowered)):
            candidates.append(word)
    if not candidates:
        return found
    # The word lists (redtrans.text.wordlists, from wordfreq) and the term base load only when a candidate needs them.
    source_words = zipf_table(words_language(src))
    common = [w for w in candidates if source_words.get(w, 0.0) >= COMMON_ZIPF]
    if not common:
        return found
    target_words = zipf_table(tgt)
    if not target_words:
        return found  # no list to tell the target's loanwords by
    left = [w for w in common if target_words.get(w, 0.0) < source_words[w] - LOANWORD_ZIPF_GAP]
    if left:
        kept = {k.casefold() for k in (keep() if callable(keep) else keep)}
        found += [w for w in left if w not in kept]
    return found


def _affix(part: str, word: str) -> bool:
    """`part` begins or ends `word` and is shorter: half a word translated ("低-key" of "lowkey")."""
    return len(word) > len(part) and (word.startswith(part) or word.endswith(part))


def warm_up(pairs: Collection[tuple[str, str]] = (("en", "zh"),)) -> None:
    """Load the word lists the `untranslated` check needs for these (src, tgt) pairs now, not on the first answer."""
    for src, tgt in pairs:
        zipf_table(words_language(src))
        zipf_table(tgt)


def check_output(
    output: str,
    source: str,
    src: str,
    tgt: str,
    n_markers: int,
    keep: Collection[str] | Callable[[], Collection[str]] = (),
) -> list[str]:
    """Flags for a cleaned segment translation (markers still in place). `keep`: words the term base says
    to keep as written in `tgt` (never `untranslated`)."""
    flags: list[str] = []
    bare = MARKER.sub("", output)
    if not bare.strip() and regex.search(r"\p{L}", MARKER.sub("", source)):
        return [EMPTY]
    if is_refusal(bare, MARKER.sub("", source)):
        return [REFUSAL]
    if is_reply(bare, MARKER.sub("", source)):
        return [REPLY]
    found = {int(m.group(1)) for m in MARKER.finditer(output)}
    if any(n not in found for n in range(1, n_markers + 1)):
        flags.append(MISSING_SPAN)
    if src != tgt and _normalise(bare) == _normalise(MARKER.sub("", source)) and len(_normalise(bare)) > 3:
        flags.append(ECHO)
    elif wrong_script(bare, src, tgt):
        flags.append(WRONG_LANGUAGE)
    elif src != tgt and untranslated_words(output, source, src, tgt, keep):
        flags.append(UNTRANSLATED)
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

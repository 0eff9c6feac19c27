"""SNS language right by default (issue 29): a source language per segment, words left untranslated, answers
that reply to the post instead of translating it, acronym hashtags, un-hinted posts untouched by the term base.

Engines are the deterministic stand-ins of `tests/stand_ins.py` (zh→en: each Han character → "w"; en→zh: each
Latin word → "字"), or a scripted engine where a check needs a given first answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from stand_ins import PseudoTranslator

from redtrans import prompts
from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.text import checks
from redtrans.text.langid import segment_language, word_units
from redtrans.translator import Item, Translator, TranslatorConfig

ROOT = Path(__file__).resolve().parent.parent


def _sources(engine: PseudoTranslator) -> list[tuple[str, str]]:
    """(system prompt's direction, user text) of each request the engine got."""
    out = []
    for request in engine.requests:
        assert request.messages is not None
        system = request.messages[0]["content"].split("\n")
        out.append((system[1] if len(system) > 1 else system[0], request.messages[-1]["content"]))
    return out


# -- item 1: language per segment ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("post", "tgt", "sent", "copied"),
    [
        # The posts that came back copied whole, the post as a whole being detected as English.
        ("姐妹们冲！\nOOTD today: oversized hoodie and wide-leg pants", "en", ["姐妹们冲！"], [2]),
        ("这个 app 的 UI design 真的 very nice", "en", ["这个 app 的 UI design 真的 very nice"], []),
        ("标题：探店\nThe best hotpot place in Chengdu", "en", ["标题：探店"], [2]),
        # Into Chinese: English words in a Chinese line are translated; loanwords and acronyms are not a reason.
        ("今天真的 so happy\n今天的OOTD和vlog", "zh", ["今天真的 so happy"], [2]),
        ("Lowkey obsessed with this cafe\n姐妹们冲", "zh", ["Lowkey obsessed with this cafe"], [2]),
    ],
)
def test_each_segment_has_its_own_source_language(post: str, tgt: str, sent: list[str], copied: list[int]) -> None:
    engine = PseudoTranslator()
    result = Translator(engine).translate_text(post, tgt)
    assert [text for _, text in _sources(engine)] == sent
    assert result.copied == copied and result.ok
    for number in copied:
        assert result.translation.split("\n")[number - 1] == post.split("\n")[number - 1]
    assert result.to_dict().get("copied", []) == copied  # output rows say which lines were copied


def test_a_mixed_segment_is_translated_from_its_foreign_part() -> None:
    engine = PseudoTranslator()
    Translator(engine).translate_text("这个 app 的 UI design 真的 very nice", "en")
    Translator(engine).translate_text("今天真的 so happy", "zh")
    assert [direction for direction, _ in _sources(engine)] == [
        "Translate the user's message from Chinese to English.",
        "Translate the user's message from English to Chinese.",
    ]


def test_a_post_given_in_the_target_language_still_has_its_foreign_lines_translated() -> None:
    """`src` given (or detected) for the post is only the fallback of short segments."""
    engine = PseudoTranslator()
    result = Translator(engine).translate_text("Dinner with the girls tonight\n姐妹们冲！", "en", "en")
    assert [text for _, text in _sources(engine)] == ["姐妹们冲！"] and result.copied == [1]
    assert result.translation == "Dinner with the girls tonight\nwwww！"


@pytest.mark.parametrize(
    ("segment", "fallback", "tgt", "expected"),
    [
        ("lol same", "en", "zh", "en"),  # short and Latin: the post's language
        ("ok", "zh", "en", "en"),  # short, Latin, the post's language writes no Latin: the target
        ("ciao bella", "zh", "en", "en"),
        ("冲！", "en", "en", "zh"),  # a script decides whatever the length
        ("yyds", "en", "en", "zh"),  # and so does Chinese-internet Latin
        ("Obrigada pela dica, amei demais esse lugar", "zh", "en", "pt"),  # long enough to be its own
        # Into a target of another script, a line in the post's script is in the post's language (no lingua).
        ("Obrigada pela dica, amei demais esse lugar", "en", "zh", "en"),
    ],
)
def test_segment_language_rule(segment: str, fallback: str, tgt: str, expected: str) -> None:
    assert segment_language(segment, fallback, tgt) == expected


def test_word_units() -> None:
    assert word_units("lol same") < 3 <= word_units("Obrigada pela dica, amei")
    assert word_units("姐妹们冲") < 3 <= word_units("姐妹们冲啊冲")


def test_markup_terms_follow_the_same_rule_and_acronym_tags_stay() -> None:
    """Item 6: `#ICE` came back as `#冰`; acronyms and all-caps tags are kept as written."""
    engine = PseudoTranslator()
    result = Translator(engine).translate_text("Stay warm tonight #ICE #OOTD #winter", "zh", "en")
    assert "#ICE" in result.translation and "#OOTD" in result.translation and "#winter" not in result.translation
    assert [text for _, text in _sources(engine)] == ["Stay warm tonight", "winter"]


# -- items 2 and 5: checks -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "source", "src", "tgt", "words"),
    [
        ("低-key对这家咖啡馆非常着迷，氛围非常 immaculate", "Lowkey obsessed with this cafe, the vibes are immaculate",
         "en", "zh", ["key", "immaculate"]),
        ("这真是游戏 changer", "This is a game changer", "en", "zh", ["changer"]),
        ("真的 yyds", "真的yyds", "zh", "en", ["yyds"]),
        ("LMAO, xswl", "LMAO, xswl", "zh", "en", ["xswl"]),
        ("c'est tellement mid", "it is so mid", "en", "fr", ["mid"]),  # other targets' leftovers
        # Not untranslated: loanwords Chinese writes in Latin, acronyms, names, brands, the term base's own.
        ("这个app的UI设计，今天的OOTD和vlog", "this app UI design, OOTD today and vlog", "en", "zh", []),
        ("和Frank Galicia去了Westfield", "went to Westfield with Frank Galicia", "en", "zh", []),
        ("今天好emo", "so emo today", "en", "zh", []),
        ("This app is great", "这个app太好用了", "zh", "en", []),  # Latin of a Chinese post may stay in English
        ("他说nobody", "你好", "en", "zh", []),  # not from the source
    ],
)  # fmt: skip
def test_untranslated_words(output: str, source: str, src: str, tgt: str, words: list[str]) -> None:
    assert checks.untranslated_words(output, source, src, tgt, keep={"emo"}) == words


def test_replies_are_caught_in_both_languages_against_the_source() -> None:
    low = "最近好累，什么都不想做"
    assert checks.is_reply(
        "I'm sorry to hear that you're feeling this way. Is there anything specific you'd like to talk about?", low
    )
    assert checks.is_reply("很抱歉听到你这么难过。如果你需要倾诉，请随时告诉我。", "feeling so low lately")
    assert checks.is_reply("Would you like some tips for a better sleep?", "睡不着")
    # A translation may say the same when the post does.
    assert not checks.is_reply("I'm so sorry to hear that", "听到这个消息我很难过")
    assert not checks.is_reply("Would you like to come with me?", "你想和我一起去吗？")
    assert not checks.is_reply("Let me know if you're coming!", "来的话告诉我！")
    assert not checks.is_reply("So tired lately, I don't feel like doing anything", low)


class Scripted(Engine):
    """Answers each text with `first[text]` on the first request and `strict[text]` on the strict retry."""

    name = model = "scripted"

    def __init__(self, first: dict[str, str], strict: dict[str, str]) -> None:
        self.first, self.strict = first, strict
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.requests += requests
        out = []
        for request in requests:
            assert request.messages is not None
            text = request.messages[-1]["content"]
            if "Translate this" in text:
                out.append(GenResult(self.strict[text.split("\n\n", 1)[1]]))
            else:
                out.append(GenResult(self.first[text]))
        return out


def test_words_left_untranslated_are_retried_strictly_and_flagged_when_they_survive() -> None:
    post = "the vibes are immaculate"
    fixed = Translator(Scripted({post: "氛围非常 immaculate"}, {post: "氛围无可挑剔"})).translate_text(post, "zh", "en")
    assert fixed.translation == "氛围无可挑剔" and fixed.flags == ["retried"] and fixed.retried_for == ["untranslated"]
    stuck = Translator(Scripted({post: "氛围非常 immaculate"}, {post: "氛围 immaculate"})).translate_text(post, "zh")
    assert stuck.ok and stuck.flags == ["retried", "untranslated"]
    assert "Translate every word" in prompts.translation_messages(post, "en", "zh", strict=True)[1]["content"]


def test_a_reply_is_retried_strictly_and_fails_the_row_when_it_survives() -> None:
    post = "最近好累，什么都不想做"
    reply = "I'm sorry to hear that you're feeling this way. Is there anything you'd like to talk about?"
    fixed = Translator(Scripted({post: reply}, {post: "So tired lately, I don't feel like doing anything"}))
    result = fixed.translate_text(post, "en", "zh")
    assert result.ok and result.retried_for == ["reply"]
    failed = Translator(Scripted({post: reply}, {post: reply})).translate_text(post, "en", "zh")
    assert failed.status == "failed" and failed.error == "reply" and "reply" in failed.flags


# -- item 4: the term base changes only the posts it has a hint for ---------------------------------------------
UNHINTED = [
    Item("1", "今天天气很好，我们去公园散步", "en", "zh"),
    Item("2", "Dinner with my parents tonight\n周末去爬山", "zh", "en"),
    Item("3", "#旅行[话题]# 第一次来成都😋", "en", "zh"),
]


def test_unhinted_posts_are_byte_identical_with_the_term_base_on() -> None:
    off = Translator(PseudoTranslator(), TranslatorConfig(termbases=[]))
    on = Translator(PseudoTranslator(), TranslatorConfig(termbases=["builtin"]))
    for item in UNHINTED:
        assert not any(on.prompts.hints(line, item.src or "zh", item.target) for line in item.text.split("\n"))
        assert on.requests_for(item) == off.requests_for(item)
    assert [r.to_dict() for r in on.translate(UNHINTED)] == [r.to_dict() for r in off.translate(UNHINTED)]
    hinted = Item("4", "这家店绝绝子", "en", "zh")
    assert on.requests_for(hinted) != off.requests_for(hinted)


# -- the code-mixed set: a must-translate segment is never copied (the logic's part of the guarantee) -------
CODEMIXED = ROOT / "benchmarks" / "data" / "codemixed.jsonl"


def _benchmark() -> Any:
    """benchmarks/slang_accuracy.py as a module (its scoring rules)."""
    spec = importlib.util.spec_from_file_location("slang_accuracy", ROOT / "benchmarks" / "slang_accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not CODEMIXED.exists(), reason="benchmarks/data/codemixed.jsonl is not in this checkout")
def test_no_must_translate_segment_of_the_codemixed_set_is_copied() -> None:
    """Judged against the hand annotation: no source line holding a must-translate span comes back unchanged,
    whatever the model answers (the stand-in changes every line it is sent)."""
    bench = _benchmark()
    rows = [json.loads(line) for line in CODEMIXED.read_text(encoding="utf-8").splitlines() if line.strip()]
    translator = Translator(PseudoTranslator())
    copied = 0
    for row in rows:
        result = translator.translate_text(row["text"], row["tgt"], row.get("src"))
        assert bench.copied_untranslated(result.to_dict(), row) == [], row["id"]
        copied += bool(result.copied)
    assert copied >= 15  # lines wholly in the target language are still copied


def test_slang_scoring_rule() -> None:
    bench = _benchmark()
    item = {"term": "绝绝子", "accept": ["amazing", "obsess"], "wrong": ["child"]}
    assert bench.item_right("It's amazing", item) and bench.item_right("I'm obsessed", item)
    assert not bench.item_right("amazing child", item) and not bench.item_right("so 绝绝子, amazing", item)
    assert not bench.item_right("unamazing", item)  # an ASCII phrase starts a word
    assert bench.item_right("NPC 本人", {"term": "NPC", "accept": ["NPC"], "wrong": []})


# -- serve's streaming route follows the same rule ----------------------------------------------------------
def test_serve_streaming_translates_each_line_from_its_own_language(tmp_path: Path) -> None:
    """Serve detects a post's language once and streams one line at a time; the line's own language decides."""
    from redtrans.serve.app import create_app
    from redtrans.serve.config import ServeConfig

    post = "Brunch with my sisters today\n姐妹们冲！"

    async def run() -> list[str]:
        app = create_app(ServeConfig(cache="none", access_log=False, engine="standin"))
        async with app.router.lifespan_context(app):
            for _ in range(200):
                if app.state.service.ready:
                    break
                await asyncio.sleep(0.02)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                body = {"model": "redtrans-en", "messages": [{"role": "user", "content": post}], "stream": True}
                r = await client.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
        chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        return [c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices")]

    pieces = asyncio.run(run())
    lines = "".join(pieces).split("\n")
    assert lines[0] == "Brunch with my sisters today"  # English into English: copied
    assert lines[1] != "姐妹们冲！" and "姐" not in lines[1]  # Chinese into English: translated


def test_the_term_base_default_is_one_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 4's switch: every entry point builds its `TranslatorConfig` from `DEFAULT_TERMBASES`."""
    import redtrans.translator as translator_module

    assert TranslatorConfig().termbases == list(translator_module.DEFAULT_TERMBASES)
    monkeypatch.setattr(translator_module, "DEFAULT_TERMBASES", ("builtin",))
    assert TranslatorConfig().termbases == ["builtin"]
    engine = PseudoTranslator()
    Translator(engine).translate_text("这家店绝绝子", "en", "zh")
    assert engine.requests[0].messages is not None and engine.requests[0].messages[1]["role"] == "system"

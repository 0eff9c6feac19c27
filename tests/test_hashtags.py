"""Plain #hashtags (outside RedNote's #…[话题]#) keep their `#` (issue 16), on posts written for the test."""

from __future__ import annotations

import pytest

from redtrans.bench.tags import segment_fidelity
from redtrans.text.profiles import load_profile
from redtrans.text.spans import find_spans
from redtrans.translator import Translator, TranslatorConfig
from tests.stand_ins import PseudoTranslator, SlotPseudoTranslator

REDNOTE = load_profile("rednote")


@pytest.mark.parametrize(
    ("post", "expected"),
    [
        ("周末探店 #美食 #ootd", ["#美食", "#ootd"]),
        ("双十一来了 #双十一# 买买买", ["#双十一#"]),
        ("#哈尔滨[话题]# 和 #冰雪大世界", ["#哈尔滨[话题]#", "#冰雪大世界"]),
        ("I love #coffee so much", ["#coffee"]),
        ("#1 fan of C# and &#39; here", ["#1"]),
        ("see https://a.com/page#top now", ["https://a.com/page#top"]),
        ("# heading and ## two", []),
    ],
)
def test_hashtag_spans(post: str, expected: list[str]) -> None:
    assert [s.text for s in find_spans(post, REDNOTE)] == expected


@pytest.mark.parametrize("profile", ["rednote", "generic"])
def test_hashtags_keep_their_hash(profile: str) -> None:
    engine = PseudoTranslator()
    translator = Translator(engine, TranslatorConfig(profile=profile, termbases=[]))
    result = translator.translate_text("今天去了迪士尼 #上海 太好玩了 #周末去哪儿", "en", "zh")
    assert result.translation == "wwwwwww #ww wwww #wwwww"
    # The hashtag words went to the model as terms of their own, without the `#`.
    terms = [r.messages[-1]["content"] for r in engine.requests if "hashtag word" in r.messages[0]["content"]]
    assert sorted(terms) == ["上海", "周末去哪儿"]
    assert segment_fidelity("今天去了迪士尼 #上海 太好玩了 #周末去哪儿", result.translation).markup is True


def test_hashtag_inside_a_sentence_is_a_marker() -> None:
    engine = SlotPseudoTranslator()
    result = Translator(engine, TranslatorConfig(termbases=[])).translate_text("I love #coffee so much", "zh", "en")
    assert result.translation == "字 字 #字 字 字"
    assert any(r.messages[-1]["content"] == "I love ⟨1⟩ so much" for r in engine.requests)


def test_hashtag_already_in_target_script_or_without_letters_is_kept() -> None:
    engine = PseudoTranslator()
    result = Translator(engine, TranslatorConfig(termbases=[])).translate_text("今天的穿搭 #ootd #2024", "en", "zh")
    assert result.translation == "wwwww #ootd #2024"
    assert len(engine.requests) == 1  # only the sentence, no term request


def test_weibo_closed_hashtag_is_rebuilt_closed() -> None:
    result = Translator(PseudoTranslator(), TranslatorConfig(termbases=[])).translate_text(
        "#双十一# 买买买", "en", "zh"
    )
    assert result.translation == "#www# www"


def test_hashtag_term_prompt_asks_for_one_word() -> None:
    engine = PseudoTranslator()
    Translator(engine, TranslatorConfig(termbases=[])).translate_text("出发啦 #周末去哪儿", "en", "zh")
    system = next(r.messages[0]["content"] for r in engine.requests if r.messages[-1]["content"] == "周末去哪儿")
    assert "no spaces" in system

"""Protection and restoration of SNS spans on realistic posts (no model needed)."""

from __future__ import annotations

import pytest

from redtrans.engines.base import GenRequest, GenResult
from redtrans.text.checks import source_script_grammar
from redtrans.text.fidelity import fidelity
from redtrans.text.profiles import ProfileError, load_profile
from redtrans.text.spans import Core, find_spans, plan_line, restore_markers
from redtrans.translator import Item, Translator, TranslatorConfig
from tests.stand_ins import LeakyTranslator, PseudoTranslator, SlotPseudoTranslator

REDNOTE = load_profile("rednote")

# (post, expected spans as (kind, text))
SPAN_TABLE = [
    ("家人们谁懂啊👨‍👩‍👧‍👦太幸福了", [("emoji", "👨‍👩‍👧‍👦")]),
    ("点赞👍🏻👍🏽收藏", [("emoji", "👍🏻👍🏽")]),
    ("中国加油🇨🇳🇨🇳", [("emoji", "🇨🇳🇨🇳")]),
    ("Scotland trip 🏴󠁧󠁢󠁳󠁣󠁴󠁿 was great", [("emoji", "🏴󠁧󠁢󠁳󠁣󠁴󠁿")]),
    ("第1️⃣步", [("emoji", "1️⃣")]),
    ("❤️‍🔥 love it", [("emoji", "❤️‍🔥")]),
    ("详情见 https://zh.wikipedia.org/wiki/哈尔滨。", [("url", "https://zh.wikipedia.org/wiki/哈尔滨")]),
    ("check www.example.com/a?b=1, thanks", [("url", "www.example.com/a?b=1")]),
    ("感谢@小红薯 的推荐", [("mention", "@小红薯")]),
    ("thx @jenny_lee!", [("mention", "@jenny_lee")]),
    ("mail me: a.b@example.com", [("email", "a.b@example.com")]),
    ("#哈尔滨[话题]# 冬天来了", [("markup", "#哈尔滨[话题]#")]),
    ("好开心[庆祝R][庆祝R]", [("markup", "[庆祝R]"), ("markup", "[庆祝R]")]),
    ("so happy [Celebrate R]", [("markup", "[Celebrate R]")]),
    ("plain text only", []),
]


@pytest.mark.parametrize(("post", "expected"), SPAN_TABLE)
def test_find_spans(post: str, expected: list[tuple[str, str]]) -> None:
    spans = find_spans(post, REDNOTE)
    assert [(s.kind, s.text) for s in spans] == expected
    for span in spans:
        assert post[span.start : span.end] == span.text


def test_markup_inner_text() -> None:
    spans = find_spans("#秋冬穿搭[话题]# [哭惹R]", REDNOTE)
    assert [(s.rule.name if s.rule else None, s.inner) for s in spans] == [("topic", "秋冬穿搭"), ("sticker", "哭惹")]


def test_generic_profile_has_no_markup_but_keeps_emoji() -> None:
    spans = find_spans("#哈尔滨[话题]# 🔥", load_profile("generic"))
    assert [s.kind for s in spans] == ["emoji"]


def test_unknown_profile_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ProfileError, match="unknown platform profile"):
        load_profile("myspace")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmarkup:\n  - name: x\n    pattern: '#(.*)#'\n    output: '{text}'\n")
    with pytest.raises(ProfileError, match="no \\(\\?P<text>"):
        load_profile(str(bad))


def test_plan_peels_edges_and_masks_inner_spans() -> None:
    plan = plan_line("✅ 感谢@小红薯 推荐 https://a.cn/x 😋", REDNOTE)
    core = plan.core
    assert isinstance(core, Core)
    assert core.masked == "感谢⟨1⟩ 推荐"
    assert [s.text for s in core.spans] == ["@小红薯"]
    # Everything outside the core is kept verbatim, in order.
    outside = [p if isinstance(p, str) else p.text for p in plan.pieces if not isinstance(p, Core)]
    assert "".join(outside) == "✅ " + " https://a.cn/x 😋"


def test_line_without_letters_has_no_core() -> None:
    assert plan_line("🍠🍠 · 2024", REDNOTE).core is None
    assert plan_line("", REDNOTE).pieces == []


def test_restore_markers_tolerates_variants_and_reports_missing() -> None:
    spans = find_spans("a 😀 b 🎉 c @x", REDNOTE)
    text, missing = restore_markers("A <1> B 〈 2 〉 C", spans, [s.text for s in spans])
    assert text == "A 😀 B 🎉 C"
    assert missing == [3]


POSTS = [
    "这家店绝绝子，yyds！🔥 #探店[话题]#",
    "[庆祝R][庆祝R]当~当~当~\n\n[星R]表盘来啦！\n\n直接开启🍂秋冬局啦！",
    "✨宝子们，今天来讲讲镜框👓\n.\n✅长方脸\n特点：下颚宽\n",
    "感谢@小红薯 推荐，链接 https://www.xiaohongshu.com/explore/哈尔滨?x=1 快去看👩‍👩‍👧‍👦🇨🇳",
    "  前面有空格\r\n后面也有  ",
    "中英混排 Apple Watch🍎直接化身电子中药啦！",
]


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("drop_markers", [False, True])
@pytest.mark.parametrize("engine_kind", [PseudoTranslator, SlotPseudoTranslator])
def test_pipeline_keeps_every_span_and_line(post: str, drop_markers: bool, engine_kind: type) -> None:
    engine = engine_kind(drop_markers=drop_markers)
    result = Translator(engine).translate_text(post, "en", "zh")
    f = fidelity(post, result.translation, REDNOTE)
    assert f.all_kept, (post, result.translation)
    assert "⟨" not in result.translation
    assert result.translation.count("\n") == post.count("\n")
    inner_spans = [c.spans for c in (plan_line(line, REDNOTE).core for line in post.split("\n")) if c and c.spans]
    if drop_markers and inner_spans:
        # Inner spans the model dropped are re-inserted, and the result says so.
        assert "missing_span" in result.flags and "retried" in result.flags
        strict = [r for r in engine.requests if "Translate this" in r.messages[-1]["content"]]
        assert len(strict) == sum(len(spans) > 0 for spans in inner_spans)  # one retry per failing segment


@pytest.mark.parametrize("supports_grammar", [True, False])
def test_leaked_source_text_is_retried_under_a_grammar(supports_grammar: bool) -> None:
    """Source text left in the answer is retried with the same prompt (cached in the slot) under a grammar
    that rules out the source's script; engines without grammars get the strict prompt instead."""
    engine = LeakyTranslator()
    engine.supports_grammar = supports_grammar
    result = Translator(engine).translate_text("这家奶茶", "en", "zh")  # first answer: "这家ww"
    assert result.translation == "wwww" and result.flags == ["retried"]
    first, retry = engine.requests
    assert first.grammar is None and first.messages[-1]["content"] == "这家奶茶"
    if supports_grammar:
        assert retry.messages == first.messages and retry.grammar == source_script_grammar("zh", "en")
    else:
        assert retry.grammar is None and retry.messages[-1]["content"].startswith("Translate this Chinese text")


def test_a_retry_that_comes_back_empty_keeps_the_first_answer() -> None:
    engine = LeakyTranslator(empty_under_grammar=True)
    result = Translator(engine).translate_text("这家奶茶", "en", "zh")
    assert result.translation == "这家ww" and set(result.flags) == {"wrong_language", "retried"}


def test_english_left_in_a_chinese_answer_gets_the_strict_retry() -> None:
    """Latin cannot be ruled out of Chinese (brand names stay Latin), so that leak takes the strict prompt."""
    engine = LeakyTranslator()
    result = Translator(engine).translate_text("so good", "zh", "en")
    assert result.translation == "字 字" and result.flags == ["retried"]
    assert engine.requests[1].grammar is None and "Translate this" in engine.requests[1].messages[-1]["content"]


@pytest.mark.timeout(30)  # a swallowed error would leave the caller waiting forever
def test_an_engine_failure_during_slot_streaming_is_raised_not_hung() -> None:
    """With a slot engine, answers are checked on the engine's threads; an exception there must reach the
    caller (and not leave it waiting for an answer that never comes)."""

    class Failing(SlotPseudoTranslator):
        def generate(self, requests: list[GenRequest]) -> list[GenResult]:
            if any("boom" in r.messages[-1]["content"] for r in requests):
                raise RuntimeError("engine fell over")
            return super().generate(requests)

    items = [Item(str(i), text, "zh", "en") for i, text in enumerate(["one", "two boom", "three"])]
    with pytest.raises(RuntimeError, match="engine fell over"):
        list(Translator(Failing()).translate(items))


def test_markup_is_rebuilt_for_the_target_language() -> None:
    result = Translator(PseudoTranslator()).translate_text("#哈尔滨[话题]# 好开心[庆祝R]", "en", "zh")
    assert result.translation == "#www[Topic]# www[ww R]"
    back = Translator(PseudoTranslator()).translate_text("so happy [Celebrate R] #travel[Topic]#", "zh", "en")
    assert back.translation == "字 字 [字R] #字[话题]#"


def test_emoji_inside_markup_survive_term_translation() -> None:
    engine = PseudoTranslator()
    result = Translator(engine).translate_text("#Germany🇩🇪[Topic]# #🐱Cats[Topic]#", "zh", "en")
    assert result.translation == "#字🇩🇪[话题]# #🐱字[话题]#"
    assert [r.messages[-1]["content"] for r in engine.requests] == ["Germany", "Cats"]  # no emoji in terms


def test_lines_already_in_target_language_are_kept() -> None:
    post = "今天吃火锅\nIf you plan to post content, use the hashtags."
    engine = PseudoTranslator()
    result = Translator(engine).translate_text(post, "en", "zh")
    assert result.translation.split("\n")[1] == post.split("\n")[1]
    assert len(engine.requests) == 1  # only the Chinese line went to the model


def test_preamble_and_quotes_are_removed() -> None:
    engine = PseudoTranslator(preamble="Here is the translation:\n")
    result = Translator(engine).translate_text("你好呀", "en", "zh")
    assert result.translation == "www"


def test_text_without_source_language_is_returned_unchanged() -> None:
    engine = PseudoTranslator()
    result = Translator(engine).translate_text("🔥🔥🔥", "en")
    assert result.translation == "🔥🔥🔥" and engine.requests == []


def test_plain_mode_sends_the_whole_post_once() -> None:
    engine = PseudoTranslator()
    translator = Translator(engine, TranslatorConfig(mode="plain"))
    results = list(translator.translate([Item("a", "第一行\n第二行😋", "en", "zh"), Item("b", "hi there", "zh", "en")]))
    assert [r.id for r in results] == ["a", "b"]
    assert len(engine.requests) == 2


def test_items_are_validated() -> None:
    with pytest.raises(ValueError, match="empty"):
        Item("x", "   ", "en")
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        Item("x", "hi", "xx")


def test_results_stream_in_input_order_across_windows() -> None:
    translator = Translator(PseudoTranslator(), TranslatorConfig(batch_size=3))
    items = [Item(str(i), f"第{i}个" if i % 2 else f"number {i}", "en" if i % 2 else "zh") for i in range(10)]
    assert [r.id for r in translator.translate(items)] == [str(i) for i in range(10)]

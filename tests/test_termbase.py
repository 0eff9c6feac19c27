"""The slang term base (issue 16): schema check with file:line, retrieval rules, hints in the prompt."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from redtrans import prompts
from redtrans.text.termbase import BUILTIN, TermBase, TermBaseError, check_files, read_file
from redtrans.translator import Translator, TranslatorConfig
from tests.stand_ins import PseudoTranslator

FIXTURE = """\
lang: zh
provenance: written for the test
entries:
  - term: yyds
    variants: [永远的神]
    meaning: the best ever
    translations: {en: [the GOAT, {text: the best ever, register: neutral}]}
    tags: [abbreviation]
  - term: 破防
    meaning: emotionally hit hard
    translations: {en: [hit me hard]}
  - term: 破防了吧
    meaning: got you, didn't it
    translations: {en: [got to you, huh]}
  - term: emo
    meaning: feeling down
    translations: {en: [feeling down]}
  - {term: 绝绝子, meaning: amazing, translations: {en: [amazing]}, examples: [{text: 绝绝子!, en: Amazing!}]}
"""

BAD = """\
lang: zh
entries:
  - term: yyds
    meaning: the best
    translations: {en: [the GOAT]}
  - term: YYDS
    meaning: the best
    translations: {en: [the best ever]}
  - term: 菜
    meaning: type
    translations: {en: [type]}
  - term: xswl
    translations: {en: [LMAO]}
    tags: [nonsense]
    colour: red
  - term: awsl
    meaning: too cute
    translations: {fr: [trop mignon]}
    patterns: ['(unclosed']
"""


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "slang.yaml"
    path.write_text(FIXTURE, encoding="utf-8")
    return TermBase.load([path])


def test_retrieval_longest_match_wins_and_each_entry_once(base: TermBase) -> None:
    hints = base.find("看完破防了吧，这部剧yyds，真的YYDS", "zh", "en")
    assert [(h.surface, h.entry.term) for h in hints] == [("破防了吧", "破防了吧"), ("yyds", "yyds")]


def test_latin_terms_match_only_whole_words(base: TermBase) -> None:
    assert [h.entry.term for h in base.find("我今天好emo啊", "zh", "en")] == ["emo"]
    assert base.find("memory of lemons", "zh", "en") == []


def test_fullwidth_and_case_are_folded(base: TermBase) -> None:
    assert [h.surface for h in base.find("这家店ＹＹＤＳ", "zh", "en")] == ["ＹＹＤＳ"]


def test_cap_on_hints_and_target_filter(base: TermBase) -> None:
    text = "yyds 破防 emo 绝绝子"
    assert len(base.find(text, "zh", "en", limit=2)) == 2
    assert [h.start for h in base.find(text, "zh", "en", limit=None)] == sorted(
        h.start for h in base.find(text, "zh", "en", limit=None)
    )
    assert base.find(text, "zh", "ja") == []  # no Japanese translations
    assert base.find(text, "en", "zh") == []  # zh entries never match an English source


def test_a_base_with_errors_is_refused_with_line_numbers(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(TermBaseError) as caught:
        TermBase.load([path])
    assert "\n" not in str(caught.value)  # one line; the problems are all there
    text = "\n".join(str(problem) for problem in caught.value.problems)
    assert f"{path}:6: error: 'YYDS': surface 'yyds' conflicts with {path}:3" in text
    assert f"{path}:9:" in text and "one-character surface" in text
    assert f"{path}:12:" in text and "`meaning` is missing" in text and "unknown tag 'nonsense'" in text
    assert "unknown field 'colour'" in text
    assert f"{path}:16:" in text and "does not compile" in text
    problems = {p.line for p in caught.value.problems}
    assert problems == {6, 9, 12, 16}


def test_same_translations_are_a_duplicate(tmp_path) -> None:
    path = tmp_path / "dup.yaml"
    entry = "  - {term: yyds, meaning: best, translations: {en: [the GOAT]}}\n"
    path.write_text("lang: zh\nentries:\n" + entry + entry, encoding="utf-8")
    _, problems = read_file(path)
    assert [(p.line, "duplicate of" in p.message) for p in problems] == [(4, True)]


def test_jsonl_base_and_bad_json_lines(tmp_path) -> None:
    path = tmp_path / "slang.jsonl"
    good = {"term": "no cap", "lang": "en", "meaning": "for real", "translations": {"zh": ["不骗你"]}}
    path.write_text(json.dumps(good) + "\n{oops\n", encoding="utf-8")
    entries, problems = read_file(path)
    assert [e.term for e in entries] == ["no cap"]
    assert [(p.line, "invalid JSON" in p.message) for p in problems] == [(2, True)]


def test_user_base_comes_first(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("lang: zh\nentries:\n  - {term: yyds, meaning: mine, translations: {en: [my own]}}\n")
    merged = TermBase.load([path, BUILTIN])
    (hint,) = merged.find("yyds", "zh", "en")
    assert hint.entry.meaning == "mine"
    assert len(merged) > 400


def test_builtin_base_is_clean_and_large() -> None:
    entries, problems = check_files([BUILTIN])
    assert [p for p in problems if p.level == "error"] == []
    langs = {e.lang for e in entries}
    assert len(entries) >= 300 and langs == {"zh", "en"}
    terms = {e.term for e in entries}
    wanted = ["yyds", "xswl", "awsl", "绝绝子", "你不是我的菜", "油皮", "种草", "拔草", "打卡", "破防", "内卷"]
    wanted += ["躺平", "emo", "no cap", "lowkey", "slay", "it's giving", "rizz"]
    for term in wanted:
        assert term in terms


def test_hints_appear_in_the_prompt_after_the_stable_system_prompt(tmp_path) -> None:
    path = tmp_path / "slang.yaml"
    path.write_text(FIXTURE, encoding="utf-8")
    engine = PseudoTranslator()
    Translator(engine, TranslatorConfig(termbases=[str(path)])).translate_text("这家店绝绝子，yyds", "en", "zh")
    messages = engine.requests[0].messages  # (the stand-in leaves "yyds" as it is: a strict retry follows)
    assert messages[0] == {"role": "system", "content": prompts.system_prompt("zh", "en")}
    assert messages[1]["role"] == "system" and messages[-1] == {"role": "user", "content": "这家店绝绝子，yyds"}
    assert '"绝绝子": amazing → "amazing"' in messages[1]["content"]
    assert '"yyds": the best ever → "the GOAT" or "the best ever" (neutral)' in messages[1]["content"]


def test_no_termbase_means_no_hints() -> None:
    engine = PseudoTranslator()
    Translator(engine, TranslatorConfig(termbases=[])).translate_text("这家店绝绝子，yyds", "en", "zh")
    assert [m["role"] for m in engine.requests[0].messages] == ["system", "user"]


def test_cli_check_and_stats(tmp_path) -> None:
    from redtrans.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["termbase", "check", str(bad)])
    assert result.exit_code == 2, result.output
    assert f"{bad}:6:" in result.output
    ok = runner.invoke(app, ["termbase", "check"])
    assert ok.exit_code == 0, ok.output
    stats = runner.invoke(app, ["termbase", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["entries"] >= 300


def test_bench_slang_tag_uses_the_term_base() -> None:
    from redtrans.bench.tags import tag_source
    from redtrans.text.termbase import builtin_termbase

    assert "slang" in tag_source("这家店绝绝子", "zh", termbase=builtin_termbase())
    assert "slang" not in tag_source("今天天气很好", "zh", termbase=builtin_termbase())
    assert "slang" not in tag_source("a memory of lemons", "en", termbase=builtin_termbase())

"""Retrieved in-context examples from a translation memory (issue 16)."""

from __future__ import annotations

import json

import pytest

from redtrans import prompts
from redtrans.errors import InputError
from redtrans.text.memory import TranslationMemory, load_memory
from redtrans.translator import Translator, TranslatorConfig
from tests.stand_ins import PseudoTranslator

PAIRS = [
    {"zh": "这家火锅真的yyds", "en": "This hotpot place is the GOAT"},
    {"zh": "今天有点emo", "en": "Feeling a bit down today"},
    {"src": "en", "tgt": "zh", "source": "no cap this is good", "target": "不骗你，这个真好"},
]


@pytest.fixture
def tm_path(tmp_path):
    path = tmp_path / "tm.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS), encoding="utf-8")
    return path


def test_nearest_pairs_by_direction(tm_path) -> None:
    memory = TranslationMemory.load(tm_path)
    assert len(memory) == 5  # two language-keyed pairs in both directions + one directed
    (pair,) = memory.nearest("这家烤肉yyds", "zh", "en", k=1)
    assert pair.target == "This hotpot place is the GOAT"
    assert memory.nearest("no cap this pizza is good", "en", "zh", k=2)[-1].target == "不骗你，这个真好"
    assert memory.nearest("天气不错", "zh", "en", k=2) == []  # nothing similar enough
    assert memory.nearest("这家烤肉yyds", "zh", "ja", k=2) == []


def test_similar_pairs_for_a_held_out_evaluation(tm_path) -> None:
    """`similar` finds every pair a held-out check must leave out, the identical source included (which
    `nearest` never returns as an example)."""
    memory = TranslationMemory.load(tm_path)
    assert len(memory.pairs()) == len(memory) == 5
    assert [p.target for p in memory.similar("这家火锅真的yyds!", "zh", "en", min_score=60)] == [
        "This hotpot place is the GOAT"
    ]
    assert memory.nearest("这家火锅真的yyds", "zh", "en", k=2) == []  # the post itself is never its own example
    assert memory.similar("天气不错", "zh", "en", min_score=60) == []


def test_bad_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"zh": "a", "en": "b"}\n{"zh": "only one side"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2:"):
        TranslationMemory.load(path)


def test_builtin_and_none() -> None:
    assert len(load_memory("builtin") or []) >= 100
    assert load_memory("none") is None and load_memory(None) is None


def test_examples_appear_in_the_prompt_in_the_right_place(tm_path) -> None:
    engine = PseudoTranslator()
    config = TranslatorConfig(examples=str(tm_path), shots=2, termbases=["builtin"])
    Translator(engine, config).translate_text("这家烤肉yyds", "en", "zh")
    (request,) = engine.requests
    roles = [m["role"] for m in request.messages]
    # stable system prompt, then the example exchange, then the hints, then the post
    assert roles == ["system", "user", "assistant", "system", "user"]
    assert request.messages[0]["content"] == prompts.system_prompt("zh", "en")
    assert request.messages[1:3] == [
        {"role": "user", "content": "这家火锅真的yyds"},
        {"role": "assistant", "content": "This hotpot place is the GOAT"},
    ]
    assert "yyds" in request.messages[3]["content"]
    assert request.messages[-1] == {"role": "user", "content": "这家烤肉yyds"}


def test_sft_rows_use_the_same_builder(tm_path) -> None:
    settings = prompts.PromptSettings(termbases=("builtin",), examples=str(tm_path), shots=1)
    builder = prompts.PromptBuilder(settings)
    row = prompts.sft_messages("这家烤肉yyds", "This BBQ place is the GOAT", "zh", "en", builder)
    assert row[:-1] == builder.messages("这家烤肉yyds", "zh", "en")
    assert row[-1] == {"role": "assistant", "content": "This BBQ place is the GOAT"}
    recorded = settings.to_dict()
    assert recorded["prompt_version"] == prompts.PROMPT_VERSION and recorded["shots"] == 1

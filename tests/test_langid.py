"""Language identification (lingua + script rule + Chinese-internet Latin), BCP-47 tags, OpenCC targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redtrans.errors import LanguageError
from redtrans.languages import chinese_script, get_language, language_tag, opencc_config, to_chinese_script
from redtrans.text.langid import detect_language, is_pinyin_abbreviation

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("yyds 🔥", "zh"),
        ("Obrigada pela dica", "pt"),
        ("Ăn ngon quá trời", "vi"),
        ("xswl 😂😂", "zh"),
        ("23333", "zh"),
        ("今天的OOTD是不是很chic", "zh"),
        ("This 奶茶 is so good omg", "en"),
        ("this song is yyds", "en"),  # one abbreviation in an English sentence stays English
        ("Danke für den Tipp!", "de"),
        ("lol same", "en"),
        ("これはペンです", "ja"),
        ("오늘 날씨 좋다", "ko"),
        ("這家咖啡廳的甜點超好吃", "zh"),
    ],
)
def test_detects_sns_posts(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_candidates_narrow_and_a_zh_en_deployment_loads_no_model() -> None:
    # Only one Latin-script candidate: answered without lingua.
    assert detect_language("Obrigada pela dica", {"zh", "en"}) == "en"
    assert detect_language("yyds", {"en", "fr"}) in {"en", "fr"}  # zh not allowed: no pinyin rule
    assert detect_language("🔥🔥") is None


def test_pinyin_abbreviations() -> None:
    assert is_pinyin_abbreviation("YYDS") and is_pinyin_abbreviation("hhhhh") and is_pinyin_abbreviation("2333")
    assert not is_pinyin_abbreviation("the") and not is_pinyin_abbreviation("ok")


@pytest.mark.parametrize(
    ("tag", "code", "script", "config"),
    [
        ("zh", "zh", None, None),
        ("zh-TW", "zh", "Hant", "s2twp"),
        ("zh-Hant", "zh", "Hant", "s2tw"),
        ("zh_hant", "zh", "Hant", "s2tw"),
        ("zh-HK", "zh", "Hant", "s2hk"),
        ("zh-CN", "zh", "Hans", "t2s"),
        ("zh-Hans", "zh", "Hans", "t2s"),
        ("pt-BR", "pt", None, None),
        ("EN", "en", None, None),
    ],
)
def test_bcp47_tags(tag: str, code: str, script: str | None, config: str | None) -> None:
    assert get_language(tag).code == code
    assert chinese_script(tag) == script
    assert opencc_config(tag) == config


def test_unknown_tags_are_language_errors() -> None:
    for bad in ("xx", "english", "", "iw"):
        with pytest.raises(LanguageError, match="unknown language"):
            get_language(bad)
    assert language_tag("zh_hant_tw") == "zh-Hant-TW"


def test_opencc_gives_traditional_and_simplified_output() -> None:
    simplified = "这个软件的鼠标真好用 yyds 🔥 https://xhslink.com/a"
    assert to_chinese_script(simplified, "zh-Hant").startswith("這個軟件的鼠標")
    assert to_chinese_script(simplified, "zh-TW").startswith("這個軟體的滑鼠")  # Taiwan phrasing
    assert to_chinese_script(simplified, "zh-Hant").endswith("yyds 🔥 https://xhslink.com/a")
    assert to_chinese_script("這個頭髮", "zh-Hans") == "这个头发"
    assert to_chinese_script(simplified, "zh") == simplified
    assert to_chinese_script("hello", "en") == "hello"


def test_bleu_tokenizes_traditional_like_simplified() -> None:
    import sacrebleu

    tok = get_language("zh-Hant").bleu_tokenizer
    hyp, ref = "這個奶茶真的好喝", "這個奶茶真的很好喝"
    assert sacrebleu.sentence_bleu(hyp, [ref], tokenize=tok).score == pytest.approx(
        sacrebleu.sentence_bleu(
            to_chinese_script(hyp, "zh-Hans"), [to_chinese_script(ref, "zh-Hans")], tokenize=tok
        ).score
    )
    assert sacrebleu.sentence_bleu(hyp, [ref], tokenize=tok).score > 50


@pytest.mark.slow
def test_langid_benchmark_meets_its_target() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "langid_accuracy.py")], capture_output=True, text=True, timeout=300
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last.startswith("langid_accuracy: ") and last.endswith("target: 0.95")
    assert float(last.split()[1]) >= 0.95


@pytest.mark.parametrize("text", ["no cap best pizza", "lol same", "best pizza ever"])
def test_short_english_slang_stays_english(text: str) -> None:
    assert detect_language(text) == "en"

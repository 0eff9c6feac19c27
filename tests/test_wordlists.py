"""The word-frequency files shipped for the `untranslated` check are wordfreq's lists as derived today."""

from __future__ import annotations

import pytest

from redtrans.text import wordlists
from redtrans.text.checks import untranslated_words


@pytest.mark.parametrize("lang", ["en", "zh", "fr"])
def test_shipped_lists_equal_a_fresh_derivation(lang: str) -> None:
    pytest.importorskip("wordfreq", reason="wordfreq (the dev extra) derives the lists")
    from importlib.metadata import version

    assert version("wordfreq") == wordlists.WORDFREQ_VERSION
    shipped = (wordlists.files(wordlists.__name__) / f"{lang}.tsv.gz").read_bytes()
    assert shipped == wordlists.render(wordlists.derive(lang)), f"rebuild: python -m redtrans.text.wordlists ({lang})"


def test_tables_answer_the_checks_questions() -> None:
    en, zh = wordlists.zipf_table("en"), wordlists.zipf_table("zh")
    assert en["nice"] >= 5 > zh.get("nice", 0.0) + 1  # an ordinary English word, rare in Chinese text
    assert abs(en["app"] - zh["app"]) < 1  # a loanword Chinese writes in Latin
    assert wordlists.zipf_table("xx") == {}
    assert untranslated_words("这家咖啡馆氛围非常 immaculate", "the vibes are immaculate", "en", "zh") == ["immaculate"]
    assert untranslated_words("这个 app 真好用", "this app is great", "en", "zh") == []

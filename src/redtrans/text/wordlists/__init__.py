"""Latin-script word frequencies per language, derived from wordfreq's lists, shipped with redtrans.

The `untranslated` check (`redtrans.text.checks.untranslated_words`) needs, per language, the Zipf frequency of
Latin-script words down to Zipf 2. wordfreq itself installs 60 MB of lists (every script, down to Zipf 0) and
would put the core install over its 300 MB target; the Latin words at Zipf ≥ 2 of its `best` lists are 14 MB
compressed. `<lang>.tsv.gz` holds them as `word<TAB>zipf` lines, most frequent first.

The data is wordfreq's (Robyn Speer et al., https://github.com/rspeer/wordfreq), licensed CC BY-SA 4.0: so are
these derived files (see `NOTICE` beside them). Rebuild them, with wordfreq installed (it is in the `dev` extra),
by ``python -m redtrans.text.wordlists``; `tests/test_wordlists.py` checks they equal a fresh derivation.
"""

from __future__ import annotations

import gzip
import math
import sys
from functools import cache
from importlib.resources import files
from pathlib import Path

import regex

WORDFREQ_VERSION = "3.1.1"
"""The wordfreq release the shipped files were derived from."""
ZIPF_FLOOR = 2.0
"""Words rarer than this (once per 100 million words) are left out: nothing is compared below it."""
_LATIN = regex.compile(r"^[\p{Latin}']+$")


@cache
def zipf_table(lang: str) -> dict[str, float]:
    """The Latin-script words of `lang`'s text and their Zipf frequencies ({} for a language with no list).
    Loaded once per language (about 0.1 s for English, 0.4 s for the largest lists)."""
    resource = files(__name__) / f"{lang}.tsv.gz"
    if not resource.is_file():
        return {}
    table: dict[str, float] = {}
    for line in gzip.decompress(resource.read_bytes()).decode("utf-8").splitlines():
        word, _, zipf = line.partition("\t")
        table[word] = float(zipf)
    return table


def derive(lang: str) -> list[tuple[str, float]]:
    """`lang`'s Latin-script words at Zipf ≥ `ZIPF_FLOOR` from wordfreq's `best` list, most frequent first."""
    from wordfreq import get_frequency_dict

    floor = 10 ** (ZIPF_FLOOR - 9)
    frequencies = get_frequency_dict(lang, "best")
    return [(w, round(math.log10(f) + 9, 2)) for w, f in frequencies.items() if f >= floor and _LATIN.match(w)]


def render(rows: list[tuple[str, float]]) -> bytes:
    """The shipped file's bytes: reproducible (no gzip timestamp)."""
    text = "".join(f"{word}\t{zipf}\n" for word, zipf in rows)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def build(out: Path) -> None:
    """Write one file per language wordfreq has a `best` list for."""
    import wordfreq
    from wordfreq import available_languages

    installed = getattr(wordfreq, "__version__", None) or _version("wordfreq")
    if installed != WORDFREQ_VERSION:
        sys.exit(f"wordfreq {installed} is installed; these files are from {WORDFREQ_VERSION}: update WORDFREQ_VERSION")
    for lang in sorted(available_languages("best")):
        (out / f"{lang}.tsv.gz").write_bytes(render(derive(lang)))


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)

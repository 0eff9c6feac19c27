"""A translation memory: the k pairs most similar to a segment, as in-context examples (issue 16).

Pairs come from JSON Lines, one pair a line, in either shape:

- language-keyed, usable in both directions: ``{"zh": "这家店绝绝子", "en": "This place is amazing"}``;
- directed: ``{"src": "zh", "tgt": "en", "source": "…", "target": "…"}`` (also ``text``/``translation``).

The shipped default (``builtin``: ``text/termbase/tm-sns.jsonl``) is a small set of SNS posts written for
redtrans. Similarity is character n-gram overlap (rapidfuzz's normalized Indel similarity on the text with
markers and spaces dropped, case-folded), which works alike for Chinese and English; pairs below
`min_score` are not used (an unrelated example costs tokens and misleads), and long pairs are skipped so the
examples stay few and short.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import regex

from redtrans.errors import InputError
from redtrans.languages import LANGUAGES

BUILTIN = "builtin"
MAX_CHARS = 160
"""Pairs with a side longer than this are not used as examples (prompt cost)."""

_NOISE = regex.compile(r"[⟨〈<]\s*\d{1,3}\s*[⟩〉>]|[\s\p{P}\p{S}]+")


def _key(text: str) -> str:
    return _NOISE.sub("", text).lower()


@dataclass(frozen=True)
class Pair:
    src: str
    tgt: str
    source: str
    target: str


class TranslationMemory:
    """Pairs by direction, with a nearest-neighbour lookup per segment."""

    def __init__(self, pairs: list[Pair], origin: str = "") -> None:
        self.origin = origin
        self._by_dir: dict[tuple[str, str], tuple[list[Pair], list[str]]] = {}
        for pair in pairs:
            if len(pair.source) > MAX_CHARS or len(pair.target) > MAX_CHARS:
                continue
            items, keys = self._by_dir.setdefault((pair.src, pair.tgt), ([], []))
            items.append(pair)
            keys.append(_key(pair.source))

    def __len__(self) -> int:
        return sum(len(items) for items, _ in self._by_dir.values())

    def pairs(self) -> list[Pair]:
        """Every usable pair, by direction."""
        return [pair for items, _ in self._by_dir.values() for pair in items]

    def similar(self, text: str, src: str, tgt: str, min_score: float) -> list[Pair]:
        """Every pair of direction src→tgt whose source scores at least `min_score` against `text` (0–100, the
        retriever's own similarity), `text` itself included: what a held-out evaluation must leave out."""
        return [pair for pair, _ in self._matches(text, src, tgt, min_score, limit=None)]

    def _matches(self, text: str, src: str, tgt: str, min_score: float, limit: int | None) -> list[tuple[Pair, bool]]:
        """Pairs of direction src→tgt scoring at least `min_score` against `text`, best first, each with whether
        its source is `text` itself (after the noise the key drops)."""
        query = _key(text)
        if not query or (src, tgt) not in self._by_dir:
            return []
        from rapidfuzz import fuzz, process

        items, keys = self._by_dir[(src, tgt)]
        found = process.extract(query, keys, scorer=fuzz.ratio, limit=limit, score_cutoff=min_score)
        return [(items[index], keys[index] == query) for _, _, index in found]

    @classmethod
    def load(cls, path: str | Path) -> TranslationMemory:
        """``builtin`` or a JSONL path; a bad line is an InputError naming file:line."""
        if str(path) == BUILTIN:
            text = resources.files("redtrans.text").joinpath("termbase", "tm-sns.jsonl").read_text(encoding="utf-8")
            return cls(_parse(text, "termbase/tm-sns.jsonl"), BUILTIN)
        file = Path(path)
        if not file.is_file():
            raise InputError("translation memory file not found", path=file)
        return cls(_parse(file.read_text(encoding="utf-8"), str(file)), str(file))

    def nearest(self, text: str, src: str, tgt: str, k: int, min_score: float = 40.0) -> list[Pair]:
        """The `k` pairs of direction src→tgt most similar to `text` (best last, nearest to the query), none
        scoring below `min_score` (0–100) and none whose source is `text` itself."""
        if k <= 0:
            return []
        found = self._matches(text, src, tgt, min_score, limit=k + 1)
        return [pair for pair, is_query in found if not is_query][:k][::-1]


def _parse(text: str, origin: str) -> list[Pair]:
    pairs: list[Pair] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"invalid JSON ({exc})", path=origin, line=number) from exc
        if not isinstance(row, dict):
            raise InputError("a pair must be a JSON object", path=origin, line=number)
        if "src" in row and "tgt" in row:
            source = row.get("source", row.get("text"))
            target = row.get("target", row.get("translation"))
            if not (isinstance(source, str) and isinstance(target, str) and source.strip() and target.strip()):
                raise InputError("a directed pair needs non-empty `source` and `target`", path=origin, line=number)
            pairs.append(Pair(str(row["src"]), str(row["tgt"]), source.strip(), target.strip()))
            continue
        langs = [k for k, v in row.items() if k in LANGUAGES and isinstance(v, str) and v.strip()]
        if len(langs) < 2:
            raise InputError(
                "a pair is {<lang>: text, <lang>: text} or {src, tgt, source, target}", path=origin, line=number
            )
        for a in langs:
            for b in langs:
                if a != b:
                    pairs.append(Pair(a, b, row[a].strip(), row[b].strip()))
    return pairs


@cache
def builtin_memory() -> TranslationMemory:
    return TranslationMemory.load(BUILTIN)


def load_memory(path: str | Path | None) -> TranslationMemory | None:
    """None / ``none`` = no examples; ``builtin`` = the shipped set; else a JSONL path."""
    if path is None or str(path).lower() == "none":
        return None
    if str(path) == BUILTIN:
        return builtin_memory()
    return TranslationMemory.load(path)

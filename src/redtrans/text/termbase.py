"""A slang / meme / platform term base, and its retrieval per segment (issue 16).

Small models translate internet language literally ("你不是我的菜" → "you're not my dish", "no cap" → "没有盖子").
A term base says what such expressions mean and how native users of the target language would write them;
the translator looks up the expressions of each segment and passes at most a few of them to the prompt as
hints (`prompts.translation_messages(..., hints=...)`), after the stable system prompt.

Format (YAML; the full reference with examples is docs/quality.md): a file is a mapping with optional
file-level defaults and a list of entries::

    lang: zh                                   # default for entries without their own `lang`
    provenance: written for redtrans from general knowledge of internet language
    entries:
      - term: yyds
        variants: [YYDS, 永远滴神]             # literal surface forms, matched like the term
        patterns: []                           # optional regexes for forms a list cannot hold
        meaning: short for 永远的神 'forever a god': the best ever
        translations:
          en: [the GOAT, {text: the best ever, register: neutral}]
        examples: [{text: 这家火锅yyds！, en: This hotpot place is the GOAT!}]
        tags: [abbreviation, slang]

A JSON Lines file (one entry object a line, `.jsonl`) is read the same way. Errors are reported with
``file:line`` (`check_files`, ``redtrans termbase check``); loading a base that has errors raises
`TermBaseError` listing them.

Matching: every surface form (term and variants) of the segment's source language is put in one Aho-Corasick
automaton (pyahocorasick) over a case- and width-folded copy of the text (same length, so offsets carry
over). A Latin-script surface matches only at word edges ("emo" not in "memory"). Of overlapping matches the
longest wins (then the earliest); an entry is hinted once; hints come in text order, at most `limit`.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import regex
import yaml

from redtrans.errors import InputError
from redtrans.languages import LANGUAGES

BUILTIN = "builtin"
"""The name of the base shipped with redtrans (``text/termbase/*.yaml``)."""

TAGS = frozenset(
    {
        "slang",
        "meme",
        "emoji",
        "fandom",
        "platform",
        "abbreviation",
        "pinyin",
        "gaming",
        "beauty",
        "food",
        "shopping",
        "fashion",
        "work",
        "relationship",
        "emotion",
        "praise",
        "insult",
        "number",
        "loanword",
        "idiom",
    }
)
REGISTERS = frozenset({"slang", "casual", "neutral", "formal", "vulgar", "playful", "dated"})
ENTRY_FIELDS = frozenset(
    {"term", "lang", "variants", "patterns", "meaning", "translations", "examples", "tags", "provenance", "note"}
)
FILE_FIELDS = frozenset({"lang", "provenance", "description", "license", "entries"})
DEFAULT_LIMIT = 4


class TermBaseError(InputError):
    """A term base that cannot be used: every problem found, each with its file:line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        # One line (the bad-input contract): the first problem; `redtrans termbase check` lists every one.
        more = (
            f" (and {len(self.problems) - 1} more: `redtrans termbase check` lists them)"
            if len(self.problems) > 1
            else ""
        )
        first = " ".join(str(self.problems[0]).split()) if self.problems else "no entries"
        super().__init__(f"invalid term base: {first}{more}")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str
    level: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.level}: {self.message}"


@dataclass(frozen=True)
class Rendering:
    """One preferred translation, with a register note ("slang", "neutral", …) where it matters."""

    text: str
    register: str = ""


@dataclass(frozen=True)
class Entry:
    term: str
    lang: str
    meaning: str
    translations: dict[str, tuple[Rendering, ...]]
    variants: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    examples: tuple[dict[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    provenance: str = ""
    origin: str = ""  # file:line

    @property
    def surfaces(self) -> tuple[str, ...]:
        return (self.term, *self.variants)


@dataclass(frozen=True)
class Hint:
    """A term-base entry found in a segment: `surface` as written at [start, end)."""

    surface: str
    start: int
    end: int
    entry: Entry

    def renderings(self, tgt: str) -> tuple[Rendering, ...]:
        return self.entry.translations.get(tgt, ())


# -- reading -------------------------------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's 1-based line as ``__line__``."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _raw_entries(path: str, text: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[Problem]]:
    """(file-level defaults, entry mappings with __line__, problems) of one file's text."""
    problems: list[Problem] = []
    if path.endswith(".jsonl"):
        rows: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                problems.append(Problem(path, number, f"invalid JSON ({exc})"))
                continue
            if not isinstance(row, dict):
                problems.append(Problem(path, number, "an entry must be a JSON object"))
                continue
            row["__line__"] = number
            rows.append(row)
        return {}, rows, problems
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return {}, [], [Problem(path, (mark.line + 1) if mark else 1, f"invalid YAML ({exc})")]
    if isinstance(data, list):
        data = {"entries": data, "__line__": 1}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return {}, [], [Problem(path, 1, "a term base is a mapping with an `entries` list (or a list of entries)")]
    for key in data:
        if key not in FILE_FIELDS and key != "__line__":
            problems.append(Problem(path, 1, f"unknown file-level field {key!r}"))
    entries = [e for e in data["entries"] if isinstance(e, dict)]
    if len(entries) != len(data["entries"]):
        problems.append(Problem(path, 1, "every item of `entries` must be a mapping"))
    return {k: v for k, v in data.items() if k != "entries"}, entries, problems


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    return None


def _parse_entry(raw: dict[str, Any], defaults: dict[str, Any], path: str) -> tuple[Entry | None, list[Problem]]:
    line = int(raw.get("__line__", 0))
    problems: list[Problem] = []

    def bad(message: str, level: str = "error") -> None:
        problems.append(Problem(path, line, message, level))

    for key in raw:
        if key not in ENTRY_FIELDS and key != "__line__":
            bad(f"unknown field {key!r} (fields: {', '.join(sorted(ENTRY_FIELDS))})")
    term = raw.get("term")
    if not isinstance(term, str) or not term.strip():
        bad("`term` is missing or empty")
        return None, problems
    term = str(term).strip()
    lang = raw.get("lang", defaults.get("lang"))
    if lang not in LANGUAGES:
        bad(f"{term!r}: `lang` {lang!r} is not a language code of redtrans.languages")
        return None, problems
    meaning = raw.get("meaning")
    if not isinstance(meaning, str) or not meaning.strip():
        bad(f"{term!r}: `meaning` is missing")
    variants = _strings(raw.get("variants"))
    if variants is None:
        bad(f"{term!r}: `variants` must be a list of non-empty strings")
        variants = []
    patterns = _strings(raw.get("patterns"))
    if patterns is None:
        bad(f"{term!r}: `patterns` must be a list of regexes")
        patterns = []
    for pattern in patterns:
        try:
            regex.compile(pattern)
        except regex.error as exc:
            bad(f"{term!r}: pattern {pattern!r} does not compile ({exc})")
    tags = _strings(raw.get("tags"))
    if tags is None:
        bad(f"{term!r}: `tags` must be a list of strings")
        tags = []
    for tag in tags:
        if tag not in TAGS:
            bad(f"{term!r}: unknown tag {tag!r} (tags: {', '.join(sorted(TAGS))})")
    translations: dict[str, tuple[Rendering, ...]] = {}
    raw_tr = raw.get("translations")
    if not isinstance(raw_tr, dict) or not raw_tr:
        bad(f"{term!r}: `translations` must map target language codes to lists of translations")
        raw_tr = {}
    for tgt, items in raw_tr.items():
        if tgt == "__line__":
            continue
        if tgt not in LANGUAGES:
            bad(f"{term!r}: translation language {tgt!r} is not a language code")
            continue
        if tgt == lang:
            bad(f"{term!r}: a translation into its own language ({tgt})")
        renderings: list[Rendering] = []
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, str) and item.strip():
                renderings.append(Rendering(item.strip()))
            elif isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
                register = str(item.get("register") or "")
                if register and register not in REGISTERS:
                    bad(f"{term!r}: unknown register {register!r} (registers: {', '.join(sorted(REGISTERS))})")
                renderings.append(Rendering(item["text"].strip(), register))
            else:
                bad(f"{term!r}: a {tgt} translation must be a string or {{text, register}}")
        if not renderings:
            bad(f"{term!r}: no {tgt} translation")
        translations[tgt] = tuple(renderings)
    examples: list[dict[str, str]] = []
    for example in raw.get("examples") or []:
        if not isinstance(example, dict) or not isinstance(example.get("text"), str):
            bad(f"{term!r}: an example is a mapping {{text: …, <lang>: translation}}")
            continue
        clean = {k: v for k, v in example.items() if k != "__line__"}
        if not all(isinstance(v, str) for v in clean.values()):
            bad(f"{term!r}: example fields must be strings")
            continue
        if not any(_fold(s) in _fold(clean["text"]) for s in (term, *variants)) and not patterns:
            bad(f"{term!r}: example {clean['text']!r} does not contain the term or a variant", "warning")
        examples.append(clean)
    for surface in (term, *variants):
        if len(surface) == 1 and not surface.isascii():
            bad(f"{term!r}: a one-character surface {surface!r} would match nearly every post")
        if _is_latin(surface[0]) and len(surface) < 2:
            bad(f"{term!r}: a one-letter surface {surface!r}")
    if problems and any(p.level == "error" for p in problems):
        return None, problems
    entry = Entry(
        term=term,
        lang=str(lang),
        meaning=str(meaning).strip(),
        translations=translations,
        variants=tuple(v.strip() for v in variants),
        patterns=tuple(patterns),
        examples=tuple(examples),
        tags=tuple(tags),
        provenance=str(raw.get("provenance") or defaults.get("provenance") or ""),
        origin=f"{path}:{line}",
    )
    return entry, problems


def read_file(path: str | Path, text: str | None = None) -> tuple[list[Entry], list[Problem]]:
    """The entries of one file and every problem found in it (schema, duplicates and conflicts within it)."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], [Problem(name, 0, "term base file not found")]
        except UnicodeDecodeError as exc:
            return [], [Problem(name, 0, f"not UTF-8 ({exc})")]
    defaults, raws, problems = _raw_entries(name, text)
    entries: list[Entry] = []
    for raw in raws:
        entry, found = _parse_entry(raw, defaults, name)
        problems += found
        if entry is not None:
            entries.append(entry)
    problems += _duplicates(entries)
    return entries, problems


def _duplicates(entries: Iterable[Entry]) -> list[Problem]:
    """A surface form claimed twice in one language: a duplicate when the translations agree, else a conflict."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        for surface in dict.fromkeys(_fold(s) for s in entry.surfaces):
            key = (entry.lang, surface)
            first = seen.get(key)
            if first is None:
                seen[key] = entry
                continue
            path, _, line = entry.origin.rpartition(":")
            what = "duplicate of" if first.translations == entry.translations else "conflicts with"
            problems.append(Problem(path, int(line or 0), f"{entry.term!r}: surface {surface!r} {what} {first.origin}"))
    return problems


def check_files(paths: Sequence[str | Path]) -> tuple[list[Entry], list[Problem]]:
    """Every entry and problem of `paths` (``builtin`` = the shipped base), each file checked on its own;
    the same surface in two files is not a problem: the earlier file wins when they are merged."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    for path in paths:
        if str(path) == BUILTIN:
            for name, text in _builtin_texts():
                found, probs = read_file(name, text)
                entries += found
                problems += probs
            continue
        found, probs = read_file(path)
        entries += found
        problems += probs
    return entries, problems


def _builtin_texts() -> list[tuple[str, str]]:
    folder = resources.files("redtrans.text").joinpath("termbase")
    return sorted(
        (f"termbase/{entry.name}", entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


# -- matching ------------------------------------------------------------------------------------------------

_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}


def _fold(text: str) -> str:
    """Lower case and half-width ASCII, one character for one (offsets in the folded text are the original's)."""
    out = []
    for ch in text.translate(_FULLWIDTH):
        low = ch.lower()
        out.append(low if len(low) == 1 else ch)
    return "".join(out)


def _is_latin(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum()
    return ch.isalpha() and "LATIN" in unicodedata.name(ch, "")


class TermBase:
    """Merged entries of one or more files (earlier files win a surface form) with a matcher per language."""

    def __init__(self, entries: Iterable[Entry], sources: Sequence[str] = ()) -> None:
        self.sources = list(sources)
        self.entries: list[Entry] = []
        claimed: set[tuple[str, str]] = set()
        self._surfaces: dict[str, dict[str, Entry]] = {}
        self._patterns: dict[str, list[tuple[regex.Pattern[str], Entry]]] = {}
        for entry in entries:
            keys = [(entry.lang, _fold(s)) for s in entry.surfaces]
            free = [k for k in keys if k not in claimed]
            if not free:
                continue  # an earlier file (the user's) defines every form of it
            self.entries.append(entry)
            for key in free:
                claimed.add(key)
                self._surfaces.setdefault(entry.lang, {})[key[1]] = entry
            for pattern in entry.patterns:
                self._patterns.setdefault(entry.lang, []).append((regex.compile(pattern, regex.IGNORECASE), entry))
        self._automata: dict[str, Any] = {}

    @classmethod
    def load(cls, paths: Sequence[str | Path] = (BUILTIN,)) -> TermBase:
        """Merge `paths` in order (the user's first; ``builtin`` = the shipped base). Any error → TermBaseError."""
        entries, problems = check_files(paths)
        errors = [p for p in problems if p.level == "error"]
        if errors:
            raise TermBaseError(errors)
        return cls(entries, [str(p) for p in paths])

    def __len__(self) -> int:
        return len(self.entries)

    def _automaton(self, lang: str) -> Any:
        if lang not in self._automata:
            import ahocorasick

            automaton = ahocorasick.Automaton()
            for surface, entry in self._surfaces.get(lang, {}).items():
                automaton.add_word(surface, (surface, entry))
            if len(automaton):
                automaton.make_automaton()
            self._automata[lang] = automaton
        return self._automata[lang]

    def find(self, text: str, src: str, tgt: str | None = None, limit: int | None = DEFAULT_LIMIT) -> list[Hint]:
        """Entries of language `src` found in `text` (with a `tgt` translation when `tgt` is given): the
        longest of overlapping matches, each entry once, in text order, at most `limit` (None = all)."""
        folded = _fold(text)
        found: list[tuple[int, int, Entry]] = []
        automaton = self._automaton(src)
        if len(automaton):
            for end, (surface, entry) in automaton.iter(folded):
                start = end + 1 - len(surface)
                found.append((start, end + 1, entry))
        for pattern, entry in self._patterns.get(src, []):
            found += [(m.start(), m.end(), entry) for m in pattern.finditer(text) if m.end() > m.start()]
        found = [f for f in found if _edges_ok(folded, f[0], f[1]) and (tgt is None or tgt in f[2].translations)]
        found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
        taken: list[tuple[int, int]] = []
        chosen: dict[str, Hint] = {}
        for start, end, entry in found:
            if entry.origin in chosen or any(start < e and end > s for s, e in taken):
                continue
            taken.append((start, end))
            chosen[entry.origin] = Hint(text[start:end], start, end, entry)
        hints = sorted(chosen.values(), key=lambda h: h.start)
        return hints if limit is None else hints[:limit]

    def kept_words(self, src: str, tgt: str) -> frozenset[str]:
        """Latin words (case-folded) of the `src` expressions this base renders in `tgt` as they are written
        (en ``emo`` → zh ``emo``): a translation that keeps them has not left them untranslated."""
        words: set[str] = set()
        for entry in self.entries:
            if entry.lang != src:
                continue
            renderings = {_fold(r.text) for r in entry.translations.get(tgt, ())}
            for surface in entry.surfaces:
                if _fold(surface) in renderings:
                    words.update(w.casefold() for w in regex.findall(r"\p{Latin}+", surface))
        return frozenset(words)

    def surfaces(self, lang: str | None = None) -> list[str]:
        """Every literal surface form (of `lang`), for tagging."""
        return [s for e in self.entries if lang in (None, e.lang) for s in e.surfaces]


def _edges_ok(folded: str, start: int, end: int) -> bool:
    """A surface that starts (ends) with a Latin letter or digit must not continue a word on that side."""
    if _is_latin(folded[start]) and start > 0 and _is_latin(folded[start - 1]):
        return False
    return not (_is_latin(folded[end - 1]) and end < len(folded) and _is_latin(folded[end]))


@cache
def builtin_termbase() -> TermBase:
    return TermBase.load((BUILTIN,))


def load_termbase(paths: Sequence[str | Path] | None) -> TermBase | None:
    """The term base a run uses: None = none; ``builtin`` among `paths` = the shipped one, in its place."""
    if not paths:
        return None
    if list(paths) == [BUILTIN]:
        return builtin_termbase()
    return TermBase.load(paths)


def stats(entries: Sequence[Entry]) -> dict[str, Any]:
    """Counts for ``redtrans termbase stats``."""
    by_lang = Counter(e.lang for e in entries)
    directions = Counter(f"{e.lang}→{t}" for e in entries for t in e.translations)
    tags = Counter(t for e in entries for t in e.tags)
    return {
        "entries": len(entries),
        "surface_forms": sum(len(e.surfaces) for e in entries),
        "patterns": sum(len(e.patterns) for e in entries),
        "with_examples": sum(bool(e.examples) for e in entries),
        "by_language": dict(sorted(by_lang.items())),
        "by_direction": dict(sorted(directions.items())),
        "by_tag": dict(tags.most_common()),
        "files": dict(Counter(e.origin.rpartition(":")[0] for e in entries)),
    }


__all__ = [
    "BUILTIN",
    "Entry",
    "Hint",
    "Problem",
    "Rendering",
    "TermBase",
    "TermBaseError",
    "builtin_termbase",
    "check_files",
    "load_termbase",
    "read_file",
    "stats",
]

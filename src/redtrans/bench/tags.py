"""Phenomenon tags computed from a segment's source, and SNS fidelity of a hypothesis.

Tags reuse the translator's own span finder and platform profiles (``redtrans.text``), so "emoji" or "topic"
means here exactly what the pipeline protects:

- ``emoji``, ``mention``, ``url`` (URLs and e-mail addresses): spans found by ``text.spans.find_spans``;
- ``topic``: the profile's topic markup (RedNote ``#话题[话题]#``) or a plain ``#hashtag``;
- ``sticker``: the profile's sticker codes (``[庆祝R]``);
- ``code-mixed``: letters of a second script make up at least 5% (and 2 letters) of the text outside spans;
- ``multi-line``: more than one non-empty line;
- ``len:short`` / ``len:medium`` / ``len:long``: content length (a CJK character ≈ 1, a word ≈ 1.6) below 12,
  up to 48, above 48.

- ``slang``: an entry of a term base (``redtrans.text.termbase``, e.g. `builtin_termbase()`) matches the source,
  by the translator's own matcher (``termbase=``); or, without one, one of ``slang_terms`` is in it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import regex

from redtrans.languages import get_language
from redtrans.text.checks import length_units
from redtrans.text.fidelity import fidelity
from redtrans.text.langid import letter_share, script_counts
from redtrans.text.profiles import PlatformProfile, load_profile
from redtrans.text.spans import find_spans
from redtrans.text.termbase import TermBase

TAGS = (
    "emoji",
    "topic",
    "sticker",
    "mention",
    "url",
    "code-mixed",
    "multi-line",
    "len:short",
    "len:medium",
    "len:long",
    "slang",
)
# A plain hashtag ("#小孩也可以学水袖", "#ootd") — the RedNote topic markup is matched by the profile.
PLAIN_HASHTAG = regex.compile(r"(?<![\p{L}\p{N}&/])#(?=[\p{L}\p{N}_])[^\s#\[\]]{1,40}")
SHORT, LONG = 12.0, 48.0


def _markup_kind(name: str) -> str:
    return "topic" if name in {"topic", "hashtag"} else "sticker" if name == "sticker" else name


def tag_source(
    text: str,
    src: str,
    profile: PlatformProfile | None = None,
    slang_terms: Iterable[str] = (),
    termbase: TermBase | None = None,
) -> list[str]:
    """The phenomenon tags of a source text (see the module docs), in TAGS order."""
    profile = profile or load_profile("rednote")
    spans = find_spans(text, profile)
    tags: set[str] = set()
    for span in spans:
        if span.kind == "markup" and span.rule is not None:
            tags.add(_markup_kind(span.rule.name))
        elif span.kind in {"url", "email"}:
            tags.add("url")
        else:
            tags.add(span.kind)
    rest = text
    for span in sorted(spans, key=lambda s: -s.start):
        rest = rest[: span.start] + " " + rest[span.end :]
    if PLAIN_HASHTAG.search(rest):
        tags.add("topic")
    counts = script_counts(PLAIN_HASHTAG.sub(" ", rest))
    total = sum(counts.values())
    own = get_language(src).script
    own_scripts = {"Kana", "Han"} if own == "Japanese" else {own}
    other = sum(n for script, n in counts.items() if script not in own_scripts)
    if total and other >= 2 and other / total >= 0.05 and letter_share(rest, own) > 0:
        tags.add("code-mixed")
    if sum(1 for line in text.split("\n") if line.strip()) > 1:
        tags.add("multi-line")
    units = length_units(text)
    tags.add("len:short" if units < SHORT else "len:long" if units > LONG else "len:medium")
    if any(term and term in text for term in slang_terms):
        tags.add("slang")
    if termbase is not None and termbase.find(text, src, limit=1):
        tags.add("slang")
    return [t for t in TAGS if t in tags]


@dataclass(frozen=True)
class SegmentFidelity:
    """Which SNS elements of the source survived in the hypothesis (None = the source has none)."""

    emoji: bool | None
    markup: bool | None
    mentions: bool | None
    urls: bool | None
    lines: bool | None

    @property
    def relevant(self) -> bool:
        return any(v is not None for v in self.as_dict().values())

    @property
    def all_kept(self) -> bool | None:
        """True when every element the source has was kept; None when it has none."""
        values = [v for v in self.as_dict().values() if v is not None]
        return all(values) if values else None

    def as_dict(self) -> dict[str, bool | None]:
        return {
            "emoji": self.emoji,
            "markup": self.markup,
            "mentions": self.mentions,
            "urls": self.urls,
            "lines": self.lines,
        }


def _markup_counts(text: str, profile: PlatformProfile) -> Counter[str]:
    """Markup spans by profile rule, plus plain ``#hashtags`` outside them (as ``#``)."""
    counts: Counter[str] = Counter()
    rest = text
    for span in sorted(find_spans(text, profile), key=lambda s: -s.start):
        if span.kind == "markup" and span.rule is not None:
            counts[span.rule.name] += 1
        rest = rest[: span.start] + " " + rest[span.end :]
    hashtags = len(PLAIN_HASHTAG.findall(rest))
    if hashtags:
        counts["#"] = hashtags
    return counts


def segment_fidelity(source: str, hypothesis: str, profile: PlatformProfile | None = None) -> SegmentFidelity:
    """Fidelity of one hypothesis, built on ``text.fidelity`` (emoji, mentions, URLs, lines) plus platform
    markup: every markup span of the source (by rule) and every plain ``#hashtag`` must appear, re-rendered or
    not, in the hypothesis."""
    profile = profile or load_profile("rednote")
    base = fidelity(source, hypothesis, profile)
    spans = find_spans(source, profile)
    has = Counter(s.kind for s in spans)
    src_markup = _markup_counts(source, profile)
    hyp_markup = _markup_counts(hypothesis, profile)
    multi_line = "\n" in source.strip()
    return SegmentFidelity(
        emoji=base.emoji if has["emoji"] else None,
        markup=all(hyp_markup[k] >= n for k, n in src_markup.items()) if src_markup else None,
        mentions=base.mentions if has["mention"] else None,
        urls=base.urls if has["url"] or has["email"] else None,
        lines=base.lines if multi_line else None,
    )

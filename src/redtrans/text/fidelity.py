"""SNS fidelity of a translation: did every protected span and the line structure survive?

Shared by the benchmark, the translator's tests and the evaluation scripts, so "kept" means one thing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from redtrans.text.profiles import PlatformProfile, load_profile
from redtrans.text.spans import EMOJI_RUN, find_spans


def _emoji_units(text: str) -> Counter[str]:
    """Each emoji sequence (ZWJ, skin tone, flag…) counted once, whatever runs it sits in."""
    import regex

    units: Counter[str] = Counter()
    for run in EMOJI_RUN.findall(text):
        for cluster in regex.findall(r"\X", run):
            units[cluster.replace("\ufe0f", "")] += 1
    return units


@dataclass(frozen=True)
class Fidelity:
    emoji: bool
    mentions: bool
    urls: bool
    lines: bool
    relevant: bool  # the source has something to keep (an emoji, mention, URL or several lines)

    @property
    def all_kept(self) -> bool:
        return self.emoji and self.mentions and self.urls and self.lines


def fidelity(source: str, translation: str, profile: PlatformProfile | None = None) -> Fidelity:
    profile = profile or load_profile("generic")
    spans = find_spans(source, profile)
    mentions = Counter(s.text for s in spans if s.kind == "mention")
    urls = Counter(s.text for s in spans if s.kind in {"url", "email"})
    src_emoji = _emoji_units(source)
    out_emoji = _emoji_units(translation)
    multi_line = "\n" in source.strip()
    return Fidelity(
        emoji=all(out_emoji[e] >= n for e, n in src_emoji.items()),
        mentions=all(translation.count(m) >= n for m, n in mentions.items()),
        urls=all(translation.count(u) >= n for u, n in urls.items()),
        lines=translation.count("\n") == source.count("\n"),
        relevant=bool(src_emoji or mentions or urls or multi_line),
    )

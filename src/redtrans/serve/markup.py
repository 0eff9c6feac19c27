"""HTML/XML texts on the MT routes (DeepL's `tag_handling` + `ignore_tags`, LibreTranslate's `format=html`).

The translator's own span machinery does the work: with `TagHandling.profile` its markup tags (and character
entities, comments, CDATA, and the elements named in `ignore`) are protected spans, so each line's text between
them is translated as one segment with the tags as markers, and every tag comes back byte for byte where the
model put its marker (one it dropped goes back at the end of its segment, flagged `missing_span`). Spans live on
one line; an ignored element whose content spans lines is folded onto one line first (its newlines become a
private-use character, restored after), so its content is copied verbatim too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import regex

from redtrans.text.profiles import PlatformProfile
from redtrans.text.spans import tag_pattern, with_tags

_FOLD = "\U0010fffd"  # a private-use code point of the last plane: not found in posts
_HTML_IGNORED = ("script", "style")  # never translated in HTML, as in browsers' and DeepL's HTML handling


@dataclass(frozen=True)
class TagHandling:
    """How a request's texts carry markup: `html` (tag names in any case) or `xml` (exact), and the elements
    whose content is kept as is."""

    mode: Literal["html", "xml"]
    ignore: tuple[str, ...] = field(default=())

    @cached_property
    def elements(self) -> tuple[str, ...]:
        names = [*self.ignore, *(_HTML_IGNORED if self.mode == "html" else ())]
        seen = {n.lower() if self.mode == "html" else n: n for n in names}
        return tuple(sorted(seen.values()))

    @property
    def key(self) -> str:
        """What the cache key adds: the same text is translated differently as markup."""
        return f"{self.mode}:{','.join(self.elements)}"

    def profile(self, base: PlatformProfile) -> PlatformProfile:
        return with_tags(base, self.elements, case_sensitive=self.mode == "xml")

    @cached_property
    def _blocks(self) -> regex.Pattern[str] | None:
        if not self.elements:
            return None
        names = "|".join(regex.escape(n) for n in self.elements)
        flags = regex.DOTALL | (regex.IGNORECASE if self.mode == "html" else 0)
        return regex.compile(rf"<(?P<name>{names})(?:\s[^<>]*)?>.*?</(?P=name)\s*>", flags)

    def fold(self, text: str) -> str:
        """`text` with each ignored element that spans lines put on one line (`unfold` undoes it); unchanged
        when it holds the fold character itself (then such an element's lines are translated as text)."""
        if self._blocks is None or "\n" not in text or _FOLD in text:
            return text
        return self._blocks.sub(lambda m: m.group(0).replace("\n", _FOLD), text)

    @staticmethod
    def unfold(text: str, original: str) -> str:
        """The translation of `fold(original)` with the folded newlines back."""
        return text if _FOLD in original else text.replace(_FOLD, "\n")

    def strip(self, text: str) -> str:
        """The text a reader sees (for language detection): markup and ignored elements removed."""
        pattern = tag_pattern(self.elements, self.mode == "xml")
        return pattern.sub(" ", self.fold(text))

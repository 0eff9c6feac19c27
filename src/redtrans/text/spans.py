"""Protected spans of SNS text and the segmentation of a post into translatable cores.

A post is split into lines (line structure is kept exactly). In each line, spans that must survive
byte-for-byte (emoji sequences, URLs, @mentions, emails) and platform markup are found. Spans and whitespace
at the edges of a line are peeled off and copied; spans inside the remaining *core* are replaced by numbered
markers (``⟨1⟩``) that the prompt tells the model to keep, and put back after translation. Markup spans are
rebuilt for the target language from their separately translated text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import regex

from redtrans.text.profiles import MarkupRule, PlatformProfile

# One emoji: a flag (two regional indicators), a keycap, or a pictograph with optional presentation
# selector / skin tone, joined by ZWJ into sequences, plus subdivision-flag tag sequences.
_EMOJI_ONE = (
    r"(?:\p{RI}\p{RI}"
    r"|[#*0-9]\uFE0F?\u20E3"
    r"|\p{Extended_Pictographic}[\uFE0F\uFE0E]?\p{EMod}?"
    r"(?:\u200D\p{Extended_Pictographic}[\uFE0F\uFE0E]?\p{EMod}?)*[\U000E0020-\U000E007F]*"
    r"|\p{EMod})"
)
EMOJI_RUN = regex.compile(rf"(?:{_EMOJI_ONE})+")
URL = regex.compile(
    r"(?:https?://|www\.)[^\s<>\"'，。！？；：、（）【】《》「」“”‘’]+",
    regex.IGNORECASE,
)
EMAIL = regex.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
MENTION = regex.compile(r"(?<![A-Za-z0-9_@.])@[\p{L}\p{N}_\-.]{1,30}(?<![.\-])")
_URL_TRAILING = ".,;:!?)]}'\""
MARKER = regex.compile(r"[⟨〈<]\s*(\d{1,3})\s*[⟩〉>]")
_HAS_LETTER = regex.compile(r"\p{L}")


def marker(index: int) -> str:
    return f"⟨{index}⟩"


@dataclass(frozen=True)
class Span:
    kind: str  # "emoji" | "url" | "email" | "mention" | "markup" | "tag"
    start: int
    end: int
    text: str
    rule: MarkupRule | None = None
    inner: str = ""  # markup only: the translatable text

    @property
    def protected(self) -> bool:
        """Copied byte-for-byte (everything but markup, which is re-rendered)."""
        return self.rule is None


def find_spans(text: str, profile: PlatformProfile) -> list[Span]:
    """Non-overlapping spans in order; markup wins over URLs, which win over mentions and emoji."""
    found: list[Span] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    def add(span: Span) -> None:
        if span.end > span.start and free(span.start, span.end):
            found.append(span)
            taken.append((span.start, span.end))

    for pattern in profile.protect:
        for m in pattern.finditer(text):
            add(Span("tag", m.start(), m.end(), m.group(0)))
    for rule in profile.markup:
        for m in rule.pattern.finditer(text):
            add(Span("markup", m.start(), m.end(), m.group(0), rule, m.group("text").strip()))
    for m in URL.finditer(text):
        url = m.group(0).rstrip(_URL_TRAILING)
        add(Span("url", m.start(), m.start() + len(url), url))
    for m in EMAIL.finditer(text):
        add(Span("email", m.start(), m.end(), m.group(0)))
    for m in MENTION.finditer(text):
        add(Span("mention", m.start(), m.end(), m.group(0)))
    for m in EMOJI_RUN.finditer(text):
        add(Span("emoji", m.start(), m.end(), m.group(0)))
    found.sort(key=lambda s: s.start)
    return found


_TAG = r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|</?[A-Za-z_][\w:.-]*(?:\s(?:[^<>\"']|\"[^\"]*\"|'[^']*')*)?/?>"
_ENTITY = r"&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);"


@lru_cache(maxsize=256)
def tag_pattern(ignore: tuple[str, ...] = (), case_sensitive: bool = True) -> regex.Pattern[str]:
    """HTML/XML markup as protected spans: tags, comments, CDATA and character entities, and every element
    named in `ignore` whole (its content is not translated), when it opens and closes on one line. HTML tag
    names are matched case-insensitively (`case_sensitive=False`), XML's exactly."""
    whole = [rf"<{regex.escape(name)}(?:\s[^<>]*)?>.*?</{regex.escape(name)}\s*>" for name in ignore]
    flags = regex.DOTALL | (0 if case_sensitive else regex.IGNORECASE)
    return regex.compile("|".join([*whole, _TAG, _ENTITY]), flags)


def with_tags(profile: PlatformProfile, ignore: tuple[str, ...] = (), case_sensitive: bool = True) -> PlatformProfile:
    """`profile` for HTML/XML text: its markup tags are protected spans, so a line's text between them is
    translated as one segment with the tags as markers (⟨n⟩), kept in place; `ignore`d elements stay verbatim."""
    return replace(profile, protect=(*profile.protect, tag_pattern(tuple(ignore), case_sensitive)))


@dataclass
class Core:
    """The translatable middle of a line, with inner spans replaced by markers ⟨1⟩…⟨n⟩."""

    text: str  # original text of the core
    masked: str
    spans: list[Span]  # spans[i] is marker i+1


@dataclass
class LinePlan:
    """A line as pieces: literal strings, markup spans and at most one core, in order."""

    pieces: list[str | Span | Core] = field(default_factory=list)

    @property
    def core(self) -> Core | None:
        return next((p for p in self.pieces if isinstance(p, Core)), None)


def has_letters(text: str) -> bool:
    return bool(_HAS_LETTER.search(text))


def plan_line(line: str, profile: PlatformProfile) -> LinePlan:
    spans = find_spans(line, profile)
    # Tokens alternate gaps (plain text) and spans.
    tokens: list[str | Span] = []
    pos = 0
    for span in spans:
        if span.start > pos:
            tokens.append(line[pos : span.start])
        tokens.append(span)
        pos = span.end
    if pos < len(line):
        tokens.append(line[pos:])

    def peelable(tok: str | Span) -> bool:
        return isinstance(tok, Span) or not tok.strip()

    first = 0
    while first < len(tokens) and peelable(tokens[first]):
        first += 1
    last = len(tokens)
    while last > first and peelable(tokens[last - 1]):
        last -= 1

    plan = LinePlan()
    plan.pieces.extend(tokens[:first])
    if first < last:
        middle = list(tokens[first:last])
        # Whitespace at the core's edges stays outside it: the model's output is stripped.
        head, tail = middle[0], middle[-1]
        assert isinstance(head, str) and isinstance(tail, str)
        lead = head[: len(head) - len(head.lstrip())]
        if lead:
            plan.pieces.append(lead)
            middle[0] = head.lstrip()
        tail = middle[-1]
        assert isinstance(tail, str)
        trail = tail[len(tail.rstrip()) :]
        if trail:
            middle[-1] = tail.rstrip()
        core_text = "".join(t if isinstance(t, str) else t.text for t in middle)
        if has_letters("".join(t for t in middle if isinstance(t, str))):
            inner = [t for t in middle if isinstance(t, Span)]
            masked = "".join(t if isinstance(t, str) else marker(inner.index(t) + 1) for t in middle)
            plan.pieces.append(Core(core_text, masked, inner))
        else:
            plan.pieces.extend(middle)
        if trail:
            plan.pieces.append(trail)
    plan.pieces.extend(tokens[last:])
    return plan


def split_lines(text: str) -> list[str]:
    """Split on newlines, keeping every line (empty ones too) so ``"\\n".join`` restores the layout."""
    return text.split("\n")


def split_emoji(text: str) -> tuple[str, str, str]:
    """(leading emoji, text without emoji, other emoji) — markup terms are translated without their emoji,
    which then go back where they were at the edges (inner ones at the end)."""
    runs = list(EMOJI_RUN.finditer(text))
    if not runs:
        return "", text, ""
    lead = runs[0].group(0) if runs[0].start() == 0 else ""
    rest = "".join(m.group(0) for m in runs[1 if lead else 0 :])
    return lead, EMOJI_RUN.sub("", text).strip(), rest


def restore_markers(translated: str, spans: list[Span], rendered: list[str]) -> tuple[str, list[int]]:
    """Put `rendered[i]` where marker i+1 is; return the text and the marker numbers that were missing.

    Tolerates the variants small models produce (``<1>``, ``〈 1 〉``); a marker seen twice is kept once.
    """
    seen: set[int] = set()

    def put(m: regex.Match[str]) -> str:
        n = int(m.group(1))
        if 1 <= n <= len(spans) and n not in seen:
            seen.add(n)
            return rendered[n - 1]
        return "" if 1 <= n <= len(spans) else m.group(0)

    text = MARKER.sub(put, translated)
    missing = [n for n in range(1, len(spans) + 1) if n not in seen]
    return text, missing


class AlignmentError(ValueError):
    """A text cannot be put in a segment's marker form without guessing (the reason is the message)."""


_EMOJI_UNIT = regex.compile(_EMOJI_ONE)


def _units(span: Span) -> list[int]:
    """Offsets inside a found span where a protected span of the post may start or end: every emoji's edge in
    an emoji run (adjacent emoji form one run), else only the span's own edges."""
    if span.kind != "emoji":
        return [span.start, span.end]
    edges = {span.start, span.end}
    for m in _EMOJI_UNIT.finditer(span.text):
        edges.update((span.start + m.start(), span.start + m.end()))
    return sorted(edges)


def mask_like(line: LinePlan, target: str, profile: PlatformProfile) -> str:
    """`target` — a translation of the line `line` was planned from — in the form the model writes for the
    line's core: the pieces the translator copies around the core (edge spans, whitespace) taken off, and each
    span of the core replaced by its marker ``⟨i⟩``.

    This is the inverse of what the translator does with a model's answer (`restore_markers`, then the edge
    pieces put back), using the same span finder: protected spans must appear byte for byte, markup spans as
    markup of the same rule. Anything else raises `AlignmentError` saying what is missing: never a guess."""
    core = line.core
    if core is None:
        raise AlignmentError("the line has nothing the translator sends to the model")
    at = line.pieces.index(core)
    found = find_spans(target, profile)
    start, end = 0, len(target)

    def skip_space_forward(pos: int) -> int:
        while pos < end and target[pos].isspace():
            pos += 1
        return pos

    def skip_space_back(pos: int) -> int:
        while pos > start and target[pos - 1].isspace():
            pos -= 1
        return pos

    def edge(piece: str | Span | Core, pos: int, forward: bool) -> int:
        pos = skip_space_forward(pos) if forward else skip_space_back(pos)
        if isinstance(piece, str):
            if piece.strip():  # text copied as written (already in the target language)
                if forward and target.startswith(piece.strip(), pos):
                    return pos + len(piece.strip())
                if not forward and target[:pos].endswith(piece.strip()):
                    return pos - len(piece.strip())
                raise AlignmentError(f"{piece.strip()!r}, copied from the post, is not at the line's edge")
            return pos
        assert isinstance(piece, Span)
        if piece.rule is None:
            if forward and target.startswith(piece.text, pos):
                return pos + len(piece.text)
            if not forward and target[:pos].endswith(piece.text):
                return pos - len(piece.text)
            where = "start" if forward else "end"
            raise AlignmentError(f"the line does not {where} with {piece.text!r} as the post's line does")
        for span in found:
            if span.rule is not None and span.rule.name == piece.rule.name:
                if forward and span.start == pos:
                    return span.end
                if not forward and span.end == pos:
                    return span.start
        raise AlignmentError(f"no {piece.rule.kind} at the line's edge where the post has {piece.text!r}")

    for piece in line.pieces[:at]:
        start = edge(piece, start, True)
    for piece in reversed(line.pieces[at + 1 :]):
        end = edge(piece, end, False)
    start, end = skip_space_forward(start), skip_space_back(end)
    if start >= end:
        raise AlignmentError("the line's text is empty")
    inner = [s for s in found if s.start >= start and s.end <= end]
    claimed: list[tuple[int, int, int]] = []  # (start, end, marker number)

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in claimed)

    for number, span in enumerate(core.spans, start=1):
        place: tuple[int, int] | None = None
        for cand in inner:
            if span.rule is not None:
                if cand.rule is not None and cand.rule.name == span.rule.name and free(cand.start, cand.end):
                    place = (cand.start, cand.end)
                    break
                continue
            if cand.kind != span.kind:
                continue
            edges = _units(cand)
            for a in edges:
                b = a + len(span.text)
                if b in edges and target[a:b] == span.text and free(a, b):
                    place = (a, b)
                    break
            if place:
                break
        if place is None:
            raise AlignmentError(f"{span.text!r} (marker {marker(number)}) is not in the line")
        claimed.append((*place, number))
    out, pos = [], start
    for a, b, number in sorted(claimed):
        out += [target[pos:a], marker(number)]
        pos = b
    out.append(target[pos:end])
    return "".join(out)

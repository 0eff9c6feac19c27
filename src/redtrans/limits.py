"""Per-item limits and the row-level input check: the same for every stage and for `redtrans serve`.

The bad-input contract (docs/design.md, "Bad input") has three levels. This module owns the middle one, one
row: a text that cannot be translated as given fails *that row*, with a stable reason, while the others are
processed; the command then exits 1 with the count (or 2 before any work with ``--strict``):

| reason | what is wrong with the text |
|---|---|
| ``empty`` | missing, null, or nothing but whitespace |
| ``invalid_text`` | not a string (its type is named), a lone UTF-16 surrogate (half an emoji cut off), a NUL |
| ``too_long`` | more than `MAX_TEXT_CHARS` characters, or more than `MAX_SEGMENTS_PER_ITEM` segments |

Serve answers the same cases with its route's 4xx; its `max_text_chars` / `max_segments_per_item` settings
default to the limits here, and `count_calls` is how both count segments (lines with text to translate, as
the translator splits a post).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import regex

from redtrans.text.profiles import PlatformProfile
from redtrans.text.spans import Core, Span, plan_line, split_emoji, split_lines

MAX_TEXT_CHARS = 5_000
"""Longest text of one item, in characters (a long social post is ~2,000)."""
MAX_SEGMENTS_PER_ITEM = 200
"""Most segments (lines with text to translate) in one item; each is at least one model call."""

Reason = Literal["empty", "invalid_text", "too_long"]
ROW_REASONS: frozenset[str] = frozenset({"empty", "invalid_text", "too_long"})
"""Reasons of a row that failed on its input: redoing it cannot help until the input changes."""

_SURROGATE = regex.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class RowProblem:
    """Why one row's text cannot be translated: a stable `reason` and a message for people."""

    reason: Reason
    message: str


def count_calls(text: str, profile: PlatformProfile, mode: str, limit: int) -> tuple[int, int]:
    """(segments, model calls) the translator plans for `text`, with its own line planning; counting stops
    once the segments pass `limit`. A segment is a line with text to translate; markup terms add a call each."""
    if mode == "plain":
        return 1, 1
    segments = 0
    terms: set[tuple[str, str]] = set()
    for raw in split_lines(text):
        plan = plan_line(raw, profile)
        if plan.core is not None:
            segments += 1
            if segments > limit:
                break
        for piece in plan.pieces:
            spans = piece.spans if isinstance(piece, Core) else [piece] if isinstance(piece, Span) else []
            for span in spans:
                if span.rule is not None:
                    terms.add((split_emoji(span.inner)[1], span.rule.kind))
    return segments, segments + len(terms)


def check_text(
    value: Any,
    field: str = "text",
    *,
    profile: PlatformProfile | None = None,
    mode: str = "sns",
    max_chars: int = MAX_TEXT_CHARS,
    max_segments: int = MAX_SEGMENTS_PER_ITEM,
) -> RowProblem | None:
    """The problem of one row's text (`value`, the row's `field`), None when it can be translated.

    Segments are counted with `profile` (the translator's line planning) only for a text with more non-blank
    lines than `max_segments`: a line is at most one segment, so shorter texts need no planning."""
    if value is None:
        return RowProblem("empty", f"field {field!r} is missing or null")
    if not isinstance(value, str):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return RowProblem("invalid_text", f"field {field!r} holds {type(value).__name__} {shown}, not text")
    if not value.strip():
        return RowProblem("empty", f"field {field!r} is empty")
    surrogate = _SURROGATE.search(value)
    if surrogate:
        code = ord(surrogate.group())
        if 0xDC80 <= code <= 0xDCFF:  # Python's stand-in for a byte that was not UTF-8 (a command-line argument)
            return RowProblem(
                "invalid_text", f"field {field!r} is not UTF-8 text (byte 0x{code - 0xDC00:02X} at character "
                f"{surrogate.start() + 1})"
            )  # fmt: skip
        return RowProblem(
            "invalid_text",
            f"field {field!r} has a lone UTF-16 surrogate U+{code:04X} at character {surrogate.start() + 1} "
            "(half of an emoji or CJK character cut off): not valid Unicode text",
        )
    nul = value.find("\x00")
    if nul >= 0:
        return RowProblem("invalid_text", f"field {field!r} has a NUL character at character {nul + 1}")
    if len(value) > max_chars:
        return RowProblem("too_long", f"field {field!r} has {len(value):,} characters; the limit is {max_chars:,}")
    if sum(1 for line in value.split("\n") if line.strip()) > max_segments:
        segments = max_segments + 1
        if profile is not None:
            segments = count_calls(value, profile, mode, max_segments)[0]
        if segments > max_segments:
            return RowProblem(
                "too_long",
                f"field {field!r} has more than {max_segments} segments (lines with text); the limit is "
                f"{max_segments}: split it into several rows",
            )
    return None


def check_messages(messages: Any, field: str) -> RowProblem | None:
    """The first problem of a chat's texts (training rows): every turn must be valid text; a user or assistant
    turn (a post, a translation) also within the per-item limits, a system turn (the prompt) of any length."""
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            unlimited = message.get("role") == "system"
            problem = check_text(message.get("content"), f"{field} ({message.get('role')})",
                                 max_chars=2**62 if unlimited else MAX_TEXT_CHARS,
                                 max_segments=2**62 if unlimited else MAX_SEGMENTS_PER_ITEM)  # fmt: skip
            if problem is not None:
                return problem
    return None


def printable(text: str) -> str:
    """`text` safe to write as UTF-8 anywhere (JSONL, CSV, Parquet): lone surrogates become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)

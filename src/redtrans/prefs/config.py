"""Configs of the preference stages and of the annotation app (pydantic, on the one config layer).

Two thresholds, named apart:

- `tau` is on the experts' 1–5 rubric (default 3): it drives the export rules and the app's "rewrite
  required" rule (both candidates scored below `tau`);
- `tau_auto` is on chrF++ (0–100, default 40): it drives prescoring ("likely needs rewrite") and
  ``prefs export --mode reference-rewrite`` (the reference plays y_t when both candidates score below it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from redtrans.config import StageConfig
from redtrans.engines.spec import EngineSpec
from redtrans.errors import ConfigError

RUBRIC: dict[int, tuple[str, str]] = {
    5: ("Perfect", "Meaning and tone exact; slang, memes and internet expressions rendered the way native users "
        "write online; emoji, hashtags, mentions and line breaks kept."),
    4: ("Good", "Meaning and tone right; small wording or fluency issues a reader barely notices."),
    3: ("Acceptable", "Meaning right but literal or stiff in places, or slang rendered flatly; usable as is."),
    2: ("Poor", "Part of the meaning wrong or missing: mistranslated slang, a dropped line or span, broken markup."),
    1: ("Unusable", "Wrong meaning, wrong language, left untranslated, or content that is not in the post."),
}  # fmt: skip
"""The documented 1–5 rubric experts score each candidate on (shown on every item page; docs/prefs.md)."""

DEFAULT_TAU = 3.0
DEFAULT_TAU_AUTO = 40.0


class SamplingConfig(StageConfig):
    """Two samples of one system: a temperature above 0 and one seed per candidate (recorded per candidate)."""

    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature of every request; 0 = greedy (the default with two systems)."""
    seeds: list[int] = Field(default_factory=lambda: [1, 2], min_length=2, max_length=2)
    """The seed of candidate 1 and of candidate 2 (used when temperature > 0)."""


class GenerateConfig(StageConfig):
    """`redtrans prefs generate`: two candidate translations per source post, with provenance."""

    input: Path
    """Sources: JSONL rows with `text` (or `source`), optional `id`, `src`, `tgt`, `reference`; or a text file
    (one post a line, `\\n` inside a post written as a literal backslash-n) with `reference` beside it."""
    reference: Path | None = None
    """Line-aligned reference file for a text `input`."""
    output: Path
    """Candidates JSONL (appended; a re-run skips rows that succeeded and retries failed ones)."""
    systems: list[EngineSpec] = Field(min_length=1, max_length=2)
    """Two engine specs (candidate 1 and 2, e.g. base and SFT), or one sampled twice (see `sampling`)."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """Temperature and seeds; with one system, temperature must be above 0 so the two samples differ."""
    src: str | None = None
    """Source language of rows that name none (None = detected)."""
    tgt: str | None = None
    """Target language of rows that name none (None = the source's default target)."""
    limit: int | None = Field(default=None, ge=1)
    """Only the first N sources."""
    profile: str = "rednote"
    """Platform markup profile of the translator."""
    batch_size: int = Field(default=16, ge=1)
    """Sources translated (by both systems) before their rows are written: the unit of resume."""

    @model_validator(mode="after")
    def _one_system_needs_sampling(self) -> GenerateConfig:
        if len(self.systems) == 1 and self.sampling.temperature <= 0:
            raise ValueError("one system gives two candidates only when sampled: set sampling.temperature > 0")
        return self


class PrescoreConfig(StageConfig):
    """`redtrans prefs prescore`: automatic scores that order the queue and pre-fill the form."""

    input: Path
    """Candidates JSONL from `prefs generate`."""
    output: Path
    """Prescored JSONL: the candidates rows plus `auto` (appended; resumable)."""
    judge: EngineSpec | None = None
    """Engine of the LLM judge for rows without a reference (None = such rows are left unscored)."""
    tau_auto: float = Field(default=DEFAULT_TAU_AUTO, ge=0, le=100)
    """chrF++ threshold: a row whose best candidate scores below it is marked `needs_rewrite`."""
    tau: float = Field(default=DEFAULT_TAU, ge=1, le=5)
    """Rubric threshold used for judge scores (1–5): best judge score below it marks `needs_rewrite`."""
    batch_size: int = Field(default=16, ge=1)
    """Rows judged together (one engine batch of 2 × rows requests)."""
    judge_max_tokens: int = Field(default=8, ge=1)
    """Tokens the judge may answer with (a digit is enough)."""


class ExportConfig(StageConfig):
    """`redtrans prefs export`: the RePO dataset in TRL's preference format plus our fields."""

    mode: Literal["experts", "reference-rewrite"] = "experts"
    """experts = the judgments in the store; reference-rewrite = chrF++ against the reference, no experts."""
    db: str | None = None
    """Store URL or SQLite path (experts mode)."""
    input: Path | None = None
    """Candidates or prescored JSONL (reference-rewrite mode)."""
    output: Path
    """Preference JSONL (rewritten whole on each export); `<output>.stats.json` beside it."""
    tau: float = Field(default=DEFAULT_TAU, ge=1, le=5)
    """Rubric threshold: max(s1, s2) ≥ tau with s1 ≠ s2 gives a pair; both below with a rewrite gives two."""
    tau_auto: float = Field(default=DEFAULT_TAU_AUTO, ge=0, le=100)
    """chrF++ threshold of reference-rewrite mode."""
    min_annotators: int | None = Field(default=None, ge=1)
    """Judgments (not skipped, not rejected, not accepted-only) an item needs to be exported; None = the item's
    k (the number of experts it was queued for). Items with fewer are left out and counted."""
    include_accepted: bool = False
    """Count judgments whose every score is an accepted suggestion (left out and counted by default)."""
    profile: str = Field(default_factory=lambda: _translator_default("profile"))
    """Platform markup profile of the translator the trained model will be served with (its prompts are the
    rows' prompts)."""
    termbases: list[str] = Field(default_factory=lambda: list(_translator_default("termbases")))
    """Term bases of that translator (hints in the prompts); default: the translator's default."""
    max_hints: int = Field(default_factory=lambda: _translator_default("max_hints"), ge=0)
    """Term-base hints per segment of that translator."""
    examples: str | None = Field(default_factory=lambda: _translator_default("examples"))
    """Translation memory of that translator (in-context examples); default: the translator's default."""
    shots: int = Field(default_factory=lambda: _translator_default("shots"), ge=0)
    """In-context examples per segment of that translator."""

    @model_validator(mode="after")
    def _source(self) -> ExportConfig:
        if self.mode == "experts" and not self.db:
            raise ValueError("experts mode reads the store: give --db")
        if self.mode == "reference-rewrite" and self.input is None:
            raise ValueError("reference-rewrite mode reads a candidates file: give --input")
        return self


def _translator_default(name: str) -> Any:
    from redtrans.translator import TranslatorConfig

    return getattr(TranslatorConfig(), name)


class AnnotateConfig(StageConfig):
    """`redtrans annotate serve`: the expert web app."""

    db: str = "runs/annotate/annotate.db"
    """Store URL (sqlite:///…, postgresql://user@host/db) or a SQLite file path."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(default=8400, ge=0, le=65535)
    """Port to listen on."""
    tau: float = Field(default=DEFAULT_TAU, ge=1, le=5)
    """Rubric threshold: when both candidates are scored below it, a rewrite is required."""
    lease_s: float = Field(default=1800.0, gt=0)
    """How long a handed-out item stays reserved for its expert before it returns to the queue."""
    session_hours: float = Field(default=12.0, gt=0)
    """Lifetime of a login session."""
    secure_cookies: bool = False
    """Mark cookies Secure (only sent over HTTPS): set it when served behind TLS."""
    login_attempts: int = Field(default=5, ge=1)
    """Failed logins allowed for one account from one client address within `login_window_s` before backoff
    (the throttle is per account and address: never a lockout of the account, or of everyone at an address;
    in memory, like serve's wrong-key throttle: `webguard.FailureThrottle`)."""
    login_window_s: float = Field(default=300.0, gt=0)
    """Window in which failed logins are counted."""
    login_backoff_s: float = Field(default=2.0, gt=0)
    """After `login_attempts` failures, the next try waits this long after the last failure, doubling with each
    further failure (at most `login_window_s`)."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses (or CIDR networks) of reverse proxies whose `X-Forwarded-For` names the client (for the login
    throttle and the audit trail); from anyone else the header is ignored. Empty = never trusted."""
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1", "[::1]"])
    """`Host:` header values the app answers (a guard against DNS rebinding); others get 421. The address in
    `host` is always answered when it is a specific one; add the name the experts use when serving on all
    interfaces or behind a proxy; `*` allows any."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A request's line and headers must arrive within this long of the connection opening (or of the first
    byte of a request on a kept-alive connection); else the connection gets 408 and is closed (slow loris).
    The same bound as `redtrans serve`'s."""
    max_connections: int = Field(default=1000, ge=1)
    """Open HTTP connections at most; beyond it a new connection gets 503 and is closed."""
    max_connections_per_client: int = Field(default=100, ge=1)
    """Open HTTP connections of one client address at most (`trusted_proxies` are not capped); beyond it that
    client's new connection gets 503, so one client's idle connections cannot take the whole of
    `max_connections` from the others. The same setting and default as `redtrans serve`'s."""
    prefill: bool = True
    """Show the automatic scores (prescore) as suggestions beside each candidate: a labelled hint with its source
    that one key (`a`) accepts. Nothing is pre-selected; an accepted score is recorded as accepted."""
    shuffle: bool = True
    """Show the two candidates in an order drawn per item and expert (recorded, mapped back on submit)."""
    max_rewrite_chars: int = Field(default=20_000, ge=100)
    """Longest rewrite (and note) accepted; a longer one is refused with the text kept in the form."""
    title: str = "redtrans annotate"
    """Shown in the page header."""

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty store URL")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from redtrans.webguard import ClientAddress

        ClientAddress(value)  # serve's parsing: a ValueError names the bad entry
        return value


def check_k(k: int) -> int:
    if k < 1:
        raise ConfigError(f"k (experts per item) must be at least 1, got {k}")
    return k

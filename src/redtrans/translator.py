"""The translation pipeline: segment → protect → prompt → engine → check/retry → restore → result.

Items stream in and results stream out in the same order. Work is done in windows of items so that all
segments of a window (lines of posts, markup terms) go to the engine as one batch and fill its parallel
slots; retries of a window form a second batch.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import regex

from redtrans import prompts
from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.errors import InputError
from redtrans.jsonl import ENGINE_FAILED, NO_TRANSLATION, UNAVAILABLE
from redtrans.languages import LANGUAGES, chinese_script, default_target, get_language, to_chinese_script
from redtrans.text import checks
from redtrans.text.langid import detect_language, script_counts, script_of, segment_language, writes
from redtrans.text.profiles import PlatformProfile, load_profile
from redtrans.text.spans import (
    MARKER,
    AlignmentError,
    Core,
    LinePlan,
    Span,
    has_letters,
    mask_like,
    plan_line,
    restore_markers,
    split_emoji,
    split_lines,
)
from redtrans.text.termbase import builtin_termbase

ENGINE_ERROR = checks.ENGINE_ERROR
UNTRANSLATED_MARKUP = "untranslated_markup"


@dataclass
class Item:
    """One text to translate. `src` None = detect it; `tgt` None = `languages.default_target` of the source."""

    id: str
    text: str
    tgt: str | None
    src: str | None = None
    script_tag: str | None = None
    """The target tag as given when it names a Chinese script (``zh-Hant``, ``zh-TW``, ``zh-Hans``): `tgt` is
    normalised to ``zh`` for prompts and checks, and the finished translation is converted to that script."""

    @property
    def target(self) -> str:
        """`tgt`, which `Translator.resolve_languages` has set for every item the pipeline works on."""
        assert self.tgt is not None, "tgt is set by Translator.resolve_languages"
        return self.tgt

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise InputError("text is empty")
        if self.tgt is not None:
            if self.script_tag is None and chinese_script(self.tgt):
                self.script_tag = self.tgt
            self.tgt = get_language(self.tgt).code
        if self.src is not None:
            self.src = get_language(self.src).code


@dataclass
class Result:
    """A translated item. `status` is "failed" when there is no usable translation (an engine error, an empty
    answer, an echo of the source or a refusal survived the retry, on any line): `error` says what, and such a
    result is never saved as done. `flags` name quality problems of a usable ("ok") translation too.
    `retried_for` names the checks that failed on a first answer and caused the retry (the `retried` flag), so an
    audit can count, say, refusals the check caught even when the retry fixed them."""

    id: str
    text: str
    translation: str
    src: str
    tgt: str
    flags: list[str] = field(default_factory=list)
    model: str = ""
    prompt_version: str = prompts.PROMPT_VERSION
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    retried_for: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    """Model tokens this item cost, as the engine reported them (0 where it does not); for serve's `usage`,
    not written to rows."""
    completion_tokens: int = 0
    copied: list[int] = field(default_factory=list)
    """Line numbers (from 1) whose text was copied as it is, being already in the target language."""
    reason: str | None = None
    """Why a failed result failed, a stable code (`redtrans.jsonl`): ``engine_unavailable`` (only transient
    engine errors: a re-run retries it without counting the attempt), ``engine_error`` (a permanent one) or
    ``no_translation`` (the answers failed their checks)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["prompt_tokens"], data["completion_tokens"]
        for key in ("error", "reason", "retried_for", "copied"):
            if not data[key]:
                del data[key]
        return data


DEFAULT_TERMBASES: tuple[str, ...] = ()
"""The term bases every entry point (translate, bench's `default`, serve, sample) uses unless told otherwise.
Issue 29's rule turns the shipped base on (``("builtin",)``) when it raises slang accuracy on the slang dev set by
≥ 15 points in each direction and the low end of the 95% paired-bootstrap interval of the chrF++ difference on
RedTrans-Bench's 600-item sample is ≥ −0.5 in each direction (docs/quality.md); flipping it changes what the
model is sent, so `prompts.PROMPT_VERSION` moves with it. Posts without a hint are byte-identical either way."""


@dataclass
class TranslatorConfig:
    """How the pipeline treats SNS text."""

    profile: str = "rednote"
    """Platform markup profile: a built-in name (rednote, generic) or a YAML path."""
    mode: Literal["sns", "plain"] = "sns"
    """sns = the full pipeline; plain = the whole post in one plain prompt, no handling (a baseline)."""
    batch_size: int = 0
    """Items per window sent to the engine together; 0 = 4 × the engine's parallelism."""
    retry: bool = True
    """Retry a segment once when a check fails: under a grammar without the source's script when source text
    leaked into the answer (engines that support grammars), else with a stricter prompt."""
    languages: list[str] | None = None
    """Candidate source languages for detection; None = every language in the table."""
    max_tokens: int = 1024
    """Upper bound of generated tokens for one segment."""
    termbases: list[str] = field(default_factory=lambda: list(DEFAULT_TERMBASES))
    """Slang/meme term bases whose entries found in a segment become prompt hints, merged in order (the
    user's first; ``builtin`` = the shipped base); [] = no hints. Default: `DEFAULT_TERMBASES`."""
    max_hints: int = 4
    """At most this many term-base hints per segment."""
    examples: str | None = None
    """Translation memory for retrieved in-context examples: ``builtin``, a JSONL path, or None."""
    shots: int = 2
    """In-context examples per segment (with `examples`)."""
    candidates: int = 0
    """Quality-aware decoding: sample this many candidates besides the greedy one and keep the MBR choice
    (chrF utility); 0 = off."""
    candidate_temperature: float = 0.7
    """Sampling temperature of the candidates."""
    seed: int = 0
    """First sampling seed of the candidates (seed, seed+1, …)."""

    def prompt_settings(self) -> prompts.PromptSettings:
        """The prompt settings this config stands for (recorded with SFT data built the same way)."""
        return prompts.PromptSettings(tuple(self.termbases), self.max_hints, self.examples, self.shots)


@dataclass
class _Segment:
    item: int
    core: Core
    src: str
    tgt: str
    output: str = ""
    flags: list[str] = field(default_factory=list)
    first_flags: list[str] = field(default_factory=list)  # the failed checks that caused the retry
    error: str | None = None  # the engine's error text, when it gave no answer
    tokens: tuple[int, int] = (0, 0)  # (prompt, completion) tokens of its calls, first and retry
    transient: bool = False  # that error was the engine being unavailable (GenResult.transient)


@dataclass
class _Plan:
    item: Item
    src: str  # the post's source language (given or detected): the fallback of its segments
    lines: list[LinePlan] | None  # None: copy the text unchanged (nothing in it to translate)
    sources: list[str | None] = field(default_factory=list)  # per line: its core's source language, None = none/copied
    copied: list[int] = field(default_factory=list)  # line numbers (from 1) whose core is copied as it is


def is_acronym(term: str) -> bool:
    """An all-caps tag or acronym (``ICE``, ``OOTD``, ``NBA2K``): kept as written in every language."""
    return sum(c.isupper() for c in term) >= 2 and not any(c.islower() for c in term)


@dataclass
class TrainingSegment:
    """One segment of a text as the translator sends it to the model: what a training row for it holds."""

    number: int
    """1-based, in the order of the text."""
    line: int
    """Index of the line (`split_lines`) whose core the segment is."""
    masked: str
    """The core with its inner spans as markers ``⟨1⟩``…"""
    spans: list[Span]
    src: str
    tgt: str
    messages: list[dict[str, str]]
    """The chat messages of the segment's first request (what a model trained on the row is served)."""


@dataclass
class TrainingPlan:
    """`Translator.training_segments`: a text's segments and its line structure, to align outputs with."""

    item: Item
    src: str
    lines: list[LinePlan] | None
    """The planned lines; None when nothing is sent to the model (the text is copied)."""
    segments: list[TrainingSegment]
    profile: PlatformProfile

    def align(self, text: str) -> list[str]:
        """`text` (a translation of the whole item: a candidate, a rewrite, a reference) cut into the segments'
        model outputs, each in its marker form (`spans.mask_like`), in segment order. Lines are matched by
        position, as the translator assembles them; `AlignmentError` names the first thing that does not fit."""
        if self.lines is None or not self.segments:
            raise AlignmentError("the translator sends nothing of this text to a model")
        lines = split_lines(text)
        if len(lines) != len(self.lines):
            raise AlignmentError(f"{len(self.lines)} lines in the post, {len(lines)} in the translation")
        out = []
        for segment in self.segments:
            try:
                out.append(mask_like(self.lines[segment.line], lines[segment.line], self.profile))
            except AlignmentError as exc:
                where = f"line {segment.line + 1}: " if len(self.lines) > 1 else ""
                raise AlignmentError(where + str(exc)) from None
        return out


class _PlanningEngine(Engine):
    """A chat engine that plans only (`Translator.for_planning`): asked to generate, it refuses."""

    name = model = "planning"

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        raise RuntimeError("a planning translator sends no requests")


def _paid(
    index: int, needed_by: dict[tuple[str, str, str, str], set[int]], term_tokens: dict[Any, tuple[int, int]]
) -> tuple[int, int]:
    """The tokens of the markup terms item `index` is the first to need (a shared term is paid once)."""
    keys = [key for key, users in needed_by.items() if min(users) == index and key in term_tokens]
    return sum(term_tokens[k][0] for k in keys), sum(term_tokens[k][1] for k in keys)


def _failure_reason(segment: _Segment) -> str:
    if segment.error is None:
        return NO_TRANSLATION
    return UNAVAILABLE if segment.transient else ENGINE_FAILED


def _wants_retry(segment: _Segment) -> bool:
    """A check failed on a real answer. An engine error is not retried here: the engine has its own retries,
    bounded by the request's deadline, and a second round would only double the wait on a failing upstream."""
    return bool(segment.flags) and ENGINE_ERROR not in segment.flags


class Translator:
    def __init__(self, engine: Engine, config: TranslatorConfig | None = None) -> None:
        self.engine = engine
        self.config = config or TranslatorConfig()
        self.profile: PlatformProfile = load_profile(self.config.profile)
        self.prompts = prompts.PromptBuilder(self.config.prompt_settings())
        if self.config.candidates > 0 and self.config.mode == "sns":
            from redtrans.mbr import CandidateEngine

            self.engine = CandidateEngine(
                engine, self.config.candidates, self.config.candidate_temperature, self.config.seed
            )
        self.engine_seconds = 0.0  # wall time spent inside engine.generate, for overhead accounting
        self._kept_words: dict[tuple[str, str], frozenset[str]] = {}

    @classmethod
    def for_planning(cls, config: TranslatorConfig | None = None) -> Translator:
        """A translator without a model, for `training_segments` (training rows are built from its plans)."""
        return cls(_PlanningEngine(), config)

    @property
    def model(self) -> str:
        return self.engine.model

    # -- public API -----------------------------------------------------------------------------------
    def translate(self, items: Iterable[Item]) -> Iterator[Result]:
        size = self.config.batch_size or 4 * self.engine.parallelism
        iterator = map(self.resolve_languages, items)
        while window := list(itertools.islice(iterator, size)):
            yield from self._window(window)

    def translate_text(self, text: str, tgt: str | None = None, src: str | None = None) -> Result:
        return next(self.translate([Item("0", text, tgt, src)]))

    def detect(self, text: str, tgt: str) -> str:
        """The source language of `text`; the target itself when nothing in it is translatable."""
        return detect_language(text, self.config.languages or list(LANGUAGES)) or tgt

    def resolve_languages(self, item: Item) -> Item:
        """`item` with `src` detected when absent and `tgt` = the source's default target when absent."""
        if item.src is not None and item.tgt is not None:
            return item
        detected = item.src or detect_language(item.text, self.config.languages or list(LANGUAGES))
        tgt = item.tgt or default_target(detected)
        return Item(item.id, item.text, tgt, detected or tgt, item.script_tag)

    # -- internals ------------------------------------------------------------------------------------
    def _generate(self, requests: list[GenRequest]) -> list[GenResult]:
        if not requests:
            return []
        started = time.perf_counter()
        try:
            return self.engine.generate(requests)
        finally:
            self.engine_seconds += time.perf_counter() - started

    def _request(self, text: str, src: str, tgt: str, strict: bool = False) -> GenRequest:
        max_tokens = min(self.config.max_tokens, 32 + 2 * len(text))
        if self.engine.chat:
            return GenRequest(messages=self.prompts.messages(text, src, tgt, strict), max_tokens=max_tokens)
        return GenRequest(
            prompt=self.prompts.completion_prompt(text, src, tgt),
            max_tokens=max_tokens,
            stop=prompts.COMPLETION_STOP,
        )

    def _retry_request(self, segment: _Segment) -> GenRequest:
        """The one retry of a segment whose answer failed a check. Source text leaked into the answer (or
        echoed) is fixed by asking again with the same prompt while ruling out the source's script; every
        other failure gets the stricter prompt."""
        leaked = checks.WRONG_LANGUAGE in segment.flags or checks.ECHO in segment.flags
        grammar = checks.source_script_grammar(segment.src, segment.tgt) if self.engine.supports_grammar else None
        if leaked and grammar:
            request = self._request(segment.core.masked, segment.src, segment.tgt)
            request.grammar = grammar
            return request
        return self._request(segment.core.masked, segment.src, segment.tgt, strict=True)

    def _term_request(self, term: str, kind: str, src: str, tgt: str) -> GenRequest:
        if self.engine.chat:
            return GenRequest(messages=self.prompts.term_messages(term, kind, src, tgt), max_tokens=24)
        return GenRequest(prompt=prompts.completion_prompt(term, src, tgt), max_tokens=24, stop=prompts.COMPLETION_STOP)

    def _window(self, items: list[Item]) -> Iterator[Result]:
        """The window's results in order, each as soon as it and those before it are done: with a slot engine
        (`supports_submit`) an item is assembled the moment its last segment or term is in, so a caller that
        streams (serve's SSE) sends it while the rest of the window is still being generated."""
        if self.config.mode == "plain":
            yield from self._plain_window(items)
            return
        plans = [self._plan(item) for item in items]
        segments, needed_by = self._work(plans)
        terms: dict[tuple[str, str, str, str], str | None] = dict.fromkeys(needed_by)
        term_tokens: dict[tuple[str, str, str, str], tuple[int, int]] = {}
        by_item: dict[int, list[_Segment]] = {}
        for segment in segments:
            by_item.setdefault(segment.item, []).append(segment)
        waiting = [len(by_item.get(i, [])) for i in range(len(plans))]  # segments and terms not in yet
        for users in needed_by.values():
            for index in users:
                waiting[index] += 1
        term_keys = list(terms)
        # Base models get the same few-shot prompt on a retry, so only chat engines are retried.
        retry = self.config.retry and self.engine.chat
        ready = 0  # results before this index are yielded
        if self.engine.supports_submit:
            for done in self._run_streaming(segments, term_keys, terms, retry, term_tokens):
                for index in [done.item] if isinstance(done, _Segment) else needed_by[done]:
                    waiting[index] -= 1
                while ready < len(plans) and waiting[ready] == 0:
                    paid = _paid(ready, needed_by, term_tokens)
                    yield self._assemble(plans[ready], by_item.get(ready, []), terms, paid)
                    ready += 1
        else:
            self._run_batched(segments, term_keys, terms, retry, term_tokens)
        for index in range(ready, len(plans)):
            yield self._assemble(plans[index], by_item.get(index, []), terms, _paid(index, needed_by, term_tokens))

    def _work(self, plans: list[_Plan]) -> tuple[list[_Segment], dict[tuple[str, str, str, str], set[int]]]:
        """The segments to translate in `plans` and the markup terms to translate, each with the plans (by index)
        whose spans need it, in order of appearance."""
        segments: list[_Segment] = []
        needed_by: dict[tuple[str, str, str, str], set[int]] = {}
        for index, plan in enumerate(plans):
            tgt = plan.item.target
            for line, line_src in zip(plan.lines or [], plan.sources, strict=True):
                for piece in line.pieces:
                    if isinstance(piece, Core):
                        assert line_src is not None, "a line keeps its Core only when it is translated"
                        segments.append(_Segment(index, piece, line_src, tgt))
                    spans = piece.spans if isinstance(piece, Core) else [piece] if isinstance(piece, Span) else []
                    for span in spans:
                        if span.rule is None:
                            continue
                        term = split_emoji(span.inner)[1]
                        term_src = self._term_source(term, line_src or plan.src, tgt)
                        if term_src is not None:
                            needed_by.setdefault((term, span.rule.kind, term_src, tgt), set()).add(index)
        return segments, needed_by

    def requests_for(self, item: Item) -> list[GenRequest]:
        """Every request the pipeline may send for `item`: each segment's first request and its strict retry,
        then one per markup term (a retry under a grammar is the first request plus a grammar of the languages).

        On a deterministic engine (`Engine.deterministic`: what a request's numbers go through depends on the
        request alone) an item's result is a function of these requests alone, so two configurations that give
        an item equal lists give it the same result: `redtrans bench` reuses a baseline's row on that ground."""
        item = self.resolve_languages(item)
        if self.config.mode == "plain":
            return [self._plain_request(item, item.src or self.detect(item.text, item.target))]
        segments, needed_by = self._work([self._plan(item)])
        requests: list[GenRequest] = []
        for segment in segments:
            requests.append(self._request(segment.core.masked, segment.src, segment.tgt))
            requests.append(self._request(segment.core.masked, segment.src, segment.tgt, strict=True))
        return requests + [self._term_request(*key) for key in needed_by]

    def training_settings(self) -> dict[str, Any]:
        """What the prompts of `training_segments` depend on besides the text, for a training row to record:
        `prompt_version`, the profile, and digests (`resume.digest`) of the term base's entries and of the
        translation memory's file (None without one)."""
        from redtrans.resume import digest

        termbase = self.prompts.termbase
        entries = None
        if termbase is not None:
            entries = [{k: v for k, v in asdict(e).items() if k != "origin"} for e in termbase.entries]
        examples = self.config.examples
        memory = None
        if examples:
            from importlib import resources

            path = Path(examples).expanduser()
            if examples == "builtin":
                data = resources.files("redtrans.text").joinpath("termbase/tm-sns.jsonl").read_bytes()
            else:
                data = path.read_bytes() if path.is_file() else examples.encode()
            memory = hashlib.blake2b(data, digest_size=16).hexdigest()
        return {
            "prompt_version": prompts.PROMPT_VERSION,
            "profile": self.profile.name,
            "termbase": digest(entries) if entries is not None else None,
            "examples": memory,
            "shots": self.config.shots if examples else 0,
            "max_hints": self.config.max_hints if termbase else 0,
        }

    def training_segments(self, item: Item) -> TrainingPlan:
        """The segments the pipeline sends for `item`, each with the chat messages of its first request, and the
        line structure that `TrainingPlan.align` cuts a whole translation by. Every training row redtrans writes
        (SFT, preference pairs) is built from this, so a model is trained on exactly the prompts it is served:
        one per segment, edge spans peeled off, inner spans as markers, term-base hints and examples included."""
        if self.config.mode != "sns":
            raise ValueError("training rows follow the sns pipeline (mode: sns)")
        if not self.engine.chat:
            raise ValueError("training rows are chat messages: plan with a chat engine (Translator.for_planning)")
        item = self.resolve_languages(item)
        plan = self._plan(item)
        work, _terms = self._work([plan])
        line_of = {id(piece): n for n, line in enumerate(plan.lines or []) for piece in line.pieces}
        segments = []
        for number, segment in enumerate(work, start=1):
            request = self._request(segment.core.masked, segment.src, segment.tgt)
            assert request.messages is not None
            segments.append(TrainingSegment(number, line_of[id(segment.core)], segment.core.masked,
                                            list(segment.core.spans), segment.src, segment.tgt,
                                            request.messages))  # fmt: skip
        return TrainingPlan(item, plan.src, plan.lines, segments, self.profile)

    def _run_batched(
        self, segments: list[_Segment], term_keys: list, terms: dict, retry: bool, term_tokens: dict | None = None
    ) -> None:
        """One batch for the window's segments and terms, then one batch of retries."""
        requests = [self._request(s.core.masked, s.src, s.tgt) for s in segments]
        requests += [self._term_request(*key) for key in term_keys]
        outputs = self._generate(requests)
        for segment, out in zip(segments, outputs, strict=False):
            self._accept(segment, out)
        for key, out in zip(term_keys, outputs[len(segments) :], strict=True):
            terms[key] = self._clean_term(out, key[2], key[3])
            if term_tokens is not None:
                term_tokens[key] = (out.prompt_tokens, out.completion_tokens)
        if retry:
            failed = [s for s in segments if _wants_retry(s)]
            retry_outputs = self._generate([self._retry_request(s) for s in failed])
            for segment, out in zip(failed, retry_outputs, strict=True):
                self._settle_retry(segment, out, segment.output, segment.flags)

    def _run_streaming(
        self, segments: list[_Segment], term_keys: list, terms: dict, retry: bool, term_tokens: dict | None = None
    ) -> Iterator[_Segment | tuple[str, str, str, str]]:
        """Each request goes to a slot on its own. An answer is checked the moment it arrives, on the engine's
        thread (a done-callback), so a failing segment's retry is queued before that thread takes its next
        request: the retry lands on the slot that still holds its prompt and overlaps the rest of the window.
        Yields each segment (retry settled) and each term key as it is done, on the calling thread."""
        started = time.perf_counter()
        # One entry per segment/term: what is done, or the exception to re-raise here.
        finished: queue.SimpleQueue[_Segment | tuple[str, str, str, str] | BaseException] = queue.SimpleQueue()
        futures: list[Future[GenResult]] = []
        paused = False  # suspended at a yield: the clock is stopped

        def when_done(
            future: Future[GenResult], handle: Callable[[GenResult], bool], done: _Segment | tuple[str, str, str, str]
        ) -> None:
            try:
                complete = handle(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                finished.put(exc)
            else:
                if complete:
                    finished.put(done)

        def send(
            request: GenRequest,
            handle: Callable[[GenResult], bool],
            done: _Segment | tuple[str, str, str, str],
            ahead: bool = False,
        ) -> None:
            future = self.engine.submit(request, ahead=ahead)
            futures.append(future)
            future.add_done_callback(functools.partial(when_done, handle=handle, done=done))

        def first_answer(segment: _Segment, out: GenResult) -> bool:
            self._accept(segment, out)
            if not (retry and _wants_retry(segment)):
                return True
            settle = functools.partial(retry_answer, segment, segment.output, segment.flags)
            send(self._retry_request(segment), settle, segment, ahead=True)
            return False  # complete once the retry is in

        def retry_answer(segment: _Segment, first_output: str, first_flags: list[str], out: GenResult) -> bool:
            self._settle_retry(segment, out, first_output, first_flags)
            return True

        def term_answer(key: tuple[str, str, str, str], out: GenResult) -> bool:
            terms[key] = self._clean_term(out, key[2], key[3])
            if term_tokens is not None:
                term_tokens[key] = (out.prompt_tokens, out.completion_tokens)
            return True

        try:
            for segment in segments:
                send(
                    self._request(segment.core.masked, segment.src, segment.tgt),
                    functools.partial(first_answer, segment),
                    segment,
                )
            for key in term_keys:
                send(self._term_request(*key), functools.partial(term_answer, key), key)
            for _ in range(len(segments) + len(term_keys)):
                done = finished.get()
                if isinstance(done, BaseException):
                    raise done
                # The caller's time between our yields is not engine time.
                self.engine_seconds += time.perf_counter() - started
                paused = True
                yield done
                paused = False
                started = time.perf_counter()
        finally:
            for future in list(futures):
                future.cancel()
            if not paused:
                self.engine_seconds += time.perf_counter() - started

    def _settle_retry(self, segment: _Segment, out: GenResult, first_output: str, first_flags: list[str]) -> None:
        self._accept(segment, out)
        # The retry made it worse (more problems, or nothing where the first answer had something): keep the first.
        emptied = checks.EMPTY in segment.flags and checks.EMPTY not in first_flags
        if emptied or len(segment.flags) > len(first_flags):
            segment.output, segment.flags = first_output, first_flags
        segment.first_flags = list(first_flags)

    def _plan(self, item: Item) -> _Plan:
        """Each line's source language (`_segment_source`, the post's language as the fallback): a line already
        in the target language is copied as written, the others are translated from their own language."""
        src = item.src or self.detect(item.text, item.target)
        tgt = item.target
        plan = _Plan(item, src, [])
        assert plan.lines is not None
        work = False  # anything to send to the engine: a segment or a markup term
        for number, raw in enumerate(split_lines(item.text), 1):
            line = plan_line(raw, self.profile)
            core = line.core
            line_src = None if core is None else self._segment_source(core.masked, src, tgt)
            if core is not None and line_src is None:
                # Already in the target language (code-mixed posts): keep it as written.
                line.pieces = [core.text if p is core else p for p in line.pieces]
                plan.copied.append(number)
            spans = [p for p in line.pieces if isinstance(p, Span)] + (core.spans if core and line_src else [])
            terms = [split_emoji(s.inner)[1] for s in spans if s.rule is not None]
            work = work or line_src is not None or any(self._term_source(t, line_src or src, tgt) for t in terms)
            plan.lines.append(line)
            plan.sources.append(line_src)
        if not work:
            plan.lines, plan.sources = None, []
        return plan

    def _segment_source(self, text: str, fallback: str, tgt: str) -> str | None:
        """The language to translate `text` (a line's core with ⟨n⟩ markers, or a markup term) from, or None when
        it is already in the target language and is copied as it is.

        A segment is copied only when it is wholly in the target language: its own language is the target
        (`langid.segment_language`: detected per segment, with `fallback`, the post's language, for a segment
        too short to tell), it has no letters of a script the target does not write, and none of its words would
        be flagged `untranslated` were it an answer (ordinary English words in a Chinese line, "yyds" in an
        English one). A code-mixed segment is translated from the language of its foreign part: "这个 app 的 UI
        design 真的 very nice" into English from Chinese, "今天真的 so happy" into Chinese from English."""
        bare = MARKER.sub(" ", text)
        if not has_letters(bare):
            return None
        candidates = self.config.languages or list(LANGUAGES)
        lang = segment_language(bare, fallback, tgt, candidates)
        if lang != tgt:
            return lang
        foreign = self._foreign_language(bare, fallback, tgt, candidates)
        return foreign if foreign != tgt else None

    def _foreign_language(self, text: str, fallback: str, tgt: str, candidates: list[str]) -> str | None:
        """The language of what in `text` (detected as `tgt`) is not in `tgt`, or None when nothing is."""
        counts = script_counts(text)
        # Letters of a script the target does not write (Latin in a Chinese text is judged by its words, below).
        other = {script for script in counts if script != "Latin" and not writes(tgt, script)}
        # Two letters, or one Han/Hangul character (a word): a lone kana is more often a kaomoji's (ツ) than Japanese.
        if sum(counts[s] for s in other) >= 2 or any(counts[s] for s in other & {"Han", "Hangul"}):
            rest = "".join(ch if script_of(ch) in other else " " for ch in text)
            return detect_language(rest, candidates) or fallback
        if get_language(tgt).script == "Latin":
            if "zh" in candidates and checks.untranslated_words(text, text, "zh", tgt):
                return "zh"  # Chinese-internet Latin: "this song is yyds"
            return None
        words_lang = checks.words_language(fallback)
        kept = functools.partial(self._kept, words_lang, tgt)
        if checks.untranslated_words(text, text, fallback, tgt, kept, sentence_initial=True):
            return words_lang
        return None

    def _term_source(self, term: str, fallback: str, tgt: str) -> str | None:
        """The language to translate a markup term (hashtag word, topic, sticker name) from, or None to keep it:
        acronyms and all-caps tags (``#ICE``, ``#OOTD``) stay as written in every language."""
        return None if is_acronym(term) else self._segment_source(term, fallback, tgt)

    def _kept(self, src: str, tgt: str) -> frozenset[str]:
        """Words the term bases (the configured ones and the shipped one) keep as written from `src` into `tgt`:
        never flagged `untranslated`. The shipped base counts whether or not its hints are on, so turning hints
        on changes nothing for a post they have nothing for."""
        key = (src, tgt)
        if key not in self._kept_words:
            bases = [b for b in (self.prompts.termbase, builtin_termbase()) if b is not None]
            self._kept_words[key] = frozenset(w for base in bases for w in base.kept_words(src, tgt))
        return self._kept_words[key]

    def _accept(self, segment: _Segment, out: GenResult) -> None:
        segment.tokens = (segment.tokens[0] + out.prompt_tokens, segment.tokens[1] + out.completion_tokens)
        if out.finish_reason == "error":
            segment.output, segment.flags = "", [ENGINE_ERROR]
            segment.error = out.error or "the engine gave no answer"
            segment.transient = out.transient
            return
        segment.error, segment.transient = None, False
        text = checks.clean_output(out.text, segment.core.masked)
        kept = functools.partial(self._kept, checks.words_language(segment.src), segment.tgt)
        flags = checks.check_output(text, segment.core.masked, segment.src, segment.tgt, len(segment.core.spans), kept)
        if out.finish_reason == "length":
            flags.append(checks.TRUNCATED)
        segment.output, segment.flags = text, flags

    @staticmethod
    def _clean_term(out: GenResult, src: str, tgt: str) -> str | None:
        if out.finish_reason == "error":
            return None
        text = checks.clean_output(out.text.split("\n")[0], "")
        text = regex.sub(r"^[#\[\s]+|[#\]\s.。!！]+$", "", text).strip()
        if not text or len(text) > 80 or checks.wrong_script(text, src, tgt):
            return None
        return text

    def _render(self, span: Span, terms: dict, fallback: str, tgt: str, flags: set[str]) -> str:
        if span.rule is None:
            return span.text
        lead, term, trail = split_emoji(span.inner)
        src = self._term_source(term, fallback, tgt)
        if src is None:
            return span.rule.render(span.inner, tgt)
        translated = terms.get((term, span.rule.kind, src, tgt))
        if translated is None:
            flags.add(UNTRANSLATED_MARKUP)
            translated = term
        return span.rule.render(lead + translated + trail, tgt)

    def _assemble(self, plan: _Plan, segments: list[_Segment], terms: dict, paid: tuple[int, int] = (0, 0)) -> Result:
        item = plan.item
        prompt_tokens = paid[0] + sum(s.tokens[0] for s in segments)
        completion_tokens = paid[1] + sum(s.tokens[1] for s in segments)
        if plan.lines is None:
            # Nothing to translate (already in the target language); a script asked for still applies.
            copied = to_chinese_script(item.text, item.script_tag)
            return Result(item.id, item.text, copied, plan.src, item.script_tag or item.target, [], self.model,
                          copied=plan.copied)  # fmt: skip
        flags: set[str] = set()
        retried_for: set[str] = set()
        failures: list[str] = []
        reasons: set[str] = set()
        queue = iter(segments)
        spaced = get_language(item.target).spaced
        lines_out: list[str] = []
        for line, line_src in zip(plan.lines, plan.sources, strict=True):
            parts: list[str] = []
            fallback = line_src or plan.src
            for piece in line.pieces:
                if isinstance(piece, str):
                    parts.append(piece)
                elif isinstance(piece, Span):
                    parts.append(self._render(piece, terms, fallback, item.target, flags))
                else:
                    segment = next(queue)
                    rendered = [self._render(s, terms, fallback, item.target, flags) for s in piece.spans]
                    text, missing = restore_markers(segment.output, piece.spans, rendered)
                    if missing:
                        # The model dropped a span: put it back at the end of the segment, flagged.
                        extra = [rendered[n - 1] for n in missing]
                        text = (text + (" " if spaced and text else "") + (" " if spaced else "").join(extra)).strip()
                    seg_flags = set(segment.flags)
                    seg_flags.discard(checks.MISSING_SPAN)
                    if missing:
                        seg_flags.add(checks.MISSING_SPAN)
                    flags |= seg_flags
                    if segment.first_flags:  # it was retried
                        flags.add(checks.RETRIED)
                        retried_for.update(segment.first_flags)
                    failed = sorted(seg_flags & checks.FAILING)
                    if failed == [checks.ECHO] and checks.names_only(segment.core.masked):
                        # Names and codes the retry kept as they are too: a translation, flagged, not a failure.
                        failed = []
                    if failed:
                        where = f"line {len(lines_out) + 1}: " if len(plan.lines) > 1 else ""
                        failures.append(where + (segment.error or ", ".join(failed)))
                        reasons.add(_failure_reason(segment))
                    parts.append(text)
            lines_out.append("".join(parts))
        translation = to_chinese_script("\n".join(lines_out), item.script_tag)
        tgt = item.script_tag or item.target
        result = Result(item.id, item.text, translation, plan.src, tgt, sorted(flags), self.model,
                        retried_for=sorted(retried_for), prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, copied=plan.copied)  # fmt: skip
        if failures:
            result.status, result.error = "failed", "; ".join(failures)
            # Transient only when nothing else failed: a row with a real failure counts against its cap.
            result.reason = next(r for r in (NO_TRANSLATION, ENGINE_FAILED, UNAVAILABLE) if r in reasons)
        return result

    def _plain_window(self, items: list[Item]) -> list[Result]:
        srcs = [item.src or self.detect(item.text, item.target) for item in items]
        outputs = self._generate([self._plain_request(item, src) for item, src in zip(items, srcs, strict=True)])
        results = []
        for item, src, out in zip(items, srcs, outputs, strict=True):
            tgt = item.script_tag or item.target
            text = to_chinese_script(out.text.strip(), item.script_tag)
            if out.finish_reason == "error" or not text:
                error = (out.error or "the engine gave no answer") if out.finish_reason == "error" else "empty answer"
                flags = [ENGINE_ERROR] if out.finish_reason == "error" else [checks.EMPTY]
                reason = (
                    NO_TRANSLATION if out.finish_reason != "error" else UNAVAILABLE if out.transient else ENGINE_FAILED
                )
                results.append(Result(item.id, item.text, text, src, tgt, flags, self.model, "plain",
                                      status="failed", error=error, reason=reason))  # fmt: skip
            else:
                results.append(Result(item.id, item.text, text, src, tgt, [], self.model, "plain",
                                      prompt_tokens=out.prompt_tokens,
                                      completion_tokens=out.completion_tokens))  # fmt: skip
        return results

    def _plain_request(self, item: Item, src: str) -> GenRequest:
        """The whole post in one plain prompt (mode plain)."""
        max_tokens = min(self.config.max_tokens * 2, 64 + 2 * len(item.text))
        if self.engine.chat:
            return GenRequest(messages=prompts.plain_messages(item.text, src, item.target), max_tokens=max_tokens)
        return GenRequest(
            prompt=prompts.completion_prompt(item.text, src, item.target),
            max_tokens=max_tokens,
            stop=prompts.COMPLETION_STOP,
        )

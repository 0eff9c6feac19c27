"""Round trips through two models, scored and appended to the journal — streaming, resumable.

For each window of source rows: both models translate A → B (forward) and B → A (back) through the full
translator pipeline, the round trips are scored in worker processes (`scoring.ScorePool`) while the next
window is generated, and finished rows are appended to ``journal.jsonl`` in stream order. Memory stays
constant: one window in generation, a bounded number of windows in scoring, and a done-set of one machine word
per corpus line (row ids are ``corpus:line``).

A killed run resumes: the journal's torn last line is cut off, rows already there *for their resume key*
(`redtrans.resume`: the row's text, languages and reference and the run's settings) are skipped, the rest are
appended; a row whose text changed is redone and its new line supersedes the old one (the journal is compacted
to the last line per row at the end). A journal made with other settings for every row is refused. A row whose
round trip hit an engine error is not journaled (so the next run retries it) and is counted in the summary; a
window in which every row failed stops the run (the engine is down).
"""

from __future__ import annotations

import contextlib
import json
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.engines.base import Engine, EngineError
from redtrans.engines.spec import create_engine
from redtrans.jsonl import JSONLError, JSONLWriter, read_jsonl, repair_tail
from redtrans.resume import KEY_FIELD, SETTINGS_FIELD, check_settings, resume_key, settings_digest, translation_settings
from redtrans.sampling.buckets import Buckets
from redtrans.sampling.config import ConfigError, ModelSpec, SampleConfig
from redtrans.sampling.inputs import BadRow, Corpus, MixState, SourceRow, mix, quotas
from redtrans.sampling.scoring import ScorePool
from redtrans.translator import ENGINE_ERROR, Item, Translator, TranslatorConfig

MODELS = ("m1", "m2")


def build_engine(spec: ModelSpec) -> Engine:
    """The engine a model spec describes (`create_engine`), named by its provenance label when it has one."""
    engine = create_engine(spec)
    if spec.provenance:
        engine.model = spec.provenance
    return engine


class DoneSet:
    """Journaled rows by corpus line: the first 8 bytes of the resume key each line was journaled for (0: none),
    O(lines) machine words rather than O(rows) strings. `superseded` counts journal lines a later line of the
    same row replaces (a run killed after redoing a changed row)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self._keys = {name: array("Q", bytes(8 * (size + 1))) for name, size in sizes.items()}
        self.count = 0
        self.superseded = 0

    def add(self, corpus: str, line: int, key: str | None) -> None:
        keys = self._keys.get(corpus)
        if keys is None or not 0 <= line < len(keys):
            return  # a row of a corpus (or a line) no longer in the config: irrelevant to this run
        if keys[line]:
            self.superseded += 1
        else:
            self.count += 1
        keys[line] = key_prefix(key) if key else 1  # 1: journaled without a key (never matches)

    def stored(self, row: SourceRow) -> int:
        """The key prefix `row`'s line was journaled for, 0 when it was not."""
        keys = self._keys.get(row.corpus)
        return keys[row.line] if keys is not None and row.line < len(keys) else 0


def key_prefix(key: str) -> int:
    """The first 8 bytes of a resume key as a non-zero integer."""
    return int(key[:16], 16) or 2


def row_key(row: SourceRow, settings: str) -> str:
    """The resume key of a round-trip row: its id, source, languages and reference, and the run's settings."""
    content = {"source": row.source, "src": row.src, "tgt": row.tgt, "reference": row.reference}
    return resume_key(row.id, content, settings)


def sample_settings(config: SampleConfig) -> str:
    """The settings digest of a sampling run: both translators (engine spec and pipeline) and the labels."""
    tcfg = TranslatorConfig(profile=config.profile, mode=config.mode, retry=config.retry)
    return settings_digest({
        m: {**translation_settings(tcfg, getattr(config, m)), "label": getattr(config, m).provenance}
        for m in MODELS
    })  # fmt: skip


def read_journal_state(journal: Path, sizes: dict[str, int]) -> tuple[DoneSet, dict[str, str] | None, list[str | None]]:
    """The done set, the models of the journal's first row (for a consistency check) and the distinct settings
    digests its rows were made with."""
    done = DoneSet(sizes)
    models: dict[str, str] | None = None
    settings: dict[str | None, None] = {}
    if not journal.is_file():
        return done, None, []
    repair_tail(journal)
    for _, row in read_jsonl(journal):
        if models is None and isinstance(row.get("models"), dict):
            models = row["models"]
        settings[row.get(SETTINGS_FIELD)] = None
        if "corpus" in row and isinstance(row.get("line"), int):
            done.add(str(row["corpus"]), row["line"], row.get(KEY_FIELD))
    return done, models, list(settings)


@dataclass
class _Leg:
    """One model's round trip of one row."""

    forward: str = ""
    back: str = ""
    forward_flags: list[str] = field(default_factory=list)
    back_flags: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class RoundTripSummary:
    total: int  # rows the mix asked for (upper bound: bad rows are not replaced)
    skipped: int  # already in the journal
    written: int  # journaled in this run
    failed: int  # engine errors: not journaled, retried by the next run
    changed: int  # redone because their row's text (or reference) changed since it was journaled
    rejected: int  # bad input rows (see rejects.jsonl)
    rejected_by_corpus: dict[str, int]
    taken: dict[str, int]  # good rows per corpus this run saw (done + new + failed)
    quota: dict[str, int]
    short: dict[str, int]  # corpora that ran out before their quota: rows missing
    seconds: float
    engine_seconds: dict[str, float]
    models: dict[str, dict[str, Any]]

    @property
    def rows_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class _Rejects:
    """rejects.jsonl, rewritten each run (bad rows are met again on every run) — or fail fast."""

    def __init__(self, path: Path, fail: bool) -> None:
        self.path, self.fail = path, fail
        self.count = 0
        self.by_corpus: dict[str, int] = {}
        self._handle: Any = None

    def __call__(self, bad: BadRow) -> None:
        if self.fail:
            raise JSONLError(bad.file, bad.line, bad.reason)
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("w", encoding="utf-8")
        self._handle.write(json.dumps(bad.to_dict(), ensure_ascii=False) + "\n")
        self._handle.flush()
        self.count += 1
        self.by_corpus[bad.corpus] = self.by_corpus.get(bad.corpus, 0) + 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        elif self.path.exists() and not self.fail:
            self.path.unlink()  # no bad rows this run: no stale report from an earlier one


def open_corpora(config: SampleConfig) -> tuple[list[Corpus], list[int]]:
    """The corpora of the config, checked (files exist, parallel pairs aligned), and their quotas."""
    corpora = [Corpus(c) for c in config.corpora]
    sizes = [c.check(strict=config.on_bad_row == "fail") for c in corpora]
    return corpora, quotas(sizes, [c.config.ratio for c in corpora], config.max_rows)


class RoundTripper:
    """Runs both models' round trips for windows of rows."""

    def __init__(self, engines: dict[str, Engine], config: SampleConfig) -> None:
        self.engines = engines
        tcfg = dict(profile=config.profile, mode=config.mode, retry=config.retry)
        self.translators = {m: Translator(e, TranslatorConfig(**tcfg)) for m, e in engines.items()}  # type: ignore[arg-type]
        concurrent = config.concurrent_models
        if concurrent is None:
            concurrent = not all(e.name in {"llamacpp", "hf"} for e in engines.values())
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="roundtrip") if concurrent else None

    def window(self, rows: list[SourceRow]) -> dict[str, list[_Leg]]:
        if self._threads is None:
            return {m: self._legs(m, rows) for m in MODELS}
        futures = {m: self._threads.submit(self._legs, m, rows) for m in MODELS}
        return {m: f.result() for m, f in futures.items()}

    def _legs(self, m: str, rows: list[SourceRow]) -> list[_Leg]:
        translator = self.translators[m]
        legs = [_Leg() for _ in rows]
        forward = translator.translate(Item(r.id, r.source, r.tgt, r.src) for r in rows)
        for leg, result in zip(legs, forward, strict=True):
            leg.forward, leg.forward_flags = result.translation, result.flags
            if ENGINE_ERROR in result.flags:
                leg.error = f"{m} forward: engine error"
        back_rows = [(leg, r) for leg, r in zip(legs, rows, strict=True) if leg.error is None and leg.forward.strip()]
        back = translator.translate(Item(r.id, leg.forward, r.src, r.tgt) for leg, r in back_rows)
        for (leg, _), result in zip(back_rows, back, strict=True):
            leg.back, leg.back_flags = result.translation, result.flags
            if ENGINE_ERROR in result.flags:
                leg.error = f"{m} back: engine error"
        for leg in legs:
            if leg.error is None and not leg.forward.strip():
                leg.forward_flags = sorted({*leg.forward_flags, "empty"})  # scores 0: a real, journaled outcome
        return legs

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)


def _batches(rows: Iterable[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def journal_row(
    row: SourceRow, legs: dict[str, _Leg], score: Any, buckets: Buckets, models: dict[str, str], settings: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "corpus": row.corpus, "line": row.line, "src": row.src, "tgt": row.tgt}
    out["source"] = row.source
    if row.reference is not None:
        out["reference"] = row.reference
    if row.source_id is not None:
        out["source_id"] = row.source_id
    out["forward"] = {m: legs[m].forward for m in MODELS}
    out["back"] = {m: legs[m].back for m in MODELS}
    out["rt_bleu"] = {"m1": round(score.bleu1, 4), "m2": round(score.bleu2, 4)}
    out["rt_chrf"] = {"m1": round(score.chrf1, 4), "m2": round(score.chrf2, 4)}
    out["delta_bleu"] = round(score.delta, 4)
    out["bucket"] = buckets.label(out["delta_bleu"])
    out["flags"] = {m: {"forward": legs[m].forward_flags, "back": legs[m].back_flags} for m in MODELS}
    out["models"] = models
    out["prompt_version"] = prompts.PROMPT_VERSION
    if settings:
        out[KEY_FIELD], out[SETTINGS_FIELD] = row_key(row, settings), settings
    return out


def run_roundtrips(
    config: SampleConfig,
    engines: dict[str, Engine],
    on_progress: Callable[[int, int], None] | None = None,
) -> RoundTripSummary:
    """Round-trip every row the config's corpora give into the journal, skipping rows already there.

    `engines` maps "m1"/"m2" to engines (see `build_engine`). `on_progress(done, total)` after each window."""
    started = time.perf_counter()
    corpora, row_quotas = open_corpora(config)
    sizes = {c.name: c.check() for c in corpora}
    journal = config.journal_path
    models = {m: engines[m].model for m in MODELS}
    settings = sample_settings(config)
    done, journal_models, journal_settings = read_journal_state(journal, sizes)
    if journal_models is not None and journal_models != models:
        raise ConfigError(
            f"{journal} was written by m1={journal_models.get('m1')}, m2={journal_models.get('m2')}, not by "
            f"m1={models['m1']}, m2={models['m2']}: ΔBLEU from different model pairs cannot be mixed "
            "(use another output_dir, or set m1.label / m2.label to match)"
        )
    check_settings(journal, journal_settings, settings, "ΔBLEU from different settings cannot be mixed; use "
                   "another output_dir", rows=done.count + done.superseded)  # fmt: skip
    buckets = Buckets(config.edges, config.weights, config.exclude)
    total = sum(row_quotas)
    rejects = _Rejects(config.rejects_path, config.on_bad_row == "fail")
    state = MixState()
    skipped = written = failed = changed = 0
    width = config.batch_size or max(8, 4 * max(e.parallelism for e in engines.values()))
    tripper = RoundTripper(engines, config)
    scorer = ScorePool(config.score_workers)
    inflight: deque[tuple[list[SourceRow], dict[str, list[_Leg]], Future]] = deque()

    def count_skip(row: SourceRow) -> bool:
        """Whether `row` is left to do: not journaled, or journaled for another key (its text changed)."""
        nonlocal skipped, changed
        stored = done.stored(row)
        if stored and stored == key_prefix(row_key(row, settings)):
            skipped += 1
            return False
        changed += bool(stored)
        return True

    def flush(limit: int) -> None:
        nonlocal written
        while len(inflight) > limit:
            rows, legs, future = inflight.popleft()
            scores = iter(future.result())
            for i, row in enumerate(rows):
                row_legs = {m: legs[m][i] for m in MODELS}
                writer.write(journal_row(row, row_legs, next(scores), buckets, models, settings))
                written += 1
            if on_progress:
                on_progress(skipped + written + failed, total)

    try:
        with JSONLWriter(journal) as writer:
            if on_progress:
                on_progress(0, total)
            stream = filter(count_skip, mix(corpora, row_quotas, rejects, state))
            try:
                for batch in _batches(stream, width):
                    legs = tripper.window(batch)
                    ok = [i for i in range(len(batch)) if all(legs[m][i].error is None for m in MODELS)]
                    if not ok:
                        errors = sorted({str(legs[m][0].error) for m in MODELS if legs[m][0].error})
                        raise EngineError(f"every row of a {len(batch)}-row window failed ({'; '.join(errors)})")
                    failed += len(batch) - len(ok)
                    rows = [batch[i] for i in ok]
                    kept = {m: [legs[m][i] for i in ok] for m in MODELS}
                    jobs = [(r.source, r.src, kept["m1"][j].back, kept["m2"][j].back) for j, r in enumerate(rows)]
                    inflight.append((rows, kept, scorer.submit(jobs)))
                    flush(max(2, scorer.workers))
            except BaseException:
                with contextlib.suppress(Exception):
                    flush(0)  # keep the windows already generated: a crash loses only the window at hand
                raise
            flush(0)
            if changed or done.superseded:
                writer.compact()  # a redone row's new line supersedes its old one
    finally:
        scorer.close()
        tripper.close()
        rejects.close()
    short = {name: state.quota[name] - state.taken[name] for name in state.exhausted if state.quota.get(name)}
    return RoundTripSummary(
        total=total,
        skipped=skipped,
        written=written,
        failed=failed,
        changed=changed,
        rejected=rejects.count,
        rejected_by_corpus=rejects.by_corpus,
        taken=dict(state.taken),
        quota=dict(state.quota),
        short={k: v for k, v in short.items() if v > 0},
        seconds=time.perf_counter() - started,
        engine_seconds={m: tripper.translators[m].engine_seconds for m in MODELS},
        models={m: engines[m].describe() for m in MODELS},
    )

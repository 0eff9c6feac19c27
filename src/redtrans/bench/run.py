"""The `bench` stage: suite → systems' hypotheses (cached, resumable) → scores per slice → reports."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from redtrans import __version__
from redtrans.bench.scoring import (
    NeuralMetric,
    corpus_scores,
    flat,
    is_copy,
    is_empty,
    is_wrong_language,
    paired_bootstrap,
    sentence_chrf,
)
from redtrans.bench.suites import Segment, Suite, load_suite, select
from redtrans.bench.systems import (
    EnginePool,
    SystemSpec,
    SystemSpecError,
    can_reuse,
    check_cache_config,
    load_outputs,
    prompt_version,
    read_cache,
    safe_name,
    system_settings,
    translate_missing,
    translator_for,
)
from redtrans.bench.tags import TAGS, segment_fidelity, tag_source
from redtrans.engines import Engine
from redtrans.errors import ConfigError
from redtrans.jsonl import retry_pending
from redtrans.text.profiles import load_profile
from redtrans.text.termbase import load_termbase
from redtrans.translator import Item, Translator


class BenchError(ConfigError):
    """A benchmark that cannot run as configured."""


@dataclass
class BenchConfig:
    """One benchmark run."""

    suite: str = "redtrans-bench"
    """Suite name: redtrans-bench, wmt23, pair, jsonl (see `redtrans.bench.suites`)."""
    systems: list[SystemSpec] = field(default_factory=lambda: [SystemSpec("default")])
    """Systems to compare; the first is the baseline of the significance tests."""
    out: Path = Path("runs/bench")
    """Output folder: results.json, results.md, report.html, text/ (plain-text files) and hyps/ (caches)."""
    data: str | None = None
    """Suite data: a file or folder (see each suite); None = the suite's own resolution."""
    langs: str | None = None
    """Direction for suites that cannot tell it from their data (pair, jsonl), e.g. zh-en."""
    limit: int | None = None
    """Keep the first N segments."""
    sample: int | None = None
    """Stratified sample of N segments over direction × category."""
    seed: int = 0
    """Seed of the sample."""
    profile: str = "rednote"
    """Platform profile used to tag sources and to judge markup fidelity."""
    bootstrap_samples: int = 1000
    """Resamples of the paired bootstrap test (sacrebleu's default is 1000)."""
    worst: int = 50
    """Segments listed in the report's worst-segments table, per system."""
    min_slice: int = 1
    """Slices with fewer segments are left out of the tables (always kept in results.json)."""
    slang_terms: list[str] = field(default_factory=list)
    """Extra slang terms for the `slang` tag (besides `slang_termbases`)."""
    slang_termbases: list[str] = field(default_factory=lambda: ["builtin"])
    """Term bases whose matches tag a source `slang` (by the translator's own matcher; `builtin` = the shipped
    base). They only define the slice; what a system translates with is set per system. [] = none."""
    reuse: bool = True
    """A system that differs from the first only in prompt settings (term bases, examples), on the same engine in
    the deterministic mode, takes the first's row of each segment for which it sends exactly the same requests
    (`bench.systems.can_reuse`): the result would be byte-identical. Such rows are marked `reused_from` and are
    not timed. False = translate every segment of every system."""
    repeats: int = 1
    """Runs of each engine system: the first is the (cached) scored one; the others translate every segment
    again, bypassing the cache (into hyps/NAME.repeatK.jsonl), and the report gives per slice how many
    segments changed and the spread of BLEU / chrF++ — for the throughput mode and remote engines."""
    ray: Any = None
    """`scale.raydata.RayOptions`: translate each engine system's segments on a Ray actor pool (``--ray``);
    None = in this process. Repeats and reuse of the baseline's rows stay in this process."""


@dataclass
class SystemRun:
    spec: SystemSpec
    hyps: dict[str, str]
    rows: dict[str, dict] = field(default_factory=dict)
    describe: dict[str, Any] = field(default_factory=dict)
    translated_now: int = 0
    reused_now: int = 0
    seconds: float = 0.0
    cache: str | None = None


def _collect(
    spec: SystemSpec,
    suite: Suite,
    all_ids: list[str],
    out: Path,
    pool: EnginePool,
    show_progress: bool,
    baseline: SystemRun | None = None,
    ray: Any = None,
) -> SystemRun:
    """The system's rows for the suite: cached ones, then the rest translated (or reused from `baseline`)."""
    if spec.kind == "outputs":
        hyps = load_outputs(spec, all_ids)
        missing = [s.id for s in suite.segments if s.id not in hyps]
        if missing:
            raise BenchError(
                f"outputs of system {spec.name!r} lack {len(missing)} of the {len(suite.segments)} selected "
                f"segments (first: {', '.join(missing[:3])})"
            )
        return SystemRun(spec, {s.id: hyps[s.id] for s in suite.segments}, describe={"outputs": spec.outputs})
    cache = out / "hyps" / f"{safe_name(spec.name)}.jsonl"
    check_cache_config(cache.with_suffix(".config.json"), spec.config())
    # A failed row with attempts left is not done: it counts as left to do, so a run retries it even when every
    # segment has a row.
    settings = system_settings(spec)  # a cached row is done for its resume key (redtrans.resume)
    done = sum(
        not retry_pending(row) for row in read_cache(cache, suite.segments, prompt_version(spec), settings).values()
    )
    started = time.perf_counter()
    translated = reused = 0
    engine_spec = spec.engine_spec().resolved()
    describe: dict[str, Any] = {"engine": engine_spec.kind, "model": engine_spec.model, "from_cache": True}
    if engine_spec.deterministic is not None:  # the cache is bound to the spec, so its rows were made in this mode
        describe["deterministic"] = engine_spec.deterministic
        describe["parallelism"] = engine_spec.asked_parallelism()
        if engine_spec.decoding() is not None:
            describe["decoding"] = engine_spec.decoding()
    if done < len(suite.segments):  # the model is loaded only when something is left to translate
        from redtrans.console import progress_bar

        reuse = None
        if ray is not None:  # the segments go to a Ray actor pool (redtrans.scale), built from the same spec
            from redtrans.scale.raydata import PoolTranslator, system_config

            describe = {**describe, "from_cache": False, "ray": True}
            translator = cast(Translator, PoolTranslator(spec.engine_spec(), system_config(spec), ray))
        else:
            engine = pool.get(spec)
            describe = engine.describe()
            translator = translator_for(spec, engine)
            if baseline is not None and can_reuse(baseline.spec, spec) and pool.shared(baseline.spec, spec):
                reuse = _reuser(baseline, translator, translator_for(baseline.spec, engine))

        with progress_bar("seg") if show_progress else contextlib.nullcontext() as bar:
            advance = None
            if bar is not None:
                task = bar.add_task(f"{spec.name}", total=len(suite.segments), completed=done)
                bar.update(task, start=done)  # the rate column counts from here (resumed segments excluded)
                advance = functools.partial(bar.advance, task)
            for row in translate_missing(spec, translator, suite.segments, cache, advance, reuse):
                reused += "reused_from" in row
                translated += "reused_from" not in row
    rows = read_cache(cache, suite.segments, prompt_version(spec), settings)
    lost = [s.id for s in suite.segments if s.id not in rows]
    if lost:
        raise BenchError(f"system {spec.name!r} produced no hypothesis for {len(lost)} segments ({lost[:3]})")
    return SystemRun(
        spec,
        # A failed segment has no usable translation: it is scored as an empty hypothesis and counted.
        {s.id: "" if rows[s.id].get("status") == "failed" else rows[s.id]["translation"] for s in suite.segments},
        rows,
        {**describe, "mode": spec.mode, "profile": spec.profile},
        translated,
        reused,
        time.perf_counter() - started,
        str(cache),
    )


def _reuser(
    baseline: SystemRun, translator: Translator, base_translator: Translator
) -> Callable[[Segment], dict | None]:
    """For `translate_missing`: the baseline's row of a segment, marked `reused_from`, when `translator` sends
    exactly the requests `base_translator` does for it and that row succeeded; else None (translate it)."""

    def reuse(segment: Segment) -> dict | None:
        row = baseline.rows.get(segment.id)
        if row is None or row.get("status") != "ok":
            return None
        item = Item(segment.id, segment.source, segment.tgt, segment.src)
        if translator.requests_for(item) != base_translator.requests_for(item):
            return None
        # Not timed: the time of these requests was the baseline's.
        kept = {key: value for key, value in row.items() if key not in {"seconds", "attempts", "reused_from"}}
        return {**kept, "reused_from": baseline.spec.name}

    return reuse


def _repeat(spec: SystemSpec, suite: Suite, out: Path, pool: EnginePool, k: int) -> dict[str, str]:
    """Run `k` of an engine system: every segment translated again, bypassing (and not touching) its cache."""
    path = out / "hyps" / f"{safe_name(spec.name)}.repeat{k}.jsonl"
    path.unlink(missing_ok=True)
    translator = translator_for(spec, pool.get(spec))
    rows = {row["id"]: row for row in translate_missing(spec, translator, suite.segments, path)}
    return {s.id: "" if rows[s.id].get("status") == "failed" else rows[s.id]["translation"] for s in suite.segments}


def _spread(suite: Suite, tags: dict[str, list[str]], runs: list[dict[str, str]]) -> dict[str, Any]:
    """Per direction and category: segments whose hypothesis differs between runs, and BLEU / chrF++ per run."""
    out: dict[str, Any] = {"runs": len(runs), "slices": {}}
    for key, group, _, segs in _slices(suite.segments, tags):
        if group == "tag":
            continue
        scores = [corpus_scores([r[s.id] for s in segs], [s.reference for s in segs], segs[0].tgt) for r in runs]
        bleu, chrf = [x.bleu for x in scores], [x.chrf for x in scores]
        out["slices"][key] = {
            "n": len(segs),
            "changed": sum(len({r[s.id] for r in runs}) > 1 for s in segs),
            "bleu": {"runs": [round(b, 4) for b in bleu], "spread": round(max(bleu) - min(bleu), 4),
                     "sd": round(statistics.pstdev(bleu), 4)},
            "chrf++": {"runs": [round(c, 2) for c in chrf], "spread": round(max(chrf) - min(chrf), 2),
                       "sd": round(statistics.pstdev(chrf), 2)},
        }  # fmt: skip
    return out


def _slices(segments: list[Segment], tags: dict[str, list[str]]) -> list[tuple[str, str, str, list[Segment]]]:
    """(key, group, direction, segments): per direction, per direction × category, per direction × tag, and per
    direction the segments without the `slang` tag."""
    by_dir: dict[str, list[Segment]] = defaultdict(list)
    for segment in segments:
        by_dir[segment.direction].append(segment)
    out: list[tuple[str, str, str, list[Segment]]] = []
    for direction in sorted(by_dir):
        segs = by_dir[direction]
        out.append((direction, "direction", direction, segs))
        for category in sorted({s.category for s in segs}):
            out.append((f"{direction}/{category}", "category", direction, [s for s in segs if s.category == category]))
        present = Counter(t for s in segs for t in tags[s.id])
        for tag in TAGS:
            if present[tag]:
                out.append((f"{direction}/#{tag}", "tag", direction, [s for s in segs if tag in tags[s.id]]))
        if 0 < present["slang"] < len(segs):
            # What a lever aimed at slang must not make worse: the posts it has no hint for.
            out.append((f"{direction}/{SLANG_FREE}", "tag", direction, [s for s in segs if "slang" not in tags[s.id]]))
    return out


SLANG_FREE = "#slang-free"
"""Slice of the segments without the `slang` tag (per direction)."""
SIGNIFICANCE_TAGS = ("#slang", SLANG_FREE)
"""Slices of a direction whose differences get a paired bootstrap besides the direction itself."""


def _slice_scores(
    segs: list[Segment],
    run: SystemRun,
    fid: dict[str, dict[str, Any]],
    neural: dict[str, float] | None,
    timed: bool = False,
) -> dict[str, Any]:
    hyps = [run.hyps[s.id] for s in segs]
    score = corpus_scores(hyps, [s.reference for s in segs], segs[0].tgt).as_dict()
    kept = [fid[s.id]["all"] for s in segs if fid[s.id]["all"] is not None]
    score["fidelity"] = round(sum(kept) / len(kept), 4) if kept else None
    score["fidelity_n"] = len(kept)
    for element in ("emoji", "markup", "mentions", "urls", "lines"):
        values = [fid[s.id][element] for s in segs if fid[s.id][element] is not None]
        score[f"kept_{element}"] = round(sum(values) / len(values), 4) if values else None
    n = len(segs)
    score["wrong_language"] = round(
        sum(is_wrong_language(h, s.src, s.tgt) for h, s in zip(hyps, segs, strict=True)) / n, 4
    )
    score["empty"] = round(sum(is_empty(h) for h in hyps) / n, 4)
    score["failed"] = sum(run.rows.get(s.id, {}).get("status") == "failed" for s in segs)
    score["copy"] = round(sum(is_copy(h, s.source) for h, s in zip(hyps, segs, strict=True)) / n, 4)
    if timed:
        score.update(_timing([run.rows.get(s.id, {}) for s in segs]))
    if neural is not None:
        score["neural"] = round(sum(neural[s.id] for s in segs) / n, 4)
    return score


def _timing(rows: list[dict]) -> dict[str, Any]:
    """`seconds_per_segment`: the mean `seconds` of the rows that recorded it (rows cached before timing was
    recorded, and outputs systems, have none); `timed`: how many did.

    Only for a system and its directions: the translator works on a window of posts at a time and hands them
    back in order, so one row's `seconds` may hold its neighbours' time (a long post finished first, then
    several at once). Sums over long runs of rows are right; a suite's directions are such runs when its
    segments come grouped by direction (the built-in suites do), a category or tag slice is not."""
    timed = [float(row["seconds"]) for row in rows if row.get("seconds") is not None]
    return {"seconds_per_segment": round(sum(timed) / len(timed), 3) if timed else None, "timed": len(timed)}


def run_bench(
    config: BenchConfig,
    engines: dict[str, Engine] | None = None,
    neural_metric: NeuralMetric | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run a benchmark and write its reports; returns the results (the content of results.json).

    `engines` maps system names to ready engines (tests, notebooks); other engine systems are built from their
    spec. `neural_metric` is an optional (sources, hypotheses, references) → segment scores hook (COMET).
    """
    from redtrans.bench.report import write_reports

    if not config.systems:
        raise BenchError("no system to benchmark: give at least one --system")
    names = [s.name for s in config.systems]
    if len(set(names)) != len(names):
        raise BenchError(f"system names must differ: {names}")
    suite = load_suite(config.suite, config.data, config.langs)
    all_ids = [s.id for s in suite.segments]
    select(suite, config.limit, config.sample, config.seed)
    if not suite.segments:
        raise BenchError("the selection is empty")
    if show_progress:
        from redtrans.console import err_console

        err_console.print(f"{suite.name}: {len(suite.segments)} of {suite.total} segments · sha256 {suite.sha256[:12]}")
        if suite.license:
            err_console.print(f"data license: {suite.license} ({suite.license_url}) · {suite.citation}")
        for note in suite.notes:
            err_console.print(f"[yellow]note:[/] {note}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = load_profile(config.profile)
    termbase = load_termbase(config.slang_termbases)
    tags = {s.id: tag_source(s.source, s.src, profile, config.slang_terms, termbase) for s in suite.segments}

    if config.repeats < 1:
        raise BenchError(f"repeats must be at least 1, not {config.repeats}")
    pool = EnginePool(engines)
    runs: list[SystemRun] = []
    repeated: dict[str, list[dict[str, str]]] = {}
    try:
        for spec in config.systems:
            baseline = runs[0] if runs and config.reuse else None
            runs.append(_collect(spec, suite, all_ids, out, pool, show_progress, baseline, config.ray))
            if config.repeats > 1 and spec.kind == "engine":
                repeated[spec.name] = [runs[-1].hyps] + [
                    _repeat(spec, suite, out, pool, k) for k in range(2, config.repeats + 1)
                ]
    except SystemSpecError as exc:
        raise BenchError(str(exc)) from None
    finally:
        pool.close()

    fidelity: dict[str, dict[str, dict[str, Any]]] = {}
    sentence: dict[str, dict[str, float]] = {}
    neural: dict[str, dict[str, float]] = {}
    for run in runs:
        fid = {}
        for s in suite.segments:
            f = segment_fidelity(s.source, run.hyps[s.id], profile)
            fid[s.id] = {**f.as_dict(), "all": f.all_kept}
        fidelity[run.spec.name] = fid
        sentence[run.spec.name] = {s.id: sentence_chrf(run.hyps[s.id], s.reference) for s in suite.segments}
        if neural_metric is not None:
            segs = suite.segments
            scores = neural_metric(
                [s.source for s in segs], [run.hyps[s.id] for s in segs], [s.reference for s in segs]
            )
            neural[run.spec.name] = {s.id: float(x) for s, x in zip(segs, scores, strict=True)}

    slices = []
    sliced = _slices(suite.segments, tags)
    for key, group, direction, segs in sliced:
        slices.append(
            {
                "key": key,
                "group": group,
                "direction": direction,
                "n": len(segs),
                "scores": {
                    run.spec.name: _slice_scores(
                        segs, run, fidelity[run.spec.name], neural.get(run.spec.name), timed=group == "direction"
                    )
                    for run in runs
                },
            }
        )

    significance: dict[str, Any] = {}
    if len(runs) > 1:
        tested = (sl for sl in sliced if sl[1] == "direction" or sl[0].split("/", 1)[-1] in SIGNIFICANCE_TAGS)
        for key, _, _, segs in tested:
            sigs, table = paired_bootstrap(
                [(r.spec.name, [r.hyps[s.id] for s in segs]) for r in runs],
                [s.reference for s in segs],
                segs[0].tgt,
                config.bootstrap_samples,
            )
            significance[key] = {
                "n": len(segs),
                "baseline": runs[0].spec.name,
                # Identical hypotheses get sacrebleu's smallest p (by design: "a zero difference should not be
                # attributed to chance"), so a p-value is read together with how many segments differ at all.
                "changed": {r.spec.name: sum(r.hyps[s.id] != runs[0].hyps[s.id] for s in segs) for r in runs[1:]},
                "test": "paired bootstrap resampling (sacrebleu.significance.PairedTest, test_type=bs)",
                "signatures": sigs,
                "systems": {
                    name: {
                        metric: {
                            "score": round(r.score, 4),
                            "mean": None if r.mean is None else round(float(r.mean), 4),
                            "ci95": None if r.ci is None else round(float(r.ci), 4),
                            "p_value": None if r.p_value is None else round(float(r.p_value), 4),
                            # 95% interval of (system − baseline): its low end is the non-inferiority margin test.
                            "diff_ci95": None if r.difference is None else [round(v, 4) for v in r.difference],
                        }
                        for metric, r in metrics.items()
                    }
                    for name, metrics in table.items()
                },
            }

    segments_out = []
    for s in suite.segments:
        segments_out.append(
            {
                "id": s.id,
                "direction": s.direction,
                "category": s.category,
                "tags": tags[s.id],
                "source": s.source,
                "reference": s.reference,
                "systems": {
                    run.spec.name: {
                        "hypothesis": run.hyps[s.id],
                        "chrf++": round(sentence[run.spec.name][s.id], 2),
                        "fidelity": fidelity[run.spec.name][s.id]["all"],
                        "flags": run.rows.get(s.id, {}).get("flags", []),
                    }
                    for run in runs
                },
            }
        )

    results: dict[str, Any] = {
        "redtrans_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "suite": suite.describe(),
        "systems": [
            {
                "name": run.spec.name,
                "config": run.spec.config(),
                "engine": run.describe,
                "cache": run.cache,
                "translated_this_run": run.translated_now,
                "reused_this_run": run.reused_now,
                "reused": sum("reused_from" in row for row in run.rows.values()),
                "seconds_this_run": round(run.seconds, 1),
                **_timing(list(run.rows.values())),
                "flags": dict(Counter(f for row in run.rows.values() for f in row.get("flags", []))),
                "failed": sum(row.get("status") == "failed" for row in run.rows.values()),
                "prompt_versions": sorted({str(r.get("prompt_version")) for r in run.rows.values()}),
            }
            for run in runs
        ],
        "metrics": {
            "bleu": "corpus BLEU (sacrebleu), tokenizer per target language (languages.bleu_tokenizer); "
            "'bleu' is the paper's 0-1 scale, 'bleu_100' the usual 0-100",
            "chrf++": "sacrebleu CHRF(word_order=2); Chinese is not segmented, so its word n-grams are "
            "whitespace chunks and chrF++ on zh is close to chrF",
            "fidelity": "share of segments with something to keep (emoji, platform markup, mentions, URLs, several "
            "lines) whose hypothesis kept all of it",
            "wrong_language": "share of hypotheses that language identification puts in the source language",
            "empty": "share of empty hypotheses (failed segments are scored as empty)",
            "failed": "segments without a usable translation (engine error, or an empty, echoed or refused answer "
            "after the retry): scored as empty hypotheses; a re-run of the same command retries them",
            "copy": "share of hypotheses equal to the source (ignoring spaces, punctuation, symbols)",
            "seconds_per_segment": "mean wall time per segment while it was translated, per system and direction "
            "(each cached row records the time since the previous row of its run, so runs resumed in parts add "
            "up; a single row's time is not its own, as posts are worked on a window at a time); 'timed' counts "
            "the rows that recorded it. Model loading is excluded; the machine's other load is not",
            "reused": "rows taken from the first system's (marked `reused_from`): the system sends exactly its "
            "requests for that segment on the same engine in the deterministic mode, so the result is the same "
            "(BenchConfig.reuse); such rows are not timed",
            "neural": "mean segment score of the optional neural metric (COMET) when one was given",
            "text": "scored one line per segment with whitespace collapsed; text/ holds exactly the scored lines",
        },
        "slices": slices,
        "significance": significance,
        "repeats": {name: _spread(suite, tags, hyps) for name, hyps in repeated.items()},
        "segments": segments_out,
        "config": {
            "suite": config.suite,
            "data": config.data,
            "limit": config.limit,
            "sample": config.sample,
            "seed": config.seed,
            "profile": config.profile,
            "bootstrap_samples": config.bootstrap_samples,
            "repeats": config.repeats,
            "neural_metric": neural_metric is not None,
        },
    }
    _write_text_files(out, suite, runs)
    write_reports(results, out, worst=config.worst, min_slice=config.min_slice)
    return results


def _write_text_files(out: Path, suite: Suite, runs: list[SystemRun]) -> None:
    """text/{direction}.src|ref and text/{system}.{direction}.hyp: the exact lines scored, for the sacrebleu CLI."""
    folder = out / "text"
    folder.mkdir(parents=True, exist_ok=True)
    for direction in sorted({s.direction for s in suite.segments}):
        segs = [s for s in suite.segments if s.direction == direction]
        (folder / f"{direction}.src").write_text("".join(flat(s.source) + "\n" for s in segs), encoding="utf-8")
        (folder / f"{direction}.ref").write_text("".join(flat(s.reference) + "\n" for s in segs), encoding="utf-8")
        for run in runs:
            text = "".join(flat(run.hyps[s.id]) + "\n" for s in segs)
            (folder / f"{safe_name(run.spec.name)}.{direction}.hyp").write_text(text, encoding="utf-8")

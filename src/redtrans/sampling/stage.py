"""The `sample` stage: round trips into the journal, then the stratified draw, the SFT files and the stats.

Usable from Python without the CLI::

    from redtrans.sampling import load_config
    from redtrans.sampling.stage import run_sample
    report = run_sample(load_config("examples/sample.yaml"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.engines.base import Engine
from redtrans.errors import InputError
from redtrans.sampling.buckets import Buckets, draw
from redtrans.sampling.config import SampleConfig
from redtrans.sampling.export import (
    JournalStats,
    bucket_table,
    choose_target,
    drawn_stats,
    no_signal_reasons,
    write_histogram,
    write_json,
    write_sft,
)
from redtrans.sampling.roundtrip import MODELS, RoundTripSummary, build_engine, run_roundtrips


@dataclass
class SampleReport:
    run: RoundTripSummary | None  # None: draw only
    stats: dict[str, Any]
    stats_path: Path
    histogram_path: Path
    sft_files: dict[str, int]


def draw_and_export(config: SampleConfig, run: RoundTripSummary | None = None) -> SampleReport:
    """Draw from the journal and write the SFT files, stats.json and the histogram (re-runnable alone:
    change edges, weights, exclude, target_size or seed and draw again without re-translating)."""
    buckets = Buckets(config.edges, config.weights, config.exclude)
    journal_stats = JournalStats(config.histogram_bins)
    models: dict[str, Any] = {}
    prompt_versions: set[str] = set()
    no_signal_flags: dict[str, int] = {}  # model.leg.flag → rows (see export.no_signal_reasons)

    def observe(row: dict[str, Any]) -> None:
        reasons = no_signal_reasons(row)
        journal_stats.add(row, signal=not reasons)  # means and the "before" histogram: signal rows only
        if not models and isinstance(row.get("models"), dict):
            models.update(row["models"])
        prompt_versions.add(str(row.get("prompt_version")))
        for reason in reasons:
            no_signal_flags[reason] = no_signal_flags.get(reason, 0) + 1

    def eligible(row: dict[str, Any]) -> bool:
        return choose_target(row, config.target_rule, config.allow_flagged_targets) is not None

    drawn = draw(config.journal_path, buckets, config.target_size, config.seed, config.method, eligible, observe,
                 signal=lambda row: not no_signal_reasons(row))  # fmt: skip
    sft_files = write_sft(config.out, drawn, config.target_rule, config.allow_flagged_targets, config.sft_formats,
                          profile=config.profile)  # fmt: skip
    described = run.models if run else {m: {"model": models.get(m)} for m in MODELS}
    after = drawn_stats(drawn, config.histogram_bins, config.target_rule, config.allow_flagged_targets)
    journal = journal_stats.to_dict()
    stats: dict[str, Any] = {
        "models": described,
        "prompt_version": sorted(prompt_versions) if len(prompt_versions) > 1 else prompts.PROMPT_VERSION,
        "run": None if run is None else {**dataclasses.asdict(run), "rows_per_s": round(run.rows_per_s, 3)},
        "journal": {
            **journal,
            "out_of_range": drawn.out_of_range,
            "ineligible": drawn.ineligible,
            "no_signal": drawn.no_signal,
            "no_signal_flags": dict(sorted(no_signal_flags.items())),
        },
        "buckets": bucket_table(buckets, drawn),
        "before": {
            "rows": sum(drawn.available),
            "bucket_counts": {label: drawn.available[i] for i, label in enumerate(buckets.labels)},
            "histogram": journal["histogram"],
        },
        "after": {**after, "bucket_counts": {label: drawn.drawn[i] for i, label in enumerate(buckets.labels)}},
        "sft": {
            "files": sft_files,
            "target_rule": config.target_rule,
            "method": config.method,
            "seed": config.seed,
            "target_size": config.target_size,
        },
        "config": config.model_dump(mode="json"),
    }
    histogram = write_histogram(config.histogram_path, stats, buckets)
    write_json(config.stats_path, stats)
    return SampleReport(run, stats, config.stats_path, histogram, sft_files)


def run_sample(
    config: SampleConfig,
    engines: dict[str, Engine] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    draw_only: bool = False,
    on_engines_loaded: Callable[[], None] | None = None,
) -> SampleReport:
    """The whole stage. `engines` ({"m1": …, "m2": …}) overrides the configured models (tests, benchmarks);
    engines built here are closed here."""
    config.validate(need_corpora=not draw_only)
    if draw_only:
        if not config.journal_path.is_file():
            raise InputError(f"no journal to draw from: {config.journal_path}")
        return draw_and_export(config)
    from redtrans.sampling.roundtrip import open_corpora

    open_corpora(config)  # missing files and misaligned pairs fail before any model loads
    owned: list[Engine] = []
    if engines is None:
        engines = {}
        try:
            for m in MODELS:
                engines[m] = build_engine(getattr(config, m))
                owned.append(engines[m])
        except BaseException:
            for engine in owned:
                engine.close()
            raise
    if on_engines_loaded:
        on_engines_loaded()
    try:
        run = run_roundtrips(config, engines, on_progress)
    finally:
        for engine in owned:
            engine.close()
    return draw_and_export(config, run)


def summary_lines(report: SampleReport) -> list[str]:
    """A short human summary of a sample run (the CLI prints it)."""
    lines: list[str] = []
    run = report.run
    if run is not None:
        lines.append(
            f"round trips: {run.written} new, {run.skipped} already journaled"
            + (f" ({run.changed} redone: changed since last run)" if run.changed else "")
            + f", {run.failed} failed (engine errors; re-run to retry), {run.rejected} bad input rows"
            + (f" (see {report.stats_path.parent / 'rejects.jsonl'})" if run.rejected else "")
            + f" · {run.rows_per_s:.2f} rows/s"
        )
        if run.short:
            lines.append("corpora short of their quota: " + ", ".join(f"{k} −{v}" for k, v in run.short.items()))
    stats = report.stats
    table = " ".join(f"{b['bucket']} {b['available']}→{b['drawn']}" + ("✗" if b["excluded"] else "")
                     for b in stats["buckets"])  # fmt: skip
    lines.append(f"journal: {stats['journal']['rows']} scored rows · ΔBLEU buckets (available→drawn): {table}")
    files = ", ".join(f"{path} ({n})" for path, n in report.sft_files.items())
    lines.append(f"SFT set: {files}")
    lines.append(f"stats → {report.stats_path} · histogram → {report.histogram_path}")
    return lines

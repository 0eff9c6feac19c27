"""The `bench` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redtrans.cli._app import (
    app,
)
from redtrans.cli.raying import RayActorsOpt, RayCpusOpt, RayGpusOpt, RayOpt, ray_options
from redtrans.console import err_console


@app.command()
def bench(
    suite: Annotated[str, typer.Option(help="redtrans-bench | wmt23 | pair | jsonl")] = "redtrans-bench",
    system: Annotated[
        list[str] | None,
        typer.Option(
            "--system",
            "-S",
            help="Repeatable. default | plain | outputs:FILE | name=…,engine=…,model=…,mode=sns|plain,profile=…,"
            "parallel=N,served_model=…, and any engine option (n_threads=2, timeout_s=300, base_model=…). "
            "The first is the significance baseline.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Suite data: RedTrans-Bench file/folder, WMT23 folder, SRC,REF files (pair), JSONL."),
    ] = None,
    langs: Annotated[
        str | None,
        typer.Option(help="Direction, e.g. zh-en: of pair/jsonl rows that name none; redtrans-bench/wmt23: only it."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default runs/bench/SUITE); holds caches.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N segments.")] = None,
    sample: Annotated[int | None, typer.Option(help="Stratified sample of N (direction × category).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    profile: Annotated[str, typer.Option(help="Platform profile for tags and markup fidelity.")] = "rednote",
    parallel: Annotated[
        int | None,
        typer.Option(
            help="Requests generated at once by engine systems that do not set parallel themselves: llamacpp "
            "contexts (deterministic mode; outputs do not depend on it) or slots (--throughput), openai "
            "concurrency, hf batch (selects its throughput mode)."
        ),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--throughput",
            help="Engine systems decode byte-identically run after run, or batched. Default: deterministic for "
            "llamacpp systems, and hf systems that set no parallelism (recorded in results.json).",
        ),
    ] = None,
    repeats: Annotated[
        int,
        typer.Option(help="Runs of each engine system (>1: the extra runs bypass the cache; report the spread)."),
    ] = 1,
    reuse: Annotated[
        bool,
        typer.Option(
            help="A system differing from the first only in term bases/examples takes the first's row wherever it "
            "sends exactly the same requests (deterministic mode: the same result). --no-reuse translates all."
        ),
    ] = True,
    worst: Annotated[int, typer.Option(help="Worst segments listed per system in the HTML report.")] = 50,
    bootstrap: Annotated[int, typer.Option(help="Paired bootstrap resamples.")] = 1000,
    comet: Annotated[
        str | None, typer.Option(help="Optional COMET checkpoint (needs unbabel-comet) for a neural metric.")
    ] = None,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    ray_cpus: RayCpusOpt = None,
    ray_gpus: RayGpusOpt = 0.0,
) -> None:
    """Benchmark systems on a suite: BLEU/chrF++ (sacrebleu) per slice, SNS fidelity, significance, reports."""
    from redtrans.bench import BenchConfig, parse_system, run_bench
    from redtrans.bench.scoring import comet_metric
    from redtrans.bench.systems import with_mode, with_parallel

    specs = [with_mode(with_parallel(parse_system(s), parallel), deterministic) for s in (system or ["default"])]
    neural = comet_metric(comet) if comet else None
    config = BenchConfig(
        suite=suite,
        systems=specs,
        out=out or Path("runs") / "bench" / suite,
        data=data,
        langs=langs,
        limit=limit,
        sample=sample,
        seed=seed,
        profile=profile,
        bootstrap_samples=bootstrap,
        worst=worst,
        repeats=repeats,
        reuse=reuse,
        ray=None if ray is None else ray_options(ray, ray_actors, ray_cpus, ray_gpus),
    )
    results = run_bench(config, neural_metric=neural)
    from redtrans.bench.report import markdown

    typer.echo(markdown(results))
    err_console.print(f"reports → {config.out}/results.json, results.md, report.html")
    failed = sum(system.get("failed", 0) for system in results["systems"])
    if failed:
        from redtrans.errors import RowsFailedError

        raise RowsFailedError(failed, len(results["segments"]) * len(results["systems"]), config.out / "hyps",
                              "scored as empty hypotheses")  # fmt: skip

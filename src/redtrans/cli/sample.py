"""The `sample` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redtrans.cli._app import (
    app,
)
from redtrans.cli.raying import RayActorsOpt, RayCpusOpt, RayGpusOpt, RayOpt, ray_options
from redtrans.console import err_console, progress_bar


@app.command("sample")
def sample_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Sampling config (YAML).")] = None,
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="One corpus instead of the config's: JSONL or text file.")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", "-r", help="Line-aligned reference file for a text --input.")
    ] = None,
    src: Annotated[str | None, typer.Option(help="Source language of --input.")] = None,
    tgt: Annotated[str | None, typer.Option(help="Target language of --input (the round trip's other side).")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Run folder (journal, stats, histogram, SFT).")
    ] = None,
    m1: Annotated[str | None, typer.Option(help="First model (registry name, .gguf, http(s)://…/v1).")] = None,
    m2: Annotated[str | None, typer.Option(help="Second model, ideally another family.")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Rows to round-trip over all corpora.")] = None,
    target_size: Annotated[int | None, typer.Option(help="Rows in the SFT set (0 = all eligible).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the draw.")] = None,
    edges: Annotated[str | None, typer.Option(help="ΔBLEU bucket edges, e.g. 0,0.1,0.2,0.4,1.")] = None,
    weights: Annotated[str | None, typer.Option(help="Bucket weights, e.g. 1,2,3,4.")] = None,
    exclude: Annotated[str | None, typer.Option(help="Buckets left out: indices or labels, comma-separated.")] = None,
    method: Annotated[str | None, typer.Option(help="quota (stratified) or weighted (Efraimidis–Spirakis).")] = None,
    target_rule: Annotated[str | None, typer.Option(help="auto | reference | best_forward.")] = None,
    draw_only: Annotated[
        bool, typer.Option(help="Skip the round trips: draw again from the journal (new buckets, weights, seed).")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE override, dotted, YAML values (m1.parallel=2, corpora.0.max_rows=40)."),
    ] = None,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    ray_cpus: RayCpusOpt = None,
    ray_gpus: RayGpusOpt = 0.0,
    strict: Annotated[
        bool,
        typer.Option(
            help="Refuse a corpus with a bad row (empty or invalid text, over the limits) before any work, instead "
            "of rejecting that row (on_bad_row: fail)."
        ),
    ] = False,
) -> None:
    """Dual-LLM back-translation sampling: round trips, ΔBLEU buckets, a stratified draw, the SFT set."""
    from redtrans.sampling.config import cli_overrides, load_config
    from redtrans.sampling.stage import run_sample, summary_lines

    options = {"input": input, "reference": reference, "src": src, "tgt": tgt, "output_dir": output_dir,
               "m1": m1, "m2": m2, "max_rows": max_rows, "target_size": target_size, "seed": seed, "edges": edges,
               "weights": weights, "exclude": exclude, "method": method, "target_rule": target_rule,
               "on_bad_row": "fail" if strict else None}  # fmt: skip
    cfg = load_config(config, cli_overrides(options, set_))
    cfg.validate(need_corpora=not draw_only)
    if draw_only:
        report = run_sample(cfg, draw_only=True)
    else:
        with progress_bar("rows") as bar:
            task = bar.add_task("round trips", total=None, start=False)

            def on_progress(done: int, total: int) -> None:
                if bar.tasks[task].total is None:
                    bar.update(task, total=total, completed=done, start=done)
                    bar.start_task(task)
                bar.update(task, completed=done)

            if ray is None:
                report = run_sample(cfg, on_progress=on_progress)
            else:  # round trips on a Ray actor pool; the draw over the whole journal as always
                from redtrans.sampling.stage import draw_and_export
                from redtrans.scale.raydata import roundtrips_ray

                trips = roundtrips_ray(cfg, ray_options(ray, ray_actors, ray_cpus, ray_gpus), on_progress)
                report = draw_and_export(cfg, trips)
    for line in summary_lines(report):
        err_console.print(line, highlight=False)
    run = report.run
    if run is not None and (run.failed or run.rejected):
        from redtrans.errors import RowsFailedError

        total = run.written + run.skipped + run.failed + run.rejected
        parts, after = [], []
        if run.failed:
            parts.append(f"{run.failed} on engine errors (not journaled)")
            after.append("re-run the same command to retry those")
        if run.rejected:
            parts.append(f"{run.rejected} on bad input (see {cfg.rejects_path})")
            after.append("fix those rows (or drop them) in the corpus")
        raise RowsFailedError(run.failed + run.rejected, total, cfg.journal_path, "; ".join(parts), "; ".join(after))

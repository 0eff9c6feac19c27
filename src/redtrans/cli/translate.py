"""The `translate` and `examples` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from redtrans.cli._app import (
    EngineOpt,
    ModelOpt,
    _read_stdin,
    app,
)
from redtrans.cli.raying import RayActorsOpt, RayCpusOpt, RayGpusOpt, RayOpt, ray_options
from redtrans.console import err_console, progress_bar
from redtrans.errors import InputError


@app.command()
def translate(
    text: Annotated[str | None, typer.Argument(help="Text to translate; omit to read stdin or use --input.")] = None,
    src: Annotated[
        str | None, typer.Option(help="Source language (ISO 639-1 or BCP-47 tag); detected when omitted.")
    ] = None,
    tgt: Annotated[
        str | None,
        typer.Option(
            help="Target language (ISO 639-1 or BCP-47): zh-Hant gives Traditional Chinese in Taiwan's standard "
            "characters, zh-TW also Taiwan's wording, zh-HK Hong Kong's characters, zh-Hans Simplified; default en, "
            "or zh when the source is English."
        ),
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="Rows to translate: JSONL, CSV/TSV, Parquet, a folder or quoted glob of such shards ('in/*.jsonl'), "
            "a save_to_disk dataset folder, or a Hugging Face Hub id already in the local cache (never downloaded); "
            "DATASET#SPLIT picks a split.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output, in the format its name says: .jsonl (appended; re-runs skip done ids); .csv, .tsv, "
            ".parquet, or a folder (out/: a sharded Parquet dataset), journaled in OUTPUT.journal.jsonl "
            "(out/.journal.jsonl) and converted at the end, every row with its status. Other names are refused.",
        ),
    ] = None,
    text_field: Annotated[
        str,
        typer.Option(
            help="Input field (column) holding the text; dotted for a nested field (translation.zh), unless a "
            "column has that very name; a\\.b names the column 'a.b'."
        ),
    ] = "text",
    id_field: Annotated[
        str, typer.Option(help="Input field holding the row id (default: line-N in JSONL, row-N otherwise).")
    ] = "id",
    src_field: Annotated[str, typer.Option(help="Input field holding a per-row source language.")] = "src",
    tgt_field: Annotated[str, typer.Option(help="Input field holding a per-row target language.")] = "tgt",
    translation_field: Annotated[
        str,
        typer.Option(
            help="Output field for the translation; translation.en writes it into the input's translation object "
            "(the Hugging Face translation schema)."
        ),
    ] = "translation",
    keep_columns: Annotated[
        str,
        typer.Option(
            help="Input columns output rows keep: all, none, or a comma-separated list; one named like an output "
            "column (status, flags, …) is kept as input.NAME."
        ),
    ] = "all",
    engine: EngineOpt = None,
    model: ModelOpt = None,
    served_model: Annotated[str | None, typer.Option(help="Model name sent to OpenAI-compatible endpoints.")] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            help="Requests generated at once. llamacpp: independent single-thread contexts in the deterministic "
            "mode (default: one per usable core, as memory allows; outputs do not depend on it), parallel slots with "
            "--throughput (default 4); openai: requests in flight; hf: batch size, which selects its throughput "
            "mode (docs/determinism.md)."
        ),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--throughput",
            help="Byte-identical output run after run whatever else is queued, or batched decoding (outputs may "
            "vary). Default: deterministic for llamacpp, and for hf unless --parallel is given; openai cannot "
            "promise it.",
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
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    ray_cpus: RayCpusOpt = None,
    ray_gpus: RayGpusOpt = 0.0,
    strict: Annotated[
        bool,
        typer.Option(
            help="Refuse the whole input (exit 2, before any work) when a row's text is empty, null, not valid "
            "text or over the per-item limits, instead of failing those rows."
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(help="Redo every row of an existing --output made with other settings (model, --tgt, …)."),
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Try failed rows again even after their attempts are used up (resets the count).")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.001, help="openai engine: seconds one attempt may take (default 120)."),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            min=0, help="openai engine: retries of a request on timeouts, connection errors, 429, 5xx (default 3)."
        ),
    ] = None,
) -> None:
    """Translate a text, stdin, or a file of rows (JSONL, CSV, Parquet, a Hugging Face dataset)."""
    from redtrans.engines import EngineSpec, create_engine
    from redtrans.engines.spec import with_default_mode
    from redtrans.errors import ConfigError, EngineError, RowsFailedError
    from redtrans.jsonl import failure_summary
    from redtrans.languages import get_language
    from redtrans.limits import check_text
    from redtrans.resume import translation_settings
    from redtrans.text.profiles import load_profile
    from redtrans.translate_file import FileFields, check_output_path, plan_columns, translate_file, validate_input
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
    if ray is not None and input is None:
        raise InputError("--ray translates a file of rows: give --input and an --output folder")
    if input is not None:
        from redtrans.datafiles import open_rows

        open_rows(input)  # a file, a dataset folder or a cached Hub id; InputError naming it otherwise
    if input is None and text is None:
        if sys.stdin.isatty():
            raise InputError("nothing to translate: give a TEXT argument, pipe text on stdin, or use --input")
        text = _read_stdin()
    if text is not None and not text.strip():
        raise InputError("the text to translate is empty")
    options = {"timeout_s": timeout, "max_retries": max_retries}
    options = {name: value for name, value in options.items() if value is not None}
    spec = with_default_mode(EngineSpec(kind=engine, model=model, parallel=parallel, served_model=served_model,
                                        options=options), deterministic)  # fmt: skip
    if options and spec.resolved().kind != "openai":
        raise ConfigError("--timeout and --max-retries apply to the openai engine (an http(s)://…/v1 --model)")
    spec.engine_config()  # engine options checked before any work
    fields = FileFields(text_field, id_field, src_field, tgt_field, translation_field)
    defaults = TranslatorConfig()
    mine = termbase or []
    bases = [] if no_termbase else [*mine, *(b for b in defaults.termbases if b not in mine)]
    memory = defaults.examples if examples is None else None if examples.lower() == "none" else examples
    config = TranslatorConfig(profile=profile, mode=mode, termbases=bases, examples=memory,  # type: ignore[arg-type]
                              shots=shots, candidates=candidates)  # fmt: skip
    checked = settings = None
    columns: dict[str, None] = {}
    if ray is not None:
        assert input is not None and output is not None
        from redtrans.scale.shards import check_folder

        if translation_field != "translation":
            raise ConfigError("--ray writes the translation to its own column: --translation-field is not carried "
                              "through its shards yet")  # fmt: skip
        check_folder(output)
        # Before Ray starts: bad input fails fast, and the columns rows keep are known.
        rows = validate_input(input, fields, columns, strict=strict).rows
        notice = plan_columns(list(columns), fields, keep_columns).notice()
        if notice:
            err_console.print(f"[yellow]note:[/] {escape(notice)}", highlight=False, soft_wrap=True)
        _translate_ray(spec, config, input, output, fields, src, tgt, rows,
                       ray_options(ray, ray_actors, ray_cpus, ray_gpus), overwrite, retry_failed, keep_columns,
                       list(columns))  # fmt: skip
        return
    if input is not None:
        assert output is not None
        check_output_path(output)
        # Before loading a model: bad input fails fast, and the settings a resume key covers are known.
        checked = validate_input(input, fields, columns, strict, load_profile(profile))
        settings = translation_settings(config, spec)
        notice = plan_columns(list(columns), fields, keep_columns).notice()
        if notice:
            err_console.print(f"[yellow]note:[/] {escape(notice)}", highlight=False, soft_wrap=True)
    elif text is not None:
        problem = check_text(text)
        if problem is not None and problem.reason != "empty":
            raise InputError(problem.message.replace("field 'text'", "the text argument"))
    with err_console.status("loading model…"):
        eng = create_engine(spec)
    with eng:
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

            summary = translate_file(translator, input, output, fields, src, tgt, on_progress, checked, keep_columns,
                                     list(columns), settings=settings, overwrite=overwrite,
                                     retry_failed=retry_failed)  # fmt: skip
        changed = f", {summary.changed} changed since last run" if summary.changed else ""
        err_console.print(
            f"translated {summary.written} rows ({summary.skipped} already done{changed}, "
            f"{summary.flagged} flagged, {summary.failed} failed) → {output}"
        )
        if summary.failed:
            detail, retry = failure_summary(summary.failures)
            raise RowsFailedError(summary.failed, summary.total, output, detail, retry)


def _translate_ray(spec: Any, config: Any, input: Path, output: Path, fields: Any, src: str | None,
                   tgt: str | None, rows: int, options: Any, overwrite: bool, retry_failed: bool, keep: str,
                   columns: list[str]) -> None:  # fmt: skip
    """`translate --ray`: the job on a Ray actor pool (redtrans.scale.raydata); Ray shows its own progress."""
    from redtrans.errors import RowsFailedError
    from redtrans.scale.raydata import translate_ray

    summary = translate_ray(spec, config, input, output, options, fields, src, tgt, rows, overwrite=overwrite,
                            retry_failed=retry_failed, keep=keep, columns=columns)  # fmt: skip
    err_console.print(summary.line(output), highlight=False)
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

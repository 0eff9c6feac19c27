"""The `prefs` and `annotate` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from redtrans.cli._app import (
    _DB_DEFAULT,
    DbOpt,
    EngineOpt,
    SetOpt,
    _stage_progress,
    app,
)
from redtrans.console import err_console
from redtrans.errors import InputError

prefs_app = typer.Typer(help="Expert preference data for RePO: generate, prescore, export.", no_args_is_help=True)
app.add_typer(prefs_app, name="prefs")
annotate_app = typer.Typer(help="The expert annotation web app (preferences and human evaluation).",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(annotate_app, name="annotate")


def _existing_store(db: str) -> str:
    """`db`, when it names a store that exists. Commands that only read a store (export, report, serve) refuse a
    SQLite path with no file instead of creating an empty store there and answering from it (a typo in --db);
    a server URL is checked by connecting. Stores are created by the commands that add to them."""
    if "://" in db and not db.startswith("sqlite"):
        return db
    path = db.split(":///", 1)[1] if db.startswith("sqlite") else db
    if path in {"", ":memory:"}:
        return db
    if not Path(path).expanduser().is_file():
        raise InputError(
            f"no annotation store at {path}: check --db (a store is created by `redtrans annotate import` or "
            "`annotate add-user`)"
        )
    return db


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
    min_annotators: Annotated[int | None, typer.Option(
        help="Judgments an item needs to be exported (default: the item's k).")] = None,
    include_accepted: Annotated[bool, typer.Option(
        "--include-accepted", help="Keep judgments whose scores were all accepted suggestions.")] = False,
    profile: Annotated[str | None, typer.Option(help="Profile of the translator that serves the model.")] = None,
    termbase: Annotated[list[str] | None, typer.Option(help="Term base of that translator (repeatable).")] = None,
    examples: Annotated[str | None, typer.Option(help="Translation memory of that translator.")] = None,
) -> None:  # fmt: skip
    """The RePO preference set (TRL preference format) by the export rules of docs/prefs.md: OUTPUT, the
    experts' original pairs in OUTPUT's `.original.jsonl` sibling, what was left out (with reasons) in its
    `.excluded.jsonl` sibling, and OUTPUT.stats.json."""
    from redtrans.config import validate_config
    from redtrans.prefs.config import ExportConfig
    from redtrans.prefs.export import run_export

    if db is not None:
        _existing_store(db)
    values = {"output": output, "db": db, "input": input, "mode": mode, "tau": tau, "tau_auto": tau_auto,
              "min_annotators": min_annotators, "include_accepted": include_accepted or None, "profile": profile,
              "termbases": termbase, "examples": examples}  # fmt: skip
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
    k: Annotated[int | None, typer.Option(
        help="Experts per new item (default: the number of annotators the export carries for it).")] = None,
    prefer: Annotated[str | None, typer.Option(
        help="Decide conflicts (a changed judgment whose updated_at is not newer than the store's): import | store.")
    ] = None,
) -> None:  # fmt: skip
    """Add a Label Studio export (items + judgments) to the store; `prefs export` then applies the rules.

    A re-import updates judgments the export changed later than the store did, and reports each change;
    a judgment that differs without being newer is a conflict: listed, not applied, exit 1 until --prefer."""
    from redtrans.errors import ConflictError
    from redtrans.prefs.config import check_k
    from redtrans.prefs.labelstudio import parse_export
    from redtrans.prefs.store import Store

    if prefer not in (None, "import", "store"):
        raise InputError(f"--prefer takes import or store, not {prefer!r}")
    with Store(db) as store:
        report = store.import_external(parse_export(export), check_k(k) if k is not None else None, prefer)
    for change in report.changes:
        err_console.print(f"changed: {change}", highlight=False)
    for conflict in report.conflicts:
        err_console.print(f"conflict: {conflict}", highlight=False)
    err_console.print(f"{report.items} new items, {report.judgments} new judgments, {len(report.changes)} changed, "
                      f"{report.unchanged} unchanged, {report.degenerate} with identical candidates left out "
                      f"→ {db}")  # fmt: skip
    if report.conflicts:
        raise ConflictError(
            f"{len(report.conflicts)} judgments differ from the store without a newer updated_at: "
            "left as they are; re-run with --prefer import (take the export's) or --prefer store"
        )


@annotate_app.command("serve")
def annotate_serve_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Annotate config (YAML).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store: SQLite path or URL.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    tau: Annotated[float | None, typer.Option(help="Rewrite required when both scores are below it.")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="A reverse proxy (address or CIDR) whose X-Forwarded-For names the client (repeatable).")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="A Host: name the app answers (repeatable; default loopback names; * = any).")] = None,
    set_: SetOpt = None,
) -> None:  # fmt: skip
    """Serve the annotation app (experts score and rewrite; reviewers review; admins follow progress and export)."""
    from redtrans.config import load_config, parse_overrides
    from redtrans.prefs.config import AnnotateConfig
    from redtrans.prefs.web.app import serve

    options = {"db": db, "host": host, "port": port, "tau": tau, "trusted_proxies": trusted_proxy,
               "allowed_hosts": allowed_host}  # fmt: skip
    cfg = load_config(AnnotateConfig, config, {**options, **parse_overrides(set_ or [])})
    _existing_store(cfg.db)
    serve(cfg)


@annotate_app.command("add-user")
def annotate_add_user_cmd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          envvar="REDTRANS_ANNOTATE_PASSWORD", help="At least 8 characters.")],
    db: DbOpt = _DB_DEFAULT,
    role: Annotated[str, typer.Option(help="expert | reviewer | admin")] = "expert",
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
        added, existing, same = store.import_candidates(rows, check_k(k))
    err_console.print(f"{added} items queued ({existing} already there, {failed} failed rows left out, {same} with "
                      f"two identical candidates left out) in {db}")  # fmt: skip


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

    typer.echo(store_report(_existing_store(db), tau), nl=False)

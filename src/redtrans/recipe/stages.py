"""The recipe's stages: each one builds its stage's own config (joined to the others by paths under OUT/) and
calls that stage's entry function; nothing is re-implemented here.

| stage | entry | writes (under OUT/) |
|---|---|---|
| sample | `sampling.stage.run_sample` | sample/journal.jsonl, stats.json, sft.jsonl |
| sft | `train.sft.run_sft` | sft/ (adapter or model, checkpoint-N/) |
| prefs-generate | `prefs.generate.run_generate` | prefs-generate/posts.jsonl, candidates.jsonl |
| prefs-export | `prefs.export.run_export` (reference-rewrite) | prefs-export/preferences(.original).jsonl |
| pairs | both pair files on the items in both (`train.arms.same_items`; Table 3) | pairs/corrected.jsonl, … |
| dpo, dpo-corrected, repo, repo-random | `train.repo.run_repo` with the arm's fields (`train.arms.ARMS`) | dpo/, … |
| t4-<range>-sample, t4-<range>-sft | draw again from sample/journal.jsonl; `run_sft` | Table 4's SFT variants |
| bench | `bench.run.run_bench` per suite | bench/<suite>/results.json, … |
| report | `recipe.report.write_report` | report/report.md, report.html |
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.errors import ConfigError, RedtransError, RowsFailedError
from redtrans.recipe.config import TRAINED, RecipeConfig, stage_values

__all__ = ["Stage", "build_stages", "range_label"]

# Fields of SampleConfig that do not change the journal: a change of these redraws from the journal kept.
SAMPLE_DRAW_FIELDS = {
    "edges", "weights", "exclude", "method", "target_size", "seed", "target_rule", "allow_flagged_targets",
    "sft_formats", "histogram_bins", "max_rows", "batch_size", "score_workers", "concurrent_models", "on_bad_row",
}  # fmt: skip


@dataclass
class Stage:
    name: str
    dir: Path
    config: dict[str, Any]
    """The stage's full config as JSON (recorded in the manifest; part of the fingerprint)."""
    inputs: dict[str, str]
    """Label → file or folder whose checksum binds the stage (upstream artifacts, data, the base model)."""
    deps: list[str]
    """Upstream stages whose outputs are inputs here."""
    run: Callable[[Stage], dict[str, Any]]
    """Does the work (resuming from what the stage folder holds); returns a summary for the manifest."""
    keep_key: Any = None
    """When set: partial work survives a fingerprint change as long as this stays equal (the sampling journal
    for draw-only changes; bench, whose caches are bound per system). None = any change starts afresh."""
    notes: list[str] = field(default_factory=list)


def range_label(low: float, high: float) -> str:
    return f"b{low:g}-{high:g}"


def _abs(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def _base_input(base_model: str) -> dict[str, str]:
    p = Path(base_model).expanduser()
    return {"base_model": str(p.resolve())} if p.exists() else {}


# ------------------------------------------------------------------------------------------------ sample
def _sample_config(recipe: RecipeConfig, out: Path) -> Any:
    from redtrans.sampling.config import load_config as load_sample

    values, source = stage_values(recipe.sample)
    if source is not None:
        return load_sample(source, {"output_dir": str(out)})
    return load_sample(None, {**values, "output_dir": str(out)})


def _sample_stage(recipe: RecipeConfig) -> Stage:
    out = recipe.out / "sample"
    cfg = _sample_config(recipe, out)
    cfg.validate()
    dumped = cfg.model_dump(mode="json")
    inputs: dict[str, str] = {}
    for i, corpus in enumerate(cfg.corpora):
        inputs[f"corpora.{i}.path"] = _abs(corpus.path)
        if corpus.reference_path:
            inputs[f"corpora.{i}.reference_path"] = _abs(corpus.reference_path)

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.sampling.stage import run_sample

        report = run_sample(cfg)
        summary = {"sft_files": report.sft_files, "journal_rows": report.stats["journal"]["rows"],
                   "no_signal": report.stats["journal"].get("no_signal")}  # fmt: skip
        if report.run is not None:
            summary["round_trips"] = {"written": report.run.written, "skipped": report.run.skipped,
                                      "failed": report.run.failed, "rejected": report.run.rejected}  # fmt: skip
            if report.run.failed:
                raise RowsFailedError(report.run.failed, report.run.total, cfg.journal_path, "engine errors")
        return summary

    keep = {k: v for k, v in dumped.items() if k not in SAMPLE_DRAW_FIELDS and k != "output_dir"}
    return Stage("sample", out, dumped, inputs, [], run, keep_key=keep)


def _variant_sample_stage(recipe: RecipeConfig, low: float, high: float) -> Stage:
    """Table 4: the SFT set drawn again from the main journal with only [low, high) kept, same size."""
    from redtrans.sampling.config import SampleConfig

    label = range_label(low, high)
    out = recipe.out / f"t4-{label}-sample"
    main = _sample_config(recipe, recipe.out / "sample")
    edges = sorted({0.0, low, high, 1.0})
    keep = edges.index(low)
    target = recipe.table4.target_size if recipe.table4.target_size is not None else main.target_size
    update = {
        "output_dir": str(out),
        "edges": edges,
        "weights": [1.0] * (len(edges) - 1),
        "exclude": [i for i in range(len(edges) - 1) if i != keep],
        "target_size": target,
    }
    cfg = SampleConfig.model_validate({**main.model_dump(mode="json", by_alias=True), **update})
    journal = recipe.out / "sample" / "journal.jsonl"

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.sampling.stage import draw_and_export

        out.mkdir(parents=True, exist_ok=True)
        link = out / "journal.jsonl"  # the draw reads OUT/<stage>/journal.jsonl: the main journal, linked
        if link.exists() or link.is_symlink():
            link.unlink()
        try:
            link.hardlink_to(journal)
        except OSError:
            shutil.copyfile(journal, link)
        report = draw_and_export(cfg)
        return {"sft_files": report.sft_files, "buckets": report.stats["buckets"]}

    return Stage(f"t4-{label}-sample", out, cfg.model_dump(mode="json"), {"journal": str(journal)}, ["sample"], run)


# ------------------------------------------------------------------------------------------------- train
def _sft_stage(recipe: RecipeConfig, name: str, train_file: Path, dep: str) -> Stage:
    from redtrans.train.sft import load_sft_config

    out = recipe.out / name
    values, source = stage_values(recipe.sft)
    owned = {"train_file": str(train_file), "output_dir": str(out), "model_name_or_path": recipe.base_model}
    # validated without this machine's device checks (a GPU plan drawn on a laptop); run_sft makes them at start
    cfg = (
        load_sft_config(source, owned, hardware=False)
        if source
        else load_sft_config(None, {**values, **owned}, hardware=False)
    )
    inputs = {"train_file": str(train_file), **_base_input(recipe.base_model)}
    if cfg.eval_file:
        inputs["eval_file"] = _abs(cfg.eval_file)

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.train.sft import run_sft

        if recipe.launch:
            record = _launched(recipe, "sft", out, cfg.model_dump(mode="json"))
            return {"output_dir": str(out), "resumed_from": record.get("resumed_from"), "train": record.get("train"),
                    "eval": record.get("eval"), "scores": record.get("scores"), "launched": recipe.launch}  # fmt: skip
        result = run_sft(cfg)
        return {"output_dir": result.output_dir, "resumed_from": result.resumed_from,
                "train": result.train_metrics, "eval": result.eval_metrics, "scores": result.eval_scores}  # fmt: skip

    return Stage(name, out, cfg.model_dump(mode="json"), inputs, [dep], run)


def _prefs_file(recipe: RecipeConfig) -> Path:
    """The corrected pairs (`prefs export`'s X.jsonl); the original pairs are beside it (`original_pairs_path`)."""
    if recipe.prefs.source == "export":
        assert recipe.prefs.export_file is not None
        return Path(recipe.prefs.export_file)
    return recipe.out / "prefs-export" / "preferences.jsonl"


def _pairs_stage(recipe: RecipeConfig) -> Stage:
    """Table 3's data: the corrected and the original pairs, each restricted to the items present in both, so
    every arm learns from the same source items."""
    from redtrans.train.arms import original_pairs_path

    out = recipe.out / "pairs"
    corrected = _prefs_file(recipe)
    original = original_pairs_path(corrected)
    inputs = {"corrected": str(corrected), "original": str(original)}
    deps = ["prefs-export"] if recipe.prefs.source == "reference-rewrite" else []

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.train.arms import same_items

        kept_corrected, kept_original, counts = same_items(_preference_rows(corrected), _preference_rows(original))
        if not counts["items"]:
            raise ConfigError(
                f"pairs: no source item has pairs in both {corrected} and {original}; Table 3 compares the arms on "
                "the same items (set table3: false to train RePO alone)"
            )
        out.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = dict(counts)
        for name, rows in (("corrected", kept_corrected), ("original", kept_original)):
            _write_jsonl(out / f"{name}.jsonl", rows)
            summary[f"{name}_pairs"] = len(rows)
            summary[f"{name}_rewritten"] = sum(bool(r.get("rewritten")) for r in rows)
        return summary

    return Stage("pairs", out, {"rule": "same_items"}, inputs, deps, run)


def _preference_rows(path: Path) -> list[dict[str, Any]]:
    """A preference file's rows as written (every field kept), once `load_preference_rows` has validated it."""
    from redtrans.jsonl import read_jsonl
    from redtrans.train.repo import load_preference_rows

    load_preference_rows(path)  # a bad row is an error naming the file and line
    return [row for _, row in read_jsonl(path)]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _arm_stage(recipe: RecipeConfig, name: str) -> Stage:
    """One arm of Table 3 (or RePO alone): `run_repo` on the arm's pairs with its loss and truth target."""
    from redtrans.config import load_config
    from redtrans.train.arms import ARMS
    from redtrans.train.repo import RePOConfig

    arm = ARMS[name]
    out = recipe.out / name
    values, source = stage_values(recipe.repo)
    if recipe.table3.enabled:
        train_file = recipe.out / "pairs" / f"{arm.pairs}.jsonl"
        deps = ["sft", "pairs"]
    else:
        train_file = _prefs_file(recipe)
        deps = ["sft"] + (["prefs-export"] if recipe.prefs.source == "reference-rewrite" else [])
    owned = {"model_name_or_path": str(recipe.out / "sft"), "train_file": str(train_file), "output_dir": str(out),
             **arm.overrides()}  # fmt: skip
    cfg = load_config(RePOConfig, source, owned) if source else load_config(RePOConfig, None, {**values, **owned})
    if recipe.table3.enabled and int(cfg.trl.get("max_steps", -1)) <= 0:
        raise ConfigError(
            "repo.max_steps: Table 3's arms train on pair sets of different sizes and must take the same number of "
            "optimizer steps; set repo.max_steps (e.g. epochs × corrected pairs / (batch × accumulation × GPUs))"
        )
    inputs = {"sft": str(recipe.out / "sft"), "train_file": str(train_file)}
    if cfg.eval_file:
        inputs["eval_file"] = _abs(cfg.eval_file)

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.jsonl import read_jsonl
        from redtrans.train.repo import run_repo

        if recipe.launch:
            record = _launched(recipe, "repo", out, cfg.model_dump(mode="json"))
            log = out / "logs.jsonl"
            truth = [r["truth_nll"] for _, r in (read_jsonl(log) if log.is_file() else []) if "truth_nll" in r]
            return {"output_dir": str(out), "train": record.get("train"), "eval": record.get("eval"),
                    "truth_nll_first": truth[0] if truth else None, "truth_nll_last": truth[-1] if truth else None,
                    "launched": recipe.launch}  # fmt: skip
        result = run_repo(cfg)
        truth = [h["truth_nll"] for h in result.history if "truth_nll" in h]
        first, last = (truth[0], truth[-1]) if truth else (None, None)
        return {"output_dir": result.output_dir, "train": result.train_metrics, "eval": result.eval_metrics,
                "truth_nll_first": first, "truth_nll_last": last}  # fmt: skip

    return Stage(name, out, cfg.model_dump(mode="json"), inputs, deps, run)


def _launched(recipe: RecipeConfig, command: str, out: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Run `redtrans COMMAND` on `config` under the launcher as a child process (multi-process training); its
    results come back through the run's eval_results.json. A child that fails fails the stage."""
    import yaml

    assert recipe.launch is not None
    out.mkdir(parents=True, exist_ok=True)
    path = out / "launch.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    argv = [*recipe.launch, "-m", "redtrans", command, "-c", str(path)]
    timeout_s = None if recipe.launch_timeout_h is None else recipe.launch_timeout_h * 3600
    code = run_child(argv, timeout_s, recipe.launch_grace_s)
    if code != 0:
        raise RedtransError(f"`{' '.join(argv)}` exited with {code} (its output is above)")
    results = out / "eval_results.json"
    if not results.is_file():
        raise RedtransError(f"`{' '.join(argv)}` wrote no {results}")
    record: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return record


class _Terminated(Exception):
    """SIGTERM reached the recipe while a launched child ran."""


def run_child(argv: list[str], timeout_s: float | None, grace_s: float) -> int:
    """Run `argv` to its end and return its exit code. The child never outlives the recipe: past `timeout_s`,
    on Ctrl-C or on the recipe's own SIGTERM (a scheduler ending the job), it gets SIGTERM, then SIGKILL after
    `grace_s` — a training launcher left running would hold the GPUs and write into the stage's folder."""

    def terminated(signum: int, frame: object) -> None:
        raise _Terminated

    # Installed before the child starts, so no SIGTERM can orphan it. Signal handlers live on the main thread.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if main else None
    child: subprocess.Popen[bytes] | None = None
    try:
        try:
            child = subprocess.Popen(argv)  # noqa: S603 - the user's own launcher
        except OSError as exc:
            raise ConfigError(f"launch: cannot run {argv[0]!r}: {exc}") from None
        return child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        limit = f"{(timeout_s or 0) / 3600:g} h"
        raise RedtransError(f"`{' '.join(argv)}` ran past launch_timeout_h ({limit}) and was stopped") from None
    except _Terminated:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        if child is not None:
            _stop(child, grace_s)  # a no-op when it has exited
        if main:
            signal.signal(signal.SIGTERM, previous)


def _stop(child: subprocess.Popen[bytes], grace_s: float) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# ------------------------------------------------------------------------------------------------- prefs
def trained_spec(recipe: RecipeConfig, name: str) -> Any:
    """The EngineSpec of one of the recipe's models (`base`, `sft`, `dpo`, `repo`, Table 4 variants)."""
    from redtrans.engines.spec import EngineSpec

    if name == "base":
        if recipe.bench.base is not None:
            return recipe.bench.base
        return EngineSpec(kind="hf", model=_hf_model(recipe.base_model), parallel=recipe.bench.parallel,
                          options=dict(recipe.bench.engine_options))  # fmt: skip
    return EngineSpec(kind="hf", model=str((recipe.out / name).resolve()), parallel=recipe.bench.parallel,
                      options=dict(recipe.bench.engine_options))  # fmt: skip


def _hf_model(base_model: str) -> str:
    """A registry name → its .gguf path (the hf engine reads .gguf files); paths stay as they are."""
    p = Path(base_model).expanduser()
    if p.exists():
        return str(p.resolve())
    from redtrans.engines.models import get_spec, model_path
    from redtrans.errors import ModelError

    try:  # where the registry assembles it (the sft stage, which loads it first, does); not assembled here
        return str(model_path(get_spec(base_model)))
    except ModelError:
        return base_model  # a Hub id or a name the hf engine reports on


def _held_out_posts(journal: Path, sft_file: Path, out: Path, limit: int | None) -> int:
    """Journal rows with a reference that are not in the SFT set → posts JSONL for preference generation."""
    from redtrans.jsonl import read_jsonl

    in_sft = {str(row.get("id")) for _, row in read_jsonl(sft_file)} if sft_file.is_file() else set()
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for _, row in read_jsonl(journal):
            if limit is not None and n >= limit:
                break
            if str(row.get("id")) in in_sft or not row.get("reference"):
                continue
            post = {"id": row["id"], "text": row["source"], "reference": row["reference"], "src": row["src"],
                    "tgt": row["tgt"]}  # fmt: skip
            handle.write(json.dumps(post, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(out)
    return n


def _prefs_generate_stage(recipe: RecipeConfig) -> Stage:
    from redtrans.prefs.config import GenerateConfig

    out = recipe.out / "prefs-generate"
    section = recipe.prefs
    systems = [trained_spec(recipe, s) if isinstance(s, str) else s for s in section.systems]
    posts = Path(section.input) if section.input else out / "posts.jsonl"
    cfg = GenerateConfig(
        input=posts, reference=Path(section.reference) if section.reference else None, output=out / "candidates.jsonl",
        systems=systems, sampling=section.sampling, limit=section.limit, profile=section.profile,
        batch_size=section.batch_size,
    )  # fmt: skip
    inputs: dict[str, str] = {}
    deps: list[str] = []
    if section.input:
        inputs["input"] = section.input
        if section.reference:
            inputs["reference"] = section.reference
    else:
        inputs["journal"] = str(recipe.out / "sample" / "journal.jsonl")
        inputs["sft_set"] = str(recipe.out / "sample" / "sft.jsonl")
        deps.append("sample")
    for s in section.systems:
        if s == "sft":
            inputs["sft"] = str(recipe.out / "sft")
            deps.append("sft")
        elif s == "base":
            inputs.update(_base_input(recipe.base_model))

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.prefs.generate import run_generate

        summary: dict[str, Any] = {}
        if not section.input:
            journal, sft_set = Path(inputs["journal"]), Path(inputs["sft_set"])
            summary["posts"] = _held_out_posts(journal, sft_set, posts, section.limit)
            if not summary["posts"]:
                raise ConfigError(
                    f"prefs-generate: every journal row with a reference is in the SFT set ({sft_set}); lower "
                    "sample.target_size or give prefs.input (posts with references)"
                )
        report = run_generate(cfg)  # RowsFailedError after writing everything: the recipe stops, a re-run retries
        summary.update({"written": report.written, "skipped": report.skipped, "total": report.total})
        return summary

    dumped = cfg.model_dump(mode="json")
    return Stage("prefs-generate", out, dumped, inputs, deps, run)


def _prefs_export_stage(recipe: RecipeConfig) -> Stage:
    from redtrans.prefs.config import ExportConfig

    out = recipe.out / "prefs-export"
    candidates = recipe.out / "prefs-generate" / "candidates.jsonl"
    cfg = ExportConfig(mode="reference-rewrite", input=candidates, output=out / "preferences.jsonl",
                       tau_auto=recipe.prefs.tau_auto)  # fmt: skip

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.prefs.export import run_export

        stats = run_export(cfg)
        if not (out / "preferences.jsonl").read_text(encoding="utf-8").strip():
            raise ConfigError(
                f"prefs-export: no preference pair from {candidates} (ties and identical candidates give none); "
                "raise prefs.limit or prefs.sampling.temperature, or lower prefs.tau_auto"
            )
        return stats.to_dict()

    return Stage("prefs-export", out, cfg.model_dump(mode="json"), {"candidates": str(candidates)},
                 ["prefs-generate"], run)  # fmt: skip


# ------------------------------------------------------------------------------------------------- bench
def bench_systems(recipe: RecipeConfig) -> list[str]:
    """The recipe's models benched, first = significance baseline."""
    trained = ["sft", *recipe.arms]
    variants = [f"t4-{range_label(lo, hi)}-sft" for lo, hi in recipe.table4.ranges] if recipe.table4.enabled else []
    if recipe.bench.systems is not None:
        known = {"base", *trained, *variants}
        for name in recipe.bench.systems:
            if name not in known:
                raise ConfigError(f"bench.systems: {name!r} is not one of this recipe's models ({', '.join(known)})")
        return list(recipe.bench.systems)
    return (["base"] if recipe.table3.enabled else []) + trained + variants


def _bench_stage(recipe: RecipeConfig) -> Stage:
    from redtrans.bench.systems import SystemSpec, parse_system

    out = recipe.out / "bench"
    if not recipe.bench.suites:
        raise ConfigError("bench.suites: give at least one suite (data that training never saw)")
    names = bench_systems(recipe)
    specs = [SystemSpec(n, engine=trained_spec(recipe, n), mode=recipe.bench.mode, profile=recipe.bench.profile)
             for n in names]  # fmt: skip
    specs += [parse_system(s) for s in recipe.bench.extra_systems]
    inputs: dict[str, str] = {}
    deps: list[str] = []
    for n in names:
        if n == "base":
            inputs.update(_base_input(recipe.base_model))
        else:
            inputs[f"model.{n}"] = str(recipe.out / n)
            deps.append(n)
    for suite in recipe.bench.suites:
        if suite.data:
            inputs[f"suite.{suite.name}"] = suite.data
    config = {
        "suites": [s.model_dump(mode="json") for s in recipe.bench.suites],
        "systems": [s.config() for s in specs],
        "bootstrap_samples": recipe.bench.bootstrap_samples,
        "profile": recipe.bench.profile,
    }

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.bench import BenchConfig, run_bench
        from redtrans.recipe.manifest import Checksums

        sums = Checksums(recipe.out / ".recipe" / "checksums.json")
        bound_path = out / "systems.json"
        bound = json.loads(bound_path.read_text(encoding="utf-8")) if bound_path.is_file() else {}
        now_bound = {}
        for spec in specs:
            model = inputs.get("base_model") if spec.name == "base" else inputs.get(f"model.{spec.name}")
            now_bound[spec.name] = {"config": spec.config(), "model": sums.of(model) if model else None}
            if spec.name == "base" and recipe.bench.base is None and not Path(recipe.base_model).exists():
                from redtrans.engines.models import resolve_gguf

                resolve_gguf(recipe.base_model)  # assembled from its packages if it is not yet
        sums.save()
        for name, binding in now_bound.items():  # a retrained model's cached hypotheses are stale: drop them
            if bound.get(name) != binding:
                from redtrans.bench.systems import safe_name

                for suite_dir in [out / suite.name for suite in recipe.bench.suites]:
                    for suffix in (".jsonl", ".config.json"):
                        (suite_dir / "hyps" / f"{safe_name(name)}{suffix}").unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        bound_path.write_text(json.dumps(now_bound, indent=2) + "\n", encoding="utf-8")
        failed = total = 0
        summary: dict[str, Any] = {}
        for suite in recipe.bench.suites:
            cfg = BenchConfig(suite=suite.suite, systems=specs, out=out / suite.name, data=suite.data,
                              langs=suite.langs, limit=suite.limit, sample=suite.sample, seed=suite.seed,
                              profile=recipe.bench.profile,
                              bootstrap_samples=recipe.bench.bootstrap_samples)  # fmt: skip
            results = run_bench(cfg, show_progress=False)
            n_failed = sum(s.get("failed", 0) for s in results["systems"])
            failed += n_failed
            total += len(results["segments"]) * len(results["systems"])
            summary[suite.name] = {"segments": len(results["segments"]), "failed": n_failed}
        if failed:
            raise RowsFailedError(failed, total, out, "scored as empty hypotheses")
        return summary

    return Stage("bench", out, config, inputs, deps, run, keep_key={})


def _report_stage(recipe: RecipeConfig, sample_dirs: dict[str, Path]) -> Stage:
    out = recipe.out / "report"
    inputs = {f"bench.{s.name}": str(recipe.out / "bench" / s.name / "results.json") for s in recipe.bench.suites}
    for label, d in sample_dirs.items():
        inputs[f"stats.{label}"] = str(d / "stats.json")

    def run(stage: Stage) -> dict[str, Any]:
        from redtrans.recipe.report import write_report

        paths = write_report(recipe, out)
        return {k: str(v) for k, v in paths.items()}

    config = {"suites": [s.name for s in recipe.bench.suites], "systems": bench_systems(recipe)}
    return Stage("report", out, config, inputs, ["bench"], run)


# --------------------------------------------------------------------------------------------------- all
def build_stages(recipe: RecipeConfig) -> list[Stage]:
    """Every stage of the recipe, in order (each built from its stage's own config class, so a bad field fails
    here, before anything runs)."""
    stages = [_sample_stage(recipe), _sft_stage(recipe, "sft", recipe.out / "sample" / "sft.jsonl", "sample")]
    if recipe.prefs.source == "reference-rewrite":
        stages += [_prefs_generate_stage(recipe), _prefs_export_stage(recipe)]
    if recipe.table3.enabled:
        stages.append(_pairs_stage(recipe))
    stages += [_arm_stage(recipe, arm) for arm in recipe.arms]
    sample_dirs = {"all": recipe.out / "sample"}
    if recipe.table4.enabled:
        for low, high in recipe.table4.ranges:
            variant = _variant_sample_stage(recipe, low, high)
            label = range_label(low, high)
            stages += [variant, _sft_stage(recipe, f"t4-{label}-sft", variant.dir / "sft.jsonl", variant.name)]
            sample_dirs[label] = variant.dir
    stages += [_bench_stage(recipe), _report_stage(recipe, sample_dirs)]
    names = [s.name for s in stages]
    assert all(d in names for s in stages for d in s.deps), "a stage depends on one that is not in the recipe"
    assert set(TRAINED) >= {"sft", *recipe.arms}
    return stages

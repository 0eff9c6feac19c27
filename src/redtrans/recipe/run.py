"""Running the recipe: decide per stage whether it runs, resumes or is skipped, run it, record its manifest.

Per stage, in order:

- its manifest says `done` and the fingerprint (config + input checksums + PROMPT_VERSION) is unchanged → skip;
- same fingerprint but `running` (killed) or `failed` (rows failed) → run again in the same folder: the stage
  resumes from its own checkpoint (`resume_from_checkpoint: auto`) or journal and retries failed rows;
- otherwise (never run, config or inputs changed) → the folder is cleared and the stage starts afresh, except
  where partial work stays valid (`Stage.keep_key`: the sampling journal when only draw fields changed; bench,
  whose hypotheses caches are bound per system and dropped for a retrained model);
- a stage whose upstream runs in this invocation is decided when its turn comes (the upstream may produce the
  same files, and then it is skipped).

`--from S` reruns S and everything after it afresh (the stages before must be done); `--until S` stops after
S; `--dry-run` prints the plan. OUT/recipe.log.jsonl gets one line per decision and per finished stage.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redtrans.errors import ConfigError, RedtransError
from redtrans.prompts import PROMPT_VERSION
from redtrans.recipe.config import RecipeConfig
from redtrans.recipe.manifest import Checksums, fingerprint, now, package_versions, read_manifest, write_manifest
from redtrans.recipe.stages import Stage, build_stages

__all__ = ["Decision", "plan_recipe", "run_recipe"]


@dataclass
class Decision:
    stage: str
    action: str  # run | resume | skip | outside | wait
    reason: str

    def line(self) -> str:
        return f"{self.stage:<16} {self.action:<8} {self.reason}"


def _changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (for the plan's reasons)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


class _Runner:
    def __init__(self, recipe: RecipeConfig, echo: Callable[[str], None]) -> None:
        self.recipe = recipe
        self.echo = echo
        self.stages = build_stages(recipe)
        self.by_name = {s.name: s for s in self.stages}
        self.sums = Checksums(recipe.out / ".recipe" / "checksums.json")
        self.log_path = recipe.out / "recipe.log.jsonl"

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def log(self, **record: Any) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": now(), **record}, ensure_ascii=False, default=str) + "\n")

    def inputs(self, stage: Stage) -> dict[str, str | None]:
        return {label: self.sums.of(path) for label, path in stage.inputs.items()}

    def decide(self, stage: Stage, forced: bool, upstream_runs: set[str]) -> tuple[Decision, dict[str, Any]]:
        """(decision, facts: fingerprint, inputs, keep) — facts only when the inputs could be read."""
        if forced:
            return Decision(stage.name, "run", "--from: rerun afresh"), {}
        waiting = [d for d in stage.deps if d in upstream_runs]
        if waiting:
            return Decision(stage.name, "wait", f"decided after {', '.join(waiting)} (its outputs are inputs)"), {}
        inputs = self.inputs(stage)
        missing = [label for label, digest in inputs.items() if digest is None]
        if missing:
            raise ConfigError(f"recipe stage {stage.name}: input not found: "
                              + ", ".join(f"{m} ({stage.inputs[m]})" for m in missing))  # fmt: skip
        fp = fingerprint(stage.config, inputs)
        keep = None if stage.keep_key is None else fingerprint(stage.keep_key, inputs if stage.keep_key else {})
        facts = {"fingerprint": fp, "inputs": inputs, "keep": keep}
        manifest = read_manifest(stage.dir)
        if manifest is None:
            return Decision(stage.name, "run", "never run"), facts
        same = manifest.get("fingerprint") == fp
        status = manifest.get("status")
        if same and status == "done":
            return Decision(stage.name, "skip", "done; config and inputs unchanged"), facts
        if same:
            why = "killed midway" if status == "running" else f"{status}"
            return Decision(stage.name, "resume", f"{why}: resumes from its checkpoint/journal"), facts
        changes = [f"config.{k}" for k in _changed(manifest.get("config"), stage.config)]
        changes += [f"input {k}" for k in _changed(manifest.get("inputs") or {}, inputs)]
        if manifest.get("prompt_version") != PROMPT_VERSION:
            changes.append("PROMPT_VERSION")
        what = ", ".join(changes[:6]) + (" …" if len(changes) > 6 else "") or "fingerprint"
        if keep is not None and manifest.get("keep") == keep:
            return Decision(stage.name, "resume", f"changed ({what}); its partial work stays valid"), facts
        return Decision(stage.name, "run", f"changed: {what}"), facts

    def execute(self, stage: Stage, decision: Decision, facts: dict[str, Any]) -> None:
        if decision.action == "run" and stage.dir.exists():
            shutil.rmtree(stage.dir)  # afresh: no checkpoint or journal of another config is resumed
        if not facts:
            inputs = self.inputs(stage)
            keep = None if stage.keep_key is None else fingerprint(stage.keep_key, inputs if stage.keep_key else {})
            facts = {"fingerprint": fingerprint(stage.config, inputs), "inputs": inputs, "keep": keep}
        self.sums.save()
        manifest: dict[str, Any] = {
            "stage": stage.name,
            "status": "running",
            "fingerprint": facts["fingerprint"],
            "keep": facts["keep"],
            "inputs": facts["inputs"],
            "input_paths": stage.inputs,
            "config": stage.config,
            "prompt_version": PROMPT_VERSION,
            "versions": package_versions(),
            "action": decision.action,
            "reason": decision.reason,
            "started": now(),
        }
        write_manifest(stage.dir, manifest)
        self.log(stage=stage.name, action=decision.action, reason=decision.reason)
        self.echo(f"recipe: {decision.line()}")
        started = time.perf_counter()
        try:
            result = stage.run(stage)
        except BaseException as exc:
            status = "failed" if isinstance(exc, RedtransError) else "error"
            manifest.update(status=status, error=str(exc), finished=now(),
                            seconds=round(time.perf_counter() - started, 1))  # fmt: skip
            write_manifest(stage.dir, manifest)
            self.log(stage=stage.name, action=status, error=str(exc))
            raise
        seconds = round(time.perf_counter() - started, 1)
        manifest.update(status="done", result=result, finished=now(), seconds=seconds)
        write_manifest(stage.dir, manifest)
        self.log(stage=stage.name, action="done", seconds=seconds, resumed=decision.action == "resume", result=result)
        self.echo(f"recipe: {stage.name} done in {seconds:.1f}s")


def _window(names: list[str], start: str | None, until: str | None) -> tuple[int, int]:
    for given, flag in ((start, "--from"), (until, "--until")):
        if given is not None and given not in names:
            raise ConfigError(f"{flag}: no stage {given!r} in this recipe (stages: {', '.join(names)})")
    first = names.index(start) if start else 0
    last = names.index(until) if until else len(names) - 1
    if last < first:
        raise ConfigError(f"--until {until} comes before --from {start}")
    return first, last


def plan_recipe(recipe: RecipeConfig, start: str | None = None, until: str | None = None) -> list[Decision]:
    """What `run_recipe` would do, without running anything (`--dry-run`)."""
    runner = _Runner(recipe, lambda _: None)
    first, last = _window(runner.names(), start, until)
    out: list[Decision] = []
    runs: set[str] = set()
    for i, stage in enumerate(runner.stages):
        if i < first or i > last:
            out.append(Decision(stage.name, "outside", "before --from" if i < first else "after --until"))
            continue
        try:
            decision, _ = runner.decide(stage, start is not None and i >= first, runs)
        except ConfigError as exc:
            decision = Decision(stage.name, "blocked", str(exc))
        if decision.action in {"run", "resume", "wait"}:
            runs.add(stage.name)
        out.append(decision)
    return out


def run_recipe(
    recipe: RecipeConfig,
    start: str | None = None,
    until: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[Decision]:
    """Run the recipe's stages in order (see the module docstring); returns the decisions taken. A stage's
    `RowsFailedError` stops the recipe (exit 1); the next run retries that stage's failed rows."""
    runner = _Runner(recipe, echo)
    first, last = _window(runner.names(), start, until)
    for stage in runner.stages[:first]:
        manifest = read_manifest(stage.dir)
        if manifest is None or manifest.get("status") != "done":
            raise ConfigError(f"--from {start}: stage {stage.name} before it is not done; run without --from first")
    runner.log(event="start", stages=runner.names()[first : last + 1], output_dir=str(recipe.out))
    taken: list[Decision] = []
    for i in range(first, last + 1):
        stage = runner.stages[i]
        decision, facts = runner.decide(stage, start is not None, set())
        if decision.action == "skip":
            runner.log(stage=stage.name, action="skip", reason=decision.reason)
            echo(f"recipe: {decision.line()}")
        else:
            runner.execute(stage, decision, facts)
        taken.append(decision)
    runner.sums.save()
    runner.log(event="finish")
    return taken

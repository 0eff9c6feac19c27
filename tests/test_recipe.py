"""`redtrans recipe run` end to end: the stand-in engine generates (round trips, preference candidates), the tiny
local Qwen2 model (`redtrans.train.tiny`) is trained (SFT, RePO, then Table 3's arms on an expert export and its
original pairs) and benched through the hf engine.

Re-running skips every stage; editing the SFT config reruns from SFT; a run killed during SFT resumes there from
its checkpoint; `--dry-run` prints the plan and runs nothing, also for a GPU recipe on a machine without one.
Also the sampling fidelity fixes the recipe relies on: failed round trips are no ΔBLEU signal (nor in the means
and histogram), SFT rows carry src/tgt; and the report never stars hypotheses identical to the baseline's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("trl")
pytest.importorskip("peft")

from redtrans.recipe import load_recipe, plan_recipe, run_recipe  # noqa: E402
from redtrans.train.tiny import build_tiny_model, tiny_pairs  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread: the tiny model gains nothing from more on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_recipe(
    folder: Path,
    model: Path,
    sft: dict[str, Any] | None = None,
    launch: list[str] | None = None,
    **sections: Any,
) -> Path:
    pairs = tiny_pairs(48, seed=3)
    _jsonl(folder / "corpus.jsonl", [{"text": p["source"], "reference": p["target"]} for p in pairs[:28]])
    _jsonl(folder / "corpus-en.jsonl", [{"text": p["target"], "reference": p["source"]} for p in pairs[36:48]])
    suite = [{"id": f"z{i}", "source": p["source"], "reference": p["target"], "src": "zh", "tgt": "en"}
             for i, p in enumerate(pairs[28:32])]  # fmt: skip
    suite += [{"id": f"e{i}", "source": p["target"], "reference": p["source"], "src": "en", "tgt": "zh"}
              for i, p in enumerate(pairs[32:36])]  # fmt: skip
    _jsonl(folder / "suite.jsonl", suite)
    recipe = {
        "output_dir": str(folder / "out"),
        "base_model": str(model),
        "sample": {
            "corpora": [{"name": "c", "path": "corpus.jsonl", "src": "zh", "tgt": "en"},
                        {"name": "e", "path": "corpus-en.jsonl", "src": "en", "tgt": "zh"}],
            "m1": {"kind": "standin", "options": {"salt": 1}},
            "m2": {"kind": "standin", "options": {"salt": 2}},
            "target_size": 24,
            "score_workers": 1,
            "sft_formats": ["messages"],
        },
        "sft": {
            "eval_split": 2, "eval_strategy": "no", "eval_generate_rows": 2, "eval_max_new_tokens": 4,
            "per_device_train_batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 0,
            "lr_scheduler_type": "constant", "logging_steps": 1, "save_steps": 2, "max_length": 256,
            "max_steps": 8, "report_to": "none", **(sft or {}),
        },
        "repo": {
            "per_device_train_batch_size": 2, "max_steps": 1, "learning_rate": 1e-3, "logging_steps": 1,
            "max_length": 512, "report_to": "none", "lora_r": 4, "lora_alpha": 8,
        },
        "prefs": {
            "systems": [{"kind": "standin", "options": {"salt": 3}}, {"kind": "standin", "options": {"salt": 4}}],
            "limit": 4,
        },
        "bench": {
            "suites": [{"name": "tiny", "suite": "jsonl", "data": "suite.jsonl"}],
            "base": {"kind": "standin", "options": {"salt": 5}},  # the untrained tiny model answers nothing
            "parallel": 8,
            "bootstrap_samples": 50,
        },
    }  # fmt: skip
    recipe["table3"] = False  # RePO alone on the reference-rewrite pairs; Table 3's arms: test_table3_arms…
    recipe.update(sections)
    if launch:
        recipe["launch"] = launch
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def manifest(out: Path, stage: str) -> dict[str, Any]:
    return json.loads((out / stage / "manifest.json").read_text(encoding="utf-8"))


def actions(decisions: list[Any]) -> dict[str, str]:
    return {d.stage: d.action for d in decisions}


def test_whole_recipe_then_skip_then_sft_edit(tiny_model: Path, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, tiny_model)
    recipe = load_recipe(path)
    out = recipe.out
    taken = run_recipe(recipe, echo=lambda _: None)
    stages = ["sample", "sft", "prefs-generate", "prefs-export", "repo", "bench", "report"]
    assert list(actions(taken)) == stages and set(actions(taken).values()) == {"run"}
    for stage in stages:
        m = manifest(out, stage)
        assert m["status"] == "done" and m["prompt_version"] and m["versions"]["trl"] and m["versions"]["torch"]
        assert m["config"] and isinstance(m["inputs"], dict)
    assert manifest(out, "sft")["inputs"]["train_file"]  # the sampled SFT set's checksum binds SFT
    sft_rows = [json.loads(line) for line in (out / "sample" / "sft.jsonl").read_text().splitlines()]
    directions = {"c": ("zh", "en"), "e": ("en", "zh")}
    assert sft_rows and all((r["src"], r["tgt"]) == directions[r["id"].split(":")[0]] for r in sft_rows)
    prefs = [json.loads(line) for line in (out / "prefs-export" / "preferences.jsonl").read_text().splitlines()]
    assert prefs and any(r["rewritten"] for r in prefs)
    assert (out / "repo" / "adapter_config.json").is_file()
    results = json.loads((out / "bench" / "tiny" / "results.json").read_text())
    assert [s["name"] for s in results["systems"]] == ["sft", "repo"]
    report = (out / "report" / "report.md").read_text()
    assert "avg chrF++" in report and "zh-en chrF++" in report and "en-zh BLEU" in report
    assert "no ΔBLEU signal" in report and "Small sample" in report and "Table 3" not in report
    assert "| sft | 8 |" in report and "| repo | 1 |" in report  # steps from each run's eval_results.json
    page = (out / "report" / "report.html").read_text()
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")

    # unchanged: every stage is skipped
    again = run_recipe(load_recipe(path), echo=lambda _: None)
    assert set(actions(again).values()) == {"skip"}
    # the SFT config edited: the plan and the run start at SFT (sampling kept)
    path = write_recipe(tmp_path, tiny_model, sft={"max_steps": 9})
    plan = actions(plan_recipe(load_recipe(path)))
    assert plan["sample"] == "skip" and plan["sft"] == "run" and plan["repo"] == "wait"
    taken = actions(run_recipe(load_recipe(path), until="sft", echo=lambda _: None))
    assert taken == {"sample": "skip", "sft": "run"}
    assert "max_steps" in manifest(out, "sft")["reason"]


def test_training_stages_under_a_launcher(tiny_model: Path, tmp_path: Path) -> None:
    """`launch` runs SFT and DPO as `LAUNCH -m redtrans sft|repo -c OUT/<stage>/launch.yaml` child processes (here
    the plain interpreter; `accelerate launch --config_file zero3.yaml` on GPUs): done manifests, the results
    read back, and an unchanged re-run skips them."""
    path = write_recipe(tmp_path, tiny_model, launch=[sys.executable])
    taken = actions(run_recipe(load_recipe(path), until="repo", echo=lambda _: None))
    assert taken == {"sample": "run", "sft": "run", "prefs-generate": "run", "prefs-export": "run", "repo": "run"}
    out = tmp_path / "out"
    for stage in ("sft", "repo"):
        m = manifest(out, stage)
        assert m["status"] == "done" and m["result"]["launched"] == [sys.executable]
        assert (out / stage / "launch.yaml").is_file() and (out / stage / "adapter_config.json").is_file()
    assert manifest(out, "sft")["result"]["train"]["train_loss"] > 0
    again = actions(run_recipe(load_recipe(path), until="repo", echo=lambda _: None))
    assert set(again.values()) == {"skip"}


# A launcher stand-in: writes its pid, ignores SIGTERM (as a training job busy in a collective may), sleeps.
STUBBORN = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
)


def _wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the child never started")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_launched_stage_past_its_time_limit_is_stopped(tmp_path: Path) -> None:
    from redtrans.errors import RedtransError
    from redtrans.recipe.stages import run_child

    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(RedtransError, match="ran past launch_timeout_h"):
        run_child([sys.executable, "-c", STUBBORN, str(pid_file)], timeout_s=8, grace_s=1)
    assert time.monotonic() - started < 60  # SIGTERM ignored: killed after the grace, not after its 120 s
    assert _gone(_wait_for_pid(pid_file))


def test_sigterm_to_the_recipe_stops_its_launched_child(tmp_path: Path) -> None:
    """A scheduler ending the recipe (SIGTERM) must not leave the training launcher running: the child gets
    SIGTERM, then SIGKILL after the grace, and the recipe exits 143."""
    pid_file = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys; from redtrans.recipe.stages import run_child; "
        f"run_child([sys.executable, '-c', {STUBBORN!r}, {str(pid_file)!r}], timeout_s=None, grace_s=1)"
    )])  # fmt: skip
    child = _wait_for_pid(pid_file)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    assert _gone(child)


def test_dry_run_prints_the_plan_and_runs_nothing(tiny_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from redtrans.cli import app

    path = write_recipe(tmp_path, tiny_model)
    result = CliRunner().invoke(app, ["recipe", "run", str(path), "--dry-run", "--until", "repo"])
    assert result.exit_code == 0, result.output
    assert "sample" in result.output and "never run" in result.output and "after --until" in result.output
    assert not (tmp_path / "out").exists()
    bad = CliRunner().invoke(app, ["recipe", "run", str(path), "--dry-run", "--from", "nope"])
    assert bad.exit_code == 2 and "no stage 'nope'" in bad.output


def test_killed_during_sft_resumes_from_its_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, tiny_model, sft={"max_steps": 40, "save_steps": 2})
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "redtrans", "recipe", "run", str(path), "--until", "sft"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not list((out / "sft").glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            assert time.monotonic() < deadline, "no SFT checkpoint in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert manifest(out, "sft")["status"] == "running"  # killed: neither done nor failed
    plan = actions(plan_recipe(load_recipe(path), until="sft"))
    assert plan["sample"] == "skip" and plan["sft"] == "resume" and plan["repo"] == "outside"
    taken = actions(run_recipe(load_recipe(path), until="sft", echo=lambda _: None))
    assert taken == {"sample": "skip", "sft": "resume"}
    m = manifest(out, "sft")
    assert m["status"] == "done" and "checkpoint-" in str(m["result"]["resumed_from"])
    log = [json.loads(line) for line in (out / "recipe.log.jsonl").read_text().splitlines()]
    assert any(r.get("stage") == "sft" and r.get("action") == "resume" for r in log)


def test_failed_round_trips_are_no_signal(tmp_path: Path) -> None:
    from redtrans.sampling.config import SampleConfig
    from redtrans.sampling.stage import draw_and_export

    def row(i: int, back_flags: list[str], back: str = "我有猫") -> dict[str, Any]:
        return {"id": f"c:{i}", "corpus": "c", "line": i, "src": "zh", "tgt": "en", "source": "我有猫",
                "reference": "I have a cat", "forward": {"m1": "I have a cat", "m2": "I own a cat"},
                "back": {"m1": back, "m2": "我有一只猫"}, "rt_bleu": {"m1": 1.0, "m2": 0.5}, "delta_bleu": 0.5,
                "flags": {"m1": {"forward": [], "back": back_flags}, "m2": {"forward": [], "back": []}}}  # fmt: skip

    def failed(i: int, back_flags: list[str], back: str = "我有猫") -> dict[str, Any]:
        return {**row(i, back_flags, back), "rt_bleu": {"m1": 0.0, "m2": 0.5}, "delta_bleu": 0.95}

    out = tmp_path / "s"
    _jsonl(out.mkdir() or out / "journal.jsonl",
           [row(1, []), failed(2, ["echo"]), failed(3, ["wrong_language"]), failed(4, [], back="")])  # fmt: skip
    report = draw_and_export(SampleConfig(output_dir=str(out), sft_formats=["messages"]))
    journal = report.stats["journal"]
    assert journal["no_signal"] == 3 and report.stats["after"]["rows"] == 1
    # the means and the "before" histogram cover the one row with a signal, like the buckets
    assert journal["rows"] == 4 and journal["signal_rows"] == 1
    assert journal["mean_rt_bleu"] == {"m1": 1.0, "m2": 0.5} and journal["mean_delta_bleu"] == 0.5
    assert sum(report.stats["before"]["histogram"]["counts"]) == 1 == report.stats["before"]["rows"]
    assert journal["no_signal_flags"] == {"m1.back.echo": 1, "m1.back.wrong_language": 1, "m1.back.empty": 1}
    [sft] = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert sft["id"] == "c:1" and sft["src"] == "zh" and sft["tgt"] == "en"


def write_expert_export(folder: Path) -> Path:
    """An expert export as `prefs export -o preferences.jsonl` writes it: the corrected pairs and, beside them,
    `preferences.original.jsonl` with the experts' original pairs. Items 0–2 were rewritten (two corrected rows
    each, y₁ ≻ y₂ in the original), 3–4 have a better candidate (the same row in both), item 5 only in the
    corrected file (a tie in the original), item 6 only in the original file."""
    from redtrans.prompts import prompt_completion

    pairs = tiny_pairs(8, seed=11)
    corrected: list[dict[str, Any]] = []
    original: list[dict[str, Any]] = []
    for i, p in enumerate(pairs[:7]):
        prompt = prompt_completion(p["source"], p["target"], "zh", "en")["prompt"]
        y1, y2 = pairs[i + 1]["target"], "I has " + pairs[i + 1]["target"].split(" ", 2)[-1]
        base = {"prompt": prompt, "source_id": f"s{i}"}
        if i < 3:
            corrected += [{**base, "id": f"s{i}-{j}", "chosen": p["target"], "rejected": bad, "rewritten": True}
                          for j, bad in enumerate((y1, y2))]  # fmt: skip
            original.append({**base, "id": f"s{i}", "chosen": y1, "rejected": y2, "rewritten": False})
        elif i < 5:
            row = {**base, "id": f"s{i}", "chosen": p["target"], "rejected": y1, "rewritten": False}
            corrected.append(row)
            original.append(dict(row))
        elif i == 5:
            corrected.append({**base, "id": f"s{i}", "chosen": p["target"], "rejected": y1, "rewritten": False})
        else:
            original.append({**base, "id": f"s{i}", "chosen": y1, "rejected": y2, "rewritten": False})
    (folder / "prefs").mkdir()
    _jsonl(folder / "prefs" / "preferences.original.jsonl", original)
    return _jsonl(folder / "prefs" / "preferences.jsonl", corrected)


def test_table3_arms_on_the_same_items_steps_and_seed(tiny_model: Path, tmp_path: Path) -> None:
    """Item 3 of issue 31: DPO on the experts' original pairs, DPO on the corrected pairs, RePO and RePO with
    random rewrites — trained on the same source items, steps and seed, benched, and reported in Table 3."""
    export = write_expert_export(tmp_path)
    path = write_recipe(tmp_path, tiny_model, prefs={"source": "export", "export_file": str(export)},
                        table3={"enabled": True, "random_rewrites": True})  # fmt: skip
    recipe = load_recipe(path)
    out = recipe.out
    arms = ["dpo", "dpo-corrected", "repo", "repo-random"]
    assert recipe.arms == arms
    taken = actions(run_recipe(recipe, echo=lambda _: None))
    assert list(taken) == ["sample", "sft", "pairs", *arms, "bench", "report"]
    pairs = manifest(out, "pairs")["result"]
    assert (pairs["items"], pairs["only_corrected"], pairs["only_original"]) == (5, 1, 1)
    assert (pairs["corrected_pairs"], pairs["original_pairs"], pairs["corrected_rewritten"]) == (8, 5, 6)
    records = {arm: json.loads((out / arm / "eval_results.json").read_text()) for arm in arms}
    assert {arm: r["train_pairs"] for arm, r in records.items()} == {"dpo": 5, "dpo-corrected": 8, "repo": 8,
                                                                     "repo-random": 8}  # fmt: skip
    assert {arm: (r["loss"], r["truth_target"]) for arm, r in records.items()} == {
        "dpo": ("dpo", "own"), "dpo-corrected": ("dpo", "own"), "repo": ("repo", "own"),
        "repo-random": ("repo", "other_item")}  # fmt: skip
    assert {r["global_step"] for r in records.values()} == {1}
    configs = [manifest(out, arm)["config"] for arm in arms]
    assert len({(c["trl"]["max_steps"], c["trl"].get("seed"), c["lambda_truth"]) for c in configs}) == 1
    results = json.loads((out / "bench" / "tiny" / "results.json").read_text())
    assert [s["name"] for s in results["systems"]] == ["base", "sft", *arms]
    report = (out / "report" / "report.md").read_text()
    assert "## Table 3" in report
    for label in ("DPO (paper's baseline)", "DPO + corrected pairs", "| RePO |", "RePO, random rewrites (ablation)"):
        assert label in report
    assert "| 5 (0) |" in report and "| 8 (6) |" in report  # train pairs (rewritten) per arm's pair set
    assert "at this scale the arms are noise" in report or "Different from DPO at p < 0.05" in report
    assert "Fewer than 30 segments" in report
    page = (out / "report" / "report.html").read_text()
    assert "Table 3" in page and "<script" not in page


def test_table3_needs_max_steps(tiny_model: Path, tmp_path: Path) -> None:
    from redtrans.errors import ConfigError
    from redtrans.recipe.stages import build_stages

    export = write_expert_export(tmp_path)
    path = write_recipe(tmp_path, tiny_model, prefs={"source": "export", "export_file": str(export)}, table3=True)
    data = yaml.safe_load(path.read_text())
    del data["repo"]["max_steps"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="max_steps"):
        build_stages(load_recipe(path))
    # reference-rewrite: the DPO baseline reads the original pairs prefs export writes beside its file
    data["repo"]["max_steps"] = 2
    data.pop("prefs")
    path.write_text(yaml.safe_dump(data))
    [pairs] = [s for s in build_stages(load_recipe(path)) if s.name == "pairs"]
    assert pairs.inputs["original"].endswith("prefs-export/preferences.original.jsonl")


def test_original_pairs_file_name_is_the_exports() -> None:
    from redtrans.prefs.export import sibling
    from redtrans.train.arms import original_pairs_path

    for name in ("runs/prefs/preferences.jsonl", "prefs.json", "x"):
        assert original_pairs_path(name) == sibling(Path(name), "original")


def test_gpu_recipe_plans_on_a_machine_without_a_gpu() -> None:
    """`recipe run examples/recipes/qwen2.5-7b-gpu.yaml --dry-run` validates every stage config without TRL's
    hardware checks (bf16 on CPU); the training stages make them when they start."""
    import torch
    from typer.testing import CliRunner

    from redtrans.cli import app

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    example = Path(__file__).parent.parent / "examples" / "recipes" / "qwen2.5-7b-gpu.yaml"
    result = CliRunner().invoke(app, ["recipe", "run", str(example), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "bf16" not in result.output and "dpo-corrected" in result.output and "repo" in result.output


def test_report_never_stars_hypotheses_identical_to_the_baseline() -> None:
    """sacrebleu gives a zero difference its smallest p (1/(n+1)); a system identical to the baseline on every
    segment is marked (=), not significant."""
    from redtrans.recipe.report import build_tables

    sig = {"ci95": 1.0, "p_value": 1 / 1001}
    results = {
        "systems": [{"name": "base"}, {"name": "same"}, {"name": "other"}],
        "slices": [{"group": "direction", "key": "zh-en", "n": 40,
                    "scores": {n: {"chrf++": 50.0, "bleu_100": 20.0} for n in ("base", "same", "other")}}],
        "significance": {"zh-en": {"baseline": "base", "changed": {"same": 0, "other": 12},
                                   "systems": {n: {"chrf++": sig, "bleu": sig} for n in ("base", "same", "other")}}},
    }  # fmt: skip
    rows = {row[0]: row for row in build_tables(results)["rows"]}
    assert rows["same"][1:] == ["50.00 ±1.00 (=)", "20.00 ±1.00 (=)"]
    assert rows["other"][1:] == ["50.00 ±1.00*", "20.00 ±1.00*"]
    assert rows["base"][1:] == ["50.00 ±1.00", "20.00 ±1.00"]


def test_report_page_escapes_every_value() -> None:
    """The recipe's page renders through bench's page template settings (autoescape, an unknown name an error):
    every section, no value unescaped."""
    from redtrans.recipe.report import render_html

    evil = "<script>x</script>"
    report = {
        "root": evil, "base_model": "m&m",
        "suites": [{"name": "gone", "missing": True},
                   {"name": "s", "missing": False, "suite": "redtrans-bench", "segments": 3, "license": evil,
                    "small_note": "few", "header": ["system", evil], "rows": [["base", evil]],
                    "slice_header": ["slice"], "slice_rows": [[evil]]}],
        "table3": {"header": ["arm"], "rows": [[evil]], "note": "noise"},
        "sampling": [{"label": "all", "line": evil, "rows": [[evil]]}], "bucket_header": ["bucket"],
        "training": [[evil]], "training_header": ["model"],
    }  # fmt: skip
    page = render_html(report)
    assert "<script>" not in page and page.count("&lt;script&gt;") == 9 and "m&amp;m" in page
    for section in ("(no results yet)", "Table 3: RePO against its baselines", "Sampling statistics", "Training"):
        assert section in page

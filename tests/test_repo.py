"""`redtrans repo` on the tiny local model (no network): the loss against an independent computation from the
model's logits, λ = 0 against TRL's own sigmoid DPO, learning, the LoRA path into the `hf` engine, and a real
2-process `accelerate launch`. The definition checked is the one in docs/training.md ("RePO")."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from redtrans.errors import ConfigError  # noqa: E402
from redtrans.prompts import prompt_completion  # noqa: E402
from redtrans.train.repo import RePOConfig, build_repo_trainer, load_repo_config, run_repo  # noqa: E402
from redtrans.train.tiny import build_tiny_model, tiny_pairs  # noqa: E402

BETA = 0.1


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def preference_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Pairs in the export's form: a y_t (rewritten) yields two rows, ordinary rows have a better candidate."""
    pairs = tiny_pairs(n + 1, seed=seed)
    rows = []
    for i, p in enumerate(pairs[:n]):
        prompt = prompt_completion(p["source"], p["target"], "zh", "en")["prompt"]
        wrong = pairs[i + 1]["target"]
        if i % 3 == 0:  # an expert rewrite y_t ≻ two poor candidates: two rows with the same chosen answer
            for j, bad in enumerate((wrong, "I has " + wrong.split(" ", 2)[-1])):
                rows.append(
                    {
                        "id": f"r{i}-{j}",
                        "prompt": prompt,
                        "chosen": [{"role": "assistant", "content": p["target"]}],
                        "rejected": [{"role": "assistant", "content": bad}],
                        "rewritten": True,
                    }
                )
        else:
            rows.append(
                {
                    "id": f"p{i}",
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": p["target"]}],
                    "rejected": [{"role": "assistant", "content": wrong}],
                    "rewritten": False,
                }
            )
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def cfg(model: Path, data: Path, out: Path, **kw: Any) -> RePOConfig:
    values: dict[str, Any] = {
        "model_name_or_path": str(model),
        "train_file": str(data),
        "output_dir": str(out),
        "use_peft": False,
        "beta": BETA,
        "report_to": "none",
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "max_length": 256,
        "seed": 0,
    }
    values.update(kw)
    return RePOConfig.model_validate(values)


# ------------------------------------------------------------------------------- the independent computation


def completion_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(token) over each completion, mean NLL per completion token), from plain logits."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    mask = batch["completion_mask"][:, 1:].float()
    summed = (logp * mask).sum(1)
    return summed, -summed / mask.sum(1)


def expected_loss(policy: Any, ref: Any, batch: dict[str, torch.Tensor], lam: float, rows: torch.Tensor) -> float:
    """L = mean_i −log σ(β[(log π(y_w)−log π_ref(y_w)) − (log π(y_l)−log π_ref(y_l))])
    + λ · Σ_i r_i·NLL_i / Σ_i r_i (0 without r), NLL_i = per-token mean NLL of the chosen answer of pair i."""
    pol, pol_nll = completion_logps(policy, batch)
    ref_logps, _ = completion_logps(ref, batch)
    pc, pr = pol.chunk(2)
    rc, rr = ref_logps.chunk(2)
    dpo = (-F.logsigmoid(BETA * ((pc - rc) - (pr - rr)))).mean()
    nll_chosen = pol_nll.chunk(2)[0]
    r = rows.float()
    truth = (nll_chosen * r).sum() / r.sum() if r.sum() > 0 else torch.tensor(0.0)
    return float(dpo + lam * truth)


def batch_of(trainer: Any, idx: list[int]) -> dict[str, torch.Tensor]:
    return trainer.data_collator([trainer.train_dataset[i] for i in idx])


# ------------------------------------------------------------------------------------------------- tests


def test_config_takes_trl_fields_under_trls_names(tmp_path: Path) -> None:
    c = load_repo_config(None, {"beta": 0.25, "learning_rate": 1e-5, "loss": "dpo", "lambda_truth": 2})
    assert c.trl == {"beta": 0.25, "learning_rate": 1e-5} and c.effective_lambda == 0.0
    args = c.dpo_args()
    assert args.beta == 0.25 and args.learning_rate == 1e-5 and args.loss_type == ["sigmoid"]
    assert load_repo_config(None, {"save_strategy": False}).trl["save_strategy"] == "no"  # YAML's unquoted `no`
    assert load_repo_config(None, {"learning_rate": "2e-4"}).dpo_args().learning_rate == 2e-4  # YAML 1.1: a str
    with pytest.raises(ConfigError, match="beta"):
        load_repo_config(None, {"beta": "high"})
    with pytest.raises(ConfigError, match="unknown field"):
        load_repo_config(None, {"lambda": 1.0})
    with pytest.raises(ConfigError, match="truth_term"):
        load_repo_config(None, {"truth_term": "some"})
    with pytest.raises(ConfigError, match="lr_scheduler_type|SchedulerType"):  # TRL's own checks, at load
        load_repo_config(None, {"lr_scheduler_type": "sometimes"})


def test_loss_equals_independent_computation(tiny_model: Path, tmp_path: Path) -> None:
    rows = preference_rows(6)  # rows 0,1 rewritten (same y_t), 2,3 ordinary, 4,5 rewritten (same y_t), …
    data = write_rows(tmp_path / "prefs.jsonl", rows)
    setup = build_repo_trainer(cfg(tiny_model, data, tmp_path / "out", lambda_truth=0.7))
    trainer = setup.trainer
    model, ref = trainer.model, trainer.ref_model
    with torch.no_grad():  # move the policy away from the reference so the DPO term is not trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    idx = [0, 1, 2, 3, 4]
    batch = batch_of(trainer, idx)
    assert batch["rewritten"].tolist() == [rows[i]["rewritten"] for i in idx] == [True, True, False, False, True]
    model.train()
    got = float(trainer.compute_loss(model, dict(batch)))
    want = expected_loss(model, ref, batch, 0.7, batch["rewritten"])
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # a y_t giving two pair rows counts twice: rows 0 and 1 share it, so T ≠ the mean over distinct y_t
    assert trainer._metrics["train"]["truth_nll"][-1] == pytest.approx(
        (want - expected_loss(model, ref, batch, 0.0, batch["rewritten"])) / 0.7, rel=1e-4
    )
    # no rewritten row in the batch: the truth term is 0
    plain = batch_of(trainer, [2])
    assert not plain["rewritten"].any()
    assert float(trainer.compute_loss(model, dict(plain))) == pytest.approx(
        expected_loss(model, ref, plain, 0.0, plain["rewritten"]), rel=1e-5
    )
    # the RPO-style ablation: every chosen answer
    trainer.truth_term = "all_chosen"
    all_rows = torch.ones_like(batch["rewritten"])
    assert float(trainer.compute_loss(model, dict(batch))) == pytest.approx(
        expected_loss(model, ref, batch, 0.7, all_rows), rel=1e-5
    )


def test_lambda_zero_is_trls_sigmoid_dpo(tiny_model: Path, tmp_path: Path) -> None:
    from trl import DPOTrainer

    rows = preference_rows(6)
    data = write_rows(tmp_path / "prefs.jsonl", rows)
    ours = build_repo_trainer(cfg(tiny_model, data, tmp_path / "a", loss="dpo", lambda_truth=3.0)).trainer
    assert ours.lambda_truth == 0.0
    with torch.no_grad():
        for p in ours.model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    c = cfg(tiny_model, data, tmp_path / "b")
    theirs = DPOTrainer(
        model=copy.deepcopy(ours.model),
        ref_model=copy.deepcopy(ours.ref_model),
        args=c.dpo_args(has_eval=False),
        train_dataset=ours.train_dataset.remove_columns(["rewritten"]),
        processing_class=ours.processing_class,
    )
    idx = [0, 1, 2, 3, 4, 5]
    batch = batch_of(ours, idx)
    plain = {k: v for k, v in batch.items() if k != "rewritten"}
    ours.model.train()
    theirs.model.train()
    a = float(ours.compute_loss(ours.model, dict(batch)))
    b = float(theirs.compute_loss(theirs.model, dict(plain)))
    assert a == pytest.approx(b, rel=1e-6, abs=1e-7)
    assert "truth_nll" in ours._metrics["train"]  # the baseline still reports the truth NLL


def test_training_raises_logp_of_rewrite_and_margin(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    rows = preference_rows(12)
    data = write_rows(tmp_path / "prefs.jsonl", rows)
    out = tmp_path / "out"
    c = cfg(tiny_model, data, out, max_steps=8, learning_rate=2e-3, lr_scheduler_type="constant", lambda_truth=1.0)
    setup = build_repo_trainer(c)
    ref = setup.trainer.ref_model
    rewritten_idx = [i for i, r in enumerate(rows) if r["rewritten"]]
    batch = batch_of(setup.trainer, list(range(len(rows))))
    before_logps, _ = completion_logps(ref, batch)
    del setup
    result = run_repo(c)
    trained = AutoModelForCausalLM.from_pretrained(result.output_dir)
    after_logps, _ = completion_logps(trained, batch)
    chosen_before, rejected_before = before_logps.chunk(2)
    chosen_after, rejected_after = after_logps.chunk(2)
    # log π(y_t | x) rises on the rewritten rows
    assert (chosen_after[rewritten_idx] - chosen_before[rewritten_idx]).mean() > 0
    # the reward margin β[(log π/π_ref)(y_w) − (log π/π_ref)(y_l)] grows from 0
    margin = BETA * ((chosen_after - chosen_before) - (rejected_after - rejected_before))
    assert margin.mean() > 0.05
    logged = [h for h in result.history if "rewards/margins" in h]
    assert logged[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # π = π_ref at the first step
    assert logged[-1]["rewards/margins"] > logged[0]["rewards/margins"]
    assert all("truth_nll" in h for h in logged)
    assert logged[-1]["truth_nll"] < logged[0]["truth_nll"]
    record = json.loads((out / "eval_results.json").read_text())
    assert record["lambda_truth"] == 1.0 and record["train_rewritten"] == sum(r["rewritten"] for r in rows)
    assert (out / "logs.jsonl").is_file()


def test_lora_path_from_sft_adapter_into_hf_engine(tiny_model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from redtrans.engines.base import GenRequest
    from redtrans.engines.spec import create_engine
    from redtrans.prompts import translation_messages

    # an SFT adapter (non-zero, so the merged SFT model differs from its base)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    sft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in sft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    sft_dir = tmp_path / "sft"
    sft.save_pretrained(sft_dir)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(sft_dir)

    rows = preference_rows(9)
    train = write_rows(tmp_path / "train.jsonl", rows[:8])
    held = write_rows(tmp_path / "held.jsonl", preference_rows(9, seed=5)[:4])
    out = tmp_path / "out"
    c = cfg(
        sft_dir,
        train,
        out,
        use_peft=True,
        lora_r=4,
        eval_file=str(held),
        max_steps=2,
        learning_rate=1e-3,
        merge_adapter=True,
    )
    result = run_repo(c)
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str((out / "base").resolve()) == result.base_model
    logged = [h for h in result.history if "rewards/margins" in h]
    # the reference is the adapter switched off = the merged SFT model: the first step's rewards are 0
    assert logged[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert "truth_nll" in logged[0] and "eval_truth_nll" in result.eval_metrics
    assert result.merged_dir and (Path(result.merged_dir) / "config.json").is_file()

    engine = create_engine(kind="hf", model=str(out), options={"device": "cpu"})
    msgs = translation_messages("我有两只猫", "zh", "en")
    res = engine.generate([GenRequest(messages=msgs, max_tokens=4, temperature=0.0)])
    assert len(res) == 1 and isinstance(res[0].text, str)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_accelerate_launch(tiny_model: Path, tmp_path: Path) -> None:
    data = write_rows(tmp_path / "prefs.jsonl", preference_rows(12))  # 16 pairs
    out = tmp_path / "out"
    config = tmp_path / "repo.yaml"
    config.write_text(
        "\n".join(
            [
                f"model_name_or_path: {tiny_model}",
                f"train_file: {data}",
                f"output_dir: {out}",
                "lora_r: 4",
                "per_device_train_batch_size: 4",
                "learning_rate: 1.0e-3",
                "logging_steps: 1",
                "save_strategy: 'no'",
                "report_to: none",
                "max_length: 256",
            ]
        )
        + "\n"
    )
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(accelerate),
        "launch",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--multi_gpu",  # torchrun; without GPUs the run trains on CPU over gloo
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "redtrans",
        "repo",
        "--config",
        str(config),
        "--set",
        "max_steps=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((out / "eval_results.json").read_text())
    assert record["world_size"] == 2 and record["global_step"] == 2
    logs = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all("truth_nll" in r for r in steps)
    assert (out / "adapter_model.safetensors").is_file()
    assert proc.stderr.count("repo: ") == 1  # one summary line, from the main process

"""`redtrans repo` on the tiny local model (no network): the loss against an independent computation from the
model's logits (both truth units), one objective per optimizer step whatever the micro-batching, λ = 0 against
TRL's own sigmoid DPO, the random-rewrite ablation's truth answers, learning, the LoRA path (dropout kept) into
the `hf` engine, and a real 2-process `accelerate launch` against one process. The definition checked is the one
in docs/training.md ("RePO")."""

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


def rows_with_rewrites(n: int, rewritten: set[int], seed: int = 0) -> list[dict[str, Any]]:
    """`n` pairs of different lengths; those in `rewritten` have an expert rewrite as the chosen answer."""
    pairs = tiny_pairs(n + 1, seed=seed)
    return [
        {
            "id": f"q{i}",
            "prompt": prompt_completion(p["source"], p["target"], "zh", "en")["prompt"],
            "chosen": [{"role": "assistant", "content": p["target"]}],
            "rejected": [{"role": "assistant", "content": pairs[i + 1]["target"]}],
            "rewritten": i in rewritten,
        }
        for i, p in enumerate(pairs[:n])
    ]


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


def completion_logps(model: Any, batch: dict[str, torch.Tensor], prefix: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(token) over each completion, mean NLL per completion token), from plain logits."""
    ids = batch[f"{prefix}input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch[f"{prefix}attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = batch[f"{prefix}completion_mask"][:, 1:].float()
    summed = (logp * mask).sum(1)
    return summed, -summed / mask.sum(1)


def expected_loss(
    policy: Any,
    ref: Any,
    batch: dict[str, torch.Tensor],
    lam: float,
    rows: torch.Tensor,
    reduction: str = "sequence",
    truth_prefix: str = "",
) -> float:
    """L = mean_i [ −log σ(β[(log π(y_w)−log π_ref(y_w)) − (log π(y_l)−log π_ref(y_l))]) + λ·r_i·T_i ],
    T_i = −log π(y_t,i|x_i) (sequence) or that per token (token_mean); y_t is the chosen answer, or the batch's
    `truth_*` sequences with truth_prefix="truth_"."""
    pol, pol_nll = completion_logps(policy, batch)
    ref_logps, _ = completion_logps(ref, batch)
    pc, pr = pol.chunk(2)
    rc, rr = ref_logps.chunk(2)
    dpo = -F.logsigmoid(BETA * ((pc - rc) - (pr - rr)))
    if truth_prefix:
        t_logps, t_mean = completion_logps(policy, batch, truth_prefix)
    else:
        t_logps, t_mean = pc, pol_nll.chunk(2)[0]
    truth = -t_logps if reduction == "sequence" else t_mean
    return float((dpo + lam * rows.float() * truth).mean())


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
    with pytest.raises(ConfigError, match="truth_reduction"):
        load_repo_config(None, {"truth_reduction": "mean"})
    assert load_repo_config(None, {}).truth_reduction == "sequence"


def test_gpu_config_validates_on_a_cpu_and_checks_the_hardware_when_run(tmp_path: Path) -> None:
    """A plan for a bf16 GPU run is drawn on a machine without one; building the run's arguments checks it."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    c = load_repo_config(None, {"bf16": True, "tf32": True, "output_dir": str(tmp_path)})
    assert c.bf16 is True and c.trl["tf32"] is True
    with pytest.raises(ValueError, match="bf16|tf32"):
        c.dpo_args()


@pytest.mark.parametrize("reduction", ["sequence", "token_mean"])
def test_loss_equals_independent_computation(tiny_model: Path, tmp_path: Path, reduction: str) -> None:
    rows = preference_rows(6)  # rows 0,1 rewritten (same y_t), 2,3 ordinary, 4,5 rewritten (same y_t), …
    data = write_rows(tmp_path / "prefs.jsonl", rows)
    setup = build_repo_trainer(cfg(tiny_model, data, tmp_path / "out", lambda_truth=0.7, truth_reduction=reduction))
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
    want = expected_loss(model, ref, batch, 0.7, batch["rewritten"], reduction)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # truth_nll: the per-token mean NLL over the rewritten rows (a y_t giving two pair rows counts twice)
    _, per_token = completion_logps(model, batch)
    r = batch["rewritten"].float()
    assert trainer._metrics["train"]["truth_nll"][-1] == pytest.approx(
        float((per_token.chunk(2)[0] * r).sum() / r.sum()), rel=1e-4
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
        expected_loss(model, ref, batch, 0.7, all_rows, reduction), rel=1e-5
    )


def one_step(trainer: Any, idx: list[int], micro: int) -> tuple[float, torch.Tensor]:
    """One optimizer step's loss (as the Trainer logs it) and gradient over rows `idx` in micro-batches of `micro`,
    through the Trainer's own loop pieces: get_batch_samples (counts the step's items) → training_step each."""
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    micro_batches = [batch_of(trainer, idx[i : i + micro]) for i in range(0, len(idx), micro)]
    batches, num_items = trainer.get_batch_samples(iter(micro_batches), len(micro_batches), trainer.args.device)
    trainer.current_gradient_accumulation_steps = len(batches)
    loss = sum(float(trainer.training_step(model, b, num_items)) for b in batches)
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss, grads


def five_percent_trainer(model: Path, tmp_path: Path) -> Any:
    """40 pairs of different lengths, 2 of them (5%) rewritten; the policy moved off the reference."""
    rows = rows_with_rewrites(40, {3, 17})
    assert len({len(r["chosen"][0]["content"]) for r in rows[:8]}) > 1  # a batch of 8 is padded
    data = write_rows(tmp_path / "prefs.jsonl", rows)
    trainer = build_repo_trainer(cfg(model, data, tmp_path / "out", lambda_truth=1.0)).trainer
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return trainer


def test_one_objective_per_step_whatever_the_micro_batching(tiny_model: Path, tmp_path: Path) -> None:
    """Item 1 of issue 31: the same 8 rows at micro-batch 1 × 8 accumulation and 8 × 1 give the same loss and
    gradients (padding masked), and that loss is the mean over the 8 pairs of ℓ_DPO,i + λ·r_i·T_i."""
    trainer = five_percent_trainer(tiny_model, tmp_path)
    eight = list(range(8))
    loss_a, grad_a = one_step(trainer, eight, 1)
    loss_b, grad_b = one_step(trainer, eight, 8)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert float((grad_a - grad_b).norm() / grad_b.norm()) < 1e-5
    batch = batch_of(trainer, eight)
    assert loss_b == pytest.approx(expected_loss(trainer.model, trainer.ref_model, batch, 1.0, batch["rewritten"]),
                                   rel=1e-5)  # fmt: skip


def test_truth_weight_does_not_depend_on_micro_batch_size(tiny_model: Path, tmp_path: Path) -> None:
    """With 5% rewritten rows the truth term weighs 5% of λ at micro-batch 1, 2 and 8 (it was λ·P(micro-batch
    holds a rewritten row): 0.05, 0.10, 0.40 here)."""
    trainer = five_percent_trainer(tiny_model, tmp_path)
    everything = list(range(40))
    full = batch_of(trainer, everything)
    truth = -completion_logps(trainer.model, full)[0].chunk(2)[0]
    mean_truth = float(truth[full["rewritten"]].mean())
    for micro in (1, 2, 8):
        trainer.lambda_truth = 1.0
        with_truth, _ = one_step(trainer, everything, micro)
        trainer.lambda_truth = 0.0
        without, _ = one_step(trainer, everything, micro)
        assert (with_truth - without) / mean_truth == pytest.approx(0.05, rel=1e-4), micro


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


def test_random_rewrite_ablation_trains_on_another_items_rewrite(tiny_model: Path, tmp_path: Path) -> None:
    """truth_target: other_item — each rewritten row's truth term uses another item's rewrite (both rows of one
    item the same one), the DPO pairs keep their own; the loss is the formula with those truth answers."""
    from redtrans.train.repo import other_item_truth

    rows = preference_rows(9)  # items 0, 3, 6 rewritten, two rows each
    shuffled = other_item_truth(rows, "rewritten", seed=1)
    rewritten = [r for r in shuffled if r["rewritten"]]
    assert all(r["truth"] != r["chosen"] for r in rewritten)
    assert sorted(json.dumps(r["truth"]) for r in rewritten) == sorted(json.dumps(r["chosen"]) for r in rewritten)
    by_item: dict[str, set[str]] = {}
    for r in rewritten:
        by_item.setdefault(r["id"].split("-")[0], set()).add(json.dumps(r["truth"]))
    assert all(len(v) == 1 for v in by_item.values())
    assert all(r["truth"] == r["chosen"] for r in shuffled if not r["rewritten"])
    assert [{k: r[k] for k in rows[0]} for r in shuffled] == rows  # the pairs are unchanged
    with pytest.raises(ConfigError, match="two items"):
        other_item_truth(preference_rows(2), "rewritten")

    data = write_rows(tmp_path / "prefs.jsonl", rows)
    c = cfg(tiny_model, data, tmp_path / "out", truth_target="other_item", lambda_truth=0.7)
    trainer = build_repo_trainer(c).trainer
    model, ref = trainer.model, trainer.ref_model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    batch = batch_of(trainer, [0, 1, 2, 3])
    assert "truth_input_ids" in batch and not torch.equal(batch["truth_input_ids"][0], batch["input_ids"][0])
    model.train()
    got = float(trainer.compute_loss(model, dict(batch)))
    assert got == pytest.approx(expected_loss(model, ref, batch, 0.7, batch["rewritten"], truth_prefix="truth_"),
                                rel=1e-5)  # fmt: skip
    assert got != pytest.approx(expected_loss(model, ref, batch, 0.7, batch["rewritten"]), rel=1e-3)
    # truth_nll stays the NLL of the row's own y_t (comparable across arms); truth_target_nll is what was trained on
    r = batch["rewritten"].float()
    own, other = completion_logps(model, batch)[1].chunk(2)[0], completion_logps(model, batch, "truth_")[1]
    metrics = trainer._metrics["train"]
    assert metrics["truth_nll"][-1] == pytest.approx(float((own * r).sum() / r.sum()), rel=1e-4)
    assert metrics["truth_target_nll"][-1] == pytest.approx(float((other * r).sum() / r.sum()), rel=1e-4)


def test_lora_dropout_is_kept(tiny_model: Path, tmp_path: Path) -> None:
    """TRL's disable_dropout zeroes every dropout module; RePO sets LoRA's back to `lora_dropout` on purpose."""
    data = write_rows(tmp_path / "prefs.jsonl", preference_rows(4))
    c = cfg(tiny_model, data, tmp_path / "out", use_peft=True, lora_r=4, lora_dropout=0.25)
    model = build_repo_trainer(c).trainer.model
    lora = [m for n, m in model.named_modules() if ".lora_dropout." in n and isinstance(m, torch.nn.Dropout)]
    assert lora and all(m.p == 0.25 for m in lora)
    others = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and ".lora_dropout." not in n]
    assert all(m.p == 0 for m in others)


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
    """2 processes × 4 pairs give the objective and gradient of 1 process × 8: the one rewritten pair sits on one
    process only, and still weighs 1/8 (a per-process mean of the truth term gave it 1/2 there, 1 in one process)."""
    data = write_rows(tmp_path / "prefs.jsonl", rows_with_rewrites(8, {5}))  # one step = all 8 pairs
    out = tmp_path / "out"
    config = tmp_path / "repo.yaml"
    config.write_text(
        "\n".join(
            [
                f"model_name_or_path: {tiny_model}",
                f"train_file: {data}",
                f"output_dir: {out}",
                "lora_r: 4",
                "lora_dropout: 0",
                "per_device_train_batch_size: 4",
                "learning_rate: 1.0e-3",
                "seed: 0",
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

    one = run_repo(load_repo_config(config, {"output_dir": str(tmp_path / "one"), "max_steps": 2,
                                             "per_device_train_batch_size": 8}))  # fmt: skip
    single = [h for h in one.history if "loss" in h]
    for two_procs, one_proc in zip(steps, single, strict=True):
        assert two_procs["loss"] == pytest.approx(one_proc["loss"], rel=1e-4)
        assert two_procs["grad_norm"] == pytest.approx(one_proc["grad_norm"], rel=1e-4)
        assert two_procs["truth_nll"] == pytest.approx(one_proc["truth_nll"], rel=1e-4)

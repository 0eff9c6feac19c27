"""`redtrans sft` at scale: a real 2-process `accelerate launch` (gloo, CPU) on the tiny model, and the shipped
accelerate / DeepSpeed ZeRO-3 configs checked by accelerate's and DeepSpeed's own parsers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from redtrans.train.accelerate import DS_ZERO3, MULTI_GPU, ZERO3  # noqa: E402
from redtrans.train.tiny import build_tiny_model, tiny_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate_launch(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tiny_pairs(36)), encoding="utf-8")
    out = tmp_path / "out"
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(
        "\n".join(
            [
                f"model_name_or_path: {model}",
                f"train_file: {data}",
                f"output_dir: {out}",
                "eval_split: 4",
                "eval_strategy: 'no'",
                "eval_generate_rows: 2",
                "eval_max_new_tokens: 4",
                "per_device_train_batch_size: 4",
                "learning_rate: 3.0e-3",
                "logging_steps: 1",
                "save_strategy: 'no'",
                "max_length: 512",
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
        "--multi_gpu",  # torchrun; with no GPU, run_sft trains on CPU over gloo (`--cpu` needs mpirun for >1)
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "redtrans",
        "sft",
        "--config",
        str(cfg),
        "--set",
        "lora_r=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((out / "eval_results.json").read_text())
    # 32 training rows, 4 per process per step, 2 processes: one epoch is 4 optimizer steps (8 on one process)
    assert record["world_size"] == 2 and record["global_step"] == 4
    assert record["config"]["model"]["lora_r"] == 4 and "eval_bleu" in record["eval"]
    losses = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses if "loss" in r] == [1, 2, 3, 4]  # written once, by the main process
    assert (out / "adapter_model.safetensors").is_file()
    assert proc.stderr.count("trained ") == 1  # one summary line, from the main process


def test_accelerate_configs_parse() -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    ddp = load_config_from_file(str(MULTI_GPU))
    assert ddp.distributed_type == DistributedType.MULTI_GPU and ddp.num_processes == 8
    zero3 = load_config_from_file(str(ZERO3))
    assert zero3.distributed_type == DistributedType.DEEPSPEED
    assert (ROOT / zero3.deepspeed_config["deepspeed_config_file"]).resolve() == DS_ZERO3
    assert zero3.deepspeed_config["zero3_init_flag"] is True


def test_zero3_config_passes_deepspeeds_parser(tmp_path: Path) -> None:
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install 'redtrans[train]')")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    from redtrans.train.sft import SFTRunConfig, trl_config

    cfg = SFTRunConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2, report_to="none"
    )
    args = trl_config(cfg, bf16=False, has_eval=False)
    hf_ds = HfTrainerDeepSpeedConfig(str(DS_ZERO3))
    hf_ds.trainer_config_process(args)  # fills the "auto" values from the run config, as the Trainer does

    class _Tiny:  # what trainer_config_finalize reads to size ZeRO-3 buckets
        class config:  # noqa: N801
            hidden_size = 896

    hf_ds.trainer_config_finalize(args, _Tiny(), num_training_steps=10)
    parsed = DeepSpeedConfig(hf_ds.config)
    assert parsed.zero_optimization_stage == 3 and hf_ds.is_zero3()
    assert parsed.train_micro_batch_size_per_gpu == 4 and parsed.gradient_accumulation_steps == 2
    assert parsed.train_batch_size == 8 and parsed.gradient_clipping == args.max_grad_norm
    assert parsed.zero_config.gather_16bit_weights_on_model_save is True


def test_launch_config_names_the_installed_deepspeed_file() -> None:
    import yaml

    from redtrans.train.accelerate import DS_ZERO3, launch_config

    data = yaml.safe_load(launch_config("zero3"))
    path = Path(data["deepspeed_config"]["deepspeed_config_file"])
    assert path.is_absolute() and path == DS_ZERO3 and path.is_file()
    assert data["distributed_type"] == "DEEPSPEED"

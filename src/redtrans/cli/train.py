"""The training commands: `sft`, `launch-config`, `repo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from redtrans.cli._app import (
    app,
)
from redtrans.console import err_console


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

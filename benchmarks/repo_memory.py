"""Peak memory of a RePO training step: live reference model vs precomputed reference log-probs (vs SFT, LoRA).

A ~50M-parameter Qwen2 model (random weights, built here, no network) is fine-tuned fully on preference pairs of
256-token sequences (prompt + answer, 2 pairs a step). Each configuration runs in its own fresh process:

- ``repo_live``:        RePO, full fine-tuning, π_ref a second (frozen) copy of the model in memory
- ``repo_precomputed``: RePO, full fine-tuning, ``precompute_ref_log_probs: true`` (π_ref's log-probs computed
                        once before training by the model itself; no second copy)
- ``sft``:              TRL's SFTTrainer, one step on the chosen answers (the same model, lengths, batch)
- ``lora_live`` / ``lora_precomputed``: RePO with a LoRA adapter; π_ref is the adapter switched off, so there
                        is no copy to save.

What is measured: the growth of the process's peak resident set (VmHWM, the kernel's exact high-water mark of
RSS) from the moment torch/transformers/TRL are imported — the peak is reset there by writing 5 to
/proc/self/clear_refs — through building the trainer (loading the model(s), tokenizing, precomputing) and one
optimizer step; the two phases are also reported apart (the peak is reset again before the step). Every byte
of a CPU tensor lives in RSS (glibc serves large tensors with mmap and returns them when freed), so the
high-water mark counts real tensor memory (weights, gradients, AdamW state, activations) and nothing freed
earlier. The policy's own weights, gradients and optimizer state are in every configuration;
the difference repo_live − repo_precomputed is what keeping π_ref costs.

Headline: the share of one model copy (parameter bytes, fp32) that precomputing saves:
``repo_ref_copy_saved: (peak_live − peak_precomputed) / model_bytes``, target ≥ 0.8.

    python benchmarks/repo_memory.py [--layers 13] [--seq 256]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TARGET = 0.8
CONFIGS = ["repo_live", "repo_precomputed", "sft", "lora_live", "lora_precomputed"]


def _status(field: str) -> int:
    """A /proc/self/status value in bytes."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) * 1024 if match else 0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS (Linux ≥ 4.0)


def build_model(out: Path, layers: int, hidden: int) -> int:
    """A random Qwen2 model of about 50M parameters + the tiny tokenizer; returns the parameter count."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from redtrans.prompts import sft_messages, system_prompt
    from redtrans.train.tiny import build_tokenizer, tiny_pairs

    texts = [system_prompt("zh", "en")]
    for row in tiny_pairs(200):
        texts.extend(m["content"] for m in sft_messages(row["source"], row["target"], "zh", "en")[1:])
    tokenizer = build_tokenizer(texts * 3)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def build_data(path: Path, model_dir: Path, seq: int, rows: int = 8) -> None:
    """Preference rows whose prompt + chosen and prompt + rejected each fill about `seq` tokens."""
    from transformers import AutoTokenizer

    from redtrans.prompts import prompt_completion
    from redtrans.train.tiny import tiny_pairs

    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = tiny_pairs(400, seed=1)
    out = []
    for i in range(rows):
        chunk = pairs[i * 40 : (i + 1) * 40]
        source = "，".join(p["source"] for p in chunk[:12])
        prompt = prompt_completion(source, "x", "zh", "en")["prompt"]
        n_prompt = len(tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True))
        answer_words: list[str] = []
        for p in chunk:
            answer_words.append(p["target"] + ",")
            if len(tok(" ".join(answer_words))["input_ids"]) + n_prompt >= seq + 8:
                break
        chosen = " ".join(answer_words)
        rejected = " ".join(reversed(answer_words))
        out.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "rewritten": i % 2 == 0,
            }
        )
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")


def measure(name: str, model_dir: str, data: str, out_dir: str, seq: int) -> dict[str, Any]:
    """One configuration in this (fresh) process: peak RSS growth from after the imports to after one step."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from redtrans.train.repo import RePOConfig, build_repo_trainer  # noqa: F401

    common = {
        "output_dir": out_dir,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "max_steps": 1,
        "save_strategy": "no",
        "logging_steps": 1,
        "max_length": seq,
        "learning_rate": 1e-5,
        "disable_tqdm": True,
        "seed": 0,
    }
    base_rss = _status("VmRSS")
    _reset_peak()
    if name == "sft":
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig, SFTTrainer

        rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
        ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows])
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(model_dir)
        args = SFTConfig(**common, bf16=False, activation_checkpointing=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    else:
        lora = name.startswith("lora")
        cfg = RePOConfig.model_validate(
            {
                "model_name_or_path": model_dir,
                "train_file": data,
                "use_peft": lora,
                "lora_r": 16,
                "precompute_ref_log_probs": name.endswith("precomputed"),
                **common,
            }
        )
        trainer = build_repo_trainer(cfg).trainer
    build_peak, resident = _status("VmHWM"), _status("VmRSS")
    _reset_peak()
    trainer.train()
    step_peak = _status("VmHWM")
    return {
        "config": name,
        "base_rss": base_rss,
        "build_peak": build_peak - base_rss,  # loading the model(s), tokenizing, precomputing
        "resident_before_step": resident - base_rss,
        "step_peak": step_peak - base_rss,  # the optimizer step (gradients, AdamW state, activations)
        "peak_growth": max(build_peak, step_peak) - base_rss,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(measure(a.one, a.model, a.data, a.out, a.seq)), flush=True)
        return 0

    with tempfile.TemporaryDirectory(prefix="repo_memory_") as tmp:
        work = Path(tmp)
        n_params = build_model(work / "model", a.layers, a.hidden)
        model_bytes = n_params * 4
        build_data(work / "prefs.jsonl", work / "model", a.seq)
        print(f"model: {n_params / 1e6:.1f}M parameters, one fp32 copy = {model_bytes / 2**20:.0f} MiB")
        print(f"sequences: {a.seq} tokens (prompt + answer), 2 pairs per step, one optimizer step per config")
        results: dict[str, dict[str, Any]] = {}
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TQDM_DISABLE": "1"}
        env["HF_DATASETS_CACHE"] = str(work / "hf_datasets")
        for name in CONFIGS:
            cmd = [sys.executable, __file__, "--one", name, "--model", str(work / "model"), "--data"]
            cmd += [str(work / "prefs.jsonl"), "--out", str(work / f"out_{name}"), "--seq", str(a.seq)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                print(f"{name}: failed (exit {proc.returncode})", file=sys.stderr)
                return 1
            results[name] = json.loads(line[len("RESULT ") :])
            r = results[name]
            growth = r["peak_growth"]
            print(
                f"{name:18s} peak growth {growth / 2**20:6.0f} MiB = {growth / model_bytes:5.2f} model copies "
                f"(building {r['build_peak'] / 2**20:5.0f}, resident before the step "
                f"{r['resident_before_step'] / 2**20:5.0f}, during the step {r['step_peak'] / 2**20:5.0f} MiB)"
            )

        def saved(live: str, pre: str) -> float:
            return float(results[live]["peak_growth"] - results[pre]["peak_growth"]) / model_bytes

        full = saved("repo_live", "repo_precomputed")
        lora = saved("lora_live", "lora_precomputed")
        sft_ratio = results["repo_precomputed"]["peak_growth"] / results["sft"]["peak_growth"]
        print(f"full fine-tuning: precomputing π_ref's log-probs saves {full:.2f} of one model copy")
        print(f"RePO step (precomputed) / SFT step peak growth: {sft_ratio:.2f}")
        print(
            f"LoRA: π_ref is the adapter switched off, no model copy either way: live − precomputed = {lora:+.2f} "
            "model copies of peak (transient memory, not a copy)"
        )
        print(f"repo_ref_copy_saved: {full:.3f} target: {TARGET}")
        return 0 if full >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())

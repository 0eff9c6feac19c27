"""`redtrans serve --engine hf --model ADAPTER` becomes ready and answers (issue 10: it stayed 503 because the
hf engine was handed llama.cpp's `n_parallel`). A tiny random-weight Qwen2 model with a LoRA adapter saved by
peft (what `redtrans sft` writes; no training needed) is served by a real `redtrans serve` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adapter(tmp_path: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    from redtrans.train.tiny import build_tiny_model

    torch.set_num_threads(1)
    base = build_tiny_model(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(str(base))
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    adapter = tmp_path / "adapter"
    peft.get_peft_model(model, lora).save_pretrained(str(adapter))
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    return adapter


def test_serve_hf_adapter_becomes_ready_and_translates(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    port = _free_port()
    exe = Path(sys.executable).with_name("redtrans")
    args = [str(exe), "serve", "--engine", "hf", "--model", str(adapter), "--parallel", "2"]
    args += ["--port", str(port), "--cache", "none", "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REDTRANS_SERVE_ENGINE_OPTIONS": '{"device": "cpu"}'}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        for _ in range(1200):  # loading torch + transformers on a busy 2-core machine takes a while
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                ready = httpx.get(f"{base}/readyz", timeout=5)
                if ready.status_code == 200 or ready.json().get("status") == "failed":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, ready.text if ready is not None else "no answer"
        assert ready.json()["engine"] == "hf"
        r = httpx.post(f"{base}/v1/translate", json={"items": [{"text": "我有三只猫", "tgt": "en"}]}, timeout=120)
        # Random weights cannot translate: the engine answered when the answer is either served or refused by the
        # answer checks (empty, echo, wrong language → 422 no_translation), never an engine error or a hang.
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "no_translation", r.text
            return
        [t] = r.json()["translations"]
        assert isinstance(t["translation"], str) and t["src"] == "zh" and t["tgt"] == "en"
        assert str(adapter) in r.json()["model"]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""A local transformers model directory, optionally with a PEFT adapter (what `redtrans sft` writes).

A directory holding ``adapter_config.json`` is loaded as an adapter on its recorded base model; a GGUF base
(transformers' ``gguf_file=``) works as well. Greedy by default; batches are left-padded and generated
together.

What the deterministic mode (`HFConfig.deterministic`, batches of one) promises, and what it does not
(docs/determinism.md):

- Promised: the same greedy output for the same request, model, adapter and settings, whatever else is queued,
  on the same device model, dtype and torch / transformers / CUDA versions. A batch of one has no neighbours and
  no padding, so every shape a kernel sees depends on the request alone.
- Not promised: the same output on another GPU model, dtype or library version, or on CPU vs GPU (kernels and
  their reduction orders differ); nor in the throughput mode (`batch_size` > 1), where padding and which requests
  share a batch change the shapes, hence the kernels' tiling and summation order, of every row.
- Cost: a GPU decodes one sequence per forward pass, a small fraction of what it decodes batched; on a GPU the
  throughput mode is the one to use for volume, with `bench --repeats` to measure the run-to-run spread.
  Batch-invariant kernels (the same result for a row whatever the batch) are the upstream answer; redtrans does
  not build kernels. A server that has them (e.g. vLLM or SGLang in a batch-invariant / deterministic mode) can
  be used through the openai engine, which still records `deterministic: false`: a client cannot check it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from redtrans.config import StageConfig
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult


class HFConfig(StageConfig):
    """Settings of the transformers engine."""

    model: str = ""
    """A model directory, an adapter directory (adapter_config.json) or a .gguf file."""
    base_model: str | None = None
    """Base model for an adapter when its adapter_config.json path is not valid here."""
    batch_size: int = Field(default=8, ge=1)
    """Requests generated together."""
    dtype: str = "auto"
    """torch dtype: auto (bf16 on GPUs that have it, else fp32), float32, bfloat16, float16."""
    device: str = "auto"
    """cpu, cuda, cuda:1, … ; auto = cuda when available."""
    deterministic: bool = False
    """Batches of one (padding and batch size change the numerics of the others): byte-identical greedy output
    whatever else is queued, on the same device, dtype and library versions. Slow on a GPU (one sequence per
    forward pass); see the module docstring for what is and is not promised. Overrides batch_size."""


def _load_causal_lm(path: str, dtype: Any, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if p.suffix == ".gguf":
        kwargs = {"gguf_file": p.name}
        ref = str(p.parent)
    else:
        kwargs, ref = {}, str(p)
    tokenizer = AutoTokenizer.from_pretrained(ref, **kwargs)
    model: Any = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, **kwargs)
    return model.to(device), tokenizer


class HFEngine(Engine):
    name = "hf"
    config_class = HFConfig
    spec_fields = {"model": "model", "parallel": "batch_size", "deterministic": "deterministic"}
    deterministic_decoding = "batch-of-one"
    speed_fields = frozenset({"batch_size"})

    def __init__(self, config: HFConfig | None = None, **overrides: Any) -> None:
        import torch

        self.config = config or HFConfig(**overrides)
        self._torch = torch
        path = Path(self.config.model).expanduser()
        if not path.exists():
            raise EngineError(f"hf model not found: {path}")
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.config.dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        else:
            dtype = getattr(torch, self.config.dtype)
        adapter_cfg = path / "adapter_config.json"
        if adapter_cfg.is_file():
            from peft import PeftModel

            base = self.config.base_model or json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
            model, tokenizer = _load_causal_lm(base, dtype, device)
            if (path / "tokenizer_config.json").is_file():
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = PeftModel.from_pretrained(model, str(path)).to(device)
            self.model = f"{base}+{path}"
        else:
            model, tokenizer = _load_causal_lm(str(path), dtype, device)
            self.model = str(path)
        model.eval()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model, self._tok, self._device = model, tokenizer, device
        self.chat = tokenizer.chat_template is not None
        self.deterministic = self.config.deterministic
        self.parallelism = 1 if self.deterministic else max(1, self.config.batch_size)

    def _prompt_text(self, request: GenRequest) -> str:
        if request.messages is not None:
            if not self.chat:
                raise EngineError(f"{self.model} has no chat template: send a completion `prompt`")
            return self._tok.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        return request.prompt or ""

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        if any(r.grammar for r in requests):
            raise EngineError("the hf engine does not do grammar-constrained decoding")
        results: list[GenResult] = []
        step = self.parallelism
        for i in range(0, len(requests), step):
            results.extend(self._batch(requests[i : i + step]))
        return results

    def _batch(self, requests: list[GenRequest]) -> list[GenResult]:
        torch = self._torch
        started = time.perf_counter()
        texts = [self._prompt_text(r) for r in requests]
        enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        max_new = max(r.max_tokens for r in requests)
        temperature = requests[0].temperature
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self._tok.pad_token_id}
        if temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=temperature)
            if requests[0].seed is not None:
                torch.manual_seed(requests[0].seed)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            out = self._model.generate(**enc, **gen_kwargs)
        elapsed = time.perf_counter() - started
        prompt_len = enc["input_ids"].shape[1]
        results = []
        for row, request in zip(out, requests, strict=True):
            new_tokens = row[prompt_len:]
            text = self._tok.decode(new_tokens, skip_special_tokens=True)
            n_new = int((new_tokens != self._tok.pad_token_id).sum())
            finish = "length" if n_new >= request.max_tokens else "stop"
            for stop in request.stop:
                if stop in text:
                    text, finish = text.split(stop, 1)[0], "stop"
            results.append(GenResult(text, finish, prompt_tokens=prompt_len, completion_tokens=n_new, seconds=elapsed))
        return results

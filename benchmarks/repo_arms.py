"""The arms of Table 3 where they can be told apart: a toy translation task whose truth is known.

At the quickstart's scale (a few optimizer steps on a 0.5B model) every arm is noise. Here the task is built so
that the arms *must* differ, and each arm is trained by the real code (`redtrans.train.repo.build_repo_trainer`:
`RePOTrainer` on TRL's `DPOTrainer`, the arm's fields from `redtrans.train.arms.ARMS`):

- **Task.** A word-for-word "translation": source words ``a0…a23`` render as ``b0…b23``; six slang words
  ``q0…q5`` render as ``s0…s5``. Sentences of 3–6 words.
- **SFT model.** A tiny OLMo-2 (2 layers, 64 wide, one token a word; transformers loads a word-level tokenizer
  as saved for this architecture, while for Qwen2 it rebuilds a byte-level BPE) trained from scratch on 3000 sentences
  in which slang is rendered *literally* (``q3`` → ``l3``), as a general-domain model would: it translates the
  ordinary words and gets every slang word wrong.
- **Expert data** (`prefs export`'s rules, τ = 3 on the 1–5 rubric), 240 items: an item without slang has two
  candidates, the correct one (score 4) and one with a wrong word (2) → one pair, in both files; an item with
  one slang word has the literal rendering (2) and the literal one with a wrong word (1) → both below τ, so the
  expert rewrites the correct translation y_t: corrected pairs y_t ≻ y₁, y_t ≻ y₂ (``rewritten``), original
  pair y₁ ≻ y₂. The correct rendering of slang appears only in rewrites.
- **Arms** (same items, optimizer steps, seed): DPO on the original pairs, DPO on the corrected pairs, RePO,
  RePO with random rewrites (the truth term's y_t another item's rewrite, the pairs unchanged).
- **Measure.** 120 held-out sentences, each with one slang word in a new context, translated greedily:
  exact match of the slang word's rendering (and of the whole sentence, for the damage an arm does). Per seed
  (task, SFT model and training seed), ≥ 5 seeds.

Expected: RePO > DPO-corrected ≥ DPO-original (it never sees a correct slang word), random rewrites < RePO.
The gate is against the two arms that can see the rewrites: ``repo_margin`` is the smaller of
(RePO − DPO-corrected) and (RePO − random rewrites) in slang exact match, each the mean over held-out items ×
seeds, with a 95% paired bootstrap interval over those (item, seed) cells; exit 1 when either interval includes 0.
It is not a timing claim. Run it once per `truth_reduction` (docs/training.md has both results):

    python benchmarks/repo_arms.py [--truth-reduction sequence|token_mean] [--seeds 5] [--lambda-truth 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REGULAR = 24
SLANG = 6
SFT_SENTENCES = 3000
ITEMS = 240
HELD_OUT = 120
TAU = 3
ARM_ORDER = ["dpo", "dpo-corrected", "repo", "repo-random"]


# ---------------------------------------------------------------------------------------------------- task
@dataclass
class Sentence:
    source: list[str]
    slang_at: int | None  # position of the one slang word, if any

    def prompt(self) -> str:
        return " ".join(self.source) + " ="

    def render(self, literal_slang: bool = False, wrong_at: int | None = None, rng: random.Random | None = None) -> str:
        words = []
        for i, w in enumerate(self.source):
            k = int(w[1:])
            if w[0] == "q":
                words.append(f"l{k}" if literal_slang else f"s{k}")
            elif i == wrong_at:
                assert rng is not None
                words.append(f"b{(k + rng.randrange(1, REGULAR)) % REGULAR}")
            else:
                words.append(f"b{k}")
        return " " + " ".join(words)

    def correct(self) -> list[str]:
        return self.render().split()


def sentence(rng: random.Random, slang: bool) -> Sentence:
    n = rng.randint(3, 6)
    words = [f"a{rng.randrange(REGULAR)}" for _ in range(n)]
    at = None
    if slang:
        at = rng.randrange(n)
        words[at] = f"q{rng.randrange(SLANG)}"
    return Sentence(words, at)


def make_task(seed: int) -> dict[str, Any]:
    """SFT rows (slang literal), the corrected and original pair files' rows, held-out sentences."""
    rng = random.Random(seed)
    seen: set[str] = set()

    def fresh(slang: bool) -> Sentence:
        while True:
            s = sentence(rng, slang)
            if s.prompt() not in seen:
                seen.add(s.prompt())
                return s

    held = [fresh(True) for _ in range(HELD_OUT)]
    items = [fresh(i % 2 == 0) for i in range(ITEMS)]
    sft = [fresh(rng.random() < 0.3) for _ in range(SFT_SENTENCES)]
    corrected: list[dict[str, Any]] = []
    original: list[dict[str, Any]] = []
    for i, s in enumerate(items):
        regular = [j for j in range(len(s.source)) if j != s.slang_at]
        wrong = rng.choice(regular)
        if s.slang_at is None:  # max score ≥ τ, scores differ: one pair in both files
            pair = {"id": f"i{i}", "prompt": s.prompt(), "chosen": s.render(),
                    "rejected": s.render(wrong_at=wrong, rng=rng), "rewritten": False}  # fmt: skip
            corrected.append(pair)
            original.append(dict(pair))
            continue
        y1, y2 = s.render(literal_slang=True), s.render(literal_slang=True, wrong_at=wrong, rng=rng)  # 2 and 1 < τ
        original.append({"id": f"i{i}", "prompt": s.prompt(), "chosen": y1, "rejected": y2, "rewritten": False})
        for j, bad in enumerate((y1, y2)):
            corrected.append({"id": f"i{i}-{j}", "prompt": s.prompt(), "chosen": s.render(), "rejected": bad,
                              "rewritten": True})  # fmt: skip
    sft_rows = [(s.prompt(), s.render(literal_slang=True)) for s in sft]
    return {"sft": sft_rows, "corrected": corrected, "original": original, "held": held}


# --------------------------------------------------------------------------------------------------- model
def build_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "="]
    words += [f"a{k}" for k in range(REGULAR)] + [f"b{k}" for k in range(REGULAR)]
    words += [f"{c}{k}" for c in "qsl" for k in range(SLANG)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def pretrain(rows: list[tuple[str, str]], out: Path, seed: int, steps: int = 500, batch: int = 64) -> Path:
    """The SFT model: a tiny OLMo-2 trained from scratch on `rows` (loss on the answer tokens only)."""
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    config = Olmo2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.eos_token_id)  # fmt: skip
    model = Olmo2ForCausalLM(config)
    encoded = []
    for prompt, answer in rows:
        p, a = tok(prompt)["input_ids"], tok(answer)["input_ids"] + [tok.eos_token_id]
        encoded.append((p + a, [-100] * len(p) + a))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / steps))
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        chunk = rng.sample(encoded, batch)
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in chunk])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in chunk])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in chunk])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def translate(model: Any, tok: Any, held: list[Sentence]) -> list[list[str]]:
    import torch

    model.eval()
    tok.padding_side = "left"
    outs: list[list[str]] = []
    with torch.no_grad():
        for i in range(0, len(held), 64):
            chunk = held[i : i + 64]
            enc = tok([s.prompt() for s in chunk], return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)  # fmt: skip
            for row in gen[:, enc["input_ids"].size(1) :]:
                outs.append(tok.decode(row, skip_special_tokens=True).split())
    return outs


def scores(outputs: list[list[str]], held: list[Sentence]) -> tuple[list[int], list[int]]:
    """(slang exact match, whole-sentence exact match) per held-out sentence."""
    slang, whole = [], []
    for out, s in zip(outputs, held, strict=True):
        want = s.correct()
        at = s.slang_at
        assert at is not None
        slang.append(int(len(out) > at and out[at] == want[at]))
        whole.append(int(out == want))
    return slang, whole


# ---------------------------------------------------------------------------------------------------- arms
def train_arm(arm_name: str, model_dir: Path, data: Path, out: Path, seed: int, a: argparse.Namespace) -> Any:
    """The arm trained by `redtrans repo`'s own code path; returns the trained policy (in memory)."""
    from redtrans.train.arms import ARMS
    from redtrans.train.repo import RePOConfig, build_repo_trainer

    arm = ARMS[arm_name]
    config = RePOConfig.model_validate({
        "model_name_or_path": str(model_dir), "train_file": str(data), "output_dir": str(out), "use_peft": False,
        "lambda_truth": a.lambda_truth, "truth_reduction": a.truth_reduction, **arm.overrides(),
        "beta": 0.1, "learning_rate": a.learning_rate, "lr_scheduler_type": "constant", "warmup_steps": 0,
        "per_device_train_batch_size": a.batch, "max_steps": a.steps, "seed": seed, "max_length": 64,
        "logging_steps": a.steps, "save_strategy": "no", "report_to": "none", "bf16": False,
        "activation_checkpointing": False, "dataloader_num_workers": 0,
    })  # fmt: skip
    from transformers.trainer_callback import PrinterCallback

    setup = build_repo_trainer(config)
    setup.trainer.remove_callback(PrinterCallback)  # TQDM_DISABLE turns it on: one dict a log line
    setup.trainer.train()
    setup.log.close()
    return setup.trainer.model


def bootstrap(diff: list[float], samples: int, seed: int) -> tuple[float, float, float]:
    """Mean of the paired differences and its 95% percentile bootstrap interval (resampling the cells)."""
    import numpy as np

    d = np.asarray(diff, dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth-reduction", default=None, choices=["sequence", "token_mean"],
                    help="the truth term's unit (default: RePOConfig's)")  # fmt: skip
    ap.add_argument("--lambda-truth", type=float, default=None, help="λ (default: RePOConfig's)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps of every arm")
    ap.add_argument("--batch", type=int, default=16, help="pairs per step")
    ap.add_argument("--learning-rate", type=float, default=3e-4)
    ap.add_argument("--bootstrap", type=int, default=10000)
    ap.add_argument("--json", type=Path, help="also write every cell here")
    a = ap.parse_args()

    import torch

    from redtrans.train.arms import original_pairs_path, same_items
    from redtrans.train.repo import DEFAULT_LAMBDA, DEFAULT_TRUTH_REDUCTION

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    a.truth_reduction = a.truth_reduction or DEFAULT_TRUTH_REDUCTION
    a.lambda_truth = DEFAULT_LAMBDA if a.lambda_truth is None else a.lambda_truth
    print(f"truth_reduction {a.truth_reduction}, λ {a.lambda_truth:g}, β 0.1, {a.steps} steps × {a.batch} pairs, "
          f"lr {a.learning_rate:g}, {a.seeds} seeds, {HELD_OUT} held-out sentences each", flush=True)  # fmt: skip
    slang: dict[str, list[int]] = {arm: [] for arm in ["sft", *ARM_ORDER]}
    whole: dict[str, list[int]] = {arm: [] for arm in ["sft", *ARM_ORDER]}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="repo_arms_") as tmp:
        work = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(work / "hf_datasets")
        for seed in range(a.seeds):
            task = make_task(seed)
            sft_dir = pretrain(task["sft"], work / f"sft{seed}", seed)
            corrected, original, counts = same_items(task["corrected"], task["original"])
            files = {"corrected": write_jsonl(work / f"prefs{seed}.jsonl", corrected)}
            files["original"] = write_jsonl(original_pairs_path(files["corrected"]), original)
            from transformers import AutoModelForCausalLM

            tok = build_tokenizer()
            s, w = scores(translate(AutoModelForCausalLM.from_pretrained(sft_dir), tok, task["held"]), task["held"])
            slang["sft"] += s
            whole["sft"] += w
            rewrites = [r["chosen"].split() for r in corrected if r["rewritten"]]
            tokens = sum(len(t) + 1 for t in rewrites) / len(rewrites)  # + the end-of-sequence token
            line = [f"seed {seed}: {counts['items']} items, {len(corrected)} corrected / {len(original)} original "
                    f"pairs, {tokens:.2f} tokens a rewrite; SFT slang {sum(s) / len(s):.2f}"]  # fmt: skip
            from redtrans.train.arms import ARMS

            for arm in ARM_ORDER:
                torch.manual_seed(seed)
                model = train_arm(arm, sft_dir, files[ARMS[arm].pairs], work / f"{arm}{seed}", seed, a)
                s, w = scores(translate(model, tok, task["held"]), task["held"])
                slang[arm] += s
                whole[arm] += w
                line.append(f"{arm} {sum(s) / len(s):.2f}")
            print(", ".join(line) + f" ({time.perf_counter() - started:.0f}s)", flush=True)

    cells = len(slang["repo"])
    print(f"\n| arm | slang exact match | sentence exact match |  ({a.seeds} seeds × {HELD_OUT} held-out sentences)")
    print("|---|---|---|")
    from redtrans.train.arms import ARMS

    for arm in ["sft", *ARM_ORDER]:
        label = "SFT model (before)" if arm == "sft" else ARMS[arm].label
        print(f"| {label} | {sum(slang[arm]) / cells:.3f} | {sum(whole[arm]) / cells:.3f} |")
    margins = {}
    for other in ("dpo-corrected", "repo-random", "dpo"):
        diff = [float(x - y) for x, y in zip(slang["repo"], slang[other], strict=True)]
        margins[other] = bootstrap(diff, a.bootstrap, 0)
        mean, lo, hi = margins[other]
        print(f"RePO − {other}: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] (95% paired bootstrap over item × seed)")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "slang": slang,
                                      "whole": whole, "margins": margins}) + "\n")  # fmt: skip
    gated = [margins["dpo-corrected"], margins["repo-random"]]
    margin = min(m[0] for m in gated)
    ok = all(lo > 0 for _, lo, _ in gated)
    print(f"{time.perf_counter() - started:.0f}s in all; the gate: both intervals above 0: {'yes' if ok else 'NO'}")
    print(f"repo_margin: {margin:.3f} target: > 0")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

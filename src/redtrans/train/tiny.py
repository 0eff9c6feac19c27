"""A tiny Qwen2-architecture model with random weights and a locally trained tokenizer.

Used by the tests and the throughput benchmark, which must run without downloading anything: the model has the
real Qwen2 architecture and a Qwen-style (ChatML) chat template, so every code path of `redtrans sft` and the
``hf`` engine runs on it, in seconds on a CPU. Its translations are meaningless.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from redtrans.prompts import sft_messages, system_prompt

# ChatML as Qwen2.5 renders it (a default system turn when none is given).
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_ZH_NUM = ["一", "两", "三", "四", "五", "六", "七", "八", "九", "十"]
_EN_NUM = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_THINGS = [
    ("猫", "cat", "cats"),
    ("狗", "dog", "dogs"),
    ("苹果", "apple", "apples"),
    ("朋友", "friend", "friends"),
    ("杯奶茶", "cup of milk tea", "cups of milk tea"),
    ("本书", "book", "books"),
]
_ZH_THINGS_PLAIN = {"杯奶茶": "奶茶", "本书": "书"}


def tiny_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` synthetic zh→en pairs (`{id, source, target, src, tgt}`): learnable, so the loss visibly drops."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randrange(len(_ZH_NUM))
        zh_thing, one, many = rng.choice(_THINGS)
        measure = "" if zh_thing in _ZH_THINGS_PLAIN else "只" if zh_thing in {"猫", "狗"} else "个"
        zh = f"我有{_ZH_NUM[k]}{measure}{zh_thing}"
        en = f"I have {_EN_NUM[k]} {one if k == 0 else many}"
        rows.append({"id": f"t{i}", "source": zh, "target": en, "src": "zh", "tgt": "en"})
    return rows


def build_tokenizer(texts: list[str], vocab_size: int = 800) -> Any:
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a `PreTrainedTokenizerFast` with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a random-weight Qwen2 model + tokenizer to `out_dir` (a transformers model directory)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    texts = []
    for src, tgt in (("zh", "en"), ("en", "zh")):
        texts.append(system_prompt(src, tgt))
    for row in tiny_pairs(200, seed=seed):
        texts.extend(m["content"] for m in sft_messages(row["source"], row["target"], "zh", "en")[1:])
    tokenizer = build_tokenizer(texts * 3)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

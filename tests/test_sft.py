"""`redtrans sft` on a tiny random-weight Qwen2 model built here (no network): data forms, the exact inference
prompt, completion-only loss, LoRA and full training, resume, outputs the ``hf`` engine loads, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("trl")

from redtrans.config import ConfigError, parse_overrides  # noqa: E402
from redtrans.jsonl import JSONLError  # noqa: E402
from redtrans.prompts import completion_prompt, prompt_completion, sft_messages, translation_messages  # noqa: E402
from redtrans.train.sft import SFTRunConfig, load_sft_config, load_sft_rows, run_sft  # noqa: E402
from redtrans.train.tiny import build_tiny_model, tiny_pairs  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny model gains nothing from threads, and on a busy 2-core machine OpenMP spin-waiting makes each
    step several times slower; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for row in tiny_pairs(40):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def fast_config(model: Path, data: Path, out: Path, **kw: object) -> SFTRunConfig:
    values: dict[str, object] = {
        "model_name_or_path": str(model),
        "train_file": str(data),
        "output_dir": str(out),
        "eval_split": 8,
        "eval_strategy": "no",
        "eval_generate_rows": 4,
        "eval_max_new_tokens": 6,
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "warmup_steps": 0,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_steps": 2,
        "max_length": 512,
        "max_steps": 4,
    }
    values.update(kw)
    return load_sft_config(None, values)


def logged_losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "log" and "loss" in r]


# ------------------------------------------------------------------------------------------ config


def test_yaml_config_with_typed_overrides(tmp_path: Path) -> None:
    cfg_file = tmp_path / "sft.yaml"
    cfg_file.write_text("train_file: a.jsonl\nlora_r: 8\nlearning_rate: 1e-4\nlora_target_modules: [q_proj, v_proj]\n")
    cfg = load_sft_config(cfg_file, parse_overrides(["lora_r=4", "use_peft=false", "report_to=none"]))
    # ours on the pydantic model; TRL's by TRL's names, in `model` (trl.ModelConfig) and `training` (trl.SFTConfig)
    assert cfg.train_file == "a.jsonl" and cfg.training["learning_rate"] == pytest.approx(1e-4)
    assert (
        cfg.model["lora_r"] == 4 and cfg.use_peft is False and cfg.model["lora_target_modules"] == ["q_proj", "v_proj"]
    )
    assert cfg.training["report_to"] == "none" and cfg.training["lr_scheduler_type"] == "cosine"  # a redtrans default
    with pytest.raises(ConfigError, match="lora_rank: unknown field"):
        load_sft_config(cfg_file, {"lora_rank": 4})
    with pytest.raises(ConfigError, match="max_steps: Input should be a valid integer"):
        load_sft_config(cfg_file, parse_overrides(["max_steps=many"]))
    with pytest.raises(ConfigError, match="expects KEY=VALUE"):
        parse_overrides(["lora_r"])
    # YAML 1.1 reads an unquoted `no` as false; strategy fields take it back as "no"
    cfg = load_sft_config(None, parse_overrides(["eval_strategy=no", "resume_from_checkpoint=null"]))
    assert cfg.training["eval_strategy"] == "no" and cfg.resume_from_checkpoint is None
    # values are checked by building TRL's own SFTConfig: its error, as a ConfigError naming the class
    with pytest.raises(ConfigError, match="trl.SFTConfig.*sometimes"):
        load_sft_config(None, {"eval_strategy": "sometimes"})
    with pytest.raises(ConfigError, match="eval_split"):
        load_sft_config(None, {"eval_split": -1})


def test_a_plain_trl_sft_yaml_is_accepted(tmp_path: Path, tiny_data: Path) -> None:
    """What `trl sft --config` takes (ScriptArguments + ModelConfig + SFTConfig fields) maps onto ours."""
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text(tiny_data.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "test.jsonl").write_text(tiny_data.read_text(encoding="utf-8"), encoding="utf-8")
    cfg_file = tmp_path / "trl.yaml"
    cfg_file.write_text(
        f"model_name_or_path: {tmp_path}\ndataset_name: {folder}\ndataset_test_split: test\n"
        "learning_rate: 2.0e-4\nnum_train_epochs: 1\ngradient_checkpointing: true\nuse_peft: true\nlora_r: 32\n"
        "output_dir: out\nreport_to: none\n"
    )
    cfg = load_sft_config(cfg_file)
    assert cfg.train_file == str(folder / "train.jsonl") and cfg.eval_file == str(folder / "test.jsonl")
    assert cfg.model_name_or_path == str(tmp_path) and cfg.model["lora_r"] == 32
    assert cfg.training["activation_checkpointing"] is True and cfg.output_dir == "out"
    with pytest.raises(ConfigError, match="dataset_name.*not a local JSON Lines"):
        load_sft_config(None, {"dataset_name": "trl-lib/Capybara"})


def test_every_row_form_becomes_the_inference_prompt(tmp_path: Path) -> None:
    src_text, tgt_text = "你不是我的菜", "You're not my type"
    rows = [
        {"id": "m", "messages": sft_messages(src_text, tgt_text, "zh", "en")},
        {"id": "p", **prompt_completion(src_text, tgt_text, "zh", "en")},
        {"id": "s", "source": src_text, "target": tgt_text, "src": "zh", "tgt": "en"},
        {"id": "d", "source": src_text, "target": tgt_text},  # languages detected
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    examples = load_sft_rows(path)
    expected = translation_messages(src_text, "zh", "en")
    for e in examples:
        assert e.prompt == expected, e.id
        assert e.completion == [{"role": "assistant", "content": tgt_text}]
        assert e.reference == tgt_text
    assert examples[3].src == "zh" and examples[3].tgt == "en"
    # A base model (no chat template) gets the few-shot completion prompt the translator sends it.
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps(rows[2], ensure_ascii=False) + "\n", encoding="utf-8")
    [base] = load_sft_rows(plain, chat=False)
    assert base.prompt == completion_prompt(src_text, "zh", "en") and base.completion == f" {tgt_text}\n"
    with pytest.raises(JSONLError, match="need a model with a chat template"):
        load_sft_rows(path, chat=False)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "source": "a"}) + "\n" + json.dumps({"messages": []}) + "\n")
    with pytest.raises(JSONLError, match=r"bad.jsonl:1: a row needs"):
        load_sft_rows(bad)
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "x"}]}))
    with pytest.raises(JSONLError, match=r"bad.jsonl:1: the last message must be the assistant"):
        load_sft_rows(bad)


def test_plain_pairs_are_cut_like_sampled_rows(tmp_path: Path) -> None:
    """A plain pair becomes one example per translator segment, the same prompts and completions `redtrans
    sample` writes for that post (one path); a pair whose target does not fit the segments is refused."""
    from redtrans.errors import InputError
    from redtrans.sampling.export import sft_rows

    source, target = "我有三只猫 🐱\n今天好开心 @小王", "I have three cats 🐱\nSo happy today @小王"
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"id": "p", "source": source, "target": target, "src": "zh", "tgt": "en"},
                               ensure_ascii=False) + "\n", encoding="utf-8")  # fmt: skip
    examples = load_sft_rows(path)
    journal = {"id": "p", "source": source, "reference": target, "src": "zh", "tgt": "en", "bucket": "b",
               "delta_bleu": 0.1}  # fmt: skip
    sampled = list(sft_rows([journal], "reference", False, "prompt_completion"))
    assert [e.id for e in examples] == [r["id"] for r in sampled] == ["p/s1", "p/s2"]
    assert [(e.prompt, e.completion) for e in examples] == [(r["prompt"], r["completion"]) for r in sampled]
    assert [e.reference for e in examples] == ["I have three cats", "So happy today"]
    [base, _] = load_sft_rows(path, chat=False)  # a base model: the completion prompt of the segment
    assert base.prompt == completion_prompt("我有三只猫", "zh", "en") and base.completion == " I have three cats\n"

    path.write_text(json.dumps({"id": "p", "source": source, "target": "I have three cats. So happy today"},
                               ensure_ascii=False) + "\n", encoding="utf-8")  # fmt: skip
    with pytest.raises(InputError, match=r"pairs.jsonl: .*segments.*: 1 \(line 1: 2 lines in the post, 1 in the"):
        load_sft_rows(path, src="zh", tgt="en")


def test_completion_only_labels_and_the_exact_chat_prompt(tiny_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    from redtrans.train.sft import build_trainer

    setup = build_trainer(fast_config(tiny_model, tiny_data, tmp_path / "out"))
    tok = setup.tokenizer
    row = setup.trainer.train_dataset[0]
    example = setup.train_examples[0]
    ids, labels = row["input_ids"], row["labels"]
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert all(label == -100 for label in labels[:first])
    # the unlabelled part is exactly what the hf engine feeds at inference: the shared prompt, the chat template
    source = example.prompt[1]["content"]
    assert example.prompt == translation_messages(source, "zh", "en")
    inference = tok.apply_chat_template(
        translation_messages(source, "zh", "en"), tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(ids[:first]) == inference
    # the labelled part is the translation and the end-of-turn token the model must learn to emit
    assert tok.decode(ids[first:]).startswith(example.reference + "<|im_end|>")


# ---------------------------------------------------------------------------------------- training


def test_lora_trains_saves_and_the_hf_engine_translates(tiny_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from redtrans.engines import GenRequest
    from redtrans.engines.hf import HFEngine

    out = tmp_path / "lora"
    result = run_sft(fast_config(tiny_model, tiny_data, out, max_steps=8, save_steps=4, merge_adapter=True))

    losses = logged_losses(out)
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.3, losses
    # LoRA B matrices start at zero: trained ones are not
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(float(t.abs().max()) > 0 for t in lora_b)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_model.resolve()) and cfg["peft_type"] == "LORA"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]

    record = json.loads((out / "eval_results.json").read_text())
    assert record["eval_examples"] == 8 and record["train_examples"] == 32
    for key in ("eval_loss", "eval_bleu", "eval_chrf", "eval_bleu_zh-en"):
        assert key in result.eval_metrics and key in record["eval"]
    # the final scores as the bench reports them: per direction, with sacrebleu signatures
    zh_en = record["scores"]["zh-en"]
    assert zh_en["n"] == 4 and "tok:13a" in zh_en["bleu_signature"] and "nw:2" in zh_en["chrf_signature"]
    assert zh_en["bleu_100"] == pytest.approx(result.eval_metrics["eval_bleu_zh-en"], abs=0.01)
    assert len(record["samples"]) == 4 and result.train_metrics["train_tokens"] > 0

    request = GenRequest(messages=translation_messages("我有三只猫", "zh", "en"), max_tokens=6)
    engine = HFEngine(model=str(out))
    assert engine.model.endswith(f"+{out}") and engine.chat
    [adapted] = engine.generate([request])
    assert isinstance(adapted.text, str) and adapted.completion_tokens > 0
    # the merged model is a plain model directory that translates exactly like base + adapter
    assert result.merged_dir and (Path(result.merged_dir) / "config.json").is_file()
    [merged] = HFEngine(model=result.merged_dir).generate([request])
    assert merged.text == adapted.text
    [base] = HFEngine(model=str(tiny_model)).generate([request])
    assert base.text != adapted.text


def test_full_finetune_writes_a_model_directory(tiny_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from redtrans.engines import GenRequest
    from redtrans.engines.hf import HFEngine

    out = tmp_path / "full"
    run_sft(fast_config(tiny_model, tiny_data, out, use_peft=False, max_steps=2, eval_split=0, learning_rate=1e-3))
    assert not (out / "adapter_config.json").exists()
    before, after = load_file(str(tiny_model / "model.safetensors")), load_file(str(out / "model.safetensors"))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) // 2
    [res] = HFEngine(model=str(out)).generate([GenRequest(messages=translation_messages("你好", "zh", "en"))])
    assert res.completion_tokens > 0


def test_resume_from_the_last_checkpoint(tiny_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    first = run_sft(fast_config(tiny_model, tiny_data, out, max_steps=2, eval_split=0))
    assert first.resumed_from is None
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # the same command with a longer budget continues from checkpoint-2 instead of starting over
    second = run_sft(fast_config(tiny_model, tiny_data, out, max_steps=3, eval_split=0))
    assert second.resumed_from == str(out / "checkpoint-2")
    record = json.loads((out / "eval_results.json").read_text())
    assert record["global_step"] == 3 and record["resumed_from"] == str(out / "checkpoint-2")
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]  # the log continues, nothing repeated
    with pytest.raises(ConfigError, match="no checkpoint directory"):
        run_sft(fast_config(tiny_model, tiny_data, out, resume_from_checkpoint=str(out / "checkpoint-99")))


def test_a_resume_logs_each_step_once(tiny_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    """Issue 32 item 12: steps logged after the last checkpoint are redone by the resumed run; logs.jsonl keeps
    one record per step (the killed run's records of the redone steps are taken out)."""
    out = tmp_path / "relog"
    run_sft(fast_config(tiny_model, tiny_data, out, max_steps=3, eval_split=0))  # steps 1-3 logged
    shutil.rmtree(out / "checkpoint-3")  # as if killed after step 3 was logged, before its checkpoint was saved
    second = run_sft(fast_config(tiny_model, tiny_data, out, max_steps=4, eval_split=0))
    assert second.resumed_from == str(out / "checkpoint-2")
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]


# -------------------------------------------------------------------------------------------- CLI


def test_cli_reports_bad_config_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from redtrans.cli import app

    res = CliRunner().invoke(app, ["sft", "--set", "lora_rnk=4", "--train-file", "x.jsonl"])
    assert res.exit_code == 2 and "lora_rnk: unknown field" in res.output, res.output
    res = CliRunner().invoke(app, ["sft", "--set", "bogus_trl_flag=1", "--set", "max_steps=x"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["sft", "--train-file", str(tmp_path / "missing.jsonl"), "-m", str(tmp_path)])
    assert res.exit_code == 2 and "not found" in res.output


def test_tensorboard_events_when_installed(tiny_model: Path, tiny_data: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (report_to: auto then logs JSON lines only)"
    )
    out = tmp_path / "tb"
    run_sft(fast_config(tiny_model, tiny_data, out, max_steps=1, eval_split=0))
    assert list(out.rglob("events.out.tfevents.*"))

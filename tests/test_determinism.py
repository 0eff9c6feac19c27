"""Same input, same output: the deterministic mode, bench repeats and the refusal check.

The mode's promise is checked on the real embedded model (marked `model`): the same posts translated twice, the
second time in another order with other posts queued between them, give byte-identical output. The rest runs
without a model.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from redtrans.bench import BenchConfig, parse_system, run_bench
from redtrans.bench.systems import with_mode
from redtrans.engines import EngineSpec, GenRequest, GenResult
from redtrans.engines.base import Engine
from redtrans.engines.spec import with_default_mode
from redtrans.errors import ConfigError, EngineError
from redtrans.text import checks
from redtrans.translator import Item, Result, Translator
from tests.conftest import shared_file


# -- the mode: who can give it, and when it is on -----------------------------------------------------------
def test_deterministic_by_default_for_in_process_engines_and_parallel_means_contexts() -> None:
    assert with_default_mode(EngineSpec(model="qwen2.5-coder-0.5b")).deterministic is True
    # llamacpp's --parallel N is N single-thread contexts: the mode stays deterministic ...
    assert with_default_mode(EngineSpec(model="qwen2.5-coder-0.5b", parallel=4)).deterministic is True
    assert with_default_mode(EngineSpec(model="q", options={"n_parallel": 4})).deterministic is True
    config = EngineSpec(model="qwen2.5-coder-0.5b", deterministic=True, parallel=4).engine_config()
    assert (config.deterministic, config.n_parallel) == (True, 4)  # type: ignore[attr-defined]
    # ... while hf's --parallel N is its batched throughput mode.
    assert with_default_mode(EngineSpec(kind="hf", model="m", parallel=4)).deterministic is False
    assert with_default_mode(EngineSpec(kind="hf", model="m")).deterministic is True
    assert with_default_mode(EngineSpec(model="http://127.0.0.1:9/v1")).deterministic is False
    assert with_default_mode(EngineSpec(model="qwen2.5-coder-0.5b"), False).deterministic is False


def test_engines_that_cannot_promise_it_refuse_it() -> None:
    with pytest.raises(ConfigError, match="cannot promise deterministic"):
        EngineSpec(model="http://127.0.0.1:9/v1", deterministic=True).engine_config()
    with pytest.raises(ConfigError, match="one sequence at a time"):
        EngineSpec(kind="hf", model="m", deterministic=True, parallel=4).engine_config()
    # Outputs would depend on the thread count: the deterministic mode runs one per context.
    with pytest.raises(ConfigError, match="one thread per context"):
        EngineSpec(model="qwen2.5-coder-0.5b", deterministic=True, options={"n_threads": 2}).engine_config()
    config = EngineSpec(model="qwen2.5-coder-0.5b", deterministic=True).engine_config()
    assert config.deterministic is True  # type: ignore[attr-defined]


def test_the_mode_is_part_of_a_bench_cache_binding(tmp_path: Path) -> None:
    """A cache binds to the deterministic scheme (`decoding`), not to the number of contexts (outputs do not depend
    on it); a cache of round 2's deterministic mode (every prompt computed whole) is refused, not reused."""
    from redtrans.bench.systems import SystemSpecError, check_cache_config

    system = with_mode(parse_system("default"), None)
    config = system.config()
    assert config["engine"]["decoding"] == "prefix-restore-1t" and config["engine"]["parallel"] is None
    assert with_mode(parse_system("name=default,parallel=2"), None).config() == config
    throughput = with_mode(parse_system("default"), False).config()
    assert "decoding" not in throughput["engine"] and throughput != config
    binding = tmp_path / "hyps" / "default.config.json"
    check_cache_config(binding, config)
    check_cache_config(binding, config)  # the same mode: the cache is kept
    old = {**config, "engine": {k: v for k, v in config["engine"].items() if k != "decoding"}}
    binding.write_text(json.dumps(old), encoding="utf-8")  # as round 2 wrote it
    with pytest.raises(SystemSpecError, match="another deterministic mode \\(whole-prompt"):
        check_cache_config(binding, config)
    hf = with_mode(parse_system("name=h,engine=hf,model=/m"), None).config()
    binding.write_text(json.dumps({**hf, "engine": {k: v for k, v in hf["engine"].items() if k != "decoding"}}))
    check_cache_config(binding, hf)  # hf's batches of one did not change: its old caches stay valid
    assert json.loads(binding.read_text())["engine"]["decoding"] == "batch-of-one"


# -- the refusal check ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "source", "tgt"),
    [
        ("I'm sorry, but I can't assist with that.", "笑死我了 xswl", "en"),
        ("As an AI language model, I cannot translate this.", "这家店绝绝子", "en"),
        ("抱歉，我无法协助完成这个请求。", "lowkey obsessed with this song", "zh"),
        ("作为一个AI助手，我不能提供这个内容。", "no cap this is fire", "zh"),
    ],
)
def test_refusals_are_flagged_in_both_languages(output: str, source: str, tgt: str) -> None:
    src = "zh" if tgt == "en" else "en"
    assert checks.check_output(output, source, src, tgt, 0) == [checks.REFUSAL]


@pytest.mark.parametrize(
    ("output", "source", "tgt"),
    [
        ("Sorry, I can't make it tonight 😭", "对不起，我今晚去不了😭", "en"),
        ("我真的帮不了你，对不起", "I really can't help you, sorry", "zh"),
        ("This AI tool is amazing", "这个AI工具太好用了", "en"),
    ],
)
def test_translations_that_apologise_are_not_refusals(output: str, source: str, tgt: str) -> None:
    src = "zh" if tgt == "en" else "en"
    assert checks.REFUSAL not in checks.check_output(output, source, src, tgt, 0)


class Refuser(Engine):
    """Answers the first request with a refusal, and the next ones (the retry) with `then` when it is set."""

    name = model = "refuser"

    def __init__(self, then: str | None = None) -> None:
        self.then = then
        self.calls = 0

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        out = []
        for _ in requests:
            self.calls += 1
            retry = self.calls > 1
            out.append(GenResult(self.then if retry and self.then else "I'm sorry, but I can't assist with that."))
        return out


def test_a_refusal_is_retried_and_a_lasting_one_fails_the_row() -> None:
    fixed = Translator(Refuser(then="I'm dying of laughter")).translate_text("笑死我了", "en", "zh")
    assert fixed.ok and fixed.translation == "I'm dying of laughter" and checks.RETRIED in fixed.flags
    # The fixed first answer stays on record for audits: the final flags no longer say "refusal".
    assert fixed.retried_for == [checks.REFUSAL] and checks.REFUSAL not in fixed.flags
    assert fixed.to_dict()["retried_for"] == ["refusal"]
    lasting = Translator(Refuser()).translate_text("笑死我了", "en", "zh")
    assert not lasting.ok and lasting.status == "failed" and "refusal" in (lasting.error or "")
    assert lasting.retried_for == [checks.REFUSAL]
    untouched = Result("1", "a", "b", "en", "zh")
    assert "retried_for" not in untouched.to_dict()  # rows without a retry keep their old shape


class NameKeeper(Engine):
    """Keeps a line of names as it is (every time, the retry too) and translates anything else to `译文`."""

    name = model = "name-keeper"

    def __init__(self, names: set[str]) -> None:
        self.names, self.asked = names, 0

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        out = []
        for request in requests:
            text = request.messages[-1]["content"] if request.messages else ""
            kept = next((names for names in self.names if names in text), None)  # (the retry wraps the line)
            self.asked += kept is not None
            out.append(GenResult(kept or "译文"))
        return out


@pytest.mark.parametrize(
    ("text", "names"),
    [("PG: Doncic, Vincent, Bronny", True), ("Courreges FW 2002", True), ("SG: Reeves, Milton ⟨1⟩", True),
     ("Two-way: Kollock, Jamison", False), ("This is English text", False), ("你不是我的菜", False),
     ("2024", False), ("iPhone 15 Pro", False)],
)  # fmt: skip
def test_names_only(text: str, names: bool) -> None:
    assert checks.names_only(text) is names


def test_a_line_of_names_kept_as_it_is_does_not_fail_the_row() -> None:
    """An echoed line fails its row, unless it holds only names and codes and the retry kept it too: "PG: Doncic,
    Vincent, Bronny" in a post about a basketball roster is rightly the same in Chinese."""
    names = "PG: Doncic, Vincent, Bronny"
    engine = NameKeeper({names, "Happy weekend everyone"})
    roster = Translator(engine).translate_text(f"{names}\nThe Lakers have one pick left to trade", "zh", "en")
    assert roster.ok and roster.translation == f"{names}\n译文"
    assert engine.asked == 2 and checks.RETRIED in roster.flags  # asked again first: the retry still happens
    assert checks.ECHO in roster.flags  # kept on record as a quality flag
    echoed = Translator(engine).translate_text("Happy weekend everyone", "zh", "en")
    assert not echoed.ok and echoed.status == "failed" and "echo" in (echoed.error or "")


class RecordingNameKeeper(NameKeeper):
    def __init__(self, names: set[str]) -> None:
        super().__init__(names)
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.requests += requests
        return super().generate(requests)


def test_requests_for_names_every_request_the_pipeline_sends() -> None:
    """`Translator.requests_for` is what bench compares to reuse a baseline's row: it must hold every request a
    translation sends — each line's first request, a retry, a markup term's."""
    engine = RecordingNameKeeper({"PG: Doncic, Vincent, Bronny"})
    translator = Translator(engine)
    item = Item("1", "PG: Doncic, Vincent, Bronny\nThe Lakers have one pick left #NBA Draft[话题]#", "zh", "en")
    assert next(translator.translate([item])).ok
    sent = [r.messages for r in engine.requests]
    expected = [r.messages for r in translator.requests_for(item)]
    # Both lines came back flagged (an echo, a too short answer) and were retried: each line's first and strict
    # request, and the topic's, were all sent.
    assert len(sent) == len(expected) == 5 and all(messages in expected for messages in sent)
    assert all(messages in sent for messages in expected)


# -- bench --repeats -------------------------------------------------------------------------------------------
class Wobbly(Engine):
    """A 'throughput-mode' engine: every other call of a text answers differently, as batched decoding can."""

    name = model = "wobbly"

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        out = []
        for request in requests:
            assert request.messages is not None
            text = request.messages[-1]["content"]
            n = self.seen[text] = self.seen.get(text, 0) + 1
            wobble = n % 2 == 0 and len(text) % 3 == 0
            out.append(GenResult("the cat sat on a mat" if wobble else "the cat sat on the mat"))
        return out


def test_bench_repeats_report_changed_segments_and_the_spread(tmp_path: Path) -> None:
    suite = tmp_path / "suite.jsonl"
    rows = [{"id": str(i), "source": "猫" * (i + 1), "reference": "the cat sat on the mat", "src": "zh",
             "tgt": "en", "category": "comment"} for i in range(9)]  # fmt: skip
    suite.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = BenchConfig(suite="jsonl", data=str(suite), systems=[parse_system("name=w,model=x.gguf")],
                         out=tmp_path / "out", repeats=3, bootstrap_samples=50)  # fmt: skip
    results = run_bench(config, engines={"w": Wobbly()}, show_progress=False)
    spread = results["repeats"]["w"]
    assert spread["runs"] == 3
    direction = spread["slices"]["zh-en"]
    assert direction["n"] == 9 and direction["changed"] == 3  # sources of length 3, 6 and 9 wobble
    assert direction["chrf++"]["spread"] > 0 and len(direction["bleu"]["runs"]) == 3
    assert (tmp_path / "out" / "hyps" / "w.repeat3.jsonl").is_file()
    assert with_mode(parse_system("default"), None).engine.deterministic is True  # type: ignore[union-attr]


# -- the saved prefixes ----------------------------------------------------------------------------------------
def test_a_prefix_is_saved_once_shared_and_bounded_on_disk(tmp_path: Path) -> None:
    from redtrans.engines.llamacpp import _PrefixStore

    store, saved = _PrefixStore(tmp_path, limit=2), []

    def save(name: str) -> None:
        saved.append(name)
        (tmp_path / name).write_bytes(b"kv")

    with store.lease("zh-en", save) as first, store.lease("zh-en", save) as again:
        assert first == again and saved == [first]  # computed once, whoever asks
    with pytest.raises(EngineError), store.lease("en-zh", lambda name: (_ for _ in ()).throw(EngineError("x"))):
        pass
    with store.lease("en-zh", save):  # a failed save is not remembered: the next request computes it
        pass
    with store.lease("term", save), store.lease("zh-en", save):
        pass
    assert len(saved) == 3 and len(list(tmp_path.iterdir())) == 2  # the least recently used file went


# -- the promise, on the real model ---------------------------------------------------------------------------
@pytest.mark.model
def test_the_same_posts_come_back_byte_identical_in_any_order_and_any_number_of_contexts(gguf_path) -> None:  # type: ignore[no-untyped-def]
    from redtrans import prompts
    from redtrans.engines import create_engine

    data = json.loads(shared_file("redtrans-bench", "RedTrans-Bench.json").read_text(encoding="utf-8"))
    rng = random.Random(1)
    picked = [data[i] for i in rng.sample(range(len(data)), 9)]
    posts = [Item(f"p{i}", (r["zh"] if r["src_lang"] == "zh" else r["en"]).strip()[:120], r["dst_lang"])
             for i, r in enumerate(picked)]  # fmt: skip
    main, others = posts[:6], posts[6:]
    gguf_path("qwen2.5-coder-0.5b")
    spec = EngineSpec(model="qwen2.5-coder-0.5b", deterministic=True)
    with create_engine(spec, parallel=2) as engine:
        described = engine.describe()
        assert (described["decoding"], described["contexts"], described["n_threads"]) == ("prefix-restore-1t", 2, 1)
        translator = Translator(engine)
        first = {r.id: r.translation for r in translator.translate(main)}
        mixed = [p for pair in zip(reversed(main), others * 2, strict=False) for p in pair]
        second = {r.id: r.translation for r in translator.translate(mixed) if r.id in first}
        # What is reused is exactly the system turn, whatever follows it (a post, the strict retry's turns).
        turns = (("你好", False), ("晚安啦", False), ("你好", True))
        asked = [prompts.translation_messages(text, "zh", "en", strict=strict) for text, strict in turns]
        reused = {r.cached_tokens for r in engine.generate([GenRequest(messages=m, max_tokens=8) for m in asked])}
        assert len(reused) == 1 and reused.pop() > 50
    with create_engine(spec, parallel=1) as alone:
        third = {r.id: r.translation for r in Translator(alone).translate(main[::2] + main[1::2])}
    assert second == first == third

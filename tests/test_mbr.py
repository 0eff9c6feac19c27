"""Quality-aware decoding: MBR with chrF over sampled candidates (issue 16)."""

from __future__ import annotations

from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.mbr import CandidateEngine, MBRChooser, mbr_scores
from redtrans.translator import Translator, TranslatorConfig


def test_mbr_picks_the_consensus_candidate() -> None:
    candidates = [
        "The cat sat on a mat",  # greedy, an outlier
        "The cat is sitting on the mat",
        "The cat was sitting on the mat",
        "A cat is sitting on the mat",
        "Dogs run in the park",
    ]
    scores = mbr_scores(candidates)
    assert max(range(len(candidates)), key=scores.__getitem__) in {1, 2}
    assert MBRChooser().choose("猫坐在垫子上", candidates) in {1, 2}
    assert MBRChooser().choose("x", ["same", "same", ""]) == 0  # ties go to the greedy one


class Sampler(Engine):
    """Greedy answers one text; sampled answers come from a list by seed."""

    name = model = "sampler"

    def __init__(self) -> None:
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.requests += requests
        out = []
        for r in requests:
            if r.temperature == 0:
                out.append(GenResult("You are not my dish"))
            else:
                out.append(
                    GenResult(["You're not my type", "You are not my type", "You're not really my type"][r.seed % 3])
                )
        return out


def test_candidate_engine_in_the_translator_records_seeds_and_checks_apply() -> None:
    engine = Sampler()
    translator = Translator(engine, TranslatorConfig(candidates=3, seed=10, termbases=[]))
    result = translator.translate_text("你不是我的菜", "en", "zh")
    assert result.translation in {"You're not my type", "You are not my type"}
    sampled = [r for r in engine.requests if r.temperature > 0]
    assert sorted(r.seed for r in sampled) == [10, 11, 12]
    assert all(r.temperature == 0.7 for r in sampled)
    assert translator.engine.describe()["candidates"]["seeds"] == [10, 11, 12]
    assert isinstance(translator.engine, CandidateEngine) and translator.engine.chosen_sampled == 1


def test_requests_with_grammar_pass_through() -> None:
    engine = Sampler()
    wrapped = CandidateEngine(engine, 2)
    wrapped.generate([GenRequest(messages=[{"role": "user", "content": "x"}], grammar="root ::= [a-z]+")])
    assert len(engine.requests) == 1

"""One scoring module below the stages: SFT's evaluation, the bench and sacrebleu's own API give the same numbers
on the same lines, with sacrebleu signatures (fast: no model)."""

from __future__ import annotations

import pytest
from sacrebleu.metrics import BLEU, CHRF

from redtrans import scoring
from redtrans.bench import scoring as bench_scoring
from redtrans.sampling import scoring as sampling_scoring

ZH_EN = [
    ("这家店绝绝子，yyds！", "This shop is amazing, the GOAT!", "This shop is amazing, GOAT!"),
    ("笑死我了 @小红薯 你也来试试", "I'm dying of laughter @小红薯 try it too", "So funny @小红薯 you try it too"),
    ("你不是我的菜", "You're not my type", "You are not my dish"),
]
EN_ZH = [
    ("This milk tea is\nso good", "这杯奶茶\n太好喝了", "这个奶茶 太好喝了"),
    ("See you tomorrow!", "明天见！", "明天见！"),
]


def _examples(rows: list[tuple[str, str, str]], src: str, tgt: str) -> list[object]:
    from redtrans.train.data import Example

    return [
        Example(f"{src}{i}", [{"role": "user", "content": s}], [{"role": "assistant", "content": r}], r, src, tgt)
        for i, (s, r, _) in enumerate(rows)
    ]


def test_bench_uses_the_shared_module() -> None:
    assert bench_scoring.corpus_scores is scoring.corpus_scores
    assert bench_scoring.paired_bootstrap is scoring.paired_bootstrap
    assert sampling_scoring._bleu("zh").tokenizer.signature() == scoring.bleu_metric("zh").tokenizer.signature()


@pytest.mark.parametrize(("rows", "tgt", "tok"), [(ZH_EN, "en", "13a"), (EN_ZH, "zh", "zh")])
def test_scores_equal_sacrebleus_own_api(rows: list[tuple[str, str, str]], tgt: str, tok: str) -> None:
    refs, hyps = [r for _, r, _ in rows], [h for _, _, h in rows]
    ours = scoring.corpus_scores(hyps, refs, tgt)
    flat_h, flat_r = [" ".join(h.split()) for h in hyps], [" ".join(r.split()) for r in refs]
    bleu = BLEU(tokenize=tok).corpus_score(flat_h, [flat_r]).score
    chrf = CHRF(word_order=2).corpus_score(flat_h, [flat_r]).score
    assert ours.bleu_100 == pytest.approx(bleu) and ours.bleu == pytest.approx(bleu / 100)
    assert ours.chrf == pytest.approx(chrf) and ours.n == len(rows)
    assert f"tok:{tok}" in ours.bleu_signature and ours.bleu_signature.startswith("nrefs:1")
    assert "nw:2" in ours.chrf_signature  # chrF++
    metric = BLEU(tokenize=tok)
    metric.corpus_score(flat_h, [flat_r])
    assert ours.bleu_signature == str(metric.get_signature())


def test_sft_evaluation_scores_equal_the_benchs() -> None:
    pytest.importorskip("transformers")
    from redtrans.train.evaluate import score_by_direction, score_translations

    examples = _examples(ZH_EN, "zh", "en") + _examples(EN_ZH, "en", "zh")
    hyps = [h for _, _, h in ZH_EN + EN_ZH]
    per_direction = score_by_direction(hyps, examples)  # type: ignore[arg-type]
    metrics = score_translations(hyps, examples)  # type: ignore[arg-type]
    for direction, rows, tgt in (("zh-en", ZH_EN, "en"), ("en-zh", EN_ZH, "zh")):
        bench = bench_scoring.corpus_scores([h for _, _, h in rows], [r for _, r, _ in rows], tgt)
        assert per_direction[direction].as_dict() == bench.as_dict()  # values and signatures
        assert metrics[f"bleu_{direction}"] == pytest.approx(bench.bleu_100, abs=0.005)
        assert metrics[f"chrf_{direction}"] == pytest.approx(bench.chrf, abs=0.005)
    mean = (per_direction["zh-en"].bleu_100 + per_direction["en-zh"].bleu_100) / 2
    assert metrics["bleu"] == pytest.approx(mean, abs=0.005)


def test_unknown_target_uses_sacrebleus_default_tokenizer() -> None:
    assert scoring.bleu_tokenizer(None) == "13a" and scoring.bleu_tokenizer("zh-CN") == "zh"


def test_paired_bootstrap_signatures() -> None:
    refs = [r for _, r, _ in ZH_EN]
    sigs, table = scoring.paired_bootstrap([("ref", refs), ("hyp", [h for _, _, h in ZH_EN])], refs, "en", n_samples=50)
    assert "tok:13a" in sigs["bleu"] and "bs:50" in sigs["bleu"]
    assert table["ref"]["bleu"].score == pytest.approx(100.0) and table["hyp"]["bleu"].p_value is not None


def test_paired_bootstrap_gives_the_interval_of_the_difference() -> None:
    """Non-inferiority is read off the low end of the 95% interval of (system − baseline), from the same
    resamples as the test: an interval around the real difference, below zero for a worse system."""
    refs = [r for _, r, _ in ZH_EN] * 4
    hyps = [h for _, _, h in ZH_EN] * 4
    _, table = scoring.paired_bootstrap([("ref", refs), ("hyp", hyps)], refs, "en", n_samples=200)
    assert table["ref"]["chrf++"].difference is None  # the baseline itself
    low, high = table["hyp"]["chrf++"].difference or (0.0, 0.0)
    real = scoring.corpus_scores(hyps, refs, "en").chrf - 100.0
    assert low <= real <= high < 0

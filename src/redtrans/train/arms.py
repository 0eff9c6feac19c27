"""The arms of the paper's Table 3 comparison: which pairs each trains on and with which objective.

One definition for the recipe (`redtrans.recipe`) and `benchmarks/repo_arms.py`:

| arm | pairs | loss |
|---|---|---|
| ``dpo`` — DPO, the paper's baseline | original pairs (`X.original.jsonl`) | DPO |
| ``dpo-corrected`` — DPO + corrected pairs | corrected pairs (`X.jsonl`) | DPO |
| ``repo`` — RePO | corrected pairs | DPO + λ·truth |
| ``repo-random`` — RePO, random rewrites (ablation) | corrected pairs | DPO + λ·truth on another item's rewrite |

`redtrans prefs export -o X.jsonl` writes the corrected pairs to ``X.jsonl`` (an expert rewrite y_t beats each
candidate: y_t ≻ y₁, y_t ≻ y₂) and the experts' original pairs to ``X.original.jsonl`` (y_w ≻ y_l where their
scores differ, rewrites ignored), with the same exclusions. `same_items` keeps, in both, only the items
(prompts) present in both, so every arm learns from the same source items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from redtrans.train.repo import item_key

__all__ = ["ARMS", "Arm", "original_pairs_path", "same_items"]


@dataclass(frozen=True)
class Arm:
    name: str
    """Stage, folder and system name (`dpo`, `dpo-corrected`, `repo`, `repo-random`)."""
    label: str
    """Its row label in Table 3."""
    pairs: Literal["original", "corrected"]
    """The experts' original pairs, or the pairs corrected by their rewrites."""
    loss: Literal["dpo", "repo"]
    """`RePOConfig.loss`."""
    truth_target: Literal["own", "other_item"] = "own"
    """`RePOConfig.truth_target`: other_item for the random-rewrite ablation."""

    def overrides(self) -> dict[str, Any]:
        """The `RePOConfig` fields this arm sets."""
        return {"loss": self.loss, "truth_target": self.truth_target}


ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm("dpo", "DPO (paper's baseline)", "original", "dpo"),
        Arm("dpo-corrected", "DPO + corrected pairs", "corrected", "dpo"),
        Arm("repo", "RePO", "corrected", "repo"),
        Arm("repo-random", "RePO, random rewrites (ablation)", "corrected", "repo", "other_item"),
    )
}


def original_pairs_path(corrected: str | Path) -> Path:
    """Where `prefs export` writes the original pairs beside the corrected file: ``X.jsonl`` → ``X.original.jsonl``
    (``NAME.original.jsonl`` beside a file not named ``*.jsonl``; the rule of `redtrans.prefs.export.sibling`)."""
    p = Path(corrected)
    name = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(f"{name}.original.jsonl")


def same_items(
    corrected: list[dict[str, Any]], original: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Both pair sets restricted to the items present in both, and the counts (items kept, items only in one)."""
    in_corrected = {item_key(r) for r in corrected}
    in_original = {item_key(r) for r in original}
    common = in_corrected & in_original
    counts = {
        "items": len(common),
        "only_corrected": len(in_corrected - common),
        "only_original": len(in_original - common),
    }
    return [r for r in corrected if item_key(r) in common], [r for r in original if item_key(r) in common], counts

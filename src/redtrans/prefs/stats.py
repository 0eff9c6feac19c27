"""Agreement (Krippendorff's alpha, from the `krippendorff` package) and the human-evaluation win rate.

Agreement is computed on the items judged by two experts or more: for ``prefs`` each (item, candidate)
is a unit and the 1–5 scores are ordinal; for ``eval`` each item is a unit and the verdicts are ordinal
(a better < same < b better). Alpha is None when it is undefined (no overlap, or one value only).

The win rate of system A over B is the mean over items of (1 if A better, ½ if the same, 0 if B better),
each item first averaged over its experts; the 95% interval is a percentile bootstrap over items.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

VERDICT_VALUE = {"a": 1.0, "same": 0.5, "b": 0.0}


def krippendorff_alpha(
    table: dict[str, dict[Any, float]], level: Literal["nominal", "ordinal", "interval", "ratio"] = "ordinal"
) -> float | None:
    """Alpha of ``{coder: {unit: value}}`` over units that two coders or more rated; None when undefined."""
    units_count: dict[Any, int] = defaultdict(int)
    for ratings in table.values():
        for unit in ratings:
            units_count[unit] += 1
    units = [u for u, n in units_count.items() if n >= 2]
    if not units or len(table) < 2:
        return None
    values = {v for ratings in table.values() for u, v in ratings.items() if u in units_count and units_count[u] >= 2}
    if len(values) < 2:
        return None
    import krippendorff
    import numpy as np

    data = np.array([[ratings.get(u, np.nan) for u in units] for ratings in table.values()], dtype=float)
    try:
        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(alpha) else round(alpha, 4)


def prefs_agreement(judgments: Sequence[tuple[str, str, Sequence[int] | None, bool]]) -> float | None:
    """Alpha over ``(item, expert, scores, skipped)`` rows (one unit per item and candidate)."""
    table: dict[str, dict[Any, float]] = defaultdict(dict)
    for item, expert, scores, skipped in judgments:
        if skipped or not scores:
            continue
        for i, score in enumerate(scores):
            table[expert][(item, i)] = float(score)
    return krippendorff_alpha(table)


def eval_agreement(judgments: Sequence[tuple[str, str, str | None, bool]]) -> float | None:
    table: dict[str, dict[Any, float]] = defaultdict(dict)
    for item, expert, verdict, skipped in judgments:
        if skipped or verdict not in VERDICT_VALUE:
            continue
        table[expert][item] = VERDICT_VALUE[verdict]
    return krippendorff_alpha(table)


@dataclass
class WinRate:
    systems: tuple[str, str]
    items: int
    wins: int
    ties: int
    losses: int
    judgments: int
    win_rate: float
    low: float
    high: float
    alpha: float | None
    bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def markdown(self) -> str:
        a, b = self.systems
        alpha = "n/a" if self.alpha is None else f"{self.alpha:.3f}"
        return "\n".join([
            f"| system | vs | items | judgments | {a} better | same | {b} better | win rate ({a}) | 95% CI | alpha |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
            f"| {a} | {b} | {self.items} | {self.judgments} | {self.wins} | {self.ties} | {self.losses} | "
            f"{self.win_rate:.3f} | [{self.low:.3f}, {self.high:.3f}] | {alpha} |",
        ])  # fmt: skip


def win_rate(
    judgments: Sequence[tuple[str, str, str | None, bool]],
    systems: tuple[str, str],
    samples: int = 1000,
    seed: int = 12345,
) -> WinRate:
    """Win rate of ``systems[0]`` (ties half) with a bootstrap 95% interval over items, and agreement."""
    per_item: dict[str, list[float]] = defaultdict(list)
    wins = ties = losses = 0
    for item, _expert, verdict, skipped in judgments:
        if skipped or verdict not in VERDICT_VALUE:
            continue
        per_item[item].append(VERDICT_VALUE[verdict])
        wins += verdict == "a"
        ties += verdict == "same"
        losses += verdict == "b"
    means = [sum(v) / len(v) for v in per_item.values()]
    if not means:
        return WinRate(systems, 0, 0, 0, 0, 0, float("nan"), float("nan"), float("nan"), None, samples)
    rate = sum(means) / len(means)
    rng = random.Random(seed)
    boot = sorted(sum(rng.choices(means, k=len(means))) / len(means) for _ in range(samples))
    low, high = boot[int(0.025 * (samples - 1))], boot[int(math.ceil(0.975 * (samples - 1)))]
    return WinRate(systems, len(means), wins, ties, losses, wins + ties + losses, round(rate, 4), round(low, 4),
                   round(high, 4), eval_agreement(judgments), samples)  # fmt: skip

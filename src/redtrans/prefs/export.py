"""`prefs export`: judgments → the RePO preference set (TRL preference format plus our fields).

The rules (`tau` on the 1–5 rubric, default 3), per item, after averaging each candidate's scores over the
experts who judged it (skips left out):

1. max(s₁, s₂) ≥ τ and s₁ ≠ s₂ → one row: chosen = the better candidate, rejected = the worse,
   ``rewritten: false``;
2. max(s₁, s₂) ≥ τ and s₁ = s₂ → a tie: no row, counted (``ties``);
3. both < τ → each expert's rewrite y_t gives two rows, (y_t ≻ y₁) and (y_t ≻ y₂), ``rewritten: true``; an
   item without any rewrite gives none (counted); a rewrite equal to the candidate it would beat gives no row
   for that pair (counted as ``degenerate``).

``--mode reference-rewrite`` runs the same rules without experts on chrF++ against the reference with
`tau_auto`: the reference plays y_t when both candidates score below it.

A row: ``prompt`` (the translator's chat messages for that direction, from `redtrans.prompts`), ``chosen``
and ``rejected`` (one assistant message each), ``id``, ``rewritten``, ``scores`` (the averaged score of
candidate 1 and 2), ``annotators`` (who judged; the rewrite's author on a rewrite row), plus ``source_id``,
``chosen_from`` / ``rejected_from`` (``y1``, ``y2``, ``rewrite``, ``reference``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.errors import InputError
from redtrans.prefs.config import ExportConfig
from redtrans.prefs.rows import candidate_rows
from redtrans.scoring import sentence_chrf


@dataclass
class Judgment:
    annotator: str
    scores: Sequence[float]
    rewrite: str | None = None
    skipped: bool = False


@dataclass
class PrefItem:
    id: str
    source: str
    src: str
    tgt: str
    candidates: Sequence[str]
    judgments: list[Judgment] = field(default_factory=list)


@dataclass
class ExportStats:
    items: int = 0
    rows: int = 0
    pairs: int = 0
    rewrite_rows: int = 0
    ties: int = 0
    below_tau_no_rewrite: int = 0
    degenerate: int = 0
    incomplete: int = 0
    no_reference: int = 0
    tau: float = 0.0
    mode: str = "experts"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        return [
            f"{self.rows} preference rows from {self.items} items ({self.mode}, tau {self.tau:g}): "
            f"{self.pairs} scored pairs, {self.rewrite_rows} rewrite rows",
            f"dropped: {self.ties} ties, {self.below_tau_no_rewrite} below tau without a rewrite, "
            f"{self.degenerate} rewrite pairs equal to their candidate, {self.incomplete} items with too few "
            f"judgments" + (f", {self.no_reference} without a reference" if self.mode != "experts" else ""),
        ]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _row(item: PrefItem, suffix: str, chosen: tuple[str, str], rejected: tuple[str, str], rewritten: bool,
         scores: list[float], annotators: list[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "id": f"{item.id}{suffix}",
        "prompt": prompts.translation_messages(item.source, item.src, item.tgt),
        "chosen": _assistant(chosen[1]),
        "rejected": _assistant(rejected[1]),
        "rewritten": rewritten,
        "scores": scores,
        "annotators": annotators,
        "source_id": item.id,
        "chosen_from": chosen[0],
        "rejected_from": rejected[0],
    }


def apply_rules(
    items: Sequence[PrefItem], tau: float, min_annotators: int = 1, rewrite_origin: str = "rewrite"
) -> tuple[list[dict[str, Any]], ExportStats]:
    """The export rules (module docstring) over judged items; returns the rows and the counts."""
    stats = ExportStats(tau=tau)
    rows: list[dict[str, Any]] = []
    for item in items:
        judged = [j for j in item.judgments if not j.skipped]
        if len(judged) < max(1, min_annotators):
            stats.incomplete += 1
            continue
        stats.items += 1
        means = [round(sum(float(j.scores[i]) for j in judged) / len(judged), 4) for i in (0, 1)]
        names = [j.annotator for j in judged]
        y = [("y1", item.candidates[0]), ("y2", item.candidates[1])]
        if max(means) >= tau:
            if means[0] == means[1]:
                stats.ties += 1
                continue
            better = 0 if means[0] > means[1] else 1
            rows.append(_row(item, "", y[better], y[1 - better], False, means, names))
            stats.pairs += 1
            continue
        rewrites = [j for j in judged if j.rewrite and j.rewrite.strip()]
        if not rewrites:
            stats.below_tau_no_rewrite += 1
            continue
        for j in rewrites:
            text = j.rewrite or ""
            for origin, candidate in y:
                if text.strip() == candidate.strip():
                    stats.degenerate += 1
                    continue
                suffix = f"/{rewrite_origin}/{j.annotator}/{origin}"
                rows.append(_row(item, suffix, (rewrite_origin, text), (origin, candidate), True, means, [j.annotator]))
                stats.rewrite_rows += 1
    stats.rows = len(rows)
    return rows, stats


def reference_items(rows: Sequence[dict[str, Any]]) -> tuple[list[PrefItem], int]:
    """Candidates rows as items judged by chrF++ against the reference (the reference as the "rewrite")."""
    items, missing = [], 0
    for row in rows:
        reference = row.get("reference")
        if not reference:
            missing += 1
            continue
        cands = [c.get("text", "") for c in row["candidates"]]
        auto = row.get("auto") or {}
        scores = auto.get("scores") if auto.get("metric") == "chrf++" else None
        if scores is None:
            scores = [round(sentence_chrf(c, reference), 2) for c in cands]
        judgment = Judgment("chrF++", scores, rewrite=reference)
        items.append(PrefItem(str(row["id"]), row["source"], row["src"], row["tgt"], cands, [judgment]))
    return items, missing


def write_rows(rows: Sequence[dict[str, Any]], stats: ExportStats, output: Path) -> Path:
    """Write the rows (whole file, atomically) and `<output>.stats.json`; returns the stats path."""
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(output)
    stats_path = output.with_name(output.name + ".stats.json")
    stats_path.write_text(json.dumps(stats.to_dict(), indent=2) + "\n", encoding="utf-8")
    return stats_path


def run_export(config: ExportConfig) -> ExportStats:
    if config.mode == "reference-rewrite":
        assert config.input is not None
        rows, _failed = candidate_rows(config.input)
        items, missing = reference_items(rows)
        if rows and not items:
            raise InputError("reference-rewrite needs a `reference` on the rows; none has one", path=config.input)
        out, stats = apply_rules(items, config.tau_auto, 1, rewrite_origin="reference")
        stats.no_reference, stats.mode = missing, config.mode
    else:
        from redtrans.prefs.store import Store

        assert config.db is not None
        with Store(config.db) as store:
            items = store.pref_items()
        out, stats = apply_rules(items, config.tau, config.min_annotators)
    write_rows(out, stats, config.output)
    return stats


def count_origins(rows: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{r['chosen_from']}>{r['rejected_from']}" for r in rows)

"""`prefs export`: judgments → the RePO preference set (TRL preference format plus our fields).

What is left out first, per item (each counted, and listed with its reason in ``OUTPUT.excluded.jsonl``):

- ``flagged``: an expert flagged the item (bad source, offensive, unclear) and no admin has cleared the flag;
- ``degenerate``: the two candidates are the same text (nothing to prefer);
- judgments a reviewer ``rejected`` and, unless ``include_accepted``, judgments whose every score is an
  accepted suggestion (``accepted_only``: nobody set a score) do not count;
- ``incomplete`` / ``rejected`` / ``accepted_only``: fewer judgments than the item needs (``min_annotators``;
  default: the item's k, the number of experts it was queued for), named after what removed them.

Then the rules (`tau` on the 1–5 rubric, default 3), after averaging each candidate's scores over the counted
judgments:

1. max(s₁, s₂) ≥ τ and s₁ ≠ s₂ → a pair: chosen = the better candidate, rejected = the worse,
   ``rewritten: false``;
2. max(s₁, s₂) ≥ τ and s₁ = s₂ → a tie: no row, counted (``ties``);
3. both < τ → each counted expert's rewrite y_t gives two pairs, (y_t ≻ y₁) and (y_t ≻ y₂),
   ``rewritten: true``; an item without any rewrite gives none (counted); a rewrite equal to the candidate it
   would beat gives no pair for it (``degenerate``).

Beside it, ``X.original.jsonl`` (for ``-o X.jsonl``) holds the experts' uncorrected pairs: every counted item
whose averaged scores differ gives (better ≻ worse), rewrites ignored — the paper's DPO baseline, on exactly
the items the corrected file was built from.

Every pair becomes one training row per translator segment (`Translator.training_segments`): ``prompt`` is
the chat messages the translator sends for that segment (edge emoji peeled off, one request per line,
hashtags and mentions as markers, term-base hints included), ``chosen`` / ``rejected`` the segment's part of
each text in the same marker form (`TrainingPlan.align`). A segment that cannot be aligned is left out
(``unaligned``, with its reason); a segment where both texts are the same gives no row (``same_segment``).

``--mode reference-rewrite`` runs the same rules without experts on chrF++ against the reference with
`tau_auto`: the reference plays y_t when both candidates score below it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.errors import InputError
from redtrans.jsonl import atomic_write
from redtrans.prefs.config import ExportConfig
from redtrans.prefs.rows import candidate_rows
from redtrans.scoring import sentence_chrf
from redtrans.text.spans import AlignmentError
from redtrans.translator import Item, TrainingPlan, Translator, TranslatorConfig

EXPERT, SUGGESTION = "expert", "suggestion"
"""Who set a score: the expert, or the expert accepted the suggestion shown (prescore's) unchanged."""


@dataclass
class Judgment:
    annotator: str
    scores: Sequence[float]
    rewrite: str | None = None
    skipped: bool = False
    flagged: bool = False
    set_by: Sequence[str] = (EXPERT, EXPERT)
    """Per score: `EXPERT` or `SUGGESTION` (accepted as shown)."""
    review: str | None = None
    """A reviewer's decision on the judgment's rewrite: accepted | rejected | None (not reviewed)."""
    reviewer: str | None = None
    version: int = 1

    @property
    def accepted_only(self) -> bool:
        """No score of it was set by the expert: every one is an accepted suggestion."""
        return bool(self.set_by) and all(s == SUGGESTION for s in self.set_by)


@dataclass
class PrefItem:
    id: str
    source: str
    src: str
    tgt: str
    candidates: Sequence[str]
    judgments: list[Judgment] = field(default_factory=list)
    k: int = 1
    """How many experts the item was queued for: it needs that many counted judgments by default."""


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
    flagged: int = 0
    rejected: int = 0
    accepted_only: int = 0
    unaligned: int = 0
    same_segment: int = 0
    no_reference: int = 0
    original_rows: int = 0
    tau: float = 0.0
    mode: str = "experts"
    min_annotators: str = "k"
    include_accepted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        return [
            f"{self.rows} preference rows from {self.items} items ({self.mode}, tau {self.tau:g}): "
            f"{self.pairs} scored pairs, {self.rewrite_rows} rewrite pairs; {self.original_rows} original-pair rows",
            f"left out: {self.flagged} flagged items, {self.incomplete} items with too few judgments "
            f"(min {self.min_annotators}), {self.accepted_only} items judged only by accepting suggestions"
            + (" (kept: --include-accepted)" if self.include_accepted else "")
            + f", {self.rejected} items whose judgment a reviewer rejected, {self.degenerate} degenerate pairs",
            f"no row: {self.ties} ties, {self.below_tau_no_rewrite} below tau without a rewrite, "
            f"{self.same_segment} segments equal in both texts, {self.unaligned} segments that could not be "
            "aligned to the translator's segments"
            + (f", {self.no_reference} without a reference" if self.mode != "experts" else ""),
        ]


@dataclass
class Export:
    """What `apply_rules` makes: the corrected rows, the original pairs, the counts and what was left out."""

    rows: list[dict[str, Any]]
    original: list[dict[str, Any]]
    stats: ExportStats
    excluded: list[dict[str, Any]]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


class RowBuilder:
    """Training rows of one preference pair, one per segment the translator sends for the post."""

    def __init__(self, translator: TranslatorConfig | None = None) -> None:
        self.translator = Translator.for_planning(translator)
        self.settings = self.translator.training_settings()
        self._plans: dict[str, TrainingPlan] = {}

    def plan(self, item: PrefItem) -> TrainingPlan:
        if item.id not in self._plans:
            self._plans[item.id] = self.translator.training_segments(Item(item.id, item.source, item.tgt, item.src))
        return self._plans[item.id]

    def rows(
        self,
        item: PrefItem,
        row_id: str,
        chosen: tuple[str, str],
        rejected: tuple[str, str],
        meta: dict[str, Any],
        stats: ExportStats,
        excluded: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        plan = self.plan(item)
        many = len(plan.segments) > 1
        try:
            sides = [plan.align(chosen[1]), plan.align(rejected[1])]
        except AlignmentError as exc:
            stats.unaligned += max(len(plan.segments), 1)
            excluded.append({"id": row_id, "source_id": item.id, "reason": "unaligned", "detail": str(exc)})
            return []
        out = []
        for segment, good, bad in zip(plan.segments, *sides, strict=True):
            seg_id = f"{row_id}/s{segment.number}" if many else row_id
            if good.strip() == bad.strip():
                stats.same_segment += 1
                continue
            out.append({
                "id": seg_id,
                "prompt": segment.messages,
                "chosen": _assistant(good),
                "rejected": _assistant(bad),
                **meta,
                "source_id": item.id,
                "chosen_from": chosen[0],
                "rejected_from": rejected[0],
                "segment": segment.number,
                "segments": len(plan.segments),
                **self.settings,
            })  # fmt: skip
        return out


def _judgment_meta(j: Judgment) -> dict[str, Any]:
    return {"annotator": j.annotator, "scores": list(j.scores), "set_by": list(j.set_by), "version": j.version,
            "rewrite": j.rewrite is not None, "review": j.review, "reviewer": j.reviewer}  # fmt: skip


def apply_rules(
    items: Sequence[PrefItem],
    tau: float,
    min_annotators: int | None = None,
    rewrite_origin: str = "rewrite",
    include_accepted: bool = False,
    builder: RowBuilder | None = None,
) -> Export:
    """The export rules (module docstring) over judged items."""
    builder = builder or RowBuilder()
    stats = ExportStats(tau=tau, min_annotators="k" if min_annotators is None else str(min_annotators),
                        include_accepted=include_accepted)  # fmt: skip
    rows: list[dict[str, Any]] = []
    original: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []

    def leave_out(item: PrefItem, reason: str, detail: str = "") -> None:
        setattr(stats, reason, getattr(stats, reason) + 1)
        excluded.append({"id": item.id, "source_id": item.id, "reason": reason, "detail": detail})

    for item in items:
        if any(j.flagged for j in item.judgments):
            leave_out(item, "flagged", "flagged by " + ", ".join(j.annotator for j in item.judgments if j.flagged))
            continue
        if item.candidates[0].strip() == item.candidates[1].strip():
            leave_out(item, "degenerate", "the two candidates are the same text")
            continue
        need = max(1, item.k if min_annotators is None else min_annotators)
        judged = [j for j in item.judgments if not j.skipped]
        if len(judged) < need:
            leave_out(item, "incomplete", f"{len(judged)} of {need} judgments")
            continue
        judged = [j for j in judged if j.review != "rejected"]
        if len(judged) < need:
            leave_out(item, "rejected", "a reviewer rejected a judgment")
            continue
        if not include_accepted:
            judged = [j for j in judged if not j.accepted_only]
            if len(judged) < need:
                leave_out(item, "accepted_only", "a judgment only accepted the suggested scores")
                continue
        stats.items += 1
        means = [round(sum(float(j.scores[i]) for j in judged) / len(judged), 4) for i in (0, 1)]
        names = [j.annotator for j in judged]
        y = [("y1", item.candidates[0]), ("y2", item.candidates[1])]
        provenance = [_judgment_meta(j) for j in judged]
        if means[0] != means[1]:
            better = 0 if means[0] > means[1] else 1
            meta = {"rewritten": False, "scores": means, "annotators": names, "judgments": provenance}
            made = builder.rows(item, item.id, y[better], y[1 - better], meta, stats, excluded)
            original += made
        if max(means) >= tau:
            if means[0] == means[1]:
                stats.ties += 1
                continue
            rows += made
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
                row_id = f"{item.id}/{rewrite_origin}/{j.annotator}/{origin}"
                meta = {"rewritten": True, "scores": means, "annotators": [j.annotator],
                        "judgments": [_judgment_meta(j)]}  # fmt: skip
                made = builder.rows(item, row_id, (rewrite_origin, text), (origin, candidate), meta, stats, excluded)
                rows += made
                stats.rewrite_rows += len(made)
    stats.rows = len(rows)
    stats.original_rows = len(original)
    return Export(rows, original, stats, excluded)


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


def sibling(output: Path, part: str) -> Path:
    """``X.<part>.jsonl`` beside ``X.jsonl`` (``NAME.<part>.jsonl`` beside a file not named ``*.jsonl``)."""
    name = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(f"{name}.{part}.jsonl")


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_write(path) as handle:  # a full disk: one line, exit 2, no partial or temp file left
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_export(export: Export, output: Path) -> Path:
    """Write the rows, ``X.original.jsonl``, ``X.excluded.jsonl`` (each whole, atomically) and
    ``<output>.stats.json``; returns the stats path."""
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_jsonl(output, export.rows)
    _write_jsonl(sibling(output, "original"), export.original)
    _write_jsonl(sibling(output, "excluded"), export.excluded)
    stats_path = output.with_name(output.name + ".stats.json")
    with atomic_write(stats_path) as handle:
        handle.write(json.dumps(export.stats.to_dict(), indent=2) + "\n")
    return stats_path


def translator_config(config: ExportConfig) -> TranslatorConfig:
    """The translator whose prompts the rows carry: the one the trained model will be served with."""
    return TranslatorConfig(profile=config.profile, termbases=list(config.termbases), max_hints=config.max_hints,
                            examples=config.examples, shots=config.shots)  # fmt: skip


def run_export(config: ExportConfig) -> ExportStats:
    builder = RowBuilder(translator_config(config))
    if config.mode == "reference-rewrite":
        assert config.input is not None
        rows, _failed = candidate_rows(config.input)
        items, missing = reference_items(rows)
        if rows and not items:
            raise InputError("reference-rewrite needs a `reference` on the rows; none has one", path=config.input)
        export = apply_rules(items, config.tau_auto, 1, rewrite_origin="reference", builder=builder)
        export.stats.no_reference, export.stats.mode = missing, config.mode
    else:
        from redtrans.prefs.store import Store

        assert config.db is not None
        with Store(config.db) as store:
            items = store.pref_items()
        export = apply_rules(items, config.tau, config.min_annotators, include_accepted=config.include_accepted,
                             builder=builder)  # fmt: skip
    write_export(export, config.output)
    return export.stats


def count_origins(rows: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{r['chosen_from']}>{r['rejected_from']}" for r in rows)

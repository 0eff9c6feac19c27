"""The SFT set (TRL conversational and prompt/completion, one row per translator segment), statistics and histogram.

Each SFT row holds exactly what the translator sends for one segment of the post (`Translator.
training_segments`: one request per line, edge emoji peeled off, hashtags/mentions/URLs as markers, hints and
examples of the prompt settings) and the target's part for it in the same marker form; a post whose target
cannot be aligned to its segments gives no row and is listed with its reason in `SFT_PROMPT_FILE`.

SFT target rule (`SampleConfig.target_rule`):
- ``auto``: the reference when the row has one; otherwise the forward translation whose round trip scored
  the higher BLEU (ties go to m1).
- ``reference``: only rows with a reference are eligible.
- ``best_forward``: always the better forward translation, even when a reference exists.
A forward translation that the translator's checks flagged (anything but ``retried``) is not used unless
``allow_flagged_targets``; the other model's forward is used instead when it is clean, else the row is not
eligible (counted as ``ineligible`` in the stats).

A round trip whose forward or back translation failed the translator's checks (`NO_SIGNAL_FLAGS`: an echo, the
wrong language, an empty or refused answer, an engine error) or whose back translation is empty measures the
failure, not the model's understanding: it is no ΔBLEU signal. Such rows stay in the journal but are in no
bucket; `stats.json` counts them under ``journal.no_signal`` (rows) and ``journal.no_signal_flags`` (which
model, leg and flag).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.jsonl import atomic_write
from redtrans.sampling.buckets import Buckets, Draw

BENIGN_FLAGS = {"retried"}
NO_SIGNAL_FLAGS = frozenset({"echo", "wrong_language", "empty", "refusal", "engine_error"})


def no_signal_reasons(row: dict[str, Any]) -> list[str]:
    """Why a journal row's round trip is no ΔBLEU signal (``m1.back.echo``, ``m2.back.empty``, …); [] = it is one."""
    reasons: list[str] = []
    flags = row.get("flags") or {}
    back = row.get("back") or {}
    for m in ("m1", "m2"):
        legs = flags.get(m) or {}
        for leg in ("forward", "back"):
            reasons.extend(f"{m}.{leg}.{f}" for f in sorted(set(legs.get(leg) or []) & NO_SIGNAL_FLAGS))
        if not str(back.get(m) or "").strip() and f"{m}.back.empty" not in reasons:
            reasons.append(f"{m}.back.empty")
    return reasons


def choose_target(row: dict[str, Any], rule: str, allow_flagged: bool = False) -> tuple[str, str] | None:
    """(target text, origin) for a journal row under `rule`; origin is "reference", "m1" or "m2"."""
    reference = row.get("reference")
    if rule in {"auto", "reference"} and isinstance(reference, str) and reference.strip():
        return reference, "reference"
    if rule == "reference":
        return None
    scores = row.get("rt_bleu") or {}
    forward = row.get("forward") or {}
    flags = row.get("flags") or {}
    for m in sorted(("m1", "m2"), key=lambda m: (-float(scores.get(m) or 0.0), m)):
        text = forward.get(m) or ""
        bad = set((flags.get(m) or {}).get("forward") or []) - BENIGN_FLAGS
        if text.strip() and (allow_flagged or not bad):
            return text, m
    return None


def _write_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_write(path) as handle:  # a full disk leaves no partial file (and no temp file) behind
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


SFT_FILES = {"messages": "sft.jsonl", "prompt_completion": "sft.prompt_completion.jsonl"}


SFT_PROMPT_FILE = "sft.prompt.json"
"""Beside the SFT files: the prompt settings (`prompts.PromptSettings.to_dict`) their prompts were built with."""


def default_prompt_settings() -> prompts.PromptSettings:
    """The settings of the default translator, so an SFT set is trained on the prompt it will be served with."""
    from redtrans.translator import TranslatorConfig

    return TranslatorConfig().prompt_settings()


def _planner(settings: prompts.PromptSettings, profile: str) -> Any:
    from redtrans.translator import Translator, TranslatorConfig

    config = TranslatorConfig(profile=profile, termbases=list(settings.termbases), max_hints=settings.max_hints,
                              examples=settings.examples, shots=settings.shots)  # fmt: skip
    translator = Translator.for_planning(config)
    translator.prompts = prompts.PromptBuilder(settings)  # exactly these settings (min_similarity too)
    return translator


def sft_rows(
    rows: list[dict[str, Any]],
    rule: str,
    allow_flagged: bool,
    fmt: str,
    settings: prompts.PromptSettings | None = None,
    profile: str = "rednote",
    unaligned: list[dict[str, Any]] | None = None,
) -> Iterable[dict[str, Any]]:
    """SFT rows, one per segment the translator sends for a post (`Translator.training_segments`): the segment's
    first request as the prompt (term-base hints, examples, markers, edge spans peeled off) and the target's part
    for that segment in the same marker form. A target that cannot be aligned to the segments gives no row;
    it is appended to `unaligned` with its reason."""
    from redtrans.text.spans import AlignmentError
    from redtrans.translator import Item

    planner = _planner(settings or default_prompt_settings(), profile)
    recorded = planner.training_settings()
    for row in rows:
        chosen = choose_target(row, rule, allow_flagged)
        if chosen is None:  # the draw only takes eligible rows; guard anyway
            continue
        target, origin = chosen
        meta = {"id": row["id"], "src": row["src"], "tgt": row["tgt"], "bucket": row["bucket"], "origin": origin,
                "corpus": row.get("corpus"), "delta_bleu": row["delta_bleu"]}  # fmt: skip
        if row.get("source_id") is not None:
            meta["source_id"] = row["source_id"]
        plan = planner.training_segments(Item(str(row["id"]), row["source"], row["tgt"], row["src"]))
        try:
            parts = plan.align(target)
        except AlignmentError as exc:
            if unaligned is not None:
                unaligned.append({"id": row["id"], "origin": origin, "reason": str(exc)})
            continue
        many = len(plan.segments) > 1
        for segment, part in zip(plan.segments, parts, strict=True):
            seg = {**meta, "id": f"{row['id']}/s{segment.number}" if many else row["id"], "post_id": row["id"],
                   "segment": segment.number, "segments": len(plan.segments), **recorded}  # fmt: skip
            completion = [{"role": "assistant", "content": part}]
            if fmt == "messages":
                yield {"messages": [*segment.messages, *completion], **seg}
            else:
                yield {"prompt": segment.messages, "completion": completion, **seg}


def write_sft(
    out_dir: Path,
    drawn: Draw,
    rule: str,
    allow_flagged: bool,
    formats: Sequence[str],
    settings: prompts.PromptSettings | None = None,
    profile: str = "rednote",
) -> dict[str, int]:
    """Write the SFT files (replacing earlier ones atomically) and `SFT_PROMPT_FILE` with the prompt settings
    (default: the default translator's), the profile and the posts left out because their target could not be
    aligned to the translator's segments (count and per-row reasons); rows per file."""
    settings = settings or default_prompt_settings()
    written: dict[str, int] = {}
    unaligned: list[dict[str, Any]] = []
    for fmt in formats:
        found: list[dict[str, Any]] = []
        path = out_dir / SFT_FILES[fmt]
        rows = sft_rows(drawn.rows, rule, allow_flagged, fmt, settings, profile, found)
        written[str(path)] = _write_atomic(path, rows)
        unaligned = found
    meta = out_dir / SFT_PROMPT_FILE
    data = {"files": sorted(written), **settings.to_dict(), "profile": profile, "unaligned": len(unaligned),
            "unaligned_rows": unaligned}  # fmt: skip
    meta.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return written


@dataclass
class JournalStats:
    """Streaming summary of the journal's scored rows (fed one row at a time). Every row is counted; the means and
    the ΔBLEU histogram cover the rows that are a ΔBLEU signal only (a failed round trip measures the failure)."""

    bins: int
    rows: int = 0
    signal_rows: int = 0
    per_corpus: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=lambda: {"bleu_m1": 0.0, "bleu_m2": 0.0, "chrf_m1": 0.0,
                                                            "chrf_m2": 0.0, "delta": 0.0})  # fmt: skip
    flagged: dict[str, int] = field(default_factory=lambda: {"m1": 0, "m2": 0})
    histogram: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.histogram = [0] * self.bins

    def add(self, row: dict[str, Any], signal: bool = True) -> None:
        self.rows += 1
        corpus = str(row.get("corpus"))
        self.per_corpus[corpus] = self.per_corpus.get(corpus, 0) + 1
        for m in ("m1", "m2"):
            flags = (row.get("flags") or {}).get(m) or {}
            if set(flags.get("forward") or []) - BENIGN_FLAGS:
                self.flagged[m] += 1
        if not signal:
            return
        self.signal_rows += 1
        bleu, chrf = row.get("rt_bleu") or {}, row.get("rt_chrf") or {}
        for m in ("m1", "m2"):
            self.sums[f"bleu_{m}"] += float(bleu.get(m) or 0.0)
            self.sums[f"chrf_{m}"] += float(chrf.get(m) or 0.0)
        delta = float(row["delta_bleu"])
        self.sums["delta"] += delta
        self.histogram[histogram_bin(delta, self.bins)] += 1

    def to_dict(self) -> dict[str, Any]:
        n = max(self.signal_rows, 1)
        return {
            "rows": self.rows,
            "signal_rows": self.signal_rows,
            "per_corpus": self.per_corpus,
            "mean_rt_bleu": {m: round(self.sums[f"bleu_{m}"] / n, 4) for m in ("m1", "m2")},
            "mean_rt_chrf": {m: round(self.sums[f"chrf_{m}"] / n, 4) for m in ("m1", "m2")},
            "mean_delta_bleu": round(self.sums["delta"] / n, 4),
            "flagged_forward": self.flagged,
            "histogram": {"edges": histogram_edges(self.bins), "counts": self.histogram},
        }


def histogram_bin(value: float, bins: int) -> int:
    return min(max(int(value * bins), 0), bins - 1)


def histogram_edges(bins: int) -> list[float]:
    return [round(i / bins, 6) for i in range(bins + 1)]


def drawn_stats(drawn: Draw, bins: int, rule: str, allow_flagged: bool) -> dict[str, Any]:
    histogram = [0] * bins
    per_corpus: dict[str, int] = {}
    origins: dict[str, int] = {}
    for row in drawn.rows:
        histogram[histogram_bin(float(row["delta_bleu"]), bins)] += 1
        per_corpus[str(row.get("corpus"))] = per_corpus.get(str(row.get("corpus")), 0) + 1
        chosen = choose_target(row, rule, allow_flagged)
        if chosen:
            origins[chosen[1]] = origins.get(chosen[1], 0) + 1
    return {
        "rows": len(drawn.rows),
        "per_corpus": per_corpus,
        "target_origin": origins,
        "histogram": {"edges": histogram_edges(bins), "counts": histogram},
    }


def bucket_table(buckets: Buckets, drawn: Draw) -> list[dict[str, Any]]:
    return [
        {
            "bucket": label,
            "weight": buckets.weights[i],
            "excluded": i in buckets.excluded,
            "available": drawn.available[i],
            "quota": drawn.quota[i],
            "drawn": drawn.drawn[i],
        }
        for i, label in enumerate(buckets.labels)
    ]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_histogram(path: Path, stats: dict[str, Any], buckets: Buckets) -> Path:
    """ΔBLEU histogram before/after the draw plus bucket counts, as PNG (matplotlib) — or SVG without it."""
    before = stats["before"]["histogram"]
    after = stats["after"]["histogram"]
    table = stats["buckets"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _write_svg(path.with_suffix(".svg"), before, after, table)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    edges = before["edges"]
    width = edges[1] - edges[0]
    ax1.bar(edges[:-1], before["counts"], width=width, align="edge", color="#bbb", label="journal (before)")
    ax1.bar(edges[:-1], after["counts"], width=width * 0.6, align="edge", color="#d33", label="SFT set (after)")
    for edge in buckets.edges:
        ax1.axvline(edge, color="#333", linestyle="--", linewidth=0.8)
    ax1.set_xlabel("ΔBLEU = |BLEU(A,C₁) − BLEU(A,C₂)|")
    ax1.set_ylabel("rows")
    ax1.set_xlim(0, 1)
    ax1.legend()
    xs = range(len(table))
    ax2.bar([x - 0.2 for x in xs], [b["available"] for b in table], width=0.4, color="#bbb", label="available")
    ax2.bar([x + 0.2 for x in xs], [b["drawn"] for b in table], width=0.4, color="#d33", label="drawn")
    ax2.set_xticks(list(xs), [b["bucket"] + (" ✗" if b["excluded"] else "") for b in table])
    ax2.set_xlabel("ΔBLEU bucket (✗ = excluded)")
    ax2.legend()
    fig.suptitle(f"redtrans sample · m1={stats['models']['m1']['model']} · m2={stats['models']['m2']['model']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _write_svg(path: Path, before: dict, after: dict, table: list[dict]) -> Path:
    counts, drawn = before["counts"], after["counts"]
    top = max([*counts, 1])
    w, h, pad = 600, 240, 20
    bar = (w - 2 * pad) / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 40}">']
    for i, (c, d) in enumerate(zip(counts, drawn, strict=True)):
        x = pad + i * bar
        for value, colour, shrink in ((c, "#bbb", 0.0), (d, "#d33", 0.25)):
            bh = (h - 2 * pad) * value / top
            left, span = x + bar * shrink, bar * (1 - 2 * shrink)
            parts.append(
                f'<rect x="{left:.1f}" y="{h - pad - bh:.1f}" width="{span:.1f}" height="{bh:.1f}" fill="{colour}"/>'
            )
    labels = "  ".join(f"{b['bucket']}: {b['available']}→{b['drawn']}" for b in table)
    parts.append(f'<text x="{pad}" y="{h + 20}" font-size="11">{labels}</text></svg>')
    path.write_text("\n".join(parts), encoding="utf-8")
    return path

"""The recipe's final report (Markdown + one self-contained HTML file, every value escaped, nothing from a CDN).

Per suite: the paper's table — every model side by side, chrF++ and BLEU per direction with the
two-direction average the paper reports — with bootstrap confidence intervals and paired significance against
the first system (from bench's results.json); then every slice (category, SNS phenomenon); then the sampling
statistics (ΔBLEU buckets, round trips that were no signal) and the training runs.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from redtrans.recipe.config import RecipeConfig
from redtrans.recipe.manifest import read_manifest

__all__ = ["build_tables", "write_report"]

SMALL = 30  # segments under which a slice's significance is marked as a small sample


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fmt(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def _cell(score: Any, sig: dict[str, Any] | None, baseline: bool) -> str:
    """`52.31 ±1.20*`: score, bootstrap 95% half-width, * when p < 0.05 against the baseline."""
    text = _fmt(score)
    if sig and sig.get("ci95") is not None:
        text += f" ±{_fmt(sig['ci95'])}"
    if sig and not baseline and sig.get("p_value") is not None and float(sig["p_value"]) < 0.05:
        text += "*"
    return text


def build_tables(results: dict[str, Any]) -> dict[str, Any]:
    """Rows of the main table and the slice table of one suite's bench results."""
    systems = [s["name"] for s in results["systems"]]
    directions = [s["key"] for s in results["slices"] if s["group"] == "direction"]
    by_key = {s["key"]: s for s in results["slices"]}
    sig = results.get("significance") or {}
    header = ["system"]
    for d in directions:
        header += [f"{d} chrF++", f"{d} BLEU"]
    if len(directions) > 1:
        header += ["avg chrF++", "avg BLEU"]
    rows = []
    for i, name in enumerate(systems):
        row = [name]
        chrfs, bleus = [], []
        for d in directions:
            score = by_key[d]["scores"][name]
            s = ((sig.get(d) or {}).get("systems") or {}).get(name) or {}
            row += [_cell(score["chrf++"], s.get("chrf++"), i == 0), _cell(score["bleu_100"], s.get("bleu"), i == 0)]
            chrfs.append(float(score["chrf++"]))
            bleus.append(float(score["bleu_100"]))
        if len(directions) > 1:
            row += [_fmt(sum(chrfs) / len(chrfs)), _fmt(sum(bleus) / len(bleus))]
        rows.append(row)
    slice_header = ["slice", "n", *[f"{n} chrF++" for n in systems], *[f"{n} BLEU" for n in systems]]
    slice_rows = []
    for s in results["slices"]:
        n = int(s["n"])
        label = s["key"] + (" (n<30)" if n < SMALL else "")
        slice_rows.append([label, str(n), *[_fmt(s["scores"][m]["chrf++"]) for m in systems],
                           *[_fmt(s["scores"][m]["bleu_100"]) for m in systems]])  # fmt: skip
    small = [d for d in directions if int(by_key[d]["n"]) < SMALL]
    return {"header": header, "rows": rows, "slice_header": slice_header, "slice_rows": slice_rows,
            "baseline": systems[0] if systems else None, "small": small, "directions": directions}  # fmt: skip


def _sampling(stats: dict[str, Any]) -> dict[str, Any]:
    journal = stats.get("journal") or {}
    return {
        "rows": journal.get("rows"),
        "no_signal": journal.get("no_signal"),
        "no_signal_flags": journal.get("no_signal_flags") or {},
        "mean_rt_bleu": journal.get("mean_rt_bleu") or {},
        "mean_delta_bleu": journal.get("mean_delta_bleu"),
        "ineligible": journal.get("ineligible"),
        "buckets": [
            [
                b["bucket"],
                str(b["weight"]),
                "yes" if b["excluded"] else "",
                str(b["available"]),
                str(b["quota"]),
                str(b["drawn"]),
            ]
            for b in stats.get("buckets") or []
        ],  # fmt: skip
        "sft_rows": (stats.get("after") or {}).get("rows"),
    }


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _steps(run: Path) -> int | None:
    """Optimizer steps of a training run, from the eval_results.json it wrote (in-process or launched)."""
    try:
        record = json.loads((run / "eval_results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = record.get("global_step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def _training(out: Path, names: list[str]) -> list[list[str]]:
    rows = []
    for name in names:
        manifest = read_manifest(out / name)
        if not manifest:
            continue
        result = manifest.get("result") or {}
        train = result.get("train") or {}
        extra = ""
        if result.get("truth_nll_first") is not None:
            extra = f"truth_nll {_fmt(result['truth_nll_first'], 3)} → {_fmt(result.get('truth_nll_last'), 3)}"
        steps = _steps(out / name)
        rows.append([name, str(steps if steps is not None else "–"), _fmt(train.get("train_loss"), 4),
                     _fmt(train.get("train_runtime"), 1), str(result.get("resumed_from") or ""), extra])  # fmt: skip
    return rows


def write_report(recipe: RecipeConfig, out: Path) -> dict[str, Path]:
    """Write OUT/report/report.md and report.html from the bench results and sampling stats on disk."""
    from redtrans.recipe.stages import bench_systems, range_label

    root = recipe.out
    md: list[str] = [f"# RedTrans recipe report: {root}", ""]
    parts: list[str] = []
    e = html.escape
    md += [f"Base model: `{recipe.base_model}`. Cells: score ±95% bootstrap CI half-width; `*` = p < 0.05 against",
           "the first system (sacrebleu paired bootstrap). BLEU on 0–100; the average is over the two directions,",
           "as the paper reports it.", ""]  # fmt: skip
    parts.append(f"<h1>RedTrans recipe report</h1><p>Output: <code>{e(str(root))}</code> · base model "
                 f"<code>{e(recipe.base_model)}</code>. Cells: score ±95% bootstrap CI half-width; * = p &lt; 0.05 "
                 "against the first system (sacrebleu paired bootstrap). BLEU on 0–100; the average is over the two "
                 "directions, as the paper reports it.</p>")  # fmt: skip
    for suite in recipe.bench.suites:
        results = _load(root / "bench" / suite.name / "results.json")
        if results is None:
            md += [f"## {suite.name}", "", "(no results yet)", ""]
            parts.append(f"<h2>{e(suite.name)}</h2><p>(no results yet)</p>")
            continue
        t = build_tables(results)
        described = results.get("suite") or {}
        license_ = described.get("license")
        md += [f"## {suite.name} ({suite.suite}, {len(results['segments'])} segments)", ""]
        md += _md_table(t["header"], t["rows"]) + [""]
        parts.append(f"<h2>{e(suite.name)} ({e(suite.suite)}, {len(results['segments'])} segments)</h2>")
        if license_:
            md += [f"Data license: {license_}.", ""]
            parts.append(f"<p>Data license: {e(str(license_))}.</p>")
        if t["small"]:
            note = (f"Small sample: {', '.join(t['small'])} has fewer than {SMALL} segments; confidence intervals are "
                    "wide and significance unreliable.")  # fmt: skip
            md += [f"**{note}**", ""]
            parts.append(f'<p class="warn">{e(note)}</p>')
        parts.append(_html_table(t["header"], t["rows"]))
        md += [f"### {suite.name}: every slice (chrF++, BLEU)", ""] + _md_table(t["slice_header"], t["slice_rows"])
        md += [""]
        parts.append(f"<h3>{e(suite.name)}: every slice</h3>" + _html_table(t["slice_header"], t["slice_rows"]))
    samples = {"all": root / "sample"}
    if recipe.table4.enabled:
        samples.update({range_label(lo, hi): root / f"t4-{range_label(lo, hi)}-sample"
                        for lo, hi in recipe.table4.ranges})  # fmt: skip
    md += ["## Sampling statistics", ""]
    parts.append("<h2>Sampling statistics</h2>")
    bucket_header = ["bucket", "weight", "excluded", "available", "quota", "drawn"]
    for label, folder in samples.items():
        stats = _load(folder / "stats.json")
        if stats is None:
            continue
        s = _sampling(stats)
        line = (f"{label}: {s['rows']} round trips, {s['no_signal']} no ΔBLEU signal (failed checks: "
                f"{', '.join(f'{k} {v}' for k, v in s['no_signal_flags'].items()) or 'none'}), mean round-trip "
                f"BLEU m1 {_fmt(s['mean_rt_bleu'].get('m1'), 3)} / m2 {_fmt(s['mean_rt_bleu'].get('m2'), 3)}, mean "
                f"ΔBLEU {_fmt(s['mean_delta_bleu'], 3)}, {s['ineligible']} without a usable target; SFT set "
                f"{s['sft_rows']} rows.")  # fmt: skip
        md += [line, ""] + _md_table(bucket_header, s["buckets"]) + [""]
        parts.append(f"<p>{e(line)}</p>" + _html_table(bucket_header, s["buckets"]))
    trained = [n for n in bench_systems(recipe) if n != "base"]
    train_rows = _training(root, trained)
    if train_rows:
        header = ["model", "steps", "train loss", "seconds", "resumed from", "truth term"]
        md += ["## Training", ""] + _md_table(header, train_rows) + [""]
        parts.append("<h2>Training</h2>" + _html_table(header, train_rows))
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    style = ("body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;margin:2em;max-width:80em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:right}td:first-child,th:first-child{text-align:left}.warn{color:#a40}")  # fmt: skip
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>RedTrans recipe report</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")  # fmt: skip
    html_path.write_text(page, encoding="utf-8")
    return {"markdown": md_path, "html": html_path}

"""The recipe's final report (Markdown + one self-contained HTML page from a Jinja2 template, every value
escaped, nothing from a CDN).

Per suite: the paper's table — every model side by side, chrF++ and BLEU per direction with the
two-direction average the paper reports — with bootstrap confidence intervals and paired significance against
the first system (from bench's results.json); then every slice (category, SNS phenomenon). Then Table 3: the
preference-stage arms (`redtrans.train.arms`) on the same items, each against DPO (the paper's baseline) by the
same paired bootstrap, with a note saying whether the differences are more than noise. Then the sampling
statistics (ΔBLEU buckets, round trips that were no signal) and the training runs.

A system whose hypotheses equal the baseline's on every segment is marked ``=``, never significant: sacrebleu
gives a zero difference its smallest p (1/(n+1)) by design.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redtrans.recipe.config import RecipeConfig
from redtrans.recipe.manifest import read_manifest

__all__ = ["build_report", "build_tables", "write_report"]

SMALL = 30  # segments under which a slice's significance is marked as a small sample
ALPHA = 0.05
TEMPLATES = Path(__file__).parent / "templates"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fmt(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def _cell(score: Any, sig: dict[str, Any] | None, baseline: bool, identical: bool) -> str:
    """`52.31 ±1.20*`: score, bootstrap 95% half-width, * when p < 0.05 against the baseline; `=` instead when
    the hypotheses are the baseline's on every segment (no difference to test)."""
    text = _fmt(score)
    if sig and sig.get("ci95") is not None:
        text += f" ±{_fmt(sig['ci95'])}"
    if baseline:
        return text
    if identical:
        return text + " (=)"
    if sig and sig.get("p_value") is not None and float(sig["p_value"]) < ALPHA:
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
            tested = sig.get(d) or {}
            s = (tested.get("systems") or {}).get(name) or {}
            identical = (tested.get("changed") or {}).get(name) == 0
            row += [_cell(score["chrf++"], s.get("chrf++"), i == 0, identical),
                    _cell(score["bleu_100"], s.get("bleu"), i == 0, identical)]  # fmt: skip
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


# ------------------------------------------------------------------------------------------------ Table 3
def _target_language(direction: str) -> str:
    """The target of a ``src-tgt`` direction key whose tags may hold hyphens themselves (``zh-Hant-en``)."""
    from redtrans.errors import RedtransError
    from redtrans.languages import get_language

    parts = direction.split("-")
    for i in range(1, len(parts)):
        try:
            get_language("-".join(parts[:i]))
            get_language("-".join(parts[i:]))
        except (RedtransError, ValueError, LookupError):
            continue
        return "-".join(parts[i:])
    return parts[-1]


def _versus(results: dict[str, Any], baseline: str, arms: list[str], samples: int) -> dict[str, Any]:
    """Every arm against `baseline` per direction: scores, differences, how many segments differ and the paired
    bootstrap p (`redtrans.scoring.paired_bootstrap`); None where the hypotheses are identical."""
    from redtrans.scoring import paired_bootstrap

    out: dict[str, Any] = {}
    directions = sorted({s["direction"] for s in results["segments"]})
    for d in directions:
        segs = [s for s in results["segments"] if s["direction"] == d]
        named: list[tuple[str, Sequence[str]]] = [
            (n, [str(s["systems"][n]["hypothesis"]) for s in segs]) for n in [baseline, *arms]
        ]
        _, table = paired_bootstrap(named, [s["reference"] for s in segs], _target_language(d), samples)
        base = dict(named)[baseline]
        out[d] = {
            "n": len(segs),
            "arms": {
                name: {
                    "changed": sum(a != b for a, b in zip(hyps, base, strict=True)),
                    **{
                        m: {"score": r.score, "delta": r.score - table[baseline][m].score, "p": r.p_value}
                        for m, r in table[name].items()
                    },
                }
                for name, hyps in named[1:]
            },
        }
    return out


def _table3(recipe: RecipeConfig, suites: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Table 3 (the arms against DPO, the paper's baseline) and the note on what it can tell."""
    from redtrans.train.arms import ARMS

    if not recipe.table3.enabled:
        return None
    root = recipe.out
    arms = recipe.arms
    pairs = (read_manifest(root / "pairs") or {}).get("result") or {}
    header = ["arm", "pairs", "loss", "train pairs (rewritten)", "steps", "truth_nll"]
    tested: dict[str, dict[str, Any]] = {}
    for name, results in suites.items():
        systems = {s["name"] for s in results["systems"]}
        if not set(arms) <= systems:
            continue
        tested[name] = _versus(results, "dpo", [a for a in arms if a != "dpo"], recipe.bench.bootstrap_samples)
        header += [f"{name} chrF++", f"{name} BLEU"]
    rows = []
    for name in arms:
        arm = ARMS[name]
        manifest = read_manifest(root / name) or {}
        result = manifest.get("result") or {}
        truth = ""
        if result.get("truth_nll_first") is not None:
            truth = f"{_fmt(result['truth_nll_first'], 3)} → {_fmt(result.get('truth_nll_last'), 3)}"
        n_pairs = pairs.get(f"{arm.pairs}_pairs")
        rewritten = pairs.get(f"{arm.pairs}_rewritten")
        counted = "–" if n_pairs is None else f"{n_pairs} ({rewritten})"
        loss = "DPO" if arm.loss == "dpo" else "DPO + λ·truth"
        row = [arm.label, arm.pairs, loss, counted, str(_steps(root / name) or "–"), truth]
        for suite, versus in tested.items():
            for metric in ("chrf++", "bleu"):
                row.append(_arm_cell(suites[suite], versus, name, metric))
        rows.append(row)
    significant = sorted(
        f"{name} ({suite} {d} {m})"
        for suite, versus in tested.items()
        for d, v in versus.items()
        for name, r in v["arms"].items()
        for m in ("chrf++", "bleu")
        if r["changed"] and r[m]["p"] is not None and r[m]["p"] < ALPHA
    )
    steps = sorted({x for a in arms if (x := _steps(root / a)) is not None})
    unit = "step" if steps == [1] else "steps"
    scale = (f"Every arm: {', '.join(map(str, steps)) or '–'} optimizer {unit} on {pairs.get('items', '–')} source "
             "items (the same items, steps and seed for every arm).")  # fmt: skip
    if not tested:
        verdict = "No suite has all arms benched yet."
    elif significant:
        verdict = "Different from DPO at p < 0.05: " + "; ".join(significant) + "."
    else:
        verdict = ("No arm differs from DPO (the paper's baseline) at p < 0.05 on any suite: at this scale the "
                   "arms are noise. benchmarks/repo_arms.py shows them where they can be told apart.")  # fmt: skip
    small = [s for s, results in suites.items() if s in tested and any(
        int(sl["n"]) < SMALL for sl in results["slices"] if sl["group"] == "direction")]  # fmt: skip
    if small:
        verdict += f" Fewer than {SMALL} segments per direction on {', '.join(small)}: p-values are indicative only."
    return {"header": header, "rows": rows, "note": f"{scale} {verdict}"}


def _arm_cell(results: dict[str, Any], versus: dict[str, Any], name: str, metric: str) -> str:
    """An arm's score on a suite (the mean over directions, as the paper averages them), its difference to DPO,
    and `*` when the paired bootstrap gives p < 0.05 in some direction; `=` for DPO's own hypotheses."""
    key = "chrf++" if metric == "chrf++" else "bleu_100"
    directions = [s for s in results["slices"] if s["group"] == "direction"]
    score = sum(float(s["scores"][name][key]) for s in directions) / max(len(directions), 1)
    if name == "dpo":
        return _fmt(score)
    cells = [v["arms"][name] for v in versus.values()]
    if all(c["changed"] == 0 for c in cells):
        return f"{_fmt(score)} (=)"
    delta = sum(c[metric]["delta"] for c in cells) / max(len(cells), 1)
    star = any(c["changed"] and c[metric]["p"] is not None and c[metric]["p"] < ALPHA for c in cells)
    return f"{_fmt(score)} ({delta:+.2f}){'*' if star else ''}"


# ------------------------------------------------------------------------------------------ the rest
def _sampling(label: str, stats: dict[str, Any]) -> dict[str, Any]:
    journal = stats.get("journal") or {}
    flags = journal.get("no_signal_flags") or {}
    rt = journal.get("mean_rt_bleu") or {}
    line = (f"{label}: {journal.get('rows')} round trips, {journal.get('no_signal')} no ΔBLEU signal (failed "
            f"checks: {', '.join(f'{k} {v}' for k, v in flags.items()) or 'none'}), mean round-trip BLEU of the "
            f"{journal.get('signal_rows', journal.get('rows'))} with a signal m1 {_fmt(rt.get('m1'), 3)} / m2 "
            f"{_fmt(rt.get('m2'), 3)}, mean ΔBLEU {_fmt(journal.get('mean_delta_bleu'), 3)}, "
            f"{journal.get('ineligible')} without a usable target; SFT set {(stats.get('after') or {}).get('rows')} "
            "rows.")  # fmt: skip
    buckets = [[b["bucket"], str(b["weight"]), "yes" if b["excluded"] else "", str(b["available"]), str(b["quota"]),
                str(b["drawn"])] for b in stats.get("buckets") or []]  # fmt: skip
    return {"label": label, "line": line, "rows": buckets}


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


def build_report(recipe: RecipeConfig) -> dict[str, Any]:
    """Everything the report shows, from the bench results, manifests and sampling stats on disk."""
    from redtrans.recipe.stages import bench_systems, range_label

    root = recipe.out
    suites: list[dict[str, Any]] = []
    loaded: dict[str, dict[str, Any]] = {}
    for suite in recipe.bench.suites:
        results = _load(root / "bench" / suite.name / "results.json")
        if results is None:
            suites.append({"name": suite.name, "missing": True})
            continue
        loaded[suite.name] = results
        t = build_tables(results)
        small = None
        if t["small"]:
            small = (f"Small sample: {', '.join(t['small'])} has fewer than {SMALL} segments; confidence intervals "
                     "are wide and significance unreliable.")  # fmt: skip
        suites.append({**t, "name": suite.name, "missing": False, "suite": suite.suite,
                       "segments": len(results["segments"]), "license": (results.get("suite") or {}).get("license"),
                       "small_note": small})  # fmt: skip
    samples = {"all": root / "sample"}
    if recipe.table4.enabled:
        samples.update({range_label(lo, hi): root / f"t4-{range_label(lo, hi)}-sample"
                        for lo, hi in recipe.table4.ranges})  # fmt: skip
    sampling = [_sampling(label, stats) for label, folder in samples.items() if (stats := _load(folder / "stats.json"))]
    trained = [n for n in bench_systems(recipe) if n != "base"]
    return {
        "root": str(root),
        "base_model": recipe.base_model,
        "suites": suites,
        "table3": _table3(recipe, loaded),
        "sampling": sampling,
        "bucket_header": ["bucket", "weight", "excluded", "available", "quota", "drawn"],
        "training": _training(root, trained),
        "training_header": ["model", "steps", "train loss", "seconds", "resumed from", "truth term"],
    }


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


CELLS_NOTE = ("Cells: score ±95% bootstrap CI half-width; `*` = p < 0.05 against the first system (sacrebleu paired "
              "bootstrap); `(=)` = the same hypotheses as the first system on every segment (nothing to test). BLEU on "
              "0–100; the average is over the two directions, as the paper reports it.")  # fmt: skip
TABLE3_NOTE = ("Table 3: the preference-stage arms (docs/training.md, \"The arms\"). Cells: the mean over directions, "
               "(difference to DPO, the paper's baseline), `*` = p < 0.05 against DPO in some direction (sacrebleu "
               "paired bootstrap), `(=)` = DPO's hypotheses on every segment.")  # fmt: skip


def render_markdown(report: dict[str, Any]) -> str:
    md: list[str] = [f"# RedTrans recipe report: {report['root']}", "",
                     f"Base model: `{report['base_model']}`. {CELLS_NOTE}", ""]  # fmt: skip
    for s in report["suites"]:
        if s.get("missing"):
            md += [f"## {s['name']}", "", "(no results yet)", ""]
            continue
        md += [f"## {s['name']} ({s['suite']}, {s['segments']} segments)", ""]
        md += _md_table(s["header"], s["rows"]) + [""]
        if s["license"]:
            md += [f"Data license: {s['license']}.", ""]
        if s["small_note"]:
            md += [f"**{s['small_note']}**", ""]
        md += [f"### {s['name']}: every slice (chrF++, BLEU)", ""] + _md_table(s["slice_header"], s["slice_rows"])
        md += [""]
    t3 = report["table3"]
    if t3:
        md += ["## Table 3: RePO against its baselines", "", TABLE3_NOTE, ""]
        md += _md_table(t3["header"], t3["rows"]) + ["", f"**{t3['note']}**", ""]
    md += ["## Sampling statistics", ""]
    for s in report["sampling"]:
        md += [s["line"], ""] + _md_table(report["bucket_header"], s["rows"]) + [""]
    if report["training"]:
        md += ["## Training", ""] + _md_table(report["training_header"], report["training"]) + [""]
    return "\n".join(md) + "\n"


def render_html(report: dict[str, Any]) -> str:
    """The report page (`templates/report.html`; autoescaped, as bench's page)."""
    from redtrans.bench.report import page_template

    return str(page_template(TEMPLATES, "report.html").render(cells_note=CELLS_NOTE, table3_note=TABLE3_NOTE, **report))


def write_report(recipe: RecipeConfig, out: Path) -> dict[str, Path]:
    """Write OUT/report/report.md and report.html from the bench results and sampling stats on disk."""
    report = build_report(recipe)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return {"markdown": md_path, "html": html_path}

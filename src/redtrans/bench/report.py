"""Reports of a benchmark run: results.json (machine-readable), results.md (terminal/README) and report.html
(self-contained: inline CSS, SVG charts and a little script; nothing is fetched from a CDN), rendered from the
Jinja2 template ``templates/report.html`` with autoescaping, so no text of a post can become markup."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

PALETTE = ("#3465a4", "#f57900", "#4e9a06", "#cc0000", "#75507b", "#c4a000", "#06989a", "#555753")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _seconds(score: dict[str, Any]) -> str:
    """Time per segment with how many segments it rests on (older caches, and outputs systems, have none)."""
    if score.get("seconds_per_segment") is None:
        return "–"
    return f"{score['seconds_per_segment']:.2f} ({score['timed']})"


def _suite_line(results: dict[str, Any]) -> str:
    suite = results["suite"]
    sel = suite["selection"]
    if "sample" in sel:
        how = f"stratified sample of {suite['selected']} of {suite['total']} (seed {sel['seed']})"
    elif "limit" in sel:
        how = f"first {suite['selected']} of {suite['total']}"
    else:
        how = f"all {suite['total']}"
    return f"{suite['name']}: {how} segments · sha256 {suite['sha256'][:12]}"


def _main_slices(results: dict[str, Any], min_slice: int) -> list[dict[str, Any]]:
    return [s for s in results["slices"] if s["group"] in {"direction", "category"} and s["n"] >= min_slice]


def _tag_slices(results: dict[str, Any], min_slice: int) -> list[dict[str, Any]]:
    return [s for s in results["slices"] if s["group"] == "tag" and s["n"] >= min_slice]


SMALL_SAMPLE = 30
"""Segments per tested slice under which significance carries a small-sample warning."""


def _versus(results: dict[str, Any], key: str, name: str, metric: str) -> str:
    """`name`'s score on tested slice `key` with its difference to the baseline and its p-value; `=` for
    hypotheses identical to the baseline's (sacrebleu's p for a zero difference is its floor, by design)."""
    sig = results["significance"][key]
    score = sig["systems"][name][metric]
    if name == sig["baseline"]:
        return _fmt(score["score"])
    if sig["changed"][name] == 0:
        return f"{_fmt(score['score'])} (=)"
    delta = score["score"] - sig["systems"][sig["baseline"]][metric]["score"]
    return f"{_fmt(score['score'])} ({delta:+.2f}, p {_fmt(score['p_value'], 3)})"


def _comparison(results: dict[str, Any]) -> list[str]:
    """One row per system against the first: BLEU and chrF++ per direction with the paired bootstrap's p and the
    time per segment, then chrF++ on each direction's tested tag slices (`#slang`, `#slang-free`)."""
    sig = results["significance"]
    if not sig:
        return []
    slices = {sl["key"]: sl for sl in results["slices"]}
    directions = [k for k in sig if slices[k]["group"] == "direction"]
    tagged = [k for k in sig if slices[k]["group"] == "tag"]
    baseline = next(iter(sig.values()))["baseline"]
    lines = [
        "",
        f"Against {baseline}: score (difference, two-sided paired bootstrap p); `=` when the hypotheses are "
        "identical. BLEU 0–100 here.",
        "",
        "| system | " + " | ".join(f"{d} BLEU | {d} chrF++ | {d} s/segment" for d in directions) + " |",
        "|" + "---|" * (1 + 3 * len(directions)),
    ]
    for system in results["systems"]:
        name = system["name"]
        cells = [
            f"{_versus(results, d, name, 'bleu')} | {_versus(results, d, name, 'chrf++')} | "
            f"{_seconds(slices[d]['scores'][name])}"
            for d in directions
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    reused = [f"{s['name']} {s['reused']}" for s in results["systems"] if s.get("reused")]
    if reused:
        lines += [
            "",
            f"Rows taken from {baseline} (the same requests in the deterministic mode, so the same result): "
            f"{', '.join(reused)}. They are not timed: s/segment rests on the rows a system translated itself.",
        ]
    if tagged:
        lines += ["", "| system | " + " | ".join(f"{k} (n {sig[k]['n']}) chrF++" for k in tagged) + " |",
                  "|" + "---|" * (1 + len(tagged))]  # fmt: skip
        for system in results["systems"]:
            name = system["name"]
            lines.append(f"| {name} | " + " | ".join(_versus(results, k, name, "chrf++") for k in tagged) + " |")
    return lines


def markdown(results: dict[str, Any], min_slice: int = 1) -> str:
    systems = [s["name"] for s in results["systems"]]
    suite = results["suite"]
    lines = [f"### {_suite_line(results)}", ""]
    if suite["license"]:
        lines += [f"Data license: {suite['license']} ({suite['license_url']}).", ""]
    for note in suite["notes"]:
        lines += [f"> {note}", ""]
    head = "| slice | n | " + " | ".join(f"{n} BLEU | {n} chrF++" for n in systems) + " |"
    lines += [
        "BLEU on the paper's 0–1 scale (per-target tokenizer); chrF++ 0–100.",
        "",
        head,
        "|" + "---|" * (2 + 2 * len(systems)),
    ]
    for sl in _main_slices(results, min_slice):
        cells = " | ".join(f"{_fmt(sl['scores'][n]['bleu'], 4)} | {_fmt(sl['scores'][n]['chrf++'])}" for n in systems)
        lines.append(f"| {sl['key']} | {sl['n']} | {cells} |")
    lines += _comparison(results)
    lines += [
        "",
        "| slice | system | SNS fidelity (n) | wrong language | empty | copied source | s/segment (timed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for sl in [s for s in results["slices"] if s["group"] == "direction"]:
        for n in systems:
            sc = sl["scores"][n]
            lines.append(
                f"| {sl['key']} | {n} | {_pct(sc['fidelity'])} ({sc['fidelity_n']}) | {_pct(sc['wrong_language'])} "
                f"| {_pct(sc['empty'])} | {_pct(sc['copy'])} | {_seconds(sc)} |"
            )
    tags = _tag_slices(results, min_slice)
    if tags:
        lines += [
            "",
            "| tag slice | n | " + " | ".join(f"{n} BLEU | {n} chrF++ | {n} fidelity" for n in systems) + " |",
            "|" + "---|" * (2 + 3 * len(systems)),
        ]
        for sl in tags:
            cells = " | ".join(
                f"{_fmt(sl['scores'][n]['bleu'], 4)} | {_fmt(sl['scores'][n]['chrf++'])} | "
                f"{_pct(sl['scores'][n]['fidelity'])}"
                for n in systems
            )
            lines.append(f"| {sl['key']} | {sl['n']} | {cells} |")
    modes = []
    for system in results["systems"]:
        engine = system.get("engine") or {}
        if "deterministic" in engine:
            parallelism = engine.get("parallelism")
            mode = (
                "deterministic" + (f" ({engine['decoding']})" if engine.get("decoding") else "")
                if engine["deterministic"]
                else "throughput" + (f" (parallelism {parallelism})" if parallelism else "")
            )
            modes.append(f"{system['name']}: {mode}")
        if system.get("failed"):
            failed = system["failed"]
            noun = "segment" if failed == 1 else "segments"
            modes.append(f"{system['name']}: **{failed} failed {noun}** (scored as empty; re-run to retry)")
    if modes:
        lines += ["", "Decoding: " + "; ".join(modes) + "."]
    for name, spread in (results.get("repeats") or {}).items():
        lines += ["", f"Run-to-run spread of {name} over {spread['runs']} runs (segments whose output changed; "
                  "BLEU and chrF++ per run):", "", "| slice | n | changed | BLEU runs | BLEU spread | chrF++ runs | "
                  "chrF++ spread |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, sl in spread["slices"].items():
            lines.append(
                f"| {key} | {sl['n']} | {sl['changed']} | {' / '.join(_fmt(b, 4) for b in sl['bleu']['runs'])} | "
                f"{_fmt(sl['bleu']['spread'], 4)} | {' / '.join(_fmt(c) for c in sl['chrf++']['runs'])} | "
                f"{_fmt(sl['chrf++']['spread'])} |"
            )
    if results["significance"]:
        lines += ["", "Paired bootstrap (sacrebleu, 95% CI, p vs. the first system):", ""]
        for key, sig in results["significance"].items():
            if sig["n"] < SMALL_SAMPLE:
                lines.append(f"- ⚠ {key}: only {sig['n']} segments — too few for the bootstrap to be reliable "
                             f"(aim for ≥ {SMALL_SAMPLE}); read p-values as indicative only")  # fmt: skip
            for name, metrics in sig["systems"].items():
                if name == sig["baseline"]:
                    continue
                changed = sig["changed"][name]
                if changed == 0:
                    lines.append(f"- {key}: {name} vs {sig['baseline']}: identical hypotheses on all {sig['n']} "
                                 "segments (no difference to test)")  # fmt: skip
                    continue
                parts = [
                    f"{m} {_fmt(r['score'])} (μ {_fmt(r['mean'])} ± {_fmt(r['ci95'])}, p = {_fmt(r['p_value'], 4)}"
                    + (f"; Δ 95% [{_fmt(r['diff_ci95'][0])}, {_fmt(r['diff_ci95'][1])}]" if r.get("diff_ci95") else "")
                    + ")"
                    for m, r in metrics.items()
                ]
                differ = f"{changed} of {sig['n']} segments differ"
                lines.append(f"- {key}: {name} vs {sig['baseline']} ({differ}): " + "; ".join(parts))
    sigs = sorted({sc[k] for sl in results["slices"] for sc in sl["scores"].values() for k in ("bleu_signature",)})
    lines += ["", "Signatures: " + " · ".join(f"`{s}`" for s in sigs)]
    chrf = {sc["chrf_signature"] for sl in results["slices"] for sc in sl["scores"].values()}
    lines += ["", "chrF++: " + " · ".join(f"`{s}`" for s in sorted(chrf)), ""]
    return "\n".join(lines)


# -- HTML -----------------------------------------------------------------------------------------------
# The page is templates/report.html (Jinja2, autoescaped): the code below only computes what it shows.
def bar_chart(
    title: str, groups: list[tuple[str, list[float | None]]], series: list[str], vmax: float
) -> dict[str, Any]:
    """The geometry of a horizontal grouped bar chart (one group per slice, one bar per system) for the
    template's `chart` macro, which draws it as inline SVG."""
    bar_h, gap, label_w, width = 12, 10, 190, 720
    plot_w = width - label_w - 60
    height = 30 + len(groups) * (len(series) * bar_h + gap) + 20 * ((len(series) + 2) // 3)
    y = 30
    vmax = vmax or 1.0
    drawn = []
    for label, values in groups:
        bars: list[dict[str, Any]] = []
        drawn.append({"label": label, "x": label_w - 6, "y": y + len(series) * bar_h / 2 + 4, "bars": bars})
        for i, value in enumerate(values):
            w = 0 if value is None else max(0.0, min(1.0, value / vmax)) * plot_w
            bars.append(
                {
                    "x": label_w,
                    "y": y,
                    "width": f"{w:.1f}",
                    "height": bar_h - 2,
                    "color": PALETTE[i % len(PALETTE)],
                    "tip": f"{series[i]}: {_fmt(value)}",
                    "value_x": f"{label_w + w + 4:.1f}",
                    "value_y": y + bar_h - 3,
                    "value": _fmt(value, 1),
                }  # fmt: skip
            )
            y += bar_h
        y += gap
    legend = [
        {"x": (i % 3) * 220, "y": y + 12 + (i // 3) * 20, "color": PALETTE[i % len(PALETTE)], "name": name}
        for i, name in enumerate(series)
    ]
    return {"title": title, "width": width, "height": height, "groups": drawn, "legend": legend}


# Fonts named for the text a report shows, so Chinese and emoji render as glyphs rather than boxes on a
# machine whose default sans-serif has neither: colour emoji first but only for emoji code points (a local()
# @font-face with a unicode-range: fonts like DejaVu Sans carry monochrome emoji and would win otherwise),
# then Latin UI fonts, then CJK (Noto Sans CJK from Debian's fonts-noto-cjk; PingFang / Microsoft YaHei /
# Source Han Sans elsewhere), then colour emoji fonts again by name. Nothing is fetched: local() only.
EMOJI_FACE = (
    '@font-face{font-family:"redtrans emoji";'
    'src:local("Noto Color Emoji"),local("NotoColorEmoji"),local("Apple Color Emoji"),local("Segoe UI Emoji");'
    "unicode-range:U+1F000-1FAFF,U+2600-27BF,U+2B00-2BFF,U+231A-231B,U+23E9-23FA,U+FE0F,U+200D,U+20E3}"
)
FONT_STACK = (
    '"redtrans emoji",system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC","Noto Sans CJK TC",'
    '"Source Han Sans SC","PingFang SC","Hiragino Sans GB","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif,'
    '"Noto Color Emoji","Apple Color Emoji","Segoe UI Emoji","Segoe UI Symbol"'
)
_CSS = (
    EMOJI_FACE
    + """
body{font:14px/1.45 FONTS;margin:2em auto;max-width:1100px;color:#222}
svg text{font-family:FONTS}
body{padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ct{font-weight:bold;font-size:13px}.cl{font-size:12px}.cv{font-size:10px;fill:#444}
.note{color:#555;font-size:12px}code{font-size:12px;background:#f5f5f5;padding:0 3px}
#worst td{max-width:330px;white-space:pre-wrap;word-break:break-word}.tag{font-size:11px;color:#666}
""".replace("FONTS", FONT_STACK)
)

_SCRIPT = """
(function(){
  var q=document.getElementById('wfilter'), s=document.getElementById('wsystem');
  function apply(){
    var text=q.value.toLowerCase(), sys=s.value, shown=0;
    document.querySelectorAll('#worst tbody tr').forEach(function(tr){
      var ok=(sys===''||tr.dataset.system===sys)&&(text===''||tr.textContent.toLowerCase().indexOf(text)>=0);
      tr.style.display=ok?'':'none'; if(ok){shown++;}
    });
    document.getElementById('wcount').textContent=shown+' shown';
  }
  q.addEventListener('input',apply); s.addEventListener('change',apply); apply();
})();
"""


@functools.cache
def page_template(folder: Path, name: str) -> Any:
    """A report page's Jinja2 template (bench's, the recipe's): every value escaped, an unknown name an error."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(name)


def _template() -> Any:
    return page_template(Path(__file__).parent / "templates", "report.html")


def html_report(results: dict[str, Any], worst: int = 50, min_slice: int = 1) -> str:
    """The self-contained HTML report (templates/report.html)."""
    systems = [s["name"] for s in results["systems"]]
    main = _main_slices(results, min_slice)
    tags = _tag_slices(results, min_slice)
    context: dict[str, Any] = {
        "suite": results["suite"],
        "suite_line": _suite_line(results),
        "created": results["created"],
        "systems": systems,
        "css": _CSS,
        "script": _SCRIPT,
    }
    context["scores"] = {
        "head": ["slice", "n"] + [f"{n} {m}" for n in systems for m in ("BLEU (0–1)", "BLEU", "chrF++")],
        "rows": [
            [sl["key"], str(sl["n"])]
            + [_fmt(sl["scores"][n][k], d) for n in systems for k, d in (("bleu", 4), ("bleu_100", 2), ("chrf++", 2))]
            for sl in main
        ],
    }
    charts = []
    for metric, title in (("bleu_100", "BLEU (0–100)"), ("chrf++", "chrF++")):
        groups = [(sl["key"], [sl["scores"][n][metric] for n in systems]) for sl in main]
        top = max([v for _, vs in groups for v in vs if v is not None] + [1.0])
        charts.append(bar_chart(f"{title} per slice", groups, systems, top * 1.1))
    context["score_charts"] = charts

    rows = []
    for sl in [s for s in results["slices"] if s["group"] == "direction"]:
        for n in systems:
            sc = sl["scores"][n]
            rows.append(
                [sl["key"], n, f"{_pct(sc['fidelity'])} ({sc['fidelity_n']})"]
                + [_pct(sc[f"kept_{e}"]) for e in ("emoji", "markup", "mentions", "urls", "lines")]
                + [_pct(sc["wrong_language"]), _pct(sc["empty"]), _pct(sc["copy"]), _seconds(sc)]
                + ([_fmt(sc.get("neural"), 4)] if "neural" in sc else [])
            )
    neural_head = ["neural"] if any("neural" in sc for sl in main for sc in sl["scores"].values()) else []
    context["fidelity"] = {
        "head": ["slice", "system", "fidelity (n)", "emoji", "markup", "mentions", "URLs", "lines"]
        + ["wrong lang", "empty", "copy", "s/segment (timed)"]
        + neural_head,
        "rows": rows,
    }
    context["phenomena"] = None
    if tags:
        phenomena: dict[str, Any] = {
            "head": ["slice", "n"] + [f"{n} {m}" for n in systems for m in ("BLEU", "chrF++", "fidelity")],
            "rows": [
                [sl["key"], str(sl["n"])]
                + [
                    v
                    for n in systems
                    for v in (
                        _fmt(sl["scores"][n]["bleu_100"]),
                        _fmt(sl["scores"][n]["chrf++"]),
                        _pct(sl["scores"][n]["fidelity"]),
                    )
                ]  # fmt: skip
                for sl in tags
            ],
            "charts": [],
        }
        groups = [
            (
                sl["key"],
                [None if sl["scores"][n]["fidelity"] is None else 100 * sl["scores"][n]["fidelity"] for n in systems],
            )  # fmt: skip
            for sl in tags
            if sl["scores"][systems[0]]["fidelity_n"]
        ]
        if groups:
            phenomena["charts"].append(bar_chart("SNS fidelity (%) per phenomenon", groups, systems, 100.0))
        groups = [(sl["key"], [sl["scores"][n]["chrf++"] for n in systems]) for sl in tags]
        top = max([v for _, vs in groups for v in vs if v is not None] + [1.0])
        phenomena["charts"].append(bar_chart("chrF++ per phenomenon", groups, systems, top * 1.1))
        context["phenomena"] = phenomena

    context["significance"] = None
    if results["significance"]:
        rows = []
        for key, sig in results["significance"].items():
            for name, metrics in sig["systems"].items():
                for metric, r in metrics.items():
                    if name == sig["baseline"]:
                        test = ["–", "baseline"]
                    elif sig["changed"][name] == 0:
                        test = ["0", "identical"]
                    else:
                        test = [str(sig["changed"][name]), _fmt(r["p_value"], 4)]
                    rows.append([key, name, metric, _fmt(r["score"]), f"{_fmt(r['mean'])} ± {_fmt(r['ci95'])}", *test])
        context["significance"] = {
            "head": ["slice", "system", "metric", "score", "mean ± 95% CI", "segments differing", "p"],
            "rows": rows,
        }

    worst_rows = []
    for n in systems:
        ranked = sorted(results["segments"], key=lambda seg: (seg["systems"][n]["chrf++"], seg["id"]))[:worst]
        for seg in ranked:
            entry = seg["systems"][n]
            worst_rows.append(
                {
                    "system": n,
                    "id": seg["id"],
                    "direction": seg["direction"],
                    "category": seg["category"],
                    "tags": " ".join(seg["tags"]),
                    "source": seg["source"],
                    "reference": seg["reference"],
                    "hypothesis": entry["hypothesis"],
                    "chrf": f"{entry['chrf++']:.1f}",
                    "flags": ", ".join(entry["flags"]),
                }  # fmt: skip
            )
    context["worst"] = {"per_system": worst, "rows": worst_rows}
    context["system_rows"] = [
        [s["name"], json.dumps(s["config"], ensure_ascii=False), json.dumps(s["engine"])] for s in results["systems"]
    ]
    context["signatures"] = sorted(
        {
            sc[k]
            for sl in results["slices"]
            for sc in sl["scores"].values()
            for k in ("bleu_signature", "chrf_signature")
        }
    )
    context["metrics_note"] = f"{results['metrics']['chrf++']}. {results['metrics']['text']}."
    return str(_template().render(context))


def write_reports(results: dict[str, Any], out: Path, worst: int = 50, min_slice: int = 1) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(results, min_slice), encoding="utf-8")
    paths["html"].write_text(html_report(results, worst, min_slice), encoding="utf-8")
    return paths

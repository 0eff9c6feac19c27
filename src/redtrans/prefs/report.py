"""Plain-text reports of a store (``redtrans annotate report``) and one-line summaries of the stages."""

from __future__ import annotations

from redtrans.prefs.export import apply_rules
from redtrans.prefs.stats import prefs_agreement, win_rate
from redtrans.prefs.store import Store


def store_report(db: str, tau: float = 3.0, bootstrap: int = 1000) -> str:
    """Progress per expert, agreement, export counts (prefs) and the win-rate table (eval), as Markdown."""
    out: list[str] = []
    with Store(db) as store:
        for task in ("prefs", "eval"):
            counts = store.counts(task)
            if not counts["items"]:
                continue
            judged = store.judgments(task)
            out += [
                f"## {task}",
                "",
                f"{counts['done']} of {counts['needed']} judgments on {counts['items']} items",
                "",
            ]
            out += ["| expert | judged | skipped | flagged | rewrites | accepted only | mean s / item |",
                    "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
            out += [f"| {p['name']} | {p['judged']} | {p['skipped']} | {p['flagged']} | {p['rewrites']} | "
                    f"{p['accepted_only']} | {'' if p['mean_s'] is None else p['mean_s']} |"
                    for p in store.progress(task) if p["judged"] or p["skipped"]]  # fmt: skip
            out.append("")
            if task == "prefs":
                alpha = prefs_agreement([(str(i.id), n, j.scores, j.skipped) for i, n, j in judged])
                out.append(f"Krippendorff's alpha (ordinal): {'n/a' if alpha is None else f'{alpha:.3f}'}")
                out += apply_rules(store.pref_items(), tau).stats.lines()
            else:
                names = judged[0][0].payload.get("systems", ["A", "B"]) if judged else ["A", "B"]
                rows = [(str(i.id), n, j.verdict, j.skipped) for i, n, j in judged]
                out.append(win_rate(rows, (str(names[0]), str(names[1])), samples=bootstrap).markdown())
            out.append("")
    return "\n".join(out).rstrip() + "\n" if out else "the store holds no items\n"

"""Human evaluation of two systems' outputs from a `redtrans bench` run, on the annotation machinery.

`bench` leaves each engine system's hypotheses in ``OUT/hyps/NAME.jsonl`` (``id, text, src, tgt,
translation``) and every system's, ``outputs=`` files included, in ``OUT/results.json``: both are read.
`bench_pairs` joins two of them by id into evaluation items; `Store.import_eval` draws each item's display
order (kept, seeded), so experts see "Translation 1 / 2" and never a system name, and judge pairwise:
better / same / worse.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from redtrans.errors import InputError
from redtrans.jsonl import read_jsonl


def _from_results(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every system's hypotheses from ``results.json`` (it holds all systems of a run, including ``outputs=``
    systems, which have no cache file in hyps/): system → id → row."""
    path = folder / "results.json"
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a bench results file: {exc}", path=path) from None
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for segment in results.get("segments") or []:
        src, _, tgt = str(segment.get("direction") or "").replace("→", "-").partition("-")
        for name, system in (segment.get("systems") or {}).items():
            out.setdefault(name, {})[str(segment["id"])] = {
                "id": str(segment["id"]), "text": segment["source"], "src": src or None, "tgt": tgt or None,
                "translation": system["hypothesis"],
            }  # fmt: skip
    return out


def _hyps(folder: Path, name: str) -> dict[str, dict[str, Any]]:
    path = folder / "hyps" / f"{name}.jsonl"
    if not path.is_file():
        results = _from_results(folder)
        if name in results:
            return results[name]
        found = sorted(p.stem for p in (folder / "hyps").glob("*.jsonl")) if (folder / "hyps").is_dir() else []
        found = sorted({*found, *results})
        raise InputError(
            f"no hypotheses of system {name!r} ({path} or results.json); systems there: {', '.join(found) or 'none'}",
            path=folder,
        )
    rows: dict[str, dict[str, Any]] = {}
    for line, row in read_jsonl(path):
        if "id" not in row or not isinstance(row.get("translation"), str) or not isinstance(row.get("text"), str):
            raise InputError("a hypothesis row needs `id`, `text` and `translation`", path=path, line=line)
        rows[str(row["id"])] = row
    return rows


def bench_pairs(folder: str | Path, a: str, b: str, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Evaluation rows ``{id, source, src, tgt, outputs: [a's, b's]}`` for the ids both systems translated;
    with `limit`, a seeded random sample of them."""
    folder = Path(folder).expanduser()
    if a == b:
        raise InputError("human evaluation compares two different systems")
    ha, hb = _hyps(folder, a), _hyps(folder, b)
    ids = [i for i in ha if i in hb]
    if not ids:
        raise InputError(f"systems {a!r} and {b!r} share no segment ids", path=folder)
    if limit is not None and limit < len(ids):
        ids = sorted(random.Random(seed).sample(ids, limit), key=ids.index)
    return [
        {"id": i, "source": ha[i]["text"], "src": ha[i].get("src"), "tgt": ha[i].get("tgt"),
         "outputs": [ha[i]["translation"], hb[i]["translation"]]}
        for i in ids
    ]  # fmt: skip

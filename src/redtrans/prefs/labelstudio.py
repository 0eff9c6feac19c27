"""Label Studio interop for the pairwise preference task.

We ship the labeling config (`examples/label-studio/pairwise-config.xml`, also `LABEL_CONFIG`): the post, two
candidates each with a 1–5 `Rating` (``score_y1``, ``score_y2``), a ``rewrite`` `TextArea` and a ``flag``
choice. `label_studio_tasks` turns candidates rows into tasks to import into Label Studio;
`parse_export` reads Label Studio's JSON export of that project (a list of tasks with ``annotations``) into
items and judgments, which `Store.import_external` adds to the store, so `prefs export` applies the same rules
to them. Cancelled (skipped) annotations count as skips; annotators become accounts ``ls:<email or id>``
that cannot log in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from redtrans.errors import InputError
from redtrans.prefs.store import Submission


def label_config() -> str:
    return resources.files("redtrans.prefs").joinpath("label-studio-config.xml").read_text(encoding="utf-8")


@dataclass
class ExternalItem:
    key: str
    row: dict[str, Any]
    judgments: list[tuple[str, Submission | None]] = field(default_factory=list)  # None = skipped


def label_studio_tasks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio tasks (``[{"data": {...}}]``) for candidates rows."""
    return [
        {"data": {"id": str(r["id"]), "source": r["source"], "src": r.get("src"), "tgt": r.get("tgt"),
                  "y1": r["candidates"][0].get("text", ""), "y2": r["candidates"][1].get("text", "")}}
        for r in rows
    ]  # fmt: skip


def _annotator(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    if who is None:
        raise ValueError("an annotation without `completed_by`")
    return f"ls:{who}"


def _submission(results: list[dict[str, Any]]) -> Submission:
    scores: dict[str, int] = {}
    rewrite, flagged = None, False
    for result in results:
        name, value = result.get("from_name"), result.get("value") or {}
        if name in ("score_y1", "score_y2"):
            rating = value.get("rating")
            if not isinstance(rating, int) or not 1 <= rating <= 5:
                raise ValueError(f"{name}: a rating 1-5, got {rating!r}")
            scores[name] = rating
        elif name == "rewrite":
            text = value.get("text")
            rewrite = "\n".join(text) if isinstance(text, list) else text
        elif name == "flag":
            flagged = "flag" in (value.get("choices") or [])
    if set(scores) != {"score_y1", "score_y2"}:
        raise ValueError("needs both ratings score_y1 and score_y2 (the shipped labeling config)")
    return Submission(scores=[scores["score_y1"], scores["score_y2"]], rewrite=(rewrite or None), flagged=flagged)


def parse_export(path: str | Path) -> list[ExternalItem]:
    """Items and judgments of a Label Studio JSON export (InputError naming the task on a bad one)."""
    path = Path(path).expanduser()
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a Label Studio JSON export: {exc}", path=path) from None
    if not isinstance(tasks, list):
        raise InputError("a Label Studio JSON export is a list of tasks", path=path)
    out = []
    for n, task in enumerate(tasks, start=1):
        try:
            data = task["data"]
            key = str(data.get("id", task.get("id")))
            row = {"id": key, "source": data["source"], "src": data.get("src"), "tgt": data.get("tgt"),
                   "candidates": [{"text": data["y1"]}, {"text": data["y2"]}]}  # fmt: skip
            item = ExternalItem(key, row)
            for annotation in task.get("annotations") or []:
                who = _annotator(annotation)
                cancelled = annotation.get("was_cancelled")
                item.judgments.append((who, None if cancelled else _submission(annotation.get("result") or [])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"task {n} (id {task.get('id') if isinstance(task, dict) else '?'}): {exc}",
                             path=path) from None  # fmt: skip
        out.append(item)
    return out


def write_tasks(input: Path, output: Path) -> int:
    """Write Label Studio tasks for the candidates rows of `input`; returns how many."""
    from redtrans.prefs.rows import candidate_rows

    rows, _ = candidate_rows(input)
    tasks = label_studio_tasks(rows)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(tasks)

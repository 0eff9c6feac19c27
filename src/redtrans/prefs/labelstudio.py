"""Label Studio interop for the pairwise preference task.

We ship the labeling config (`examples/label-studio/pairwise-config.xml`, also `label_config()`): the post,
two candidates each with a 1–5 `Rating` (``score_y1``, ``score_y2``), a ``rewrite`` `TextArea` and a ``flag``
choice. Its ``$variables`` are keys of the task data `label_studio_tasks` writes (``post``, ``candidate_1``,
``candidate_2``, ``direction``; plus ``redtrans_id``, ``src`` and ``tgt`` for the import), every value a plain
string: the annotator sees the post, never a JSON object, and nothing about other annotators.

`parse_export` reads Label Studio's JSON export of that project (a list of tasks with ``annotations``) into
items and judgments, which `Store.import_external` adds to the store, so `prefs export` applies the same
rules to them: cancelled (skipped) annotations count as skips, the ``flag`` choice flags the item, a rating
Label Studio marks ``origin: prediction`` (a pre-annotation accepted unchanged) counts as an accepted
suggestion, each annotation's ``updated_at`` decides what a re-import changes. Annotators become accounts
``ls:<email or id>`` that cannot log in. Exports of tasks written by earlier releases (``source``, ``y1``,
``y2``, ``id``) are read too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from redtrans.errors import InputError
from redtrans.languages import get_language
from redtrans.prefs.export import EXPERT, SUGGESTION
from redtrans.prefs.store import Submission

TASK_FIELDS = ("redtrans_id", "src", "tgt", "direction", "post", "candidate_1", "candidate_2")
"""The keys of a task's ``data`` (`label_studio_tasks`)."""


def label_config() -> str:
    return resources.files("redtrans.prefs").joinpath("label-studio-config.xml").read_text(encoding="utf-8")


def config_variables(config: str | None = None) -> set[str]:
    """The ``$variables`` the labeling config reads from a task's data."""
    return set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", config or label_config()))


@dataclass
class ExternalJudgment:
    annotator: str
    submission: Submission | None  # None = skipped (cancelled)
    updated_at: datetime | None = None


@dataclass
class ExternalItem:
    key: str
    row: dict[str, Any]
    judgments: list[ExternalJudgment] = field(default_factory=list)


def _direction(src: str | None, tgt: str | None) -> str:
    names = [get_language(x).name if x else "?" for x in (src, tgt)]
    return f"{names[0]} → {names[1]}"


def label_studio_tasks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio tasks (``[{"data": {...}}]``) for candidates rows: the post and the two candidates as
    plain text, nothing else about the row (no scores, no systems)."""
    return [
        {"data": {"redtrans_id": str(r["id"]), "src": r.get("src") or "", "tgt": r.get("tgt") or "",
                  "direction": _direction(r.get("src"), r.get("tgt")),
                  "post": str(r["source"]), "candidate_1": str(r["candidates"][0].get("text", "")),
                  "candidate_2": str(r["candidates"][1].get("text", ""))}}
        for r in rows
    ]  # fmt: skip


def _annotator(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    if who is None:
        raise ValueError("an annotation without `completed_by`")
    return f"ls:{who}"


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise ValueError(f"`updated_at` must be an ISO date, got {value!r}")
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return stamp.astimezone(UTC).replace(tzinfo=None) if stamp.tzinfo else stamp


def _submission(results: list[dict[str, Any]]) -> Submission:
    scores: dict[str, int] = {}
    set_by: dict[str, str] = {}
    rewrite, flagged = None, False
    for result in results:
        name, value = result.get("from_name"), result.get("value") or {}
        if name in ("score_y1", "score_y2"):
            rating = value.get("rating")
            if not isinstance(rating, int) or not 1 <= rating <= 5:
                raise ValueError(f"{name}: a rating 1-5, got {rating!r}")
            scores[name] = rating
            set_by[name] = SUGGESTION if result.get("origin") == "prediction" else EXPERT
        elif name == "rewrite":
            text = value.get("text")
            rewrite = "\n".join(text) if isinstance(text, list) else text
        elif name == "flag":
            flagged = "flag" in (value.get("choices") or [])
    if set(scores) != {"score_y1", "score_y2"}:
        raise ValueError("needs both ratings score_y1 and score_y2 (the shipped labeling config)")
    return Submission(scores=[scores["score_y1"], scores["score_y2"]], rewrite=(rewrite or None), flagged=flagged,
                      set_by=[set_by["score_y1"], set_by["score_y2"]])  # fmt: skip


def _row(task: dict[str, Any]) -> dict[str, Any]:
    data = task["data"]
    if "post" in data:
        key = str(data.get("redtrans_id", task.get("id")))
        return {"id": key, "source": data["post"], "src": data.get("src") or None, "tgt": data.get("tgt") or None,
                "candidates": [{"text": data["candidate_1"]}, {"text": data["candidate_2"]}]}  # fmt: skip
    key = str(data.get("id", task.get("id")))  # tasks written by earlier releases
    return {"id": key, "source": data["source"], "src": data.get("src"), "tgt": data.get("tgt"),
            "candidates": [{"text": data["y1"]}, {"text": data["y2"]}]}  # fmt: skip


def parse_export(path: str | Path, rows: dict[str, dict[str, Any]] | None = None) -> list[ExternalItem]:
    """Items and judgments of a Label Studio JSON export (InputError naming the task on a bad one). `rows`
    (candidates rows by id) gives each item its languages where the tasks do not carry them."""
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
            row = _row(task)
            known = (rows or {}).get(row["id"]) or {}
            row["src"], row["tgt"] = row["src"] or known.get("src"), row["tgt"] or known.get("tgt")
            item = ExternalItem(row["id"], row)
            for annotation in task.get("annotations") or []:
                who = _annotator(annotation)
                cancelled = annotation.get("was_cancelled")
                sub = None if cancelled else _submission(annotation.get("result") or [])
                stamp = _when(annotation.get("updated_at") or annotation.get("created_at"))
                item.judgments.append(ExternalJudgment(who, sub, stamp))
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

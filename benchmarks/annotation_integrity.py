"""Does the exported preference corpus hold exactly what experts deliberately gave? (issue 30)

A 40-item project (34 one-line posts, 6 multi-line, every item with a chrF++ suggestion; items 30–39 need two
experts) is worked through a real annotation server (uvicorn on loopback, SQLite) by scripted experts over
HTTP, as a browser would (login with the CSRF cookie, POST /next, the item form's fields):

- two honest experts score deliberately, rewrite when both candidates are poor, flag a bad post now and then;
- a blind expert accepts the shown suggestions without looking (the accept key);
- an off-lease expert posts judgments and skips for items never handed to her;
- an abandoning expert takes two-expert items and skips them, leaving them half-done;
- a reviewer rejects one rewrite and accepts the others;
- a Label Studio project (4 more items) is imported, then a corrected export (newer `updated_at`) and a stale
  one (older) are re-imported.

Every action goes into the script's own log. The oracle computes the expected export from that log alone —
what each expert meant to give, the flags, the review decisions, each item's k, the export rules, one row per
line of the post with the prompt a recording stand-in engine sees the translator send for that line — never
from the app's provenance fields or its answers. Then it compares with `prefs export` (corrected and original
files):

    python benchmarks/annotation_integrity.py

prints ``corrupt_export_rows: N target: 0`` (rows no expert deliberately gave, flagged or rejected ones, half-done
items, rows whose prompt is not the translator's), ``missing_rows: M target: 0`` (rows the oracle expects that the
export lacks) and last ``export_vs_oracle: N+M target: 0``; exits 1 above 0. Not a timing claim.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from redtrans.cli import app as cli_app
from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.prefs.config import AnnotateConfig
from redtrans.prefs.store import Store
from redtrans.translator import Translator

TAU = 3
PASSWORD = "bench-pass-123"
EXPERTS = ("honest1", "honest2", "blind", "offlease", "abandon")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
WORDS = ["今天", "晚饭", "好吃", "价格", "周末", "爬山", "开心", "朋友", "咖啡", "电影", "下雨", "上班", "猫咪", "旅行"]


class Recorder(Engine):
    """A chat engine that records every request and 'translates' each Han character to 'w'."""

    name = model = "recorder"

    def __init__(self) -> None:
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.requests.extend(requests)
        return [GenResult(re.sub(r"[\u4e00-\u9fff]", "w", (r.messages or [{}])[-1]["content"])) for r in requests]


def first_requests(post: str) -> list[list[dict[str, str]]]:
    """What the translator sends first for each line of `post`, as a stand-in engine records it."""
    engine = Recorder()
    Translator(engine).translate_text(post, "en", "zh")
    return [r.messages for r in engine.requests if "Translate this" not in (r.messages or [{}])[-1]["content"]]  # type: ignore[misc]


def make_items(rng: random.Random) -> list[dict[str, Any]]:
    items = []
    for i in range(40):
        lines = 3 if i % 7 == 3 else 1
        post = "\n".join("".join(rng.sample(WORDS, 3)) + f"第{i}条{n}" for n in range(lines))
        cands = ["\n".join(f"post {i} line {n} {take}" for n in range(lines)) for take in ("first take", "second try")]
        chrf = [rng.uniform(10, 90), rng.uniform(10, 90)]
        rubric = [5 if c >= 70 else 4 if c >= 55 else 3 if c >= 40 else 2 if c >= 25 else 1 for c in chrf]
        items.append({"id": f"b{i:02d}", "source": post, "src": "zh", "tgt": "en",
                      "candidates": [{"text": c} for c in cands],
                      "auto": {"metric": "chrf++", "scores": chrf, "rubric": rubric, "needs_rewrite": max(chrf) < 40},
                      "k": 2 if i >= 30 else 1})  # fmt: skip
    return items


class Expert:
    def __init__(self, url: str, name: str, log: list[dict[str, Any]]) -> None:
        self.name, self.log = name, log
        self.http = httpx.Client(base_url=url, timeout=60)
        token = self._csrf("/login")
        response = self.http.post("/login", data={"name": name, "password": PASSWORD, "csrf": token})
        assert response.status_code == 303, f"{name} cannot log in: {response.status_code}"

    def _csrf(self, path: str = "/") -> str:
        found = CSRF.search(self.http.get(path).text)
        assert found, path
        return found.group(1)

    def next(self) -> int | None:
        response = self.http.post("/next", data={"task": "prefs", "csrf": self._csrf()})
        where = response.headers.get("location", "")
        return int(where.rsplit("/", 1)[1]) if "/item/" in where else None

    def item(self, item_id: int) -> dict[str, Any]:
        page = self.http.get(f"/item/{item_id}").text
        key = re.search(r'data-key="([^"]+)"', page)
        shown = re.findall(r'<div class="text">(.*?)</div>', page, re.S)
        hints = [int(x) for x in re.findall(r'class="suggestion hint" id="suggestion\d" data-score="(\d)"', page)]
        version = re.search(r'name="version" value="(\d+)"', page)
        return {"key": key.group(1) if key else None, "shown": [_unescape(s) for s in shown], "hints": hints,
                "version": version.group(1) if version else "0", "opened": re.search(r'name="opened" value="([^"]+)"',
                                                                                    page)}  # fmt: skip

    def submit(self, item_id: int, shown_scores: list[int], marks: list[str], **extra: str) -> int:
        page = self.item(item_id)
        data = {"csrf": self._csrf(), "version": page["version"], "s1": str(shown_scores[0]),
                "s2": str(shown_scores[1]), "p1": marks[0], "p2": marks[1], **extra}  # fmt: skip
        return self.http.post(f"/item/{item_id}", data=data).status_code

    def skip(self, item_id: int, **extra: str) -> int:
        return self.http.post(f"/item/{item_id}/skip", data={"csrf": self._csrf(), **extra}).status_code


def _unescape(text: str) -> str:
    return text.replace("&#39;", "'").replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace(
        "&amp;", "&")  # fmt: skip


def run_experts(url: str, items: dict[str, dict[str, Any]], rng: random.Random, log: list[dict[str, Any]]) -> None:
    experts = {name: Expert(url, name, log) for name in EXPERTS}
    ids: dict[str, int] = {}

    def act(name: str, limit: int) -> None:
        e = experts[name]
        for _ in range(limit):
            item_id = e.next()
            if item_id is None:
                return
            page = e.item(item_id)
            key = page["key"]
            ids[key] = item_id
            cands = [c["text"] for c in items[key]["candidates"]]
            order = [cands.index(t) for t in page["shown"]]  # the page's order → candidate indexes
            if name == "blind":  # accept the suggestions as shown, without looking
                status = e.submit(item_id, page["hints"], ["suggestion", "suggestion"])
                log.append({"who": name, "key": key, "action": "accept_suggestions", "status": status})
                continue
            if name == "abandon":
                status = e.skip(item_id)
                log.append({"who": name, "key": key, "action": "skip", "status": status})
                continue
            scores = [rng.randint(1, 5), rng.randint(1, 5)]
            if rng.random() < 0.3:
                scores = [rng.randint(1, 2), rng.randint(1, 2)]
            extra: dict[str, str] = {}
            rewrite = None
            if max(scores) < TAU:
                lines = items[key]["source"].count("\n") + 1
                rewrite = "\n".join(f"{name} rewrites line {n} of {key}" for n in range(lines))
                extra["rewrite"] = rewrite
            flag = rng.random() < 0.1
            if flag:
                extra.update(flag="1", comment="bad source")
            status = e.submit(item_id, [scores[i] for i in order], ["expert", "expert"], **extra)
            log.append({"who": name, "key": key, "action": "judge", "scores": scores, "rewrite": rewrite,
                        "flag": flag, "status": status})  # fmt: skip

    act("abandon", 4)  # takes the first two-expert items and walks away from them
    act("honest1", 14)
    act("blind", 8)
    act("honest2", 30)
    act("honest1", 30)
    # off-lease: judgments and skips posted for items never handed to her
    e = experts["offlease"]
    taken = set(ids.values())
    for item_id in sorted(taken)[:6]:
        status = e.http.post(f"/item/{item_id}", data={"csrf": e._csrf(), "version": "0", "s1": "5", "s2": "1",
                                                       "p1": "expert", "p2": "expert"}).status_code  # fmt: skip
        log.append({"who": "offlease", "key": None, "action": "off_lease_submit", "item_id": item_id, "status": status})
        status = e.skip(item_id, flag="1")
        log.append({"who": "offlease", "key": None, "action": "off_lease_skip", "item_id": item_id, "status": status})


def review(url: str, log: list[dict[str, Any]]) -> None:
    rita = Expert(url, "rita", log)
    page = rita.http.get("/review?status=rewritten").text
    keys = re.findall(r'<tr data-key="([^"]+)"><td><a href="/review/item/(\d+)"', page)
    for n, (key, item_id) in enumerate(sorted(keys)):
        detail = rita.http.get(f"/review/item/{item_id}").text
        for chunk in detail.split('<div class="card judgment"')[1:]:
            expert = re.search(r'data-expert="([^"]+)"', chunk)
            form = re.search(r'action="/review/judgment/(\d+)"', chunk)
            if not (expert and form):
                continue
            decision = "rejected" if n == 0 else "accepted"
            status = rita.http.post(f"/review/judgment/{form.group(1)}",
                                    data={"csrf": rita._csrf("/review"), "decision": decision}).status_code  # fmt: skip
            log.append({"who": "rita", "key": key, "action": f"review_{decision}", "expert": expert.group(1),
                        "status": status})  # fmt: skip


def label_studio(db: str, tmp: Path, log: list[dict[str, Any]]) -> None:
    def task(key: str, post: str, s1: int, s2: int, updated: str) -> dict[str, Any]:
        result = [{"from_name": f"score_y{n}", "type": "rating", "value": {"rating": s}, "origin": "manual"}
                  for n, s in ((1, s1), (2, s2))]  # fmt: skip
        data = {"redtrans_id": key, "src": "zh", "tgt": "en", "direction": "Chinese → English", "post": post,
                "candidate_1": f"{key} take one", "candidate_2": f"{key} take two"}  # fmt: skip
        annotation = {"completed_by": {"email": "lsa@x"}, "updated_at": updated, "result": result}
        return {"id": 1, "data": data, "annotations": [annotation]}

    posts = {f"ls{i}": f"标注工具里的第{i}个帖子" for i in range(4)}
    rounds = [
        ("import", "2026-05-01T10:00:00Z", {"ls0": (4, 2), "ls1": (2, 4), "ls2": (5, 1), "ls3": (1, 5)}),
        ("corrected", "2026-05-02T10:00:00Z", {"ls0": (2, 4), "ls1": (2, 4), "ls2": (1, 5), "ls3": (1, 5)}),
        ("stale", "2026-05-01T12:00:00Z", {"ls0": (4, 2), "ls1": (5, 1), "ls2": (5, 1), "ls3": (1, 5)}),
    ]
    for name, updated, scores in rounds:
        path = tmp / f"ls-{name}.json"
        path.write_text(json.dumps([task(k, posts[k], *s, updated) for k, s in scores.items()], ensure_ascii=False))
        result = CliRunner().invoke(cli_app, ["prefs", "import-label-studio", str(path), "--db", db])
        log.append({"who": "ls:lsa@x", "action": f"ls_{name}", "updated": updated, "scores": scores,
                    "posts": posts, "exit": result.exit_code})  # fmt: skip


def oracle(items: dict[str, dict[str, Any]], log: list[dict[str, Any]]) -> tuple[set, set]:
    """The expected (corrected, original) rows from the log alone: (id, prompt, chosen, rejected) per line."""
    judged: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    flagged: set[str] = set()
    rejected: set[tuple[str, str]] = set()
    k = {key: item["k"] for key, item in items.items()}
    texts = {key: (item["source"], [c["text"] for c in item["candidates"]]) for key, item in items.items()}
    for entry in log:
        if entry["action"] == "judge":
            judged[entry["key"]][entry["who"]] = entry
            if entry["flag"]:
                flagged.add(entry["key"])
        elif entry["action"] == "review_rejected":
            rejected.add((entry["key"], entry["expert"]))
        elif entry["action"] in ("ls_import", "ls_corrected", "ls_stale"):
            for key, scores in entry["scores"].items():
                texts[key] = (entry["posts"][key], [f"{key} take one", f"{key} take two"])
                k[key] = 1
                held = judged[key].get(entry["who"])
                if held is None or entry["updated"] > held["updated"]:  # only a newer export changes a judgment
                    judged[key][entry["who"]] = {"scores": list(scores), "rewrite": None, "updated": entry["updated"]}
    corrected, original = set(), set()

    def rows(key: str, row_id: str, good: str, bad: str) -> set:
        post = texts[key][0]
        prompts = first_requests(post)
        out = set()
        many = len(prompts) > 1
        for n, (prompt, g, b) in enumerate(zip(prompts, good.split("\n"), bad.split("\n"), strict=True), start=1):
            if g != b:
                out.add((f"{row_id}/s{n}" if many else row_id, json.dumps(prompt, ensure_ascii=False), g, b))
        return out

    for key, by in judged.items():
        if key in flagged:
            continue
        counted = [(who, j) for who, j in by.items() if (key, who) not in rejected]
        if len(counted) < k[key]:
            continue
        means = [sum(j["scores"][i] for _w, j in counted) / len(counted) for i in (0, 1)]
        cands = texts[key][1]
        if means[0] != means[1]:
            better = 0 if means[0] > means[1] else 1
            made = rows(key, key, cands[better], cands[1 - better])
            original |= made
            if max(means) >= TAU:
                corrected |= made
        if max(means) < TAU:
            for who, j in counted:
                if j["rewrite"]:
                    for n, cand in enumerate(cands, start=1):
                        corrected |= rows(key, f"{key}/rewrite/{who}/y{n}", j["rewrite"], cand)
    return corrected, original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the store and exports in this folder.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="redtrans-integrity-"))
    tmp.mkdir(parents=True, exist_ok=True)
    db = str(tmp / "annotate.db")
    items = {row["id"]: row for row in make_items(rng)}
    with Store(db) as store:
        for name in (*EXPERTS, "rita", "admin"):
            store.add_user(name, PASSWORD, {"rita": "reviewer", "admin": "admin"}.get(name, "expert"), replace=True)
        for k in (1, 2):
            store.import_candidates([r for r in items.values() if r["k"] == k], k)
    import uvicorn

    from redtrans.prefs.web.app import create_app, uvicorn_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = AnnotateConfig(db=db, port=port, lease_s=3600)
    server = uvicorn.Server(uvicorn_config(config, create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    log: list[dict[str, Any]] = []
    try:
        url = f"http://127.0.0.1:{port}"
        run_experts(url, items, rng, log)
        review(url, log)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    label_studio(db, tmp, log)
    (tmp / "actions.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in log))
    out = tmp / "preferences.jsonl"
    result = CliRunner().invoke(cli_app, ["prefs", "export", "--db", db, "-o", str(out)])
    if result.exit_code != 0:
        print(result.output, file=sys.stderr)
        return 2

    def exported(path: Path) -> set:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return {(r["id"], json.dumps(r["prompt"], ensure_ascii=False), r["chosen"][0]["content"],
                 r["rejected"][0]["content"]) for r in rows}  # fmt: skip

    expected, expected_original = oracle(items, log)
    got, got_original = exported(out), exported(tmp / "preferences.original.jsonl")
    corrupt = len(got - expected) + len(got_original - expected_original)
    missing = len(expected - got) + len(expected_original - got_original)
    actions = defaultdict(int)
    for entry in log:
        actions[entry["action"]] += 1
    print(f"store and exports: {tmp}")
    print("actions: " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())))
    print(f"oracle: {len(expected)} corrected rows, {len(expected_original)} original rows; "
          f"export: {len(got)} and {len(got_original)}")  # fmt: skip
    print(" ".join(result.output.split()))
    for row in sorted((got - expected) | (got_original - expected_original))[:10]:
        print(f"  corrupt: {row[0]} chosen={row[2]!r} rejected={row[3]!r}")
    for row in sorted((expected - got) | (expected_original - got_original))[:10]:
        print(f"  missing: {row[0]} chosen={row[2]!r} rejected={row[3]!r}")
    print(f"corrupt_export_rows: {corrupt} target: 0")
    print(f"missing_rows: {missing} target: 0")
    print(f"export_vs_oracle: {corrupt + missing} target: 0")
    return 1 if corrupt + missing else 0


if __name__ == "__main__":
    sys.exit(main())

"""Bad input for every command: the contract of issue 32 ("One rule for bad input"), checked for real.

Every command runs as a subprocess on the stand-in engine (or a tiny random model for `sft`/`repo`), against
files the benchmark writes, and each result is checked against the contract:

| level | result |
|---|---|
| file | exit 2; at most two stderr lines (one ``error:`` line, at most one hint); nothing created |
| row | exit 1 with the count; the bad row ``failed`` with its reason, the others done |
| env | exit 2; one ``error:`` line; no temporary file left |

and, every time: no traceback, and no secret (a password in a URL, an API key) in anything printed.

The cases (what the benchmark writes for each command that takes that kind of input):

| case | input | level |
|---|---|---|
| unknown field | a config key / ``--set`` key / input column the stage does not have | file |
| wrong type | an option or config value of the wrong type | file |
| missing file | an input path that does not exist | file |
| empty file | an input file of 0 bytes | file |
| invalid UTF-8 | a row with the byte ``\\xe9`` alone | file |
| invalid JSON | a JSONL line that is not JSON | file |
| NUL byte | a raw NUL byte inside a JSONL row (JSON does not allow one) | file |
| 10 MB line | one 10 MB text among good rows | row (training and bench data: file, see below) |
| NULL text | one row with ``text: null`` | row (training and bench data: file) |
| lone surrogate | one row whose text ends in ``\\ud83d`` (half an emoji) | row (training and bench data: file) |
| duplicate ids | two rows with one id | file |
| unknown language | a row or option with the code ``xx`` | file |
| missing database | ``--db`` naming a SQLite file that does not exist | file |
| two credentials | ``$OPENAI_API_KEY`` and ``user:password@`` in the endpoint URL | file |
| secret in a URL | ``user:password@`` in a URL the command cannot use | file, the password never shown |
| full disk | the output on a 1 MB tmpfs (96 KB for a tiny model's training; ``mount -t tmpfs``; else skipped) | env |

Row-level cases in data a command *trains on or scores against* (``sft``, ``repo``: training rows; ``bench``: a
suite; ``annotate import``/``prefs prescore``/``prefs export``: candidates rows) are refused as a whole (file
level): a training set or test set silently missing rows would change what is measured.

Pairs not run (the command takes no such input) are named in the output with their reason. Run from the
repository root: ``.venv/bin/python benchmarks/bad_input.py [COMMAND ...]``. Ends with
``bad_inputs_handled: N/M target: M/M`` and exits 1 below the target.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent / "redtrans"
CMD = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "redtrans"]
TMP = Path(tempfile.mkdtemp(prefix="redtrans-bad-input-"))
SECRET = "hunter2-s3cret"
KEY = "sk-bench-0123456789"
GOOD = ["这家店的奶茶绝绝子，姐妹们冲！", "周末去爬山，累瘫了", "This coffee shop is a hidden gem"]
BIG = "好" * (10 << 20)  # a 10 MB line (of 3-byte characters: 30 MB of UTF-8)

CASES = [
    "unknown field", "wrong type", "missing file", "empty file", "invalid UTF-8", "invalid JSON", "NUL byte",
    "10 MB line", "NULL text", "lone surrogate", "duplicate ids", "unknown language", "missing database",
    "two credentials", "secret in a URL", "full disk",
]  # fmt: skip


@dataclass
class Probe:
    """One command run and what the contract expects of it."""

    args: list[str]
    level: str  # file | row | env
    env: dict[str, str] = field(default_factory=dict)
    absent: list[Path] = field(default_factory=list)  # must not exist afterwards (file level: nothing created)
    check: Callable[[], str | None] | None = None  # row level: None when the rows are as expected, else why not
    disk: Path | None = None  # env level: the tmpfs the output lives on
    timeout: float = 240
    serves: bool = False  # a server: still running after `timeout` means it started (a miss for bad input)


@dataclass
class Skip:
    reason: str


Builder = Callable[[Path], "Probe | Skip"]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDTRANS_SERVE_", "REDTRANS_API_KEYS"))}
    base.update({"REDTRANS_HOME": str(TMP / "home"), "OPENAI_API_KEY": "", "COLUMNS": "200", **extra})
    return base


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")  # fmt: skip
    return path


def raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mount_tmpfs(path: Path, size: str = "1m") -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0  # fmt: skip


CAN_MOUNT: bool | None = None


def tmpfs(d: Path, size: str = "1m") -> Path | None:
    """A fresh tmpfs (1 MB) under `d`, or None where none can be mounted."""
    global CAN_MOUNT
    disk = d / "disk"
    if CAN_MOUNT is False:
        return None
    CAN_MOUNT = mount_tmpfs(disk, size)
    return disk if CAN_MOUNT else None


def failed_reason(path: Path, row_id: str, reason: str, others: int) -> Callable[[], str | None]:
    """Row check: `row_id` failed with `reason` in the JSONL `path` and `others` other rows are ok."""

    def check() -> str | None:
        if not path.is_file():
            return f"{path.name} was not written"
        rows = {str(r.get("id")): r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
        row = rows.get(row_id)
        if row is None or row.get("status") != "failed" or row.get("reason") != reason:
            return (
                f"row {row_id}: {None if row is None else (row.get('status'), row.get('reason'))}, want failed/{reason}"
            )
        ok = sum(r.get("status", "ok") == "ok" for k, r in rows.items() if k != row_id)
        return None if ok == others else f"{ok} other rows ok, want {others}"

    return check


def rejected(rejects: Path, code: str, journal: Path, others: int) -> Callable[[], str | None]:
    """Row check for `sample`: the bad line is in rejects.jsonl with `code` and `others` rows are journaled."""

    def check() -> str | None:
        if not rejects.is_file():
            return "no rejects.jsonl"
        codes = [json.loads(line).get("code") for line in rejects.read_text(encoding="utf-8").splitlines()]
        if codes != [code]:
            return f"rejects {codes}, want [{code!r}]"
        n = len(journal.read_text(encoding="utf-8").splitlines()) if journal.is_file() else 0
        return None if n == others else f"{n} rows journaled, want {others}"

    return check


# -- translate --------------------------------------------------------------------------------------------------
def translate(d: Path, case: str) -> Probe | Skip:
    out = d / "out" / "out.jsonl"
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(GOOD)]
    good = jsonl(d / "in.jsonl", rows)
    base = ["translate", "-i", str(good), "-o", str(out), "--engine", "standin", "--tgt", "en"]

    def row_case(bad: Any, reason: str) -> Probe:
        src = jsonl(d / "in.jsonl", [*rows, bad])
        return Probe([*base[:2], str(src), *base[3:]], "row", check=failed_reason(out, "bad", reason, 3))

    match case:
        case "unknown field":
            return Probe([*base, "--text-field", "body"], "file", absent=[out.parent])
        case "wrong type":
            return Probe([*base, "--candidates", "many"], "file", absent=[out.parent])
        case "missing file":
            return Probe(["translate", "-i", str(d / "nope.jsonl"), *base[3:]], "file", absent=[out.parent])
        case "empty file":
            return Probe(["translate", "-i", str(raw(d / "e.jsonl", b"")), *base[3:]], "file", absent=[out.parent])
        case "invalid UTF-8":
            src = raw(d / "u.jsonl", good.read_bytes() + b'{"id": "x", "text": "caf\xe9"}\n')
            return Probe(["translate", "-i", str(src), *base[3:]], "file", absent=[out.parent])
        case "invalid JSON":
            src = raw(d / "j.jsonl", good.read_bytes() + b'{"id": "x", "text": \n')
            return Probe(["translate", "-i", str(src), *base[3:]], "file", absent=[out.parent])
        case "NUL byte":
            src = raw(d / "n.jsonl", good.read_bytes() + b'{"id": "x", "text": "a\x00b"}\n')
            return Probe(["translate", "-i", str(src), *base[3:]], "file", absent=[out.parent])
        case "10 MB line":
            return row_case({"id": "bad", "text": BIG}, "too_long")
        case "NULL text":
            return row_case({"id": "bad", "text": None}, "empty")
        case "lone surrogate":
            return row_case('{"id": "bad", "text": "半个表情\\ud83d"}', "invalid_text")
        case "duplicate ids":
            src = jsonl(d / "dup.jsonl", [*rows, {"id": "r0", "text": "again"}])
            return Probe(["translate", "-i", str(src), *base[3:]], "file", absent=[out.parent])
        case "unknown language":
            src = jsonl(d / "lang.jsonl", [*rows, {"id": "x", "text": "hi", "tgt": "xx"}])
            return Probe(["translate", "-i", str(src), *base[3:]], "file", absent=[out.parent])
        case "two credentials":
            args = ["translate", "-i", str(good), "-o", str(out), "--model", f"http://bob:{SECRET}@127.0.0.1:9/v1"]
            return Probe(args, "file", env={"OPENAI_API_KEY": KEY}, absent=[out.parent])
        case "secret in a URL":
            args = ["translate", "-i", str(good), "-o", str(out), "--engine", "llamacpp", "--model",
                    f"http://bob:{SECRET}@127.0.0.1:9/v1"]  # fmt: skip
            return Probe(args, "file", absent=[out.parent])
        case "full disk":
            disk = tmpfs(d)
            if disk is None:
                return Skip("no tmpfs can be mounted here (needs root)")
            src = jsonl(d / "fill.jsonl", [{"id": f"f{i}", "text": f"{i}{GOOD[0] * 60}"} for i in range(200)])
            return Probe(["translate", "-i", str(src), "-o", str(disk / "out.jsonl"), *base[5:]], "env", disk=disk)
    return Skip("translate opens no store")


# -- sample -----------------------------------------------------------------------------------------------------
def sample(d: Path, case: str) -> Probe | Skip:
    run = d / "run"
    rows = [{"text": t} for t in GOOD[:2]] * 3
    corpus = jsonl(d / "corpus.jsonl", rows)
    models = ["--set", "m1.kind=standin", "--set", "m2.kind=standin", "--set", "m2.options={salt: 2}", "--set",
              "score_workers=1"]  # fmt: skip

    def args(path: Path, *extra: str) -> list[str]:
        return ["sample", "-i", str(path), "--src", "zh", "--tgt", "en", "-o", str(run), *models, *extra]

    def row_case(bad: Any, code: str) -> Probe:
        src = jsonl(d / "corpus.jsonl", [*rows, bad])
        return Probe(args(src), "row", check=rejected(run / "rejects.jsonl", code, run / "journal.jsonl", 6))

    match case:
        case "unknown field":
            return Probe(args(corpus, "--set", "bogus=1"), "file", absent=[run])
        case "wrong type":
            return Probe(args(corpus, "--set", "max_rows=lots"), "file", absent=[run])
        case "missing file":
            return Probe(args(d / "nope.jsonl"), "file", absent=[run])
        case "empty file":
            return Probe(args(raw(d / "e.jsonl", b"")), "file", absent=[run])
        case "invalid UTF-8":
            return Probe(args(raw(d / "u.jsonl", corpus.read_bytes() + b'{"text": "caf\xe9"}\n')), "file", absent=[run])
        case "invalid JSON":
            return Probe(args(raw(d / "j.jsonl", corpus.read_bytes() + b'{"text": \n')), "file", absent=[run])
        case "NUL byte":
            return Probe(args(raw(d / "n.jsonl", corpus.read_bytes() + b'{"text": "a\x00b"}\n')), "file", absent=[run])
        case "10 MB line":
            return row_case({"text": BIG}, "too_long")
        case "NULL text":
            return row_case({"text": None}, "empty")
        case "lone surrogate":
            return row_case('{"text": "半个表情\\ud83d"}', "invalid_text")
        case "duplicate ids":
            return Skip("rows are named corpus:line; a row's own id is kept as provenance only")
        case "unknown language":
            return Probe(["sample", "-i", str(corpus), "--src", "zh", "--tgt", "xx", "-o", str(run), *models], "file",
                         absent=[run])  # fmt: skip
        case "missing database":
            return Skip("sample opens no store")
        case "two credentials":
            return Probe([*args(corpus), "--m1", f"http://bob:{SECRET}@127.0.0.1:9/v1", "--set", "m1.kind=openai"],
                         "file", env={"OPENAI_API_KEY": KEY}, absent=[run])  # fmt: skip
        case "secret in a URL":
            return Probe([*args(corpus), "--m1", f"http://bob:{SECRET}@127.0.0.1:9/v1", "--set", "m1.kind=llamacpp"],
                         "file", absent=[run])  # fmt: skip
        case "full disk":
            disk = tmpfs(d)
            if disk is None:
                return Skip("no tmpfs can be mounted here (needs root)")
            big = jsonl(d / "fill.jsonl", [{"text": f"{i}{GOOD[0] * 20}"} for i in range(150)])
            return Probe(["sample", "-i", str(big), "--src", "zh", "--tgt", "en", "-o", str(disk / "run"), *models],
                         "env", disk=disk)  # fmt: skip
    return Skip("?")


# -- prefs generate -----------------------------------------------------------------------------------------------
def prefs_generate(d: Path, case: str) -> Probe | Skip:
    out = d / "out" / "cands.jsonl"
    rows = [{"id": f"r{i}", "text": t, "src": "zh", "tgt": "en"} for i, t in enumerate(GOOD[:2])]
    good = jsonl(d / "in.jsonl", rows)
    systems = ["--engine", "standin", "-m", "standin-a", "-m", "standin-b"]

    def args(path: Path, *extra: str) -> list[str]:
        return ["prefs", "generate", "-i", str(path), "-o", str(out), *systems, *extra]

    def row_case(bad: Any, reason: str) -> Probe:
        return Probe(args(jsonl(d / "in.jsonl", [*rows, bad])), "row", check=failed_reason(out, "bad", reason, 2))

    match case:
        case "unknown field":
            return Probe(args(good, "--set", "bogus=1"), "file", absent=[out.parent])
        case "wrong type":
            return Probe(args(good, "--set", "batch_size=lots"), "file", absent=[out.parent])
        case "missing file":
            return Probe(args(d / "nope.jsonl"), "file", absent=[out.parent])
        case "empty file":
            return Probe(args(raw(d / "e.jsonl", b"")), "file", absent=[out.parent])
        case "invalid UTF-8":
            return Probe(args(raw(d / "u.jsonl", good.read_bytes() + b'{"text": "caf\xe9"}\n')), "file",
                         absent=[out.parent])  # fmt: skip
        case "invalid JSON":
            return Probe(args(raw(d / "j.jsonl", good.read_bytes() + b'{"text": \n')), "file", absent=[out.parent])
        case "NUL byte":
            return Probe(args(raw(d / "n.jsonl", good.read_bytes() + b'{"text": "a\x00b"}\n')), "file",
                         absent=[out.parent])  # fmt: skip
        case "10 MB line":
            return row_case({"id": "bad", "text": BIG, "src": "zh", "tgt": "en"}, "too_long")
        case "NULL text":
            return row_case({"id": "bad", "text": None, "src": "zh", "tgt": "en"}, "empty")
        case "lone surrogate":
            return row_case('{"id": "bad", "text": "半个表情\\ud83d", "src": "zh", "tgt": "en"}', "invalid_text")
        case "duplicate ids":
            return Probe(args(jsonl(d / "dup.jsonl", [*rows, {**rows[0], "text": "again"}])), "file",
                         absent=[out.parent])  # fmt: skip
        case "unknown language":
            return Probe(args(jsonl(d / "lang.jsonl", [*rows, {"id": "x", "text": "hi", "tgt": "xx"}])), "file",
                         absent=[out.parent])  # fmt: skip
        case "missing database":
            return Skip("prefs generate opens no store")
        case "two credentials":
            url = f"http://bob:{SECRET}@127.0.0.1:9/v1"
            return Probe(["prefs", "generate", "-i", str(good), "-o", str(out), "-m", url, "-m", url], "file",
                         env={"OPENAI_API_KEY": KEY}, absent=[out.parent])  # fmt: skip
        case "secret in a URL":
            url = f"http://bob:{SECRET}@127.0.0.1:9/v1"
            return Probe(["prefs", "generate", "-i", str(good), "-o", str(out), "--engine", "llamacpp", "-m", url, "-m",
                          url], "file", absent=[out.parent])  # fmt: skip
        case "full disk":
            disk = tmpfs(d)
            if disk is None:
                return Skip("no tmpfs can be mounted here (needs root)")
            big = jsonl(d / "fill.jsonl", [{"id": f"f{i}", "text": f"{i}{GOOD[0] * 40}", "src": "zh", "tgt": "en"}
                                           for i in range(150)])  # fmt: skip
            return Probe(["prefs", "generate", "-i", str(big), "-o", str(disk / "c.jsonl"), *systems], "env",
                         disk=disk)  # fmt: skip
    return Skip("?")


# -- candidates rows in: prefs prescore, prefs export (reference-rewrite), annotate import ------------------------
def _cands(i: int, source: Any = None) -> dict[str, Any]:
    return {"id": f"c{i}", "source": GOOD[0] if source is None else source, "src": "zh", "tgt": "en",
            "reference": "so good", "status": "ok",
            "candidates": [{"text": "nice", "system": "a"}, {"text": "good", "system": "b"}]}  # fmt: skip


def candidates_in(command: list[str], out_flag: str | None) -> Callable[[Path, str], Probe | Skip]:
    """A command reading candidates rows (`command` + the input path [+ `out_flag` OUT])."""

    def build(d: Path, case: str) -> Probe | Skip:
        out = d / "out" / "o.jsonl"
        good = jsonl(d / "cands.jsonl", [_cands(i) for i in range(3)])
        db = d / "store.db"
        tail = [out_flag, str(out)] if out_flag else ["--db", str(db)]
        created = [out.parent] if out_flag else [db]

        def args(path: Path, *extra: str) -> list[str]:
            return [*command, str(path), *tail, *extra]

        def bad(row: Any) -> Probe:
            return Probe(args(jsonl(d / "bad.jsonl", [*map(_cands, range(3)), row])), "file", absent=created)

        match case:
            case "unknown field":
                if command[:2] == ["prefs", "export"]:
                    return Probe(args(good, "--mode", "bogus"), "file", absent=created)
                return Probe(args(good, "--set", "bogus=1"), "file", absent=created) if "prescore" in command else \
                    Skip("no config: options only, checked by the parser (see wrong type)")  # fmt: skip
            case "wrong type":
                return Probe(args(good, "--tau" if "export" in command else "--k", "lots")
                             if "prescore" not in command else args(good, "--tau-auto", "lots"), "file",
                             absent=created)  # fmt: skip
            case "missing file":
                return Probe(args(d / "nope.jsonl"), "file", absent=created)
            case "empty file":
                return Probe(args(raw(d / "e.jsonl", b"")), "file", absent=created)
            case "invalid UTF-8":
                return Probe(args(raw(d / "u.jsonl", good.read_bytes() + b'{"id": "caf\xe9"}\n')), "file",
                             absent=created)  # fmt: skip
            case "invalid JSON":
                return Probe(args(raw(d / "j.jsonl", good.read_bytes() + b'{"id": \n')), "file", absent=created)
            case "NUL byte":
                return Probe(args(raw(d / "n.jsonl", good.read_bytes() + b'{"id": "a\x00b"}\n')), "file",
                             absent=created)  # fmt: skip
            case "10 MB line":
                return bad(_cands(9, BIG))
            case "NULL text":
                return bad({**_cands(9), "source": None})
            case "lone surrogate":
                return bad(json.dumps(_cands(9, "半个表情")).replace("\\u8868\\u60c5", "\\ud83d"))
            case "duplicate ids":
                return Skip("candidates files are append-only: the last row of an id wins (docs/prefs.md)")
            case "unknown language":
                return bad({**_cands(9), "tgt": "xx"})
            case "missing database":
                return Skip("reads no store" if out_flag else "creates the store it imports into")
            case "two credentials" | "secret in a URL":
                if "prescore" in command:
                    judge = ["--judge-model", f"http://bob:{SECRET}@127.0.0.1:9/v1"]
                    if case == "secret in a URL":
                        judge += ["--judge-engine", "llamacpp"]
                    envs = {"OPENAI_API_KEY": KEY} if case == "two credentials" else {}
                    return Probe(args(good, *judge), "file", env=envs, absent=created)
                if case == "secret in a URL" and not out_flag:
                    url = f"postgresql://bob:{SECRET}@127.0.0.1:9/nope"
                    return Probe([*command, str(good), "--db", url], "file")
                return Skip("calls no engine")
            case "full disk":
                if not out_flag:
                    return Skip("writes into a store, not a file (a full database disk is the database's error)")
                disk = tmpfs(d)
                if disk is None:
                    return Skip("no tmpfs can be mounted here (needs root)")
                big = jsonl(d / "fill.jsonl", [{**_cands(i), "source": GOOD[0] * 40, "reference": "so good " * 100}
                                               for i in range(800)])  # fmt: skip
                return Probe([*command, str(big), out_flag, str(disk / "o.jsonl")], "env", disk=disk)
        return Skip("?")

    return build


# -- stores: prefs export --db, annotate report / serve -----------------------------------------------------------
def store_reader(command: list[str], serves: bool = False) -> Callable[[Path, str], Probe | Skip]:
    def build(d: Path, case: str) -> Probe | Skip:
        typo = d / "typo.db"
        extra = ["-o", str(d / "out.jsonl")] if command[:2] == ["prefs", "export"] else []
        extra += ["--port", str(free_port())] if serves else []
        match case:
            case "missing database":
                return Probe([*command, "--db", str(typo), *extra], "file", absent=[typo, d / "out.jsonl"],
                             timeout=20, serves=serves)  # fmt: skip
            case "secret in a URL":
                url = f"postgresql://bob:{SECRET}@127.0.0.1:9/nope"
                return Probe([*command, "--db", url, *extra], "file", timeout=30, serves=serves)
            case "unknown field" | "wrong type" if serves:
                cfg = d / "annotate.yaml"
                cfg.write_text("bogus: 1\n" if case == "unknown field" else "port: lots\n", encoding="utf-8")
                return Probe([*command, "-c", str(cfg), *extra], "file", timeout=20, serves=True)
            case "missing file" | "empty file" | "invalid UTF-8" if serves:
                cfg = d / "annotate.yaml"
                if case == "empty file":
                    raw(cfg, b"")
                elif case == "invalid UTF-8":
                    raw(cfg, b"db: caf\xe9.db\n")
                return Probe([*command, "-c", str(cfg if case != "missing file" else d / "nope.yaml"), *extra],
                             "file", timeout=20, serves=True)  # fmt: skip
        return Skip("reads only a store (its rows were checked when they went in)")

    return build


# -- bench ------------------------------------------------------------------------------------------------------
def bench(d: Path, case: str) -> Probe | Skip:
    out = d / "out"
    rows = [{"id": f"s{i}", "source": t, "reference": "ref", "src": "zh", "tgt": "en"} for i, t in enumerate(GOOD[:2])]
    good = jsonl(d / "suite.jsonl", rows)

    def args(path: Path, *extra: str) -> list[str]:
        return ["bench", "--suite", "jsonl", "--data", str(path), "--system", "name=s,engine=standin", "--out",
                str(out), *extra]  # fmt: skip

    def bad(row: Any) -> Probe:
        return Probe(args(jsonl(d / "bad.jsonl", [*rows, row])), "file", absent=[out])

    match case:
        case "unknown field":
            return Probe(args(good)[:-2] + ["--system", "name=s,engine=standin,bogus=1", "--out", str(out)], "file",
                         absent=[out])  # fmt: skip
        case "wrong type":
            return Probe(args(good, "--repeats", "lots"), "file", absent=[out])
        case "missing file":
            return Probe(args(d / "nope.jsonl"), "file", absent=[out])
        case "empty file":
            return Probe(args(raw(d / "e.jsonl", b"")), "file", absent=[out])
        case "invalid UTF-8":
            return Probe(args(raw(d / "u.jsonl", good.read_bytes() + b'{"source": "caf\xe9"}\n')), "file", absent=[out])
        case "invalid JSON":
            return Probe(args(raw(d / "j.jsonl", good.read_bytes() + b'{"source": \n')), "file", absent=[out])
        case "NUL byte":
            return Probe(args(raw(d / "n.jsonl", good.read_bytes() + b'{"source": "a\x00b"}\n')), "file", absent=[out])
        case "10 MB line":
            return bad({**rows[0], "id": "big", "source": BIG})
        case "NULL text":
            return bad({**rows[0], "id": "null", "source": None})
        case "lone surrogate":
            return bad(json.dumps({**rows[0], "id": "sur", "source": "半个"}).replace("\\u534a\\u4e2a", "\\ud83d"))
        case "duplicate ids":
            return bad({**rows[0], "source": "again"})
        case "unknown language":
            return bad({**rows[0], "id": "lang", "tgt": "xx"})
        case "missing database":
            return Skip("bench opens no store")
        case "two credentials":
            return Probe(args(good)[:-4] + ["--system", f"name=s,model=http://bob:{SECRET}@127.0.0.1:9/v1", "--out",
                                            str(out)], "file", env={"OPENAI_API_KEY": KEY}, absent=[out])  # fmt: skip
        case "secret in a URL":
            return Probe(args(good)[:-4] + ["--system", f"name=s,engine=llamacpp,model=http://bob:{SECRET}@h:9/v1",
                                            "--out", str(out)], "file", absent=[out])  # fmt: skip
        case "full disk":
            disk = tmpfs(d)
            if disk is None:
                return Skip("no tmpfs can be mounted here (needs root)")
            big = jsonl(d / "fill.jsonl", [{**rows[0], "id": f"f{i}", "source": f"{i}{GOOD[0] * 60}"}
                                           for i in range(150)])  # fmt: skip
            return Probe(["bench", "--suite", "jsonl", "--data", str(big), "--system", "name=s,engine=standin",
                          "--out", str(disk / "out")], "env", disk=disk)  # fmt: skip
    return Skip("?")


# -- configs only: recipe, serve, termbase ------------------------------------------------------------------------
def recipe(d: Path, case: str) -> Probe | Skip:
    cfg = d / "recipe.yaml"
    out = d / "runs"
    body = f"out: {out}\nstages: {{}}\n"
    match case:
        case "unknown field":
            cfg.write_text(body + "bogus: 1\n", encoding="utf-8")
        case "wrong type":
            cfg.write_text(f"out: {out}\nstages: lots\n", encoding="utf-8")
        case "missing file":
            cfg = d / "nope.yaml"
        case "empty file":
            raw(cfg, b"")
        case "invalid UTF-8":
            raw(cfg, f"out: {out}\n# caf".encode() + b"\xe9\n")
        case "invalid JSON" | "NUL byte":
            raw(cfg, f"out: {out}\nstages: {{".encode() + (b"\x00" if case == "NUL byte" else b"") + b"\n")
        case _:
            return Skip("a recipe's data are its stages' inputs (translate, sample, prefs, sft, repo, bench above)")
    return Probe(["recipe", "run", str(cfg), "--dry-run"], "file", absent=[out])


def serve(d: Path, case: str) -> Probe | Skip:
    port = str(free_port())
    cfg = d / "serve.yaml"
    base = ["serve", "--engine", "standin", "--port", port]
    match case:
        case "unknown field":
            cfg.write_text("bogus: 1\n", encoding="utf-8")
        case "wrong type":
            cfg.write_text("max_items: lots\n", encoding="utf-8")
        case "missing file":
            cfg = d / "nope.yaml"
        case "empty file":
            raw(cfg, b"")
            return Skip("an empty config is the defaults (documented), not an error")
        case "invalid UTF-8":
            raw(cfg, b"log_level: caf\xe9\n")
        case "invalid JSON" | "NUL byte":
            raw(cfg, b"max_items: [\n" if case == "invalid JSON" else b"max_items: 1\x00\n")
        case "two credentials":
            return Probe(["serve", "--model", f"http://bob:{SECRET}@127.0.0.1:9/v1", "--port", port], "file",
                         env={"OPENAI_API_KEY": KEY}, timeout=25, serves=True)  # fmt: skip
        case "secret in a URL":
            cfg.write_text(f"cache: mysql://root:{SECRET}@db/x\n", encoding="utf-8")
        case "missing database":
            return Skip("serve's cache store is created where it is missing (a cache, not data)")
        case _:
            return Skip("serve takes requests, not files: its per-request cases are tests/test_serve*.py's")
    return Probe([*base[:1], "-c", str(cfg), *base[1:]], "file", timeout=25, serves=True)


def termbase(d: Path, case: str) -> Probe | Skip:
    tb = d / "slang.yaml"
    entry = "lang: zh\nentries:\n  - {term: %s, meaning: amazing, translations: {en: [amazing]}}\n"
    match case:
        case "unknown field":
            tb.write_text(entry % "绝绝子" + "bogus: 1\n", encoding="utf-8")
        case "wrong type":
            tb.write_text("lang: zh\nentries: lots\n", encoding="utf-8")
        case "missing file":
            tb = d / "nope.yaml"
        case "empty file":
            raw(tb, b"")
        case "invalid UTF-8":
            raw(tb, (entry % "绝绝子").encode() + b"# caf\xe9\n")
        case "invalid JSON":
            tb = raw(d / "slang.jsonl", b'{"term": "x", \n')
        case "NUL byte":
            raw(tb, (entry % "绝\x00子").encode())
        case "NULL text":
            tb.write_text(entry % "null", encoding="utf-8")
        case "lone surrogate":
            tb.write_text(entry % '"\\ud83d"', encoding="utf-8")
        case "duplicate ids":
            tb.write_text(entry % "绝绝子" + "  - {term: 绝绝子, meaning: again, translations: {en: [great]}}\n",
                          encoding="utf-8")  # fmt: skip
        case "unknown language":
            tb.write_text((entry % "绝绝子").replace("lang: zh", "lang: xx"), encoding="utf-8")
        case _:
            return Skip("a term base is checked whole (a checker reports every problem as FILE:LINE, exit 2)")
    return Probe(["termbase", "check", str(tb)], "file")


# -- training: sft, repo (a tiny random model) --------------------------------------------------------------------
TINY: Path | None = None


def tiny_model() -> Path:
    global TINY
    if TINY is None:
        from redtrans.train.tiny import build_tiny_model

        TINY = build_tiny_model(TMP / "tiny")
    return TINY


def training(command: str) -> Callable[[Path, str], Probe | Skip]:
    def row(i: int, text: Any = None) -> Any:
        source = GOOD[i % 2] if text is None else text
        if command == "sft":
            return {"id": f"t{i}", "source": source, "target": "so good", "src": "zh", "tgt": "en"}
        prompt = [{"role": "user", "content": source}]
        return {"id": f"t{i}", "prompt": prompt, "chosen": [{"role": "assistant", "content": "so good"}],
                "rejected": [{"role": "assistant", "content": "so bad"}], "rewritten": False}  # fmt: skip

    def build(d: Path, case: str) -> Probe | Skip:
        out = d / "out"
        good = jsonl(d / "train.jsonl", [row(i) for i in range(4)])
        cfg = d / "train.yaml"

        def args(data: Path, *extra: str) -> list[str]:
            cfg.write_text(f"model_name_or_path: {tiny_model()}\ntrain_file: {data}\noutput_dir: {out}\nmax_steps: 1\n"
                           "eval_split: 0\n", encoding="utf-8")  # fmt: skip
            return [command, "-c", str(cfg), *extra]

        def bad(r: Any) -> Probe:
            return Probe(args(jsonl(d / "bad.jsonl", [*(row(i) for i in range(4)), r])), "file", absent=[out])

        match case:
            case "unknown field":
                return Probe(args(good, "--set", "bogus_field=1"), "file", absent=[out])
            case "wrong type":
                return Probe(args(good, "--set", "max_steps=lots"), "file", absent=[out])
            case "missing file":
                return Probe(args(d / "nope.jsonl"), "file", absent=[out])
            case "empty file":
                return Probe(args(raw(d / "e.jsonl", b"")), "file", absent=[out])
            case "invalid UTF-8":
                return Probe(args(raw(d / "u.jsonl", good.read_bytes() + b'{"source": "caf\xe9"}\n')), "file",
                             absent=[out])  # fmt: skip
            case "invalid JSON":
                return Probe(args(raw(d / "j.jsonl", good.read_bytes() + b'{"source": \n')), "file", absent=[out])
            case "NUL byte":
                return Probe(args(raw(d / "n.jsonl", good.read_bytes() + b'{"source": "a\x00b"}\n')), "file",
                             absent=[out])  # fmt: skip
            case "10 MB line":
                return bad(row(9, BIG))
            case "NULL text":
                return bad(row(9, None) | ({"source": None} if command == "sft" else
                                           {"prompt": [{"role": "user", "content": None}]}))  # fmt: skip
            case "lone surrogate":
                return bad(json.dumps(row(9, "半个")).replace("\\u534a\\u4e2a", "\\ud83d"))
            case "duplicate ids":
                return Skip("training rows need no unique id (the same pair twice is a weight, not an error)")
            case "unknown language":
                return bad({**row(9), "tgt": "xx"}) if command == "sft" else Skip("preference rows carry no language")
            case "full disk":
                disk = tmpfs(d, "96k")  # a tiny model's LoRA checkpoint fits in 1 MB
                if disk is None:
                    return Skip("no tmpfs can be mounted here (needs root)")
                cfg.write_text(f"model_name_or_path: {tiny_model()}\ntrain_file: {good}\noutput_dir: {disk / 'o'}\n"
                               "max_steps: 1\neval_split: 0\n", encoding="utf-8")  # fmt: skip
                return Probe([command, "-c", str(cfg)], "env", disk=disk)
        return Skip(f"{command} calls no engine and opens no store")

    return build


COMMANDS: dict[str, Builder] = {}  # filled below (name → builder)


def run_probe(probe: Probe) -> tuple[bool, str]:
    started = time.monotonic()
    proc = subprocess.Popen([*CMD, *probe.args], env=env(**probe.env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=TMP, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=probe.timeout)
        still_running = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        still_running = True
    seconds = time.monotonic() - started
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "━" not in ln]
    errors = [ln for ln in lines if ln.startswith("error:")]
    problems = []
    if still_running:
        problems.append("still running after the timeout" + (" (it started serving)" if probe.serves else ""))
    if "Traceback" in stderr or "Traceback" in stdout:
        problems.append("traceback")
    if SECRET in stdout + stderr or KEY in stdout + stderr:
        problems.append("secret echoed")
    want = {"file": 2, "row": 1, "env": 2}[probe.level]
    if not still_running and proc.returncode != want:
        problems.append(f"exit {proc.returncode}, want {want}")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error lines")
    if probe.level == "file" and len(lines) > 2:
        problems.append(f"{len(lines)} stderr lines (at most an error and a hint)")
    for path in probe.absent:
        if path.exists():
            problems.append(f"created {path.name}")
    if probe.level == "row" and probe.check is not None and not still_running:
        why = probe.check()
        if why:
            problems.append(why)
    if probe.level == "env":
        if errors and "no space left on device" not in errors[0]:
            problems.append("does not say no space left")
        if probe.disk is not None:
            temps = [p.name for p in probe.disk.rglob("*") if p.name.endswith((".tmp", ".part"))]
            if temps:
                problems.append(f"temp files left: {temps}")
    shown = (errors or lines or [""])[0][:150]
    verdict = "ok" if not problems else "MISS: " + "; ".join(problems)
    return not problems, f"{verdict} ({seconds:.1f}s) {shown}"


def main() -> int:
    COMMANDS.update({
        "translate": translate,
        "sample": sample,
        "prefs generate": prefs_generate,
        "prefs prescore": candidates_in(["prefs", "prescore", "-i"], "-o"),
        "prefs export": candidates_in(["prefs", "export", "--mode", "reference-rewrite", "-i"], "-o"),
        "prefs export --db": store_reader(["prefs", "export"]),
        "annotate import": candidates_in(["annotate", "import"], None),
        "annotate report": store_reader(["annotate", "report"]),
        "annotate serve": store_reader(["annotate", "serve"], serves=True),
        "bench": bench,
        "recipe": recipe,
        "serve": serve,
        "termbase": termbase,
        "sft": training("sft"),
        "repo": training("repo"),
    })  # fmt: skip
    only = set(sys.argv[1:])
    handled = total = 0
    skipped: list[str] = []
    misses: list[str] = []
    try:
        for name, build in COMMANDS.items():
            if only and name not in only and name.split()[0] not in only:
                continue
            print(f"[{name}]", flush=True)
            for case in CASES:
                d = TMP / name.replace(" ", "_").replace("-", "") / case.replace(" ", "_")
                d.mkdir(parents=True, exist_ok=True)
                try:
                    probe = build(d, case)
                    if isinstance(probe, Skip):
                        skipped.append(f"{name} × {case}: {probe.reason}")
                        continue
                    total += 1
                    ok, line = run_probe(probe)
                except Exception as exc:  # noqa: BLE001 - a probe that cannot even be built is a miss, reported
                    total += 1
                    ok, line = False, f"MISS: probe failed: {type(exc).__name__}: {exc}"
                finally:
                    if (d / "disk").is_mount():
                        subprocess.run(["umount", str(d / "disk")], capture_output=True)
                handled += ok
                if not ok:
                    misses.append(f"{name} × {case}")
                print(f"  {case:18} {line}", flush=True)
    finally:
        for disk in TMP.rglob("disk"):
            if disk.is_mount():
                subprocess.run(["umount", str(disk)], capture_output=True)
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"\nnot run ({len(skipped)} pairs, the command takes no such input):")
    for line in skipped:
        print(f"  {line}")
    if misses:
        print(f"\nmisses ({len(misses)}): {', '.join(misses)}")
    print(f"bad_inputs_handled: {handled}/{total} target: {total}/{total}")
    return 0 if handled == total else 1


if __name__ == "__main__":
    sys.exit(main())

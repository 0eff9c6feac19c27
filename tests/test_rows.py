"""Issue 32's row rules outside serve, driven as a user would (real subprocesses, real files, a real HTTP
upstream on loopback for the openai engine):

- resume keys: a changed row is redone and supersedes its line; other settings for every row are refused;
- the bad-input table: row-level problems (NULL/empty text, a lone surrogate, over the limits) fail that row
  with a reason and the others go on (exit 1), `--strict` refuses before any work (exit 2), a file-level
  problem is one line, exit 2, nothing created;
- the environment: a full disk (a real ENOSPC from /dev/full, and a file-size limit standing in for a disk that
  fills mid-run) is one line, exit 2, no temp file left, the rows written before it kept, and the run resumes;
- configuration: two credentials for one endpoint, a store that does not exist.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from redtrans.jsonl import read_jsonl
from redtrans.limits import MAX_TEXT_CHARS
from tests.stand_ins import Reply, StandInUpstream, completion

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, file_limit: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`redtrans ARGS` in a subprocess; `file_limit`: the largest file it may write (RLIMIT_FSIZE), in bytes."""

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [sys.executable, "-m", "redtrans", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": "", **(env or {})},
        preexec_fn=limit,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def translate(src: Path, out: Path, *extra: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run_cli("translate", "-i", str(src), "-o", str(out), "--engine", "standin", "--tgt", "en", *extra, **kw)  # type: ignore[arg-type]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")))


POSTS = [{"id": f"p{i}", "text": f"第{i}家店的奶茶绝绝子，姐妹们冲！"} for i in range(30)]


# -- resume keys ------------------------------------------------------------------------------------------
def test_a_changed_row_is_redone_and_other_settings_are_refused(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "in.jsonl", POSTS[:4])
    out = tmp_path / "out.jsonl"
    assert translate(src, out).returncode == 0
    first = {r["id"]: r for _, r in read_jsonl(out)}
    changed = [dict(p) for p in POSTS[:4]]
    changed[1]["text"] = "这家店的奶茶真的绝绝子"
    write_rows(src, changed)
    proc = translate(src, out)
    assert proc.returncode == 0, proc.stderr
    assert "translated 1 rows (3 already done, 1 changed since last run" in proc.stderr
    rows = [r for _, r in read_jsonl(out)]
    assert sorted(r["id"] for r in rows) == ["p0", "p1", "p2", "p3"]  # superseded, not added
    assert {r["id"]: r["text"] for r in rows}["p1"] == "这家店的奶茶真的绝绝子"
    assert all(r == first[r["id"]] for r in rows if r["id"] != "p1")
    # --tgt ja changes every row's settings: refused before any work, unless --overwrite
    refused = run_cli("translate", "-i", str(src), "-o", str(out), "--engine", "standin", "--tgt", "ja")
    one_line_error(refused, 2, "all 4 rows were made with other settings", "--overwrite")
    redo = run_cli("translate", "-i", str(src), "-o", str(out), "--engine", "standin", "--tgt", "ja", "--overwrite")
    assert redo.returncode == 0, redo.stderr
    assert {r["tgt"] for _, r in read_jsonl(out)} == {"ja"} and len(list(read_jsonl(out))) == 4


# -- the bad-input table: row level ---------------------------------------------------------------------------
def test_bad_rows_fail_with_their_reason_and_the_others_are_translated(tmp_path: Path) -> None:
    rows = [
        {"id": "ok", "text": "这家店绝绝子"},
        {"id": "null", "text": None},
        {"id": "blank", "text": "  "},
        {"id": "number", "text": 42},
        {"id": "long", "text": "长" * (MAX_TEXT_CHARS + 1)},
        {"id": "nul", "text": "半\x00个"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        + '{"id": "surrogate", "text": "表情\\ud83d"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    proc = translate(src, out)
    one_line_error(proc, 1, "6 of 7 rows failed", "6 on bad input (empty, invalid_text, too_long)")
    got = {r["id"]: r for _, r in read_jsonl(out)}
    assert got["ok"]["status"] == "ok"
    reasons = {k: (r["status"], r.get("reason")) for k, r in got.items() if k != "ok"}
    assert reasons == {
        "null": ("failed", "empty"),
        "blank": ("failed", "empty"),
        "number": ("failed", "invalid_text"),
        "long": ("failed", "too_long"),
        "nul": ("failed", "invalid_text"),
        "surrogate": ("failed", "invalid_text"),
    }
    assert "int" in got["number"]["error"] and "U+D83D" in got["surrogate"]["error"]
    assert got["surrogate"]["text"] == "表情\ufffd"  # written as valid UTF-8
    # The same bad rows are not retried (their input must change); --strict refuses them before any work.
    again = translate(src, out)
    assert again.returncode == 1 and "translated 0 rows (7 already done" in again.stderr
    strict_out = tmp_path / "strict.jsonl"
    one_line_error(
        translate(src, strict_out, "--strict"),
        2,
        ":2: field 'text' is missing or null",
        "(and 5 more: lines 3, 4, 5, 6, 7)",
    )
    assert not strict_out.exists()


def test_a_10_mb_line_is_a_too_long_row_never_sent_upstream(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "in.jsonl", [{"id": "big", "text": "好" * (10 << 20)}, {"id": "small", "text": "你好"}])
    out = tmp_path / "out.jsonl"
    with StandInUpstream(lambda i, body: Reply(body=completion(body, "hello"))) as upstream:
        proc = run_cli("translate", "-i", str(src), "-o", str(out), "--model", upstream.url, "--tgt", "en",
                       "--timeout", "5", "--max-retries", "0")  # fmt: skip
        sent = [b["messages"][-1]["content"] for b in upstream.bodies]
    one_line_error(proc, 1, "1 of 2 rows failed", "too_long")
    assert all(len(text) < 100 for text in sent) and len(sent) >= 1
    rows = {r["id"]: r for _, r in read_jsonl(out)}
    assert rows["big"]["reason"] == "too_long" and rows["small"]["status"] == "ok"


def test_null_text_in_parquet_is_a_failed_row_and_an_integer_column_says_its_type(tmp_path: Path) -> None:
    """Issue 33 item 5: one NULL no longer refuses the whole run; --strict keeps the refusal."""
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["你好", None]}), data)
    out = tmp_path / "out.jsonl"
    proc = translate(data, out)
    one_line_error(proc, 1, "1 of 2 rows failed", "empty")
    assert {r["id"]: r.get("reason") for _, r in read_jsonl(out)} == {"a": None, "b": "empty"}
    one_line_error(translate(data, tmp_path / "strict.jsonl", "--strict"), 2, "row 2", "missing or null")
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": [7]}), numbers)
    one_line_error(translate(numbers, tmp_path / "n.jsonl", "--strict"), 2, "holds int 7, not text")


# -- the bad-input table: file level ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "has no rows"),
        (b'{"body": "x"}\n', "no row has a field 'text'"),
        (b'{"id": "1", "text": "a"}\n{"id": "1", "text": "b"}\n', "duplicate id"),
        (b'{"id": "1", "text": "a", "tgt": "xx"}\n', "unknown language"),
        (b'{"id": "1", "text": "caf\xe9"}\n', "not UTF-8"),
        (b'{"id": "1", "text": "a"\x00}\n', "invalid JSON"),
    ],
)
def test_a_bad_file_is_one_line_and_creates_nothing(tmp_path: Path, content: bytes, needle: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    out = tmp_path / "out" / "out.jsonl"
    one_line_error(translate(src, out), 2, needle)
    assert not out.parent.exists()


def test_two_credentials_for_one_endpoint_are_refused_at_start(tmp_path: Path) -> None:
    proc = run_cli("translate", "你好", "--tgt", "en", "--model", "http://bob:hunter2@127.0.0.1:9/v1",
                   env={"OPENAI_API_KEY": "sk-test-secret"})  # fmt: skip
    one_line_error(proc, 2, "two credentials", "$OPENAI_API_KEY", "user:password")
    assert "hunter2" not in proc.stderr and "sk-test-secret" not in proc.stderr


def test_a_store_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    out = tmp_path / "prefs.jsonl"
    one_line_error(run_cli("prefs", "export", "--db", str(typo), "-o", str(out)), 2, "no annotation store")
    one_line_error(run_cli("annotate", "report", "--db", str(typo)), 2, "no annotation store")
    assert not typo.exists() and not out.exists()


# -- the environment: a full disk ------------------------------------------------------------------------------
def test_no_space_left_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC itself (simulated: the kernel's own is in benchmarks/faults.py, on a 1 MB tmpfs) reaches the CLI's
    boundary as one line naming the file, exit 2, whichever write meets it."""
    from typer.testing import CliRunner

    from redtrans.cli import app

    def full(self: object, row: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr("redtrans.jsonl.JSONLWriter.write", full)
    src = write_rows(tmp_path / "in.jsonl", POSTS[:3])
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["translate", "-i", str(src), "-o", str(out), "--engine", "standin", "--tgt", "en"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no space left on device" in lines[0] and "re-run the same command" in lines[0]
    assert temp_files(tmp_path) == []


def test_a_disk_filling_mid_run_keeps_the_rows_written_and_the_run_resumes(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "in.jsonl", POSTS)
    out = tmp_path / "out.jsonl"
    one_line_error(translate(src, out, file_limit=4000), 2, "file too large", "re-run the same command")
    assert 0 < out.read_bytes().count(b"\n") < len(POSTS)  # the rows written before it are kept (the torn one not)
    assert temp_files(tmp_path) == []
    resumed = translate(src, out)
    assert resumed.returncode == 0, resumed.stderr
    ids = [r["id"] for _, r in read_jsonl(out)]
    assert sorted(ids) == sorted(p["id"] for p in POSTS) and len(ids) == len(set(ids))


def test_a_full_disk_at_the_parquet_conversion_leaves_no_temp_file(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "in.jsonl", POSTS[:20])
    out = tmp_path / "out.parquet"
    assert translate(src, out).returncode == 0
    journal = (tmp_path / "out.parquet.journal.jsonl").read_bytes()
    out.unlink()
    # Every row is journaled already: the run only converts, and the Parquet file (about 5 KB) is cut off.
    one_line_error(translate(src, out, file_limit=2000), 2, "file too large")
    assert temp_files(tmp_path) == [] and not out.exists()
    assert (tmp_path / "out.parquet.journal.jsonl").read_bytes() == journal
    assert translate(src, out).returncode == 0
    assert len(pq.read_table(out)) == 20


def test_a_full_disk_in_sample_and_prefs_export(tmp_path: Path) -> None:
    corpus = write_rows(tmp_path / "corpus.jsonl", [{"text": p["text"]} for p in POSTS])
    run = tmp_path / "run"
    args = ("sample", "-i", str(corpus), "--src", "zh", "--tgt", "en", "-o", str(run), "--set", "m1.kind=standin",
            "--set", "m2.kind=standin", "--set", "m2.options={salt: 2}", "--set", "score_workers=1")  # fmt: skip
    one_line_error(run_cli(*args, file_limit=6000), 2, "re-run the same command")
    assert temp_files(tmp_path) == []
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    lines = [r["line"] for _, r in read_jsonl(run / "journal.jsonl")]
    assert sorted(lines) == list(range(1, 31))
    cands = write_rows(tmp_path / "cands.jsonl", [
        {"id": f"c{i}", "source": "你好" * 50, "src": "zh", "tgt": "en", "reference": "hello " * 50, "status": "ok",
         "candidates": [{"text": "hi " * 40, "system": "a"}, {"text": "hello " * 45, "system": "b"}]}
        for i in range(40)
    ])  # fmt: skip
    export_out = tmp_path / "prefs" / "pairs.jsonl"
    export_out.parent.mkdir()
    proc = run_cli("prefs", "export", "--mode", "reference-rewrite", "-i", str(cands), "-o", str(export_out),
                   file_limit=5000)  # fmt: skip
    one_line_error(proc, 2, "file too large")
    assert temp_files(tmp_path) == [] and not export_out.exists()

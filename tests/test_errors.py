"""The CLI's one error boundary and the row rules, driven as a user would: real subprocesses, a real HTTP
upstream on loopback (the only stand-in is for an upstream that misbehaves on purpose), real files.

- Bad input exits 2 with one line and no traceback.
- A row is done only when it succeeded: failed rows are written `status: failed`, the command exits 1 with
  the count, and a re-run retries them (up to MAX_ATTEMPTS in all).
- One writer per output file; a torn last line of any length is dropped on resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from redtrans.jsonl import MAX_ATTEMPTS, JSONLWriter, done_ids, read_jsonl

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "redtrans", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": ""},
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


class Upstream:
    """An OpenAI-compatible chat endpoint on loopback whose answer the test sets: `mode` = "ok" (a
    translation that keeps the direction visible), "no_choices" (HTTP 200 without `choices`), "error" (500:
    the upstream is down, a transient error) or "bad_request" (400: a permanent one)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.calls += 1
                if upstream.mode == "error":
                    payload, status = {"error": {"message": "upstream is down"}}, 500
                elif upstream.mode == "bad_request":
                    payload, status = {"error": {"message": "maximum context length exceeded"}}, 400
                elif upstream.mode == "no_choices":
                    payload, status = {"id": "x", "object": "chat.completion"}, 200
                else:
                    to_zh = "to Chinese" in body["messages"][0]["content"]
                    text = "好吃到哭" if to_zh else "so good I could cry"
                    payload = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}
                    status = 200
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# -- bad input: one line, exit 2, no traceback ---------------------------------------------------------------
def test_invalid_utf8_in_a_jsonl_input_names_the_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "caf\xe9"}\n')
    proc = run_cli("translate", "-i", str(src), "-o", str(tmp_path / "out.jsonl"), "--tgt", "zh")
    assert_one_line_error(proc, 2, f"{src}:2:", "not UTF-8")


def test_invalid_utf8_on_stdin() -> None:
    proc = run_cli("translate", "--tgt", "en", stdin=b"\xff\xfe bad bytes")
    assert_one_line_error(proc, 2, "stdin is not UTF-8")


def test_upstream_answer_without_choices(upstream: Upstream) -> None:
    upstream.mode = "no_choices"
    proc = run_cli("translate", "你好", "--src", "zh", "--tgt", "en", "--model", upstream.url)
    assert_one_line_error(proc, 2, "choices")


def test_served_model_without_an_endpoint() -> None:
    proc = run_cli("translate", "你好", "--tgt", "en", "--served-model", "my-sft")
    assert_one_line_error(proc, 2, "served")


def test_output_pointing_at_a_folder_of_other_files(tmp_path: Path) -> None:
    """A folder output is a sharded Parquet dataset (tests/test_datafiles.py); one holding other files is refused."""
    src = write_rows(tmp_path / "in.jsonl", [{"id": "1", "text": "你好"}])
    proc = run_cli("translate", "-i", str(src), "-o", str(tmp_path), "--tgt", "en")
    assert_one_line_error(proc, 2, "folder with other files")


def test_a_csv_given_as_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "posts.jsonl"  # a .csv is read as CSV (tests/test_datafiles.py); CSV text named .jsonl is not
    src.write_text("id,text\n1,你好\n", encoding="utf-8")
    proc = run_cli("translate", "-i", str(src), "-o", str(tmp_path / "out.jsonl"), "--tgt", "en")
    assert_one_line_error(proc, 2, f"{src}:1:", "CSV")


def test_an_unknown_engine_option_fails_before_any_model_loads() -> None:
    proc = run_cli("translate", "你好", "--tgt", "en", "--engine", "standin", "--served-model", "x")
    assert_one_line_error(proc, 2)


# -- default target: the same rule in text and file mode -----------------------------------------------------
def test_english_rows_without_tgt_come_out_in_chinese(tmp_path: Path, upstream: Upstream) -> None:
    src = write_rows(
        tmp_path / "in.jsonl",
        [{"id": "1", "text": "this is so good omg"}, {"id": "2", "text": "这家店绝绝子"}],
    )
    out = tmp_path / "out.jsonl"
    proc = run_cli("translate", "-i", str(src), "-o", str(out), "--model", upstream.url)
    assert proc.returncode == 0, proc.stderr
    rows = {row["id"]: row for _, row in read_jsonl(out)}
    assert (rows["1"]["src"], rows["1"]["tgt"], rows["1"]["translation"]) == ("en", "zh", "好吃到哭")
    assert (rows["2"]["src"], rows["2"]["tgt"], rows["2"]["translation"]) == ("zh", "en", "so good I could cry")
    text_mode = run_cli("translate", "this is so good omg", "--model", upstream.url)
    assert text_mode.stdout.strip() == "好吃到哭"


# -- a row is done only when it succeeded -------------------------------------------------------------------
def test_failed_rows_are_not_done_and_a_rerun_retries_them(tmp_path: Path, upstream: Upstream) -> None:
    src = write_rows(tmp_path / "in.jsonl", [{"id": str(i), "text": f"第{i}条很好吃"} for i in range(5)])
    out = tmp_path / "out.jsonl"
    args = ("translate", "-i", str(src), "-o", str(out), "--tgt", "en", "--model", upstream.url, "--max-retries", "0")
    upstream.mode = "error"
    first = run_cli(*args)
    assert first.returncode == 1, first.stderr
    assert "5 of 5 rows failed" in first.stderr
    rows = [row for _, row in read_jsonl(out)]
    assert [r["status"] for r in rows] == ["failed"] * 5 and all(r["error"] for r in rows)

    upstream.mode = "ok"
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    rows = [row for _, row in read_jsonl(out)]
    assert len(rows) == 5 and {r["status"] for r in rows} == {"ok"}
    assert {r["translation"] for r in rows} == {"so good I could cry"}


def test_a_row_failed_max_attempts_times_stays_failed(tmp_path: Path, upstream: Upstream) -> None:
    """A permanent error (HTTP 400, a context overflow) counts against the cap; --retry-failed resets it."""
    src = write_rows(tmp_path / "in.jsonl", [{"id": "a", "text": "太好吃了"}])
    out = tmp_path / "out.jsonl"
    args = ("translate", "-i", str(src), "-o", str(out), "--tgt", "en", "--model", upstream.url)
    upstream.mode = "bad_request"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        proc = run_cli(*args)
        assert proc.returncode == 1
        (row,) = [row for _, row in read_jsonl(out)]
        assert (row["attempts"], row["reason"]) == (attempt, "engine_error")
    assert "--retry-failed" in proc.stderr
    calls = upstream.calls
    upstream.mode = "ok"
    proc = run_cli(*args)
    assert proc.returncode == 1 and "1 of 1 rows failed" in proc.stderr  # reported, not retried
    assert f"1 after {MAX_ATTEMPTS} attempts" in proc.stderr and upstream.calls == calls
    proc = run_cli(*args, "--retry-failed")
    assert proc.returncode == 0, proc.stderr
    (row,) = [row for _, row in read_jsonl(out)]
    assert row["status"] == "ok" and upstream.calls > calls


def test_an_outage_does_not_burn_the_attempt_cap(tmp_path: Path, upstream: Upstream) -> None:
    """Transient errors (5xx here) never count: after more failed runs than the cap, the upstream recovers and
    the next run translates every row."""
    src = write_rows(tmp_path / "in.jsonl", [{"id": str(i), "text": f"第{i}杯奶茶太好喝了"} for i in range(3)])
    out = tmp_path / "out.jsonl"
    args = ("translate", "-i", str(src), "-o", str(out), "--tgt", "en", "--model", upstream.url, "--max-retries", "0")
    upstream.mode = "error"
    for _ in range(MAX_ATTEMPTS + 1):
        proc = run_cli(*args)
        assert proc.returncode == 1, proc.stderr
        assert "3 on an unavailable engine" in proc.stderr and "do not count against the attempt cap" in proc.stderr
    rows = [row for _, row in read_jsonl(out)]
    assert {(r["reason"], r["attempts"]) for r in rows} == {("engine_unavailable", 0)}
    upstream.mode = "ok"
    calls = upstream.calls
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert upstream.calls - calls == 3
    assert {r["status"] for _, r in read_jsonl(out)} == {"ok"}


# -- one writer per output; torn lines of any length ----------------------------------------------------------
def test_a_second_writer_of_the_same_output_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with JSONLWriter(out) as writer:
        writer.write({"id": "1"})
        src = write_rows(tmp_path / "in.jsonl", [{"id": "2", "text": "你好"}])
        proc = run_cli("translate", "-i", str(src), "-o", str(out), "--tgt", "en", "--engine", "standin")
        assert_one_line_error(proc, 2, "another process")
    assert done_ids(out) == {"1"}


def test_a_torn_last_line_over_one_mib_is_dropped_on_the_first_resume(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "1"}\n{"id": "2", "translation": "' + "x" * (3 << 20), encoding="utf-8")
    assert done_ids(out) == {"1"}
    assert out.read_text(encoding="utf-8") == '{"id": "1"}\n'
    out.write_text('{"id": "1"}\n{"id": "2", "t": "' + "y" * (2 << 20) + "\n", encoding="utf-8")  # newline, bad JSON
    assert done_ids(out) == {"1"}


# -- one meaning of --parallel for every engine ----------------------------------------------------------------
def test_translate_with_the_hf_engine_and_parallel_2(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from redtrans.train.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    src = write_rows(tmp_path / "in.jsonl", [{"id": str(i), "text": f"{i}只猫"} for i in range(3)])
    out = tmp_path / "out.jsonl"
    proc = run_cli("translate", "-i", str(src), "-o", str(out), "--tgt", "en", "--engine", "hf",
                   "--model", str(model), "--parallel", "2", timeout=300)  # fmt: skip
    # A random-weight model may answer nothing usable (exit 1, rows failed); what must not happen is the old
    # refusal of `n_parallel` by the hf engine's config, or any traceback.
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    rows = [row for _, row in read_jsonl(out)]
    assert sorted(r["id"] for r in rows) == ["0", "1", "2"]
    assert {r["model"] for r in rows} == {str(model)}

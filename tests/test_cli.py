"""`redtrans translate` end to end: a text argument, stdin, JSONL files, resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redtrans", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# -- bad input: rejected before any model is loaded ----------------------------------------------------------
def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "你好"}\n{"id": 2, "text": "x"\n', encoding="utf-8")
    proc = run_cli("translate", "--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--tgt", "en")
    assert proc.returncode == 2
    assert f"{src}:2: invalid JSON" in proc.stderr


def test_empty_text_unknown_language_and_duplicates_are_reported_with_lines(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": "你好"},
        {"id": "b", "text": "   "},
        {"id": "c", "text": "hi", "tgt": "klingon"},
        {"id": "a", "text": "again"},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    proc = run_cli("translate", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--tgt", "en")
    assert proc.returncode == 2
    assert f"{src}:3: unknown language 'klingon'" in proc.stderr and "(and 1 more: lines 4)" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
    strict = run_cli("translate", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--tgt", "en", "--strict")
    assert f"{src}:2: field 'text' is empty (and 2 more: lines 3, 4)" in strict.stderr


def test_argument_errors() -> None:
    assert "unknown language 'xx'" in run_cli("translate", "hi", "--tgt", "xx").stderr
    assert "empty" in run_cli("translate", "   ").stderr
    proc = run_cli("translate", "--input", "missing.jsonl", "--output", "o.jsonl")
    assert proc.returncode == 2 and "input file not found" in proc.stderr
    assert "needs --output" in run_cli("translate", "--input", "x.jsonl").stderr


# -- the real model -----------------------------------------------------------------------------------------
@pytest.mark.model
def test_text_argument_and_stdin(gguf_path) -> None:
    model = str(gguf_path("qwen2.5-coder-0.5b"))
    proc = run_cli("translate", "今天天气真好☀️", "--src", "zh", "--tgt", "en", "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert "☀️" in proc.stdout and proc.stdout.strip().isascii() is False  # emoji kept
    proc = run_cli("translate", "--model", model, stdin="Good morning everyone 🌞\nHave a nice day")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.rstrip("\n").split("\n")
    assert len(lines) == 2 and "🌞" in lines[0]  # detected en → default target zh, lines kept


@pytest.mark.model
def test_file_translation_resumes_after_a_kill(tmp_path: Path, gguf_path) -> None:
    model = str(gguf_path("qwen2.5-coder-0.5b"))
    posts = ["今天吃了火锅🔥", "周末去爬山", "这个好可爱", "我太难了", "求推荐好看的剧", "明天见👋"]
    rows = [{"post_id": f"p{i}", "body": posts[i % len(posts)] + f" {i}"} for i in range(16)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    args = ["translate", "--input", str(src), "--output", str(out), "--text-field", "body", "--id-field", "post_id",
            "--src", "zh", "--tgt", "en", "--model", model, "--parallel", "1"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "redtrans", *args], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or out.read_text(encoding="utf-8").count("\n") < 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert 4 <= len(partial) < 16
    with out.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "p99", "transl')  # a torn last line, as a kill mid-write leaves it
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"{len(partial)} already done" in done.stderr
    final = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in final] == [f"p{i}" for i in range(16)]  # each once, in order, torn line dropped
    assert final[: len(partial)] == partial  # what was written before the kill is untouched
    assert all(r["translation"] and r["src"] == "zh" and r["tgt"] == "en" for r in final)
    assert "🔥" in final[0]["translation"]

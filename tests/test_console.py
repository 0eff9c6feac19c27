"""Progress off a terminal (nohup, CI logs): a line at a fixed interval with rows, rate and ETA, and rates that
count from the first row done, not from when the bar appeared (model loading made one row read "0.18 rows/s")."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from redtrans.console import progress_bar, progress_line, rate
from tests.stand_ins import Reply, StandInUpstream, completion

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_counts_from_the_first_row_and_excludes_resumed_ones() -> None:
    clock = Clock()
    bar = progress_bar("rows")
    bar.get_time = clock  # type: ignore[method-assign]
    task_id = bar.add_task("translate", total=100, completed=10)
    bar.update(task_id, start=10)  # 10 rows done by an earlier run
    task = bar.tasks[task_id]
    clock.now += 60  # loading the model
    bar.update(task_id, completed=11)
    assert rate(task) is None and "– rows/s" in progress_line(task, "rows")  # one row: no rate yet
    clock.now += 2
    bar.update(task_id, completed=15)
    assert rate(task) == 2.0  # 4 rows in the 2 s since the first, not 5 in 62 s
    line = progress_line(task, "rows")
    assert line.startswith("translate: 15/100 rows (15%), 2.00 rows/s, eta 42s"), line


def test_off_a_terminal_lines_come_at_the_interval_and_at_the_end() -> None:
    out = io.StringIO()
    bar = progress_bar("rows", interval=0.1, console=Console(file=out))  # a file, not a terminal
    with bar:
        task = bar.add_task("translate", total=5)
        for _ in range(5):
            time.sleep(0.08)
            bar.advance(task)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3, lines  # a few at the interval, one at the end
    assert all(line.startswith("translate: ") for line in lines)
    assert lines[-1].startswith("translate: 5/5 rows (100%), ") and "rows/s" in lines[-1] and "eta" not in lines[-1]


def test_translate_under_nohup_logs_progress_lines(tmp_path: Path) -> None:
    """stderr to a file, as `nohup redtrans translate … 2> log` has it: lines every interval, not silence."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(f'{{"id": {i}, "text": "第{i}条：今天好开心"}}\n' for i in range(8)), encoding="utf-8")

    def slow(index: int, body: dict[str, Any]) -> Reply:
        return Reply(body=completion(body, "a happy day"), delay=0.15)

    with StandInUpstream(slow) as upstream, (tmp_path / "log").open("w") as log:
        env = {**os.environ, "REDTRANS_PROGRESS_INTERVAL": "0.3", "OPENAI_API_KEY": ""}
        proc = subprocess.run(
            [sys.executable, "-m", "redtrans", "translate", "-i", str(posts), "-o", str(tmp_path / "out.jsonl"),
             "--src", "zh", "--tgt", "en", "--model", upstream.url, "--parallel", "1"],
            stderr=log, stdout=subprocess.PIPE, timeout=300, env=env, cwd=ROOT,
        )  # fmt: skip
    lines = [line for line in (tmp_path / "log").read_text().splitlines() if line.startswith("translate: ")]
    assert proc.returncode == 0, (tmp_path / "log").read_text()
    assert len(lines) >= 2 and lines[-1].startswith("translate: 8/8 rows (100%)"), lines

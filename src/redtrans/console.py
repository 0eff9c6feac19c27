"""Progress and summaries on stderr (rich), shared by the CLI's long-running commands.

On a terminal, `progress_bar` is rich's live bar. Anywhere else (a log file, ``nohup``, CI) a live bar prints
nothing until it ends, so it logs one plain line per task every `progress_interval()` seconds (30 by default,
``REDTRANS_PROGRESS_INTERVAL`` to change) and once more when it stops: ``translate: 1200/5000 rows (24%),
3.10 rows/s, eta 20m26s, elapsed 6m27s``.

Rates and ETAs count from the first item done, not from when the bar appeared: the time before it is model
loading and warm-up, which made one row read as "0.18 rows/s". Until a second item is done there is no rate
("–"). Items done before the bar started (a resumed run's, passed as the task's ``start`` field) are excluded.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

err_console = Console(stderr=True)

DEFAULT_INTERVAL_S = 30.0


def progress_interval() -> float:
    """Seconds between progress lines when stderr is not a terminal (``REDTRANS_PROGRESS_INTERVAL``)."""
    try:
        return max(0.05, float(os.environ.get("REDTRANS_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def rate(task: Task) -> float | None:
    """Items per second since the task's first item was done (None before a second one)."""
    first_at, first_done = task.fields.get("first_at"), task.fields.get("first_done")
    if first_at is None or first_done is None or task.completed <= first_done:
        return None
    if task.finished_time is not None and task.start_time is not None:
        end = task.start_time + task.finished_time  # a finished task's rate stays what it was at the end
    else:
        end = task.get_time()
    elapsed = end - first_at
    return (task.completed - first_done) / elapsed if elapsed > 0 else None


def eta(task: Task) -> float | None:
    """Seconds left at `rate`, None when the total or the rate is unknown."""
    speed = rate(task)
    if speed is None or task.total is None:
        return None
    return max(0.0, task.total - task.completed) / speed


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class RateColumn(ProgressColumn):
    """Items per second from the first item done."""

    def __init__(self, unit: str = "it") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = rate(task)
        return Text("–" if speed is None else f"{speed:.2f} {self.unit}/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at the rate from the first item done."""

    def render(self, task: Task) -> Text:
        return Text(f"eta {_duration(eta(task))}", style="progress.remaining")


def progress_line(task: Task, unit: str) -> str:
    """One plain line: ``translate: 1200/5000 rows (24%), 3.10 rows/s, eta 20m26s, elapsed 6m27s``."""
    done = f"{task.completed:.0f}" + (f"/{task.total:.0f}" if task.total is not None else "")
    share = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
    speed = rate(task)
    parts = [f"{task.description}: {done} {unit}{share}", f"{'–' if speed is None else f'{speed:.2f}'} {unit}/s"]
    if task.total is not None and not task.finished:
        parts.append(f"eta {_duration(eta(task))}")
    parts.append(f"elapsed {_duration(task.elapsed)}")
    return ", ".join(parts)


class StageProgress(Progress):
    """rich's `Progress` that counts rates from the first item done and, off a terminal, logs lines instead of
    drawing a bar (see the module docstring)."""

    def __init__(self, unit: str, *columns: Any, console: Console, interval: float | None = None, **kwargs: Any):
        self.unit = unit
        self.logs = not console.is_terminal
        super().__init__(*columns, console=console, disable=self.logs, **kwargs)
        self.interval = progress_interval() if interval is None else interval
        self._stop_logging = threading.Event()
        self._logger: threading.Thread | None = None

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._mark_first(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._mark_first(task_id)

    def _mark_first(self, task_id: TaskID) -> None:
        """Start the rate's clock when the first item (past the resumed ones) is done."""
        with self._lock:
            task = self._tasks[task_id]
            if "first_at" not in task.fields and task.completed > task.fields.get("start", 0):
                task.fields["first_at"] = self.get_time()
                task.fields["first_done"] = task.completed

    def log_lines(self) -> None:
        """Print one progress line per visible task (what a log gets every interval)."""
        for task in self.tasks:
            if task.visible:
                self.console.print(progress_line(task, self.unit), highlight=False, soft_wrap=True)

    def _log_every_interval(self) -> None:
        while not self._stop_logging.wait(self.interval):
            self.log_lines()

    def start(self) -> None:
        super().start()
        if self.logs and self._logger is None:
            self._stop_logging.clear()
            self._logger = threading.Thread(target=self._log_every_interval, name="progress-log", daemon=True)
            self._logger.start()

    def stop(self) -> None:
        if self._logger is not None:
            self._stop_logging.set()
            self._logger.join()
            self._logger = None
            self.log_lines()  # where it ended, always: a short run logs one line
        super().stop()


def progress_bar(unit: str = "it", interval: float | None = None, console: Console | None = None) -> StageProgress:
    """A bar on stderr counting `unit` (lines every `interval` s off a terminal; default `progress_interval()`)."""
    return StageProgress(
        unit,
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        EtaColumn(),
        console=console or err_console,
        transient=False,
        interval=interval,
    )

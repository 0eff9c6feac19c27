"""Trainer callbacks of `redtrans sft`."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from redtrans.errors import storage_error_of
from redtrans.jsonl import JSONLWriter

__all__ = ["JSONLLogCallback", "full_disk_stops_cleanly"]


@contextlib.contextmanager
def full_disk_stops_cleanly(output_dir: str | Path) -> Iterator[None]:
    """A training run that meets a full disk (a checkpoint or model cut off) ends as a StorageError (one line,
    exit 2) with the half-written checkpoint removed; the finished checkpoints stay, and the same command resumes
    from the last of them once there is space (`last_checkpoint` takes only complete ones)."""
    try:
        yield
    except Exception as exc:
        storage = storage_error_of(exc, output_dir)
        if storage is None:
            raise
        for partial in Path(output_dir).glob("checkpoint-*"):
            if partial.is_dir() and not (partial / "trainer_state.json").is_file():
                shutil.rmtree(partial, ignore_errors=True)
        sys.stderr.write("\n")  # the trainer's progress bar is left mid-line: the error gets a line of its own
        raise storage from None


class JSONLLogCallback(TrainerCallback):
    """Appends every log and evaluation record to `output_dir/logs.jsonl` (main process only), each step once
    across resumes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: JSONLWriter | None = None

    def _write(self, state: Any, kind: str, values: dict[str, Any]) -> None:
        if not state.is_world_process_zero:
            return
        if self._writer is None:
            self._writer = JSONLWriter(self.path, fsync_every=1)
        row = {"time": round(time.time(), 3), "kind": kind, "step": state.global_step, "epoch": state.epoch}
        row.update({k: v for k, v in values.items() if isinstance(v, int | float | str | bool | None)})
        self._writer.write(row)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Open the log. A run resumed from a checkpoint at step N redoes every step after N: the records a killed
        run wrote for those steps are taken out (temp file + rename), so each step is logged once."""
        if not state.is_world_process_zero or self._writer is not None:
            return
        resumed_at = int(state.global_step or 0)
        self._writer = JSONLWriter(
            self.path, fsync_every=1, drop=lambda row: isinstance(row.get("step"), int) and row["step"] > resumed_at
        )

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        logs = logs or {}
        self._write(state, "eval" if any(k.startswith("eval_") for k in logs) else "log", logs)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

"""Stage manifests: what a stage ran with (input checksums, config, PROMPT_VERSION, package versions, time) and
how it ended. A stage whose manifest says `done` for the same fingerprint is skipped.

Checksums are sha256 of a file, or of a folder's files (path and content) leaving out what training writes
beside the model and what does not change the model: `checkpoint-*`, logs, TensorBoard events, manifests,
`eval_results.json` (timings), `training_args.bin`. They are cached by (path, size, mtime) in
OUT/.recipe/checksums.json so unchanged multi-GB weights are hashed once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from redtrans.prompts import PROMPT_VERSION

__all__ = ["PACKAGES", "Checksums", "fingerprint", "package_versions", "read_manifest", "write_manifest"]

PACKAGES = ("redtrans", "torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "sacrebleu", "datasets")
SKIP_NAMES = {"logs.jsonl", "manifest.json", "eval_results.json", "training_args.bin", "README.md"}
SKIP_DIRS = {"tensorboard", "runs", "__pycache__"}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a stage's result depends on (None = not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    if out.get("redtrans") is None:
        from redtrans import __version__

        out["redtrans"] = __version__
    return out


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Checksums:
    """sha256 of files and folders, cached by (size, mtime_ns) in a JSON file."""

    def __init__(self, cache_path: Path | None = None) -> None:
        self.cache_path = cache_path
        self.cache: dict[str, list[Any]] = {}
        if cache_path is not None and cache_path.is_file():
            try:
                self.cache = json.loads(cache_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.cache = {}

    def save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_name(self.cache_path.name + ".tmp")
        tmp.write_text(json.dumps(self.cache), encoding="utf-8")
        os.replace(tmp, self.cache_path)

    def file(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        cached = self.cache.get(key)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return str(cached[2])
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        self.cache[key] = [st.st_size, st.st_mtime_ns, digest.hexdigest()]
        return digest.hexdigest()

    def of(self, path: str | Path) -> str | None:
        """sha256 of a file or folder; None when it does not exist."""
        p = Path(path)
        if p.is_file():
            return self.file(p)
        if not p.is_dir():
            return None
        digest = hashlib.sha256()
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("checkpoint-"))
            for name in sorted(files):
                if name in SKIP_NAMES or name.endswith((".lock", ".tmp")):
                    continue
                f = Path(root) / name
                digest.update(f"{f.relative_to(p).as_posix()}\0{self.file(f)}\n".encode())
        return digest.hexdigest()


def fingerprint(config: Any, inputs: dict[str, str | None]) -> str:
    """What decides whether a stage must run again: its config, its inputs' checksums and PROMPT_VERSION."""
    blob = json.dumps({"config": config, "inputs": inputs, "prompt_version": PROMPT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(stage_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomically (a kill leaves the old or the new manifest, never half of one)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    tmp = stage_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, stage_dir / "manifest.json")

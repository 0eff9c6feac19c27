"""Packaging: `redtrans --version`, -h on every command, one meaning per short flag, --help whole when piped; a
wheel built from the repo (with its LICENSE) installed in a fresh venv runs `redtrans --version` / `redtrans sft
--help` and finds its accelerate configs; the core install alone is ≤ 300 MB, translates CSV through an
OpenAI-compatible endpoint, and names the extra to install in one line wherever one is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from redtrans.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAME_MEANING = {"--output-dir": "--output"}  # -o: where results go, a file or a folder by command


def _commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return found


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"redtrans {version('redtrans')}"
    assert CliRunner().invoke(app, ["-V"]).output == result.output


def test_dash_h_on_every_command_keeps_every_word_when_piped() -> None:
    """-h works everywhere; help piped to a file used to be cut at 80 columns ("qwen2.5-coder-1.…"): every word
    of every option's help is there whole now (CliRunner's stdout is not a terminal, as a pipe is not)."""
    commands = _commands()
    assert len(commands) > 15
    cut = []
    for path, cmd in commands:
        result = CliRunner().invoke(app, [*path, "-h"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output, path
        for param in getattr(cmd, "params", []):
            words = (getattr(param, "help", None) or "").split()
            cut += [(path, param.name, word) for word in words if word not in result.output]
    assert cut == []


def test_one_meaning_per_short_flag() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)
    for path, cmd in _commands():
        for param in getattr(cmd, "params", []):
            opts = [o for o in getattr(param, "opts", []) if o.startswith("-")]
            longs = [SAME_MEANING.get(o, o) for o in opts if o.startswith("--")]
            for short in (o for o in opts if not o.startswith("--")):
                meanings[short].update(longs or [f"{' '.join(path)}:{param.name}"])
    clashes = {short: sorted(longs) for short, longs in meanings.items() if len(longs) > 1 and short != "-h"}
    assert clashes == {}
    assert meanings["-s"] == {"--set"} and meanings["-S"] == {"--system"}


def test_engine_help_names_every_engine() -> None:
    translate_help = CliRunner().invoke(app, ["translate", "--help"]).output
    assert "llamacpp | openai | hf | standin" in translate_help and "qwen2.5-coder-1.5b," in translate_help


def test_the_cli_starts_without_any_extra_module() -> None:
    heavy = ["xllamacpp", "pydantic_settings", "transformers", "torch", "datasets", "pyarrow", "pandas", "fastapi"]
    code = f"import sys, redtrans.cli; print([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def test_a_missing_module_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping (the real missing modules are in the core-install test below): this venv has every extra, so
    the extras' modules are made to look absent."""
    import importlib.util

    from redtrans.errors import EXTRAS, MissingExtraError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in EXTRAS else find_spec(name, *a))

    def missing(name: str, command: str | None = None) -> str | None:
        found = MissingExtraError.of(ModuleNotFoundError(f"No module named {name!r}", name=name), command)
        return None if found is None else str(found)

    assert missing("xllamacpp") == (
        "xllamacpp is not installed: redtrans needs its 'local' extra; install it with: pip install 'redtrans[local]'"
    )
    assert "redtrans[serve]" in str(missing("fastapi")) and "redtrans[prefs]" in str(missing("fastapi", "annotate"))
    assert missing("no_such_module") is None
    assert missing("yaml") is None  # a core module: not an install problem, a bug (keeps its traceback)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline without build isolation (setuptools from this venv), from a copy of the tree:
    setuptools writes build/ next to pyproject.toml, and the checkout stays clean."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, tree / name)
    wheels = tmp_path / "wheels"
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(tree)],
                   check=True, timeout=600, cwd=tmp_path)  # fmt: skip
    (built,) = wheels.glob("redtrans-*.whl")
    return built


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def _fresh_venv(wheel: Path, venv: Path) -> tuple[Path, Path]:
    """A venv without pip holding only the wheel (no dependencies): its python and its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    subprocess.run([*PIP, "--python", str(vpy), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=600)  # fmt: skip
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    return vpy, Path(site)


@pytest.mark.slow
def test_the_wheel_carries_the_license(wheel: Path) -> None:
    import zipfile

    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0" in license_text
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith("/LICENSE")]
        assert names and archive.read(names[0]).decode("utf-8") == license_text
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_and_finds_its_configs(wheel: Path, tmp_path: Path) -> None:
    """Offline: the wheel installed with --no-deps into a fresh venv; the dependencies come from this venv's
    site-packages through a .pth line (appended after the fresh venv's own site-packages, so `redtrans` itself
    is the wheel's)."""
    venv = tmp_path / "venv"
    vpy, site = _fresh_venv(wheel, venv)
    (site / "_outer_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)

    where = run(str(vpy), "-c", "import redtrans; print(redtrans.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # the wheel, not the source tree
    redtrans = str(venv / "bin" / "redtrans")
    ver = run(redtrans, "--version")
    assert ver.returncode == 0 and ver.stdout.strip() == f"redtrans {version('redtrans')}", ver.stderr
    helped = run(redtrans, "sft", "--help")
    assert helped.returncode == 0 and "--config" in helped.stdout, helped.stderr
    found = run(
        str(vpy),
        "-c",
        "from importlib.resources import files; d = files('redtrans.train.accelerate'); "
        "print(*sorted(p.name for p in d.iterdir() if p.name.endswith(('.yaml', '.json'))), str(d))",
    )
    assert found.returncode == 0, found.stderr
    names = found.stdout.split()
    assert {"ds_zero3.json", "multi_gpu.yaml", "zero3.yaml"} <= set(names), names
    assert names[-1].startswith(str(venv))
    profiles = run(str(vpy), "-c", "from importlib.resources import files; print(files('redtrans.text') / 'profiles')")
    assert Path(profiles.stdout.strip(), "rednote.yaml").is_file() or any(Path(profiles.stdout.strip()).glob("*.yaml"))


CORE_LIMIT_MB = 300
"""The core install's size target (issue 33): what translating JSONL/CSV through an OpenAI-compatible fleet needs,
language id and OpenCC included; Parquet, datasets, pandas, llama.cpp, serving and training are extras."""


def _core_closure(wheel: Path) -> list[Any]:
    """The distributions a plain `pip install redtrans` installs besides redtrans: the wheel's requirements without
    extras, and theirs, as installed in this venv."""
    import email
    import zipfile
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))
    todo = [(Requirement(r), "") for r in email.message_from_bytes(meta).get_all("Requires-Dist") or []]
    seen: dict[tuple[str, frozenset[str]], Any] = {}
    while todo:
        req, extra = todo.pop()
        key = (req.name.lower().replace("_", "-"), frozenset(req.extras))
        if (req.marker and not req.marker.evaluate({"extra": extra})) or key in seen:
            continue
        seen[key] = dist = distribution(req.name)
        todo += [(Requirement(r), e) for r in dist.requires or [] for e in req.extras or {""}]
    return list({dist.metadata["Name"]: dist for dist in seen.values()}.values())


@pytest.mark.slow
def test_the_core_install_is_small_and_names_each_missing_extra(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with the wheel and exactly its core dependencies (hard links to this venv's installed files,
    no network); `pip check` proves nothing is missing. README's commands then either work or say in one line
    which extra to install, exit 2."""
    from tests.stand_ins import Reply, StandInUpstream, completion

    venv = tmp_path / "venv"
    vpy, site = _fresh_venv(wheel, venv)
    for dist in _core_closure(wheel):
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if str(file).startswith("..") or not source.is_file():
                continue  # console scripts of dependencies live outside site-packages
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
    checked = subprocess.run([*PIP, "--python", str(vpy), "check"], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    size_mb = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 1e6
    print(f"core install: {size_mb:.0f} MB in {site}")
    assert size_mb <= CORE_LIMIT_MB, f"the core install is {size_mb:.0f} MB, over {CORE_LIMIT_MB} MB"

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", OPENAI_API_KEY="")
    redtrans = str(venv / "bin" / "redtrans")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([redtrans, *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)

    for module in ("pyarrow", "datasets", "pandas", "xllamacpp", "pydantic_settings", "transformers"):
        absent = subprocess.run([str(vpy), "-c", f"import {module}"], capture_output=True, env=env, timeout=120)
        assert absent.returncode != 0, f"{module} is in the core install"
    assert run("--help").returncode == 0
    posts = tmp_path / "posts.csv"
    posts.write_text("id,text,likes\n1,今天好开心,3\n2,周末去爬山,5\n", encoding="utf-8")
    with StandInUpstream(lambda index, body: Reply(body=completion(body, "a good day"))) as upstream:
        done = run("translate", "-i", str(posts), "-o", "out.jsonl", "--tgt", "en", "--model", upstream.url)
        assert done.returncode == 0, done.stderr
        parquet = run("translate", "-i", str(posts), "-o", "out.parquet", "--tgt", "en", "--model", upstream.url)
    assert [json.loads(line)["likes"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == ["3", "5"]
    expected = {
        ("translate", "今天好开心", "--src", "zh", "--tgt", "en"): "local",  # the README's first command
        ("serve",): "serve",
        ("sft", "--help"): None,
        ("sft",): "train",
        ("annotate", "serve"): "prefs",
    }
    results = {args: run(*args) for args in expected}
    results[("translate", "-o", "out.parquet")] = parquet
    expected[("translate", "-o", "out.parquet")] = "files"
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "out.parquet.journal.jsonl").exists()
    for args, extra in expected.items():
        proc = results[args]
        if extra is None:
            assert proc.returncode == 0, (args, proc.stderr)
            continue
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith("error: ") and f"pip install 'redtrans[{extra}]'" in lines[0], (args, lines)

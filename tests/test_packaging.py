"""Packaging: `redtrans --version`, -h on every command, one meaning per short flag; a wheel built from the repo
and installed in a fresh venv runs `redtrans --version` / `redtrans sft --help` and finds its accelerate configs."""

from __future__ import annotations

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


def test_dash_h_on_every_command() -> None:
    commands = _commands()
    assert len(commands) > 15
    for path, _ in commands:
        result = CliRunner().invoke(app, [*path, "-h"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output, path


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


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_and_finds_its_configs(tmp_path: Path) -> None:
    """Offline: the wheel is built without build isolation (setuptools from this venv) and installed with
    --no-deps into a fresh venv; the dependencies come from this venv's site-packages through a .pth line
    (appended after the fresh venv's own site-packages, so `redtrans` itself is the wheel's)."""
    # Built from a copy: setuptools writes build/ next to pyproject.toml, and the checkout stays clean.
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, tree / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(tree)],
                   check=True, timeout=600, cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("redtrans-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(vpy), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=600)  # fmt: skip
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(site, "_outer_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
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

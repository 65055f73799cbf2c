"""The README's set-up (`pip install -e .`) installs the project: the `diffcd` command exists, the
packages import from any folder under their own names, and no generic top-level name is claimed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"diffcd": "diffcd", "diffcd_hub": "hub", "diffcd_space": "space"}


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": "", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_packages_import_from_any_folder(tmp_path):
    done = _run("import importlib.util as u\n"
                f"for name in {sorted(PACKAGES)!r} + ['hub', 'space']:\n"
                "    spec = u.find_spec(name)\n"
                "    print(name, spec.origin if spec else None)", tmp_path)
    assert done.returncode == 0, done.stderr
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    for name, folder in PACKAGES.items():
        assert found[name] == str(ROOT / folder / "__init__.py"), f"{name} is not installed from {folder}/"
    for generic in ("hub", "space"):  # not claimed by this project
        assert not found[generic].startswith(str(ROOT)), f"`import {generic}` finds this project"


def test_the_diffcd_command_is_installed(tmp_path):
    command = Path(sys.executable).with_name("diffcd")
    assert command.is_file(), "no `diffcd` command: install the project with `pip install -e .`"
    done = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": "", "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0 and "fit" in done.stdout, done.stderr


def test_app_py_finds_the_app_from_the_repository_root():
    """`python app.py` runs with the repository root first on sys.path: diffcd_space must still be
    the installed space/ (no folder of that name in the root shadows it)."""
    done = _run("import diffcd_space, diffcd_hub; print(diffcd_space.__file__); print(diffcd_hub.__file__)", ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / "space" / "__init__.py"), str(ROOT / "hub" / "__init__.py")]

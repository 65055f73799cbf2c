"""`python -m diffcd_space.deploy`: a Space folder whose requirements pick JAX's CUDA build and whose
app.py imports the packages from the folder itself, pushed in one commit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from _apptest import ROOT, TOKEN, USER

from diffcd_space import deploy


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_space_folder_has_the_cuda_requirements_and_everything_the_app_needs(tmp_path):
    out = deploy.write_space(tmp_path / "space", hardware="a10g-small")
    requirements = [line for line in (out / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    # one source: pyproject.toml's dependencies, with only JAX's build changed, then Screened Poisson's extra
    assert requirements == [line.replace("jax>=", "jax[cuda12]>=") if line.startswith("jax>=") else line
                            for line in _project()["dependencies"]] + _project()["optional-dependencies"]["poisson"]
    assert any(line.startswith("open3d-cpu") for line in requirements)
    # the Debian libraries Open3D loads, which a Space apt-installs from packages.txt
    assert (out / "packages.txt").read_text() == (ROOT / "packages.txt").read_text()
    assert {"libgl1", "libegl1"} <= set((out / "packages.txt").read_text().split())
    # the licence the README's header declares travels with the code
    assert "MIT License" in (out / "LICENSE").read_text()
    assert "jax[cuda12]>=" in "".join(requirements) and _project()["optional-dependencies"]["cuda12"] == [
        line for line in requirements if line.startswith("jax[cuda12]")]
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "suggested_hardware: a10g-small" in readme
    assert (out / "app.py").is_file() and (out / "examples" / "index.json").is_file()
    images = re.findall(r"\]\((docs/images/[^)]+)\)", readme)  # the README's pictures show on the Space too
    assert images and all((out / image).is_file() for image in images)
    assert (out / "diffcd_space" / "ui.py").is_file() and (out / "diffcd_hub" / "pull.py").is_file()
    assert (out / "diffcd" / "__init__.py").is_file() and not (out / "space").exists() and not (out / "hub").exists()
    assert not list(out.rglob("__pycache__")) and not (out / "tests").exists()
    with pytest.raises(SystemExit, match="not empty"):
        deploy.write_space(out)


def test_the_spaces_app_imports_the_packages_of_its_own_folder(tmp_path):
    """A Space runs `python app.py` in its folder with the requirements installed, not the project:
    app.py must find diffcd, diffcd_hub and diffcd_space there (and not this checkout's)."""
    out = deploy.write_space(tmp_path / "space")
    probe = ("import diffcd, diffcd_hub, diffcd_space, diffcd_space.ui; "
             "print('\\n'.join(m.__file__ for m in (diffcd, diffcd_hub, diffcd_space, diffcd_space.ui)))")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", probe], cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for path in done.stdout.split():
        assert path.startswith(str(out)), f"{path} is not the Space's copy"


@pytest.mark.slow
def test_pip_resolves_the_spaces_requirements(tmp_path):
    """The Space's requirements.txt resolves on PyPI (with JAX's CUDA wheels), without installing."""
    out = deploy.write_space(tmp_path / "space")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(tmp_path / "report.json"), "-r", str(out / "requirements.txt")],
                          capture_output=True, text=True, timeout=600)
    if done.returncode and "NewConnectionError" in done.stderr + done.stdout:
        pytest.skip("PyPI cannot be reached from here")
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "report.json").read_text()
    assert '"name": "jax-cuda12-plugin"' in report or '"name": "jax_cuda12_plugin"' in report


def test_deploy_pushes_the_space(hub, tmp_path, capsys, monkeypatch):
    from huggingface_hub import HfApi, hf_hub_download

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert deploy.main([str(tmp_path / "space"), "--push", f"{USER}/diffcd-demo", "--token", TOKEN]) == 0
    assert TOKEN not in capsys.readouterr().out
    files = HfApi(endpoint=hub.url, token=TOKEN).list_repo_files(f"{USER}/diffcd-demo", repo_type="space")
    assert {"app.py", "README.md", "requirements.txt", "packages.txt", "diffcd_space/ui.py",
            "examples/index.json"} <= set(files)
    path = hf_hub_download(f"{USER}/diffcd-demo", "requirements.txt", repo_type="space", endpoint=hub.url, token=TOKEN)
    assert "jax[cuda12]" in open(path).read()

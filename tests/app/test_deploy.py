"""`python -m space.deploy`: a Space folder whose requirements pick JAX's CUDA build, pushed in one commit."""

from __future__ import annotations

import pytest
from _apptest import ROOT, TOKEN, USER

from space import deploy


def test_the_space_folder_has_the_cuda_requirements_and_everything_the_app_needs(tmp_path):
    out = deploy.write_space(tmp_path / "space", hardware="a10g-small")
    requirements = (out / "requirements.txt").read_text()
    assert "jax[cuda12]" in requirements
    assert not [line for line in requirements.splitlines() if line.startswith("jax>=")], "no CPU-only JAX line"
    for line in (ROOT / "requirements.txt").read_text().splitlines():  # nothing of the app's runtime is missing
        name = line.split("#")[0].strip()
        if name and not name.startswith(("jax>", "-r")):
            assert name in requirements, f"{name} is missing from the Space's requirements"
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "suggested_hardware: a10g-small" in readme
    assert (out / "app.py").is_file() and (out / "examples" / "index.json").is_file()
    assert (out / "space" / "ui.py").is_file() and (out / "diffcd" / "__init__.py").is_file()
    assert not list(out.rglob("__pycache__")) and not (out / "tests").exists()
    with pytest.raises(SystemExit, match="not empty"):
        deploy.write_space(out)


def test_deploy_pushes_the_space(hub, tmp_path, capsys, monkeypatch):
    from huggingface_hub import HfApi, hf_hub_download

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert deploy.main([str(tmp_path / "space"), "--push", f"{USER}/diffcd-demo", "--token", TOKEN]) == 0
    assert TOKEN not in capsys.readouterr().out
    files = HfApi(endpoint=hub.url, token=TOKEN).list_repo_files(f"{USER}/diffcd-demo", repo_type="space")
    assert {"app.py", "README.md", "requirements.txt", "space/ui.py", "examples/index.json"} <= set(files)
    path = hf_hub_download(f"{USER}/diffcd-demo", "requirements.txt", repo_type="space", endpoint=hub.url, token=TOKEN)
    assert "jax[cuda12]" in open(path).read()

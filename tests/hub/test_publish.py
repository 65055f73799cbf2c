"""publish_examples (one tiny real fit) and seeding the dev server from its run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _hubtest import ROOT, TOKEN
from huggingface_hub import HfApi, hf_hub_download

from diffcd_hub import list_checkpoints
from tools.hubserver import HubServer
from diffcd_hub.publish_examples import main, seed_server


def test_publish_then_seed_a_fresh_server(hub_server, api, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["--namespace", "user", "--examples", "sphere", "--methods", "igr", "--steps", "2",
            "--resolution", "24", "--out", str(runs), "--token", TOKEN]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("sphere-igr: fitted in ") and f"-> {hub_server.url}/user/sphere-igr/commit/" in out
    files = set(api.list_repo_files("user/sphere-igr"))
    assert {"config.json", "model.safetensors", "mesh.glb", "metrics.json", "cloud.npy", "README.md"} <= files
    metrics = json.load(open(hf_hub_download("user/sphere-igr", "metrics.json", endpoint=hub_server.url)))
    assert set(metrics) == {"eval", "cloud_distances"} and metrics["eval"]["chamfer"] > 0
    card = open(hf_hub_download("user/sphere-igr", "README.md", endpoint=hub_server.url)).read()
    assert "| example | sphere |" in card and "| preset | cpu-quick |" in card
    cloud = np.load(hf_hub_download("user/sphere-igr", "cloud.npy", endpoint=hub_server.url), allow_pickle=False)
    assert cloud.shape == (20_000, 3)

    assert main(argv) == 0  # the run folder exists: published again without fitting
    assert "sphere-igr: reused the existing run" in capsys.readouterr().out

    with HubServer({TOKEN: "user"}, orgs={"examples": ["user"]}) as fresh:
        lines = list(seed_server(fresh.url, TOKEN, runs, "examples"))
        assert len(lines) == 1 and lines[0].startswith("seeded examples/sphere-igr at ")
        rows = list_checkpoints(endpoint=fresh.url)
        assert [(r["repo_id"], r["method"]) for r in rows] == [("examples/sphere-igr", "igr")]
        assert "cloud.npy" in HfApi(endpoint=fresh.url).list_repo_files("examples/sphere-igr")

    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.hubserver", "--port", "0", "--token", TOKEN, "--seed-examples", str(runs),
         "--seed-namespace", "examples"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    try:
        seeded, ready = proc.stdout.readline(), proc.stdout.readline()
        assert seeded.startswith("seeded examples/sphere-igr"), seeded + proc.stderr.read()
        url = ready.split()[4]
        assert HfApi(endpoint=url).model_info("examples/sphere-igr").library_name == "diffcd"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert TOKEN not in seeded + ready


@pytest.mark.parametrize("argv, message", [
    (["--examples", "sphere"], "pass --namespace"),
    (["--namespace", "user", "--examples", "no-such-example"], "Unknown example(s) no-such-example"),
    (["--namespace", "user", "--methods", "nerf"], "Unknown method(s) nerf"),
])
def test_publish_argument_errors(hub_server, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_seed_from_an_empty_folder(hub_server, tmp_path):
    assert list(seed_server(hub_server.url, TOKEN, tmp_path, "user")) == [
        f"warning: no run folders (config.json + model.safetensors) in {tmp_path}; nothing seeded"]

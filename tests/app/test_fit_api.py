"""/fit, /stop, /extract_mesh, /evaluate and /compare through gradio_client, as an API user would."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import trimesh

from _apptest import fit_args, is_update


def _final(outputs):
    surface, losses, status, progress, metrics, downloads, *_ = outputs
    return surface, losses, status, progress, metrics, downloads


def test_fit_streams_snapshots_then_final_mesh_metrics_and_downloads(client):
    job = client.submit(**fit_args(), api_name="/fit")
    updates = list(job)  # each streamed update, received live
    assert job.status().success, job.status()
    snapshots = [u[0] for u in updates[:-1] if u[0] and not is_update(u[0])]
    assert len(snapshots) >= 2, f"expected live snapshots, got {len(snapshots)} in {len(updates)} updates"
    assert all(Path(s).suffix == ".glb" for s in snapshots)
    stages = [u[3]["stage"] for u in updates if isinstance(u[3], dict) and "stage" in u[3]]
    assert stages[0] == "preparing" and "fitting" in stages and stages[-1] == "done"
    steps = [u[3]["step"] for u in updates if isinstance(u[3], dict) and u[3].get("stage") == "fitting"]
    assert steps == sorted(steps) and steps[-1] == 60

    surface, losses, status, progress, metrics, downloads = _final(job.outputs()[-1])
    mesh = trimesh.load(surface, force="mesh")
    assert len(mesh.faces) > 100
    # the torus example is 2.6 units across: the mesh must be there, not a unit-box artefact
    assert 2.0 < np.ptp(mesh.vertices, axis=0).max() < 3.2
    assert "Done" in status and progress["summary"]["steps"] == 60
    names = [row[0] for row in metrics["data"]]
    assert "Chamfer distance (vs ground truth)" in names  # the torus example has a ground truth
    assert "Surface → cloud, mean" in names
    assert {Path(d).suffix for d in downloads} == {".glb", ".ply", ".obj", ".zip"}
    with zipfile.ZipFile(next(d for d in downloads if d.endswith(".zip"))) as zf:
        members = {Path(n).name for n in zf.namelist()}
    assert {"config.json", "model.safetensors", "summary.json"} <= members
    assert trimesh.load(next(d for d in downloads if d.endswith(".obj")), force="mesh").faces.shape[1] == 3
    curve = losses["data"]  # (step, log10 loss, term) rows of the loss plot
    assert {row[2] for row in curve} >= {"loss", "eikonal"}
    assert max(row[0] for row in curve) == 60


def test_extract_mesh_and_evaluate_act_on_the_sessions_fit(client):
    client.predict(**fit_args(method="igr"), api_name="/fit")
    glb, files, status, *_ = client.predict(resolution=32, api_name="/extract_mesh")
    assert "32³" in status and trimesh.load(glb, force="mesh").faces.size > 0
    assert {Path(f).suffix for f in files} == {".glb", ".ply", ".obj"}
    table = client.predict(ground_truth=None, api_name="/evaluate")  # the example's ground truth
    names = [row[0] for row in table["data"]]
    assert "Chamfer distance (vs ground truth)" in names and "Cloud → surface, mean" in names


def test_stop_ends_the_fit_early_and_keeps_the_model(client):
    job = client.submit(**fit_args(steps=4000), api_name="/fit")
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until training has started
        outputs = job.outputs()
        if any(isinstance(o[3], dict) and o[3].get("stage") == "fitting" for o in outputs):
            break
        time.sleep(0.2)
    assert client.predict(api_name="/stop").startswith("Stopping")
    final = job.result(timeout=120)
    surface, losses, status, progress, metrics, downloads = _final(final)
    assert progress["stage"] == "cancelled" and "Stopped" in status
    assert progress["summary"]["steps"] < 4000
    assert any(d.endswith(".zip") for d in downloads)


def test_stop_of_one_session_does_not_touch_another(client, app_url, tmp_path):
    from gradio_client import Client

    other = Client(app_url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "other"))
    job = client.submit(**fit_args(steps=120), api_name="/fit")
    other.predict(api_name="/stop")  # the other session has nothing running: a no-op for us
    final = job.result(timeout=180)
    assert final[3]["stage"] == "done" and final[3]["summary"]["steps"] == 120


def test_compare_returns_a_row_per_method_and_coloured_meshes(client):
    job = client.submit(cloud=None, example="sphere", methods=["igr", "diffcd"], preset="test-tiny", seed=3,
                        steps=None, api_name="/compare")
    final = job.result(timeout=300)
    views, table, status, legend = final[:4], final[4], final[5], final[6]
    assert [row[0] for row in table["data"]] == ["DiffCD", "IGR"]  # registry order
    assert "surface→cloud max" in table["headers"] and "Chamfer (GT)" in table["headers"]
    for path in views[:2]:
        mesh = trimesh.load(path, force="mesh")
        colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
        assert len(np.unique(colours, axis=0)) > 1, "the mesh should be coloured by distance"
    assert views[2] is None and views[3] is None
    assert "Done: 2 methods" in status
    streamed = [u[5] for u in job.outputs() if isinstance(u[5], str)]
    assert any("Method 2 of 2" in s for s in streamed)

"""Screened Poisson as a method of the app: /fit and /compare run it, validation refuses what it does not
take, Stop kills it, and the Hub tab says there is no network to push."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from _apptest import TOKEN, USER, app_error, fit_args
from diffcd import poisson

pytestmark = pytest.mark.skipif(not poisson.available(), reason="Open3D (the poisson extra) is not installed")


def _handlers(root):
    """The app's event functions without a server (the public bounds, a session folder under root)."""
    from _apptest import TINY_PRESET
    from diffcd_space.handlers import Handlers
    from diffcd_space.limits import Limits
    from diffcd_space.sessions import SessionStore

    return Handlers(presets={"test-tiny": TINY_PRESET}, store=SessionStore(root), limits=Limits.public())


def _stages(outputs) -> list[str]:
    return [u[3]["stage"] for u in outputs if isinstance(u[3], dict) and "stage" in u[3]]


@pytest.fixture(scope="module")
def poisson_fit(app_url, tmp_path_factory):
    """A Screened Poisson fit of the sphere example through the API; yields (client, its updates)."""
    from gradio_client import Client

    client = Client(app_url, verbose=False, analytics_enabled=False,
                    download_files=str(tmp_path_factory.mktemp("poisson-client")))
    job = client.submit(**fit_args(example="sphere", method="poisson", octree_depth=7), api_name="/fit")
    return client, list(job), job.outputs()


def test_a_poisson_fit_streams_its_stages_and_ends_with_a_mesh_and_metrics(poisson_fit):
    _, _, outputs = poisson_fit
    stages = _stages(outputs)
    assert stages[0] == "preparing" and {"normals", "solve", "trim", "scoring"} <= set(stages)
    assert stages[-1] == "done"
    surface, losses, status, progress, metrics, downloads, *_ = outputs[-1]
    mesh = trimesh.load(surface, force="mesh")
    assert len(mesh.faces) > 1000 and 1.6 < np.ptp(mesh.vertices, axis=0).max() < 2.4  # the unit sphere
    assert "Done: Screened Poisson at octree depth 7" in status
    assert progress["summary"]["method"] == "poisson" and progress["summary"]["steps"] == 0
    names = [row[0] for row in metrics["data"]]
    assert "Chamfer distance (vs ground truth)" in names and "Solve (s)" in names and "Steps" not in names
    assert {Path(d).suffix for d in downloads} == {".glb", ".ply", ".obj"}  # no network: no checkpoint zip


def test_pushing_or_remeshing_a_poisson_run_is_refused_with_a_sentence(poisson_fit):
    client, *_ = poisson_fit
    message = app_error(client, "/push_checkpoint", repo_id=f"{USER}/sphere-poisson", token=TOKEN, private=False,
                        include_cloud=False)
    assert "sphere-poisson is a Screened Poisson run" in message and "no checkpoint to export, push" in message
    assert "/tmp" not in message  # named, not a server path
    assert "Screened Poisson run" in app_error(client, "/extract_mesh", resolution=32)
    table = client.predict(ground_truth=None, api_name="/evaluate")  # its mesh can still be scored
    assert "Chamfer distance (vs ground truth)" in [row[0] for row in table["data"]]


def test_the_hub_tab_turns_push_off_after_a_poisson_run(tmp_path):
    import gradio as gr

    handlers = _handlers(tmp_path)
    *_, last = handlers.fit(**fit_args(example="sphere", method="poisson", octree_depth=6),
                            request=SimpleNamespace(session_hash="poisson-hub"))
    state = last[-1]
    assert state["model_dir"] and Path(state["mesh"]).is_file()
    button, note = handlers.push_availability(state)
    assert button.interactive is False
    assert note.startswith("sphere-poisson is a Screened Poisson run") and "no checkpoint to export, push" in note
    with pytest.raises(gr.Error, match="no checkpoint to export, push"):
        handlers.check_push(f"{USER}/x", TOKEN, False, False, state)
    button, note = handlers.push_availability(None)
    assert button.interactive is True and note == ""


def test_poisson_refuses_loss_weights_and_other_training_settings(client):
    message = app_error(client, "/fit", **fit_args(example="sphere", method="poisson", eikonal_weight=0.5))
    assert "Screened Poisson has no loss, so it takes no eikonal weight" in message
    message = app_error(client, "/fit", **fit_args(example="sphere", method="poisson", steps=100))
    assert "trains no network, so the steps does not apply" in message
    message = app_error(client, "/fit", **fit_args(example="sphere", method="poisson", trim_quantile=0.5))
    assert "greater than maximum value 0.2" in message  # the slider's own bound


def test_compare_runs_poisson_beside_a_neural_method_with_wall_times(client):
    final = client.predict(cloud=None, example="sphere", methods=["poisson", "igr"], preset="test-tiny", seed=0,
                           steps=20, api_name="/compare")
    views, table, status = final[:4], final[4], final[5]
    assert [row[0] for row in table["data"]] == ["IGR", "Screened Poisson"]  # registry order
    wall = table["headers"].index("wall time (s)")
    assert all(row[wall] > 0 for row in table["data"])
    for path in views[:2]:  # both coloured on the one distance scale
        colours = np.asarray(trimesh.load(path, force="mesh").visual.vertex_colors)[:, :3]
        assert len(np.unique(colours, axis=0)) > 1
    assert "Done: 2 methods" in status


def test_stop_kills_a_running_poisson_reconstruction(tmp_path):
    """Stop during the solve ends the child process at once: a cancelled update, no mesh, no error."""
    handlers = _handlers(tmp_path)
    request = SimpleNamespace(session_hash="poisson-stop")
    started = time.perf_counter()
    updates = []
    for update in handlers.fit(**fit_args(method="poisson", octree_depth=10), request=request):
        updates.append(update)
        if update[3] is not None and isinstance(update[3], dict) and update[3].get("stage") == "normals":
            handlers.stop(request)
    surface, _, status, progress, *_ = updates[-1]
    assert progress["stage"] == "cancelled" and "Stopped" in status and "no mesh" in status
    assert time.perf_counter() - started < 30

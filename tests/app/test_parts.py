"""The app's parts without a server: session folders, viewer files, presets, examples."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from diffcd_space import viewer
from diffcd_space.examples import list_examples
from diffcd_space.presets import library_presets
from diffcd_space.sessions import SessionStore


def _request(session: str):
    return SimpleNamespace(session_hash=session)


def test_sessions_have_their_own_folders_and_stop_signals(tmp_path):
    store = SessionStore(tmp_path / "root")
    a, b = _request("aaa"), _request("bbb")
    (store.folder(a) / "x.glb").write_bytes(b"1")
    folder_b = store.folder(b)
    stopped_a, stopped_b = store.stop_check(a, "fit"), store.stop_check(b, "fit")
    store.request_stop(a, "fit")
    assert stopped_a() and not stopped_b()
    store.close(a)
    assert not store.folder_of(a).exists() and folder_b.is_dir()
    assert store.is_closed(a) and not store.is_closed(b)


def test_session_ids_cannot_escape_the_root(tmp_path):
    store = SessionStore(tmp_path / "root")
    folder = store.folder(_request("../../_etc"))
    assert folder.parent == store.root and folder.name != "etc"


def test_idle_sessions_are_swept(tmp_path):
    store = SessionStore(tmp_path / "root", max_age=60)
    old, fresh = store.folder(_request("old")), store.folder(_request("fresh"))
    shared = store.root / "_shared"
    shared.mkdir()
    past = time.time() - 3600
    for folder in (old, shared):
        os.utime(folder, (past, past))
    assert store.sweep() == [old.name]
    assert not old.exists() and fresh.exists() and shared.exists()


def test_cloud_preview_is_a_glyph_mesh_around_the_points(tmp_path):
    points = np.random.default_rng(0).normal(size=(10_000, 3))
    path = viewer.cloud_glb(points, tmp_path / "cloud.glb", max_points=500)
    mesh = trimesh.load(path, force="mesh")
    assert len(mesh.faces) == 500 * 8  # one octahedron per shown point
    reach = viewer.GLYPH_SIZE * np.ptp(points, axis=0).max() + 1e-6
    assert np.all(mesh.bounds[0] >= points.min(0) - reach) and np.all(mesh.bounds[1] <= points.max(0) + reach)


def test_distance_colours_run_from_blue_to_red():
    colours = viewer.distance_colours(np.array([0.0, 0.5, 1.0, 5.0]), scale=1.0)
    assert tuple(colours[0, :3]) == tuple(viewer.COLOUR_STOPS[0].astype(int))
    assert tuple(colours[2, :3]) == tuple(colours[3, :3]) == tuple(viewer.COLOUR_STOPS[-1].astype(int))


def test_distance_mesh_colours_spurious_surface_red(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=3)
    far = trimesh.creation.icosphere(subdivisions=3).apply_translation([5, 0, 0])
    mesh = trimesh.util.concatenate([sphere, far])
    path = viewer.distance_mesh_glb(mesh, sphere.vertices, 0.04, tmp_path / "d.glb")
    loaded = trimesh.load(path, force="mesh")
    red = np.all(loaded.visual.vertex_colors[:, :3] == viewer.COLOUR_STOPS[-1].astype(np.uint8), axis=1)
    assert red.sum() == len(far.vertices)


def test_loss_frame_is_long_format_and_log_scaled():
    history = [{"step": i + 1, "loss": 10.0 ** -i, "area": 0.0, "elapsed": i, "valid_surface_fraction": 1.0,
                "nn_exact_fraction": 1.0, "nn_tree_fraction": 0.1}
               for i in range(1000)]
    frame = viewer.loss_frame(history, max_rows=100)
    assert set(frame["term"]) == {"loss"}  # the all-zero term and the diagnostics are left out
    assert len(frame) <= 101 and frame["step"].iloc[-1] == 1000
    assert frame["log10 loss"].iloc[0] == pytest.approx(0.0)
    assert viewer.loss_frame([]) is None


def test_every_library_preset_is_offered_and_configures():
    presets = library_presets(gpu=False)
    for preset in presets.values():
        config = preset.config("siren", depth=6, width=64, area_weight=0.33, steps=10)
        assert config.network.hidden_layers == 6 and config.network.skip_layers == (3,)
        assert config.method_config.area_weight == 0.33 and config.schedule.steps == 10


def test_a_cpu_app_opens_with_the_fourier_preset_and_a_gpu_app_with_gpu_demo():
    from diffcd_space.presets import default_preset_name

    cpu, gpu = library_presets(gpu=False), library_presets(gpu=True)
    assert default_preset_name(cpu, gpu=False) == "cpu-quick-fourier"
    assert cpu["cpu-quick-fourier"].summary() == "4×128 network + 6 Fourier bands, 1,600 steps, 192³ final mesh"
    assert default_preset_name(gpu, gpu=True) == "gpu-demo"
    without = {k: v for k, v in cpu.items() if k != "cpu-quick-fourier"}
    assert default_preset_name(without, gpu=False) == "cpu-quick"


def test_the_noise_note_says_what_the_level_does_at_the_preset():
    presets = library_presets(gpu=False)
    paper, quick = presets["paper"], presets["cpu-quick"]
    assert "λ = 0.5" in paper.noise_description("medium")
    assert "20x lower" in paper.noise_description("max")
    for level in ("medium", "max"):  # measured: the clean settings fit noisy scans best there
        assert "clean settings" in quick.noise_description(level)
        assert quick.config("diffcd", noise=level) == quick.config("diffcd")
    assert paper.config("diffcd", noise="max").schedule.learning_rate < paper.config("diffcd").schedule.learning_rate
    fourier = presets["cpu-quick-fourier"]
    assert "λ = 0.02" in fourier.noise_description("none")
    assert fourier.config("diffcd", noise="max").method_config.eikonal_weight == 0.02


def test_examples_come_from_the_library_index():
    examples = list_examples()
    assert examples and all(e.cloud.is_file() for e in examples)
    assert all(e.gt_mesh is None or e.gt_mesh.is_file() for e in examples)


def test_a_fit_over_the_time_limit_is_stopped_and_still_delivered(tmp_path):
    from _apptest import TINY_PRESET, fit_args
    from diffcd_space.handlers import Handlers

    from diffcd_space.limits import Limits

    # fit_share 0: training stops after its first chunk; the limit still leaves the meshing its time
    limits = Limits.local().with_changes(max_request_seconds=120.0, fit_share=0.0)
    handlers = Handlers(presets={"test-tiny": TINY_PRESET}, store=SessionStore(tmp_path), max_points=50_000,
                        limits=limits)
    args = fit_args(example="sphere", method="igr", steps=400)
    updates = list(handlers.fit(**args, request=_request("limit")))
    surface, losses, status, progress, metrics, downloads, state = updates[-1]
    assert progress["stage"] == "cancelled" and progress["summary"]["steps"] < 400
    assert "stops a fit after 0.0 s" in status
    assert trimesh.load(surface, force="mesh").faces.size > 0 and state["model_dir"]


def test_two_requests_for_one_example_preview_at_once_both_get_it(tmp_path):
    import threading

    from _apptest import TINY_PRESET
    from diffcd_space.handlers import Handlers

    handlers = Handlers(presets={"test-tiny": TINY_PRESET}, store=SessionStore(tmp_path))
    results, errors = [], []

    def ask():
        try:
            results.append(handlers.example_preview("sphere"))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 4 and len({r[0] for r in results}) == 1


def test_sub_second_times_do_not_read_as_zero():
    from diffcd_space.outputs import seconds, table_seconds

    assert table_seconds(0.023) == 0.023 and table_seconds(0.0049) == 0.0049  # a fast reconstruction
    assert table_seconds(12.34) == 12.3 and table_seconds(1.0) == 1.0
    assert seconds(0.4) == "0.4 s" and seconds(42.4) == "42 s" and seconds(125) == "2 min 05 s"

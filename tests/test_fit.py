"""The fit loop: every method runs, fits are reproducible, NaN steps are skipped, shapes come out right."""

import dataclasses
import re
import sys

import jax
import numpy as np
import pytest
import trimesh

from diffcd import METHODS, Fitter, make_config, metrics
from diffcd.checkpoint import restore_train_state, save_train_state
from diffcd.errors import ConfigError

TINY = {"hidden_layers": 2, "width": 32, "skip_layers": ()}


def sphere_cloud(count=3000, radius=1.0, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((count, 3))
    return (radius * points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def tiny_config(method="diffcd", steps=20, **kwargs):
    config = make_config("cpu-quick", method, steps=steps, network_overrides=TINY, batch_size=500, **kwargs)
    if method == "diffcd":
        config = dataclasses.replace(
            config,
            method_config=dataclasses.replace(config.method_config, seed_count=1000, seed_mesh_resolution=32),
        )
    return config


def run_to_end(fitter, **kwargs):
    events = list(fitter.run(**kwargs))
    assert events[-1].done
    return events


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_and_gives_finite_losses(method):
    fitter = Fitter(sphere_cloud(), tiny_config(method))
    events = run_to_end(fitter)
    result = events[-1].result
    assert len(result.history) == 20
    assert all(np.isfinite(row["loss"]) for row in result.history)
    summary = result.summary
    for key in ("method", "steps", "seed", "compile_seconds", "fit_seconds", "steps_per_second",
                "seed_mesh_seconds", "nan_steps_skipped"):
        assert key in summary
    assert summary["method"] == method and summary["steps"] == 20
    assert summary["nan_steps_skipped"] == 0
    assert events[0].step > 0 and events[0].eta >= 0


def test_same_seed_gives_identical_parameters_and_other_seed_does_not():
    cloud = sphere_cloud()
    run = lambda seed: run_to_end(Fitter(cloud, tiny_config(seed=seed)))[-1].result.fitted.params
    a, b, c = run(3), run(3), run(4)
    same = jax.tree_util.tree_map(np.array_equal, a, b)
    assert all(jax.tree_util.tree_leaves(same))
    assert not all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, c)))


def test_the_order_of_the_points_in_the_file_changes_nothing():
    """The fit puts the cloud in spatial order first, so a shuffled file fits bit-identically."""
    cloud = sphere_cloud()
    shuffled = cloud[np.random.default_rng(1).permutation(len(cloud))]
    run = lambda points: run_to_end(Fitter(points, tiny_config(seed=3)))[-1].result.fitted.params
    same = jax.tree_util.tree_map(np.array_equal, run(cloud), run(shuffled))
    assert all(jax.tree_util.tree_leaves(same))


def test_nan_gradients_are_skipped_and_counted():
    config = tiny_config("igr", steps=10)
    config = dataclasses.replace(
        config, method_config=dataclasses.replace(config.method_config, eikonal_weight=float("nan"))
    )
    fitter = Fitter(sphere_cloud(), config)
    before = jax.device_get(fitter.state.params)
    result = run_to_end(fitter)[-1].result
    assert result.summary["nan_steps_skipped"] == 10
    unchanged = jax.tree_util.tree_map(np.array_equal, before, result.fitted.params)
    assert all(jax.tree_util.tree_leaves(unchanged))


def test_cancel_keeps_the_last_chunk():
    config = dataclasses.replace(tiny_config("igr", steps=200), chunk_steps=10)
    fitter = Fitter(sphere_cloud(), config)
    for event in fitter.run():
        if event.step >= 30:
            fitter.cancel()
    assert event.done and event.result.summary["cancelled"]
    assert 30 <= fitter.state.step < 200
    assert fitter.fitted().steps == fitter.state.step


def test_second_fit_of_the_same_shape_does_not_recompile():
    cloud = sphere_cloud()
    run_to_end(Fitter(cloud, tiny_config("igr")))
    again = run_to_end(Fitter(cloud, tiny_config("igr", seed=5)))[-1].result
    assert again.summary["compile_seconds"] == 0.0


def test_snapshots_are_meshes_in_input_coordinates():
    cloud = sphere_cloud(radius=3.0) + np.float32(10.0)
    fitter = Fitter(cloud, tiny_config("igr", steps=40))
    events = run_to_end(fitter, snapshot_every=20, snapshot_resolution=32)
    snapshots = [e.snapshot for e in events if e.snapshot is not None]
    assert len(snapshots) >= 2
    centre = snapshots[-1].bounds.mean(axis=0)
    np.testing.assert_allclose(centre, 10.0, atol=1.0)


def test_resume_from_an_orbax_checkpoint_continues_the_same_fit(tmp_path):
    cloud = sphere_cloud()
    config = dataclasses.replace(tiny_config("igr", steps=40), chunk_steps=20)
    straight = run_to_end(Fitter(cloud, config))[-1].result.fitted.params

    first = Fitter(cloud, config)
    for event in first.run():
        if event.step == 20:
            break
    save_train_state(tmp_path / "checkpoint", first.state)
    second = Fitter(cloud, config)
    second.restore(restore_train_state(tmp_path / "checkpoint", second))
    assert second.state.step == 20
    resumed = run_to_end(second)[-1].result.fitted.params
    close = jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, atol=1e-6), straight, resumed)
    assert all(jax.tree_util.tree_leaves(close))


def test_wrong_method_config_type_is_a_config_error():
    config = make_config("cpu-quick", "igr")
    with pytest.raises(ConfigError, match="IGRConfig"):
        dataclasses.replace(config, method="diffcd")
    with pytest.raises(ConfigError, match="Unknown method"):
        make_config("cpu-quick", "nope")
    with pytest.raises(ConfigError, match="Unknown preset"):
        make_config("huge", "igr")


def _cpu_quick_fit(cloud):
    result = run_to_end(Fitter(cloud, make_config("cpu-quick", "diffcd")))[-1].result
    return result.fitted.extract_mesh(128)


@pytest.mark.slow
def test_cpu_quick_sphere_is_a_sphere():
    cloud = sphere_cloud(20_000, radius=1.0)
    mesh = _cpu_quick_fit(cloud)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    # The level set of a 128³ grid over a box of side 1.6 x 2 (input units) has a grid step of
    # 0.025: vertices within 1.5 % of the radius are a sphere to within a third of a cell.
    assert np.abs(radii - 1.0).mean() < 0.015
    truth = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    scores = metrics.evaluate_mesh(mesh, truth, n_samples=20_000)
    # 20k samples on each mesh have a mean nearest-sample spacing of ~0.01 on a unit sphere,
    # so an exact surface already scores ~0.006: 0.02 (1 % of the longest side) leaves room
    # for a short CPU fit while failing on a wrong shape.
    assert scores["chamfer"] < 0.02


@pytest.mark.slow
def test_cpu_quick_torus_fits_within_one_percent_of_its_size():
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3, major_sections=96, minor_sections=48)
    cloud = np.asarray(torus.sample(25_000, seed=0), np.float32)
    mesh = _cpu_quick_fit(cloud)
    assert len(mesh.split(only_watertight=False)) == 1  # one piece: no spurious surface
    assert mesh.euler_number == 0  # genus one
    scores = metrics.evaluate_mesh(mesh, torus, n_samples=20_000)
    longest = 2.6
    assert scores["chamfer"] < 0.01 * longest
    assert scores["normal_angle_deg"] < 10


def test_fit_sdf_runs_to_the_end_and_calls_back_every_chunk():
    from diffcd import fit_sdf

    seen = []
    config = dataclasses.replace(tiny_config("igr", steps=30), chunk_steps=10)
    result = fit_sdf(sphere_cloud(), config, callback=seen.append)
    assert [e.step for e in seen] == [10, 20, 30, 30] and seen[-1].done
    assert result.summary["steps"] == 30


def test_step_flops_count_every_projection_step_and_rank_the_methods():
    """The speed benchmark compares methods by XLA's operation count; each projection step must
    add the same cost (the loop is unrolled, so none is hidden inside a loop body), and DiffCD's
    step must cost more than IGR's, which only differs by the surface term."""

    def flops(method, **overrides):
        return Fitter(sphere_cloud(), tiny_config(method, method_overrides=overrides)).step_flops()

    none, one, two = (flops("diffcd", projection_steps=k) for k in (0, 1, 2))
    assert one > none
    assert two - one == pytest.approx(one - none, rel=0.02)
    assert flops("igr") < none


def test_shortened_runs_keep_the_refreshes_per_run_but_not_more_often_than_every_ten_steps():
    from diffcd.presets import MIN_SEED_REFRESH_EVERY

    every = lambda preset, steps=None: make_config(preset, "diffcd", steps=steps).method_config.seed_refresh_every
    assert every("paper") == 1000 and every("cpu-quick") == 32
    assert every("cpu-quick", 4000) == 80  # 2.5x the steps, the same 50 refreshes
    assert every("paper", 4000) == 100
    assert every("cpu-quick", 48) == every("paper", 200) == MIN_SEED_REFRESH_EVERY


# -- chunks, overlapped seed refreshes, precision, warm-up ------------------------------------

def _params_equal(a, b, atol=0.0):
    close = jax.tree_util.tree_map(lambda x, y: np.allclose(x, y, rtol=0, atol=atol), a, b)
    return all(jax.tree_util.tree_leaves(close))


def test_chunks_divide_every_interval_and_only_the_remainder_runs_in_one_step_pieces():
    from diffcd.fit import chunk_length, chunk_plan

    assert chunk_length(100, 1000, 200) == 100  # paper: refresh 1000, overlap lag 200
    assert chunk_length(50, 32, 8) == 8  # cpu-quick with the overlap lag
    assert chunk_length(100, 80, 20, 300) == 20
    assert chunk_length(50, None, None) == 50
    plan = chunk_plan(0, 47, 5, 50, ((10, 0), (10, 5)))
    assert [s for s, _ in plan] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert all(pieces == (5,) for _, pieces in plan[:-1]) and plan[-1][1] == (1, 1)
    # chunks of 4 run back to back up to the next boundary (refresh at 16k, seed swap at 16k + 4)
    assert chunk_plan(0, 32, 4, 50, ((16, 0), (16, 4))) == [(0, (4,)), (4, (4, 4, 4)), (16, (4,)), (20, (4, 4, 4))]


def test_chunked_training_has_no_conditional_and_matches_a_step_by_step_reference():
    """Whole chunks and the one-step tail give the parameters of one compiled step at a time,
    seeds refreshed synchronously at the same steps (DiffCD, overlap off: the paper's loop),
    and no step of the compiled loop is conditional (on a GPU a conditional syncs the host)."""
    cloud = sphere_cloud()
    config = dataclasses.replace(tiny_config("diffcd", steps=23), overlap_seed_refresh=False)
    fitter = Fitter(cloud, config)
    text = fitter.lower_chunk(10).as_text()
    assert "stablehlo.while" in text  # the scan over steps
    assert "stablehlo.case" not in text and "stablehlo.if" not in text
    chunked = run_to_end(fitter)[-1].result
    assert fitter._chunk_length(None) == 10  # chunks of 10, then a tail of three one-step pieces
    compiled = {key[0]: c.as_text() for key, c in fitter._program._compiled.items()}
    assert {10, 1} <= set(compiled) and all(" while(" in text for text in compiled.values())
    assert not any(re.search(r"\sconditional\(", text) for text in compiled.values())  # the HLO opcode

    reference = Fitter(cloud, config)
    step_fn = jax.jit(reference._program.scheduled_step)
    params, opt_state = reference.state.params, reference.state.opt_state
    setup = reference.setup
    every = config.method_config.seed_refresh_every
    for step in range(config.schedule.steps):
        if step % every == 0:
            grids = reference.seed_grids(params, background=False)()
            reference.install_refresh(reference.refresh_from_grids(grids, step))
        params, opt_state, _, _ = step_fn(params, opt_state, np.int32(step), reference.data, setup.weights,
                                          setup.schedule, setup.key)
    assert _params_equal(chunked.fitted.params, jax.device_get(params), atol=1e-6)
    assert chunked.summary["seed_refreshes"] == 3 and chunked.summary["seed_refresh_overlapped_seconds"] == 0


def test_overlapped_seed_refreshes_swap_in_later_reproducibly_and_fit_as_well():
    cloud = sphere_cloud()
    base = dataclasses.replace(tiny_config("diffcd", steps=40), overlap_seed_refresh=True)
    assert base.method_config.seed_refresh_every == 10 and base.seed_refresh_lag == 5
    assert dataclasses.replace(base, overlap_seed_refresh=None).seed_refresh_lag == 0  # auto: off on a CPU
    overlapped = [run_to_end(Fitter(cloud, base))[-1].result for _ in range(2)]
    synchronous = run_to_end(Fitter(cloud, dataclasses.replace(base, overlap_seed_refresh=False)))[-1].result
    summary = overlapped[0].summary
    # step 0 synchronously, then 10, 20, 30 in the background, each used from 5 steps later
    assert summary["seed_refreshes"] == 4 and summary["seed_refresh_overlap"]
    assert summary["seed_refresh_lag_steps"] == 5
    assert 0 <= summary["seed_refresh_wait_seconds"] <= summary["seed_mesh_seconds"]
    assert summary["seed_refresh_overlapped_seconds"] == pytest.approx(
        summary["seed_mesh_seconds"] - summary["seed_refresh_wait_seconds"], abs=1e-3)
    assert _params_equal(overlapped[0].fitted.params, overlapped[1].fitted.params)  # same seed, same fit
    # On an accelerator the grid is evaluated between chunks, only the host part in the thread
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules["diffcd.fit"], "_grid_in_background", lambda: False)
        accelerator_path = run_to_end(Fitter(cloud, base))[-1].result
    assert _params_equal(overlapped[0].fitted.params, accelerator_path.fitted.params)
    assert not _params_equal(overlapped[0].fitted.params, synchronous.fitted.params)
    # Seeds at most 1.25 refresh intervals old fit the cloud as well as the paper's refresh
    distance = lambda result: float(np.abs(result.fitted(cloud)).mean())
    assert distance(overlapped[0]) < 1.3 * distance(synchronous) + 1e-3
    valid = lambda result: np.mean([row["valid_surface_fraction"] for row in result.history[-10:]])
    assert valid(overlapped[0]) > 0.8 * valid(synchronous)


def _dot_precisions(text):
    return [re.search(r"precision = \[(\w+), \w+\]", line).group(1) if "precision" in line else "none"
            for line in text.splitlines() if "stablehlo.dot_general" in line]


@pytest.mark.parametrize("method", ["diffcd", "igr"])
def test_the_precision_setting_reaches_every_matmul_of_the_training_step(method):
    from collections import Counter

    exact = Counter(_dot_precisions(Fitter(sphere_cloud(), tiny_config(method)).lower_chunk(2).as_text()))
    assert set(exact) == {"HIGHEST"}
    fast_config = dataclasses.replace(tiny_config(method), precision="default")
    fast = Counter(_dot_precisions(Fitter(sphere_cloud(), fast_config).lower_chunk(2).as_text()))
    assert sum(fast.values()) == sum(exact.values()) and "none" not in fast
    if method == "diffcd":  # projection and validity pass stay in true float32
        assert fast["HIGHEST"] > 0 and fast["DEFAULT"] > 0
    else:
        assert set(fast) == {"DEFAULT"}
    with pytest.raises(ConfigError, match="precision"):
        dataclasses.replace(tiny_config(method), precision="tf16")


def test_warm_up_compiles_what_the_first_fit_runs():
    from diffcd.fit import warm_up

    cloud = sphere_cloud(2000)
    config = dataclasses.replace(tiny_config("igr", steps=13), chunk_steps=4, batch_size=400)
    warm_up(config, cloud)  # chunks of 4 and the one-step tail
    events = run_to_end(Fitter(cloud, config))
    assert events[-1].result.summary["compile_seconds"] == 0.0
    assert events[-1].result.summary["chunk_steps"] == 4


def test_the_run_folder_records_the_precision_and_the_refresh_overlap(tmp_path):
    import json

    from diffcd.runs import write_run

    config = dataclasses.replace(tiny_config("diffcd", steps=20), precision="default")
    result = run_to_end(Fitter(sphere_cloud(), config))[-1].result
    write_run(tmp_path / "run", result, resolution=16)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["matmul_precision"] == "default"
    for key in ("seed_refresh_overlap", "seed_refresh_lag_steps", "seed_refresh_wait_seconds",
                "seed_refresh_overlapped_seconds", "seed_mesh_seconds", "seed_refreshes"):
        assert key in summary
    exported = json.loads((tmp_path / "run" / "config.json").read_text())
    assert exported["metadata"]["summary"]["matmul_precision"] == "default"

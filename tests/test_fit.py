"""The fit loop: every method runs, fits are reproducible, NaN steps are skipped, shapes come out right."""

import dataclasses

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
    assert every("paper") == 1000 and every("cpu-quick") == 16
    assert every("cpu-quick", 4000) == 80  # 5x the steps, the same 50 refreshes
    assert every("paper", 4000) == 100
    assert every("cpu-quick", 48) == every("paper", 200) == MIN_SEED_REFRESH_EVERY

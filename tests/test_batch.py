"""fit_many: K shapes in one vmapped program give the fits each shape gets alone."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from diffcd import Fitter, make_config
from diffcd.batch import fit_many, plan_groups
from diffcd.errors import ConfigError

TINY = {"hidden_layers": 2, "width": 32, "skip_layers": (1,)}
REPO = Path(__file__).resolve().parents[1]


def blob_cloud(count, seed, radius=1.0):
    """A bumpy closed surface, different per seed."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    bump = 1.0 + 0.2 * np.sin(3 * direction[:, 0] + seed) * np.cos(2 * direction[:, 1])
    return (radius * bump[:, None] * direction + seed).astype(np.float32)


def tiny(method, steps=12, seed=0, **method_overrides):
    config = make_config("cpu-quick", method, steps=steps, seed=seed, network_overrides=TINY,
                         batch_size=128, method_overrides=method_overrides or None)
    config = dataclasses.replace(config, chunk_steps=5)
    if method == "diffcd":
        config = dataclasses.replace(config, method_config=dataclasses.replace(
            config.method_config, seed_count=300, seed_mesh_resolution=16, seed_refresh_every=6))
    return config


def results_by_index(events):
    events = list(events)
    return {e.index: e.event.result for e in events if e.event.done}, events


def max_difference(a, b):
    leaves = zip(jax.tree_util.tree_leaves(a.fitted.params), jax.tree_util.tree_leaves(b.fitted.params))
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


def single_fit(cloud, config):
    return next(e.result for e in Fitter(cloud, config).run() if e.done)


# Clouds of different sizes: the group pads them to one length.
CLOUDS = [blob_cloud(300, 0), blob_cloud(470, 1, 2.0), blob_cloud(390, 2, 0.5)]


def test_two_shapes_in_one_program_equal_each_fitted_alone():
    """The fast suite's batched-equals-single check: K = 2 IGR shapes of different cloud sizes,
    seeds and λ in one vmapped program, each against Fitter."""
    configs = [tiny("igr", steps=10), tiny("igr", steps=10, seed=7, eikonal_weight=0.5)]  # two chunks of 5
    results, events = results_by_index(fit_many(CLOUDS[:2], configs))
    assert {e.shapes_in_program for e in events} == {2}
    for i, (cloud, config) in enumerate(zip(CLOUDS[:2], configs)):
        alone = single_fit(cloud, config)
        assert max_difference(results[i], alone) < 1e-5, i
        assert [row["loss"] for row in results[i].history] == pytest.approx(
            [row["loss"] for row in alone.history], rel=1e-4, abs=1e-6)
    assert max_difference(results[0], results[1]) > 1e-3


@pytest.mark.slow
def test_batched_fits_equal_single_fits_for_igr_and_neural_pull():
    # Two groups (IGR, Neural-Pull) from one call; one IGR shape with its own seed and λ.
    configs = [tiny("igr"), tiny("igr", seed=7), tiny("igr", eikonal_weight=0.5),
               tiny("neural-pull"), tiny("neural-pull")]
    clouds = CLOUDS + CLOUDS[:2]
    results, events = results_by_index(fit_many(clouds, configs))
    assert sorted(results) == list(range(5))
    assert {e.shapes_in_program for e in events} == {3, 2}
    for i, (cloud, config) in enumerate(zip(clouds, configs)):
        alone = single_fit(cloud, config)
        assert max_difference(results[i], alone) < 1e-5, i
        assert results[i].history[-1]["loss"] == pytest.approx(alone.history[-1]["loss"], rel=1e-4, abs=1e-6)
        assert len(results[i].history) == config.schedule.steps
    # Different seeds and weights really give different fits (the comparison above can fail).
    assert max_difference(results[0], results[1]) > 1e-3
    assert max_difference(results[0], results[2]) > 1e-6


def test_no_step_of_the_group_program_is_conditional_and_the_tail_runs_in_one_step_pieces():
    """As in Fitter: whole chunks, then one-step pieces, each compiled once; a per-step
    conditional in the compiled loop would copy its predicate to the host on a GPU."""
    from diffcd.batch import _Group, _Shape

    config = tiny("igr", steps=12)  # chunks of 5: 5, 5, then a tail of two one-step pieces
    group = _Group([_Shape(i, cloud, config) for i, cloud in enumerate(CLOUDS[:2])], jax.devices()[:1])
    chunks = [(steps, outputs["loss"].shape) for steps, outputs in group.run()]
    assert chunks == [(5, (5, 2)), (5, (5, 2)), (2, (2, 2))] and group.step == 12  # (steps, shapes)
    compiled = {key[0]: executable.as_text() for key, executable in group.program._compiled.items()}
    assert {5, 1} <= set(compiled)  # the program is shared by every group of this structure
    assert all(" while(" in text and not re.search(r"\sconditional\(", text) for text in compiled.values())


@pytest.mark.slow
def test_diffcd_batched_equals_single_with_and_without_overlapped_refresh():
    config = tiny("diffcd", steps=40)
    config = dataclasses.replace(config, chunk_steps=4, overlap_seed_refresh=False, method_config=dataclasses.replace(
        config.method_config, seed_refresh_every=16))
    lagged = dataclasses.replace(config, overlap_seed_refresh=True)
    assert config.seed_refresh_lag == 0 and lagged.seed_refresh_lag > 0
    clouds = CLOUDS[:2]
    waiting, _ = results_by_index(fit_many(clouds, config))
    overlapped, _ = results_by_index(fit_many(clouds, lagged))
    # The group evaluates its seed grids densely, Fitter coarse-to-fine: the same level set up
    # to float rounding. The overlapped refresh has Fitter's lag in both.
    for i, cloud in enumerate(clouds):
        assert max_difference(waiting[i], single_fit(cloud, config)) < 1e-4
        assert max_difference(overlapped[i], single_fit(cloud, lagged)) < 1e-4
    summary = overlapped[1].summary
    assert summary["seed_refresh_overlap"] is True and summary["seed_refresh_lag_steps"] == lagged.seed_refresh_lag
    assert summary["seed_refreshes"] == 3  # from steps 0, 16 and 32, the last two used 4 steps later
    assert np.isfinite(overlapped[1].history[-1]["surface_to_point"])
    # The lagged seeds do change the fit: the overlapped and waiting runs are different runs.
    assert max_difference(overlapped[0], waiting[0]) > 0


def test_fit_many_reports_every_shape_and_the_whole_run():
    _, events = results_by_index(fit_many(CLOUDS[:2], tiny("igr", steps=10)))
    done = [e for e in events if e.event.done]
    assert [e.index for e in done] == [0, 1]
    assert done[-1].shapes_done == 2 and done[-1].steps_done == done[-1].steps_total == 20
    progress = [e.steps_done for e in events]
    assert progress == sorted(progress)
    assert all(e.eta >= 0 for e in events if not e.event.done)
    result = done[0].event.result
    assert result.summary["shapes_in_program"] == 2 and result.fitted.steps == 10
    assert result.fitted.extract_mesh(24).vertices.shape[1] == 3


def test_plan_groups_and_config_errors():
    assert plan_groups(["a", "b", "a", "a", "b"], 2) == [[0, 2], [3], [1, 4]]
    with pytest.raises(ConfigError, match="2 clouds but 1 configs"):
        fit_many(CLOUDS[:2], [tiny("igr")])


SHARDED_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_batch import CLOUDS, tiny, results_by_index
    from diffcd.batch import fit_many
    assert len(jax.local_devices()) == 4, jax.local_devices()
    config = tiny("igr", steps=10)
    sharded, _ = results_by_index(fit_many(CLOUDS, config))
    single, _ = results_by_index(fit_many(CLOUDS, config, devices=jax.local_devices()[:1]))
    diff = max(float(np.max(np.abs(a - b))) for i in range(3) for a, b in zip(
        jax.tree_util.tree_leaves(sharded[i].fitted.params), jax.tree_util.tree_leaves(single[i].fitted.params)))
    print(json.dumps({"diff": diff, "devices": [sharded[i].summary["devices"] for i in range(3)],
                      "single_devices": single[0].summary["devices"]}))
""")


@pytest.mark.slow
def test_sharded_over_four_host_devices_equals_one_device(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(REPO / "tests")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == [3, 3, 3]  # three shapes: one per device on three of the four
    assert report["single_devices"] == 1
    assert report["diff"] < 1e-5

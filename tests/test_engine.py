"""The training engine: fits pinned on fixed seeds, one step for one fit and for K, learning rates
per parameter group and masks passed as values, one summary for Fitter and fit_many."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _engine_golden as golden
from diffcd import Fitter
from diffcd.batch import fit_many
from diffcd.fit import StepStructure, TrainProgram, learning_rates, schedule_values
from diffcd.networks import ParameterGroups, init_params

# Bit-identical on the machine that wrote the golden file; the tolerance leaves room for another
# CPU's vector width over 24 steps, and is far below what a changed step does (the planted
# mutations move these fits by 1e-3 and more).
RTOL, ATOL = 1e-5, 1e-6


def assert_matches_golden(engine, name, fit):
    stored = np.load(golden.GOLDEN)
    prefix = f"{engine}/{name}/"
    keys = sorted(k.removeprefix(prefix) for k in stored.files if k.startswith(prefix))
    assert sorted(fit) == keys
    for key in keys:
        np.testing.assert_allclose(fit[key], stored[prefix + key], rtol=RTOL, atol=ATOL, err_msg=f"{name} {key}")


SLOW_SINGLE = {"diffcd-overlapped", "neural-pull", "siren"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SINGLE else n
                                  for n in golden.SINGLE])
def test_fitter_trains_as_the_golden_file_says(name):
    assert_matches_golden("single", name, golden.single_fit(name))


@pytest.mark.parametrize("names", [g if g[0].startswith("igr") else pytest.param(g, marks=pytest.mark.slow)
                                   for g in golden.BATCHED_GROUPS])
def test_fit_many_trains_as_the_golden_file_says(names):
    fits = golden.batched_fits(names)
    for name in names:
        assert_matches_golden("batched", name, fits[name])


# -- parameter groups and masks -----------------------------------------------------------------

def _program_and_inputs(groups=None):
    config = golden.config("igr")
    cloud = golden.CLOUDS[0]
    fitter = Fitter(cloud, config)
    program = TrainProgram(StepStructure.of(config, len(cloud)))  # uncached: its groups are replaced
    if groups is not None:
        program.groups = groups
    setup = fitter.setup
    params = init_params(config.network, jax.random.PRNGKey(1))
    return program, params, (fitter.data, setup.weights, setup.key)


def _by_output_layer(params):
    """Group 1: the output layer; group 0: the rest."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: int(any(getattr(k, "key", None) == "output" for k in path)), params)


TWO_GROUPS = ParameterGroups(names=("hidden", "output"), learning_rate_scales=(1.0, 1.0), labels=_by_output_layer)


def _changed(before, after):
    return {"/".join(str(getattr(k, "key", k)) for k in path): bool(np.any(np.asarray(a) != np.asarray(b)))
            for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(before)[0], jax.tree_util.tree_leaves(after))}


def test_each_parameter_group_trains_at_its_own_rate_and_rates_are_values_not_recompiles():
    program, params, (data, weights, key) = _program_and_inputs(TWO_GROUPS)
    step = jax.jit(program.train_step)
    opt_state = program.init_optimizer(params)
    run = lambda rates: step(params, opt_state, np.int32(3), jnp.asarray(rates, jnp.float32), None, data, weights, key)
    frozen_output = run([1e-2, 0.0])[0]
    changed = _changed(params, frozen_output)
    assert not changed["params/output/kernel"] and not changed["params/output/bias"]
    assert changed["params/layer_0/kernel"] and changed["params/layer_1/kernel"]
    # The hidden group's update does not depend on the output group's rate...
    both = run([1e-2, 5e-3])[0]
    np.testing.assert_array_equal(both["params"]["layer_0"]["kernel"], frozen_output["params"]["layer_0"]["kernel"])
    # ...and the output group's update is its rate times Adam's direction.
    half = run([1e-2, 2.5e-3])[0]
    delta = lambda p: np.asarray(p["params"]["output"]["kernel"]) - np.asarray(params["params"]["output"]["kernel"])
    np.testing.assert_allclose(delta(both), 2 * delta(half), rtol=1e-4, atol=1e-9)
    assert step._cache_size() == 1  # three rate vectors, one compiled step


def test_one_group_with_a_single_rate_is_the_default_network():
    program, params, (data, weights, key) = _program_and_inputs()
    grouped, _, _ = _program_and_inputs(TWO_GROUPS)
    opt_state = program.init_optimizer(params)
    one = program.train_step(params, opt_state, np.int32(3), jnp.array([4e-3]), None, data, weights, key)[0]
    two = grouped.train_step(params, opt_state, np.int32(3), jnp.array([4e-3, 4e-3]), None, data, weights, key)[0]
    jax.tree_util.tree_map(np.testing.assert_array_equal, one, two)


def test_masks_scale_each_parameters_rate_at_that_step():
    program, params, (data, weights, key) = _program_and_inputs()
    opt_state = program.init_optimizer(params)
    masks = jax.tree_util.tree_map(jnp.ones_like, params)
    masks["params"]["layer_1"]["kernel"] = jnp.zeros_like(masks["params"]["layer_1"]["kernel"])
    rates = jnp.array([1e-2])
    masked = program.train_step(params, opt_state, np.int32(0), rates, masks, data, weights, key)[0]
    plain = program.train_step(params, opt_state, np.int32(0), rates, None, data, weights, key)[0]
    changed = _changed(params, masked)
    assert not changed["params/layer_1/kernel"] and changed["params/layer_0/kernel"]
    np.testing.assert_array_equal(masked["params"]["output"]["kernel"], plain["params"]["output"]["kernel"])


def test_the_schedule_gives_every_group_its_peak_times_its_scale():
    config = golden.config("igr")
    values = schedule_values(config)
    assert values["learning_rate"].shape == (1,)
    values = {**values, "learning_rate": values["learning_rate"] * np.array([1.0, 0.25], np.float32)}
    for step in (0, 5, 23):
        rates = np.asarray(learning_rates(jnp.int32(step), values))
        assert rates.shape == (2,) and rates[1] == pytest.approx(rates[0] / 4, rel=1e-6)


# -- one summary ---------------------------------------------------------------------------------

def test_fit_many_and_fitter_report_the_same_summary_keys():
    config = dataclasses.replace(golden.config("igr"), precision="default")
    cloud = golden.CLOUDS[0]
    alone = next(e.result for e in Fitter(cloud, config).run() if e.done)
    batched = next(e.event.result for e in fit_many([cloud], config) if e.event.done)
    assert set(batched.summary) == set(alone.summary) | {"shapes_in_program", "devices"}
    for key in ("matmul_precision", "chunk_steps", "seed_refreshes", "seed_refresh_overlap", "steps"):
        assert batched.summary[key] == alone.summary[key], key
    assert batched.summary["matmul_precision"] == "default"


def test_fit_many_trains_at_the_configs_precision_and_groups_by_it():
    import re

    from diffcd.batch import _Group, _Shape

    cloud = golden.CLOUDS[0]
    fast = dataclasses.replace(golden.config("igr"), precision="default")
    group = _Group([_Shape(0, cloud, fast)], jax.devices()[:1])
    text = group.program.lower(1, group.params, group.opt_state, np.int32(0), group.data, group.weights,
                               group.schedule, group.keys).as_text()
    dots = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    assert dots and all(re.search(r"precision = \[DEFAULT, DEFAULT\]", line) for line in dots)
    exact = dataclasses.replace(fast, precision="highest")
    assert _Shape(0, cloud, fast).group_key() != _Shape(0, cloud, exact).group_key()

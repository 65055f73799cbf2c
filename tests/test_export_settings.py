"""Exports keep a fit's own method settings, and hold no pickle by any measure that can see one."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import zipfile

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from _nopickle import pickle_findings
from diffcd import METHODS, FittedSDF, NetworkConfig, Normalization, load_sdf
from diffcd.export import export_sdf
from diffcd.networks import init_params

NETWORK = NetworkConfig(hidden_layers=2, width=16, skip_layers=())


def non_default(config_type):
    """The method's config with every field moved off its default."""
    changes = {}
    for field in dataclasses.fields(config_type):
        value = field.default
        if isinstance(value, bool):
            changes[field.name] = not value
        elif isinstance(value, int):
            changes[field.name] = value + 7
        elif isinstance(value, float):
            changes[field.name] = value * 1.5 + 0.125
    return config_type(**changes)


def fitted_with(method: str, method_config) -> FittedSDF:
    params = jax.device_get(init_params(NETWORK, jax.random.PRNGKey(0)))
    return FittedSDF(NETWORK, params, Normalization((0.5, 0.0, -1.0), 2.0), method, method_config, 77, 5)


@pytest.mark.parametrize("method", list(METHODS))
def test_export_brings_back_non_default_method_settings(method, tmp_path):
    settings = non_default(METHODS[method].config_type)
    assert settings != METHODS[method].config_type()
    export_sdf(fitted_with(method, settings), tmp_path)
    loaded = load_sdf(tmp_path)
    assert loaded.method == method and loaded.method_config == settings
    assert (loaded.steps, loaded.seed) == (77, 5)
    stored = json.loads((tmp_path / "config.json").read_text())["method_config"]
    assert stored == dataclasses.asdict(settings)


def test_export_holds_no_pickle(tmp_path):
    export_sdf(fitted_with("diffcd", METHODS["diffcd"].config_type()), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert pickle_findings(tmp_path) == []


class _Anything:
    pass


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_pickle_check_sees_every_protocol(protocol, tmp_path):
    path = tmp_path / "weights.dat"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0], "obj": _Anything}, protocol=protocol))
    assert pickle_findings(path)


def test_the_pickle_check_sees_pickles_hidden_in_numpy_zip_and_safetensors(tmp_path):
    np.save(tmp_path / "cloud.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "ckpt.zip", "w") as archive:
        archive.writestr("run/config.json", "{}")
        archive.writestr("run/state.pkl", b"")  # name alone
        archive.writestr("run/weights.dat", pickle.dumps([1, 2], protocol=4))  # content alone
    save_file({"w": np.zeros(4, np.float32)}, tmp_path / "model.safetensors")
    with open(tmp_path / "model.safetensors", "ab") as handle:
        handle.write(pickle.dumps("payload", protocol=2))
    findings = "\n".join(pickle_findings(tmp_path))
    for expected in ("cloud.npy: numpy file needs pickle", "state.pkl: a pickle-format file name",
                     "weights.dat: a pickle stream", "bytes beyond the safetensors tensors"):
        assert expected in findings, findings
    clean = io.BytesIO()
    np.save(clean, np.zeros((3, 3), np.float32))
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "c.npy").write_bytes(clean.getvalue())
    assert pickle_findings(tmp_path / "clean") == []

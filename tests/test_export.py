"""The safetensors + config.json export: bit-identical round trip, validation of foreign files."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from diffcd import FittedSDF, NetworkConfig, Normalization, load_sdf
from diffcd.errors import CheckpointError
from diffcd.export import export_sdf
from diffcd.methods import DiffCDConfig
from diffcd.networks import init_params

NETWORK = NetworkConfig(hidden_layers=3, width=32, skip_layers=(2,))


@pytest.fixture
def fitted():
    params = jax.device_get(init_params(NETWORK, jax.random.PRNGKey(7)))
    params = jax.tree_util.tree_map(
        lambda p: p + np.float32(1e-3) * np.random.default_rng(0).standard_normal(p.shape).astype(np.float32), params
    )
    return FittedSDF(NETWORK, params, Normalization((1.0, -2.0, 0.5), 3.0), "diffcd", DiffCDConfig(), 123, 4)


def test_round_trip_is_bit_identical_and_remeshes_the_same(fitted, tmp_path):
    export_sdf(fitted, tmp_path, metadata={"source": "unit test"})
    loaded = load_sdf(tmp_path)
    same = jax.tree_util.tree_map(lambda a, b: a.dtype == b.dtype and np.array_equal(a, b), fitted.params, loaded.params)
    assert all(jax.tree_util.tree_leaves(same))
    assert loaded.network == fitted.network and loaded.normalization == fitted.normalization
    assert (loaded.method, loaded.steps, loaded.seed, loaded.method_config) == ("diffcd", 123, 4, DiffCDConfig())
    a, b = fitted.extract_mesh(48), loaded.extract_mesh(48)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["schema_version"] == 1 and config["format"] == "diffcd-sdf"
    assert config["normalization"] == {"center": [1.0, -2.0, 0.5], "scale": 3.0}
    assert set(config["versions"]) >= {"diffcd", "jax", "flax"}
    assert config["metadata"] == {"source": "unit test"}


def test_sdf_is_reported_in_input_units(fitted):
    points = np.array([[1.0, -2.0, 0.5], [4.0, 0.0, 0.0]], np.float32)
    normalised = fitted.normalized(fitted.normalization.apply(points))
    np.testing.assert_allclose(fitted(points), normalised * 3.0, rtol=1e-6)


def _corrupt(tmp_path, fitted, edit):
    export_sdf(fitted, tmp_path)
    edit(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load_sdf(tmp_path)
    return str(caught.value)


def _edit_config(change):
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))

    return edit


def test_not_a_diffcd_config(tmp_path, fitted):
    message = _corrupt(tmp_path, fitted, _edit_config(lambda c: c.pop("format")))
    assert "not a diffcd checkpoint" in message


def test_unknown_schema_version(tmp_path, fitted):
    message = _corrupt(tmp_path, fitted, _edit_config(lambda c: c.update(schema_version=99)))
    assert "schema version 99" in message and "upgrade" in message


def test_shape_mismatch(tmp_path, fitted):
    message = _corrupt(tmp_path, fitted, _edit_config(lambda c: c["network"].update(width=64)))
    assert "shape" in message


def test_truncated_weights(tmp_path, fitted):
    def truncate(folder):
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])

    assert "truncated or corrupted" in _corrupt(tmp_path, fitted, truncate)


def test_nan_weights(tmp_path, fitted):
    def poison(folder):
        tensors = load_file(folder / "model.safetensors")
        tensors["params.output.bias"] = np.array([np.nan], np.float32)
        save_file(tensors, folder / "model.safetensors")

    assert "NaN" in _corrupt(tmp_path, fitted, poison)


def test_missing_files_and_invalid_json(tmp_path, fitted):
    with pytest.raises(CheckpointError, match="needs config.json"):
        load_sdf(tmp_path)
    message = _corrupt(tmp_path, fitted, lambda f: (f / "config.json").write_text("{not json"))
    assert "not valid JSON" in message


def test_no_pickle_anywhere(tmp_path, fitted):
    export_sdf(fitted, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    from _nopickle import pickle_findings  # protocol headers, opcode streams, numpy object arrays, zip members

    assert pickle_findings(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Hostile checkpoints: refused from config.json and the safetensors header, before reading or building


def _limit(tmp_path, fitted, edit, **limits):
    from diffcd.errors import LimitError
    from diffcd.export import NetworkLimits

    export_sdf(fitted, tmp_path)
    edit(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load_sdf(tmp_path, limits=NetworkLimits(**limits))
    assert isinstance(caught.value, LimitError), caught.value
    return str(caught.value)


@pytest.mark.parametrize("change, words", [
    (lambda c: c["network"].update(activation="sine", sine_omega=3000.0), ["omega = 3000", "1000"]),
    (lambda c: c["network"].update(width=16_384), ["16384 wide", "4096"]),
    (lambda c: c["network"].update(hidden_layers=1200, skip_layers=[]), ["1200 hidden layers", "64"]),
    (lambda c: c["network"].update(hidden_layers=60, width=4000, skip_layers=[]), ["parameters", "50,000,000"]),
])
def test_oversize_networks_are_refused_from_config_alone(tmp_path, fitted, change, words, monkeypatch):
    import diffcd.export as export

    read = []
    monkeypatch.setattr(export, "load_file", lambda *a, **k: read.append(a) or {})
    message = _limit(tmp_path, fitted, _edit_config(change))
    assert all(w in message for w in words), message
    assert not read  # the tensors were never read


def test_tighter_limits_for_a_server(tmp_path, fitted):
    message = _limit(tmp_path, fitted, lambda f: None, max_parameters=1000)
    assert "parameters, more than the 1,000 allowed" in message


def test_config_json_size_and_nesting_are_bounded_before_parsing(tmp_path, fitted):
    deep = lambda f: (f / "config.json").write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nests arrays or objects 100001 deep" in _limit(tmp_path, fitted, deep)
    big = lambda f: (f / "config.json").write_text(json.dumps({"format": "diffcd-sdf", "pad": "x" * 5000}))
    assert "more than the 4,096 allowed" in _limit(tmp_path, fitted, big, max_config_bytes=4096)


@pytest.mark.parametrize("field, value", [("steps", "ten"), ("steps", 1.5), ("seed", [1]), ("steps", True),
                                          ("network", {"width": "wide"}), ("network", {"skip_layers": "2"}),
                                          ("normalization", {"center": [0, 0], "scale": 1}),
                                          ("normalization", {"center": [0, 0, "a"], "scale": 1}),
                                          ("method", ["diffcd"]), ("method_config", {"eikonal_weight": "high"}),
                                          ("method_config", [1, 2]), ("metadata", "text")])
def test_wrong_types_anywhere_are_a_checkpoint_error(tmp_path, fitted, field, value):
    def change(config):
        if isinstance(value, dict) and isinstance(config.get(field), dict):
            config[field].update(value)
        else:
            config[field] = value

    message = _corrupt(tmp_path, fitted, _edit_config(change))
    assert "config.json" in message or "unknown method" in message, message


def _rewrite_header(folder, header_bytes: bytes, declared: int | None = None):
    data = (folder / "model.safetensors").read_bytes()
    length = int.from_bytes(data[:8], "little")
    body = data[8 + length:]
    size = len(header_bytes) if declared is None else declared
    (folder / "model.safetensors").write_bytes(size.to_bytes(8, "little") + header_bytes + body)


def test_safetensors_header_length_is_bounded_before_reading(tmp_path, fitted):
    message = _limit(tmp_path, fitted, lambda f: _rewrite_header(f, b"{}", declared=1 << 40))
    assert "declares a 1,099,511,627,776-byte header" in message


def test_safetensors_header_entries_are_checked_before_the_tensors(tmp_path, fitted):
    def lie(folder):
        data = (folder / "model.safetensors").read_bytes()
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        header["params.output.bias"]["data_offsets"] = [0, 1 << 40]
        _rewrite_header(folder, json.dumps(header).encode())

    assert "truncated or corrupted" in _corrupt(tmp_path, fitted, lie)


def test_weights_file_larger_than_its_network_is_not_read(tmp_path, fitted):
    grow = lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes() + bytes(2 << 20))
    assert "far more than" in _limit(tmp_path, fitted, grow)

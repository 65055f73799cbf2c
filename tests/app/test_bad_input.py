"""Every bad input gets a gr.Error whose sentence names the problem and what to do."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gradio_client import handle_file

from _apptest import app_error as _error, fit_args


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(500, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    paths = {}
    paths["junk.npy"] = tmp_path / "junk.npy"
    paths["junk.npy"].write_bytes(b"\x93NUMPY garbage \x00\x01\x02" * 20)
    paths["cloud.exe"] = tmp_path / "cloud.exe"
    paths["cloud.exe"].write_bytes(b"MZ\x90\x00")
    nan = sphere.copy()
    nan[7] = np.nan
    paths["nan.xyz"] = tmp_path / "nan.xyz"
    np.savetxt(paths["nan.xyz"], nan)
    paths["pickle.npy"] = tmp_path / "pickle.npy"
    np.save(paths["pickle.npy"], np.array([{"evil": 1}] * 60, dtype=object), allow_pickle=True)
    paths["few.xyz"] = tmp_path / "few.xyz"
    np.savetxt(paths["few.xyz"], sphere[:10])
    paths["big.npy"] = tmp_path / "big.npy"
    big = rng.normal(size=(60_000, 3)).astype(np.float32)
    np.save(paths["big.npy"], big / np.linalg.norm(big, axis=1, keepdims=True))
    paths["flat.stl"] = tmp_path / "flat.stl"
    paths["flat.stl"].write_text("solid empty\nendsolid empty\n")
    paths["marker"] = tmp_path / "executed"
    paths["reduce.pkl.npy"] = tmp_path / "reduce.npy"
    # a pickle that would create a file if it were ever unpickled
    payload = pickle.dumps(_Marker(str(paths["marker"])))
    paths["reduce.pkl.npy"].write_bytes(payload)
    return paths


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_fit_without_a_cloud(client):
    message = _error(client, "/fit", **fit_args(example=None))
    assert "Upload a point cloud or pick an example" in message


def test_unknown_example(client):
    # Gradio checks a dropdown's value against its choices before the handler runs
    message = _error(client, "/load_example", example="bunny")
    assert "bunny is not in the list of choices" in message and "torus" in message


@pytest.mark.parametrize("name, expected", [
    ("junk.npy", "junk.npy: could not be read"),
    ("cloud.exe", "Invalid file type. Please upload a file that is one of these formats"),
    ("nan.xyz", "NaN"),
    ("pickle.npy", "pickled Python objects, which diffcd never loads"),
    ("few.xyz", "points"),
    ("flat.stl", "flat.stl"),
])
def test_broken_uploads_are_refused_with_the_librarys_sentence(client, files, name, expected):
    message = _error(client, "/preview_cloud", cloud=handle_file(str(files[name])))
    assert expected in message, message


def test_uploads_are_never_unpickled(client, files):
    message = _error(client, "/fit", **fit_args(cloud=handle_file(str(files["reduce.pkl.npy"]))))
    assert "not a NumPy .npy file" in message
    assert not files["marker"].exists()


def test_a_cloud_above_the_limit_is_downsampled_and_the_user_told(client, files):
    preview, info = client.predict(cloud=handle_file(str(files["big.npy"])), api_name="/preview_cloud")
    assert preview.endswith(".glb")
    assert "50,000 points" in info and "60000 points is more than" in info and "subset" in info


@pytest.mark.parametrize("changes, expected", [
    ({"method": "marching-squares"}, "marching-squares is not in the list of choices"),
    ({"preset": "huge"}, "huge is not in the list of choices"),
    ({"steps": 0}, "Steps must lie between 1"),
    ({"mesh_resolution": 4096}, "Mesh resolution must lie between 16 and 512"),
    ({"method": "neural-pull", "area_weight": 0.3}, "Neural-Pull has no area term"),
    ({"eikonal_weight": -1.0}, "Eikonal weight must lie between 0"),
])
def test_bad_settings(client, changes, expected):
    assert expected in _error(client, "/fit", **fit_args(**changes))


def test_compare_needs_two_methods(client):
    message = _error(client, "/compare", cloud=None, example="torus", methods=["diffcd"], preset="test-tiny",
                     seed=0, steps=None)
    assert "Choose two to 4 methods" in message


def test_model_actions_need_a_model_first(client):
    for api_name, kwargs in (("/extract_mesh", {"resolution": 64}), ("/evaluate", {"ground_truth": None}),
                             ("/push_checkpoint", {"repo_id": "tester/x", "token": "t"})):
        assert "fit a cloud or pull a checkpoint first" in _error(client, api_name, **kwargs)

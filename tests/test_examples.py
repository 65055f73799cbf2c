"""The shipped examples: listed, loadable, watertight, small, and reproducible by their script."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from diffcd import examples
from diffcd.errors import ConfigError
from diffcd.io import load_mesh, load_point_cloud
from diffcd.metrics import cloud_surface_distances

MAX_TOTAL_BYTES = 5 * 1024 * 1024
ENTRIES = examples.list_examples()


def load_generator():
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  examples.EXAMPLES_DIR / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_index_lists_at_least_five_examples():
    assert len(ENTRIES) >= 5
    ids = [e["id"] for e in ENTRIES]
    assert len(set(ids)) == len(ids)
    assert {e["noise_level"] for e in ENTRIES} >= {"none", "medium", "max"}
    for entry in ENTRIES:
        assert entry["title"] and entry["description"]
        assert 20_000 <= entry["points"] <= 50_000


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_example_loads_and_matches_its_ground_truth(entry):
    cloud, mesh = examples.load_example(entry["id"])
    assert cloud.points.shape == (entry["points"], 3) and not cloud.downsampled
    assert examples.example_cloud_path(entry["id"]).name == entry["cloud"]
    assert load_point_cloud(examples.example_cloud_path(entry["id"])).points.shape == cloud.points.shape
    # Every GT mesh is a closed, consistently oriented solid (marching cubes of a padded grid,
    # or a revolved closed profile), with outward normals.
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    side = float(np.ptp(mesh.vertices, axis=0).max())
    assert side == pytest.approx(entry["bbox_longest_side"], rel=1e-6)
    distances = cloud_surface_distances(cloud, mesh, n_samples=5000)
    if entry["noise_level"] == "none":
        assert distances["cloud_to_surface_max"] < 1e-5 * side  # drawn from the mesh itself
    else:
        # Isotropic Gaussian noise: the normal component's |N(0, s)| has mean s * sqrt(2 / pi).
        expected = entry["noise_std"] * np.sqrt(2 / np.pi)
        assert distances["cloud_to_surface_mean"] == pytest.approx(expected, rel=0.1)
        assert entry["noise_std"] == pytest.approx(entry["noise_std_relative"] * side, rel=1e-3)


def test_total_size_is_under_five_megabytes():
    total = sum(p.stat().st_size for p in examples.EXAMPLES_DIR.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts)
    assert total < MAX_TOTAL_BYTES, f"examples/ holds {total / 1e6:.2f} MB"


def test_unknown_example_is_a_config_error():
    with pytest.raises(ConfigError, match="sphere"):
        examples.example_gt_path("no-such-example")


def test_generator_reproduces_the_shipped_files(tmp_path):
    entries = load_generator().build(tmp_path)
    shipped = json.loads((examples.EXAMPLES_DIR / "index.json").read_text())["examples"]
    assert entries == shipped
    assert (tmp_path / "index.json").read_text() == (examples.EXAMPLES_DIR / "index.json").read_text()
    for entry in entries:
        regenerated = load_point_cloud(tmp_path / entry["cloud"]).points
        original = load_point_cloud(examples.EXAMPLES_DIR / entry["cloud"]).points
        # Identical on this machine; the tolerance only allows for another CPU's last-bit
        # differences in sin/cos (trimesh's torus and revolve).
        np.testing.assert_allclose(regenerated, original, rtol=0, atol=1e-6 * entry["bbox_longest_side"])
    for name in {e["gt_mesh"] for e in entries}:
        regenerated, original = load_mesh(tmp_path / name), load_mesh(examples.EXAMPLES_DIR / name)
        np.testing.assert_array_equal(regenerated.faces, original.faces)
        np.testing.assert_allclose(regenerated.vertices, original.vertices, rtol=0, atol=1e-5)

"""Dataset discovery (both layouts) and the results table."""

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from diffcd import table
from diffcd.dataset import discover, shape_name
from diffcd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_examples_folder_is_a_dataset_with_noise_levels():
    shapes = {s.name: s for s in discover(REPO / "examples")}
    assert {"sphere", "torus", "bracket", "bracket-noise-medium", "torus-noise-max"} <= set(shapes)
    assert shapes["torus-noise-max"].noise_level == "max"
    assert shapes["bracket-noise-medium"].gt_mesh.name == "bracket_gt.ply"
    assert all(s.cloud.is_file() and s.gt_mesh.is_file() for s in shapes.values())


def make_paper_layout(root: Path, names=("bunny", "dragon", "only_cloud")):
    (root / "04_pts").mkdir(parents=True)
    (root / "03_meshes").mkdir()
    for name in names:
        np.save(root / "04_pts" / f"{name}.xyz.npy", np.zeros((60, 3), np.float32))
        if name != "only_cloud":
            trimesh.creation.box().export(root / "03_meshes" / f"{name}.ply")
    return root


def test_paper_layout_matches_clouds_and_meshes_by_name(tmp_path):
    shapes = discover(make_paper_layout(tmp_path / "famous_max_noise"))
    assert [s.name for s in shapes] == ["bunny", "dragon"]  # only_cloud has no mesh
    assert all(s.noise_level == "max" for s in shapes)
    assert shapes[0].cloud.name == "bunny.xyz.npy" and shapes[0].gt_mesh.name == "bunny.ply"
    assert discover(make_paper_layout(tmp_path / "famous_noisefree"))[0].noise_level == "none"
    assert discover(make_paper_layout(tmp_path / "mine"))[0].noise_level is None


def test_testset_listing_selects_shapes_and_names_missing_ones(tmp_path):
    root = make_paper_layout(tmp_path / "famous_med_noise")
    (root / "testset.txt").write_text("dragon\n")
    assert [s.name for s in discover(root)] == ["dragon"]
    (root / "testset.txt").write_text("dragon\nonly_cloud\n")
    with pytest.raises(ConfigError, match="only_cloud"):
        discover(root)


def test_index_cannot_point_outside_the_dataset(tmp_path):
    (tmp_path / "secret.ply").write_text("x")
    root = tmp_path / "data"
    root.mkdir()
    np.save(root / "a.npy", np.zeros((60, 3), np.float32))
    (root / "index.json").write_text(json.dumps({"examples": [{"id": "a", "cloud": "a.npy", "gt_mesh": "../secret.ply"}]}))
    with pytest.raises(ConfigError, match="outside the dataset folder"):
        discover(root)


def test_unknown_layouts_say_what_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        discover(tmp_path / "missing")
    with pytest.raises(ConfigError, match="index.json"):
        discover(tmp_path)


def test_shape_names_drop_every_known_suffix():
    assert shape_name(Path("bunny.xyz.npy")) == "bunny"
    assert shape_name(Path("v1.2_part.ply")) == "v1.2_part"


def test_table_units_means_medians_and_failures():
    scores = {"chamfer": 0.02, "chamfer_squared": 0.0008, "normal_angle_deg": 10.0, "fscore": 0.5, "hausdorff": 0.1}
    units = table.paper_units(scores, gt_scale=2.0)
    assert units["cd_x100"] == pytest.approx(1.0) and units["cd2_x1e4"] == pytest.approx(2.0)
    assert units["hausdorff_x100"] == pytest.approx(5.0)
    rows = [{"noise": "none", "setting": "DiffCD", "shape": s, "surface_found": True, "cd_x100": v,
             "cd2_x1e4": v, "normal_angle_deg": v, "fscore": v, "hausdorff_x100": v}
            for s, v in (("a", 1.0), ("b", 2.0), ("c", 6.0))]
    rows.append({"noise": "none", "setting": "DiffCD", "shape": "d", "surface_found": False})
    rows.append({"noise": "none", "setting": "IGR", "shape": "a", "surface_found": True, "cd_x100": 9.0})
    (diffcd, igr) = table.summarize(rows, settings=["DiffCD", "IGR"])
    assert diffcd["cd_x100_mean"] == pytest.approx(3.0) and diffcd["cd_x100_median"] == 2.0
    assert diffcd["shapes"] == 4 and diffcd["failed"] == 1
    text = table.markdown(rows, settings=["IGR", "DiffCD"])
    assert text.index("| IGR |") < text.index("| DiffCD | 3 (1 failed) | 3.000 / 2.000")

"""The method guide's conditions do what its page says, and its table reports what was run."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks import conditions, guide, guide_table


@pytest.fixture(scope="module")
def cube_points():
    return np.random.default_rng(0).uniform(-1, 1, size=(20_000, 3)).astype(np.float32)


def test_noise_has_the_stated_spread(cube_points):
    moved = conditions.degrade(cube_points, "noise-1") - cube_points
    assert np.std(moved) == pytest.approx(0.01 * 2.0, rel=0.05)  # 1 % of the longest side, 2


def test_sparse_keeps_five_percent_of_the_points(cube_points):
    kept = conditions.degrade(cube_points, "sparse")
    assert len(kept) == 1000
    assert {tuple(p) for p in kept[:50]} <= {tuple(p) for p in cube_points}


def test_partial_cuts_away_one_side(cube_points):
    kept = conditions.degrade(cube_points, "partial")
    assert kept[:, 0].max() <= -1 + 0.75 * 2 + 1e-4
    assert 0.7 < len(kept) / len(cube_points) < 0.8


def test_scanner_is_uneven_and_has_outliers(cube_points):
    scanned = conditions.degrade(cube_points, "scanner")
    low_side = np.sum(scanned[:, 1] < -0.5)
    high_side = np.sum(scanned[:, 1] > 0.5)
    assert high_side < 0.5 * low_side
    outside = np.any(np.abs(scanned) > 1.0, axis=1)
    assert 0 < outside.sum() < 0.01 * len(cube_points)


def test_conditions_are_repeatable(cube_points):
    for condition in conditions.CONDITIONS:
        np.testing.assert_array_equal(conditions.degrade(cube_points, condition),
                                      conditions.degrade(cube_points, condition))


def test_plan_runs_every_cell_once_cheapest_first():
    cells = guide.plan(["poisson", *guide.NEURAL], list(conditions.CLOUDS), list(conditions.CONDITIONS))
    keys = [guide.cell_key(c) for c in cells]
    assert len(keys) == len(set(keys)) == 24 + 24 * 2 + 3 * 4
    assert cells[0]["method"] == "poisson" and cells[-1]["method"] == "diffcd" and cells[-1]["seed"] == 1


def test_table_bolds_the_lower_chamfer_and_averages_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(guide_table, "PAGE", tmp_path / "guide.md")
    base = {"cloud": "bunny", "condition": "clean", "hausdorff_percent": 2.0, "normal_angle_deg": 10.0,
            "fscore": 0.9, "wall_seconds": 10.0, "cpu_seconds": 15.0, "load_before": 1.0, "load_after": 1.5}
    rows = [{**base, "method": "poisson", "seed": 0, "chamfer_percent": 0.5},
            {**base, "method": "diffcd", "seed": 0, "chamfer_percent": 0.4, "preset": "cpu-quick"},
            {**base, "method": "diffcd", "seed": 1, "chamfer_percent": 0.6, "preset": "cpu-quick"}]
    guide_table.write_page(rows)
    page = (tmp_path / "guide.md").read_text()
    assert "| clean | **0.500** / 0.500 |" in page  # a tie goes to the classical method
    assert "0.500 (0.400, 0.600)" in page
    assert "| 10.0 | 15 |" in page
    rows[0]["load_after"] = 4.0  # timed beside another job: its wall time is not published
    rows[1]["wall_seconds"], rows[2]["load_before"] = 30.0, 3.0  # of DiffCD's seeds, only seed 0's
    guide_table.write_page(rows)
    page = (tmp_path / "guide.md").read_text()
    assert "| busy | 15 |" in page and "| 30.0 | 15 |" in page
    rows[2]["chamfer_percent"] = 0.5
    guide_table.write_page(rows)
    assert "| clean | 0.500 / **0.450** |" in (tmp_path / "guide.md").read_text()


def _recorded(cloud: str, condition: str, method: str) -> float:
    row = next(r for r in guide.read_rows() if guide.cell_key(r) == (cloud, condition, method, 0))
    return row["chamfer_percent"]


@pytest.mark.slow
@pytest.mark.parametrize("cloud, condition, winner, loser", [
    ("goblet", "noise-1", "poisson", "diffcd"),  # an open surface with 1 % noise: the classical method is ahead
    ("bunny", "sparse", "diffcd", "poisson"),    # 2,500 points: the neural fit is ahead
])
def test_the_guide_cells_the_readme_cites_repeat(cloud, condition, winner, loser):
    """Two cells of the method guide run again: each method's Chamfer distance near the recorded
    one, and the same method ahead, as README's "Which method?" says."""
    fresh = {}
    for method in (winner, loser):
        row = guide.run_cell({"cloud": cloud, "condition": condition, "method": method, "seed": 0}, "cpu-quick")
        fresh[method] = row["chamfer_percent"]
        assert fresh[method] == pytest.approx(_recorded(cloud, condition, method), rel=0.15)
    assert fresh[winner] < fresh[loser]


def test_the_readme_shows_the_guide_table_as_measured():
    """README's "Which method?" table is the results page's summary of benchmarks/results/guide-cpu.json."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = readme.split("<!-- guide-table -->\n", 1)[1].split("\n<!-- /guide-table -->", 1)[0]
    measured = guide_table.summary_lines(guide_table.combine(guide.read_rows()))
    assert shown.splitlines() == measured
    assert "not yet run" not in shown

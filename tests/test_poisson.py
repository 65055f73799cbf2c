"""Screened Poisson (diffcd.poisson): analytic surfaces, open and noisy clouds, the child's bounds,
bad inputs, and the run folder that `fit --method poisson` and `bench` write."""

import json
import time

import numpy as np
import pytest
import trimesh

from diffcd import metrics, poisson
from diffcd.errors import ConfigError, DiffCDError, LimitError, PointCloudError, TimeLimitError
from diffcd.methods import ALL_METHODS, METHODS, RECONSTRUCTORS, get_method, is_reconstructor

pytestmark = pytest.mark.skipif(not poisson.available(),
                                reason="Open3D is not installed (pip install -e '.[poisson]')")

SMALL = poisson.PoissonConfig(depth=6)


def sphere_points(n, seed=0):
    points = np.random.default_rng(seed).normal(size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def torus_points(n, R=1.0, r=0.3, seed=0):
    u, v = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=(2, n))
    return np.stack([(R + r * np.cos(v)) * np.cos(u), (R + r * np.cos(v)) * np.sin(u), r * np.sin(v)], axis=1)


def sphere_distance(p):
    return np.abs(np.linalg.norm(p, axis=1) - 1.0)


def torus_distance(p, R=1.0, r=0.3):
    return np.abs(np.hypot(np.hypot(p[:, 0], p[:, 1]) - R, p[:, 2]) - r)


def chamfer_to_analytic(mesh, samples, distance):
    """Symmetric Chamfer of a mesh against an analytic surface: mesh samples by the closed-form
    distance, samples of the analytic surface by their exact distance to the mesh."""
    on_mesh = trimesh.sample.sample_surface(mesh, 20_000, seed=0)[0]
    to_mesh = metrics.cloud_surface_distances(samples, mesh)["cloud_to_surface_mean"]
    return 0.5 * (distance(on_mesh).mean() + to_mesh)


@pytest.mark.parametrize("points, distance, tolerance", [
    (sphere_points(4000), sphere_distance, 0.003),  # measured 0.0015: 0.15 % of the diameter 2
    (torus_points(4000), torus_distance, 0.002),  # measured 0.0009: 0.08 % of the longest side 2.6
], ids=["sphere", "torus"])
def test_analytic_surfaces_within_tolerance(points, distance, tolerance):
    result = poisson.reconstruct(points, config=SMALL)
    assert chamfer_to_analytic(result.mesh, points[::2], distance) < tolerance
    assert result.mesh.volume > 0  # wound outward
    summary = result.summary
    assert summary["normals"] == "estimated" and summary["poisson"]["depth"] == 6
    assert all(summary[k] >= 0 for k in ("normals_seconds", "solve_seconds", "trim_seconds", "fit_seconds"))


def test_given_normals_are_used_and_depth_follows_the_point_count():
    points = sphere_points(3000)
    result = poisson.reconstruct(points, points, config=SMALL)  # a unit sphere's normals are its points
    assert result.summary["normals"] == "given"
    assert chamfer_to_analytic(result.mesh, points, sphere_distance) < 0.002  # measured 0.0008
    assert [poisson.default_depth(n) for n in (1_000, 20_000, 65_000, 200_000, 5_000_000)] == [5, 8, 8, 9, 10]


def test_open_surface_comes_back_as_a_surface_near_its_points():
    # A hemisphere: Poisson closes it; trimming 2 % keeps the cap (measured: 19 % of the area
    # lies below z = -0.05, none below -0.5), so the mesh is near the points and bulges under them.
    points = sphere_points(6000)
    points = points[points[:, 2] > 0]
    mesh = poisson.reconstruct(points, config=SMALL).mesh
    distances = metrics.cloud_surface_distances(points, mesh)
    assert distances["cloud_to_surface_mean"] < 0.005  # the points lie on the surface
    on_mesh = trimesh.sample.sample_surface(mesh, 20_000, seed=0)[0]
    assert (on_mesh[:, 2] < -0.5).mean() < 0.01  # no second half is invented


def test_noisy_cloud_gives_a_smooth_surface():
    points = sphere_points(4000)
    noisy = points + np.random.default_rng(1).normal(scale=0.01 * 2, size=points.shape)  # 1 % of the side
    mesh = poisson.reconstruct(noisy, config=SMALL).mesh
    # measured 0.0069, below the noise's own mean distance of 0.016 from the sphere
    assert chamfer_to_analytic(mesh, points, sphere_distance) < 0.01


def test_should_stop_kills_the_child_quickly():
    deadline = time.perf_counter() + 1.0
    start = time.perf_counter()
    with pytest.raises(TimeLimitError, match="stopped before it finished"):
        poisson.reconstruct(sphere_points(20_000), config=poisson.PoissonConfig(depth=10),
                            should_stop=lambda: time.perf_counter() > deadline)
    assert time.perf_counter() - start < 3.0


def test_time_limit_is_a_sentence():
    with pytest.raises(TimeLimitError, match=r"time limit of 0\.5 s .* lower the octree depth"):
        poisson.reconstruct(sphere_points(20_000), config=poisson.PoissonConfig(depth=10), time_limit_s=0.5)


def test_memory_limit_is_a_sentence():
    with pytest.raises(LimitError, match=r"memory limit of .* GB at depth 9; lower the octree depth"):
        poisson.reconstruct(sphere_points(20_000), config=poisson.PoissonConfig(depth=9), memory_bytes=30 << 20)


def test_face_limit_is_a_sentence():
    with pytest.raises(LimitError, match=r"more than the limit of 1,000; lower the octree depth"):
        poisson.reconstruct(sphere_points(3000), config=SMALL, max_faces=1000)


@pytest.mark.parametrize("points, kwargs, error, message", [
    (sphere_points(20), {}, PointCloudError, "at least 51 points"),
    (np.where(np.arange(300)[:, None] == 7, np.nan, sphere_points(300)), {}, PointCloudError, "1 of the 300 points have NaN"),
    (sphere_points(300)[:, :2], {}, PointCloudError, r"shape \(N, 3\)"),
    (sphere_points(300), {"max_points": 100}, LimitError, "at most 100"),
    (sphere_points(300), {"normals": np.zeros((3, 3))}, PointCloudError, "normals must be finite"),
], ids=["too-few", "nan", "2d", "too-many", "bad-normals"])
def test_bad_inputs_are_sentences_before_any_child(points, kwargs, error, message):
    with pytest.raises(error, match=message):
        poisson.reconstruct(points, **kwargs)


def test_bad_settings_are_config_errors():
    for bad in ({"depth": 0}, {"depth": 13}, {"trim_quantile": 1.0}, {"normal_neighbors": 2}, {"scale": 0.5}):
        with pytest.raises(ConfigError):
            poisson.PoissonConfig(**bad)
    assert poisson.PoissonConfig(depth=9.0).depth == 9  # "poisson:depth=9" in bench parses as a float


def test_registry_offers_poisson_without_making_it_a_loss():
    assert list(ALL_METHODS) == [*METHODS, *RECONSTRUCTORS] and "poisson" in ALL_METHODS
    assert "poisson" not in METHODS and is_reconstructor("poisson") and not is_reconstructor("diffcd")
    with pytest.raises(ConfigError, match="is not trained"):
        get_method("poisson")


def test_cli_fit_writes_the_run_folder_and_mesh_push_say_there_is_no_network(tmp_path, capsys):
    from diffcd.cli import main
    from diffcd_hub.errors import NotACheckpointError
    from diffcd_hub.push import prepare_files

    cloud = tmp_path / "ball.npy"
    np.save(cloud, sphere_points(3000).astype(np.float32))
    gt = tmp_path / "ball.ply"
    trimesh.creation.icosphere(4).export(gt)
    run = tmp_path / "run"
    assert main(["fit", str(cloud), "--method", "poisson", "--depth", "6", "--gt-mesh", str(gt),
                 "--out", str(run), "--quiet"]) == 0
    assert {p.name for p in run.iterdir()} == {"mesh.ply", "mesh.glb", "summary.json", "eval.json",
                                                "cloud_distances.json", "cloud.npy"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "poisson" and summary["surface_found"] and summary["eval"]["chamfer"] < 0.02
    assert {"normals_seconds", "solve_seconds", "trim_seconds", "fit_seconds"} <= set(summary)

    capsys.readouterr()
    assert main(["mesh", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is a Screened Poisson run" in err and "no network" in err
    assert main(["eval", str(run), str(gt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chamfer"] == pytest.approx(summary["eval"]["chamfer"], rel=0.05)
    assert main(["fit", str(cloud), "--method", "poisson", "--steps", "5", "--out", str(tmp_path / "x")]) == 2
    assert "--steps does not apply to Screened Poisson" in capsys.readouterr().err
    with pytest.raises(NotACheckpointError, match="Screened Poisson run: it has a mesh .* but no network"):
        prepare_files(run, "someone/ball")


def test_bench_runs_poisson_next_to_a_neural_method(tmp_path):
    from test_bench import TINY_ARGS, make_dataset, read_rows

    from diffcd.cli import main

    data, out = make_dataset(tmp_path / "data", names=("ball",)), tmp_path / "table"
    assert main(["bench", str(data), "--methods", "igr", "poisson:depth=6", "--out", str(out), *TINY_ARGS]) == 0
    rows = {r["setting"]: r for r in read_rows(out / "rows.csv")}
    assert set(rows) == {"IGR", "Screened Poisson depth=6"}
    poisson_row = rows["Screened Poisson depth=6"]
    assert poisson_row["steps"] == "0" and float(poisson_row["cd_x100"]) > 0 and float(poisson_row["fit_seconds"]) > 0
    assert "| Screened Poisson depth=6 | 1 |" in (out / "summary.md").read_text()

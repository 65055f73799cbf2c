"""diffcd.metrics against independent NumPy computations and shapes with known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from diffcd.errors import MeshError, PointCloudError
from diffcd.io import points_from_array
from diffcd.metrics import cloud_surface_distances, evaluate_mesh, sample_surface

KEYS = {"chamfer", "chamfer_squared", "normal_angle_deg", "hausdorff", "fscore", "fscore_threshold",
        "precision", "recall"}


def sphere(radius=1.0, subdivisions=4, center=(0.0, 0.0, 0.0)):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(center)
    return mesh


def square(z=0.0):
    return trimesh.Trimesh([[0, 0, z], [1, 0, z], [1, 1, z], [0, 1, z]], [[0, 1, 2], [0, 2, 3]],
                           process=False)


def brute_force_metrics(estimate, ground_truth, n, seed, threshold):
    """The section 7 metrics from the same samples, with dense NumPy distance matrices."""
    gt_points, gt_normals = sample_surface(ground_truth, n, seed=seed)
    est_points, est_normals = sample_surface(estimate, n, seed=seed)
    distances = np.sqrt(((gt_points[:, None, :] - est_points[None, :, :]) ** 2).sum(-1))
    nn_gt, nn_est = distances.argmin(axis=1), distances.argmin(axis=0)
    d_gt, d_est = distances.min(axis=1), distances.min(axis=0)

    def angle(sign):
        a = np.degrees(np.arccos(np.clip((gt_normals * sign * est_normals[nn_gt]).sum(1), -1, 1)))
        b = np.degrees(np.arccos(np.clip((sign * est_normals * gt_normals[nn_est]).sum(1), -1, 1)))
        return (a.mean() + b.mean()) / 2

    precision, recall = np.mean(d_est < threshold), np.mean(d_gt < threshold)
    return {
        "chamfer": (d_gt.mean() + d_est.mean()) / 2,
        "chamfer_squared": ((d_gt**2).mean() + (d_est**2).mean()) / 2,
        "normal_angle_deg": min(angle(1.0), angle(-1.0)),
        "hausdorff": max(d_gt.max(), d_est.max()),
        "precision": precision,
        "recall": recall,
        "fscore": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
    }


# ----------------------------------------------------------------------------------------------
# sample_surface


def test_samples_lie_on_the_surface_with_outward_unit_normals():
    mesh = sphere(2.0, subdivisions=3)
    points, normals = sample_surface(mesh, 5000, seed=1)
    assert points.shape == normals.shape == (5000, 3)
    radius = np.linalg.norm(points, axis=1)
    inradius = np.abs((mesh.triangles_center * mesh.face_normals).sum(1)).min()
    assert radius.max() <= 2.0 + 1e-9 and radius.min() >= inradius - 1e-9
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    assert ((normals * points).sum(1) > 0).all()


def test_samples_are_area_uniform_and_seeded():
    box = trimesh.creation.box(extents=(1.0, 2.0, 4.0))  # faces normal to x/y/z: areas 8, 4, 2
    points, normals = sample_surface(box, 40_000, seed=0)
    shares = [np.mean(np.abs(normals[:, axis]) > 0.5) for axis in range(3)]
    # Binomial standard error at n = 40k is below 0.0025; allow four of them.
    np.testing.assert_allclose(shares, [16 / 28, 8 / 28, 4 / 28], atol=0.01)
    again, _ = sample_surface(box, 40_000, seed=0)
    other, _ = sample_surface(box, 40_000, seed=1)
    np.testing.assert_array_equal(points, again)
    assert not np.array_equal(points, other)


def test_zero_area_faces_are_never_sampled():
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]], [[0, 1, 3], [0, 1, 2]],
                           process=False)  # face 0 is degenerate (collinear)
    points, normals = sample_surface(mesh, 2000, seed=0)
    np.testing.assert_allclose(normals, np.tile([0, 0, 1.0], (2000, 1)))
    assert (points[:, 0] + points[:, 1] <= 1 + 1e-12).all()


def test_meshes_without_area_are_rejected():
    with pytest.raises(MeshError, match="no triangles"):
        sample_surface(trimesh.Trimesh(vertices=np.eye(3)), 10)
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    with pytest.raises(MeshError, match="zero surface area"):
        sample_surface(flat, 10)
    with pytest.raises(MeshError, match="no triangles"):
        evaluate_mesh(trimesh.Trimesh(vertices=np.eye(3)), sphere())


# ----------------------------------------------------------------------------------------------
# evaluate_mesh


@pytest.mark.parametrize("pair", ["spheres", "shifted", "inverted", "torus-vs-sphere"])
def test_evaluate_mesh_equals_brute_force(pair):
    torus = trimesh.creation.torus(0.8, 0.3, major_sections=32, minor_sections=16)
    inverted = sphere(1.0, 3)
    inverted.invert()
    estimate, ground_truth = {
        "spheres": (sphere(1.05, 3), sphere(1.0, 2)),
        "shifted": (sphere(1.0, 3, center=(0.03, -0.02, 0.01)), sphere(1.0, 3)),
        "inverted": (inverted, sphere(1.0, 2)),
        "torus-vs-sphere": (torus, sphere(0.9, 3)),
    }[pair]
    scores = evaluate_mesh(estimate, ground_truth, n_samples=1500, fscore_threshold=0.04, seed=3)
    assert set(scores) == KEYS and all(isinstance(v, float) for v in scores.values())
    expected = brute_force_metrics(estimate, ground_truth, 1500, 3, 0.04)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert scores["fscore_threshold"] == 0.04


def test_concentric_spheres_chamfer_is_the_radius_gap():
    r1, r2 = 1.0, 1.1
    scores = evaluate_mesh(sphere(r2, 4), sphere(r1, 5), n_samples=30_000, seed=0)
    # Why 2e-3: every sample of the r1 mesh lies at a radius in [r1 - 3e-4, r1] and every sample
    # of the r2 mesh in [r2 - 1.3e-3, r2] (icosphere chord sag), so no distance is below
    # r2 - r1 - 1.3e-3. A nearest sample is also offset sideways by l, with E[l^2] = 1/(pi rho)
    # at density rho = 30k / (4 pi r2^2) ~ 2000: that adds about E[l^2] / (2 (r2 - r1)) ~ 8e-4.
    assert scores["chamfer"] == pytest.approx(r2 - r1, abs=2e-3)
    assert scores["chamfer_squared"] == pytest.approx((r2 - r1) ** 2, abs=4e-4)
    assert r2 - r1 - 1.3e-3 <= scores["hausdorff"] <= r2 - r1 + 0.02
    assert scores["normal_angle_deg"] < 2.0  # neighbouring faces' normals differ by ~2.4 degrees
    assert scores["fscore_threshold"] == pytest.approx(0.01 * 2 * r1)  # 1% of the GT bbox side
    assert scores["fscore"] == 0.0  # every distance exceeds 0.02
    loose = evaluate_mesh(sphere(r2, 4), sphere(r1, 5), fscore_threshold=0.15)
    assert loose["fscore"] == loose["precision"] == loose["recall"] == 1.0


def test_identical_meshes_score_perfectly():
    mesh = sphere(1.0, 4)
    scores = evaluate_mesh(mesh, mesh.copy())
    assert scores["chamfer"] == scores["chamfer_squared"] == scores["hausdorff"] == 0.0
    assert scores["normal_angle_deg"] < 1e-5
    assert scores["fscore"] == scores["precision"] == scores["recall"] == 1.0


def test_square_shifted_along_its_normal():
    # Same face layout and seed: each sample of the shifted copy sits exactly t above one of the
    # original's, and no sample of a plane at distance t can be nearer than t.
    t = 0.05
    scores = evaluate_mesh(square(t), square(0.0), n_samples=5000)
    assert scores["chamfer"] == pytest.approx(t, rel=1e-9)
    assert scores["chamfer_squared"] == pytest.approx(t**2, rel=1e-9)
    assert scores["hausdorff"] == pytest.approx(t, rel=1e-9)
    assert scores["normal_angle_deg"] == pytest.approx(0.0, abs=1e-6)
    assert evaluate_mesh(square(t), square(0.0), fscore_threshold=0.9 * t)["fscore"] == 0.0
    assert evaluate_mesh(square(t), square(0.0), fscore_threshold=1.1 * t)["fscore"] == 1.0


def test_fscore_with_a_spurious_part():
    # The estimate is the GT sphere plus a far-away copy of equal area: half of the estimate's
    # samples (binomial, std 0.003 at n = 30k) are off the GT, so precision ~ 1/2, recall = 1 and
    # F = 2 * 0.5 * 1 / 1.5 = 2/3. The threshold (0.1) is far above the sample spacing (~0.03 on
    # the estimate's half-density GT part), so no GT sample misses the estimate by chance.
    gt = sphere(1.0, 4)
    estimate = trimesh.util.concatenate([gt, sphere(1.0, 4, center=(5.0, 0.0, 0.0))])
    scores = evaluate_mesh(estimate, gt, fscore_threshold=0.1)
    assert scores["recall"] == 1.0
    assert scores["precision"] == pytest.approx(0.5, abs=0.015)
    assert scores["fscore"] == pytest.approx(2 / 3, abs=0.015)
    assert scores["hausdorff"] == pytest.approx(5.0, abs=0.01)  # from (6, 0, 0) to (1, 0, 0)


def test_normal_flip_rule():
    gt = sphere(1.0, 4)
    inside_out = gt.copy()
    inside_out.invert()
    # Neighbouring samples on the sphere differ by well under a degree; inside-out is forgiven.
    assert evaluate_mesh(inside_out, gt)["normal_angle_deg"] < 1.0
    # Without the rule the angle would be ~180 degrees: check the raw angles are that large.
    _, gt_normals = sample_surface(gt, 1000)
    _, out_normals = sample_surface(inside_out, 1000)
    assert np.degrees(np.arccos(np.clip((gt_normals * out_normals).sum(1), -1, 1))).mean() > 179
    # A partly flipped mesh: the rule keeps min(a, 180 - a), never above 90.
    half = gt.copy()
    faces = half.faces.copy()
    upper = half.triangles_center[:, 2] > 0.3
    faces[upper] = faces[upper][:, ::-1]
    half.faces = faces
    partial = evaluate_mesh(half, gt)["normal_angle_deg"]
    share = np.mean(sample_surface(half, 30_000)[0][:, 2] > 0.3)
    assert partial == pytest.approx(180 * min(share, 1 - share), abs=2.0)


def test_evaluate_mesh_is_deterministic_and_fast():
    estimate, gt = sphere(1.02, 5), trimesh.creation.torus(1.0, 0.4, 64, 32)
    start = time.perf_counter()
    first = evaluate_mesh(estimate, gt, seed=7)
    assert time.perf_counter() - start < 5.0  # ~0.2 s alone; generous for a busy machine
    assert first == evaluate_mesh(estimate, gt, seed=7)
    assert first != evaluate_mesh(estimate, gt, seed=8)


def test_bad_threshold():
    with pytest.raises(ValueError, match="fscore_threshold"):
        evaluate_mesh(sphere(), sphere(), fscore_threshold=-1.0)


# ----------------------------------------------------------------------------------------------
# cloud_surface_distances


def box_distance(points, half):
    """Exact unsigned distance to the surface of an axis-aligned box centred at the origin."""
    q = np.abs(points) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = -np.minimum(q.max(axis=1), 0)
    return np.where(q.max(axis=1) > 0, outside, inside)


def test_cloud_to_surface_is_exact_on_a_box():
    half = np.array([0.5, 1.0, 2.0])
    box = trimesh.creation.box(extents=2 * half)  # 12 large triangles
    points = np.random.default_rng(0).uniform(-3, 3, size=(3000, 3))
    result = cloud_surface_distances(points, box, n_samples=2000, seed=1)
    expected = box_distance(points, half)
    assert result["cloud_to_surface_mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert result["cloud_to_surface_max"] == pytest.approx(expected.max(), rel=1e-9)
    samples, _ = sample_surface(box, 2000, seed=1)
    to_cloud = np.sqrt(((samples[:, None] - points[None]) ** 2).sum(-1)).min(axis=1)
    assert result["surface_to_cloud_mean"] == pytest.approx(to_cloud.mean(), rel=1e-9)
    assert result["surface_to_cloud_max"] == pytest.approx(to_cloud.max(), rel=1e-9)


def test_cloud_to_surface_matches_brute_force_on_a_fine_mesh():
    mesh = trimesh.creation.torus(1.0, 0.3, 48, 24)
    rng = np.random.default_rng(2)
    points = sample_surface(mesh, 600, seed=5)[0] + rng.normal(scale=0.05, size=(600, 3))
    result = cloud_surface_distances(points, mesh)
    _, expected, _ = trimesh.proximity.closest_point_naive(mesh, points)
    assert result["cloud_to_surface_mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert result["cloud_to_surface_max"] == pytest.approx(expected.max(), rel=1e-9)


def test_points_on_the_surface_have_zero_distance_and_cloud_objects_work():
    mesh = sphere(1.0, 3)
    points, _ = sample_surface(mesh, 20_000, seed=9)
    result = cloud_surface_distances(points_from_array(points), mesh)
    assert result["cloud_to_surface_max"] < 1e-6  # float32 storage of the points
    assert set(result) == {"cloud_to_surface_mean", "cloud_to_surface_max",
                           "surface_to_cloud_mean", "surface_to_cloud_max"}
    # The cloud covers the sphere, so surface samples are at most a few spacings from it.
    assert result["surface_to_cloud_max"] < 0.1


def test_cloud_surface_distances_rejects_bad_points():
    with pytest.raises(PointCloudError, match="NaN"):
        cloud_surface_distances(np.array([[0.0, 0.0, np.nan]]), sphere())
    with pytest.raises(PointCloudError, match=r"\(N, 3\)"):
        cloud_surface_distances(np.zeros((5, 2)), sphere())
    with pytest.raises(MeshError):
        cloud_surface_distances(np.zeros((5, 3)), trimesh.Trimesh(vertices=np.eye(3)))


def test_far_points_are_within_one_percent():
    # Points hundreds of triangle sizes away keep the first-pass bound: never too small, at most
    # 1% too large (the documented trade-off that keeps far clouds fast).
    mesh = sphere(1.0, 4)
    directions = np.random.default_rng(4).normal(size=(300, 3))
    points = 6.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True) + [0.5, 0, 0]
    _, expected, _ = trimesh.proximity.closest_point_naive(mesh, points)
    result = cloud_surface_distances(points, mesh, n_samples=2000)
    for key, value in (("mean", expected.mean()), ("max", expected.max())):
        assert value - 1e-12 <= result[f"cloud_to_surface_{key}"] <= 1.01 * value


def test_nearest_distances_match_brute_force():
    from diffcd.metrics import nearest_distances

    rng = np.random.default_rng(3)
    queries, points = rng.normal(size=(200, 3)), rng.normal(size=(500, 3))
    brute = np.linalg.norm(queries[:, None] - points[None], axis=-1).min(axis=1)
    np.testing.assert_allclose(nearest_distances(queries, points), brute, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# the paper's protocol and units


def test_paper_protocol_keeps_chamfer_and_adds_its_hausdorff_values():
    estimate, truth = sphere(1.05, 3), sphere(1.0, 3)
    ours = evaluate_mesh(estimate, truth, n_samples=3000, seed=2)
    paper = evaluate_mesh(estimate, truth, n_samples=3000, seed=2, protocol="paper")
    assert set(paper) == KEYS | {"hausdorff_squared", "hausdorff_normal_angle_deg"}
    for key in ("chamfer", "chamfer_squared", "normal_angle_deg", "fscore"):
        assert paper[key] == ours[key], key
    # Hausdorff on a second draw: another value, the same size (a sphere 0.05 larger).
    assert paper["hausdorff"] != ours["hausdorff"] and 0.04 < paper["hausdorff"] < 0.12
    assert paper["hausdorff_squared"] == pytest.approx(paper["hausdorff"] ** 2)
    # The worst angle of a torus against a sphere is far above the mean.
    torus = trimesh.creation.torus(0.8, 0.3, major_sections=32, minor_sections=16)
    apart = evaluate_mesh(torus, truth, n_samples=3000, protocol="paper")
    assert apart["hausdorff_normal_angle_deg"] > apart["normal_angle_deg"] + 20
    with pytest.raises(ValueError, match="protocol"):
        evaluate_mesh(estimate, truth, protocol="theirs")


def test_paper_units_scale_to_a_unit_longest_side():
    small, large = sphere(1.05, 3), sphere(1.0, 3)
    scores = evaluate_mesh(small, large, n_samples=2000, protocol="paper")
    scaled = evaluate_mesh(small.copy().apply_scale(10.0), large.copy().apply_scale(10.0),
                           n_samples=2000, protocol="paper")
    from diffcd.metrics import paper_units

    a, b = paper_units(scores, 2.0), paper_units(scaled, 20.0)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-5), key  # angles: rounding only
    assert a["chamfer_x100"] == pytest.approx(100 * scores["chamfer"] / 2.0)
    assert a["chamfer_squared_x1e4"] == pytest.approx(1e4 * scores["chamfer_squared"] / 4.0)

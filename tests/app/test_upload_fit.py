"""A fit of an uploaded cloud through gradio_client, followed the way a user follows it: the progress
(steps/s, ETA) while it trains, the surface it returns, the checkpoint zip it offers (loaded with
diffcd.load_sdf and re-meshed to the same surface) and /evaluate against an uploaded ground truth
(the library's numbers)."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import trimesh

from _apptest import TINY_PRESET, fit_args
from _nopickle import pickle_findings

STEPS = 150
SEMI_AXES = np.array([1.0, 0.6, 0.4])


@pytest.fixture(scope="module")
def uploaded_fit(app_url, tmp_path_factory):
    """An IGR fit of an uploaded ellipsoid cloud (.xyz); returns (client, updates, final, folder)."""
    from gradio_client import Client, handle_file

    folder = tmp_path_factory.mktemp("upload-fit")
    ellipsoid = trimesh.creation.icosphere(subdivisions=4).apply_scale(SEMI_AXES)
    ellipsoid.apply_translation([3.0, -1.0, 2.0])  # not centred: the app must map back to input coordinates
    ellipsoid.export(folder / "ellipsoid_gt.ply")
    np.savetxt(folder / "ellipsoid.xyz", ellipsoid.sample(3000, seed=0), fmt="%.7f")
    client = Client(app_url, verbose=False, analytics_enabled=False, download_files=str(folder / "downloads"))
    job = client.submit(**fit_args(cloud=handle_file(str(folder / "ellipsoid.xyz")), example=None, method="igr",
                                   steps=STEPS), api_name="/fit")
    updates = list(job)
    assert job.status().success, job.status()
    return client, updates, job.outputs()[-1], folder


def test_progress_reports_a_rate_and_a_consistent_eta_while_fitting(uploaded_fit):
    _, updates, _, _ = uploaded_fit
    fitting = [u[3] for u in updates if isinstance(u[3], dict) and u[3].get("stage") == "fitting"]
    assert len(fitting) >= 2 and fitting[-1]["step"] == STEPS and fitting[0]["total_steps"] == STEPS
    for progress in fitting:
        rate, eta = progress["steps_per_second"], progress["eta_seconds"]
        assert rate > 0, progress
        assert eta is not None and math.isfinite(eta), progress
        remaining = (progress["total_steps"] - progress["step"]) / rate
        assert eta == pytest.approx(remaining, rel=0.05, abs=0.1), progress
    assert fitting[-1]["eta_seconds"] == pytest.approx(0.0, abs=0.1)
    statuses = [u[2] for u in updates if isinstance(u[3], dict) and u[3].get("stage") == "fitting"]
    assert all("steps/s" in s and "ETA" in s for s in statuses), statuses


def test_fit_of_an_upload_returns_its_surface_in_its_coordinates(uploaded_fit):
    _, _, final, folder = uploaded_fit
    surface, _, status, progress, metrics, downloads, *_ = final
    assert "Done" in status and progress["summary"]["steps"] == STEPS
    mesh = trimesh.load(surface, force="mesh")
    cloud = np.loadtxt(folder / "ellipsoid.xyz")
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), [3.0, -1.0, 2.0], atol=0.15)
    extents = np.ptp(mesh.vertices, axis=0)
    # the untrained network is a sphere 2.0 across; the fit follows the ellipsoid's 2.0 × 1.2 × 0.8
    np.testing.assert_allclose(extents, 2 * SEMI_AXES, atol=0.25)
    names = [row[0] for row in metrics["data"]]
    assert "Cloud → surface, mean" in names and "Chamfer distance (vs ground truth)" not in names
    assert len(cloud) == 3000


def test_checkpoint_zip_loads_with_the_library_and_remeshes_to_the_returned_surface(uploaded_fit, tmp_path):
    from diffcd import load_sdf

    _, _, final, _ = uploaded_fit
    surface, downloads = final[0], final[5]
    archive = next(d for d in downloads if d.endswith(".zip"))
    assert pickle_findings(archive) == []
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path)
    [config] = tmp_path.rglob("config.json")
    fitted = load_sdf(config.parent)
    assert fitted.method == "igr" and fitted.steps == STEPS
    remeshed = fitted.extract_mesh(TINY_PRESET.resolution)
    shown = trimesh.load(surface, force="mesh")
    assert len(remeshed.faces) == len(shown.faces)
    np.testing.assert_allclose(remeshed.bounds, shown.bounds, atol=1e-4)
    assert remeshed.area == pytest.approx(shown.area, rel=1e-4)


def _values(table) -> dict[str, float]:
    return {row[0]: float(str(row[1]).split()[0].replace(",", "")) for row in table["data"]}


def test_evaluate_against_an_uploaded_mesh_gives_the_librarys_numbers(uploaded_fit):
    from gradio_client import handle_file

    from diffcd import load_mesh, metrics

    client, _, final, folder = uploaded_fit
    ply = next(d for d in final[5] if d.endswith(".ply"))
    table = client.predict(ground_truth=handle_file(str(folder / "ellipsoid_gt.ply")), api_name="/evaluate")
    values = _values(table)
    expected = metrics.evaluate_mesh(trimesh.load(ply, process=False), load_mesh(folder / "ellipsoid_gt.ply"))
    for key, label in (("chamfer", "Chamfer distance (vs ground truth)"), ("hausdorff", "Hausdorff (vs ground truth)"),
                       ("normal_angle_deg", "Normal angle error (°)"), ("fscore", "F-score")):
        assert values[label] == float(f"{expected[key]:.4g}"), (label, values[label], expected[key])
    assert expected["chamfer"] < 0.1  # and the fit is close to the truth it was sampled from
    cloud = np.loadtxt(folder / "ellipsoid.xyz")
    distances = metrics.cloud_surface_distances(cloud, trimesh.load(ply, process=False))
    assert values["Cloud → surface, mean"] == pytest.approx(distances["cloud_to_surface_mean"], rel=1e-3)
    assert values["Surface → cloud, mean"] == pytest.approx(distances["surface_to_cloud_mean"], rel=1e-3)

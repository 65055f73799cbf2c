"""/remesh_checkpoint and /evaluate_checkpoint: re-mesh and score a checkpoint zip, no session needed.

The zip is the one a /fit returns, passed back by another client (a new session, as every MCP call
is). A crafted zip (a bomb, a member named outside its folder, thousands of members) is refused
with a sentence before anything is extracted.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import trimesh
from gradio_client import Client, handle_file

from _apptest import ROOT, app_error, fit_args
from diffcd.export import NetworkLimits
from diffcd_space.checkpoint_upload import CheckpointZipError, unpack_checkpoint


@pytest.fixture(scope="module")
def fitted_zip(app_url, tmp_path_factory) -> Path:
    """The checkpoint zip of a tiny /fit of the torus example."""
    folder = tmp_path_factory.mktemp("fit-downloads")
    client = Client(app_url, verbose=False, analytics_enabled=False, download_files=str(folder))
    _, _, _, _, _, downloads, *_ = client.predict(**fit_args(), api_name="/fit")
    return Path(next(d for d in downloads if d.endswith("-checkpoint.zip")))


def test_a_new_session_remeshes_and_evaluates_the_zip_a_fit_returned(client, fitted_zip):
    glb, files, status = client.predict(checkpoint=handle_file(str(fitted_zip)), resolution=32,
                                        api_name="/remesh_checkpoint")
    assert "32³" in status and "torus" in status
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.faces) > 100
    assert 2.0 < mesh.extents.max() < 3.2  # in the cloud's coordinates, not the unit box
    assert {Path(f).suffix for f in files} == {".glb", ".ply", ".obj"}

    table = client.predict(checkpoint=handle_file(str(fitted_zip)),
                           ground_truth=handle_file(str(ROOT / "examples" / "torus_gt.ply")),
                           resolution=32, api_name="/evaluate_checkpoint")
    rows = {row[0]: row[1] for row in table["data"]}
    assert "Chamfer distance (vs ground truth)" in rows and "F-score" in rows
    assert float(rows["Chamfer distance (vs ground truth)"]) < 0.5  # a real surface near the torus


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def crafted(tmp_path, fitted_zip) -> dict[str, Path]:
    with zipfile.ZipFile(fitted_zip) as zf:
        real = {Path(n).name: zf.read(n) for n in zf.namelist()}
    good = {"t/config.json": real["config.json"], "t/model.safetensors": real["model.safetensors"]}
    return {
        "bomb": _zip(tmp_path / "bomb-checkpoint.zip",
                     {**good, "t/model.safetensors": b"\0" * 20_000_000}),
        "traversal": _zip(tmp_path / "traversal-checkpoint.zip",
                          {"t/config.json": real["config.json"],
                           "../../../tmp/model.safetensors": real["model.safetensors"]}),
        "many": _zip(tmp_path / "many-checkpoint.zip",
                     {**good, **{f"t/{i}.txt": b"x" for i in range(2000)}}),
        "not_a_zip": _write(tmp_path / "junk-checkpoint.zip", b"PK not really a zip" * 10),
        "no_weights": _zip(tmp_path / "config-only-checkpoint.zip", {"t/config.json": real["config.json"]}),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_crafted_zips_are_refused_with_a_sentence(client, crafted):
    expected = {"bomb": "zip bomb", "traversal": "a path outside its folder", "many": "2,002 entries",
                "not_a_zip": "not a zip archive", "no_weights": "has no model.safetensors"}
    for name, words in expected.items():
        message = app_error(client, "/remesh_checkpoint", checkpoint=handle_file(str(crafted[name])),
                            resolution=32)
        assert words in message and message.rstrip().endswith("."), (name, message)
    message = app_error(client, "/evaluate_checkpoint", checkpoint=handle_file(str(crafted["bomb"])),
                        ground_truth=handle_file(str(ROOT / "examples" / "torus_gt.ply")), resolution=32)
    assert "zip bomb" in message


def test_nothing_is_extracted_from_a_refused_zip(crafted, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a) or 1 / 0)
    for name in ("bomb", "traversal", "many"):
        folder = tmp_path / f"out-{name}"
        folder.mkdir()
        with pytest.raises(CheckpointZipError):
            unpack_checkpoint(crafted[name], folder, max_file_bytes=100_000_000, network=NetworkLimits())
        assert not any(folder.iterdir()) and not opened, name


def test_a_zip_above_the_upload_limit_or_the_network_bound_is_refused(fitted_zip, tmp_path):
    with pytest.raises(CheckpointZipError, match="more than this app's limit"):
        unpack_checkpoint(fitted_zip, tmp_path, max_file_bytes=1000, network=NetworkLimits())
    with pytest.raises(CheckpointZipError, match="largest network this app accepts"):
        unpack_checkpoint(fitted_zip, tmp_path, max_file_bytes=100_000_000,
                         network=NetworkLimits(max_parameters=10, max_grid_parameters=10, max_header_bytes=100))
    assert not any(tmp_path.iterdir())
    unpack_checkpoint(fitted_zip, tmp_path, max_file_bytes=100_000_000, network=NetworkLimits())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]

"""push_checkpoint / pull_checkpoint / load_sdf against the dev server, through the real client."""

from __future__ import annotations


import numpy as np
import pytest
import yaml
from _hubtest import CLOUD_DISTANCES, EVAL, TOKEN, make_run
from huggingface_hub import constants, hf_hub_download
from safetensors.numpy import load_file

from diffcd_hub import load_sdf, pull_checkpoint, push_checkpoint


def _flat(sdf):
    from diffcd.networks import flatten_params

    return {k: np.asarray(v) for k, v in flatten_params(sdf.params).items()}


def _downloads(server):
    return [r for r in server.requests if r["endpoint"] == "resolve" and r["method"] == "GET"]


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "run")


def test_push_then_pull_is_bit_identical(hub_server, api, run_dir, tmp_path):
    result = push_checkpoint(run_dir, "user/sphere", token=TOKEN)
    assert len(result.commit_sha) == 40 and result.commit_url.endswith(result.commit_sha)
    assert result.repo_url == f"{hub_server.url}/user/sphere"
    assert set(api.list_repo_files("user/sphere")) == {
        ".gitattributes", "README.md", "config.json", "model.safetensors", "mesh.glb", "metrics.json"}
    info = api.model_info("user/sphere")
    assert info.sha == result.commit_sha and info.library_name == "diffcd" and "diffcd" in info.tags

    for name in ("config.json", "model.safetensors", "mesh.glb"):  # exactly as exported
        remote = hf_hub_download("user/sphere", name, endpoint=hub_server.url, token=TOKEN)
        assert open(remote, "rb").read() == (run_dir / name).read_bytes()

    pulled = pull_checkpoint("user/sphere", token=TOKEN, out_dir=tmp_path / "out", resolution=24)
    assert pulled.commit_sha == result.commit_sha and pulled.sdf.method == "diffcd"
    source = load_file(str(run_dir / "model.safetensors"))
    for key, tensor in _flat(pulled.sdf).items():
        assert tensor.dtype == source[key].dtype and np.array_equal(tensor, source[key])
    assert pulled.metrics == {"eval": EVAL, "cloud_distances": CLOUD_DISTANCES}

    import trimesh

    from diffcd.export import load_sdf as load_local

    expected = load_local(run_dir).extract_mesh(24)
    mesh = trimesh.load(pulled.mesh_path, force="mesh")
    assert np.array_equal(np.asarray(mesh.faces), expected.faces)
    np.testing.assert_allclose(mesh.vertices, expected.vertices, rtol=0, atol=1e-6)
    assert sorted(p.name for p in pulled.out_dir.iterdir()) == [
        "README.md", "config.json", "mesh.glb", "metrics.json", "model.safetensors"]


def test_model_card(hub_server, run_dir):
    push_checkpoint(run_dir, "user/card", token=TOKEN)
    text = open(hf_hub_download("user/card", "README.md", endpoint=hub_server.url, token=TOKEN)).read()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "diffcd" and meta["license"] == "mit"
    assert set(meta["tags"]) == {"sdf", "implicit-surface", "point-cloud", "surface-reconstruction", "jax",
                                 "flax", "diffcd", "arxiv:2407.17058", "model_hub_mixin"}
    for snippet in ("from diffcd_hub import SDFModel", 'sdf = SDFModel.from_pretrained("user/card")',
                    "mesh = sdf.extract_mesh(256)",
                    "@inproceedings{haerenstam2024diffcd", "## Metrics", "| eval | chamfer | 0.0123 |",
                    "sphere.ply", "**DiffCD**"):
        assert snippet in text, snippet


def test_export_folder_and_cloud(hub_server, api, tmp_path):
    run = make_run(tmp_path / "run", method="igr", metrics=False, cloud_points=25_000)
    (run / "mesh.glb").unlink()  # a bare export: the mesh is extracted at push time
    result = push_checkpoint(run / "config.json", "user/igr", token=TOKEN, include_cloud=True, mesh_resolution=24)
    assert set(result.files) == {"README.md", "config.json", "model.safetensors", "mesh.glb", "cloud.npy"}
    cloud = np.load(hf_hub_download("user/igr", "cloud.npy", endpoint=hub_server.url), allow_pickle=False)
    assert cloud.shape == (20_000, 3) and cloud.dtype == np.float32
    assert "igr" in api.model_info("user/igr").tags
    # a pull fetches only what it loads (not cloud.npy, not mesh.glb unless the published mesh is asked for)
    before = len(hub_server.requests)
    pulled = pull_checkpoint("user/igr", token=TOKEN)
    fetched = sorted({r["path"].rsplit("/", 1)[-1] for r in hub_server.requests[before:] if r["endpoint"] == "resolve"})
    assert fetched == ["README.md", "config.json", "model.safetensors"]
    assert pulled.metrics == {} and pulled.mesh_path is None


def test_two_pushes_load_by_sha_tag_and_branch(hub_server, api, tmp_path):
    first = push_checkpoint(make_run(tmp_path / "a", seed=1), "user/two", token=TOKEN)
    api.create_tag("user/two", tag="v1")
    second = push_checkpoint(make_run(tmp_path / "b", seed=2), "user/two", token=TOKEN, commit_message="refit")
    assert second.commit_sha != first.commit_sha
    on_branch = push_checkpoint(make_run(tmp_path / "c", seed=3), "user/two", token=TOKEN, revision="experiment")
    assert on_branch.revision == "experiment"
    assert [c.title for c in api.list_repo_commits("user/two")][:2] == ["refit", "Upload DiffCD SDF fitted with diffcd"]

    def weights(folder):
        return load_file(str(folder / "model.safetensors"))

    for revision, folder in [(first.commit_sha, "a"), ("v1", "a"), (second.commit_sha, "b"), (None, "b"),
                             ("experiment", "c")]:
        sdf = load_sdf("user/two", revision=revision, token=TOKEN)
        expected = weights(tmp_path / folder)
        assert all(np.array_equal(v, expected[k]) for k, v in _flat(sdf).items()), revision


def test_second_pull_downloads_nothing_and_works_offline(hub_server, run_dir, tmp_path, monkeypatch):
    sha = push_checkpoint(run_dir, "user/cached", token=TOKEN).commit_sha
    pull_checkpoint("user/cached", token=TOKEN)
    count = len(_downloads(hub_server))
    assert count == 4  # config, weights, card, metrics; once each
    again = pull_checkpoint("user/cached", token=TOKEN, out_dir=tmp_path / "o", resolution=0)
    assert len(_downloads(hub_server)) == count + 1 and again.commit_sha == sha  # + the published mesh
    pull_checkpoint("user/cached", token=TOKEN, out_dir=tmp_path / "o2", resolution=0)
    assert len(_downloads(hub_server)) == count + 1
    assert (tmp_path / "o" / "mesh.glb").read_bytes() == (run_dir / "mesh.glb").read_bytes()

    hub_server.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = pull_checkpoint("user/cached", token=TOKEN)
    assert offline.commit_sha == sha
    assert load_sdf("user/cached", revision=sha).method == "diffcd"

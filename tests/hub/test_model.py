"""hub.SDFModel: the Hub's own model convention (huggingface_hub.ModelHubMixin) over today's export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from _hubtest import TOKEN, make_fitted, make_run
from huggingface_hub import ModelHubMixin, PyTorchModelHubMixin, constants, hf_hub_download

from diffcd import FittedSDF
from diffcd.export import export_sdf
from diffcd_hub import SDFModel, load_sdf, pull_checkpoint, push_checkpoint
from diffcd_hub.errors import NotACheckpointError, RepoNotFoundError, RevisionNotFoundError


def _same_weights(a, b) -> bool:
    from diffcd.networks import flatten_params

    fa, fb = flatten_params(a.params), flatten_params(b.params)
    return fa.keys() == fb.keys() and all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


@pytest.fixture
def model():
    return SDFModel.from_fitted(make_fitted(seed=3), metadata={"cloud": "bunny.ply", "points": 1234})


def test_it_is_a_fitted_sdf_and_a_plain_model_hub_mixin(model):
    assert isinstance(model, FittedSDF) and isinstance(model, ModelHubMixin)
    assert not isinstance(model, PyTorchModelHubMixin)
    points = np.array([[0.1, -0.2, 0.3], [2.0, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(model(points), make_fitted(seed=3)(points))


def test_save_pretrained_writes_exactly_the_export_and_our_card(model, tmp_path):
    model.save_pretrained(tmp_path / "saved")
    export_sdf(model, tmp_path / "export", metadata=model.metadata)
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    for name in ("config.json", "model.safetensors"):  # no second format, no pickle
        assert (tmp_path / "saved" / name).read_bytes() == (tmp_path / "export" / name).read_bytes()
    card = (tmp_path / "saved" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "diffcd" and meta["license"] == "mit"
    assert {"model_hub_mixin", "arxiv:2407.17058", "diffcd", "sdf"} <= set(meta["tags"])
    assert "@inproceedings{haerenstam2024diffcd" in card and "bunny.ply" in card
    loaded = SDFModel.from_pretrained(tmp_path / "saved")  # a local folder
    assert _same_weights(loaded, model) and loaded.metadata == model.metadata
    assert loaded.normalization == model.normalization and loaded.network == model.network


def test_push_to_hub_and_from_pretrained_at_a_revision(model, hub_server, api, tmp_path, monkeypatch):
    url = model.push_to_hub("user/mixin", token=TOKEN)
    first = api.model_info("user/mixin").sha
    assert first in url
    assert set(api.list_repo_files("user/mixin")) == {".gitattributes", "README.md", "config.json",
                                                      "model.safetensors"}
    info = api.model_info("user/mixin")
    assert info.library_name == "diffcd" and "model_hub_mixin" in info.tags
    card = open(hf_hub_download("user/mixin", "README.md", endpoint=hub_server.url)).read()
    assert 'SDFModel.from_pretrained("user/mixin")' in card
    api.create_tag("user/mixin", tag="v1")
    other = SDFModel.from_fitted(make_fitted(seed=9))
    other.push_to_hub("user/mixin", token=TOKEN, commit_message="refit")
    assert _same_weights(SDFModel.from_pretrained("user/mixin", revision="v1"), model)
    assert _same_weights(SDFModel.from_pretrained("user/mixin", revision=first), model)
    latest = SDFModel.from_pretrained("user/mixin")
    assert _same_weights(latest, other) and not _same_weights(latest, model)
    assert isinstance(latest, SDFModel) and latest.method == "diffcd"

    # offline reload from the cache: local_files_only, and HF_HUB_OFFLINE
    hub_server.stop()
    assert _same_weights(SDFModel.from_pretrained("user/mixin", revision="v1", local_files_only=True), model)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert _same_weights(SDFModel.from_pretrained("user/mixin"), other)


def test_cache_dir_force_download_and_token(model, hub_server, api, tmp_path):
    model.push_to_hub("user/private-mixin", token=TOKEN, private=True)
    assert api.model_info("user/private-mixin").private
    with pytest.raises(RepoNotFoundError, match="user/private-mixin"):
        SDFModel.from_pretrained("user/private-mixin")
    cache = tmp_path / "my-cache"
    loaded = SDFModel.from_pretrained("user/private-mixin", token=TOKEN, cache_dir=cache)
    assert _same_weights(loaded, model) and list(cache.glob("models--user--private-mixin/snapshots/*/config.json"))
    gets = lambda: len([r for r in hub_server.requests if r["endpoint"] == "resolve" and r["method"] == "GET"])
    before = gets()
    SDFModel.from_pretrained("user/private-mixin", token=TOKEN, cache_dir=cache)
    assert gets() == before  # cached
    SDFModel.from_pretrained("user/private-mixin", token=TOKEN, cache_dir=cache, force_download=True)
    assert gets() > before


def test_hub_push_loads_with_from_pretrained_and_vice_versa(model, hub_server, tmp_path):
    run = make_run(tmp_path / "run")
    push_checkpoint(run, "user/by-cli", token=TOKEN)
    loaded = SDFModel.from_pretrained("user/by-cli")
    assert _same_weights(loaded, load_sdf("user/by-cli")) and loaded.metadata["cloud"] == "sphere.ply"

    model.push_to_hub("user/by-mixin", token=TOKEN)
    pulled = pull_checkpoint("user/by-mixin", out_dir=tmp_path / "out", resolution=16)
    assert _same_weights(pulled.sdf, model) and pulled.mesh_path.is_file()
    from diffcd_hub.cli import main

    assert main(["pull", "user/by-mixin", "--resolution", "16", "--out", str(tmp_path / "cli")]) == 0

    # the same card builder: `hub push` of the mixin's save folder gives the mixin's card text
    model.save_pretrained(tmp_path / "saved")
    push_checkpoint(tmp_path / "saved", "user/same-card", token=TOKEN, mesh_resolution=16)
    pushed = open(hf_hub_download("user/same-card", "README.md", endpoint=hub_server.url)).read()
    model.push_to_hub("user/same-card-mixin", token=TOKEN)
    mixin = open(hf_hub_download("user/same-card-mixin", "README.md", endpoint=hub_server.url)).read()
    assert pushed.split("---")[1] == mixin.split("---")[1]  # identical metadata block
    strip = lambda text: [line for line in text.splitlines() if "same-card" not in line and line.startswith(("|", "-"))]
    assert [l for l in strip(mixin) if l.startswith("|")] == [l for l in strip(pushed) if l.startswith("|")]


def test_from_pretrained_has_load_sdfs_validation_and_messages(hub_server, api, tmp_path):
    from huggingface_hub import CommitOperationAdd

    for call in (lambda: SDFModel.from_pretrained("user/none"), lambda: load_sdf("user/none")):
        with pytest.raises(RepoNotFoundError, match=r"Repository user/none was not found"):
            call()
    export_sdf(make_fitted(), tmp_path / "e")
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    config["schema_version"] = 9
    api.create_repo("user/future")
    api.create_commit("user/future", [CommitOperationAdd("config.json", json.dumps(config).encode()),
                                      CommitOperationAdd("model.safetensors", str(tmp_path / "e" / "model.safetensors"))],
                      commit_message="x")
    messages = []
    for call in (lambda: SDFModel.from_pretrained("user/future"), lambda: load_sdf("user/future")):
        with pytest.raises(NotACheckpointError, match="schema version 9") as info:
            call()
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    with pytest.raises(RevisionNotFoundError):
        SDFModel.from_pretrained("user/future", revision="nope")
    with pytest.raises(NotACheckpointError, match="not a diffcd checkpoint"):
        SDFModel.from_pretrained(tmp_path)  # a local folder without the export
    with pytest.raises(TypeError, match="unexpected"):
        SDFModel.from_pretrained("user/future", map_location="cpu")


def test_private_push_to_hub_on_a_public_repo_is_refused(model, hub_server, api):
    from diffcd_hub.errors import VisibilityError

    model.push_to_hub("user/open-mixin", token=TOKEN)
    with pytest.raises(VisibilityError, match="already exists and is public"):
        model.push_to_hub("user/open-mixin", token=TOKEN, private=True)


@pytest.mark.parametrize("encoding, words", [
    (dict(encoding="fourier", encoding_levels=4), "4 octaves of Fourier features (sin and cos at π to 8π)"),
    (dict(encoding="grid", encoding_levels=3, grid_min_resolution=8, grid_max_resolution=32, grid_features=2),
     "3 levels of dense feature grids (8³ to 32³ points, 2 features each, trilinear)"),
])
def test_an_encoded_network_travels_through_the_hub_with_its_card(encoding, words, hub_server, api):
    import dataclasses

    import jax

    from diffcd.networks import init_params

    plain = make_fitted(seed=2)
    network = dataclasses.replace(plain.network, **encoding)
    params = jax.device_get(init_params(network, jax.random.PRNGKey(0)))
    rng = np.random.default_rng(0)  # every leaf nonzero: zero tables would hide a lost encoding
    params = jax.tree_util.tree_map(lambda p: (p + 0.05 * rng.standard_normal(p.shape)).astype(np.float32), params)
    model = SDFModel.from_fitted(FittedSDF(network, params, plain.normalization, method="diffcd", steps=10))
    model.push_to_hub("user/encoded", token=TOKEN)
    card = open(hf_hub_download("user/encoded", "README.md", endpoint=hub_server.url)).read()
    assert words in card
    loaded = SDFModel.from_pretrained("user/encoded")
    assert loaded.network == network
    points = np.random.default_rng(1).uniform(-1, 1, (64, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(points), model(points), atol=1e-6)
    assert _same_weights(load_sdf("user/encoded"), model)

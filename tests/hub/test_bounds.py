"""A public server pulls repos its visitors name: every pull and listing is bounded before it
downloads, a private repo never leaks from the shared cache, and pulled text is made harmless."""

from __future__ import annotations

import json

import pytest
from _hubtest import OTHER_TOKEN, TOKEN, make_run, upload_files

from diffcd.errors import LimitError
from diffcd.export import NetworkLimits
from diffcd_hub import ListLimits, PullLimits, load_sdf, pull_checkpoint, push_checkpoint
from diffcd_hub.errors import HubError, LimitExceededError, VisibilityError


def _gets(server, name=None):
    return [r["path"] for r in server.requests if r["endpoint"] == "resolve" and r["method"] == "GET"
            and (name is None or r["path"].endswith("/" + name))]


def _with(export, change) -> dict[str, bytes]:
    config = json.loads(export["config.json"])
    change(config)
    return {**export, "config.json": json.dumps(config).encode()}


# ----------------------------------------------------------------------------------------------
# Item 3: a pulled network is bounded before anything is built, compiled or even downloaded


def test_oversize_weights_are_refused_before_downloading(api, hub_server, export):
    upload_files(api, "user/big", export)
    limits = PullLimits(network=NetworkLimits(max_parameters=100, max_grid_parameters=50, max_header_bytes=1024))
    # 8 + 1024 header bytes and 150 float32 values, the layers' and a grid's
    with pytest.raises(LimitExceededError, match=r"user/big: model.safetensors is [\d,]+ bytes, more than the "
                                                 r"1,632 a pull accepts; it was not downloaded") as info:
        pull_checkpoint("user/big", limits=limits)
    assert isinstance(info.value, LimitError)
    assert not _gets(hub_server, "model.safetensors") and not _gets(hub_server, "config.json")


@pytest.mark.parametrize("change, words", [
    (lambda c: c["network"].update(activation="sine", sine_omega=3000.0), "omega = 3000"),
    (lambda c: c["network"].update(width=16_384), "16384 wide"),
    (lambda c: c["network"].update(hidden_layers=1200, skip_layers=[]), "1200 hidden layers"),
    (lambda c: c["network"].update(encoding="grid", grid_max_resolution=2048), "2,048 points per axis"),
    (lambda c: c["network"].update(encoding="fourier", encoding_levels=30), "30 bands"),
])
def test_hostile_network_is_refused_from_config_before_its_weights(api, hub_server, export, change, words):
    upload_files(api, "user/hostile", _with(export, change))
    with pytest.raises(LimitExceededError, match=words):
        load_sdf("user/hostile")
    assert _gets(hub_server, "config.json") and not _gets(hub_server, "model.safetensors")


def test_weights_larger_than_the_config_says_are_not_downloaded(api, hub_server, export):
    upload_files(api, "user/padded", {**export, "model.safetensors": export["model.safetensors"] + bytes(3 << 20)})
    with pytest.raises(LimitExceededError, match="far more than .* its config.json describes"):
        load_sdf("user/padded")
    assert not _gets(hub_server, "model.safetensors")


def test_total_per_pull_and_card_size(api, hub_server, export):
    upload_files(api, "user/card", {**export, "README.md": b"x" * 5000})
    with pytest.raises(LimitExceededError, match="README.md is 5,000 bytes"):
        load_sdf("user/card", limits=PullLimits(max_card_bytes=4096))
    with pytest.raises(LimitExceededError, match="files total .* one pull accepts; nothing was downloaded"):
        load_sdf("user/card", limits=PullLimits(max_pull_bytes=6000))
    assert not _gets(hub_server)


# ----------------------------------------------------------------------------------------------
# Item 6 (Hub side): a pulled config.json with wrong types or deep nesting is one sentence


@pytest.mark.parametrize("config, words", [
    (None, "steps is 'ten', not a non-negative integer"),
    (b'{"format": "diffcd-sdf", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nests arrays or objects"),
    (b'{"format": "diffcd-sdf", "schema_version": 1, "network": {"width": [1]}}', r"network width is \[1\]"),
    (b'["not", "an", "object"]', "not a JSON object"),
])
def test_pulled_config_with_wrong_types_or_nesting(api, export, config, words):
    files = _with(export, lambda c: c.update(steps="ten")) if config is None else {**export, "config.json": config}
    upload_files(api, "user/odd", files)
    with pytest.raises(HubError, match=words) as info:
        pull_checkpoint("user/odd")
    assert "user/odd@" in str(info.value) and not isinstance(info.value, (TypeError, RecursionError))


# ----------------------------------------------------------------------------------------------
# Item 5: when the Hub is down, the shared cache never serves a private repo


@pytest.mark.parametrize("outage", ["stopped", "500"])
def test_private_repo_is_not_served_from_cache_to_anonymous_when_the_hub_is_down(api, hub_server, export,
                                                                                  monkeypatch, outage):
    upload_files(api, "user/secret", export, private=True)
    assert load_sdf("user/secret", token=TOKEN).method == "diffcd"  # visitor A, with a token
    endpoint = None
    if outage == "stopped":  # the cache is keyed by repo id alone: a dead endpoint is an unreachable Hub
        endpoint = "http://127.0.0.1:9"
    else:
        hub_server.fail_next("model_info", status=500, times=10)
    for token in (False, OTHER_TOKEN, "hf_wrong_token_123", TOKEN):  # B anonymous, others; even A's token
        with pytest.raises(HubError, match=r"user/secret, and this repo is not known to be public, so a cached "
                                           r"copy is not served") as info:
            load_sdf("user/secret", token=token, endpoint=endpoint)
        assert "hf_wrong_token_123" not in str(info.value)


def test_public_repo_is_served_from_cache_when_the_hub_is_down(api, hub_server, export):
    upload_files(api, "user/open", export)
    first = pull_checkpoint("user/open", token=False)
    hub_server.fail_next("model_info", status=503, times=5)
    assert pull_checkpoint("user/open", token=False).commit_sha == first.commit_sha
    assert load_sdf("user/open", token=False, endpoint="http://127.0.0.1:9").method == "diffcd"


def test_a_repo_made_private_is_no_longer_served_from_cache(api, hub_server, export):
    upload_files(api, "user/turned", export)
    load_sdf("user/turned", token=False)
    api.update_repo_settings("user/turned", private=True)
    load_sdf("user/turned", token=TOKEN)  # the next online pull records the change
    with pytest.raises(HubError, match="not known to be public"):
        load_sdf("user/turned", token=False, endpoint="http://127.0.0.1:9")


# ----------------------------------------------------------------------------------------------
# Item 7: "private" on an existing public repo; listing bounds; pulled text; cache pruning


def test_private_push_to_an_existing_public_repo_is_refused(api, hub_server, tmp_path):
    run = make_run(tmp_path / "run")
    push_checkpoint(run, "user/public", token=TOKEN)
    commits = len(api.list_repo_commits("user/public"))
    with pytest.raises(VisibilityError, match=r"user/public already exists and is public.*nothing was pushed"):
        push_checkpoint(run, "user/public", token=TOKEN, private=True)
    assert len(api.list_repo_commits("user/public")) == commits and not api.model_info("user/public").private
    push_checkpoint(run, "user/hidden", token=TOKEN, private=True)  # a new repo is created private
    assert api.model_info("user/hidden").private
    push_checkpoint(run, "user/hidden", token=TOKEN, private=True)  # and stays pushable privately


def test_listing_reads_at_most_n_repos_and_bounded_json(api, hub_server, tmp_path):
    from diffcd_hub.discover import list_checkpoints

    for index in range(3):
        push_checkpoint(make_run(tmp_path / f"r{index}", seed=index), f"user/list{index}", token=TOKEN,
                        mesh_resolution=16)
    big = {"eval": {f"m{i}": 0.5 for i in range(4000)}}
    api.upload_file(path_or_fileobj=json.dumps(big).encode(), path_in_repo="metrics.json", repo_id="user/list0")
    before = len(hub_server.requests)
    rows = list_checkpoints(limit=50, limits=ListLimits(max_repos=2, max_json_bytes=8192))
    assert len(rows) == 2
    everything = {r["repo_id"]: r for r in list_checkpoints(limits=ListLimits(max_json_bytes=8192))}
    assert everything["user/list0"]["metrics"] == {}  # too large: skipped, never downloaded
    assert everything["user/list1"]["metrics"]["eval"]["chamfer"] == 0.0123
    fetched = [r["path"] for r in hub_server.requests[before:] if r["endpoint"] == "resolve" and r["method"] == "GET"]
    assert not [p for p in fetched if "list0" in p and p.endswith("metrics.json")]


def test_pulled_metadata_is_returned_as_data(api, export):
    # A pull hands the repo's metadata back unchanged; showing it safely is the caller's job (the
    # app's Hub tab escapes it: tests/app/test_hostile.py::test_pulled_metadata_cannot_render_images_links_or_html).
    note = "![x](http://t.example/a.png)<img src=x onerror=alert(1)>\u202e"
    hostile = _with(export, lambda c: c.update(method="diffcd", steps=5, metadata={"note": note}))
    upload_files(api, "user/meta", hostile)
    pulled = pull_checkpoint("user/meta")
    assert pulled.config["metadata"]["note"] == note and pulled.sdf.method == "diffcd"


def test_cache_prune_by_age_and_size(api, hub_server, export, hf_env):
    import time

    from huggingface_hub import scan_cache_dir

    from diffcd_hub.cache import prune

    for name in ("user/c1", "user/c2"):
        upload_files(api, name, export)
        load_sdf(name)
    size = scan_cache_dir().size_on_disk
    assert prune(max_bytes=10**12, max_age=3600).revisions_deleted == 0
    assert prune(max_bytes=size - 1, max_age=3600).revisions_deleted == 0  # both in use in the last 10 min
    result = prune(max_bytes=size - 1, max_age=3600, grace=0)  # the least recently used revision goes
    assert result.revisions_deleted == 1 and result.bytes_kept < size
    assert len(scan_cache_dir().repos) in (1, 2) and sum(len(r.revisions) for r in scan_cache_dir().repos) == 1
    assert prune(max_bytes=10**12, max_age=60, now=time.time() + 3600).revisions_deleted == 1
    assert sum(len(r.revisions) for r in scan_cache_dir().repos) == 0
    assert load_sdf("user/c1").method == "diffcd"  # a pruned repo is simply downloaded again


def test_prune_command(api, hub_server, export, capsys):
    from diffcd_hub.cli import main

    upload_files(api, "user/c3", export)
    load_sdf("user/c3")
    assert main(["prune", "--max-gb", "100", "--max-age", "1"]) == 0
    assert "Deleted 0 revisions" in capsys.readouterr().out

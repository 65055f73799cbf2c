"""Every way a push or pull can fail ends in one HubError that names the repo and what to do."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from _hubtest import OTHER_TOKEN, TOKEN, make_run, upload_files
from safetensors.numpy import save

from diffcd.errors import DiffCDError
from diffcd_hub import load_sdf, pull_checkpoint, push_checkpoint
from diffcd_hub.errors import (AuthError, HubError, NotACheckpointError, RepoNotFoundError, RevisionNotFoundError,
                        UploadError, scrub)


def _config(export, **changes) -> bytes:
    config = json.loads(export["config.json"])
    config.update(changes)
    return json.dumps(config).encode()


def test_hub_error_is_a_diffcd_error():
    assert issubclass(HubError, DiffCDError)


def test_not_a_diffcd_repo(api):
    upload_files(api, "user/text-model", {"README.md": b"# not ours\n", "weights.bin": b"\0" * 10})
    with pytest.raises(NotACheckpointError, match=r"user/text-model.*not a diffcd checkpoint"):
        pull_checkpoint("user/text-model")


def test_foreign_config(api, export):
    upload_files(api, "user/foreign", {"config.json": b'{"model_type": "bert"}',
                                  "model.safetensors": export["model.safetensors"]})
    with pytest.raises(NotACheckpointError, match=r"user/foreign@[0-9a-f]{12} is not a diffcd checkpoint"):
        load_sdf("user/foreign")


def test_unknown_schema(api, export):
    upload_files(api, "user/future", {"config.json": _config(export, schema_version=99),
                                 "model.safetensors": export["model.safetensors"]})
    with pytest.raises(NotACheckpointError, match=r"user/future@.*schema version 99"):
        load_sdf("user/future")


def test_shape_mismatch(api, export):
    network = {**json.loads(export["config.json"])["network"], "width": 32}
    upload_files(api, "user/mismatch", {"config.json": _config(export, network=network),
                                   "model.safetensors": export["model.safetensors"]})
    with pytest.raises(NotACheckpointError, match=r"user/mismatch@.*shape"):
        load_sdf("user/mismatch")


def test_truncated_weights(api, export):
    weights = export["model.safetensors"]
    upload_files(api, "user/truncated", {"config.json": export["config.json"],
                                    "model.safetensors": weights[: len(weights) // 2]})
    with pytest.raises(NotACheckpointError, match=r"user/truncated@.*truncated or corrupted"):
        load_sdf("user/truncated")


def test_nan_weights(api, export):
    from safetensors.numpy import load

    tensors = load(export["model.safetensors"])
    first = sorted(tensors)[0]
    tensors[first] = np.full_like(tensors[first], np.nan)
    upload_files(api, "user/nan", {"config.json": export["config.json"], "model.safetensors": save(tensors)})
    with pytest.raises(NotACheckpointError, match=r"user/nan@.*NaN"):
        load_sdf("user/nan")


def test_unknown_repo(hub_server):
    with pytest.raises(RepoNotFoundError, match=r"user/nothing-here was not found.*set HF_TOKEN or pass --token"):
        pull_checkpoint("user/nothing-here")


def test_bad_repo_id(hub_server):
    with pytest.raises(HubError, match="namespace/name"):
        load_sdf("no-namespace")


def test_unknown_revision(api, export):
    upload_files(api, "user/revs", export)
    with pytest.raises(RevisionNotFoundError, match=r"'no-such-branch' does not exist in user/revs"):
        load_sdf("user/revs", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        load_sdf("user/revs", revision="f" * 40)


def test_private_repo_tokens(api, export, monkeypatch):
    upload_files(api, "user/private", export, private=True)
    with pytest.raises(RepoNotFoundError, match=r"user/private .*private.*set HF_TOKEN or pass --token"):
        load_sdf("user/private")
    with pytest.raises(AuthError, match=r"refused the access token.*user/private.*set HF_TOKEN or pass --token") as info:
        load_sdf("user/private", token="hf_wrong_token_123")
    assert "hf_wrong_token_123" not in str(info.value)
    with pytest.raises(RepoNotFoundError, match="your token has no access"):
        load_sdf("user/private", token=OTHER_TOKEN)
    assert load_sdf("user/private", token=TOKEN).method == "diffcd"
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the environment works as well as the argument
    assert load_sdf("user/private", revision="main").method == "diffcd"


def test_anonymous_never_uses_the_servers_own_token(api, export, monkeypatch, tmp_path):
    """token=False (what the app passes for its visitors) ignores HF_TOKEN and the saved login."""
    from diffcd_hub.discover import list_checkpoints

    upload_files(api, "user/private", export, private=True)
    # A published run (with its model card) is what listing finds: one the owner can see.
    push_checkpoint(make_run(tmp_path / "run"), "user/private-run", token=TOKEN, private=True,
                    mesh_resolution=16)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # a Space's own secret
    assert load_sdf("user/private").method == "diffcd"
    with pytest.raises(RepoNotFoundError, match="user/private"):
        load_sdf("user/private", token=False)
    assert "user/private-run" in {item["repo_id"] for item in list_checkpoints(token=TOKEN)}
    anonymous = {item["repo_id"] for item in list_checkpoints(token=False)}
    assert "user/private" not in anonymous and "user/private-run" not in anonymous


def test_push_needs_a_token(hub_server, tmp_path):
    run = make_run(tmp_path / "run")
    with pytest.raises(AuthError, match=r"Pushing to user/x needs .*token.*set HF_TOKEN or pass --token"):
        push_checkpoint(run, "user/x")
    assert hub_server.requests == []  # refused before contacting the Hub


def test_push_with_a_refused_token(hub_server, tmp_path):
    run = make_run(tmp_path / "run")
    with pytest.raises(AuthError, match="refused the access token"):
        push_checkpoint(run, "user/x", token="hf_not_valid_999")
    with pytest.raises(AuthError, match="403"):
        push_checkpoint(run, "other/x", token=TOKEN)


def test_push_of_something_else(hub_server, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotACheckpointError, match="needs config.json and model.safetensors"):
        push_checkpoint(tmp_path / "empty", "user/x", token=TOKEN)
    with pytest.raises(HubError, match="does not exist"):
        push_checkpoint(tmp_path / "missing", "user/x", token=TOKEN)
    run = make_run(tmp_path / "run")
    (run / "config.json").write_text(json.dumps({**json.loads((run / "config.json").read_text()),
                                                 "schema_version": 7}))
    with pytest.raises(NotACheckpointError, match="Cannot push .*schema version 7"):
        push_checkpoint(run, "user/x", token=TOKEN)
    assert hub_server.requests == []


@pytest.mark.parametrize("endpoint, status", [("commit", 500), ("lfs_upload", 403)])
def test_server_failure_mid_push_leaves_repo_unchanged(hub_server, api, tmp_path, endpoint, status):
    first = push_checkpoint(make_run(tmp_path / "a", seed=1), "user/fragile", token=TOKEN)
    files = {f.path: f.blob_id for f in api.list_repo_tree("user/fragile", recursive=True)}
    hub_server.fail_next(endpoint, status=status)
    with pytest.raises(HubError, match="user/fragile") as info:
        push_checkpoint(make_run(tmp_path / "b", seed=2), "user/fragile", token=TOKEN)
    if status == 500:
        assert isinstance(info.value, UploadError) and "nothing was committed" in str(info.value)
    assert api.model_info("user/fragile").sha == first.commit_sha
    assert {f.path: f.blob_id for f in api.list_repo_tree("user/fragile", recursive=True)} == files
    assert len(api.list_repo_commits("user/fragile")) == 2  # the initial commit and the first push


def test_push_to_a_tag_is_refused(hub_server, api, tmp_path):
    run = make_run(tmp_path / "run")
    push_checkpoint(run, "user/tagged", token=TOKEN)
    api.create_tag("user/tagged", tag="v1")
    with pytest.raises(UploadError, match=r"refused pushing to user/tagged \(HTTP 400: Invalid branch name: v1\)"):
        push_checkpoint(run, "user/tagged", token=TOKEN, revision="v1")


def test_unreachable_hub(hf_env, tmp_path):
    with pytest.raises(HubError, match=r"Hub on http://127.0.0.1:9 cannot be reached") as info:
        load_sdf("user/x", endpoint="http://127.0.0.1:9")
    assert "user/x" in str(info.value)


def test_messages_never_contain_tokens(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env_secret_value")
    assert str(HubError("bad hf_env_secret_value here")) == "bad *** here"
    from diffcd_hub.errors import remember_secret, secret_scope

    with secret_scope():
        remember_secret("hf_argument_secret")
        assert "hf_argument_secret" not in scrub("token=hf_argument_secret")
        assert "hf_argument_secret" not in str(UploadError(f"{io.StringIO} hf_argument_secret"))
    # the request is over: its token is not kept anywhere (issue 8, item 7)
    assert "hf_argument_secret" in scrub("token=hf_argument_secret")
    remember_secret("hf_outside_any_request")
    assert "hf_outside_any_request" in scrub("hf_outside_any_request")


def test_a_visitors_token_is_not_kept_after_the_pull(hub_server, monkeypatch):
    import gc

    with pytest.raises(AuthError):
        load_sdf("user/nothing", token="hf_visitor_token_9f8e7d")
    gc.collect()
    assert "hf_visitor_token_9f8e7d" in scrub("hf_visitor_token_9f8e7d")  # no process-wide set holds it
    import diffcd_hub.errors

    assert not hasattr(diffcd_hub.errors, "_SECRETS")

"""/push_checkpoint, /list_checkpoints and /pull_checkpoint against the loopback Hub server."""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh

from _apptest import TOKEN, USER, app_error as _error, fit_args


@pytest.fixture(scope="module")
def pushed(app_url, hub, tmp_path_factory):
    """A fit of the sphere example pushed to tester/sphere-igr; returns (client, commit_url)."""
    from gradio_client import Client

    client = Client(app_url, verbose=False, analytics_enabled=False,
                    download_files=str(tmp_path_factory.mktemp("push-client")))
    client.predict(**fit_args(example="sphere", method="igr"), api_name="/fit")
    url, status = client.predict(repo_id=f"{USER}/sphere-igr", token=TOKEN, private=False, include_cloud=True,
                                 api_name="/push_checkpoint")
    return client, url, status


def test_push_gives_the_commit_url_and_never_echoes_the_token(pushed, hub):
    client, url, status = pushed
    assert url.startswith(hub.url) and f"{USER}/sphere-igr" in url and "/commit/" in url
    assert "Pushed" in status and "cloud.npy" in status and "model.safetensors" in status
    assert TOKEN not in url + status


def test_list_then_pull_shows_the_pushed_mesh(pushed, client):
    table = client.predict(author=USER, search="", api_name="/list_checkpoints")
    rows = {row[0]: row for row in table["data"]}  # other modules publish to the same Hub
    assert f"{USER}/sphere-igr" in rows and all(repo.startswith(f"{USER}/") for repo in rows)
    assert rows[f"{USER}/sphere-igr"][1] == "igr"
    glb, info, downloads, status = client.predict(repo_id=f"{USER}/sphere-igr", revision="", resolution=32,
                                                  token="", api_name="/pull_checkpoint")
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.faces) > 100 and "32³" in status
    assert f"**{USER}/sphere-igr**" in info and "IGR" in info
    assert {Path(d).suffix for d in downloads} == {".glb", ".ply", ".obj", ".zip"}
    # the pulled model is now this session's current model: re-mesh it
    glb2, files, status2, *_ = client.predict(resolution=24, api_name="/extract_mesh")
    assert "24³" in status2 and trimesh.load(glb2, force="mesh").faces.size > 0


def test_pull_by_commit_sha(pushed, client):
    _, url, _ = pushed
    sha = url.rstrip("/").rsplit("/", 1)[-1]
    glb, info, *_ = client.predict(repo_id=f"{USER}/sphere-igr", revision=sha, resolution=24, token="",
                                   api_name="/pull_checkpoint")
    assert sha[:12] in info


def test_push_without_a_token(pushed):
    client, *_ = pushed
    message = _error(client, "/push_checkpoint", repo_id=f"{USER}/x", token="", private=False,
                     include_cloud=False)
    assert "needs a Hugging Face access token with write access" in message


def test_push_with_a_wrong_token_names_the_problem_and_not_the_token(pushed):
    client, *_ = pushed
    wrong = "hf_wrong_SECRET_value_123456"
    message = _error(client, "/push_checkpoint", repo_id=f"{USER}/x", token=wrong, private=False,
                     include_cloud=False)
    assert "token" in message and wrong not in message


def test_pull_errors(client, hub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(f"{USER}/not-diffcd")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="notes.txt", repo_id=f"{USER}/not-diffcd")
    cases = [
        ({"repo_id": f"{USER}/not-diffcd"}, "is not a diffcd checkpoint"),
        ({"repo_id": f"{USER}/missing"}, "was not found"),
        ({"repo_id": "no-slash"}, "is not a repo id"),
        ({"repo_id": f"{USER}/sphere-igr-none", "revision": "v9"}, "was not found"),
    ]
    for kwargs, expected in cases:
        args = {"revision": "", "resolution": 32, "token": "", **kwargs}
        message = _error(client, "/pull_checkpoint", **args)
        assert expected in message, (kwargs, message)


def test_pull_unknown_revision(pushed, client):
    message = _error(client, "/pull_checkpoint", repo_id=f"{USER}/sphere-igr", revision="v9", resolution=32,
                     token="")
    assert "Revision 'v9' does not exist" in message


def test_token_is_not_written_to_session_files(pushed, app_server):
    _, demo = app_server
    root = demo.diffcd_handlers.store.root
    leaked = [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []

"""The loopback Hub server (tools.hubserver), driven by the real huggingface_hub client (never a mock)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub import errors as hf_errors

from tools.hubserver import HubServer

from _hubtest import OTHER_TOKEN, ROOT, TOKEN


def _commit(api: HfApi, repo_id: str, files: dict[str, bytes], *, revision=None, message="add files", **kw):
    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(repo_id, ops, commit_message=message, revision=revision, **kw)


def test_create_repo_exist_ok_and_permissions(api, hub_server):
    url = api.create_repo("user/a")
    assert url == f"{hub_server.url}/user/a" and url.repo_id == "user/a"
    assert api.create_repo("user/a", exist_ok=True) == url
    with pytest.raises(hf_errors.HfHubHTTPError) as info:
        api.create_repo("user/a")
    assert info.value.response.status_code == 409
    assert info.value.response.json()["url"] == url
    assert api.create_repo("diffcd-org/b").repo_id == "diffcd-org/b"  # an org the user belongs to
    with pytest.raises(hf_errors.HfHubHTTPError) as info:
        api.create_repo("other/c")
    assert info.value.response.status_code == 403
    with pytest.raises(hf_errors.HfHubHTTPError):
        HfApi(endpoint=hub_server.url, token=False).create_repo("user/d")
    # a new repo holds the initial commit with .gitattributes, like on the Hub
    assert api.list_repo_files("user/a") == [".gitattributes"]


def test_commit_download_regular_and_lfs(api, hub_server, hf_env):
    api.create_repo("user/m")
    weights = os.urandom(5000)
    card = b"---\nlibrary_name: diffcd\ntags: [sdf, jax]\nlicense: mit\n---\n# A model\n"
    info = _commit(api, "user/m", {"model.safetensors": weights, "config.json": b'{"a": 1}', "README.md": card})
    assert len(info.oid) == 40 and info.commit_url.endswith(info.oid)

    model = api.model_info("user/m", files_metadata=True)
    assert model.sha == info.oid and model.library_name == "diffcd" and not model.private
    assert set(model.tags) >= {"sdf", "jax", "diffcd", "license:mit"}
    assert model.card_data.license == "mit"
    siblings = {s.rfilename: s for s in model.siblings}
    assert siblings["model.safetensors"].lfs.sha256 and siblings["model.safetensors"].size == 5000
    assert siblings["config.json"].lfs is None

    path = hf_hub_download("user/m", "model.safetensors", endpoint=hub_server.url, token=TOKEN)
    assert Path(path).read_bytes() == weights
    assert str(hf_env) in path
    meta = api.get_hf_file_metadata(url=f"{hub_server.url}/user/m/resolve/main/model.safetensors")
    assert meta.commit_hash == info.oid and meta.size == 5000 and len(meta.etag) == 64
    assert hub_server.requests[-1]["method"] == "HEAD"


def test_revisions_branches_tags_and_history(api, hub_server):
    api.create_repo("user/r")
    first = _commit(api, "user/r", {"x.txt": b"one"}, message="first").oid
    api.create_tag("user/r", tag="v1")
    api.create_branch("user/r", branch="dev")
    second = _commit(api, "user/r", {"x.txt": b"two"}, message="second").oid
    on_dev = _commit(api, "user/r", {"y.txt": b"dev"}, revision="dev", parent_commit=first).oid
    with pytest.raises(hf_errors.HfHubHTTPError) as info:
        api.create_branch("user/r", branch="dev")
    assert info.value.response.status_code == 409
    api.create_branch("user/r", branch="dev", exist_ok=True)

    def read(revision):
        return Path(hf_hub_download("user/r", "x.txt", revision=revision, endpoint=hub_server.url)).read_bytes()

    assert read("v1") == read(first) == b"one"
    assert read("main") == read(second) == b"two"
    assert api.list_repo_files("user/r", revision="dev") == [".gitattributes", "x.txt", "y.txt"]
    refs = api.list_repo_refs("user/r")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second, "dev": on_dev}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": first}
    hub_server.set_page_sizes(commits=1)
    titles = [c.title for c in api.list_repo_commits("user/r")]
    assert titles == ["second", "first", "initial commit"]
    with pytest.raises(hf_errors.RevisionNotFoundError):
        api.model_info("user/r", revision="nope")
    with pytest.raises(hf_errors.RevisionNotFoundError):
        hf_hub_download("user/r", "x.txt", revision="0" * 40, endpoint=hub_server.url)
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        hf_hub_download("user/r", "missing.txt", endpoint=hub_server.url)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        api.model_info("user/does-not-exist")
    api.delete_tag("user/r", tag="v1")
    api.delete_branch("user/r", branch="dev")
    assert not api.list_repo_refs("user/r").tags


def test_parent_commit_check_and_deletions(api):
    api.create_repo("user/p")
    first = _commit(api, "user/p", {"a/1.txt": b"1", "a/2.txt": b"2", "b.txt": b"b"}).oid
    _commit(api, "user/p", {"c.txt": b"c"})
    with pytest.raises(hf_errors.HfHubHTTPError) as info:
        _commit(api, "user/p", {"d.txt": b"d"}, parent_commit=first)
    assert info.value.response.status_code == 412
    api.create_commit("user/p", [CommitOperationDelete("a/"), CommitOperationDelete("b.txt")],
                      commit_message="delete")
    assert api.list_repo_files("user/p") == [".gitattributes", "c.txt"]
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        api.create_commit("user/p", [CommitOperationDelete("nope.txt")], commit_message="delete")


def test_tree_listing_recursive_and_paginated(api, hub_server):
    api.create_repo("user/t")
    _commit(api, "user/t", {f"d/e/{i}.txt": b"%d" % i for i in range(5)} | {"top.bin": b"\0\1\2"})
    hub_server.set_page_sizes(tree=2)
    recursive = list(api.list_repo_tree("user/t", recursive=True))
    assert [e.path for e in recursive] == (
        ["d", "d/e", ".gitattributes"] + [f"d/e/{i}.txt" for i in range(5)] + ["top.bin"])
    assert [e.path for e in api.list_repo_tree("user/t")] == ["d", ".gitattributes", "top.bin"]
    assert [e.path for e in api.list_repo_tree("user/t", path_in_repo="d")] == ["d/e"]
    top = next(e for e in recursive if e.path == "top.bin")
    assert top.lfs is not None  # binary content goes to LFS
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        list(api.list_repo_tree("user/t", path_in_repo="nowhere"))


def test_private_repos_need_the_right_token(api, hub_server):
    api.create_repo("user/secret", private=True)
    _commit(api, "user/secret", {"a.txt": b"hidden"})
    assert api.model_info("user/secret").private is True
    anonymous = HfApi(endpoint=hub_server.url, token=False)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        anonymous.model_info("user/secret")
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        hf_hub_download("user/secret", "a.txt", endpoint=hub_server.url, token=False)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        HfApi(endpoint=hub_server.url, token=OTHER_TOKEN).model_info("user/secret")
    with pytest.raises(hf_errors.HfHubHTTPError) as info:
        HfApi(endpoint=hub_server.url, token="hf_wrong").model_info("user/secret")
    assert info.value.response.status_code == 401
    assert info.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert [m.id for m in anonymous.list_models(author="user")] == []
    assert [m.id for m in api.list_models(author="user")] == ["user/secret"]


def test_list_models_filters(api, hub_server):
    for name, library, tags in [("one", "diffcd", ["sdf", "igr"]), ("two", "diffcd", ["sdf", "diffcd"]),
                                ("three", "timm", ["vision"])]:
        api.create_repo(f"user/{name}")
        card = f"---\nlibrary_name: {library}\ntags: {json.dumps(tags)}\n---\n".encode()
        _commit(api, f"user/{name}", {"README.md": card})
    api.create_repo("diffcd-org/four")
    _commit(api, "diffcd-org/four", {"README.md": b"---\nlibrary_name: diffcd\n---\n"})
    ids = lambda **kw: sorted(m.id for m in api.list_models(**kw))  # noqa: E731
    assert ids(filter="diffcd") == ["diffcd-org/four", "user/one", "user/two"]
    assert ids(filter=["diffcd", "igr"]) == ["user/one"]
    assert ids(filter="diffcd", author="user") == ["user/one", "user/two"]
    assert ids(search="thr") == ["user/three"]
    hub_server.set_page_sizes(models=1)
    models = list(api.list_models(filter="diffcd", cardData=True, limit=2))
    assert len(models) == 2 and all(m.card_data.library_name == "diffcd" for m in models)
    full = next(iter(api.list_models(search="one", full=True)))
    assert [s.rfilename for s in full.siblings] == [".gitattributes", "README.md"]


def test_whoami(api, hub_server):
    me = api.whoami()
    assert me["name"] == "user" and me["orgs"] == [{"type": "org", "name": "diffcd-org"}]
    with pytest.raises(hf_errors.HfHubHTTPError):
        HfApi(endpoint=hub_server.url, token="hf_wrong").whoami()


@pytest.mark.parametrize("endpoint, status", [("commit", 500), ("lfs_upload", 403), ("preupload", 400)])
def test_failure_mid_upload_leaves_repo_unchanged(api, hub_server, endpoint, status):
    api.create_repo("user/f")
    before = _commit(api, "user/f", {"model.safetensors": os.urandom(100), "config.json": b"{}"}).oid
    hub_server.fail_next(endpoint, status=status)
    with pytest.raises(Exception):
        _commit(api, "user/f", {"model.safetensors": os.urandom(100), "config.json": b'{"b": 2}'})
    assert api.model_info("user/f").sha == before
    assert [c.commit_id for c in api.list_repo_commits("user/f")][0] == before
    assert any(r["endpoint"] == endpoint and r["status"] == status for r in hub_server.requests)


def test_persistent_storage(tmp_path, hf_env):
    data = tmp_path / "data"
    with HubServer({TOKEN: "user"}, storage_dir=data) as server:
        api = HfApi(endpoint=server.url, token=TOKEN)
        api.create_repo("user/kept", private=True)
        sha = _commit(api, "user/kept", {"w.bin": b"\0" * 64, "n.txt": b"note"}).oid
        api.create_tag("user/kept", tag="v1")
    with HubServer({TOKEN: "user"}, storage_dir=data) as server:
        api = HfApi(endpoint=server.url, token=TOKEN)
        assert api.model_info("user/kept", revision="v1").sha == sha
        path = hf_hub_download("user/kept", "w.bin", endpoint=server.url, token=TOKEN, cache_dir=tmp_path / "c")
        assert Path(path).read_bytes() == b"\0" * 64


def test_keep_alive_reads_every_body(hub_server):
    """An ignored or failing request's body must not corrupt the next request on the connection."""
    parts = urlsplit(hub_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    body = json.dumps({"name": "x", "organization": None}).encode() * 50
    conn.request("POST", "/api/nowhere", body=body, headers={"Content-Type": "application/json"})
    first = conn.getresponse()
    first.read()
    assert first.status == 404
    conn.request("POST", "/api/validate-yaml", body=json.dumps({"content": "---\na: [\n---\n"}))
    second = conn.getresponse()
    assert second.status == 400 and json.loads(second.read())["errors"]
    conn.request("GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {TOKEN}"})
    third = conn.getresponse()
    assert third.status == 200 and json.loads(third.read())["name"] == "user"
    conn.close()


def test_command_line_server(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.hubserver", "--port", "0", "--token", "hf_cli_tok", "--data", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Hub dev server at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[4]
        hint = proc.stdout.readline()
        assert "hf_cli_tok" not in line + hint and "HF_TOKEN=<one of your --token values>" in hint
        assert HfApi(endpoint=url, token="hf_cli_tok").whoami()["name"] == "user"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_command_line_server_without_a_token_never_prints_its_default_token():
    from tools.hubserver import DEFAULT_TOKEN

    help_text = subprocess.run([sys.executable, "-m", "tools.hubserver", "--help"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    assert DEFAULT_TOKEN in help_text  # documented where a user looks first
    proc = subprocess.Popen([sys.executable, "-m", "tools.hubserver", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Hub dev server at http://127.0.0.1:"), line + proc.stderr.read()
        hint = proc.stdout.readline()
        assert DEFAULT_TOKEN not in line + hint and "--help" in hint and "--token values" not in hint
        assert HfApi(endpoint=line.split()[4], token=DEFAULT_TOKEN).whoami()["name"] == "user"
    finally:
        proc.terminate()
        proc.wait(timeout=10)

"""list_checkpoints, the `python -m diffcd_hub` command line, and the rule that tokens never leak."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from _hubtest import CLOUD_DISTANCES, EVAL, OTHER_TOKEN, ROOT, TOKEN, files_containing, make_run
from huggingface_hub import CommitOperationAdd

from diffcd_hub import list_checkpoints, push_checkpoint
from diffcd_hub.cli import main


@pytest.fixture
def published(hub_server, api, tmp_path):
    """Three checkpoints (one private, one in an org) and one repo of another library."""
    shas = {
        "user/sphere-diffcd": push_checkpoint(make_run(tmp_path / "a"), "user/sphere-diffcd", token=TOKEN).commit_sha,
        "user/sphere-igr": push_checkpoint(make_run(tmp_path / "b", method="igr", metrics=False),
                                           "user/sphere-igr", token=TOKEN, private=True).commit_sha,
        "diffcd-org/sphere-siren": push_checkpoint(make_run(tmp_path / "c", method="siren"),
                                                   "diffcd-org/sphere-siren", token=TOKEN).commit_sha,
    }
    api.create_repo("user/other-library")
    api.create_commit("user/other-library", [CommitOperationAdd("README.md", b"---\nlibrary_name: timm\n---\n")],
                      commit_message="card")
    return shas


def test_list_checkpoints(published):
    rows = {row["repo_id"]: row for row in list_checkpoints(token=TOKEN)}
    assert set(rows) == set(published)
    assert rows["user/sphere-diffcd"]["metrics"] == {"eval": EVAL, "cloud_distances": CLOUD_DISTANCES}
    assert rows["user/sphere-igr"]["metrics"] == {} and rows["user/sphere-igr"]["private"]
    assert {repo: row["method"] for repo, row in rows.items()} == {
        "user/sphere-diffcd": "diffcd", "user/sphere-igr": "igr", "diffcd-org/sphere-siren": "siren"}
    assert all(row["sha"] == published[repo] and row["last_modified"] for repo, row in rows.items())
    assert [r["repo_id"] for r in list_checkpoints()] == ["diffcd-org/sphere-siren", "user/sphere-diffcd"]
    assert [r["repo_id"] for r in list_checkpoints(author="user")] == ["user/sphere-diffcd"]
    assert len(list_checkpoints(token=TOKEN, limit=1)) == 1
    assert [r["repo_id"] for r in list_checkpoints(token=OTHER_TOKEN, author="user")] == ["user/sphere-diffcd"]


def test_cli_push_pull_list(hub_server, tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path / "run")
    assert main(["push", str(run), "user/cli", "--token", TOKEN, "--message", "from the CLI", "--private"]) == 0
    out = capsys.readouterr().out
    assert f"commit: {hub_server.url}/user/cli/commit/" in out and "sha: " in out
    sha = out.split("sha: ")[1].split()[0]
    assert len(sha) == 40

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["pull", "user/cli", "--revision", sha, "--resolution", "24", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"at {sha}" in out and (tmp_path / "o" / "mesh.glb").is_file()

    assert main(["list", "--author", "user"]) == 0
    listing = capsys.readouterr().out
    assert "user/cli" in listing and "chamfer=0.0123" in listing


@pytest.mark.parametrize("argv, message", [
    (["pull", "user/missing"], "user/missing was not found"),
    (["pull", "user/cli", "--revision", "nope"], "'nope' does not exist in user/cli"),
    (["push", "RUN", "user/cli"], "needs a Hugging Face access token"),
    (["push", "RUN", "user/cli", "--token", "hf_bad_cli_token"], "refused the access token"),
    (["push", "nowhere", "user/cli", "--token", TOKEN], "does not exist"),
])
def test_cli_errors_are_one_line(hub_server, tmp_path, capsys, argv, message):
    run = make_run(tmp_path / "run")
    push_checkpoint(run, "user/cli", token=TOKEN)
    argv = [str(run) if a == "RUN" else a for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert "Traceback" not in err and "hf_bad_cli_token" not in err


def test_cli_help_explains_every_option(capsys):
    def help_text(*args):
        with pytest.raises(SystemExit) as info:
            main([*args, "-h"])
        assert info.value.code == 0
        return capsys.readouterr().out

    assert all(word in help_text() for word in ("push", "pull", "list", "HF_ENDPOINT"))
    push = help_text("push")
    for option in ("--private", "--revision", "--message", "--include-cloud", "--token", "--mesh-resolution"):
        assert option in push
    assert all(o in help_text("pull") for o in ("--revision", "--resolution", "--out", "--token"))
    assert all(o in help_text("list") for o in ("--author", "--limit", "--token"))


def test_python_dash_m_hub(hub_server, tmp_path):
    """The module entry point, in a fresh process: output and exit status."""
    run = make_run(tmp_path / "run")
    env = {**os.environ, "HF_TOKEN": TOKEN}
    done = subprocess.run([sys.executable, "-m", "diffcd_hub", "push", str(run), "user/proc"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "sha: " in done.stdout, done.stderr
    failed = subprocess.run([sys.executable, "-m", "diffcd_hub", "pull", "user/absent"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
    assert TOKEN not in done.stdout + done.stderr + failed.stdout + failed.stderr


def test_token_never_written_or_logged(hub_server, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    run = make_run(tmp_path / "run")
    assert main(["push", str(run), "user/leak", "--token", TOKEN, "--private"]) == 0
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["pull", "user/leak", "--resolution", "24", "--out", str(tmp_path / "out")]) == 0
    assert main(["list"]) == 0
    assert main(["pull", "user/leak", "--revision", "missing"]) == 2
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.chdir(tmp_path)
    assert main(["pull", "user/not-cached", "--token", TOKEN + "x"]) == 2  # a wrong token containing the right one

    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert TOKEN not in text
    assert files_containing(tmp_path, TOKEN) == []  # HF_HOME, cache, run and output folders
    blobs = hub_server.state.blobs._memory.values()  # everything pushed, the model card included
    assert blobs and not any(TOKEN.encode() in blob for blob in blobs)

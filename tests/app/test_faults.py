"""Faults the app must survive with nothing lost and a clear sentence: a Hub that dies in the middle
of a push, a disk that fills in the middle of writing a run."""

from __future__ import annotations

import errno
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from _apptest import TINY_PRESET, TOKEN, USER, fit_args

from diffcd_space.limits import Limits
from diffcd_space.sessions import SessionStore


def _handlers(tmp_path, hub_endpoint=None):
    from diffcd_space.handlers import Handlers

    return Handlers(presets={"test-tiny": TINY_PRESET}, store=SessionStore(tmp_path / "sessions"),
                    limits=Limits.local(), hub_endpoint=hub_endpoint)


def _fit(handlers, session, seed=0):
    *_, last = handlers.fit(**fit_args(method="igr", steps=20, seed=seed), request=SimpleNamespace(session_hash=session))
    return last[-1]


@pytest.fixture
def dying_hub(hf_home):
    """A loopback Hub of its own that drops the connection, without answering, at the first commit."""
    from tools.hubserver import HubServer

    server = HubServer({TOKEN: USER})
    handle = server.app.handle

    def handle_or_die(req):
        endpoint = server.app._route(req)[0] if req.path.startswith("/api/") else ""
        if endpoint == "commit" and server.dying:
            raise ConnectionAbortedError("the Hub died")  # the handler thread ends: no answer is sent
        return handle(req)

    server.dying = False
    server.app.handle = handle_or_die
    server.start()
    yield server
    server.stop()


def test_a_hub_that_dies_mid_push_commits_nothing_and_says_so(tmp_path, dying_hub):
    from huggingface_hub import HfApi

    handlers = _handlers(tmp_path, hub_endpoint=dying_hub.url)
    state = _fit(handlers, "pusher")
    first, _ = handlers.push_checkpoint(f"{USER}/fragile", token=TOKEN, current=state)
    api = HfApi(endpoint=dying_hub.url, token=TOKEN)
    before = api.model_info(f"{USER}/fragile").sha
    changed = _fit(handlers, "pusher-2", seed=1)  # another model: the push has files to commit
    dying_hub.dying = True
    with pytest.raises(gr.Error) as info:
        handlers.push_checkpoint(f"{USER}/fragile", token=TOKEN, current=changed)
    message = info.value.message
    assert "fragile" in message and message.endswith(".") and TOKEN not in message
    dying_hub.dying = False
    assert api.model_info(f"{USER}/fragile").sha == before  # nothing was committed
    assert len(api.list_repo_commits(f"{USER}/fragile")) == 2  # the repo's creation and the first push


def test_a_disk_that_fills_mid_run_keeps_the_model_and_says_where(tmp_path, monkeypatch):
    from diffcd import runs

    written = []

    def disk_fills(path, *args, **kwargs):  # the mesh and the export are written, then the disk is full
        written.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "write_history", disk_fills)
    handlers = _handlers(tmp_path)
    updates = []
    with pytest.raises(gr.Error) as info:
        for update in handlers.fit(**fit_args(method="igr", steps=20), request=SimpleNamespace(session_hash="full")):
            updates.append(update)
    assert written, "the run was not being written when the disk filled"
    message = info.value.message
    assert "disk is full" in message and "model is kept" in message
    state = updates[-1][-1]
    kept = Path(state["model_dir"])
    assert (kept / "model.safetensors").is_file() and (kept / "config.json").is_file()
    assert not list(kept.parent.glob("fit-*/run"))  # no half-written run folder is left behind
    from diffcd import load_sdf

    assert load_sdf(kept).steps == 20

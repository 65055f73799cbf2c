"""Issue 8: the public Space under attack. Each test reproduces an attack that worked on main.

Most run the app's handlers without a server (fast); the session-id and Stop tests use the app
server of conftest, as an attacker would.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import gradio as gr
import numpy as np
import pytest
import trimesh
from _apptest import TINY_PRESET, fit_args

from diffcd_space.errors import catch_all
from diffcd_space.jobs import Budget, ComputeLine
from diffcd_space.limits import Limits
from diffcd_space.sessions import SHARED_FOLDER, SessionStore

HOSTILE_SESSION_IDS = ["!!!", "..", ".", "", "_shared", "/", "../../..", "a" * 10_000, "\x00", "é" * 50]


def _request(session: str):
    return SimpleNamespace(session_hash=session)


def _handlers(tmp_path, hub_endpoint=None, **limit_changes):
    from diffcd_space.handlers import Handlers

    limits = Limits.local().with_changes(**limit_changes)
    return Handlers(presets={"test-tiny": TINY_PRESET}, store=SessionStore(tmp_path / "sessions"), limits=limits,
                    hub_endpoint=hub_endpoint)


# ----------------------------------------------------------------------------- 1. session ids
@pytest.mark.parametrize("session", HOSTILE_SESSION_IDS)
def test_no_session_id_reaches_the_root_the_shared_folder_or_another_session(tmp_path, session):
    store = SessionStore(tmp_path / "root")
    victim = store.folder(_request("victim"))
    (victim / "result.glb").write_bytes(b"mine")
    shared = store.root / SHARED_FOLDER
    shared.mkdir()
    folder = store.folder(_request(session))
    assert folder.parent == store.root and folder not in (store.root, shared, victim)
    store.close(_request(session))
    past = time.time() - 10 * 24 * 3600
    os.utime(shared, (past, past))
    store.max_age = 60
    store.sweep()
    assert store.root.is_dir() and shared.is_dir() and (victim / "result.glb").read_bytes() == b"mine"


def test_a_crafted_heartbeat_session_deletes_nobody_s_files(app_server, client):
    import httpx

    url, demo = app_server
    store = demo.diffcd_handlers.store
    client.predict(example="torus", api_name="/load_example")
    victim = store.folder(_request("victim-session"))
    (victim / "fit.glb").write_bytes(b"mine")
    shared = store.root / SHARED_FOLDER
    assert shared.is_dir()
    for session in ("!!!", "..", "%2E%2E", "_shared", "x" * 5000):
        try:
            with httpx.stream("GET", f"{url}gradio_api/heartbeat/{quote(session, safe='%')}", timeout=5) as answer:
                next(answer.iter_bytes(), None)  # then drop the connection: the app's unload runs
        except httpx.HTTPError:
            pass
    time.sleep(2)
    assert store.root.is_dir() and shared.is_dir() and (victim / "fit.glb").read_bytes() == b"mine"
    # the examples still show (their shared previews were not deleted)
    glb, _ = client.predict(example="torus", api_name="/load_example")
    assert Path(glb).is_file()


# ----------------------------------------------------------------------------- 2. uploads
def test_upload_size_is_checked_before_the_file_is_read(tmp_path, monkeypatch):
    from diffcd_space import validation

    big = tmp_path / "big.npy"
    np.save(big, np.zeros((20_000, 3), np.float32))
    monkeypatch.setattr(validation, "load_point_cloud", lambda *a, **k: pytest.fail("the file was read"))
    with pytest.raises(gr.Error, match="more than this app's limit"):
        validation.load_cloud(str(big), None, max_points=1000, max_bytes=100_000)
    with pytest.raises(gr.Error, match="more than this app's limit"):
        validation.check_cloud_choice(str(big), None, max_bytes=100_000)


def test_events_that_parse_uploads_have_a_concurrency_limit(app_server):
    _, demo = app_server
    handlers = demo.diffcd_handlers
    parsing = {"check_fit", "check_compare", "preview_cloud", "load_example"}
    seen = set()
    for block_fn in demo.fns.values():
        name = getattr(block_fn.fn, "__name__", "")
        if name in parsing:
            seen.add(name)
            assert block_fn.concurrency_limit not in (None, "default") and block_fn.concurrency_limit <= 4, name
    assert seen == parsing
    assert handlers.limits.max_upload_bytes > 0


# ----------------------------------------------------------------------------- 4. time, queue, stop
def test_one_session_cannot_hold_more_than_its_share_of_the_line():
    line = ComputeLine(jobs_per_client=1, max_waiting=16)
    with line.enter("session-a", "fit"):
        with pytest.raises(gr.Error, match="already has 1 job"):
            with line.enter("session-a", "fit"):
                pass
        with line.enter("session-b", "fit"):  # others still get in
            pass
    with line.enter("session-a", "fit"):  # and the first again once its job ended
        pass


def test_a_full_line_says_so_and_when_to_retry():
    line = ComputeLine(jobs_per_client=1, max_waiting=2)
    with line.enter("a", "fit"), line.enter("b", "fit"):
        with pytest.raises(gr.Error, match=r"queue is full.*Try again in about \d+ min"):
            with line.enter("c", "fit"):
                pass


def test_jobs_run_one_at_a_time_in_arrival_order():
    line = ComputeLine(jobs_per_client=1, max_waiting=8)
    order, running = [], []

    def job(name):
        with line.enter(name, "fit") as ticket:
            ticket.wait_quietly()
            running.append(name)
            assert len(running) == 1
            time.sleep(0.05)
            order.append(name)
            running.remove(name)

    threads = []
    for name in "abcd":
        threads.append(threading.Thread(target=job, args=(name,)))
        threads[-1].start()
        time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    assert order == list("abcd")


def test_a_stop_pressed_while_waiting_is_not_forgotten_and_fit_and_compare_stop_separately(tmp_path):
    store = SessionStore(tmp_path)
    me = _request("me")
    store.request_stop(me, "fit")          # an old Stop: must not stop the next fit
    fit_stopped = store.stop_check(me, "fit")
    compare_stopped = store.stop_check(me, "compare")
    assert not fit_stopped()
    store.request_stop(me, "fit")          # pressed while the fit waits in the line
    assert fit_stopped() and not compare_stopped()


def test_a_fit_stopped_while_it_waits_never_starts(tmp_path):
    handlers = _handlers(tmp_path)
    me = _request("waiting")
    with handlers.line.enter("someone-else", "fit") as other:  # the device is busy
        other.wait_quietly()
        updates = handlers.fit(**fit_args(), request=me)
        first = next(updates)
        while "Waiting for the device" not in first[2]:
            first = next(updates)
        handlers.stop(me)
        rest = list(updates)
    assert "Stopped" in rest[-1][2] and "before the fit started" in rest[-1][2]


def test_re_mesh_has_a_wall_time_limit(tmp_path):
    from diffcd import FittedSDF

    handlers = _handlers(tmp_path, max_request_seconds=0.0)
    fitted = _tiny_fitted()
    assert isinstance(fitted, FittedSDF)
    with pytest.raises(gr.Error, match="limit"):
        handlers.extract_mesh(resolution=64, current={"fitted": fitted, "label": "m"}, request=_request("me"))


def test_meshing_has_a_face_limit(tmp_path):
    handlers = _handlers(tmp_path, max_mesh_faces=10)
    with pytest.raises(gr.Error, match="triangles"):
        handlers.extract_mesh(resolution=64, current={"fitted": _tiny_fitted(), "label": "m"},
                              request=_request("me"))


def test_the_time_budget_counts_from_when_the_job_gets_the_device():
    budget = Budget(0.2)
    time.sleep(0.3)
    assert not budget.expired()
    budget.begin()
    assert not budget.expired() and budget.past(0.0)
    time.sleep(0.25)
    assert budget.expired() and Budget(None).begin().remaining() == float("inf")


def test_stop_is_served_at_once_while_the_line_is_full(app_server, client):
    _, demo = app_server
    line = demo.diffcd_handlers.line
    held = [line.enter(f"holder-{i}", "fit") for i in range(line.max_waiting)]
    for ticket in held:
        ticket.__enter__()
    try:
        start = time.monotonic()
        assert "Stopping" in client.predict(api_name="/stop")
        assert "Stopping" in client.predict(api_name="/stop_compare")
        assert time.monotonic() - start < 10
        from _apptest import app_error

        message = app_error(client, "/fit", **fit_args())
        assert "queue is full" in message.lower() and "Try again" in message
    finally:
        for ticket in held:
            ticket.__exit__(None, None, None)


# ----------------------------------------------------------------------------- 6. sentences
@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2.3GiB"), "out of memory"),
    (MemoryError(), "out of memory"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (ValueError("invalid literal for int() with base 10: 'abc'"), "unexpected"),
])
def test_every_failure_is_a_sentence_and_secrets_stay_out_of_logs(error, words, caplog):
    token = "hf_SECRET_visitor_token_123"

    @catch_all("Cannot pull this checkpoint")
    def handler(repo_id, token=None):
        raise type(error)(*error.args, token) if isinstance(error, ValueError) else error

    with pytest.raises(gr.Error) as info:
        handler("a/b", token=token)
    assert words in info.value.message.lower() and info.value.message.endswith(".")
    assert token not in info.value.message and token not in caplog.text


def test_every_public_endpoint_has_the_catch_all(app_server):
    _, demo = app_server
    quick = {"stop", "stop_compare"}  # set a counter and return a constant
    for block_fn in demo.fns.values():
        if block_fn.api_name and block_fn.api_visibility == "public" and block_fn.api_name not in quick:
            assert hasattr(block_fn.fn, "__wrapped__"), block_fn.api_name


def test_a_full_disk_at_the_end_of_a_fit_keeps_the_model_and_says_where(tmp_path, monkeypatch):
    from diffcd_space import fit_tab

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fit_tab, "write_run", disk_full)
    handlers = _handlers(tmp_path)
    updates = handlers.fit(**fit_args(steps=20), request=_request("full"))
    seen = []
    with pytest.raises(gr.Error) as info:
        for update in updates:
            seen.append(update)
    assert "disk is full" in info.value.message and "model is kept" in info.value.message
    state = seen[-1][-1]
    assert state["model_dir"] and (Path(state["model_dir"]) / "model.safetensors").is_file()
    # and the kept model can be meshed again
    glb, downloads, status, _ = handlers.extract_mesh(resolution=32, current=state, request=_request("full"))
    assert Path(glb).is_file() and "Meshed" in status


def test_when_nothing_can_be_written_the_model_is_kept_in_memory(tmp_path, monkeypatch):
    from diffcd_space import context, fit_tab

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fit_tab, "write_run", disk_full)
    monkeypatch.setattr(context, "export_sdf", disk_full)
    handlers = _handlers(tmp_path)
    seen = []
    with pytest.raises(gr.Error, match="kept in this session's memory"):
        for update in handlers.fit(**fit_args(steps=20), request=_request("full")):
            seen.append(update)
    assert seen[-1][-1]["fitted"] is not None


# ----------------------------------------------------------------------------- 7. tokens, markdown, lifetimes
def test_pulled_metadata_cannot_render_images_links_or_html(tmp_path, monkeypatch):
    import diffcd_hub.pull

    fitted = _tiny_fitted()
    folder = tmp_path / "pulled"
    folder.mkdir()
    evil = "![x](https://tracker.example/p.png)<img src=https://tracker.example/q.png>[click](https://evil.example)"
    pulled = SimpleNamespace(sdf=fitted, folder=folder, commit_sha="0" * 40, revision=evil,
                             config={"method": evil, "network": {"width": evil, "hidden_layers": 2},
                                     "steps": "abc", "seed": {"deep": [1]}},
                             metrics={"eval": {evil: evil}})
    monkeypatch.setattr(diffcd_hub.pull, "pull_checkpoint", lambda *a, **k: pulled)
    handlers = _handlers(tmp_path)
    _, info, *_ = handlers.pull_checkpoint("user/evil", resolution=32, request=_request("me"))
    rendered = gr.Markdown().postprocess(info)
    text = getattr(rendered, "root", rendered)
    outside_code = "".join(part for i, part in enumerate(str(text).split("`")) if i % 2 == 0)
    assert "](" not in outside_code and "<img" not in outside_code and "https://" not in outside_code


def test_a_visitor_s_token_does_not_outlive_the_request(tmp_path, hub):
    from _apptest import TOKEN

    from diffcd_hub import errors

    handlers = _handlers(tmp_path, hub_endpoint=hub.url)
    with pytest.raises(gr.Error):
        handlers.pull_checkpoint("tester/does-not-exist", resolution=32, token=TOKEN, request=_request("me"))
    # The token is scrubbed per request (a context variable), never kept in module state.
    assert errors._REQUEST_SECRETS.get() is None
    assert not [name for name, value in vars(errors).items()
                if isinstance(value, (set, list, tuple, dict)) and TOKEN in value]


def test_cache_and_session_lifetimes_are_bounded_and_swept_without_page_loads(tmp_path, app_server):
    _, demo = app_server
    frequency, age = demo.delete_cache
    assert age <= 3600 and frequency <= 900
    store = SessionStore(tmp_path / "root", max_age=0.5)
    idle = store.folder(_request("api-only"))
    working = _request("long-fit")
    with store.busy(working) as folder:
        past = time.time() - 3600
        for path in (idle, folder):
            os.utime(path, (past, past))
        store.start_sweeper(0.1)
        deadline = time.monotonic() + 10
        while idle.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not idle.exists(), "the timer swept no idle API-only session"
        assert folder.is_dir(), "a busy session's folder was swept"
    store.remove_all()


# ----------------------------------------------------------------------------- helpers
_FITTED = []


def _tiny_fitted():
    """A 2×32 network fitted for a few steps to a sphere (built once per test session)."""
    if not _FITTED:
        from diffcd import Fitter

        rng = np.random.default_rng(0)
        points = rng.normal(size=(2000, 3))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        config = TINY_PRESET.config("igr", steps=30)
        fitter = Fitter(points.astype(np.float32), config)
        for event in fitter.run():
            pass
        _FITTED.append(fitter.fitted())
    return _FITTED[0]


# ----------------------------------------------------------------------------- issue 11 §6
class _FakeFitter:
    """Chunks of 20 ms; records when each chunk starts, so a pause between chunks shows."""

    def __init__(self, chunks):
        self.chunks, self.starts, self.cancelled = chunks, [], False

    def run(self):
        for step in range(1, self.chunks + 1):
            if self.cancelled:
                break
            self.starts.append(time.monotonic())
            time.sleep(0.02)
            yield SimpleNamespace(done=False, step=step)
        yield SimpleNamespace(done=True, step=step, result="result")

    def cancel(self):
        self.cancelled = True

    def fitted(self):
        return _SlowModel()


class _SlowModel:
    def extract_mesh(self, resolution, **options):
        time.sleep(0.3)  # a slow snapshot
        from diffcd.errors import NoSurfaceError
        raise NoSurfaceError("none")


def test_training_never_waits_for_snapshots_or_ui_updates(tmp_path):
    from diffcd_space.training import train

    fitter = _FakeFitter(chunks=60)
    start = time.monotonic()
    updates = []
    for progress in train(fitter, folder=tmp_path, snapshot_seconds=0.0, snapshot_resolution=16,
                          should_stop=lambda: False, ui_interval=0.5):
        updates.append(progress)
        time.sleep(0.05)  # a slow consumer (sending an update to the page)
    seconds = time.monotonic() - start
    gaps = np.diff(fitter.starts)
    assert gaps.max() < 0.2, f"training paused {gaps.max():.2f} s between chunks"
    assert updates[-1].event.done and updates[-1].events_seen == 61
    assert len(updates) <= 2 * seconds + 3, f"{len(updates)} updates in {seconds:.1f} s"


class _SlowChunks(_FakeFitter):
    """Chunks of 1 s, and a model that meshes in 0.1 s."""

    def run(self):
        for step in range(1, self.chunks + 1):
            if self.cancelled:
                break
            time.sleep(1.0)
            yield SimpleNamespace(done=False, step=step)
        yield SimpleNamespace(done=True, step=step, result="result")

    def fitted(self):
        return SimpleNamespace(extract_mesh=lambda resolution, **options: (time.sleep(0.1), trimesh.creation.box())[1])


def test_a_snapshot_reaches_the_page_when_it_is_ready_not_with_the_next_chunk(tmp_path):
    from diffcd_space.training import train

    start, arrived = time.monotonic(), None
    for progress in train(_SlowChunks(chunks=3), folder=tmp_path, snapshot_seconds=0.0, snapshot_resolution=16,
                          should_stop=lambda: False, ui_interval=0.2):
        if progress.snapshot and arrived is None:
            arrived = time.monotonic() - start
    # offered after the first chunk (1 s), meshed in 0.1 s: shown then, not at the second chunk (2 s)
    assert arrived is not None and arrived < 1.6, f"the first snapshot reached the page after {arrived} s"


def test_the_worker_stops_when_asked(tmp_path):
    from diffcd_space.training import train

    fitter = _FakeFitter(chunks=10_000)
    stop_at = time.monotonic() + 0.3
    last = None
    for progress in train(fitter, folder=tmp_path, snapshot_seconds=60, snapshot_resolution=16,
                          should_stop=lambda: time.monotonic() > stop_at):
        last = progress
    assert last.event.done and len(fitter.starts) < 1000


def test_each_download_is_written_once(tmp_path):
    import trimesh

    from diffcd_space.outputs import run_downloads

    run = tmp_path / "run"
    run.mkdir()
    trimesh.creation.icosphere().export(run / "mesh.ply")
    shown, files = run_downloads(run, "sphere")
    ply = next(Path(f) for f in files if f.endswith(".ply"))
    assert os.path.samefile(ply, run / "mesh.ply")  # the PLY is the run's own file, not a copy
    assert {Path(f).suffix for f in files} == {".glb", ".ply", ".obj", ".zip"}

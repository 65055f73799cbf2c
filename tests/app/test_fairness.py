"""The public app against one client that acts like many: each attack runs against a running app
on loopback, small enough for the fast suite.

1. Polygon bombs: a mesh file whose faces have huge numbers of corners is refused with a sentence
   before anything is built, by /preview_cloud, /fit and /evaluate_checkpoint alike.
2. Slow URLs: many /fit calls whose cloud URL drips a byte at a time (a server on 127.0.0.1,
   private URLs allowed for the test) hold at most the read pool's slots, so /load_example and
   /stop stay fast for everyone.
3. One client, many sessions: a flood of fresh sessions from one address gets one job into the
   line; honest clients (other addresses, told apart by X-Forwarded-For behind the Space's proxy)
   each wait for at most that one job of the attacker's.
4. Orphans: a running fit whose caller disconnects stops within seconds and frees the device.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from _apptest import TINY_PRESET, app_error, fit_args, free_port

ATTACKER = "203.0.113.66"
HONEST = ("198.51.100.7", "2001:db8:aa:bb::1", "192.0.2.55")


def _client(url: str, tmp_path, address: str | None = None, **options):
    from gradio_client import Client

    headers = {"X-Forwarded-For": f"10.0.0.9, {address}"} if address else None  # a spoofed entry first
    return Client(url, verbose=False, analytics_enabled=False, headers=headers,
                  download_files=str(tmp_path / f"downloads-{uuid.uuid4().hex[:6]}"), **options)


# ----------------------------------------------------------------------------- a Space-like app
@pytest.fixture(scope="module")
def space_app(hub, tmp_path_factory):
    """The app with a Space's bounds (1 job per client, the proxy's X-Forwarded-For trusted)."""
    from diffcd_space import QUEUE_MAX_SIZE, build_app, launch_options
    from diffcd_space.limits import Limits

    limits = Limits.public().with_changes(max_points=50_000, max_request_seconds=120.0)
    # As on a Space, the proxy is not on loopback: uvicorn (which rewrites the peer from
    # X-Forwarded-For for loopback proxies) leaves the peer alone and the app reads the header.
    patch = pytest.MonkeyPatch()
    patch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.254")
    demo = build_app(extra_presets={TINY_PRESET.name: TINY_PRESET}, default_preset=TINY_PRESET.name,
                     hub_endpoint=hub.url, session_root=tmp_path_factory.mktemp("space-sessions"), limits=limits)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(limits))
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()
        patch.undo()


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# ----------------------------------------------------------------------------- 1. polygon bombs
def _polygon_bomb(path, corners: int):
    """Four vertices and one face that names them `corners` times: n − 2 triangles once fanned."""
    face = " ".join(str(1 + i % 4) for i in range(corners))
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf " + face + "\n")
    return path


def test_a_polygon_bomb_is_refused_with_a_sentence_before_it_is_built(app_url, tmp_path):
    from gradio_client import handle_file

    bomb = _polygon_bomb(tmp_path / "bomb.obj", 1_000_000)  # 2 MB
    client = _client(app_url, tmp_path)
    start = time.monotonic()
    message = app_error(client, "/preview_cloud", cloud=handle_file(str(bomb)))
    assert time.monotonic() - start < 10
    assert "corner" in message.lower() and "bomb.obj" in message, message
    message = app_error(client, "/fit", **fit_args(cloud=handle_file(str(bomb)), example=None))
    assert "corner" in message.lower() and "bomb.obj" in message, message


# ----------------------------------------------------------------------------- 2. slow URLs
@pytest.fixture
def drip_url():
    """A server on 127.0.0.1 that sends a .xyz file one byte every 0.5 s, until the test ends."""
    from benchmarks.load_fault import drip_server

    url, stop = drip_server(0.5)
    try:
        yield url
    finally:
        stop()


def test_a_flood_of_slow_urls_cannot_delay_cached_endpoints_or_stop(app_server, tmp_path, drip_url, monkeypatch):
    url, demo = app_server
    monkeypatch.setenv("DIFFCD_ALLOW_PRIVATE_URLS", "1")
    visitor = _client(url, tmp_path)
    assert visitor.predict("torus", api_name="/load_example")  # cached from now on
    from gradio_client import handle_file

    attacker = _client(url, tmp_path, max_workers=48)
    jobs = [attacker.submit(**fit_args(cloud=handle_file(drip_url), example=None), api_name="/fit")
            for _ in range(45)]
    reads = demo.diffcd_handlers.reads
    assert _wait_until(lambda: reads.snapshot()["reading"] >= 1, 20), reads.snapshot()
    time.sleep(1.0)  # the flood has arrived
    slowest = 0.0
    for _ in range(3):
        start = time.monotonic()
        assert visitor.predict("torus", api_name="/load_example")
        assert "Stopping" in visitor.predict(api_name="/stop")
        slowest = max(slowest, time.monotonic() - start)
    snapshot = reads.snapshot()
    assert snapshot["reading"] <= reads.total and snapshot["waiting"] <= reads.max_waiting
    assert slowest < 1.0, f"/load_example + /stop took {slowest:.2f} s during the flood"
    for job in jobs:
        job.cancel()


# ----------------------------------------------------------------------------- 3. one client, many sessions
def test_one_client_with_many_sessions_gets_one_job_and_honest_clients_wait_behind_one(space_app, tmp_path):
    url, demo = space_app
    line = demo.diffcd_handlers.line
    long_fit = fit_args(steps=100_000)
    sessions = [_client(url, tmp_path, ATTACKER) for _ in range(18)]
    jobs = [c.submit(**long_fit, api_name="/fit") for c in sessions]
    assert _wait_until(lambda: line.snapshot()["running"], 30), line.snapshot()
    refused = 0
    for job in jobs:
        try:
            job.result(timeout=0.1 if refused else 5)
        except Exception as error:  # noqa: BLE001 - gradio_client raises AppError or TimeoutError
            refused += "already has 1 job" in str(error)
    assert refused >= 17 - 1, refused  # all but the running one (one may still be arriving)
    assert _wait_until(lambda: line.snapshot()["clients"] == {f"addr:{ATTACKER}": 1}, 10), line.snapshot()
    honest = []
    for address in HONEST:
        client = _client(url, tmp_path, address)
        honest.append(client.submit(**fit_args(), api_name="/fit"))
        time.sleep(0.3)
    assert _wait_until(lambda: len(line.snapshot()["clients"]) == 4, 30), line.snapshot()
    snapshot = line.snapshot()
    assert snapshot["clients"][f"addr:{ATTACKER}"] == 1, snapshot
    assert "addr:2001:db8:aa:bb::/64" in snapshot["clients"]  # IPv6 counts per /64
    for session in sessions:
        session.predict(api_name="/stop")  # the attacker's own Stop ends its one job
    for ahead_of_it, job in enumerate(honest):  # honest clients that arrived earlier
        job.result(timeout=120)
        waits = [o[2] for o in job.outputs() if isinstance(o[2], str) and "job(s) ahead" in o[2]]
        first = int(waits[0].split("Waiting for the device: ")[1].split(" ")[0]) if waits else 0
        assert first <= 1 + ahead_of_it, waits[:1]  # at most one of the attacker's jobs ahead


def test_two_clients_are_told_apart_by_the_proxy_s_header_and_a_spoofed_entry_is_ignored(space_app, tmp_path):
    from diffcd_space.clients import ClientResolver, forwarded_address

    _, demo = space_app
    resolver = demo.diffcd_handlers.clients
    assert resolver.trusted_proxy_hops == 1
    assert str(forwarded_address(f"1.2.3.4, {ATTACKER}", "10.1.2.3", 1)) == ATTACKER
    assert str(forwarded_address(f"{ATTACKER}, 10.16.3.80", "10.1.2.3", 2)) == ATTACKER  # a proxy's own hop
    assert str(forwarded_address(f"{ATTACKER}", "127.0.0.1", 0)) == "127.0.0.1"  # locally: the peer
    assert ClientResolver(trusted_proxy_hops=0)  # the local app trusts no header


# ----------------------------------------------------------------------------- 4. orphans
def _join(url: str, demo, api_name: str, data: list) -> tuple[str, httpx.Client, httpx.Response]:
    """Join the queue over plain HTTP and open the event stream; returns (session, client, stream)."""
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == api_name)
    session = uuid.uuid4().hex[:11]
    http = httpx.Client(timeout=30)
    http.post(f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                    "event_data": None, "trigger_id": None}).raise_for_status()
    stream = http.send(http.build_request("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}),
                       stream=True)
    return session, http, stream


def test_a_fit_whose_caller_disconnects_stops_and_frees_the_device(app_server):
    url, demo = app_server
    line = demo.diffcd_handlers.line
    args = fit_args(steps=100_000)
    data = [args["cloud"], args["example"], args["method"], args["preset"], args["steps"], None, None, None, None,
            0, None, "none", "auto", 0.02, None]  # the raw protocol sends every input, the state last
    _, http, stream = _join(url, demo, "fit", data)
    fitting = False
    for line_text in stream.iter_lines():
        if line_text.startswith("data:") and '"fitting"' in line_text:
            fitting = True
            break
    assert fitting and line.snapshot()["running"]
    stream.close()
    http.close()  # the caller is gone
    start = time.monotonic()
    assert _wait_until(lambda: not line.snapshot()["running"], 15), line.snapshot()
    print(f"the orphaned fit freed the device {time.monotonic() - start:.1f} s after its caller left")
    assert json.dumps(line.snapshot())


class _Request:
    """What the resolver reads of a gr.Request: headers, the socket peer, an OAuth user name."""

    def __init__(self, headers: dict, peer: str = "127.0.0.1", username: str | None = None):
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.client = type("Peer", (), {"host": peer})()
        self.username = username


def test_a_token_counts_as_its_user_only_once_the_hub_confirms_it(hub):
    from _apptest import TOKEN, USER
    from diffcd_hub.account import token_owner
    from diffcd_space.clients import ClientResolver, ConfirmedTokens

    asked = []

    def lookup(token):
        asked.append(token)
        return token_owner(token, endpoint=hub.url)

    resolver = ClientResolver(trusted_proxy_hops=1, tokens=ConfirmedTokens(lookup))
    mine = resolver(_Request({"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": ATTACKER}))
    assert mine.key == f"user:{USER}" and mine.signed_in
    made_up = resolver(_Request({"X-HF-Authorization": "Bearer hf_made_up_token_123", "X-Forwarded-For": ATTACKER}))
    assert made_up.key == f"addr:{ATTACKER}" and not made_up.signed_in
    resolver(_Request({"Authorization": f"Bearer {TOKEN}"}))
    resolver(_Request({"X-HF-Authorization": "Bearer hf_made_up_token_123"}))
    assert len(asked) == 2  # each answer is cached
    assert resolver(_Request({}, username="alice")).key == "user:alice"  # an OAuth login


def test_signed_in_users_and_addresses_have_their_own_device_time_per_hour():
    import gradio as gr

    from diffcd_space.jobs import ComputeLine, DeviceLedger

    ledger = DeviceLedger(window=3600)
    line = ComputeLine(jobs_per_client=1, max_waiting=8, ledger=ledger)
    now = time.monotonic()
    ledger.add("addr:203.0.113.5", now - 110, now - 10)  # 100 s used this hour
    with pytest.raises(gr.Error, match=r"used 100 s of device time.*120 s an hour.*sign in"):
        with line.enter("addr:203.0.113.5", "fit", described="your network address", quota=120):
            pass
    with line.enter("user:alice", "fit", quota=3600) as job:  # another client is not affected
        job.wait_quietly()
        assert job.budget(600).seconds == 600
    with line.enter("addr:203.0.113.5", "fit", described="your network address", quota=200) as job:
        job.wait_quietly()
        budget = job.budget(600)  # what is left of the hour, not the request limit
        assert 95 < budget.seconds <= 100 and "left this hour" in budget.limit


def test_the_read_pool_bounds_reads_in_all_and_per_client_and_refuses_the_rest_at_once():
    from diffcd_space.clients import Client
    from diffcd_space.pool import ReadPool, ReadPoolBusy

    pool = ReadPool(total=2, per_client=1, max_waiting=1, wait_seconds=0.3)
    a, b, c = (Client(f"addr:203.0.113.{i}", False) for i in (1, 2, 3))
    with pool.slot(a, "the file"), pool.slot(b, "the file"):
        assert pool.snapshot() == {"reading": 2, "waiting": 0}
        start = time.monotonic()
        with pytest.raises(ReadPoolBusy, match="busy reading other files for 0 s"):
            with pool.slot(c, "the file"):  # waits its turn, then gives up
                pass
        assert 0.25 < time.monotonic() - start < 2
    pool.wait_seconds = 5.0
    done = []

    def read(client):
        with pool.slot(client, "the file"):
            done.append(client)
    with pool.slot(a, "the file"):
        second_of_a = threading.Thread(target=read, args=(a,))
        second_of_a.start()  # waits for a's first read: one read per client at a time
        assert _wait_until(lambda: pool.snapshot()["waiting"] == 1, 2)
        with pytest.raises(ReadPoolBusy, match="Another file of your network address"):
            with pool.slot(a, "the file"):  # a third read of the same client: refused at once
                pass
        with pool.slot(b, "the file"):  # another client still reads
            with pytest.raises(ReadPoolBusy, match="many visitors' files"):
                with pool.slot(c, "the file"):  # no slot free and the waiting room full: refused at once
                    pass
        assert done == []
    second_of_a.join(2)
    assert done == [a] and pool.snapshot() == {"reading": 0, "waiting": 0}

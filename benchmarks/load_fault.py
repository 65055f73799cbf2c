"""Load and fault test of the app: concurrent gradio_client sessions, well-behaved and hostile, on
one app with a Space's bounds and one loopback Hub, bounded in time, loopback only.

    python -m benchmarks.load_fault                 # 8 sessions; writes benchmarks/results/load-fault-cpu.{md,json}
    python -m benchmarks.load_fault --sessions 3 --no-write   # the small variant the test suite runs

Each well-behaved session uploads its own cloud (a sphere of its own radius), previews it, fits it
with a tiny network, re-meshes, pushes to its own repo and pulls it back; one of them stops its
fit. Hostile sessions send crafted heartbeat session ids (item 1), an oversize upload and an .npz
that decompresses to far more than it weighs (item 2), a deeply nested pulled config (items 3
and 6), a second fit while one waits (item 4) and a fit that would run for hours (the time limit).
Three attacks of one client that acts like many follow: one address opening 18 sessions, each
starting a fit, while 3 honest clients start theirs (each honest fit must wait behind at most one
of the attacker's jobs); a flood of /fit calls whose cloud URL drips one byte at a time
(/load_example must stay under a second); and polygon bombs (mesh files whose faces have huge
numbers of corners) sent at once to /preview_cloud and /fit (refused with a sentence, the app's
memory under the bound). Every client is told apart as on a Space: by the X-Forwarded-For entry
the front proxy appends.

The script reports requests served, errors by kind, peak RSS, the longest wait, the figures of
the three attacks, and checks that every well-behaved session got its own correct result, that
no session could read another's files, and that peak memory stayed under the stated bound.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TOKEN, USER = "hf_loadfault_SECRET_token_5521", "loadtester"
PEAK_RSS_BOUND_MB = 4000
"""The stated bound on the app process's peak resident memory during the run."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _tiny_preset():
    from diffcd_space.presets import AppPreset

    return AppPreset(name="load-tiny", base="cpu-quick", description="Load test: 2×32, 40 steps.", steps=40,
                     network={"hidden_layers": 2, "width": 32, "skip_layers": ()}, resolution=32,
                     batch_size=500, snapshot_resolution=16, snapshot_seconds=1.0, eval_samples=1000)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Requests served, errors by kind, waits; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.served = Counter()
        self.errors = Counter()
        self.longest_wait = 0.0
        self.failures: list[str] = []

    def call(self, name: str, function, *args, expect_error: str | None = None, **kwargs):
        from gradio_client.exceptions import AppError

        start = time.monotonic()
        try:
            result = function(*args, **kwargs)
        except AppError as error:
            message = str(error)
            with self.lock:
                self.errors[_kind(message)] += 1
                self.longest_wait = max(self.longest_wait, time.monotonic() - start)
                if expect_error is None:
                    self.failures.append(f"{name}: unexpected error: {message[:200]}")
                elif expect_error.lower() not in message.lower():
                    self.failures.append(f"{name}: expected an error about {expect_error!r}, got {message[:200]}")
                if not message.strip().endswith((".", ")")) or message.strip() in ("Error", "None"):
                    self.failures.append(f"{name}: the error is not a sentence: {message[:200]!r}")
            return None
        with self.lock:
            self.served[name] += 1
            self.longest_wait = max(self.longest_wait, time.monotonic() - start)
            if expect_error is not None:
                self.failures.append(f"{name}: expected an error about {expect_error!r}, it succeeded")
        return result

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            with self.lock:
                self.failures.append(what)


def _kind(message: str) -> str:
    text = message.lower()
    for words, kind in (("queue is full", "queue full"), ("already has", "one job per client"),
                        ("corners", "polygon over the corner bound"), ("would decode", "decoded size over the bound"),
                        ("limit", "over a limit"), ("disk", "disk full"), ("memory", "out of memory"),
                        ("nested", "nested file"), ("not a diffcd", "not a checkpoint"),
                        ("cannot reach", "hub unreachable"), ("unexpected", "unexpected")):
        if words in text:
            return kind
    return "other"


def _client(url: str, work: Path, address: str, **options):
    """A gradio_client session that the app's front proxy would report as coming from `address`."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, headers={"X-Forwarded-For": address},
                  download_files=str(work / f"dl-{address}-{time.monotonic_ns()}"), **options)


def _well_behaved(index: int, url: str, work: Path, rec: Recorder, stop_midway: bool) -> None:
    from gradio_client import handle_file
    from trimesh import load as load_mesh

    client = _client(url, work, f"198.51.100.{10 + index}")
    radius = 0.5 + 0.25 * index
    rng = np.random.default_rng(index)
    points = rng.normal(size=(3000, 3))
    points = radius * points / np.linalg.norm(points, axis=1, keepdims=True)
    cloud = work / f"session-{index}.npy"
    np.save(cloud, points.astype(np.float32))
    rec.call("preview_cloud", client.predict, cloud=handle_file(str(cloud)), api_name="/preview_cloud")
    steps = 4000 if stop_midway else None
    job = client.submit(cloud=handle_file(str(cloud)), example=None, method="igr", preset="load-tiny",
                        steps=steps, api_name="/fit")
    if stop_midway:  # once it trains (not while it waits: that is tested in tests/app)
        deadline = time.monotonic() + 300
        while not job.done() and time.monotonic() < deadline and not any(
                isinstance(u[3], dict) and u[3].get("stage") == "fitting" for u in job.outputs()):
            time.sleep(0.2)
        rec.call("stop", client.predict, api_name="/stop")
    start = time.monotonic()
    try:
        outputs = job.outputs() if job.result() is not None else []
    except Exception as error:  # noqa: BLE001
        rec.failures.append(f"session {index}: /fit failed: {str(error)[:200]}")
        return
    with rec.lock:
        rec.served["fit"] += 1
        rec.longest_wait = max(rec.longest_wait, time.monotonic() - start)
    surface, _, status, progress, *_ = outputs[-1]
    if stop_midway:
        rec.check(progress.get("stage") == "cancelled", f"session {index}: Stop did not stop its fit ({status[:80]})")
    if not isinstance(surface, str):
        rec.failures.append(f"session {index}: no final mesh ({status[:120]})")
        return
    mesh = load_mesh(surface, force="mesh")
    extent = float(np.ptp(mesh.vertices, axis=0).max())
    rec.check(abs(extent - 2 * radius) < 0.35 * 2 * radius,
              f"session {index}: its mesh is {extent:.2f} across, its own sphere {2 * radius:.2f} (another's result?)")
    remeshed = rec.call("extract_mesh", client.predict, resolution=24, api_name="/extract_mesh")
    if remeshed:
        rec.check(f"{cloud.stem}-igr" in remeshed[2], f"session {index}: re-mesh named another model: {remeshed[2][:80]}")
    repo = f"{USER}/load-{index}"
    pushed = rec.call("push_checkpoint", client.predict, repo_id=repo, token=TOKEN, private=False,
                      include_cloud=False, api_name="/push_checkpoint")
    if pushed:
        pulled = rec.call("pull_checkpoint", client.predict, repo_id=repo, revision=None, resolution=24,
                          token=None, api_name="/pull_checkpoint")
        if pulled:
            rec.check(repo in pulled[1], f"session {index}: pulled the wrong repo")
    # another session's folder through Gradio's file route: refused
    import httpx

    root = Path(surface).parent
    answer = httpx.get(f"{url}gradio_api/file={work / 'sessions'}", timeout=10)
    rec.check(answer.status_code >= 400, f"session {index}: the session root was served ({answer.status_code})")
    del root


def _hostile(url: str, work: Path, rec: Recorder, hub_url: str) -> None:
    import httpx
    from gradio_client import handle_file

    # item 1: crafted session ids at the heartbeat, then drop the connection
    for session in ("!!!", "..", "_shared", "x" * 3000):
        try:
            with httpx.stream("GET", f"{url}gradio_api/heartbeat/{session}", timeout=5) as answer:
                next(answer.iter_bytes(), None)
        except httpx.HTTPError:
            pass
        rec.served["hostile heartbeat"] += 1
    client = _client(url, work, "203.0.113.9")
    # item 2: a file over the upload bound, and an .npz bomb (tiny on disk, huge decoded)
    big = b"0 0 0\n" * 400_000  # 2.4 MB, over the benchmark's 2 MB bound: refused by the server itself
    answer = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.xyz", big)}, timeout=30)
    rec.check(answer.status_code in (400, 413), f"an oversize upload was accepted ({answer.status_code})")
    with rec.lock:
        rec.errors["upload over the size bound"] += 1
    bomb = work / "bomb.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((25_000_000, 3), np.float32))  # 300 MB of zeros
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("points.npy", buffer.getvalue())
    del buffer
    rec.call("npz bomb", client.predict, cloud=handle_file(str(bomb)), api_name="/preview_cloud", expect_error="")
    # items 3 and 6: a pulled config nested thousands deep
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_url, token=TOKEN)
    api.create_repo(f"{USER}/nested", exist_ok=True)
    api.upload_file(path_or_fileobj=("[" * 50_000 + "]" * 50_000).encode(), path_in_repo="config.json",
                    repo_id=f"{USER}/nested")
    api.upload_file(path_or_fileobj=b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", path_in_repo="model.safetensors",
                    repo_id=f"{USER}/nested")
    rec.call("hostile pull", client.predict, repo_id=f"{USER}/nested", revision=None, resolution=24, token=None,
             api_name="/pull_checkpoint", expect_error="")
    # item 4: hours of training are cut at the time limit; a second fit meanwhile is refused
    job = client.submit(cloud=None, example="sphere", method="igr", preset="load-tiny", steps=200_000,
                        api_name="/fit")
    time.sleep(1.0)
    rec.call("second fit of one session", client.predict, cloud=None, example="sphere", method="igr",
             preset="load-tiny", api_name="/fit", expect_error="already has")
    start = time.monotonic()
    try:
        outputs = job.outputs() if job.result() is not None else []
        stage = outputs[-1][3].get("stage") if outputs else None
        rec.check(stage == "cancelled", f"the 200,000-step fit was not cut at the time limit (stage {stage})")
        rec.served["fit past the time limit"] += 1
    except Exception as error:  # noqa: BLE001
        rec.failures.append(f"the long fit failed instead of stopping at the limit: {str(error)[:200]}")
    rec.longest_wait = max(rec.longest_wait, time.monotonic() - start)


ATTACKER = "203.0.113.66"
HONEST = ("198.51.100.201", "198.51.100.202", "2001:db8:77::5")


def _many_sessions(url: str, work: Path, rec: Recorder, line) -> dict:
    """One address opens 18 sessions, each starting a long fit; then 3 honest clients start fits."""
    long_fit = dict(cloud=None, example="sphere", method="igr", preset="load-tiny", steps=200_000,
                    api_name="/fit")
    attacker = [_client(url, work, ATTACKER) for _ in range(18)]
    jobs = [c.submit(**long_fit) for c in attacker]
    deadline = time.monotonic() + 60
    while not line.snapshot()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = 0
    for job in jobs:
        try:
            job.result(timeout=2)
        except Exception as error:  # noqa: BLE001 - AppError for the refused ones, a timeout for the running one
            refused += "already has" in str(error)
    honest = [_client(url, work, address) for address in HONEST]
    honest_jobs = []
    for client in honest:
        honest_jobs.append(client.submit(cloud=None, example="sphere", method="igr", preset="load-tiny",
                                         api_name="/fit"))
        time.sleep(0.3)
    attacker_jobs_in_line = line.snapshot()["clients"].get(f"addr:{ATTACKER}", 0)
    for client in attacker:
        client.predict(api_name="/stop")
    ahead = []
    for waited_behind, job in enumerate(honest_jobs):
        try:
            job.result(timeout=300)
            waits = [o[2] for o in job.outputs() if isinstance(o[2], str) and "job(s) ahead" in o[2]]
            first = int(waits[0].split("Waiting for the device: ")[1].split(" ")[0]) if waits else 0
            ahead.append(first - waited_behind)  # jobs ahead of it that are not earlier honest ones
        except Exception as error:  # noqa: BLE001
            rec.failures.append(f"an honest client's fit failed during the session flood: {str(error)[:160]}")
    rec.check(refused >= 17, f"one address with 18 sessions got {18 - refused} jobs into the line")
    rec.check(attacker_jobs_in_line <= 1, f"the attacker held {attacker_jobs_in_line} places in the line")
    rec.check(all(a <= 1 for a in ahead), f"honest clients waited behind {ahead} of the attacker's jobs")
    with rec.lock:
        rec.errors["one job per client"] += refused
    return {"attacker_sessions": 18, "refused_at_once": refused, "attacker_jobs_in_line": attacker_jobs_in_line,
            "attacker_jobs_ahead_of_each_honest_client": ahead}


def drip_server(period: float = 1.0):
    """A server on 127.0.0.1 that sends a .xyz file one byte every `period` seconds (until stopped);
    returns (url, stop)."""
    import http.server
    import socketserver

    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while not done.wait(period):
                    self.wfile.write(b"0")
                    self.wfile.flush()
            except OSError:
                pass

        def log_message(self, *args):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        done.set()
        server.shutdown()
        server.server_close()
    return f"http://127.0.0.1:{server.server_address[1]}/drip.xyz", stop


def _slow_url_flood(url: str, work: Path, rec: Recorder) -> dict:
    """45 /fit calls from 45 addresses whose cloud URL drips; /load_example is timed meanwhile."""
    from gradio_client import handle_file

    drip, stop = drip_server()
    os.environ["DIFFCD_ALLOW_PRIVATE_URLS"] = "1"  # the drip server is on loopback
    visitor = _client(url, work, "198.51.100.250")
    visitor.predict("sphere", api_name="/load_example")
    jobs = [_client(url, work, f"203.0.113.{100 + i}").submit(
        cloud=handle_file(drip), example=None, method="igr", preset="load-tiny", api_name="/fit") for i in range(45)]
    time.sleep(3.0)
    times = []
    for _ in range(5):
        start = time.monotonic()
        visitor.predict("sphere", api_name="/load_example")
        times.append(time.monotonic() - start)
        time.sleep(0.5)
    stop()
    os.environ.pop("DIFFCD_ALLOW_PRIVATE_URLS", None)
    for job in jobs:
        job.cancel()
    rec.check(max(times) < 1.0, f"/load_example took up to {max(times):.2f} s during the slow-URL flood")
    rec.served["load_example during the slow-URL flood"] += len(times)
    return {"slow_url_calls": len(jobs), "load_example_seconds_max": round(max(times), 3),
            "load_example_seconds": [round(t, 3) for t in times]}


def _polygon_bombs(url: str, work: Path, rec: Recorder, max_bytes: int) -> dict:
    """OBJ, OFF and binary PLY files whose one face names millions of corners, sent at once."""
    import struct

    from gradio_client import handle_file

    corners = max_bytes // 2 - 100
    obj = work / "bomb.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf " + " ".join(str(1 + i % 4) for i in range(corners // 2)))
    off = work / "bomb.off"
    off.write_text(f"OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n{corners // 2} "
                   + " ".join(str(i % 4) for i in range(corners // 2)))
    count = (max_bytes - 400) // 4
    ply = work / "bomb.ply"
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
              f"property float z\nelement face 1\nproperty list int int vertex_indices\nend_header\n").encode()
    body = struct.pack("<12f", 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0) + struct.pack("<i", count)
    ply.write_bytes(header + body + struct.pack(f"<{count}i", *([0, 1, 2, 3] * (count // 4))))
    rss_before = _peak_rss_mb()
    results: dict[str, str] = {}

    def send(path: Path, address: str) -> None:
        client = _client(url, work, address)
        results[path.name] = rec.call("polygon bomb", client.predict, cloud=handle_file(str(path)),
                                      api_name="/preview_cloud", expect_error="") or "refused"
    threads = [threading.Thread(target=send, args=(path, f"203.0.113.{200 + i}"))
               for i, path in enumerate((obj, off, ply))]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    peak = _peak_rss_mb()
    return {"bomb_bytes": max_bytes, "bombs": [p.name for p in (obj, off, ply)], "seconds": round(time.monotonic() - start, 1),
            "peak_rss_mb_before": round(rss_before, 1), "peak_rss_mb_after": round(peak, 1)}


def run(sessions: int = 8, time_limit: float = 90.0, write: bool = True) -> dict:
    from tools.hubserver import HubServer
    from diffcd_space import QUEUE_MAX_SIZE, build_app, launch_options
    from diffcd_space.limits import Limits

    work = Path(tempfile.mkdtemp(prefix="diffcd-loadfault-"))
    hub = HubServer({TOKEN: USER})
    hub.start()
    preset = _tiny_preset()
    limits = Limits.public().with_changes(max_request_seconds=time_limit, max_upload_bytes=2_000_000,
                                          max_decoded_bytes=64_000_000, max_waiting_jobs=2 * sessions)
    demo = build_app(extra_presets={preset.name: preset}, default_preset=preset.name, hub_endpoint=hub.url,
                     session_root=work / "sessions", limits=limits)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    port = _free_port()
    # As on a Space, the proxy is not on loopback: uvicorn (which rewrites the peer from
    # X-Forwarded-For for loopback proxies) leaves the peer alone and the app reads the header.
    allowed = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = "192.0.2.254"
    try:
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **launch_options(limits))
    finally:
        if allowed is None:
            os.environ.pop("FORWARDED_ALLOW_IPS", None)
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = allowed
    url = f"http://127.0.0.1:{port}/"
    rec = Recorder()
    start = time.monotonic()
    rss_before = _peak_rss_mb()
    load = os.getloadavg()[0]
    threads = [threading.Thread(target=_well_behaved, args=(i, url, work, rec, i == 1), daemon=True)
               for i in range(max(1, sessions - 1))]
    threads.append(threading.Thread(target=_hostile, args=(url, work, rec, hub.url), daemon=True))
    for thread in threads:
        thread.start()
    deadline = start + 60 + 30 * sessions + 2 * time_limit
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    rec.check(hung == 0, f"{hung} sessions did not finish within the run's time bound")
    attacks = {"many_sessions": _many_sessions(url, work, rec, demo.diffcd_handlers.line),
               "slow_urls": _slow_url_flood(url, work, rec),
               "polygon_bombs": _polygon_bombs(url, work, rec, limits.max_upload_bytes)}
    store = demo.diffcd_handlers.store
    rec.check(store.root.is_dir() and (store.root / "_shared").is_dir(),
              "the session root or the shared folder was deleted by a hostile session id")
    peak = _peak_rss_mb()
    rec.check(peak < PEAK_RSS_BOUND_MB, f"peak RSS {peak:.0f} MB over the bound of {PEAK_RSS_BOUND_MB} MB")
    demo.close()
    hub.stop()
    report = {
        "sessions": sessions, "well_behaved": max(1, sessions - 1), "hostile": 1, "load_average_start": load,
        "seconds": round(time.monotonic() - start, 1),
        "requests_served": dict(rec.served), "errors_by_kind": dict(rec.errors),
        "peak_rss_mb": round(peak, 1), "rss_before_mb": round(rss_before, 1),
        "peak_rss_bound_mb": PEAK_RSS_BOUND_MB, "longest_wait_seconds": round(rec.longest_wait, 1),
        "time_limit_seconds": time_limit, "attacks": attacks, "failures": rec.failures,
        "passed": not rec.failures,
    }
    if write:
        _write(report)
    return report


def _write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load-fault-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    served = "\n".join(f"| {k} | {v} |" for k, v in sorted(report["requests_served"].items()))
    errors = "\n".join(f"| {k} | {v} |" for k, v in sorted(report["errors_by_kind"].items())) or "| none | 0 |"
    failures = "\n".join(f"- {f}" for f in report["failures"]) or "- none"
    (RESULTS / "load-fault-cpu.md").write_text(f"""# Load and fault test (CPU)

`python -m benchmarks.load_fault` on {os.cpu_count()} CPU cores (load average {report.get('load_average_start', float('nan')):.2f}
at the start; its wall times are not speed figures): one app, one loopback Hub, {report['sessions']} concurrent `gradio_client` sessions
({report['well_behaved']} well-behaved: upload, preview, tiny fit, re-mesh, push, pull, one of them
pressing Stop; 1 hostile: crafted heartbeat session ids, an oversize upload, an .npz bomb, a deeply
nested pulled config, a second fit while one runs, a 200,000-step fit against the
{report['time_limit_seconds']:g} s limit).

| figure | value |
| --- | --- |
| wall time | {report['seconds']} s |
| peak RSS of the app process | {report['peak_rss_mb']} MB (bound {report['peak_rss_bound_mb']} MB; {report['rss_before_mb']} MB before the sessions) |
| longest wait for one request | {report['longest_wait_seconds']} s |
| checks | {'all passed' if report['passed'] else 'FAILED'} |

Requests served:

| request | served |
| --- | --- |
{served}

Errors by kind (all expected: each is a hostile request refused with a sentence):

| kind | count |
| --- | --- |
{errors}

One client acting like many (each client told apart by its X-Forwarded-For entry, as on a Space):

| attack | figures |
| --- | --- |
| one address, 18 sessions, then 3 honest clients | {_figures(report['attacks']['many_sessions'])} |
| 45 /fit calls whose cloud URL drips one byte a second | {_figures(report['attacks']['slow_urls'])} |
| polygon bombs (OBJ, OFF, binary PLY at the upload bound) sent at once | {_figures(report['attacks']['polygon_bombs'])} |

Failed checks:

{failures}
""")


def _figures(figures: dict) -> str:
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in figures.items())


def _prepare_environment() -> None:
    """Loopback only, no telemetry, no stored login: set before gradio and huggingface_hub load."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="diffcd-loadfault-hf-")
    os.environ.pop("HF_TOKEN", None)


def main(argv: list[str] | None = None) -> int:
    _prepare_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=90.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.sessions, args.time_limit, write=not args.no_write)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

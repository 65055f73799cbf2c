"""What the app does as a Space: a GPU Space on the CPU says so, URL inputs are bounded, featured
checkpoints never hold up a page, the cloud overlay shows the cloud over the surface.

No browser and no fit: the pieces are called directly, with the Space's environment simulated.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import trimesh

from diffcd_space import featured, remote, runtime, viewer

# ----------------------------------------------------------------------------- GPU Space on the CPU


@pytest.fixture
def gpu_space(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/diffcd")
    monkeypatch.setenv("SPACE_HARDWARE", "l4x1")
    monkeypatch.delenv(runtime.GPU_ENV, raising=False)


def test_a_gpu_space_on_the_cpu_logs_and_shows_a_banner(gpu_space, caplog, tmp_path):
    from diffcd_space import build_app

    with caplog.at_level(logging.ERROR, logger="diffcd.space"):
        demo = build_app(session_root=tmp_path)  # JAX runs on the CPU in the tests
    assert any("GPU NOT IN USE" in r.getMessage() and "l4x1" in r.getMessage() for r in caplog.records)
    banner = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "gpu-banner")
    assert banner.visible and "Running on the CPU, not the GPU" in banner.value
    assert "jax[cuda12]" in banner.value and "python -m diffcd_space.deploy" in banner.value


@pytest.mark.parametrize("env, expected", [
    ({}, None),                                                      # not a Space
    ({"SPACE_ID": "a/b", "SPACE_HARDWARE": "cpu-basic"}, None),       # a CPU Space
    ({"SPACE_ID": "a/b", "SPACE_HARDWARE": "a10g-small"}, "a10g-small"),
    ({"SPACE_ID": "a/b", "SPACE_HARDWARE": "l4x1", runtime.GPU_ENV: "0"}, None),  # told otherwise
    ({"SPACE_ID": "a/b", runtime.GPU_ENV: "1"}, "GPU hardware"),
])
def test_gpu_hardware_is_recognised(monkeypatch, env, expected):
    for name in ("SPACE_ID", "SPACE_HARDWARE", runtime.GPU_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(runtime, "_NVIDIA_MARKERS", ())
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    found = runtime.space_gpu()
    assert (found is None) if expected is None else (expected in found)
    assert runtime.backend_problem("gpu") is None  # on the GPU all is well
    assert (runtime.backend_problem("cpu") is None) == (expected is None)


def test_no_banner_off_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert runtime.check_backend("cpu") is None and runtime.banner_html(None) == ""


# ----------------------------------------------------------------------------- URLs


class _Server(BaseHTTPRequestHandler):
    """/cloud.npy (a real cloud), /huge.npy (claims 10 GB), /endless.npy (no length, never ends),
    /slow.npy (one byte a second), /redirect.npy (to the metadata address)."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/cloud.npy":
            import io

            buffer = io.BytesIO()
            np.save(buffer, np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
            body = buffer.getvalue()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/huge.npy":
            self.send_response(200)
            self.send_header("Content-Length", str(10**10))
            self.end_headers()
        elif self.path in ("/endless.npy", "/slow.npy"):
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x" * (1 if self.path == "/slow.npy" else 65536))
                    self.wfile.flush()
                    if self.path == "/slow.npy":
                        time.sleep(0.5)
            except OSError:
                pass
        elif self.path == "/redirect.npy":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/x.npy")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def host():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_is_downloaded_within_bounds(host, tmp_path):
    path = remote.download(f"{host}/cloud.npy", tmp_path, suffixes=(".npy",), allow_private=True)
    assert np.load(path).shape == (500, 3) and path.parent.parent == tmp_path


@pytest.mark.parametrize("name, message", [
    ("huge.npy", "larger than this app's limit"),      # the declared size is refused before reading
    ("endless.npy", "larger than this app's limit"),   # no declared size: stopped while reading
    ("slow.npy", "did not finish within"),
    ("missing.npy", "HTTP 404"),
])
def test_url_bounds(host, tmp_path, name, message):
    with pytest.raises(remote.DownloadError, match=message):
        remote.download(f"{host}/{name}", tmp_path, max_bytes=100_000, seconds=2, allow_private=True)
    assert not list(tmp_path.rglob("*.npy")), "a refused download leaves no file"


def test_private_addresses_are_refused_unless_allowed(host, tmp_path, monkeypatch):
    monkeypatch.delenv(remote.ALLOW_PRIVATE_ENV, raising=False)
    for url in (f"{host}/cloud.npy", "http://[::1]/x.npy", "http://10.0.0.1/x.npy", "http://169.254.169.254/x.npy"):
        with pytest.raises(remote.DownloadError, match="only downloads from public addresses"):
            remote.download(url, tmp_path)
    # a redirect is checked again: a permitted host cannot lead on to the metadata service
    monkeypatch.setattr(remote, "_is_hf_host", lambda name: name == "127.0.0.1")
    with pytest.raises(remote.DownloadError, match="only downloads from public addresses"):
        remote.download(f"{host}/redirect.npy", tmp_path)


def test_bad_urls(tmp_path):
    with pytest.raises(remote.DownloadError, match="must name a file ending in one of"):
        remote.download("https://example.org/cloud.exe", tmp_path, suffixes=(".npy", ".ply"))
    with pytest.raises(remote.DownloadError, match="Only http:// and https://"):
        remote.download("ftp://example.org/cloud.npy", tmp_path, allow_private=True)


# ----------------------------------------------------------------------------- featured checkpoints


def test_featured_is_off_locally_and_on_in_a_space(monkeypatch):
    monkeypatch.delenv(featured.FEATURED_ENV, raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert featured.featured_author() == ""  # locally the app contacts no Hub on its own
    monkeypatch.setenv("SPACE_ID", "a/b")
    assert featured.featured_author() == featured.FEATURED_AUTHOR
    monkeypatch.setenv(featured.FEATURED_ENV, "someone")
    assert featured.featured_author() == "someone"


def test_an_unreachable_hub_gives_a_quiet_empty_list_fast(monkeypatch):
    monkeypatch.setenv(featured.FEATURED_ENV, "someone")
    calls = []

    def down(author):
        calls.append(author)
        raise ConnectionError("no route to host")

    load = featured.page_load(featured.FeaturedCheckpoints(down, wait=2))
    start = time.monotonic()
    table, pick, repo, note = load()
    assert time.monotonic() - start < 2
    assert "cannot be reached" in note and pick.choices == [] and isinstance(table, dict)  # gr.skip()
    load()
    assert calls == ["someone"], "a failure is remembered for a while, not retried on every page load"


def test_a_hanging_hub_holds_a_page_for_at_most_the_wait(monkeypatch):
    monkeypatch.setenv(featured.FEATURED_ENV, "someone")
    release = threading.Event()

    def hangs(author):
        release.wait(10)
        return pd.DataFrame({"repo_id": ["someone/torus-diffcd"]})

    load = featured.page_load(featured.FeaturedCheckpoints(hangs, wait=0.5))
    start = time.monotonic()
    assert "did not answer in time" in load()[3]
    assert "did not answer in time" in load()[3]  # the second page does not wait again
    assert time.monotonic() - start < 1.5
    release.set()
    time.sleep(0.2)
    table, pick, repo, note = load()  # the answer arrived meanwhile
    assert repo == "someone/torus-diffcd" and pick.value == repo and "published by **someone**" in note


# ----------------------------------------------------------------------------- cloud overlay


def test_overlay_glb_has_the_surface_and_the_cloud_in_another_colour(tmp_path):
    from diffcd_space.overlay import surface_view

    sphere = trimesh.creation.icosphere(subdivisions=2)
    mesh_path = tmp_path / "mesh.ply"
    sphere.export(mesh_path)
    points = sphere.vertices[:100] * 1.2  # a cloud off the surface
    np.save(tmp_path / "cloud.npy", points)
    current = {"mesh": str(mesh_path), "cloud": str(tmp_path / "cloud.npy")}
    shown = trimesh.load(surface_view(True, current))
    assert isinstance(shown, trimesh.Scene) and len(shown.geometry) == 2
    colours = {tuple(g.visual.vertex_colors[0]) for g in shown.geometry.values()}
    assert colours == {viewer.MESH_COLOUR, viewer.OVERLAY_CLOUD_COLOUR}
    plain = trimesh.load(surface_view(False, current), force="mesh")
    assert len(plain.faces) == len(sphere.faces)
    # a pulled model has no cloud: the plain surface, no failure
    assert surface_view(True, {"mesh": str(mesh_path), "cloud": None}).endswith("-surface.glb")
    assert isinstance(surface_view(True, None), dict)  # no model yet: the viewer is left alone


# ----------------------------------------------------------------------------- MCP switch


@pytest.mark.parametrize("space, switch, expected", [
    (None, None, False),          # locally: off
    ("a/b", None, True),          # in a Space: on
    ("a/b", "0", False),          # switched off in a Space
    (None, "1", True),            # switched on locally
])
def test_the_mcp_server_is_on_in_a_space_and_switchable(monkeypatch, space, switch, expected):
    from diffcd_space import mcp

    for name, value in (("SPACE_ID", space), (mcp.MCP_ENV, switch)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(mcp, "mcp_available", lambda: True)
    assert mcp.launch_option() == {"mcp_server": expected}
    monkeypatch.setattr(mcp, "mcp_available", lambda: False)  # mcp 2.x or no extra: off, with a warning
    assert mcp.mcp_enabled() is False


def test_wrapped_docstring_entries_become_one_line_each():
    from gradio.utils import get_function_description

    from diffcd_space.mcp import one_line_entries

    def tool(cloud, steps):
        """Do a thing.

        Args:
            cloud: a point cloud file, uploaded or
                given as a URL: used first.
            steps: how many.

        Returns:
            A mesh,
            and a table.
        """

    tool.__doc__ = one_line_entries(tool.__doc__)
    description, parameters, returns = get_function_description(tool)
    assert parameters == {"cloud": "a point cloud file, uploaded or given as a URL: used first.", "steps": "how many."}
    assert returns == ["A mesh, and a table."] and description == "Do a thing."

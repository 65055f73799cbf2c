"""The app as an MCP server: an agent's client lists the tools and fits a cloud given by URL.

The app is launched with the MCP server on (as in a Space), and the `mcp` package's own client
talks to it over loopback (streamable HTTP at /gradio_api/mcp/). The cloud is served by a
loopback file server; loopback addresses are allowed only because the test says so
(DIFFCD_ALLOW_PRIVATE_URLS=1), and the size bound of uploads applies to URLs too.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _apptest import MAX_POINTS, ROOT, TINY_PRESET, free_port

mcp = pytest.importorskip("mcp", reason="the mcp package (gradio[mcp] extra) is not installed")
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

from diffcd_space.mcp import SESSION_TOOLS, mcp_available  # noqa: E402

pytestmark = pytest.mark.skipif(not mcp_available(), reason="Gradio 6.31's MCP server needs mcp<2")

AGENT_TOOLS = {"fit", "compare", "list_checkpoints", "pull_checkpoint", "load_example", "preview_cloud",
               "remesh_checkpoint", "evaluate_checkpoint"}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def cloud_host():
    """A loopback HTTP server of the examples folder; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ROOT / "examples")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_APP: dict = {}
"""The app the module's MCP server belongs to (its bounds are changed by a test)."""


@pytest.fixture(scope="module")
def mcp_url(hub, tmp_path_factory):
    """The app with its MCP server on, launched as app.py does in a Space; yields the MCP URL."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DIFFCD_MCP_SERVER", "1")
    patch.setenv("DIFFCD_ALLOW_PRIVATE_URLS", "1")
    from diffcd_space import QUEUE_MAX_SIZE, build_app, launch_options

    demo = build_app(extra_presets={TINY_PRESET.name: TINY_PRESET}, default_preset=TINY_PRESET.name,
                     hub_endpoint=hub.url, max_points=MAX_POINTS,
                     session_root=tmp_path_factory.mktemp("mcp-sessions"))
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    _APP["demo"] = demo
    options = launch_options()
    assert options["mcp_server"] is True
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    try:
        yield f"http://127.0.0.1:{port}/gradio_api/mcp/"
    finally:
        demo.close()
        patch.undo()


async def _session_call(url: str, action):
    async with streamablehttp_client(url) as (read, write, _):
        async with mcp.ClientSession(read, write) as session:
            await session.initialize()
            return await action(session)


def _run(url: str, action):
    return asyncio.run(asyncio.wait_for(_session_call(url, action), timeout=240))


def _text(result) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


def test_tools_are_listed_with_their_documentation(mcp_url):
    tools = {t.name: t for t in _run(mcp_url, lambda s: s.list_tools()).tools}
    assert AGENT_TOOLS <= set(tools), f"missing tools: {AGENT_TOOLS - set(tools)}"
    assert not set(SESSION_TOOLS) & set(tools), "tools on the session's model cannot work over MCP"
    fit = tools["fit"]
    assert fit.description.startswith("Fit a signed distance function to a point cloud")
    properties = fit.inputSchema["properties"]
    # every argument is described in full (Gradio keeps only the first line of a wrapped entry)
    assert "URL" in properties["cloud"]["description"] and "instead of `example`" in properties["cloud"]["description"]
    assert "preset's" in properties["steps"]["description"]
    for name, tool in tools.items():
        assert len(tool.description) > 40, f"{name} has no useful description"
        for param, schema in tool.inputSchema["properties"].items():
            assert schema.get("description"), f"{name}({param}) is undocumented"
    assert "Returns:" in fit.description and ",," not in fit.description


def test_fit_a_cloud_given_by_url(mcp_url, cloud_host):
    arguments = {"cloud": f"{cloud_host}/sphere_cloud.npy", "method": "diffcd",
                 "preset": TINY_PRESET.name, "seed": 0}
    result = _run(mcp_url, lambda s: s.call_tool("fit", arguments))  # no progress token: the common case
    text = _text(result)
    assert not result.isError, text
    assert "Done: DiffCD, 60 steps" in text
    assert "sphere_cloud" in text  # the downloaded cloud's name labels the outputs
    assert ".glb" in text and "checkpoint.zip" in text  # the mesh and downloads come back as URLs

    # Re-mesh and score that fit in new MCP sessions, from the checkpoint zip's URL alone.
    zip_url = re.search(r"https?://[^\s\"'\]]+-checkpoint\.zip", text).group(0)
    result = _run(mcp_url, lambda s: s.call_tool("remesh_checkpoint", {"checkpoint": zip_url, "resolution": 24}))
    text = _text(result)
    assert not result.isError, text
    assert "Meshed sphere_cloud-diffcd at 24³" in text and ".glb" in text
    arguments = {"checkpoint": zip_url, "ground_truth": f"{cloud_host}/sphere_gt.ply", "resolution": 24}
    result = _run(mcp_url, lambda s: s.call_tool("evaluate_checkpoint", arguments))
    assert not result.isError, _text(result)
    assert "Chamfer distance (vs ground truth)" in _text(result)


def test_url_bounds_apply_to_mcp_callers(mcp_url, cloud_host, monkeypatch):
    handlers = _APP["demo"].diffcd_handlers
    with monkeypatch.context() as patch:  # the app's own bound (DIFFCD_SPACE_MAX_URL_BYTES at start)
        patch.setattr(handlers, "limits", handlers.limits.with_changes(max_url_bytes=1000))  # the cloud is 240 kB
        arguments = {"cloud": f"{cloud_host}/sphere_cloud.npy", "preset": TINY_PRESET.name}
        result = _run(mcp_url, lambda s: s.call_tool("fit", arguments))
        assert result.isError and "larger than this app's limit" in _text(result)

    monkeypatch.setenv("DIFFCD_ALLOW_PRIVATE_URLS", "0")  # as on the public Space
    result = _run(mcp_url, lambda s: s.call_tool("fit", arguments))
    assert result.isError and "only downloads from public addresses" in _text(result)

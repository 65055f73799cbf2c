"""Fixtures of the app tests: the app on a loopback port with a tiny preset, a loopback Hub, a client.

One app serves the whole test session (building it imports JAX and compiles nothing; each fit
compiles its own small program). The Hub is tools.hubserver's loopback server; huggingface_hub gets
a temporary home, no stored login and no telemetry.
"""

from __future__ import annotations

import os

# Before gradio and huggingface_hub are imported (by the imports below or by other test modules).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
from _apptest import MAX_POINTS, TINY_PRESET, TOKEN, USER, free_port  # noqa: E402
from _hfsandbox import seal_huggingface_hub  # noqa: E402


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory):
    """huggingface_hub with a temporary home and cache and no stored token, for the whole session."""
    patch = pytest.MonkeyPatch()
    yield seal_huggingface_hub(patch, tmp_path_factory.mktemp("hf_home"))
    patch.undo()


@pytest.fixture(scope="session")
def hub(hf_home):
    """A loopback Hub: TOKEN belongs to USER."""
    from tools.hubserver import HubServer

    server = HubServer({TOKEN: USER})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_server(hub, tmp_path_factory):
    """The app on 127.0.0.1 with the tiny preset selected; yields (url, demo)."""
    from diffcd_space import QUEUE_MAX_SIZE, build_app, launch_options

    demo = build_app(extra_presets={TINY_PRESET.name: TINY_PRESET}, default_preset=TINY_PRESET.name,
                     hub_endpoint=hub.url, max_points=MAX_POINTS,
                     session_root=tmp_path_factory.mktemp("sessions"))
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options())
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    return app_server[0]


@pytest.fixture
def client(app_url, tmp_path):
    """A gradio_client session of its own (its own session folder and state)."""
    from gradio_client import Client

    return Client(app_url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "downloads"))

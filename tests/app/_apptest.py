"""Constants and helpers shared by the app tests."""

from __future__ import annotations

import socket
from pathlib import Path

from diffcd_space.presets import AppPreset

ROOT = Path(__file__).resolve().parents[2]

START_APP = """
threading.Thread(target=runpy.run_path, args=("app.py",), kwargs={"run_name": "__main__"},
                 daemon=True).start()
url = f"http://127.0.0.1:{port}/"
for _ in range(600):
    try:
        urllib.request.urlopen(url, timeout=1).read()
        break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit("the app did not start on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT")
"""
"""A subprocess script's lines that start app.py in a thread and wait until it answers on `port`
(the script imports runpy, threading, time and urllib.request first)."""
TOKEN = "hf_app_test_SECRET_token_93e1d7"
USER = "tester"
MAX_POINTS = 50_000
"""The app's cloud size limit in the tests (the built-in examples are smaller)."""

TINY_PRESET = AppPreset(
    name="test-tiny",
    base="cpu-quick",
    description="Tests only: a 2×32 network, 60 steps, 40³ mesh.",
    steps=60,
    network={"hidden_layers": 2, "width": 32, "skip_layers": ()},
    resolution=40,
    batch_size=1000,
    snapshot_resolution=24,
    snapshot_seconds=0.0,
    eval_samples=2000,
)
"""Small enough that a fit takes a few seconds on two cores; snapshots after every chunk."""

TINY_ARGS = dict(method="diffcd", preset="test-tiny", steps=None, width=None, depth=None,
                 eikonal_weight=None, area_weight=None, seed=0, mesh_resolution=None)


def fit_args(**changes) -> dict:
    """Keyword arguments of /fit with the tiny preset and the torus example."""
    return {"cloud": None, "example": "torus", **TINY_ARGS, **changes}


def is_update(value) -> bool:
    """An output the handler left unchanged (gr.skip()) arrives as {'__type__': 'update'}."""
    return isinstance(value, dict) and value.get("__type__") == "update"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_error(client, api_name: str, **kwargs) -> str:
    """The message of the error an endpoint answers with (the call must fail)."""
    import pytest
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(**kwargs, api_name=api_name)
    return str(info.value)

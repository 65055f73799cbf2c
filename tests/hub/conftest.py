"""Fixtures for the Hub tests: a loopback Hub server and a sealed-off huggingface_hub environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (HERE.parents[1], HERE):  # the repo root (for `hub`) and this folder (for `_hubtest`)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _hubtest import OTHER_TOKEN, TOKEN  # noqa: E402
from hub.devserver import HubServer  # noqa: E402


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """huggingface_hub with a temporary home and cache, no Xet, no telemetry, no stored login."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    for name, value in {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_TOKEN_PATH": str(home / "token"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)  # nothing a test writes by default lands in the repo
    monkeypatch.setattr(sys.modules["huggingface_hub.utils.tqdm"], "HF_HUB_DISABLE_PROGRESS_BARS", True)
    return home


@pytest.fixture
def hub_server(hf_env, monkeypatch):
    """A Hub dev server on a free loopback port; HF_ENDPOINT points at it.

    Token TOKEN belongs to user "user" (member of org "diffcd-org"), OTHER_TOKEN to user "other".
    """
    server = HubServer({TOKEN: "user", OTHER_TOKEN: "other"}, orgs={"diffcd-org": ["user"]})
    url = server.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(hub_server):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_server.url, token=TOKEN)

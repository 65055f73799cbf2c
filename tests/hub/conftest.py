"""Fixtures for the Hub tests: a loopback Hub server and a sealed-off huggingface_hub environment."""

from __future__ import annotations

import importlib

import pytest

from _hfsandbox import seal_huggingface_hub
from _hubtest import OTHER_TOKEN, TOKEN, make_fitted

from tools.hubserver import HubServer


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """huggingface_hub with a temporary home and cache, no Xet, no telemetry, no stored login."""
    home = seal_huggingface_hub(monkeypatch, tmp_path / "hf_home")
    monkeypatch.chdir(tmp_path)  # nothing a test writes by default lands in the repo
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils.tqdm"), "HF_HUB_DISABLE_PROGRESS_BARS", True)
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


@pytest.fixture
def export(tmp_path):
    """config.json and model.safetensors of a tiny export, as bytes."""
    from diffcd.export import export_sdf

    export_sdf(make_fitted(), tmp_path / "export")
    return {name: (tmp_path / "export" / name).read_bytes() for name in ("config.json", "model.safetensors")}

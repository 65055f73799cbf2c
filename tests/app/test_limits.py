"""The bounds of the public app: one table in docs/security.md, equal to space/limits.py, and the
environment switches them on as a Space and overrides each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diffcd_space.limits import Limits, markdown_table

BOUNDS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_documented_table_of_bounds_is_the_code_s():
    text = BOUNDS_PAGE.read_text()
    found = re.search(r"<!-- limits-table -->\n(.*?)\n<!-- /limits-table -->", text, re.S)
    assert found, "docs/security.md has no limits table between <!-- limits-table --> markers"
    assert found.group(1).strip() == markdown_table().strip(), (
        "docs/security.md's bounds differ from space/limits.py: paste markdown_table() between the markers")


def test_public_bounds_hold_as_a_space_and_local_ones_otherwise():
    assert Limits.from_environment({"SPACE_ID": "user/diffcd"}) == Limits.public()
    assert Limits.public().max_request_seconds is not None and Limits.public().jobs_per_client == 1
    assert Limits.from_environment({}).max_request_seconds is None


def test_every_bound_can_be_overridden_and_the_time_limit_turned_off():
    env = {"SPACE_ID": "x", "DIFFCD_SPACE_MAX_REQUEST_SECONDS": "none", "DIFFCD_SPACE_MAX_POINTS": "1000",
           "DIFFCD_SPACE_JOBS_PER_SESSION": "3"}
    limits = Limits.from_environment(env)
    assert limits.max_request_seconds is None and limits.max_points == 1000 and limits.jobs_per_client == 3
    assert Limits.from_environment({"DIFFCD_SPACE_MAX_FIT_SECONDS": "30"}).max_request_seconds == 30
    with pytest.raises(ValueError, match="DIFFCD_SPACE_MAX_POINTS"):
        Limits.from_environment({"DIFFCD_SPACE_MAX_POINTS": "lots"})


def test_the_library_gets_the_app_s_bounds():
    limits = Limits.public()
    network = limits.network_limits()
    if network is not None:  # diffcd.export.NetworkLimits (the input side of issue 8)
        assert network.max_width == limits.max_network_width
        assert network.max_hidden_layers == limits.max_network_depth
    inputs = limits.input_limits()
    if inputs is not None:
        assert inputs.max_decoded_bytes == limits.max_decoded_bytes

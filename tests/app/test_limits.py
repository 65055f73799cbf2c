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
    assert network.max_width == limits.max_network_width
    assert network.max_hidden_layers == limits.max_network_depth
    assert network.max_grid_parameters == limits.max_grid_values
    assert network.max_fourier_bands == limits.max_fourier_bands
    inputs = limits.input_limits()
    assert inputs.max_decoded_bytes == limits.max_decoded_bytes


def _config(**network) -> dict:
    return {"network": {"hidden_layers": 4, "width": 128, "skip_layers": [2], **network}}


GRID_128 = {"encoding": "grid", "encoding_levels": 4, "grid_min_resolution": 16, "grid_max_resolution": 128,
            "grid_features": 2}


@pytest.mark.parametrize("network, words", [
    ({}, None),
    ({"encoding": "fourier", "encoding_levels": 8}, None),
    (GRID_128, None),  # 4.8M table values: within the grid row, though above the layers' 4M
    ({"encoding": "fourier", "encoding_levels": 12}, "12 bands, more than the 10 allowed"),
    ({**GRID_128, "grid_max_resolution": 384}, "384 points per axis, more than the 256 allowed"),
    ({**GRID_128, "encoding_levels": 12}, "12 levels, more than the 8 allowed"),
    ({**GRID_128, "grid_features": 4}, "9,584,640 values, more than the 8,000,000 allowed"),
    ({"width": 1024, "hidden_layers": 8}, "parameters, more than the 4,000,000 allowed"),
    ({**GRID_128, "width": 1024, "hidden_layers": 8}, "besides its grid tables, more than the 4,000,000"),
])
def test_a_space_bounds_each_network_type_from_config_json(network, words):
    from diffcd.errors import LimitError
    from diffcd.export import bounded_network

    bounds = Limits.public().network_limits()
    if words is None:
        assert bounded_network(_config(**network), bounds).width == 128
    else:
        with pytest.raises(LimitError, match=words):
            bounded_network(_config(**network), bounds)
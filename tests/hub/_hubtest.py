"""Constants and helpers shared by the Hub tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_SECRET_token_5f2c9a"
OTHER_TOKEN = "hf_test_OTHER_token_77ab01"

"""huggingface_hub sealed off for tests: a temporary home and cache, no stored login, no Xet,
no telemetry, no progress bars, no endpoint or offline mode inherited from the caller."""

from __future__ import annotations

from pathlib import Path

import pytest


def seal_huggingface_hub(patch: pytest.MonkeyPatch, home: Path) -> Path:
    """Point huggingface_hub (environment and already-read constants) at `home`; returns home."""
    import huggingface_hub.constants as constants

    cache = home / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    for name, value in {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }.items():
        patch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        patch.delenv(name, raising=False)
    patch.setattr(constants, "HF_HOME", str(home))
    patch.setattr(constants, "HF_HUB_CACHE", str(cache))
    patch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    patch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    return home

"""Share fitted diffcd SDFs through the Hugging Face Hub.

    from hub import SDFModel, push_checkpoint
    push_checkpoint("runs/bunny-diffcd", "user/bunny-diffcd")
    sdf = SDFModel.from_pretrained("user/bunny-diffcd")     # huggingface_hub's ModelHubMixin
    mesh = sdf.extract_mesh(256)

`hub.devserver` is a local stand-in for the Hub, for tests and for trying this offline.
Names are imported lazily so that `python -m hub.devserver` does not load JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "SDFModel",
    "PullLimits",
    "ListLimits",
    "push_checkpoint",
    "PushResult",
    "pull_checkpoint",
    "PullResult",
    "load_sdf",
    "list_checkpoints",
    "HubError",
    "HubServer",
]

_WHERE = {
    "SDFModel": "hub.model",
    "PullLimits": "hub.limits",
    "ListLimits": "hub.limits",
    "push_checkpoint": "hub.push",
    "PushResult": "hub.push",
    "pull_checkpoint": "hub.pull",
    "PullResult": "hub.pull",
    "load_sdf": "hub.pull",
    "list_checkpoints": "hub.discover",
    "HubError": "hub.errors",
    "HubServer": "hub.devserver",
}

if TYPE_CHECKING:
    from hub.devserver import HubServer
    from hub.discover import list_checkpoints
    from hub.errors import HubError
    from hub.limits import ListLimits, PullLimits
    from hub.model import SDFModel
    from hub.pull import PullResult, load_sdf, pull_checkpoint
    from hub.push import PushResult, push_checkpoint


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)

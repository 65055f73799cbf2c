"""Share fitted diffcd SDFs through the Hugging Face Hub.

    from hub import SDFModel, push_checkpoint
    push_checkpoint("runs/bunny-diffcd", "user/bunny-diffcd")
    sdf = SDFModel.from_pretrained("user/bunny-diffcd")     # huggingface_hub's ModelHubMixin
    mesh = sdf.extract_mesh(256)

To try this without an account, `python -m tools.hubserver` runs a loopback stand-in for the Hub
(a development tool of the repository, not part of this package).
"""

from __future__ import annotations

from hub.discover import list_checkpoints
from hub.errors import HubError
from hub.limits import ListLimits, PullLimits
from hub.model import SDFModel, load_sdf
from hub.pull import PullResult, pull_checkpoint
from hub.push import PushResult, push_checkpoint

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
]

"""Share fitted diffcd SDFs through the Hugging Face Hub.

    from diffcd_hub import SDFModel, push_checkpoint
    push_checkpoint("runs/bunny-diffcd", "user/bunny-diffcd")
    sdf = SDFModel.from_pretrained("user/bunny-diffcd")     # huggingface_hub's ModelHubMixin
    mesh = sdf.extract_mesh(256)

To try this without an account, `python -m tools.hubserver` runs a loopback stand-in for the Hub
(a development tool of the repository, not part of this package).
"""

from __future__ import annotations

from diffcd_hub.discover import list_checkpoints
from diffcd_hub.errors import HubError
from diffcd_hub.limits import ListLimits, PullLimits
from diffcd_hub.model import SDFModel, load_sdf
from diffcd_hub.pull import PullResult, pull_checkpoint
from diffcd_hub.push import PushResult, push_checkpoint

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

"""What one pull or one listing may cost: bytes per file, bytes per pull, repos per listing.

Every bound is checked before the work it guards: file sizes from the Hub's listing before any
download, the network's size from config.json before the weights are read (``NetworkLimits``).
The defaults suit a person pulling checkpoints on their own machine; a server whose visitors
choose the repo (the Space) passes tighter ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diffcd.export import NetworkLimits

from diffcd_hub._common import CARD_FILE, CONFIG_FILE, MESH_FILE, METRICS_FILE, WEIGHTS_FILE

__all__ = ["PullLimits", "ListLimits", "DEFAULT_PULL_LIMITS", "DEFAULT_LIST_LIMITS"]


def _positive(instance) -> None:
    for item in dataclasses.fields(instance):
        value = getattr(instance, item.name)
        if isinstance(value, (int, float)) and (isinstance(value, bool) or not value > 0):
            raise ValueError(f"{type(instance).__name__}.{item.name} must be positive, got {value!r}.")


@dataclass(frozen=True)
class PullLimits:
    """Bounds of one pull (``diffcd_hub.pull_checkpoint``, ``diffcd_hub.load_sdf``, ``SDFModel.from_pretrained``)."""

    network: NetworkLimits = field(default_factory=NetworkLimits)
    """Largest network (parameters, width, depth, activation settings; an input encoding's grid levels,
    resolution, features and table values, or Fourier bands), config.json and header sizes."""
    max_card_bytes: int = 256 << 10
    """Largest README.md (model card) downloaded."""
    max_metrics_bytes: int = 256 << 10
    """Largest metrics.json downloaded."""
    max_mesh_bytes: int = 256 << 20
    """Largest published mesh.glb downloaded (only when the published mesh is asked for)."""
    max_pull_bytes: int = 1 << 30
    """Most bytes one pull downloads, all files together."""

    def __post_init__(self) -> None:
        _positive(self)

    def file_limit(self, name: str) -> int:
        """The largest size accepted for the repo file `name`."""
        return {CONFIG_FILE: self.network.max_config_bytes, WEIGHTS_FILE: self.network.max_weights_bytes,
                CARD_FILE: self.max_card_bytes, METRICS_FILE: self.max_metrics_bytes,
                MESH_FILE: self.max_mesh_bytes}[name]


@dataclass(frozen=True)
class ListLimits:
    """Bounds of one listing (``diffcd_hub.list_checkpoints``)."""

    max_repos: int = 50
    """Most repos whose files one listing reads."""
    max_json_bytes: int = 64 << 10
    """Largest config.json or metrics.json read per repo (checked before downloading)."""
    max_json_depth: int = 16
    """Deepest nesting accepted in those files (checked before parsing)."""

    def __post_init__(self) -> None:
        _positive(self)


DEFAULT_PULL_LIMITS = PullLimits()
DEFAULT_LIST_LIMITS = ListLimits()

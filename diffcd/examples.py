"""The example point clouds and ground-truth meshes shipped in the repository's examples/ folder.

examples/make_examples.py generates them; examples/index.json lists them. Set the environment
variable DIFFCD_EXAMPLES_DIR to use another folder with the same layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import trimesh

from diffcd.errors import ConfigError
from diffcd.io import PointCloud, load_mesh, load_point_cloud

__all__ = ["EXAMPLES_DIR", "list_examples", "example_cloud_path", "example_gt_path", "load_example"]

EXAMPLES_DIR = Path(os.environ.get("DIFFCD_EXAMPLES_DIR")
                    or Path(__file__).resolve().parent.parent / "examples")
INDEX_FILE = "index.json"


def list_examples() -> list[dict]:
    """The entries of examples/index.json, in order.

    Each entry has: id, title, description, cloud and gt_mesh (file names inside EXAMPLES_DIR),
    points, noise_level ("none", "medium" or "max"), noise_std_relative (std / longest
    bounding-box side), noise_std (in the shape's units), units, bbox_longest_side, seed.

    Raises:
      ConfigError: the index is missing or unreadable.
    """
    index = EXAMPLES_DIR / INDEX_FILE
    try:
        return list(json.loads(index.read_text())["examples"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"Cannot read the example index {index} ({error}); run "
                          "`python examples/make_examples.py` to regenerate it.") from error


def _entry(example_id: str) -> dict:
    entries = list_examples()
    for entry in entries:
        if entry["id"] == example_id:
            return entry
    raise ConfigError(f"Unknown example {example_id!r}; choose one of "
                      f"{', '.join(e['id'] for e in entries)}.")


def example_cloud_path(example_id: str) -> Path:
    """Path of an example's point cloud file. Raises ConfigError for an unknown id."""
    return EXAMPLES_DIR / _entry(example_id)["cloud"]


def example_gt_path(example_id: str) -> Path:
    """Path of an example's ground-truth mesh. Raises ConfigError for an unknown id."""
    return EXAMPLES_DIR / _entry(example_id)["gt_mesh"]


def load_example(example_id: str, **cloud_options) -> tuple[PointCloud, trimesh.Trimesh]:
    """An example's point cloud (``load_point_cloud(..., **cloud_options)``) and GT mesh."""
    entry = _entry(example_id)
    return (load_point_cloud(EXAMPLES_DIR / entry["cloud"], **cloud_options),
            load_mesh(EXAMPLES_DIR / entry["gt_mesh"]))

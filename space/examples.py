"""The built-in example clouds (examples/index.json), with their ground-truth meshes.

These are what the app offers with no network. The index is read once; paths are checked when
an example is used, so a missing file gives a clear message instead of a crash at start.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


@dataclasses.dataclass(frozen=True)
class Example:
    id: str
    title: str
    description: str
    cloud: Path
    gt_mesh: Path | None
    points: int
    units: str
    noise_level: str

    @property
    def label(self) -> str:
        """What the dropdown shows."""
        return f"{self.title} ({self.points:,} points)"


@functools.lru_cache(maxsize=4)
def list_examples(folder: Path = EXAMPLES_DIR) -> tuple[Example, ...]:
    """Every example of folder/index.json, in index order; empty when there is no index."""
    index = folder / "index.json"
    if not index.is_file():
        return ()
    entries = json.loads(index.read_text()).get("examples", [])
    return tuple(
        Example(
            id=e["id"],
            title=e.get("title", e["id"]),
            description=e.get("description", ""),
            cloud=folder / e["cloud"],
            gt_mesh=folder / e["gt_mesh"] if e.get("gt_mesh") else None,
            points=int(e.get("points", 0)),
            units=e.get("units", "") if e.get("units") != "unitless" else "",
            noise_level=e.get("noise_level", "none"),
        )
        for e in entries
    )


def get_example(example_id: str, folder: Path = EXAMPLES_DIR) -> Example | None:
    return next((e for e in list_examples(folder) if e.id == example_id), None)

"""The built-in example clouds (diffcd.examples: examples/index.json), as the app lists them.

These are what the app offers with no network. A missing or unreadable index leaves the app
without examples (uploads still work) instead of failing to start.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

from diffcd import examples as library_examples
from diffcd.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Example:
    id: str
    title: str
    description: str
    cloud: Path
    gt_mesh: Path | None
    points: int
    units: str
    """The cloud's length unit ("mm", "cm"), empty when unitless."""

    @property
    def label(self) -> str:
        """What the dropdown shows."""
        return f"{self.title} ({self.points:,} points)"


@functools.lru_cache(maxsize=1)
def list_examples() -> tuple[Example, ...]:
    """Every example of the library's index, in index order; empty when there is no index."""
    try:
        entries = library_examples.list_examples()
    except ConfigError as error:
        logger.warning("No built-in examples: %s", error)
        return ()
    folder = library_examples.EXAMPLES_DIR
    return tuple(
        Example(
            id=e["id"],
            title=e.get("title", e["id"]),
            description=e.get("description", ""),
            cloud=folder / e["cloud"],
            gt_mesh=folder / e["gt_mesh"] if e.get("gt_mesh") else None,
            points=int(e.get("points", 0)),
            units="" if e.get("units") in (None, "unitless") else e["units"],
        )
        for e in entries
    )


def get_example(example_id: str) -> Example | None:
    return next((e for e in list_examples() if e.id == example_id), None)

"""The results table of a dataset run: one row per fitted shape (CSV) and a summary in Markdown
shaped like the paper's (mean and median per method setting and noise level).

Distances are reported the paper's way, for shapes scaled to a unit bounding box: Chamfer and
Hausdorff x100, squared Chamfer x10^4, each divided by the ground truth's longest bounding-box
side (and its square) first, so shapes in mm and in metres average alike.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from diffcd import metrics

ROW_FIELDS = (
    "noise", "setting", "method", "shape", "protocol", "surface_found", "cd_x100", "cd2_x1e4",
    "normal_angle_deg", "fscore", "hausdorff_x100", "gt_scale", "steps", "seed", "preset",
    "fit_seconds", "steps_per_second", "shapes_in_program", "run",
)
COLUMNS = (
    ("cd_x100", "CD×100", 3), ("cd2_x1e4", "CD²×10⁴", 3), ("normal_angle_deg", "normal angle (°)", 1),
    ("fscore", "F-score", 3), ("hausdorff_x100", "Hausdorff×100", 2),
)
"""Summary columns: row key, heading, decimals."""


def paper_units(scores: dict[str, float], gt_scale: float) -> dict[str, float]:
    """Raw evaluate_mesh scores (input units) in the paper's units for a unit-size shape: the
    table's columns of diffcd.metrics.paper_units, plus the F-score."""
    units = metrics.paper_units(scores, gt_scale)
    return {
        "cd_x100": units["chamfer_x100"],
        "cd2_x1e4": units["chamfer_squared_x1e4"],
        "normal_angle_deg": units["normal_angle_deg"],
        "fscore": float(scores["fscore"]),
        "hausdorff_x100": units["hausdorff_x100"],
    }


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """All rows as CSV, sorted by noise, setting and shape (the same file on every run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (str(r.get("noise")), str(r.get("setting")), str(r.get("shape"))))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(buffer.getvalue())
    tmp.replace(path)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def summarize(rows: Sequence[dict[str, Any]], *, settings: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Mean and median of every column per (noise, setting), with counts of shapes and failures."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["noise"]), str(row["setting"])), []).append(row)
    order = {s: i for i, s in enumerate(settings or [])}
    summary = []
    for (noise, setting), members in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], len(order)), kv[0][1])):
        entry: dict[str, Any] = {"noise": noise, "setting": setting, "shapes": len(members),
                                 "failed": sum(1 for r in members if str(r.get("surface_found")) != "True")}
        for key, _, _ in COLUMNS:
            values = [v for v in (_number(r.get(key)) for r in members) if v is not None]
            entry[f"{key}_mean"] = statistics.fmean(values) if values else None
            entry[f"{key}_median"] = statistics.median(values) if values else None
        summary.append(entry)
    return summary


def markdown(rows: Sequence[dict[str, Any]], *, settings: Sequence[str] | None = None, title: str = "") -> str:
    """The summary as Markdown: one table per noise level, cells "mean / median"."""
    lines = [f"# {title}" if title else "# Results", ""]
    lines.append("Each cell is mean / median over the shapes. CD×100, CD²×10⁴ and Hausdorff×100 are "
                 "for shapes scaled to a unit bounding box (divided by the ground truth's longest side); "
                 "F-score at 1% of that side. A shape without a surface counts as failed and is left "
                 "out of the averages.")
    summary = summarize(rows, settings=settings)
    for noise in dict.fromkeys(s["noise"] for s in summary):
        lines += ["", f"## noise: {noise}", ""]
        lines.append("| method | shapes | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
        lines.append("| --- | --- |" + " --- |" * len(COLUMNS))
        for entry in (s for s in summary if s["noise"] == noise):
            cells = []
            for key, _, decimals in COLUMNS:
                mean, median = entry[f"{key}_mean"], entry[f"{key}_median"]
                cells.append("–" if mean is None else f"{mean:.{decimals}f} / {median:.{decimals}f}")
            count = f"{entry['shapes'] - entry['failed']}" + (f" ({entry['failed']} failed)" if entry["failed"] else "")
            lines.append(f"| {entry['setting']} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

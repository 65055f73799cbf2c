"""The benchmark clouds and the ways a real scan falls short of a clean one.

Four objects, each with a ground-truth mesh to score against:

- `bunny` and `dragon`: 50,000 points sampled from the Stanford scans (benchmarks/data/README.md);
  the dragon is the thin-part case (claws, teeth, horns, a thin tail);
- `bracket`: the built-in CAD-like example (sharp edges, holes);
- `goblet`: the built-in thin, open surface (a cup with a stem).

Six conditions, each a pure function of the clean cloud and a fixed seed, so every method sees
the same points:

- `clean`: the cloud as it is;
- `noise-0.5` / `noise-1`: Gaussian noise with a standard deviation of 0.5 % / 1 % of the
  object's longest side on every coordinate;
- `sparse`: 5 % of the points, drawn uniformly;
- `partial`: the quarter of the object furthest along +x cut away (a side the scanner never saw);
- `scanner`: uneven density (the keep probability falls linearly from 1 on the -y side to 0.1 on
  the +y side) plus outliers: 1 % as many points again, uniform in the bounding box grown by 10 %.

Scores are always against the whole ground-truth mesh, so a method that leaves the cut-away side
open (or invents a wrong one) pays for it.
"""

from __future__ import annotations

import functools
import numpy as np
import trimesh

from benchmarks.quality import load_case as load_quality_case
from diffcd.io import PointCloud, points_from_array

SCAN_CASES = {"bunny": "bunny-scan", "dragon": "dragon-scan"}
"""The quality benchmark's case of each scanned cloud (benchmarks/quality.py SCANS)."""
CLOUDS = ("bunny", "dragon", "bracket", "goblet")
CONDITIONS = ("clean", "noise-0.5", "noise-1", "sparse", "partial", "scanner")
NOISE_SHARE = {"noise-0.5": 0.005, "noise-1": 0.01}
"""Noise standard deviation as a share of the object's longest side."""
SPARSE_SHARE = 0.05
PARTIAL_CUT = 0.75
"""Points beyond this fraction of the x extent (from -x) are cut away."""
OUTLIER_SHARE = 0.01
SPARSEST_KEEP = 0.1


@functools.lru_cache(maxsize=None)
def load_clean(cloud: str) -> tuple[PointCloud, trimesh.Trimesh]:
    """(clean cloud, ground-truth mesh) of one of CLOUDS: the quality benchmark's cases (its
    50,000-point scans of the bunny and dragon, the examples' clouds of the bracket and goblet)."""
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}; choose one of {', '.join(CLOUDS)}")
    return load_quality_case(SCAN_CASES.get(cloud, cloud))


def degrade(points: np.ndarray, condition: str, seed: int = 1) -> np.ndarray:
    """The clean `points` (N, 3) under `condition` (one of CONDITIONS), float32."""
    rng = np.random.default_rng(seed)
    points = np.asarray(points, np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = high - low
    if condition == "clean":
        out = points
    elif condition in NOISE_SHARE:
        out = points + rng.normal(0.0, NOISE_SHARE[condition] * extent.max(), points.shape)
    elif condition == "sparse":
        keep = rng.choice(len(points), size=max(1, round(SPARSE_SHARE * len(points))), replace=False)
        out = points[np.sort(keep)]
    elif condition == "partial":
        out = points[points[:, 0] <= low[0] + PARTIAL_CUT * extent[0]]
    elif condition == "scanner":
        along = (points[:, 1] - low[1]) / max(extent[1], 1e-12)
        keep_probability = 1.0 - (1.0 - SPARSEST_KEEP) * along
        kept = points[rng.random(len(points)) < keep_probability]
        margin = 0.05 * extent
        outliers = rng.uniform(low - margin, high + margin, size=(round(OUTLIER_SHARE * len(points)), 3))
        out = np.concatenate([kept, outliers])
    else:
        raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    return out.astype(np.float32)


def load_case(cloud: str, condition: str) -> tuple[PointCloud, trimesh.Trimesh]:
    """(cloud under condition, ground-truth mesh). The clean cloud's normals are dropped: no
    method gets normals the degraded scan would not have."""
    clean, truth = load_clean(cloud)
    return points_from_array(degrade(clean.points, condition)), truth

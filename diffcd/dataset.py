"""Datasets of point clouds with ground-truth meshes: find the shapes of a folder.

Two layouts are understood:

- ours (`examples/`): an `index.json` with `{"examples": [{"id", "cloud", "gt_mesh",
  "noise_level"}, ...]}`, file names relative to the folder;
- the paper's (Points2Surf's "Famous", "Thingi10k", ...): clouds and meshes in sibling folders,
  matched by name: `DATASET/04_pts/bunny.xyz.npy` with `DATASET/03_meshes/bunny.ply` (also
  `points/` or `clouds/` with `meshes/` or `gt/`). An optional `testset.txt` lists the shapes to
  use. The noise level comes from the folder's name (`famous_med_noise` -> medium,
  `famous_max_noise` -> max, `famous_noisefree` -> none) or is unknown.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from diffcd.errors import ConfigError
from diffcd.io import MESH_EXTENSIONS

INDEX_FILE = "index.json"
CLOUD_FOLDERS = ("04_pts", "points", "pts", "clouds", "pointclouds", "input")
MESH_FOLDERS = ("03_meshes", "meshes", "gt", "gt_meshes", "ground_truth")
CLOUD_SUFFIXES = (".npy", ".npz", ".xyz", ".txt", ".pts", ".ply", ".obj", ".off", ".stl")
NOISE_LEVELS = ("none", "medium", "max")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class Shape:
    """One shape of a dataset: a cloud, its ground-truth mesh and its noise level."""

    name: str
    cloud: Path
    gt_mesh: Path
    noise_level: str | None = None
    """none, medium or max; None where the dataset does not say."""


def shape_name(path: Path) -> str:
    """A file's name without its suffixes: bunny.xyz.npy -> bunny."""
    name = path.name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if not dot or not stem or f".{suffix.lower()}" not in CLOUD_SUFFIXES + MESH_EXTENSIONS + (".xyz",):
            return name
        name = stem


def _noise_from_name(name: str) -> str | None:
    name = name.lower()
    if "max_noise" in name or "max-noise" in name or "noise_max" in name:
        return "max"
    if re.search(r"med(ium)?[_-]noise|noise[_-]med", name):
        return "medium"
    if "noisefree" in name or "noise_free" in name or "original" in name:
        return "none"
    return None


def _safe_file(root: Path, name: str, what: str) -> Path:
    """A file named by an index, refused if it leaves the dataset folder."""
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        raise ConfigError(f"{root / INDEX_FILE}: the {what} {name!r} lies outside the dataset folder.")
    if not path.is_file():
        raise ConfigError(f"{root / INDEX_FILE}: the {what} {name!r} does not exist.")
    return path


def _from_index(root: Path) -> list[Shape]:
    try:
        entries = json.loads((root / INDEX_FILE).read_text())["examples"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{root / INDEX_FILE} is not a dataset index ({error}); expected "
                          '{"examples": [{"id": ..., "cloud": ..., "gt_mesh": ...}]}.') from None
    shapes = []
    for entry in entries:
        if not entry.get("gt_mesh"):
            continue  # a cloud without ground truth cannot be scored
        name = str(entry["id"])
        if not _NAME.match(name):
            raise ConfigError(f"{root / INDEX_FILE}: shape id {name!r} is not a plain name.")
        level = entry.get("noise_level")
        shapes.append(Shape(name, _safe_file(root, entry["cloud"], "cloud"),
                            _safe_file(root, entry["gt_mesh"], "mesh"),
                            level if level in NOISE_LEVELS else None))
    return shapes


def _first_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _by_name(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            files.setdefault(shape_name(path), path)
    return files


def _from_sibling_folders(root: Path, clouds: Path, meshes: Path) -> list[Shape]:
    cloud_files = _by_name(clouds, CLOUD_SUFFIXES)
    mesh_files = _by_name(meshes, MESH_EXTENSIONS)
    names = sorted(set(cloud_files) & set(mesh_files))
    listing = root / "testset.txt"
    if listing.is_file():
        wanted = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        missing = [n for n in wanted if n not in cloud_files or n not in mesh_files]
        if missing:
            raise ConfigError(f"{listing} names shapes without a cloud or mesh: {', '.join(missing[:5])}.")
        names = wanted
    level = _noise_from_name(root.resolve().name)
    return [Shape(n, cloud_files[n], mesh_files[n], level) for n in names]


def discover(path: str | Path) -> list[Shape]:
    """The shapes of a dataset folder (either layout), sorted as the dataset lists them.

    Raises:
      ConfigError: not a folder, no known layout, or no shape with both a cloud and a mesh.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass a dataset folder (see docs/cli.md, 'Datasets').")
    if (root / INDEX_FILE).is_file():
        shapes = _from_index(root)
    else:
        clouds, meshes = _first_folder(root, CLOUD_FOLDERS), _first_folder(root, MESH_FOLDERS)
        if clouds is None or meshes is None:
            raise ConfigError(
                f"{root} has neither an {INDEX_FILE} nor sibling folders of clouds "
                f"({'/'.join(CLOUD_FOLDERS[:3])}/...) and meshes ({'/'.join(MESH_FOLDERS[:3])}/...)."
            )
        shapes = _from_sibling_folders(root, clouds, meshes)
    if not shapes:
        raise ConfigError(f"{root}: no shape has both a point cloud and a ground-truth mesh.")
    names = [s.name for s in shapes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{root}: shape names must be unique; repeated: {', '.join(duplicates)}.")
    return shapes

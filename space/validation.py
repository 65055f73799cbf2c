"""Checks that run first in every event: each failure is a gr.Error with a sentence to act on.

Uploaded files are only parsed by diffcd's readers (NumPy without pickle, text, PLY/OBJ/OFF/STL
through trimesh); nothing uploaded is ever executed or unpickled.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from pathlib import Path

import gradio as gr
from gradio_client import utils as client_utils

from diffcd import METHODS, DiffCDError, PointCloud, load_point_cloud, poisson
from diffcd.errors import DiffCDWarning
from diffcd.methods import ALL_METHODS, RECONSTRUCTORS, is_reconstructor
from diffcd.presets import NOISE_LEVELS
from diffcd_space.examples import Example, get_example, list_examples
from diffcd_space.presets import AppPreset

MIN_RESOLUTION, MAX_RESOLUTION = 16, 512
MAX_STEPS = 200_000
MAX_COMPARED = 4
"""Most methods one comparison runs (the Compare tab has this many viewers)."""
OCTREE_DEPTHS = (5, 6, 7, 8, 9, 10)
"""Screened Poisson octree depths the app offers ("auto" picks one from the point count)."""
MAX_TRIM_QUANTILE = 0.2
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class LoadedCloud:
    cloud: PointCloud
    label: str
    """A short name for titles and file names (the example id or the upload's file stem)."""
    example: Example | None
    notes: tuple[str, ...]
    """Things the user should know (downsampling)."""

    @property
    def units(self) -> str:
        return self.example.units if self.example else ""


def file_text(upload) -> str | None:
    """What a file input holds: the path of an upload, or the http(s) URL an API caller gave."""
    if upload is None or upload == "":
        return None
    if isinstance(upload, dict):  # a FileData payload
        upload = upload.get("path")
    if isinstance(upload, (list, tuple)):
        raise gr.Error("Upload one file, not several.")
    return None if upload is None or upload == "" else str(upload)


def is_url(text: str) -> bool:
    """Whether a file input holds a URL (Gradio's own test, the one BoundedFile passes URLs by)."""
    return client_utils.is_http_url_like(text)


def file_path(upload) -> Path | None:
    """An upload's path (None when nothing was given); a URL stays to be downloaded by the caller."""
    text = file_text(upload)
    return None if text is None else Path(text)


def load_cloud(upload, example_id: str | None, *, max_points: int, warn: bool = True,
               max_bytes: int | None = None, input_limits=None) -> LoadedCloud:
    """The uploaded cloud if there is one, else the chosen example, validated by diffcd.io.

    The file's size is checked against `max_bytes` before a byte is read; `max_decoded_bytes`
    `input_limits` (diffcd.io.InputLimits) bound what diffcd.io may decode from it (arrays inside
    .npy/.npz, before decompressing).

    With `warn`, what the user should know (downsampling) is also shown as a gr.Warning; it is
    always in the returned notes.

    Raises:
      gr.Error: nothing chosen, an unknown example, or a file diffcd cannot read (the library's
        message names the problem and what to do).
    """
    path = file_path(upload)
    example = None
    if path is None:
        if not example_id:
            raise gr.Error("Upload a point cloud or pick an example first.")
        example = get_example(example_id)
        if example is None:
            names = ", ".join(e.id for e in list_examples()) or "none are installed"
            raise gr.Error(f"There is no example named {example_id!r}; choose one of: {names}.")
        path = example.cloud
    check_file_size(path, max_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiffCDWarning)
        try:
            cloud = load_point_cloud(path, max_points=max_points,
                                     **({"limits": input_limits} if input_limits is not None else {}))
        except DiffCDError as error:
            raise gr.Error(str(error), title="Cannot use this point cloud") from None
    # A downsampled cloud always comes with the library's warning that says so.
    notes = [str(w.message) for w in caught if issubclass(w.category, DiffCDWarning)]
    for note in notes if warn else ():
        gr.Warning(note)
    label = example.id if example else re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "cloud"
    return LoadedCloud(cloud, label, example, tuple(notes))


def check_file_size(path: Path, max_bytes: int | None) -> None:
    """Refuse a file larger than max_bytes (from its size on disk, before reading it)."""
    if max_bytes is None:
        return
    try:
        size = path.stat().st_size
    except OSError:
        raise gr.Error("The uploaded file cannot be found on the server; upload it again.") from None
    if size > max_bytes:
        raise gr.Error(f"The file is {size / 1e6:.1f} MB, more than this app's limit of {max_bytes / 1e6:g} MB: "
                       "upload a smaller cloud (e.g. a subsample), or run the app locally.",
                       title="File too large")


def check_cloud_choice(upload, example_id: str | None, *, max_bytes: int | None) -> None:
    """A quick check before a job joins the line: a cloud is chosen, the example exists, the file is
    not too large. The file is parsed once, by the job itself."""
    text = file_text(upload)
    if text is None:
        if not example_id:
            raise gr.Error("Upload a point cloud or pick an example first.")
        if get_example(example_id) is None:
            names = ", ".join(e.id for e in list_examples()) or "none are installed"
            raise gr.Error(f"There is no example named {example_id!r}; choose one of: {names}.")
        return
    if not is_url(text):  # a URL's size is bounded while it downloads
        check_file_size(Path(text), max_bytes)


def method_available(method: str) -> bool:
    """Whether this server can run `method`: a training method always, Screened Poisson with Open3D."""
    return method in ALL_METHODS and (not is_reconstructor(method) or poisson.available())


def offered_methods() -> list[str]:
    """The methods a chooser lists: every one of ALL_METHODS this server can run, in its order."""
    return [name for name in ALL_METHODS if method_available(name)]


def check_method(method: str) -> str:
    if method not in ALL_METHODS:
        raise gr.Error(f"Unknown method {method!r}; choose one of {', '.join(offered_methods())}.")
    if not method_available(method):
        raise gr.Error(f"{ALL_METHODS[method].title} needs Open3D, which this server does not have (pip install "
                       "'diffcd[poisson]' and the system libraries of packages.txt); choose another method.",
                       title="Method not installed")
    return method


def check_methods(methods) -> list[str]:
    """Two to MAX_COMPARED distinct methods this server can run, in the registry's order."""
    chosen = list(dict.fromkeys(methods or []))
    for method in chosen:
        check_method(method)
    if not 2 <= len(chosen) <= MAX_COMPARED:
        raise gr.Error(f"Choose two to {MAX_COMPARED} methods to compare (you chose {len(chosen)}).")
    return [m for m in ALL_METHODS if m in chosen]


def check_preset(preset: str, presets: dict[str, AppPreset]) -> AppPreset:
    if preset not in presets:
        raise gr.Error(f"Unknown preset {preset!r}; choose one of {', '.join(presets)}.")
    return presets[preset]


def _optional_number(value, name: str, *, low: float, high: float, integer: bool,
                     empty: str = "the preset's value"):
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number; leave it empty to use {empty}.") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise gr.Error(f"{name} must lie between {low:g} and {high:g} (got {value}); "
                       f"leave it empty to use {empty}.")
    if integer:
        if number != int(number):
            raise gr.Error(f"{name} must be a whole number (got {value}).")
        return int(number)
    return number


def check_noise(noise) -> str:
    """One of the named noise levels ("none" when empty)."""
    noise = noise or "none"
    if noise not in NOISE_LEVELS:
        raise gr.Error(f"Unknown noise setting {noise!r}; choose one of {', '.join(NOISE_LEVELS)}.")
    return noise


def check_settings(method: str, *, steps=None, width=None, depth=None, eikonal_weight=None,
                   area_weight=None, seed=0, resolution=None, noise=None) -> dict:
    """The advanced settings as keyword arguments of AppPreset.config (None: preset default)."""
    settings = {
        "noise": check_noise(noise),
        "steps": _optional_number(steps, "Steps", low=1, high=MAX_STEPS, integer=True),
        "width": _optional_number(width, "Network width", low=8, high=1024, integer=True),
        "depth": _optional_number(depth, "Network depth", low=1, high=16, integer=True),
        "eikonal_weight": _optional_number(eikonal_weight, "Eikonal weight", low=0, high=100, integer=False),
        "area_weight": _optional_number(area_weight, "Area weight", low=0, high=100, integer=False),
        "resolution": _optional_number(resolution, "Mesh resolution", low=MIN_RESOLUTION,
                                       high=MAX_RESOLUTION, integer=True),
        "seed": _optional_number(seed, "Seed", low=0, high=2**31 - 1, integer=True) or 0,
    }
    if is_reconstructor(method):
        return _reconstructor_settings(method, settings)
    fields = {f.name for f in dataclasses.fields(METHODS[method].config_type)}
    for key, term in (("eikonal_weight", "eikonal"), ("area_weight", "area")):
        if key not in fields:
            if settings[key]:
                raise gr.Error(f"{METHODS[method].title} has no {term} term; leave the {term} weight "
                               "empty or 0.")
            settings[key] = None
    return settings


def _reconstructor_settings(method: str, settings: dict) -> dict:
    """A reconstructor trains no network: refuse the settings of one (the seed only picks a subsample)."""
    title = RECONSTRUCTORS[method].title
    weights = [name for key, name in (("eikonal_weight", "eikonal"), ("area_weight", "area")) if settings[key]]
    if weights:
        raise gr.Error(f"{title} has no loss, so it takes no {' or '.join(weights)} weight; leave the loss weights "
                       "empty.", title="Invalid settings")
    given = [name for key, name in (("steps", "steps"), ("width", "network width"), ("depth", "network depth"),
                                    ("resolution", "mesh resolution")) if settings[key] is not None]
    given += ["noise setting"] if settings["noise"] != "none" else []
    if given:
        raise gr.Error(f"{title} trains no network, so the {', '.join(given)} {'does' if len(given) == 1 else 'do'} "
                       "not apply to it; leave them empty (its settings are the octree depth and the trim "
                       "quantile).", title="Invalid settings")
    return {"seed": settings["seed"]}


def check_poisson_settings(octree_depth="auto", trim_quantile=None) -> poisson.PoissonConfig:
    """Screened Poisson's settings: octree depth "auto" (from the point count) or 5 to 10, and the share
    of least supported vertices trimmed, 0 to MAX_TRIM_QUANTILE."""
    depth = None
    if octree_depth not in (None, "", "auto"):
        depth = _optional_number(octree_depth, "Octree depth", low=OCTREE_DEPTHS[0], high=OCTREE_DEPTHS[-1],
                                 integer=True, empty="a depth chosen from the point count ('auto')")
    trim = _optional_number(trim_quantile, "Trim quantile", low=0, high=MAX_TRIM_QUANTILE, integer=False,
                            empty="the default of 0.02")
    return poisson.PoissonConfig(depth=depth, **({} if trim is None else {"trim_quantile": trim}))


def check_resolution(resolution) -> int:
    value = _optional_number(resolution, "Mesh resolution", low=MIN_RESOLUTION, high=MAX_RESOLUTION,
                             integer=True)
    if value is None:
        raise gr.Error(f"Choose a mesh resolution between {MIN_RESOLUTION} and {MAX_RESOLUTION}.")
    return value


def check_repo_id(repo_id: str | None) -> str:
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise gr.Error("Enter a repo id of the form namespace/name, e.g. user/bunny-diffcd.")
    if not _REPO_ID.match(repo_id):
        raise gr.Error(f"{repo_id!r} is not a repo id: use the form namespace/name, e.g. user/bunny-diffcd.")
    return repo_id

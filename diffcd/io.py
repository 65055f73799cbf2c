"""Reading and writing point clouds and meshes, and the normalisation into the unit box.

Every reader validates what it reads and raises ``PointCloudError`` or ``MeshError`` with a
message that names the file, the problem and what to do; a parser's own exception is kept as
the ``__cause__``. See method.md section 1 for the normalisation.

Every reader is bounded before it decompresses or allocates (``InputLimits``): the file's size,
then what its headers declare (a .npy's shape and dtype, each .npz member's zip header and inner
.npy header, a PLY's or OFF's element counts, a binary STL's triangle count, a text file's rows).
A file beyond a bound raises ``InputLimitError`` (a ``LimitError`` and a ``PointCloudError`` or
``MeshError``) at once. This is distinct from ``max_points``, which only downsamples a large but
sane cloud after it was read.

Headers can lie, so what a reader will build is also counted from the bytes themselves before it
parses (``diffcd.meshscan``): the corners of every polygon (fan triangulation makes n - 2
triangles of one), the triangles, vertices, lines and values of a mesh file, the instances a GLB's
scene makes, the numbers on each row of a text cloud. From those counts ``read_budget`` bounds the
memory a read adds by the file's size, so that cost grows no faster than the file.
"""

from __future__ import annotations

import codecs
import dataclasses
import io as _io
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from diffcd.errors import ConfigError, DiffCDWarning, LimitError, MeshError, PointCloudError
from diffcd.meshscan import GLB_MAX_JSON_BYTES, count_mesh, longest_row
from diffcd.metrics import sample_triangles

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "MESH_EXTENSIONS",
    "SAVE_EXTENSIONS",
    "PointCloud",
    "Normalization",
    "InputLimits",
    "DEFAULT_INPUT_LIMITS",
    "PointCloudLimitError",
    "MeshLimitError",
    "load_point_cloud",
    "points_from_array",
    "load_mesh",
    "save_point_cloud",
]

SUPPORTED_EXTENSIONS = (".npy", ".npz", ".xyz", ".txt", ".pts", ".ply", ".obj", ".off", ".stl")
MESH_EXTENSIONS = (".ply", ".obj", ".off", ".stl", ".glb")
SAVE_EXTENSIONS = (".npy", ".npz", ".xyz", ".txt", ".pts", ".ply")
_NUMPY_EXTENSIONS = (".npy", ".npz")
_TEXT_EXTENSIONS = (".xyz", ".txt", ".pts")
_POINT_KEYS = ("points", "xyz", "pts")
_NORMAL_KEYS = ("normals", "normal")
# Local sigma uses each point's 50th nearest other point, so 51 points is the least that works.
DEFAULT_MIN_POINTS = 51
DEFAULT_MAX_POINTS = 1_000_000
# float32 keeps about 7 significant digits: warn when coordinates dwarf the cloud's size.
_FAR_FROM_ORIGIN_RATIO = 1e4


class PointCloudLimitError(PointCloudError, LimitError):
    """A point-cloud file exceeds a bound of ``InputLimits``; nothing was decompressed or allocated."""


class MeshLimitError(MeshError, LimitError):
    """A mesh file exceeds a bound of ``InputLimits``; nothing was decompressed or allocated."""


@dataclass(frozen=True)
class InputLimits:
    """Hard caps on an input file, checked before anything is decompressed, parsed or allocated.

    The defaults are generous (a local user with their own scans); a server reading files chosen by
    its visitors passes tighter ones. ``max_points`` of the loaders is different: it downsamples a
    cloud that passed these caps.
    """

    max_file_bytes: int = 4 << 30
    """Largest file on disk."""
    max_decoded_bytes: int = 8 << 30
    """Largest decoded data: arrays (by their declared shape and dtype), mesh vertices and faces."""
    max_elements: int = 200_000_000
    """Most points (rows), vertices or faces a file may declare."""
    max_compression_ratio: float = 200.0
    """Largest decoded/compressed ratio of an .npz member over 1 MiB (a zip bomb's is ~1000)."""
    max_read_bytes: int = 1 << 40
    """Most memory reading a file of ``max_file_bytes`` may add; a smaller file of s bytes may add
    ``max_read_bytes * s / max_file_bytes`` plus ``READ_ALLOWANCE_BYTES``, so that the cost grows
    no faster than the file. A mesh's cost is estimated from the lines, triangles and vertices its
    bytes make (``diffcd.meshscan``) before it is parsed. The default (256 bytes per byte of a
    4 GB file) stops only what no honest file needs; the public app allows 6 per byte."""
    max_face_corners: int = 1024
    """Most corners of one polygon of a mesh file (fan triangulation makes n - 2 triangles of it)."""
    max_row_numbers: int = 64
    """Most numbers on one row of a text point cloud (a row holds 3 or 6)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"InputLimits.{field.name} must be a positive number, got {value!r}.")


DEFAULT_INPUT_LIMITS = InputLimits()
READ_ALLOWANCE_BYTES = 40_000_000
"""Memory any read may add whatever the file's size: a parser's working buffers and the allocator's
slack (the scan of ``diffcd.meshscan`` alone uses about 20 MB)."""


def read_budget(size: int, limits: InputLimits) -> float:
    """The memory reading a file of `size` bytes may add under `limits` (see ``max_read_bytes``)."""
    return min(limits.max_read_bytes, limits.max_read_bytes * size / limits.max_file_bytes + READ_ALLOWANCE_BYTES)


@dataclass(frozen=True, eq=False)
class PointCloud:
    """A validated point cloud in its original coordinates.

    Attributes:
      points: ``(N, 3)`` float32, all finite, N >= the loader's ``min_points``.
      normals: ``(N, 3)`` float32 unit vectors, or None when the input had none.
      source: where the points came from (a file path, or "array").
      original_count: number of points before downsampling (``== len(points)`` when none).
    """

    points: np.ndarray
    normals: np.ndarray | None
    source: str
    original_count: int

    @property
    def downsampled(self) -> bool:
        """Whether points were dropped to respect ``max_points``."""
        return self.original_count > len(self.points)

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class Normalization:
    """The map from original coordinates into the unit box: ``x -> (x - center) / scale``.

    ``from_points`` uses the middle of the axis-aligned bounding box as the centre and its longest
    side as the scale, so normalised points lie in [-0.5, 0.5]^3 (method.md section 1).
    """

    center: tuple[float, float, float]
    scale: float

    def __post_init__(self):
        center = tuple(float(c) for c in np.asarray(self.center, dtype=np.float64).reshape(-1))
        scale = float(self.scale)
        if len(center) != 3 or not np.isfinite(center).all():
            raise ValueError(f"Normalization centre must be three finite numbers, got {self.center!r}.")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"Normalization scale must be a positive finite number, got {self.scale!r}.")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def from_points(cls, points) -> "Normalization":
        """The normalisation of a cloud: bounding-box centre and longest side.

        Raises:
          PointCloudError: the points are empty, non-finite or all identical.
        """
        array = np.asarray(getattr(points, "points", points), dtype=np.float64).reshape(-1, 3)
        if len(array) == 0 or not np.isfinite(array).all():
            raise PointCloudError("Cannot normalise an empty or non-finite point set; "
                                  "load it with load_point_cloud first.")
        low, high = array.min(axis=0), array.max(axis=0)
        scale = float((high - low).max())
        if scale <= 0:
            raise PointCloudError("Cannot normalise: all points are identical (zero extent).")
        return cls(center=tuple((low + high) / 2), scale=scale)

    def _constants(self, x):
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        if x.shape[-1:] != (3,):
            raise ValueError(f"Expected an array of shape (..., 3), got {tuple(x.shape)}.")
        return np.asarray(self.center, dtype=dtype), np.asarray(self.scale, dtype=dtype)

    def apply(self, x):
        """Original coordinates -> normalised: ``(x - center) / scale``; keeps a float dtype."""
        x = x if hasattr(x, "dtype") and hasattr(x, "shape") else np.asarray(x, dtype=np.float64)
        center, scale = self._constants(x)
        return (x - center) / scale

    def undo(self, x):
        """Normalised coordinates -> original: ``x * scale + center``; keeps a float dtype."""
        x = x if hasattr(x, "dtype") and hasattr(x, "shape") else np.asarray(x, dtype=np.float64)
        center, scale = self._constants(x)
        return x * scale + center

    def to_dict(self) -> dict:
        """A JSON-ready form: ``{"center": [x, y, z], "scale": s}``."""
        return {"center": list(self.center), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        """The inverse of ``to_dict``."""
        return cls(center=tuple(data["center"]), scale=data["scale"])


# ----------------------------------------------------------------------------------------------
# Validation shared by every reader


def _check_limits(max_points: int, min_points: int) -> None:
    if int(min_points) != min_points or min_points < 1:
        raise ConfigError(f"min_points must be a positive integer, got {min_points!r}.")
    if int(max_points) != max_points or max_points < min_points:
        raise ConfigError(f"max_points must be an integer of at least min_points ({min_points}), "
                          f"got {max_points!r}.")


def _numeric(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise PointCloudError(f"{name}: holds {array.dtype} values, not numbers; "
                              "store the coordinates as a float array.")
    return array.astype(np.float64, copy=False)


def _unit_normals(normals: np.ndarray, name: str) -> np.ndarray | None:
    """Unit normals, or None (with a warning) when the columns are not normals (e.g. colours)."""
    lengths = np.linalg.norm(normals, axis=1)
    if np.all(lengths > 1e-12) and 0.9 <= np.median(lengths) <= 1.1:
        return (normals / lengths[:, None]).astype(np.float32)
    warnings.warn(f"{name}: columns 4-6 are not unit normals (colours?), so they are ignored.",
                  DiffCDWarning, stacklevel=4)
    return None


def _split_columns(array, normals, name: str):
    """(points, normals) as float64 from an (N, 3) or (N, 6) array and optional normals."""
    array = _numeric(array, name)
    if array.ndim != 2 or array.shape[1] not in (3, 6):
        hint = ""
        if array.ndim == 2 and array.shape[0] in (3, 6):
            hint = " It looks transposed: save array.T instead."
        raise PointCloudError(f"{name}: expected an array of shape (N, 3) for x y z or (N, 6) with "
                              f"normals, got {array.shape}.{hint}")
    if array.shape[1] == 6:
        return array[:, :3], array[:, 3:]
    if normals is not None:
        normals = _numeric(normals, name)
        if normals.shape != array.shape:
            raise PointCloudError(f"{name}: the normals have shape {normals.shape} but the points "
                                  f"{array.shape}; store one normal per point or none.")
    return array, normals


def _check_points(points: np.ndarray, normals, name: str, min_points: int) -> None:
    """Raises PointCloudError unless the points can define a surface."""
    count = len(points)
    if count == 0:
        raise PointCloudError(f"{name}: contains no points; check that the file holds the scan.")
    if count == 1:
        raise PointCloudError(f"{name}: contains a single point; a surface needs at least "
                              f"{min_points} points.")
    finite = np.isfinite(points).all(axis=1)
    if normals is not None:
        finite &= np.isfinite(normals).all(axis=1)
    if not finite.all():
        raise PointCloudError(f"{name}: {count - int(finite.sum())} of {count} rows contain NaN or "
                              "inf values; remove them or re-export the scan.")
    if count < min_points:
        raise PointCloudError(f"{name}: has {count} points but at least {min_points} are needed "
                              "(each point's scale comes from its 50th nearest neighbour); "
                              "use a denser scan.")
    if np.ptp(points, axis=0).max() == 0:
        raise PointCloudError(f"{name}: all {count} points are identical (zero extent); "
                              "there is no surface to fit.")
    centred = points - points.mean(axis=0)
    spread = np.linalg.eigvalsh(centred.T @ centred)  # ascending: a line has one non-zero value
    if spread[1] <= 1e-12 * spread[2]:
        raise PointCloudError(f"{name}: all points lie on a line; there is no surface to fit.")


def _make_cloud(array, normals, name: str, source: str, *, max_points: int, min_points: int,
                seed: int, explicit_normals: bool = False) -> PointCloud:
    """Validates an (N, 3) or (N, 6) array (plus optional normals) and builds a PointCloud."""
    _check_limits(max_points, min_points)
    points, normals = _split_columns(array, normals, name)
    _check_points(points, normals, name, min_points)
    if np.abs(points).max() > _FAR_FROM_ORIGIN_RATIO * np.ptp(points, axis=0).max():
        warnings.warn(f"{name}: the coordinates are far from the origin compared with the cloud's "
                      "size, so float32 storage loses precision; subtract a centre before loading.",
                      DiffCDWarning, stacklevel=3)
    if normals is not None:
        normals = _explicit_normals(normals, name) if explicit_normals else _unit_normals(normals, name)
    count = len(points)
    if count > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(count, size=max_points, replace=False))
        points = points[keep]
        normals = None if normals is None else normals[keep]
        warnings.warn(f"{name}: {count} points is more than max_points={max_points}; using a random "
                      f"subset of {max_points} (seed {seed}).", DiffCDWarning, stacklevel=3)
    return PointCloud(points=np.ascontiguousarray(points, dtype=np.float32),
                      normals=None if normals is None else np.ascontiguousarray(normals, np.float32),
                      source=source, original_count=count)


def _explicit_normals(normals: np.ndarray, name: str) -> np.ndarray:
    """Normals stored as such (a ``normals`` array or face normals): must be non-zero."""
    lengths = np.linalg.norm(normals, axis=1)
    if np.any(lengths <= 1e-12):
        raise PointCloudError(f"{name}: {int(np.sum(lengths <= 1e-12))} normals have zero length; "
                              "fix them or drop the normals.")
    return (normals / lengths[:, None]).astype(np.float32)


def points_from_array(arr, *, source: str = "array", max_points: int = DEFAULT_MAX_POINTS,
                      min_points: int = DEFAULT_MIN_POINTS, seed: int = 0) -> PointCloud:
    """Validates an in-memory ``(N, 3)`` (or ``(N, 6)`` with normals) array as a point cloud.

    Same checks as ``load_point_cloud``: shape, NaN/inf rows, at least ``min_points`` points, a
    non-degenerate bounding box; above ``max_points`` a seeded random subset is kept (with a
    ``DiffCDWarning``).

    Raises:
      PointCloudError: the array fails a check.
    """
    return _make_cloud(arr, None, source, source, max_points=max_points, min_points=min_points,
                       seed=seed)


# ----------------------------------------------------------------------------------------------
# Readers


def _check_file(path: Path, extensions: tuple[str, ...], error: type, limits: InputLimits) -> None:
    if not path.exists():
        raise error(f"{path}: file not found; check the path.")
    if path.is_dir():
        raise error(f"{path}: is a folder, not a file; pass the file inside it.")
    if path.suffix.lower() not in extensions:
        raise error(f"{path.name}: unknown file type {path.suffix or '(no extension)'!r}; "
                    f"supported: {', '.join(extensions)}.")
    size = path.stat().st_size
    if size == 0:
        raise error(f"{path.name}: the file is empty; re-export it.")
    if size > limits.max_file_bytes:
        raise _limit_error(error)(f"{path.name}: the file is {_size(size)}, more than the "
                                  f"{_size(limits.max_file_bytes)} allowed; use a smaller or subsampled file.")


def _limit_error(error: type) -> type:
    return MeshLimitError if issubclass(error, MeshError) else PointCloudLimitError


def _size(count: float) -> str:
    """A byte count for messages: 1.5 GB, 980 KB, 12 bytes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} bytes"


def _check_declared(name: str, rows: int, decoded: float, limits: InputLimits, error: type,
                    what: str = "points") -> None:
    """Refuse before allocating when a header declares more rows or bytes than the limits allow."""
    if rows > limits.max_elements:
        raise _limit_error(error)(f"{name}: declares {rows:,} {what}, more than the {limits.max_elements:,} "
                                  "allowed; use a subsampled file.")
    if decoded > limits.max_decoded_bytes:
        raise _limit_error(error)(f"{name}: would decode to {_size(decoded)}, more than the "
                                  f"{_size(limits.max_decoded_bytes)} allowed; it was not decompressed. "
                                  "Use a subsampled file.")


def _npy_header(file, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of the .npy stream at `file`; the data stays unread."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(file)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as error:  # numpy raises ValueError, EOFError, SyntaxError...
        raise PointCloudError(f"{name}: could not be read (its NumPy header is invalid: {error}); save the "
                              "points with numpy.save or numpy.savez.") from error
    if dtype.hasobject:
        raise PointCloudError(f"{name}: could not be read (it holds pickled Python objects, which diffcd "
                              "never loads); save the points as a plain float (N, 3) array.")
    return tuple(shape), dtype, file.tell()


def _check_npy_header(name: str, shape, dtype, data_bytes: int, limits: InputLimits) -> None:
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    _check_declared(name, int(shape[0]) if shape else 1, declared, limits, PointCloudError)
    if declared > data_bytes:
        raise PointCloudError(f"{name}: could not be read (it is truncated: its header declares "
                              f"{_size(declared)} of data but it holds {_size(data_bytes)}); save it again.")


def _read_npy(path: Path, limits: InputLimits):
    with path.open("rb") as file:
        shape, dtype, start = _npy_header(file, path.name)
        _check_npy_header(path.name, shape, dtype, path.stat().st_size - start, limits)
    return np.load(path, allow_pickle=False)


def _npz_members(archive: zipfile.ZipFile, name: str) -> tuple[zipfile.ZipInfo, zipfile.ZipInfo | None]:
    """The zip entries of the points array and of the normals (or None), by numpy's key rules."""
    entries = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i for i in archive.infolist()}
    normal_key = next((k for k in _NORMAL_KEYS if k in entries), None)
    candidates = [k for k in entries if k != normal_key]
    if not candidates:
        raise PointCloudError(f"{name}: holds no point array; save the points under the key 'points'.")
    key = next((k for k in _POINT_KEYS if k in entries), candidates[0])
    return entries[key], None if normal_key is None else entries[normal_key]


def _read_npz(path: Path, limits: InputLimits):
    """(points, normals) of an .npz, each member checked by its zip header and its .npy header first.

    zipfile stops decompressing a member at the size its header declares, so once that size is
    within bounds the decompressed bytes are too; the inner .npy header bounds the allocation.
    """
    name = path.name
    with zipfile.ZipFile(path) as archive:
        members = [m for m in _npz_members(archive, name) if m is not None]
        declared = 0
        for member in members:
            label = f"{name} ({member.filename})"
            if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise PointCloudError(f"{label}: uses a zip compression numpy never writes; save the points "
                                      "with numpy.savez or numpy.savez_compressed.")
            declared += member.file_size
            _check_declared(label, 0, declared, limits, PointCloudError)
            ratio = member.file_size / max(member.compress_size, 1)
            if member.file_size > 1 << 20 and ratio > limits.max_compression_ratio:
                raise PointCloudLimitError(
                    f"{label}: would expand {ratio:,.0f} times when decompressed (to {_size(member.file_size)}), "
                    f"more than the {limits.max_compression_ratio:g} times allowed; real point data does not "
                    "compress like that, so it was not decompressed.")
            with archive.open(member) as stream:
                shape, dtype, start = _npy_header(stream, label)
            _check_npy_header(label, shape, dtype, member.file_size - start, limits)
        arrays = []
        for member in members:
            with archive.open(member) as stream:
                arrays.append(np.lib.format.read_array(stream, allow_pickle=False))
    return arrays[0], (arrays[1] if len(arrays) > 1 else None)


def _read_numpy(path: Path, limits: InputLimits):
    """(array, normals or None, normals stored as such) from a .npy or .npz file."""
    name, is_npy = path.name, path.suffix.lower() == ".npy"
    with path.open("rb") as file:
        head = file.read(6)
    if is_npy and head != b"\x93NUMPY":
        raise PointCloudError(f"{name}: not a NumPy .npy file (the NumPy header is missing); "
                              "save the points with numpy.save(path, points).")
    if not is_npy and not zipfile.is_zipfile(path):
        raise PointCloudError(f"{name}: not a NumPy .npz archive; save the points with "
                              "numpy.savez(path, points=points).")
    try:
        if is_npy:
            return _read_npy(path, limits), None, False
        points, normals = _read_npz(path, limits)
        return points, normals, normals is not None
    except PointCloudError:
        raise
    except Exception as error:  # numpy raises ValueError, OSError, zipfile errors, EOFError...
        if "pickle" in str(error).lower():
            reason = "it holds pickled Python objects, which diffcd never loads"
        else:
            reason = f"{type(error).__name__}: {error}"
        raise PointCloudError(f"{name}: could not be read ({reason}); save the points as a plain "
                              "float (N, 3) array with numpy.save or numpy.savez.") from error


def _header_lines(lines: list[str]) -> int:
    """How many leading lines to skip: comments, then one count or column-name line if present."""
    for index, line in enumerate(lines):
        tokens = line.split()
        if not tokens or tokens[0].startswith(("#", "//")):
            continue
        if len(tokens) == 1:  # a point count, as some .pts writers put first
            return index + 1
        try:
            [float(t) for t in tokens]
        except ValueError:
            return index + 1 if not any(_is_number(t) for t in tokens) else index
        return index
    return len(lines)


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_text(path: Path, limits: InputLimits):
    name = path.name
    data = path.read_bytes()  # within max_file_bytes
    rows = data.count(b"\n") + 1
    _check_declared(name, rows, rows * 6 * 8, limits, PointCloudError, what="rows")
    numbers = longest_row(data)
    if numbers > limits.max_row_numbers:
        raise PointCloudLimitError(f"{name}: has a row of {numbers:,} numbers, more than the {limits.max_row_numbers} "
                                   "allowed; each row must be 'x y z' or 'x y z nx ny nz', one point per line.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PointCloudError(f"{name}: not a text file (it has bytes that are not UTF-8); "
                              f"{path.suffix} files must hold one 'x y z' row per point.") from error
    del text  # decoded only to check it: the rows are parsed from the bytes, a chunk at a time
    data = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    # One comment character keeps numpy's parser in C (two comment markers make it go line by line in Python).
    data = data.translate(_TEXT_SEPARATORS).replace(b"//", b"#")
    skip = _header_lines(data[: 1 << 16].decode("utf-8", "ignore").splitlines()[:1000])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on empty input; we report it below
            array = np.loadtxt(_io.BytesIO(data), comments="#", skiprows=skip, ndmin=2, dtype=np.float64,
                               encoding="utf-8")
    except ValueError as error:
        raise PointCloudError(f"{name}: could not parse the rows as numbers ({error}); each row must "
                              "be 'x y z' or 'x y z nx ny nz', separated by spaces or commas.") from error
    if array.size == 0:
        array = np.empty((0, 3))
    return array, None, False


_TEXT_SEPARATORS = bytes.maketrans(b",;\t", b"   ")
_PLY_ELEMENT = re.compile(rb"^element\s+(\S+)\s+(\d+)\s*$", re.MULTILINE)
_PLY_PROPERTY = re.compile(rb"^property\s+(list\s+)?", re.MULTILINE)


def _ply_declared(data: bytes) -> tuple[int, float]:
    """(elements, decoded bytes) a PLY header declares; list properties count as 4 values."""
    end = data.find(b"end_header", 0, 1 << 16)
    header = data[: end if end >= 0 else 1 << 16]
    elements, decoded = 0, 0.0
    blocks = re.split(rb"^element\s", header, flags=re.MULTILINE)[1:]
    for block, match in zip(blocks, _PLY_ELEMENT.finditer(header)):
        count = int(match.group(2))
        values = sum(4 if m.group(1) else 1 for m in _PLY_PROPERTY.finditer(block)) or 1
        elements += count
        decoded += count * values * 8
    return elements, decoded


def _off_declared(data: bytes) -> tuple[int, float]:
    """(vertices + faces, decoded bytes) from an OFF file's counts line."""
    tokens: list[bytes] = []
    for line in data[: 1 << 16].splitlines():
        line = line.split(b"#")[0].strip()
        if not line:
            continue
        tokens += line.split()
        if len(tokens) >= 3 and tokens[0].upper().endswith(b"OFF") or len(tokens) >= 4:
            break
    counts = [t for t in tokens if t.isdigit()][:2]
    vertices, faces = (int(counts[0]), int(counts[1])) if len(counts) == 2 else (0, 0)
    return vertices + faces, vertices * 3 * 8 + faces * 4 * 8


def _stl_declared(data: bytes) -> tuple[int, float]:
    """(triangles, decoded bytes) of an STL: a binary file's count must match its size."""
    if len(data) >= 84:
        (count,) = struct.unpack("<I", data[80:84])
        if len(data) == 84 + 50 * count:
            return count, count * 12 * 8
    triangles = data.count(b"facet") // 2 + 1  # an ASCII STL: "facet normal ... endfacet"
    return triangles, triangles * 12 * 8


def _glb_declared(data: bytes) -> tuple[int, float]:
    """(elements, decoded bytes) from a GLB's JSON chunk: the sum of its accessors' counts."""
    if len(data) < 20 or data[:4] != b"glTF":
        return 0, 0.0
    (length,) = struct.unpack("<I", data[12:16])
    if length > GLB_MAX_JSON_BYTES:
        return 0, 0.0  # _check_built refuses it before anything parses it
    try:
        import json

        document = json.loads(data[20 : 20 + min(length, len(data) - 20)])
        counts = [int(a.get("count", 0)) for a in document.get("accessors", [])]
    except (ValueError, RecursionError, AttributeError, TypeError):
        return 0, 0.0  # trimesh reports the malformed file
    return sum(counts), sum(counts) * 4 * 8


def _check_geometry(path: Path, data: bytes, error: type, limits: InputLimits) -> None:
    """Refuse a mesh file whose header declares more elements or bytes than the limits allow."""
    extension = path.suffix.lower()
    if extension == ".ply":
        elements, decoded = _ply_declared(data)
    elif extension == ".off":
        elements, decoded = _off_declared(data)
    elif extension == ".stl":
        elements, decoded = _stl_declared(data)
    elif extension == ".glb":
        elements, decoded = _glb_declared(data)
    else:  # .obj: one element per line at most
        rows = data.count(b"\n") + 1
        elements, decoded = rows, rows * 4 * 8
    _check_declared(path.name, elements, decoded, limits, error, what="vertices and faces")
    _check_built(path, data, error, limits)


_MESH_READ_COST = {
    # per file byte, per value of text, per line of text, per triangle, per vertex
    "obj": (1.0, 0, 20, 230, 170),
    "off": (2.0, 130, 260, 50, 60),
    "ply": (2.5, 0, 360, 220, 70),
    "ply-binary": (2.0, 0, 0, 280, 40),
    "stl": (4.0, 0, 0, 330, 60),
    "stl-binary": (1.0, 0, 0, 300, 0),
    "glb": (1.0, 60, 0, 300, 60),
}
"""Memory (bytes) that reading a mesh file adds per file byte, per value and per line of text, per
triangle and per vertex it makes: the larger of load_mesh's and load_point_cloud's, measured with
benchmarks/hostile_inputs.py on honest files and on dense hostile ones. trimesh's OFF reader
holds every value as a Python string and its ASCII PLY reader every line as an array, hence
their costs per value and per line (a GLB's "values" are the bytes of its JSON chunk, parsed into
Python objects); OFF's are doubled because its reader is also the slowest
(about 0.5 s per MB), so that the OFF files accepted stay within the time bound too."""


def _read_cost(kind: str, size: int, counts) -> float:
    """The memory reading a mesh file of `size` bytes with `counts` (``MeshCounts``) adds."""
    per_byte, per_value, per_line, per_triangle, per_vertex = _MESH_READ_COST[kind + "-binary" * counts.binary]
    return (per_byte * size + per_value * counts.tokens + per_line * counts.lines + per_triangle * counts.triangles
            + per_vertex * counts.vertices)


def _check_text(path: Path, data: bytes, error: type, kind: str) -> None:
    """Refuse a text mesh format whose bytes are not UTF-8 text, checked a chunk at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for offset in range(0, len(data), 1 << 20):
            decoder.decode(data[offset: offset + (1 << 20)], final=offset + (1 << 20) >= len(data))
    except UnicodeDecodeError as cause:
        raise error(f"{path.name}: not a valid {kind.upper()} file (it holds bytes that are not text, from byte "
                    f"{offset + cause.start:,}); check that the file is not corrupted, or re-export it.") from cause


def _check_built(path: Path, data: bytes, error: type, limits: InputLimits) -> None:
    """Refuse a mesh file whose bytes make more than the limits allow: a polygon with too many
    corners, or triangles and vertices whose reading would cost more memory than its size may."""
    kind = path.suffix.lower().lstrip(".")
    counts = count_mesh(data, kind)
    if counts.problem:
        raise error(f"{path.name}: not a valid {kind.upper()} file ({counts.problem}); check that the file is "
                    "not corrupted, or re-export it.")
    if kind != "glb" and not counts.binary:
        _check_text(path, data, error, kind)
    if counts.corners > limits.max_face_corners:
        raise _limit_error(error)(
            f"{path.name}: has a polygon of {counts.corners:,} corners, more than the {limits.max_face_corners:,} "
            "allowed (it would become as many triangles); triangulate the mesh or re-export it.")
    if counts.values > limits.max_face_corners + 2:
        raise _limit_error(error)(
            f"{path.name}: has a line of {counts.values:,} values, more than the {limits.max_face_corners + 2:,} "
            "allowed (a line holds one vertex or one polygon); check that the file is not corrupted, or re-export it.")
    cost = _read_cost(kind, len(data), counts)
    budget = read_budget(len(data), limits)
    if cost > budget:
        raise _limit_error(error)(
            f"{path.name}: reading it would take about {_size(cost)} of memory ({counts.triangles:,} triangles, "
            f"{counts.vertices:,} vertices, {counts.lines:,} lines), more than the {_size(budget)} allowed for a "
            f"{_size(len(data))} {kind.upper()} file; simplify the mesh, or save it as binary STL or OBJ, which "
            "read more lightly.")


def _load_trimesh(path: Path, error: type, *, process: bool, limits: InputLimits):
    """Meshes and point geometries of a mesh file, read from its bytes with no asset resolver.

    Loading from bytes means an OBJ's mtllib or a glTF's buffer URI cannot make trimesh open any
    other file on this machine (the uploaded file's name is never a path trimesh resolves).
    """
    kind = path.suffix.lower().lstrip(".").upper()
    data = path.read_bytes()  # within max_file_bytes
    _check_geometry(path, data, error, limits)
    try:
        loaded = trimesh.load(_io.BytesIO(data), file_type=kind.lower(), resolver=None, process=process)
    except Exception as cause:  # trimesh raises many types (ValueError, KeyError, struct.error...)
        if isinstance(cause, (UnicodeError, ImportError)):  # text parser fed binary bytes
            reason = "it holds binary data that is not valid for this format"
        else:
            reason = f"{type(cause).__name__}: {cause}"
        raise error(f"{path.name}: could not be read as {kind} ({reason}); check that the file is "
                    "not corrupted, or re-export it.") from cause
    geometries = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    others = [g for g in geometries if g not in meshes and hasattr(g, "vertices")]
    return meshes, others


def _ply_vertex_normals(geometry) -> np.ndarray | None:
    raw = getattr(geometry, "metadata", {}).get("_ply_raw", {})
    data = raw.get("vertex", {}).get("data") if isinstance(raw, dict) else None
    names = getattr(getattr(data, "dtype", None), "names", None) or ()
    if all(n in names for n in ("nx", "ny", "nz")):
        return np.stack([data["nx"], data["ny"], data["nz"]], axis=1).reshape(-1, 3)
    return None


def _check_references(path: Path, meshes) -> None:
    """Refuse faces that name vertices the file does not have (a reader that does not process
    the mesh keeps them)."""
    for mesh in meshes:
        faces = np.asarray(mesh.faces)
        if faces.size and (faces.min() < 0 or faces.max() >= len(mesh.vertices)):
            raise PointCloudError(f"{path.name}: a face refers to vertex {int(faces.max()) + 1:,} (or below 1) but the "
                                  f"file has {len(mesh.vertices):,} vertices; repair or re-export the mesh.")


def _read_geometry(path: Path, mesh_samples: int, seed: int, limits: InputLimits):
    meshes, others = _load_trimesh(path, PointCloudError, process=False, limits=limits)
    if meshes:
        _check_references(path, meshes)
        triangles = np.concatenate([np.asarray(m.vertices, np.float64)[np.asarray(m.faces)]
                                    for m in meshes])
        if not np.isfinite(triangles).all():
            raise PointCloudError(f"{path.name}: the mesh has NaN or inf vertex coordinates; "
                                  "repair or re-export it.")
        try:
            points, normals, _ = sample_triangles(triangles, mesh_samples, seed, f"mesh in {path.name}")
        except MeshError as cause:
            raise PointCloudError(str(cause)) from cause
        return points, normals, True
    vertices = [np.asarray(g.vertices, dtype=np.float64).reshape(-1, 3) for g in others]
    if not vertices or sum(len(v) for v in vertices) == 0:
        raise PointCloudError(f"{path.name}: contains no points or faces; re-export it.")
    normals = [_ply_vertex_normals(g) for g in others]
    if any(n is None for n in normals) or len(others) != 1:
        normals = [None]
    return np.concatenate(vertices), normals[0], False


def load_point_cloud(path, *, max_points: int = DEFAULT_MAX_POINTS, mesh_samples: int = 100_000,
                     min_points: int = DEFAULT_MIN_POINTS, seed: int = 0,
                     limits: InputLimits = DEFAULT_INPUT_LIMITS) -> PointCloud:
    """Reads a point cloud (or samples one from a mesh) and validates it.

    Formats: .npy (an (N, 3) or (N, 6) array), .npz (the array named points, xyz or pts, else the
    first; optional 'normals'), .xyz/.txt/.pts (3 or 6 columns separated by spaces or commas; '#'
    comments and one header line are skipped), .ply/.obj/.off/.stl (a mesh with faces is sampled
    area-uniformly with its face normals; a point-only PLY or OBJ gives its vertices).

    Args:
      path: the file.
      max_points: above this, a random subset (seeded) is kept, with a ``DiffCDWarning``.
      mesh_samples: points drawn from a mesh file.
      min_points: fewest points accepted (51: the local scale uses the 50th neighbour).
      seed: seed of the mesh sampling and of the downsampling.
      limits: hard caps checked before anything is decompressed or allocated (file bytes,
        decoded bytes, declared points/elements, .npz compression ratio).

    Returns:
      A ``PointCloud`` in the file's coordinates; a 6th-column or 'normals' array becomes
      ``normals`` (columns that are not unit vectors, such as colours, are ignored with a warning).

    Raises:
      PointCloudError: missing, empty, unreadable or unsupported file; NaN/inf rows; too few
        points; a wrong shape; all points identical or collinear.
      PointCloudLimitError: (a PointCloudError and a LimitError) the file breaks ``limits``.
    """
    path = Path(path)
    _check_file(path, SUPPORTED_EXTENSIONS, PointCloudError, limits)
    _check_limits(max_points, min_points)
    extension = path.suffix.lower()
    if extension in _NUMPY_EXTENSIONS:
        array, normals, explicit = _read_numpy(path, limits)
    elif extension in _TEXT_EXTENSIONS:
        array, normals, explicit = _read_text(path, limits)
    else:
        array, normals, explicit = _read_geometry(path, mesh_samples, seed, limits)
    return _make_cloud(array, normals, path.name, str(path), max_points=max_points,
                       min_points=min_points, seed=seed, explicit_normals=explicit)


def load_mesh(path, *, limits: InputLimits = DEFAULT_INPUT_LIMITS) -> trimesh.Trimesh:
    """Reads a triangle mesh (.ply, .obj, .off, .stl, .glb); scenes are merged into one mesh.

    ``limits`` bounds the file size and the vertices/faces its header declares, before parsing.

    Raises:
      MeshError: missing, empty, unreadable or unsupported file; no faces (a point cloud);
        NaN/inf vertices; zero surface area.
      MeshLimitError: (a MeshError and a LimitError) the file breaks ``limits``.
    """
    path = Path(path)
    _check_file(path, MESH_EXTENSIONS, MeshError, limits)
    meshes, _ = _load_trimesh(path, MeshError, process=True, limits=limits)
    if not meshes:
        raise MeshError(f"{path.name}: has no faces (it is a point cloud, not a mesh); "
                        "pass a triangle mesh.")
    mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    if not np.isfinite(mesh.vertices).all():
        raise MeshError(f"{path.name}: has NaN or inf vertex coordinates; repair or re-export it.")
    if not mesh.area > 0:
        raise MeshError(f"{path.name}: has zero surface area (every face is degenerate); "
                        "check that it holds the intended geometry.")
    return mesh


# ----------------------------------------------------------------------------------------------
# Writers


def _ply_bytes(points: np.ndarray, normals: np.ndarray | None) -> bytes:
    names = ["x", "y", "z"] + ([] if normals is None else ["nx", "ny", "nz"])
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property float {n}" for n in names] + ["end_header", ""]
    data = points if normals is None else np.hstack([points, normals])
    return "\n".join(header).encode("ascii") + np.ascontiguousarray(data, dtype="<f4").tobytes()


def save_point_cloud(path, points, normals=None) -> Path:
    """Writes points (and normals) as .npy/.npz (float32), .xyz/.txt/.pts (text) or binary .ply.

    A .npy holds an (N, 3) array, or (N, 6) with normals; a .npz holds 'points' and 'normals'.

    Raises:
      PointCloudError: an unsupported extension or badly shaped arrays.
    """
    path = Path(path)
    extension = path.suffix.lower()
    if extension not in SAVE_EXTENSIONS:
        raise PointCloudError(f"{path.name}: cannot write {extension or '(no extension)'!r} files; "
                              f"use one of {', '.join(SAVE_EXTENSIONS)}.")
    points = np.asarray(getattr(points, "points", points), dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointCloudError(f"{path.name}: points must have shape (N, 3), got {points.shape}.")
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float32)
        if normals.shape != points.shape:
            raise PointCloudError(f"{path.name}: normals must have the points' shape {points.shape}, "
                                  f"got {normals.shape}.")
    data = points if normals is None else np.hstack([points, normals])
    if extension == ".npy":
        np.save(path, data)
    elif extension == ".npz":
        arrays = {"points": points} if normals is None else {"points": points, "normals": normals}
        np.savez(path, **arrays)
    elif extension == ".ply":
        path.write_bytes(_ply_bytes(points, normals))
    else:
        np.savetxt(path, data, fmt="%.9g")
    return path

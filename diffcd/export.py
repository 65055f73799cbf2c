"""The portable export of a fitted SDF: `model.safetensors` + `config.json`, no pickle anywhere.

This is what the Hub code publishes. Loading validates everything before building the network,
and bounds everything before reading it: config.json's size and nesting before it is parsed, the
network's size (parameters, width, depth, activation settings) before any tensor is read, the
safetensors header's length and entries before the tensors, so a corrupted, foreign or hostile
file fails with a CheckpointError naming the problem (a LimitError too when it is merely too big)
and never costs more memory than the limits allow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from diffcd._version import __version__
from diffcd.errors import CheckpointError, LimitError
from diffcd.jsonscan import json_depth
from diffcd.io import Normalization
from diffcd.methods import METHODS
from diffcd.networks import NetworkConfig, expected_shapes, flatten_params, grid_resolutions, unflatten_params
from diffcd.sdf import FittedSDF

FORMAT = "diffcd-sdf"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointLimitError(CheckpointError, LimitError):
    """A checkpoint exceeds a bound of NetworkLimits (too many parameters, too wide, too deep...)."""


@dataclasses.dataclass(frozen=True)
class NetworkLimits:
    """What a loaded checkpoint may cost, checked before anything is read in full or built.

    The defaults are generous (a local user loading their own fits); a server that loads files
    chosen by its visitors (the Space, a Hub pull) passes tighter ones.
    """

    max_parameters: int = 50_000_000
    """Largest parameter count of the layers (and a Fourier encoding's weights), float32: 4 bytes
    each; the paper's network has 461,054. A grid encoding's tables have their own bound,
    max_grid_parameters."""
    max_width: int = 4096
    """Widest hidden layer (memory per evaluation chunk grows with it)."""
    max_hidden_layers: int = 64
    """Deepest network (compile time grows with it)."""
    max_sine_omega: float = 1000.0
    """Largest first-layer frequency of a sine network (SIREN uses 30); mesh size grows with it."""
    max_softplus_beta: float = 1e5
    """Sharpest softplus (the paper uses 100)."""
    max_grid_levels: int = 16
    """Most levels of a grid encoding (compile time grows with them)."""
    max_grid_resolution: int = 512
    """Most grid points per axis of one grid level (its table has this cubed x features values)."""
    max_grid_features: int = 16
    """Most features per grid level."""
    max_grid_parameters: int = 40_000_000
    """Most values in all grid tables together (float32: 4 bytes each)."""
    max_fourier_bands: int = 10
    """Most Fourier bands: the highest frequency is 2^(bands-1) pi (512 pi at 10), and the mesh's
    size grows with it as with a sine network's omega."""
    max_config_bytes: int = 1 << 20
    """Largest config.json, checked before it is read."""
    max_json_depth: int = 32
    """Deepest nesting of arrays and objects in config.json, checked before it is parsed."""
    max_header_bytes: int = 1 << 20
    """Largest safetensors JSON header, checked from its 8-byte length before it is read."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"NetworkLimits.{field.name} must be a positive number, got {value!r}.")

    @property
    def max_weights_bytes(self) -> int:
        """Largest model.safetensors: the header plus max_parameters and max_grid_parameters float32
        values (checked before downloading; the file must then match what config.json describes)."""
        return 8 + self.max_header_bytes + 4 * (self.max_parameters + self.max_grid_parameters)


DEFAULT_LIMITS = NetworkLimits()


def _versions() -> dict[str, str]:
    import flax
    import jax
    import safetensors

    return {"diffcd": __version__, "jax": jax.__version__, "flax": flax.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__}


_ENCODING_FIELDS = ("encoding", "encoding_levels", "encoding_level_steps", "encoding_learning_rate_scale",
                    "grid_min_resolution", "grid_max_resolution", "grid_features")
"""The network settings of an input encoding; an export of a plain MLP leaves them out, so that
diffcd versions before encodings still read it."""


def network_settings(network: NetworkConfig) -> dict[str, Any]:
    """config.json's "network" object: every setting, the encoding's only with an encoding."""
    settings = dataclasses.asdict(network)
    if network.encoding == "none":
        settings = {k: v for k, v in settings.items() if k not in _ENCODING_FIELDS}
    return settings


def export_config(fitted: FittedSDF, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json content of an export."""
    method_config = fitted.method_config
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "method": fitted.method,
        "method_config": dataclasses.asdict(method_config) if method_config is not None else None,
        "network": network_settings(fitted.network),
        "normalization": fitted.normalization.to_dict(),
        "steps": int(fitted.steps),
        "seed": int(fitted.seed),
        "versions": _versions(),
        "metadata": metadata or {},
    }


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; exports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def export_sdf(
    fitted: FittedSDF, out_dir: str | os.PathLike, *, metadata: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write model.safetensors and config.json into out_dir (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in flatten_params(fitted.params).items()}
    weights, config = out / WEIGHTS_FILE, out / CONFIG_FILE
    _atomic_write(weights, lambda p: save_file(tensors, p, metadata={"format": FORMAT}))
    text = json.dumps(export_config(fitted, metadata), indent=2)
    _atomic_write(config, lambda p: Path(p).write_text(text + "\n"))
    return {"weights": weights, "config": config}


# ----------------------------------------------------------------------------------------------
# Bounded reading: sizes, nesting and types are checked before the expensive step


def parse_json_bounded(data: bytes, *, name: str, max_bytes: int, max_depth: int) -> Any:
    """json.loads of `data` once its size and nesting are within bounds; errors are sentences.

    Deep nesting would otherwise reach Python's recursion limit inside json.loads.
    """
    if len(data) > max_bytes:
        raise CheckpointLimitError(f"{name} is {len(data):,} bytes, more than the {max_bytes:,} allowed; "
                                   "it is not a diffcd file, or pass larger limits if you trust it.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{name} is not UTF-8 text ({exc}); re-export it.") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise CheckpointLimitError(f"{name} nests arrays or objects {depth} deep, more than the {max_depth} "
                                   "allowed; it is not a diffcd file.")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CheckpointError(f"{name} is not valid JSON ({exc}); re-export it.") from None


def read_file_bounded(path: Path, max_bytes: int, *, name: str) -> bytes:
    """The bytes of `path`, refusing before reading when the file is larger than `max_bytes`."""
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointLimitError(f"{name}: {path.name} is {size:,} bytes, more than the {max_bytes:,} "
                                   "allowed; it was not read.")
    return path.read_bytes()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_NETWORK_TYPES = {"hidden_layers": "int", "width": "int", "skip_layers": "ints", "activation": "str",
                  "softplus_beta": "number", "sine_omega": "number", "init_radius": "number",
                  "encoding": "str", "encoding_levels": "int", "encoding_level_steps": "int",
                  "encoding_learning_rate_scale": "number", "grid_min_resolution": "int",
                  "grid_max_resolution": "int", "grid_features": "int"}


def bounded_network(config: dict[str, Any], limits: NetworkLimits = DEFAULT_LIMITS, *,
                    name: str = "checkpoint") -> NetworkConfig:
    """The NetworkConfig of an export's config.json, refused when it breaks `limits`.

    Checks the types of every field, then parameters, width, depth and activation settings,
    all from the JSON alone: nothing is allocated, built or compiled.

    Raises:
      CheckpointError: a missing, unknown or wrongly typed network field.
      CheckpointLimitError (a CheckpointError and a LimitError): the network exceeds `limits`.
    """
    data = config.get("network") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        raise CheckpointError(f"{name} has an invalid config.json (no \"network\" object); re-export it.")
    unknown = sorted(set(data) - set(_NETWORK_TYPES))
    if unknown:
        raise CheckpointError(f"{name} has an invalid config.json (unknown network settings "
                              f"{unknown[:3]}); it was written by another program or a newer diffcd.")
    for key, kind in _NETWORK_TYPES.items():
        if key not in data:
            continue
        value = data[key]
        ok = {"int": _is_int(value), "number": _is_number(value), "str": isinstance(value, str),
              "ints": isinstance(value, list) and len(value) <= 1024 and all(_is_int(v) for v in value)}[kind]
        if not ok:
            wanted = {"int": "an integer", "number": "a finite number", "str": "a string",
                      "ints": "a list of integers"}[kind]
            raise CheckpointError(f"{name} has an invalid config.json (network {key} is {value!r:.60}, "
                                  f"not {wanted}); re-export it.")
    layers, width = data.get("hidden_layers", 8), data.get("width", 256)
    if layers > limits.max_hidden_layers:
        raise CheckpointLimitError(f"{name}: the network has {layers} hidden layers, more than the "
                                   f"{limits.max_hidden_layers} allowed.")
    if width > limits.max_width:
        raise CheckpointLimitError(f"{name}: the network is {width} wide, more than the {limits.max_width} "
                                   "allowed.")
    activation = data.get("activation", "softplus")
    if activation == "sine" and data.get("sine_omega", 30.0) > limits.max_sine_omega:
        raise CheckpointLimitError(f"{name}: the sine network's frequency omega = {data['sine_omega']:g} is "
                                   f"above the {limits.max_sine_omega:g} allowed (its surface would be "
                                   "too detailed to mesh).")
    if activation == "softplus" and data.get("softplus_beta", 100.0) > limits.max_softplus_beta:
        raise CheckpointLimitError(f"{name}: the softplus beta = {data['softplus_beta']:g} is above the "
                                   f"{limits.max_softplus_beta:g} allowed.")
    _check_encoding_bounds(data, limits, name)
    try:
        network = NetworkConfig(**{**data, "skip_layers": tuple(data.get("skip_layers", (4,)))})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name} has an invalid config.json ({exc}); re-export it.") from None
    tables = 0
    if network.encoding == "grid":
        tables = sum(r**3 * network.grid_features for r in grid_resolutions(network))
        if tables > limits.max_grid_parameters:
            raise CheckpointLimitError(f"{name}: the grid tables hold {tables:,} values, more than the "
                                       f"{limits.max_grid_parameters:,} allowed.")
    count = sum(math.prod(shape) for shape in expected_shapes(network).values()) - tables
    if count > limits.max_parameters:
        raise CheckpointLimitError(f"{name}: the network has {count:,} parameters"
                                   f"{' besides its grid tables' if tables else ''}, more than the "
                                   f"{limits.max_parameters:,} allowed.")
    return network


def _check_encoding_bounds(data: dict[str, Any], limits: NetworkLimits, name: str) -> None:
    """Levels, resolution and features of a grid, bands of a Fourier encoding, within `limits`
    (types already checked; before the config is built or its table sizes multiplied out)."""
    encoding = data.get("encoding", "none")
    levels = data.get("encoding_levels", NetworkConfig.encoding_levels)
    if encoding == "grid":
        bounds = (("levels", levels, limits.max_grid_levels),
                  ("points per axis", max(data.get("grid_min_resolution", NetworkConfig.grid_min_resolution),
                                          data.get("grid_max_resolution", NetworkConfig.grid_max_resolution)),
                   limits.max_grid_resolution),
                  ("features per level", data.get("grid_features", NetworkConfig.grid_features),
                   limits.max_grid_features))
        for what, value, bound in bounds:
            if value > bound:
                raise CheckpointLimitError(f"{name}: the grid encoding has {value:,} {what}, more than the "
                                           f"{bound:,} allowed.")
    elif encoding == "fourier" and levels > limits.max_fourier_bands:
        raise CheckpointLimitError(f"{name}: the Fourier encoding has {levels} bands, more than the "
                                   f"{limits.max_fourier_bands} allowed (its surface would be too detailed "
                                   "to mesh).")


def network_from_config(config: dict[str, Any]) -> NetworkConfig:
    """The NetworkConfig of a config.json (type-checked, default limits)."""
    return bounded_network(config)


def read_safetensors_header(path: Path, *, max_header_bytes: int,
                            name: str = "checkpoint") -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON), tensors unread,
    and the offset where the tensor data starts.

    Raises CheckpointError for a malformed header, CheckpointLimitError for one above the bound.
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{name}: {WEIGHTS_FILE} is truncated or corrupted (no header); "
                                  "download or export it again.")
        (length,) = struct.unpack("<Q", prefix)
        if length > max_header_bytes:
            raise CheckpointLimitError(f"{name}: {WEIGHTS_FILE} declares a {length:,}-byte header, more than "
                                       f"the {max_header_bytes:,} allowed; it was not read.")
        if 8 + length > size:
            raise CheckpointError(f"{name}: {WEIGHTS_FILE} is truncated or corrupted (its header runs past the "
                                  "end of the file); download or export it again.")
        header = parse_json_bounded(file.read(length), name=f"{name}: the {WEIGHTS_FILE} header",
                                    max_bytes=max_header_bytes, max_depth=4)
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: {WEIGHTS_FILE} has a malformed header; download or export it again.")
    return header, 8 + length


def _check_header(header: dict[str, Any], network: NetworkConfig, data_bytes: int, name: str) -> None:
    """Every tensor the header lists is the float32 tensor the network implies, inside the file."""
    expected = expected_shapes(network)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{name}: the weights do not match the network in config.json "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); the files come from different exports.")
    for key, shape in expected.items():
        entry = entries[key]
        stored = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(stored, list) and tuple(stored) == shape and entry.get("dtype") == "F32"):
            dtype = entry.get("dtype") if isinstance(entry, dict) else None
            raise CheckpointError(
                f"{name}: tensor {key} has shape {stored} and dtype {dtype}, but config.json implies "
                f"{shape} float32; the files come from different exports.")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes
                and offsets[1] - offsets[0] == 4 * math.prod(shape)):
            raise CheckpointError(f"{name}: {WEIGHTS_FILE} is truncated or corrupted (tensor {key} lies "
                                  "outside the file); download or export it again.")


def validate_export(config: dict[str, Any], tensors: dict[str, np.ndarray], *, name: str = "checkpoint",
                    limits: NetworkLimits = DEFAULT_LIMITS) -> NetworkConfig:
    """Check a loaded config and its tensors; returns the network config. Raises CheckpointError."""
    network = check_config(config, limits, name)
    expected = expected_shapes(network)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{name}: the weights do not match the network in config.json "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); the files come from different exports."
        )
    for key, shape in expected.items():
        tensor = tensors[key]
        if tuple(tensor.shape) != shape or tensor.dtype != np.float32:
            raise CheckpointError(
                f"{name}: tensor {key} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}, "
                f"but config.json implies {shape} float32; the files come from different exports."
            )
        if not np.isfinite(tensor).all():
            raise CheckpointError(f"{name}: tensor {key} contains NaN or inf values; the checkpoint is corrupted.")
    return network


def check_config(config: Any, limits: NetworkLimits = DEFAULT_LIMITS, name: str = "checkpoint") -> NetworkConfig:
    """Format, schema, network (bounded), normalisation, method, steps and seed of a parsed
    config.json; its NetworkConfig. Nothing is read or built. Raises CheckpointError."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{name} is not a diffcd checkpoint (config.json has no \"format\": \"{FORMAT}\"); "
            "pass the folder written by `python -m diffcd fit` or export_sdf."
        )
    version = config.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CheckpointError(
            f"{name} has schema version {version!r}, but this diffcd reads version "
            f"{SCHEMA_VERSION}; upgrade diffcd (pip install -U) or re-export the checkpoint."
        )
    network = bounded_network(config, limits, name=name)
    _normalization(config, name)
    method = config.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise CheckpointError(f"{name} names an unknown method {method!r:.60}; "
                              f"diffcd knows {', '.join(METHODS)}.")
    for key in ("steps", "seed"):
        value = config.get(key, 0)
        if not _is_int(value) or value < 0:
            raise CheckpointError(f"{name} has an invalid config.json ({key} is {value!r:.60}, not a "
                                  "non-negative integer); re-export it.")
    if not isinstance(config.get("metadata", {}), (dict, type(None))):
        raise CheckpointError(f"{name} has an invalid config.json (metadata is not an object); re-export it.")
    return network


def _normalization(config: dict[str, Any], name: str) -> Normalization:
    data = config.get("normalization")
    center = data.get("center") if isinstance(data, dict) else None
    scale = data.get("scale") if isinstance(data, dict) else None
    if not (isinstance(center, list) and len(center) == 3 and all(_is_number(c) for c in center)
            and _is_number(scale) and scale > 0):
        raise CheckpointError(f"{name} has an invalid config.json (normalization must hold a centre of three "
                              "numbers and a positive scale); re-export it.")
    return Normalization.from_dict(data)


def _config_from_dataclass(method: str, data: Any, name: str = "checkpoint") -> Any:
    """The method's settings; every known field must have the type of its default."""
    config_type = METHODS[method].config_type
    if not data:
        return config_type()
    if not isinstance(data, dict):
        raise CheckpointError(f"{name}: invalid method settings in config.json (not an object).")
    values = {}
    for field in dataclasses.fields(config_type):
        if field.name not in data:
            continue
        value, default = data[field.name], field.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = _is_int(value)
        elif isinstance(default, float):
            ok = _is_number(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = value is None or isinstance(value, (bool, int, float, str))
        if not ok:
            raise CheckpointError(f"{name}: invalid method settings in config.json ({method} {field.name} is "
                                  f"{value!r:.60}, not like its default {default!r}); re-export it.")
        values[field.name] = value
    try:
        return config_type(**values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: invalid method settings in config.json ({error}).") from None


def read_config(path: str | os.PathLike, limits: NetworkLimits = DEFAULT_LIMITS, *,
                name: str | None = None) -> dict[str, Any]:
    """An export's config.json, parsed only after its size and nesting are checked (a dict)."""
    path = Path(path)
    name = name or str(path.parent)
    data = read_file_bounded(path, limits.max_config_bytes, name=name)
    config = parse_json_bounded(data, name=f"{name}: config.json", max_bytes=limits.max_config_bytes,
                                max_depth=limits.max_json_depth)
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: config.json is not a JSON object; re-export it.")
    return config


def load_sdf(path: str | os.PathLike, *, limits: NetworkLimits = DEFAULT_LIMITS, name: str | None = None) -> FittedSDF:
    """Load an export (its folder or its config.json; a run folder works too).

    Every bound of `limits` is checked before the work it guards: config.json's size and nesting
    before parsing, the network's size before reading the weights, the weights file's size and
    header before reading its tensors. `name` replaces the folder in messages (e.g. a repo id).

    Raises:
      CheckpointError: not an export, unknown schema, wrong types, mismatched or corrupted weights;
        CheckpointLimitError (also a LimitError) when the checkpoint exceeds `limits`.
    """
    path = Path(path)
    folder = path.parent if path.name == CONFIG_FILE else path
    name = name or str(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{name} is not a diffcd checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}; "
            "pass a run folder or an export folder."
        )
    config = read_config(config_path, limits, name=name)
    network = check_config(config, limits, name)
    method_config = _config_from_dataclass(config["method"], config.get("method_config"), name)
    size = weights_path.stat().st_size
    expected_bytes = 4 * sum(math.prod(s) for s in expected_shapes(network).values())
    if size > 8 + limits.max_header_bytes + expected_bytes:
        raise CheckpointLimitError(f"{name}: {WEIGHTS_FILE} is {size:,} bytes, far more than the "
                                   f"{expected_bytes:,} bytes of weights config.json describes; it was not read.")
    header, data_start = read_safetensors_header(weights_path, max_header_bytes=limits.max_header_bytes,
                                                 name=name)
    _check_header(header, network, size - data_start, name)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{name}: {WEIGHTS_FILE} is truncated or corrupted ({error}); download or export it again."
        ) from None
    validate_export(config, tensors, name=name, limits=limits)
    return FittedSDF(
        network=network,
        params=unflatten_params(tensors),
        normalization=_normalization(config, name),
        method=config["method"],
        method_config=method_config,
        steps=config.get("steps", 0),
        seed=config.get("seed", 0),
    )

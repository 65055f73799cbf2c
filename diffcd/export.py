"""The portable export of a fitted SDF: `model.safetensors` + `config.json`, no pickle anywhere.

This is what the Hub code publishes. Loading validates everything before building the network:
format and schema version, the network config, every tensor's name, shape and dtype, and
finiteness, so a corrupted or foreign file fails with a CheckpointError naming the problem.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from diffcd._version import __version__
from diffcd.errors import CheckpointError
from diffcd.io import Normalization
from diffcd.methods import METHODS
from diffcd.networks import NetworkConfig, expected_shapes, flatten_params, unflatten_params
from diffcd.sdf import FittedSDF

FORMAT = "diffcd-sdf"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _versions() -> dict[str, str]:
    import flax
    import jax
    import safetensors

    return {"diffcd": __version__, "jax": jax.__version__, "flax": flax.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__}


def export_config(fitted: FittedSDF, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json content of an export."""
    method_config = fitted.method_config
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "method": fitted.method,
        "method_config": dataclasses.asdict(method_config) if method_config is not None else None,
        "network": dataclasses.asdict(fitted.network),
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


def network_from_config(config: dict[str, Any]) -> NetworkConfig:
    data = dict(config["network"])
    data["skip_layers"] = tuple(data.get("skip_layers", ()))
    return NetworkConfig(**data)


def validate_export(config: dict[str, Any], tensors: dict[str, np.ndarray], *, name: str = "checkpoint") -> NetworkConfig:
    """Check a loaded config and its tensors; returns the network config. Raises CheckpointError."""
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
    try:
        network = network_from_config(config)
        Normalization.from_dict(config["normalization"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{name} has an invalid config.json ({error}); re-export it.") from None
    if config.get("method") not in METHODS:
        raise CheckpointError(f"{name} names an unknown method {config.get('method')!r}.")
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


def _config_from_dataclass(method: str, data: dict[str, Any] | None) -> Any:
    config_type = METHODS[method].config_type
    if not data:
        return config_type()
    known = {f.name for f in dataclasses.fields(config_type)}
    return config_type(**{k: v for k, v in data.items() if k in known})


def load_sdf(path: str | os.PathLike) -> FittedSDF:
    """Load an export (its folder or its config.json; a run folder works too)."""
    path = Path(path)
    folder = path.parent if path.name == CONFIG_FILE else path
    name = str(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{name} is not a diffcd checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}; "
            "pass a run folder or an export folder."
        )
    try:
        config = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{name}: config.json is not valid JSON ({error}); re-export it.") from None
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{name}: {WEIGHTS_FILE} is truncated or corrupted ({error}); download or export it again."
        ) from None
    network = validate_export(config, tensors, name=name)
    try:
        method_config = _config_from_dataclass(config["method"], config.get("method_config"))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: invalid method settings in config.json ({error}).") from None
    return FittedSDF(
        network=network,
        params=unflatten_params(tensors),
        normalization=Normalization.from_dict(config["normalization"]),
        method=config["method"],
        method_config=method_config,
        steps=int(config.get("steps", 0)),
        seed=int(config.get("seed", 0)),
    )

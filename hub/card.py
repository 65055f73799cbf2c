"""The model card (README.md) of a published diffcd checkpoint, built with huggingface_hub's
ModelCard / ModelCardData: one builder for `hub push`, the app's Push and `SDFModel.push_to_hub`."""

from __future__ import annotations

from typing import Any

from diffcd_hub._common import (CARD_FILE, CLOUD_FILE, CONFIG_FILE, LIBRARY_NAME, MESH_FILE, method_label,
                         METRICS_FILE, WEIGHTS_FILE)

BASE_TAGS = ["sdf", "implicit-surface", "point-cloud", "surface-reconstruction", "jax", "flax", "diffcd",
             "arxiv:2407.17058"]
PAPER_URL = "https://arxiv.org/abs/2407.17058"
LICENSE = "mit"
MIXIN_TAG = "model_hub_mixin"
"""The tag huggingface_hub's ModelHubMixin adds to every model it publishes."""

CITATION = """\
@inproceedings{haerenstam2024diffcd,
    title = {DiffCD: A Symmetric Differentiable Chamfer Distance for Neural Implicit Surface Fitting},
    author = {L Härenstam-Nielsen and L Sang and A Saroha and N Araslanov and D Cremers},
    booktitle = {European Conference on Computer Vision (ECCV)},
    year = {2024},
    eprinttype = {arXiv},
    eprint = {2407.17058},
}"""

METRIC_NOTES = {
    "chamfer": "Chamfer distance to the ground-truth surface (mean of both directions)",
    "chamfer_squared": "squared Chamfer distance",
    "normal_angle_deg": "mean angle between estimated and ground-truth normals (degrees)",
    "hausdorff": "Hausdorff distance to the ground-truth surface",
    "fscore": "F-score at the threshold below",
    "fscore_threshold": "F-score distance threshold",
    "precision": "fraction of estimated surface within the threshold",
    "recall": "fraction of ground-truth surface within the threshold",
    "cloud_to_surface_mean": "mean distance from input points to the fitted surface",
    "cloud_to_surface_max": "largest distance from an input point to the fitted surface",
    "surface_to_cloud_mean": "mean distance from the fitted surface to the input points",
    "surface_to_cloud_max": "largest distance from the fitted surface to the input points",
}


def card_data(method: str):
    """The card's metadata (huggingface_hub.ModelCardData): library, license, tags with the paper."""
    from huggingface_hub import ModelCardData

    return ModelCardData(library_name=LIBRARY_NAME, license=LICENSE,
                         tags=list(dict.fromkeys([*BASE_TAGS, method, MIXIN_TAG])))


def card_metadata(method: str) -> dict[str, Any]:
    """The YAML block as a dict: what the Hub indexes (library, tags, license)."""
    return card_data(method).to_dict()


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_value(cell) for cell in row) + " |" for row in rows]
    return lines


def _network_line(network: dict[str, Any], parameters: int | None) -> str:
    activation = network.get("activation", "softplus")
    skips = network.get("skip_layers") or []
    text = (f"an MLP with {network.get('hidden_layers')} hidden layers of width {network.get('width')} "
            f"({activation} activation")
    text += f", skip connection into layer {', '.join(str(s) for s in skips)}" if skips else ""
    text += f"; {parameters:,} parameters)" if parameters else ")"
    return text + _encoding_phrase(network)


def _encoding_phrase(network: dict[str, Any]) -> str:
    """How the network reads the point: nothing for a plain MLP, else its input encoding."""
    encoding, levels = network.get("encoding", "none"), network.get("encoding_levels")
    if encoding == "fourier" and isinstance(levels, int):
        return (f", reading the point through {levels} octaves of Fourier features (sin and cos at π to "
                f"{2 ** (levels - 1)}π)")
    if encoding == "grid" and isinstance(levels, int):
        low, high = network.get("grid_min_resolution"), network.get("grid_max_resolution")
        return (f", reading the point through {levels} levels of dense feature grids ({low}³ to {high}³ "
                f"points, {network.get('grid_features')} features each, trilinear)")
    return ""


def build_model_card(repo_id: str | None, config: dict[str, Any], *, metrics: dict[str, dict] | None = None,
                     summary: dict[str, Any] | None = None, files: list[str] | None = None,
                     parameters: int | None = None, cloud_points: int | None = None):
    """The huggingface_hub.ModelCard of a checkpoint: metadata, description, settings, metrics,
    usage, citation. `repo_id` None (a local save_pretrained) titles it by method."""
    from huggingface_hub import ModelCard

    method = str(config.get("method", "diffcd"))
    data = card_data(method)
    body = _card_body(repo_id, config, metrics=metrics, summary=summary, files=files,
                      parameters=parameters, cloud_points=cloud_points)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def build_card(repo_id: str | None, config: dict[str, Any], **kwargs) -> str:
    """README.md text of `build_model_card`."""
    return str(build_model_card(repo_id, config, **kwargs))


def _card_body(repo_id: str | None, config: dict[str, Any], *, metrics, summary, files, parameters,
               cloud_points) -> str:
    method = str(config.get("method", "diffcd"))
    label = method_label(method)
    summary = summary or {}
    metadata = {k: v for k, v in (config.get("metadata") or {}).items() if k != "summary"}
    title = repo_id.split("/")[-1] if repo_id else f"{label} signed distance function"
    shown_id = repo_id or "namespace/name"
    lines = [f"# {title}", ""]
    lines += [
        f"A neural implicit surface: a signed distance function (SDF) fitted to a 3D point cloud with "
        f"**{label}**, using the `diffcd` library (JAX/Flax). The network maps a point to its signed "
        f"distance from the surface (negative inside); the surface is its zero level set, extracted as a "
        f"mesh with marching cubes. The network is {_network_line(config.get('network', {}), parameters)}.",
        "",
        "DiffCD is the method of *DiffCD: A Symmetric Differentiable Chamfer Distance for Neural "
        "Implicit Surface Fitting* (ECCV 2024, [arXiv:2407.17058](https://arxiv.org/abs/2407.17058)); "
        "IGR, Neural-Pull and SIREN are the baselines it is compared with.",
        "",
        "## Fit",
        "",
    ]
    norm = config.get("normalization") or {}
    rows: list[tuple] = [("method", label), ("steps", config.get("steps")), ("seed", config.get("seed"))]
    for key, value in metadata.items():
        if isinstance(value, (str, int, float, bool)):
            rows.append((key.replace("_", " "), value))
    if cloud_points:
        rows.append(("points in cloud.npy", cloud_points))
    for key in ("fit_seconds", "steps_per_second", "nan_steps_skipped", "mesh_resolution"):
        if summary.get(key) is not None:
            rows.append((key.replace("_", " "), summary[key]))
    if norm:
        rows.append(("normalization centre", norm.get("center")))
        rows.append(("normalization scale", norm.get("scale")))
    for key, value in (config.get("method_config") or {}).items():
        rows.append((f"{method} {key.replace('_', ' ')}", value))
    lines += _table(("setting", "value"), rows) + [""]

    if metrics:
        lines += ["## Metrics", "", "Distances are in the input's units. Reproduce them with "
                  "`diffcd.metrics` (see metrics.json).", ""]
        metric_rows = []
        for group, values in metrics.items():
            for key, value in values.items():
                metric_rows.append((group, key, value, METRIC_NOTES.get(key, "")))
        lines += _table(("set", "metric", "value", "meaning"), metric_rows) + [""]

    lines += [
        "## Use it", "",
        "Load it with the `hub` package of the diffcd repository, the Hub's usual `from_pretrained` "
        "(only the safetensors weights and JSON files are loaded; nothing is unpickled):", "",
        "```python",
        "from diffcd_hub import SDFModel",
        f'sdf = SDFModel.from_pretrained("{shown_id}")',
        "mesh = sdf.extract_mesh(256)",
        "```", "",
        "`sdf(points)` gives signed distances for an (N, 3) array in the input's coordinates. "
        "From the command line:", "",
        "```bash",
        f"python -m diffcd_hub pull {shown_id} --resolution 256 --out {shown_id.split('/')[-1]}",
        "```", "",
        "## Files", "",
    ]
    described = {
        WEIGHTS_FILE: "network weights (safetensors)",
        CONFIG_FILE: "network, method, settings and normalisation (diffcd export format)",
        MESH_FILE: "the extracted mesh, in the input's coordinates",
        METRICS_FILE: "evaluation metrics",
        CLOUD_FILE: "a subsample of the input point cloud, float32 (N, 3)",
        CARD_FILE: "this card",
    }
    lines += [f"- `{name}`: {described.get(name, '')}" for name in (files or described) if name in described]
    lines += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)

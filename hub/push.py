"""Publish a fitted SDF (a run folder or an export folder) to the Hugging Face Hub in one commit."""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffcd_hub._common import (CARD_FILE, CLOUD_FILE, CONFIG_FILE, MESH_FILE, method_label, METRICS_FILE,
                         WEIGHTS_FILE, repo_name, resolve_endpoint, resolve_token)
from diffcd_hub.card import build_card
from diffcd_hub.errors import (AuthError, HubError, NotACheckpointError, VisibilityError, request_scope, scrub,
                        translate)

__all__ = ["PushResult", "push_checkpoint", "collect_metrics", "open_repo"]

logger = logging.getLogger(__name__)
MAX_CLOUD_POINTS = 20_000
CLOUD_CANDIDATES = ("cloud.npy", "points.npy", "cloud.ply", "input.npy", "input.ply", "cloud.xyz")


@dataclass(frozen=True)
class PushResult:
    """Where a push landed: the commit (its URL and 40-hex sha), the repo URL, the branch and files."""

    commit_url: str
    commit_sha: str
    repo_url: str
    repo_id: str
    revision: str
    files: tuple[str, ...]


def _source_folder(source: str | os.PathLike) -> Path:
    from diffcd.runs import network_absent_reason

    path = Path(source)
    folder = path.parent if path.name == CONFIG_FILE else path
    if not folder.is_dir():
        raise HubError(f"{source} does not exist: pass a run folder or an export folder.")
    if reason := network_absent_reason(folder):  # a Screened Poisson run: a mesh, no network
        raise NotACheckpointError(reason)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise NotACheckpointError(
            f"{folder} is not a diffcd run or export folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    return folder


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HubError(f"{path} is not valid JSON ({exc}); fix or delete it before pushing.") from None
    return data if isinstance(data, dict) else None


def collect_metrics(folder: Path, config: dict[str, Any]) -> dict[str, dict]:
    """eval.json and cloud_distances.json of a run folder (or their copies in the export metadata)."""
    recorded = (config.get("metadata") or {}).get("summary") or {}
    metrics = {}
    for key in ("eval", "cloud_distances"):
        values = _read_json(folder / f"{key}.json") or recorded.get(key)
        if isinstance(values, dict) and values:
            metrics[key] = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    return metrics


def _cloud_bytes(folder: Path, include_cloud: bool | str | os.PathLike) -> tuple[bytes, int]:
    from diffcd.errors import DiffCDError
    from diffcd.io import load_point_cloud
    from diffcd.runs import subsample

    if include_cloud is True:
        found = [folder / name for name in CLOUD_CANDIDATES if (folder / name).is_file()]
        if not found:
            raise HubError(f"{folder} holds no point cloud ({', '.join(CLOUD_CANDIDATES)}): pass the cloud's "
                           "path to include_cloud (--include-cloud PATH), or leave it out.")
        path = found[0]
    else:
        path = Path(include_cloud)
    try:
        points = np.asarray(load_point_cloud(path, min_points=1).points, np.float32)
    except DiffCDError as exc:
        raise HubError(f"Cannot include the point cloud {path}: {exc}") from None
    points = subsample(points, MAX_CLOUD_POINTS)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(points, np.float32), allow_pickle=False)
    return buffer.getvalue(), len(points)


def _mesh_bytes(folder: Path, fitted, resolution: int) -> bytes | None:
    from diffcd.errors import NoSurfaceError

    if (folder / MESH_FILE).is_file():
        return (folder / MESH_FILE).read_bytes()
    try:
        mesh = fitted.extract_mesh(resolution)
    except NoSurfaceError as exc:
        logger.warning("Publishing without %s: %s", MESH_FILE, exc)
        return None
    return mesh.export(file_type="glb")


def open_repo(repo_id: str, *, token: str | None, private: bool, endpoint: str,
              branch: str | None = None):
    """(HfApi, repo URL) for pushing to `repo_id`: the repo created if missing, `branch` from main.

    Asking for a private repo when a public one of that name exists is refused before anything is
    committed: the user asked for their model not to be public, and pushing into the public repo
    would publish it (changing an existing repo's visibility is left to its owner, on the Hub).

    Raises:
      AuthError: no token. VisibilityError: private asked, the repo is public. HubError: the rest.
    """
    from huggingface_hub import HfApi

    if not token:
        raise AuthError(f"Pushing to {repo_id} needs a Hugging Face access token with write access: "
                        "set HF_TOKEN or pass --token (or log in with `hf auth login`).", repo_id=repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if private and not api.repo_info(repo_id).private:
            raise VisibilityError(
                f"{repo_id} already exists and is public, so it cannot receive a private push; nothing was "
                "pushed. Push to a new repo name, make the repo private in its settings on the Hub, or "
                "push without --private.", repo_id=repo_id)
        if branch and branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
    except Exception as exc:
        raise translate(exc, repo_id, action="pushing to", revision=branch, token_given=True,
                        endpoint=endpoint) from None
    return api, str(url)


def prepare_files(source: str | os.PathLike, repo_id: str, *, include_cloud: bool | str | os.PathLike = False,
                  mesh_resolution: int = 256) -> dict[str, bytes | Path]:
    """Every file of the commit, by path in the repo: the export as is, card, mesh, metrics, cloud."""
    from diffcd.errors import CheckpointError
    from diffcd.export import load_sdf
    from diffcd.networks import parameter_count

    folder = _source_folder(source)
    try:
        fitted = load_sdf(folder)
    except CheckpointError as exc:
        raise NotACheckpointError(f"Cannot push {folder}: {exc}") from None
    config = _read_json(folder / CONFIG_FILE) or {}
    files: dict[str, bytes | Path] = {CONFIG_FILE: folder / CONFIG_FILE, WEIGHTS_FILE: folder / WEIGHTS_FILE}
    mesh = _mesh_bytes(folder, fitted, mesh_resolution)
    if mesh is not None:
        files[MESH_FILE] = mesh
    metrics = collect_metrics(folder, config)
    if metrics:
        files[METRICS_FILE] = (json.dumps(metrics, indent=2) + "\n").encode()
    cloud_points = None
    if include_cloud:
        files[CLOUD_FILE], cloud_points = _cloud_bytes(folder, include_cloud)
    card = build_card(repo_id, config, metrics=metrics, summary=_read_json(folder / "summary.json"),
                      files=[CARD_FILE, *files], parameters=parameter_count(fitted.params),
                      cloud_points=cloud_points)
    files[CARD_FILE] = scrub(card).encode()
    return files


@request_scope
def push_checkpoint(
    source: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    include_cloud: bool | str | os.PathLike = False,
    endpoint: str | None = None,
    mesh_resolution: int = 256,
) -> PushResult:
    """Publish a run folder or export folder as one commit to `repo_id` (created if missing).

    The commit holds model.safetensors and config.json exactly as exported, a README.md model card,
    mesh.glb (the run's, or extracted at `mesh_resolution` for a bare export), metrics.json when
    the run has metrics, and with `include_cloud` a subsample (at most 20k points) of the input
    cloud as cloud.npy (`True` looks for a cloud file in the folder; a path names one). Pushing
    again makes a new commit on the same branch; unchanged files are not uploaded again.

    Args:
      source: a run folder, an export folder, or the config.json inside one.
      repo_id: "namespace/name".
      token: an access token with write access; default HF_TOKEN, then the saved login.
      private: create the repo private; an existing public repo is refused (VisibilityError),
        nothing is pushed.
      revision: the branch to commit to, created from main if missing; default main.
      commit_message: default "Upload <method> SDF fitted with diffcd".
      endpoint: the Hub URL; default HF_ENDPOINT, then https://huggingface.co.

    Raises:
      HubError: naming the repo and the problem (no token, refused token, not a checkpoint,
        a server failure — in which case nothing was committed).
    """
    from huggingface_hub import CommitOperationAdd

    repo_name(repo_id)
    token = resolve_token(token)
    if not token:
        raise AuthError(f"Pushing to {repo_id} needs a Hugging Face access token with write access: "
                        "set HF_TOKEN or pass --token (or log in with `hf auth login`).", repo_id=repo_id)
    endpoint = resolve_endpoint(endpoint)
    files = prepare_files(source, repo_id, include_cloud=include_cloud, mesh_resolution=mesh_resolution)
    method = json.loads(Path(files[CONFIG_FILE]).read_text()).get("method", "diffcd")
    message = commit_message or f"Upload {method_label(method)} SDF fitted with diffcd"
    branch = revision or "main"
    logger.info("Pushing %s to %s (branch %s) on %s", source, repo_id, branch, endpoint)
    api, repo_url = open_repo(repo_id, token=token, private=private, endpoint=endpoint, branch=branch)
    try:
        operations = [CommitOperationAdd(path, data if isinstance(data, bytes) else str(data))
                      for path, data in files.items()]
        info = api.create_commit(repo_id, operations, commit_message=message, revision=branch)
    except Exception as exc:  # every failure becomes one clear HubError
        raise translate(exc, repo_id, action="pushing to", revision=branch, token_given=True,
                        endpoint=endpoint) from None
    return PushResult(commit_url=info.commit_url, commit_sha=info.oid, repo_url=str(repo_url),
                      repo_id=repo_id, revision=branch, files=tuple(sorted(files)))

"""Download a published diffcd checkpoint, verify it and load it (safetensors + JSON only)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub._common import (CARD_FILE, CONFIG_FILE, MESH_FILE, METRICS_FILE, PULLED_FILES, WEIGHTS_FILE,
                         repo_name, resolve_endpoint, resolve_token)
from hub.errors import HubError, NotACheckpointError, is_unreachable, translate

__all__ = ["PullResult", "pull_checkpoint", "load_sdf", "download_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullResult:
    """A pulled checkpoint: the loaded SDF, the commit it came from, and where its files are.

    `folder` is the read-only snapshot in the huggingface_hub cache; `out_dir` (when asked for)
    holds copies of the files and the mesh extracted at the requested resolution (`mesh_path`).
    """

    repo_id: str
    revision: str
    commit_sha: str
    folder: Path
    sdf: Any  # diffcd.FittedSDF
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    mesh_path: Path | None = None


def download_checkpoint(repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
                        endpoint: str | None = None) -> Path:
    """The checkpoint's snapshot folder in the cache, downloading only what is missing.

    Only config.json, model.safetensors, README.md, metrics.json and mesh.glb are fetched. A second
    call for the same commit downloads nothing, and works offline (HF_HUB_OFFLINE=1).
    """
    from huggingface_hub import snapshot_download

    repo_name(repo_id)
    token = resolve_token(token)
    endpoint = resolve_endpoint(endpoint)
    _check_access(repo_id, revision, token, endpoint)
    try:
        folder = snapshot_download(repo_id, revision=revision, token=token or False, endpoint=endpoint,
                                   allow_patterns=list(PULLED_FILES))
    except Exception as exc:
        raise translate(exc, repo_id, action="downloading", revision=revision, token_given=bool(token),
                        endpoint=endpoint) from None
    return Path(folder)


def _check_access(repo_id: str, revision: str | None, token, endpoint: str) -> None:
    """Ask the Hub whether this token may read the repo before the cache is consulted.

    snapshot_download serves a cached copy when the Hub refuses a request; on a shared server
    (a Space) that copy may have been fetched with someone else's token. A refusal is final;
    only an unreachable Hub (or offline mode) lets the cache answer.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return
    try:
        HfApi(endpoint=endpoint).repo_info(repo_id, revision=revision, token=token or False)
    except HfHubHTTPError as exc:  # before OSError: huggingface_hub's HTTP errors are OSErrors too
        status = exc.response.status_code if exc.response is not None else None
        if status is None or status >= 500:
            return
        raise translate(exc, repo_id, action="downloading", revision=revision, token_given=bool(token),
                        endpoint=endpoint) from None
    except Exception as exc:
        if not is_unreachable(exc):
            raise translate(exc, repo_id, action="downloading", revision=revision,
                            token_given=bool(token), endpoint=endpoint) from None


def _load(folder: Path, label: str):
    from diffcd.errors import CheckpointError
    from diffcd.export import load_sdf as load_export

    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise NotACheckpointError(f"{label} is not a diffcd checkpoint: it has no {' or '.join(missing)}.")
    try:
        return load_export(folder)
    except CheckpointError as exc:
        # the library names the local cache folder; name the repo and commit instead
        raise NotACheckpointError(str(exc).replace(str(folder), label)) from None


def _read_metrics(folder: Path) -> dict[str, Any]:
    path = folder / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        logger.warning("Ignoring an unreadable %s", METRICS_FILE)
        return {}
    return data if isinstance(data, dict) else {}


def pull_checkpoint(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    out_dir: str | os.PathLike | None = None,
    resolution: int | None = 256,
    endpoint: str | None = None,
) -> PullResult:
    """Download, verify and load a checkpoint; with `out_dir`, also copy its files and write a mesh.

    Args:
      repo_id: "namespace/name".
      revision: a branch, tag or commit sha; default main.
      token: for private repos; default HF_TOKEN, then the saved login; False: anonymous.
      out_dir: a folder to receive config.json, model.safetensors, README.md, metrics.json and
        mesh.glb; nothing is written outside the cache when None.
      resolution: marching-cubes resolution of the mesh written to out_dir; None copies the
        published mesh.glb instead of extracting one.
      endpoint: the Hub URL; default HF_ENDPOINT, then https://huggingface.co.

    Raises:
      HubError: unknown repo or revision, private repo without (or with a wrong) token, files that
        are not a diffcd checkpoint (foreign, unknown schema, shape mismatch, truncated weights).
    """
    folder = download_checkpoint(repo_id, revision=revision, token=token, endpoint=endpoint)
    commit_sha = folder.name
    label = f"{repo_id}@{commit_sha[:12]}"
    sdf = _load(folder, label)
    config = json.loads((folder / CONFIG_FILE).read_text())
    metrics = _read_metrics(folder)
    out, mesh_path = None, None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, out / name)
        mesh_path = out / MESH_FILE
        if resolution:
            _write_mesh(sdf, resolution, mesh_path, label)
        elif (folder / MESH_FILE).is_file():
            shutil.copyfile(folder / MESH_FILE, mesh_path)
        else:
            raise HubError(f"{label} has no published {MESH_FILE}: pass a resolution to extract one.",
                           repo_id=repo_id)
    return PullResult(repo_id=repo_id, revision=revision or "main", commit_sha=commit_sha, folder=folder,
                      sdf=sdf, config=config, metrics=metrics, out_dir=out, mesh_path=mesh_path)


def _write_mesh(sdf, resolution: int, path: Path, label: str) -> None:
    from diffcd.errors import NoSurfaceError

    try:
        mesh = sdf.extract_mesh(resolution)
    except NoSurfaceError as exc:
        raise HubError(f"{label}: {exc}") from None
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(mesh.export(file_type="glb"))
    os.replace(tmp, path)


def load_sdf(repo_id: str, revision: str | None = None, token: str | bool | None = None, *,
             endpoint: str | None = None):
    """The FittedSDF published at `repo_id` (a branch, tag or commit sha as `revision`).

        from hub import load_sdf
        sdf = load_sdf("user/bunny-diffcd")
        mesh = sdf.extract_mesh(256)
    """
    folder = download_checkpoint(repo_id, revision=revision, token=token, endpoint=endpoint)
    return _load(folder, f"{repo_id}@{folder.name[:12]}")

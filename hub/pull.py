"""Download a published diffcd checkpoint, verify it and load it (safetensors + JSON only).

A pull is bounded before it downloads (``PullLimits``): the Hub's listing gives every file's size,
so an oversize file is refused before a byte of it is fetched, and only the files the pull loads
are fetched (config.json, model.safetensors, README.md, metrics.json; mesh.glb only when the
published mesh is asked for). The network's size is checked from config.json before the weights
are read. When the Hub cannot be reached (or fails with a 5xx), a cached copy is served only for a
repo recorded as public by an earlier pull: a private repo is never served from a shared cache to
a request whose token the Hub has not accepted for it in this request.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcd_hub._common import (CARD_FILE, CONFIG_FILE, MESH_FILE, METRICS_FILE, WEIGHTS_FILE, repo_name,
                         resolve_endpoint, resolve_token)
from diffcd_hub.cache import cached_access, record_access
from diffcd_hub.errors import (HubError, LimitExceededError, NotACheckpointError, is_unreachable, request_scope,
                        translate)
from diffcd_hub.limits import DEFAULT_PULL_LIMITS, PullLimits

__all__ = ["PullResult", "pull_checkpoint", "download_checkpoint", "load_folder"]

logger = logging.getLogger(__name__)
LOADED_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE)
"""What every pull fetches (the two JSON files and the card are small and bounded)."""


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


@request_scope
def download_checkpoint(repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
                        endpoint: str | None = None, limits: PullLimits = DEFAULT_PULL_LIMITS,
                        with_mesh: bool = False, cache_dir: str | os.PathLike | None = None,
                        force_download: bool = False, local_files_only: bool = False) -> Path:
    """The checkpoint's snapshot folder in the cache, downloading only what is missing.

    Only config.json, model.safetensors, README.md and metrics.json are fetched (and mesh.glb
    with `with_mesh`), each refused before downloading when the Hub lists it above its limit, and
    all together above ``limits.max_pull_bytes``. A second call for the same commit downloads
    nothing. ``local_files_only`` (or HF_HUB_OFFLINE=1) reads the cache alone: that is the caller
    trusting its own cache, which a server must never do for a visitor's request.
    """
    from huggingface_hub import constants

    repo_name(repo_id)
    token = resolve_token(token)
    endpoint = resolve_endpoint(endpoint)
    names = LOADED_FILES + ((MESH_FILE,) if with_mesh else ())
    where = dict(revision=revision, token_given=bool(token), endpoint=endpoint)
    if local_files_only or constants.HF_HUB_OFFLINE:
        return _from_cache(repo_id, revision, names, limits, cache_dir, endpoint)
    try:
        info = _repo_info(repo_id, revision, token, endpoint)
    except _HubDown as down:
        if cached_access(repo_id, cache_dir=cache_dir) != "public":
            raise HubError(
                f"The Hub{_on(endpoint)} cannot be reached or is failing ({down}) while downloading {repo_id}, "
                "and this repo is not known to be public, so a cached copy is not served (only the Hub can "
                "check a token against a private repo): try again later.", repo_id=repo_id) from None
        logger.warning("The Hub is unreachable; serving the cached copy of public repo %s", repo_id)
        return _from_cache(repo_id, revision, names, limits, cache_dir, endpoint)
    record_access(repo_id, private=bool(info.private), cache_dir=cache_dir)
    sizes = {s.rfilename: s.size for s in (info.siblings or [])}
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if name not in sizes]
    if missing:
        raise NotACheckpointError(f"{repo_id} is not a diffcd checkpoint: it has no {' or '.join(missing)}.",
                                  repo_id=repo_id)
    wanted = [name for name in names if name in sizes]  # config.json first
    _check_sizes(repo_id, {name: sizes[name] for name in wanted}, limits)
    from huggingface_hub import hf_hub_download

    folders = set()
    for name in wanted:
        if name == WEIGHTS_FILE:  # the network is bounded from config.json before its weights are fetched
            _check_network(folders, repo_id, info.sha, sizes[WEIGHTS_FILE], limits)
        try:  # by the asked revision, so that the cache records the branch or tag for offline use
            path = hf_hub_download(repo_id, name, revision=revision, token=token or False, endpoint=endpoint,
                                   cache_dir=cache_dir, force_download=force_download)
        except Exception as exc:
            raise translate(exc, repo_id, action="downloading", **where) from None
        folders.add(Path(path).parent)
    folder = folders.pop()
    if folders or folder.name != info.sha:
        raise HubError(f"{repo_id} changed while it was being downloaded (a new commit on "
                       f"{revision or 'main'}); pull it again.", repo_id=repo_id)
    _check_sizes(repo_id, {name: (folder / name).stat().st_size for name in wanted}, limits)
    return folder


class _HubDown(Exception):
    """The Hub could not be reached or answered with a server error."""


def _on(endpoint: str | None) -> str:
    return f" on {endpoint}" if endpoint else ""


def _repo_info(repo_id: str, revision: str | None, token, endpoint: str):
    """The repo's info with file sizes, asked with this request's token: a refusal is final."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, token=token or False,
                                                   files_metadata=True)
    except HfHubHTTPError as exc:  # before OSError: huggingface_hub's HTTP errors are OSErrors too
        status = exc.response.status_code if exc.response is not None else None
        if status is None or status >= 500:
            raise _HubDown(f"HTTP {status}") from None
        raise translate(exc, repo_id, action="downloading", revision=revision, token_given=bool(token),
                        endpoint=endpoint) from None
    except Exception as exc:
        if is_unreachable(exc):
            raise _HubDown(type(exc).__name__) from None
        raise translate(exc, repo_id, action="downloading", revision=revision, token_given=bool(token),
                        endpoint=endpoint) from None


def _check_network(folders: set[Path], repo_id: str, sha: str, weights_size: int | None,
                   limits: PullLimits) -> None:
    """Refuse a network beyond limits, or weights far larger than it, from the downloaded config.json."""
    import math

    from diffcd.errors import CheckpointError, LimitError
    from diffcd.export import check_config, read_config
    from diffcd.networks import expected_shapes

    label = f"{repo_id}@{sha[:12]}"
    (folder,) = folders
    try:
        network = check_config(read_config(folder / CONFIG_FILE, limits.network, name=label), limits.network,
                               name=label)
    except CheckpointError as exc:
        cls = LimitExceededError if isinstance(exc, LimitError) else NotACheckpointError
        raise cls(str(exc), repo_id=repo_id) from None
    expected = 4 * sum(math.prod(shape) for shape in expected_shapes(network).values())
    if weights_size is not None and weights_size > 8 + limits.network.max_header_bytes + expected:
        raise LimitExceededError(f"{label}: {WEIGHTS_FILE} is {weights_size:,} bytes, far more than the "
                                 f"{expected:,} bytes of weights its config.json describes; it was not "
                                 "downloaded.", repo_id=repo_id)


def _check_sizes(repo_id: str, sizes: dict[str, int | None], limits: PullLimits) -> None:
    for name, size in sizes.items():
        if size is not None and size > limits.file_limit(name):
            raise LimitExceededError(f"{repo_id}: {name} is {size:,} bytes, more than the "
                                     f"{limits.file_limit(name):,} a pull accepts; it was not downloaded.",
                                     repo_id=repo_id)
    total = sum(size or 0 for size in sizes.values())
    if total > limits.max_pull_bytes:
        raise LimitExceededError(f"{repo_id}: its files total {total:,} bytes, more than the "
                                 f"{limits.max_pull_bytes:,} one pull accepts; nothing was downloaded.",
                                 repo_id=repo_id)


def _from_cache(repo_id: str, revision: str | None, names: tuple[str, ...], limits: PullLimits,
                cache_dir, endpoint: str) -> Path:
    """The cached snapshot holding `names` (config and weights required), without the network."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    folder = None
    for name in names:
        try:
            folder = Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir,
                                          local_files_only=True)).parent
        except LocalEntryNotFoundError as exc:
            if name in (CONFIG_FILE, WEIGHTS_FILE):
                raise translate(exc, repo_id, action="downloading", revision=revision, endpoint=endpoint) from None
        except Exception as exc:
            raise translate(exc, repo_id, action="downloading", revision=revision, endpoint=endpoint) from None
    present = {name: (folder / name).stat().st_size for name in names if (folder / name).is_file()}
    _check_sizes(repo_id, present, limits)
    return folder


def load_folder(folder: Path, label: str, limits: PullLimits = DEFAULT_PULL_LIMITS):
    """The FittedSDF in a downloaded folder, every message naming `label` (repo@commit), not the cache."""
    from diffcd.errors import CheckpointError, LimitError
    from diffcd.export import load_sdf as load_export

    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise NotACheckpointError(f"{label} is not a diffcd checkpoint: it has no {' or '.join(missing)}.")
    try:
        return load_export(folder, limits=limits.network, name=label)
    except CheckpointError as exc:
        cls = LimitExceededError if isinstance(exc, LimitError) else NotACheckpointError
        raise cls(str(exc).replace(str(folder), label)) from None
    except OSError:  # the cache was pruned (or the disk failed) while loading
        raise HubError(f"{label}: the downloaded files disappeared from the cache while loading; pull it "
                       "again.") from None


def _read_metrics(folder: Path, limits: PullLimits) -> dict[str, Any]:
    from diffcd.errors import CheckpointError
    from diffcd.export import parse_json_bounded

    path = folder / METRICS_FILE
    if not path.is_file() or path.stat().st_size > limits.max_metrics_bytes:
        return {}
    try:
        data = parse_json_bounded(path.read_bytes(), name=METRICS_FILE, max_bytes=limits.max_metrics_bytes,
                                  max_depth=limits.network.max_json_depth)
    except CheckpointError:
        logger.warning("Ignoring an unreadable %s", METRICS_FILE)
        return {}
    return data if isinstance(data, dict) else {}


@request_scope
def pull_checkpoint(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    out_dir: str | os.PathLike | None = None,
    resolution: int | None = 256,
    endpoint: str | None = None,
    limits: PullLimits = DEFAULT_PULL_LIMITS,
) -> PullResult:
    """Download, verify and load a checkpoint; with `out_dir`, also copy its files and write a mesh.

    Args:
      repo_id: "namespace/name".
      revision: a branch, tag or commit sha; default main.
      token: for private repos; default HF_TOKEN, then the saved login; False: anonymous.
      out_dir: a folder to receive config.json, model.safetensors, README.md, metrics.json and
        mesh.glb; nothing is written outside the cache when None.
      resolution: marching-cubes resolution of the mesh written to out_dir; None copies the
        published mesh.glb instead of extracting one (only then is mesh.glb downloaded).
      endpoint: the Hub URL; default HF_ENDPOINT, then https://huggingface.co.
      limits: bytes per file and per pull, and the largest network accepted.

    Raises:
      HubError: unknown repo or revision, private repo without (or with a wrong) token, files that
        are not a diffcd checkpoint (foreign, unknown schema, shape mismatch, truncated weights);
        LimitExceededError (also a LimitError) for a file or network beyond `limits`.
    """
    with_mesh = out_dir is not None and not resolution
    folder = download_checkpoint(repo_id, revision=revision, token=token, endpoint=endpoint, limits=limits,
                                 with_mesh=with_mesh)
    commit_sha = folder.name
    label = f"{repo_id}@{commit_sha[:12]}"
    sdf = load_folder(folder, label, limits)
    from diffcd.export import read_config

    config = read_config(folder / CONFIG_FILE, limits.network, name=label)
    metrics = _read_metrics(folder, limits)
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


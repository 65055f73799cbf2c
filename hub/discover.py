"""Find published diffcd checkpoints on the Hub."""

from __future__ import annotations

import logging
from typing import Any

from diffcd_hub._common import CONFIG_FILE, LIBRARY_NAME, METRICS_FILE, resolve_endpoint, resolve_token
from diffcd_hub.errors import HubError, request_scope, translate
from diffcd_hub.limits import DEFAULT_LIST_LIMITS, ListLimits

__all__ = ["list_checkpoints"]

logger = logging.getLogger(__name__)


def _read_remote_json(repo_id: str, filename: str, sha: str, *, size: int | None, token, endpoint,
                      limits: ListLimits) -> dict[str, Any] | None:
    """A small JSON file of a repo: None when absent, too large (refused before downloading) or invalid."""
    from huggingface_hub import hf_hub_download

    from diffcd.errors import CheckpointError
    from diffcd.export import parse_json_bounded

    if size is None:
        return None
    if size > limits.max_json_bytes:
        logger.warning("%s in %s is %d bytes, more than the %d a listing reads; ignoring it", filename, repo_id,
                       size, limits.max_json_bytes)
        return None
    path = hf_hub_download(repo_id, filename, revision=sha, token=token, endpoint=endpoint)
    try:
        with open(path, "rb") as file:
            data = parse_json_bounded(file.read(limits.max_json_bytes + 1), name=f"{filename} in {repo_id}",
                                      max_bytes=limits.max_json_bytes, max_depth=limits.max_json_depth)
    except CheckpointError as exc:
        logger.warning("Ignoring it: %s", exc)
        return None
    return data if isinstance(data, dict) else None


def _sizes(api, repo_id: str, sha: str) -> dict[str, int]:
    """Sizes of config.json and metrics.json at `sha`, from the Hub's listing (nothing downloaded)."""
    infos = api.get_paths_info(repo_id, [CONFIG_FILE, METRICS_FILE], revision=sha)
    return {info.path: int(info.size) for info in infos if getattr(info, "size", None) is not None}


def _method_from_tags(tags: list[str]) -> str | None:
    from diffcd.methods import METHODS

    return next((t for t in tags if t in METHODS and t != LIBRARY_NAME), None) or \
        (LIBRARY_NAME if LIBRARY_NAME in tags else None)


@request_scope
def list_checkpoints(*, author: str | None = None, token: str | bool | None = None, limit: int = 50,
                     search: str | None = None, endpoint: str | None = None,
                     limits: ListLimits = DEFAULT_LIST_LIMITS) -> list[dict[str, Any]]:
    """Published diffcd checkpoints, most recently changed first.

    Each item: repo_id, method, metrics (metrics.json: {"eval": {...}, "cloud_distances": {...}},
    empty when none was published), last_modified (ISO 8601), sha, private, url.
    Private repos appear only to a token that can read them. At most ``limits.max_repos`` repos
    are read (`limit` above it is lowered), and of each only config.json and metrics.json, each
    refused before downloading above ``limits.max_json_bytes``.
    """
    from huggingface_hub import HfApi

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise HubError(f"The listing limit must be a positive whole number, got {limit!r}.")
    limit = min(limit, limits.max_repos)
    token = resolve_token(token)
    endpoint = resolve_endpoint(endpoint)
    api = HfApi(endpoint=endpoint, token=token or False)
    where = f"author {author}" if author else "the Hub"
    try:
        models = list(api.list_models(filter=LIBRARY_NAME, author=author, search=search, limit=limit,
                                      sort="last_modified", cardData=True, full=True))
    except Exception as exc:
        raise translate(exc, where, action="listing checkpoints of", token_given=bool(token),
                        endpoint=endpoint) from None
    found = []
    for model in models:
        if model.library_name not in (None, LIBRARY_NAME):
            continue
        try:
            sizes = _sizes(api, model.id, model.sha)
            config = _read_remote_json(model.id, CONFIG_FILE, model.sha, size=sizes.get(CONFIG_FILE),
                                       token=token or False, endpoint=endpoint, limits=limits)
            metrics = _read_remote_json(model.id, METRICS_FILE, model.sha, size=sizes.get(METRICS_FILE),
                                        token=token or False, endpoint=endpoint, limits=limits)
        except Exception as exc:
            logger.warning("Skipping %s: %s", model.id, translate(exc, model.id, action="reading",
                                                                  endpoint=endpoint))
            continue
        if config is None or config.get("format") != "diffcd-sdf":
            continue
        found.append({
            "repo_id": model.id,
            "method": config.get("method") or _method_from_tags(model.tags or []),
            "metrics": metrics or {},
            "last_modified": model.last_modified.isoformat() if model.last_modified else None,
            "sha": model.sha,
            "private": bool(model.private),
            "url": f"{endpoint}/{model.id}",
        })
    return found

"""Find published diffcd checkpoints on the Hub."""

from __future__ import annotations

import json
import logging
from typing import Any

from hub._common import CONFIG_FILE, LIBRARY_NAME, METRICS_FILE, resolve_endpoint, resolve_token
from hub.errors import translate

__all__ = ["list_checkpoints"]

logger = logging.getLogger(__name__)


def _read_remote_json(repo_id: str, filename: str, sha: str, *, token, endpoint) -> dict[str, Any] | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(repo_id, filename, revision=sha, token=token, endpoint=endpoint)
        data = json.loads(open(path, encoding="utf-8").read())
    except EntryNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError):
        logger.warning("%s in %s is not valid JSON; ignoring it", filename, repo_id)
        return None
    return data if isinstance(data, dict) else None


def _method_from_tags(tags: list[str]) -> str | None:
    from diffcd.methods import METHODS

    return next((t for t in tags if t in METHODS and t != LIBRARY_NAME), None) or \
        (LIBRARY_NAME if LIBRARY_NAME in tags else None)


def list_checkpoints(*, author: str | None = None, token: str | bool | None = None, limit: int = 50,
                     search: str | None = None, endpoint: str | None = None) -> list[dict[str, Any]]:
    """Published diffcd checkpoints, most recently changed first.

    Each item: repo_id, method, metrics (metrics.json: {"eval": {...}, "cloud_distances": {...}},
    empty when none was published), last_modified (ISO 8601), sha, private, url.
    Private repos appear only to a token that can read them.
    """
    from huggingface_hub import HfApi

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
            config = _read_remote_json(model.id, CONFIG_FILE, model.sha, token=token or False, endpoint=endpoint)
            metrics = _read_remote_json(model.id, METRICS_FILE, model.sha, token=token or False,
                                        endpoint=endpoint)
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

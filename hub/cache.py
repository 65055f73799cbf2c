"""The huggingface_hub cache as a pull uses it: who may be served a cached copy, and pruning.

A server (the Space) shares one cache among all its visitors. A copy fetched with one visitor's
token must never reach another visitor who could not read the repo, so every online pull records
whether the repo was public; when the Hub is unreachable or failing, only repos recorded as
public are served from the cache (``cached_access``). ``prune`` keeps the cache within a size
and an age.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["record_access", "cached_access", "prune", "PruneResult"]

logger = logging.getLogger(__name__)
ACCESS_FILE = "diffcd-access.json"


def _repo_folder(repo_id: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    return root / repo_folder_name(repo_id=repo_id, repo_type="model")


def record_access(repo_id: str, *, private: bool, cache_dir: str | os.PathLike | None = None) -> None:
    """Note, after the Hub answered for `repo_id`, whether the repo is private (nothing secret)."""
    folder = _repo_folder(repo_id, cache_dir)
    tmp = folder / f".{ACCESS_FILE}.{os.getpid()}.{threading.get_ident()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"private": bool(private), "checked": time.time()}))
        os.replace(tmp, folder / ACCESS_FILE)
    except OSError as exc:  # without the record the repo is simply not served while the Hub is down
        logger.warning("Cannot record the visibility of %s in the cache: %s", repo_id, exc)


def cached_access(repo_id: str, *, cache_dir: str | os.PathLike | None = None) -> str:
    """"public", "private" or "unknown": what the last online pull of `repo_id` recorded."""
    path = _repo_folder(repo_id, cache_dir) / ACCESS_FILE
    try:
        data = json.loads(path.read_text()) if path.stat().st_size < 4096 else {}
    except (OSError, ValueError):
        return "unknown"
    private = data.get("private") if isinstance(data, dict) else None
    return "private" if private is True else "public" if private is False else "unknown"


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` did: revisions deleted, bytes freed, bytes the cache holds now."""

    revisions_deleted: int
    bytes_freed: int
    bytes_kept: int


def prune(max_bytes: int, max_age: float, *, cache_dir: str | os.PathLike | None = None,
          now: float | None = None, grace: float = 600.0) -> PruneResult:
    """Delete cached model revisions older than `max_age` seconds (by last use), then the least
    recently used ones until the cache holds at most `max_bytes`, sparing those used in the last
    `grace` seconds (a request may be loading them right now).

    Uses huggingface_hub's own cache scan and deletion (blobs shared with kept revisions stay).
    """
    from huggingface_hub import scan_cache_dir

    root = Path(cache_dir) if cache_dir is not None else None
    if root is not None and not root.is_dir():
        return PruneResult(0, 0, 0)
    try:
        info = scan_cache_dir(root)
    except Exception as exc:  # a missing or foreign cache folder: nothing to prune
        logger.warning("Cannot scan the Hub cache for pruning: %s", exc)
        return PruneResult(0, 0, 0)
    now = time.time() if now is None else now
    revisions = []
    for repo in info.repos:
        for revision in repo.revisions:
            used = max(revision.last_modified, *(f.blob_last_accessed for f in revision.files), 0) \
                if revision.files else revision.last_modified
            revisions.append((used, revision.size_on_disk, revision.commit_hash))
    revisions.sort()  # oldest use first
    oldest_kept = max(max_age, grace)
    doomed = [r for r in revisions if now - r[0] > oldest_kept]
    kept = [r for r in revisions if now - r[0] <= oldest_kept]
    total = sum(size for _, size, _ in kept)
    while kept and total > max_bytes and now - kept[0][0] > grace:
        oldest = kept.pop(0)
        doomed.append(oldest)
        total -= oldest[1]
    if not doomed:
        return PruneResult(0, 0, info.size_on_disk)
    strategy = info.delete_revisions(*(sha for _, _, sha in doomed))
    freed = strategy.expected_freed_size
    strategy.execute()
    return PruneResult(len(doomed), freed, max(info.size_on_disk - freed, 0))

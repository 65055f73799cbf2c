"""Featured checkpoints: what the Hub tab lists when a page opens, so a first visit is one click.

The namespace is DIFFCD_FEATURED_AUTHOR; unset, it is FEATURED_AUTHOR in a Space (where
`python -m diffcd_hub.publish_examples --namespace diffcd` publishes the built-in examples fitted with
every method) and nothing locally, where the app contacts no Hub unless asked; empty turns it
off. The Hub is asked at most once every CACHE_SECONDS per process, in a background thread that
the page waits on for at most WAIT_SECONDS: an unreachable or slow Hub gives an empty list and a
quiet note, never a blocked page or an error popup.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from typing import Any, Callable

import gradio as gr
import pandas as pd

logger = logging.getLogger(__name__)

FEATURED_ENV = "DIFFCD_FEATURED_AUTHOR"
FEATURED_AUTHOR = "diffcd"
"""The namespace the built-in examples are published under (hub.publish_examples --namespace)."""
WAIT_SECONDS = 4.0
CACHE_SECONDS = 600.0
FAILURE_CACHE_SECONDS = 60.0
COLUMNS = ["repo_id", "method", "chamfer", "fscore", "last_modified"]


def featured_author() -> str:
    """The namespace to feature; empty for none."""
    if FEATURED_ENV in os.environ:
        return os.environ[FEATURED_ENV].strip()
    return FEATURED_AUTHOR if os.environ.get("SPACE_ID") else ""


class FeaturedCheckpoints:
    """A cached, time-bounded list of one namespace's diffcd checkpoints.

    `lister(author)` returns the table (hub.discover through Handlers.list_checkpoints, or a
    stand-in in tests); it may be slow or raise: the page never waits for it longer than `wait`.
    """

    def __init__(self, lister: Callable[[str], pd.DataFrame], *, wait: float = WAIT_SECONDS,
                 ttl: float = CACHE_SECONDS, failure_ttl: float = FAILURE_CACHE_SECONDS):
        self._lister = lister
        self._wait, self._ttl, self._failure_ttl = wait, ttl, failure_ttl
        self._lock = threading.RLock()  # a future done at once runs its callback under the lock
        self._cache: dict[str, tuple[float, pd.DataFrame | None, str]] = {}
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="featured")

    def _fetch(self, author: str) -> tuple[pd.DataFrame | None, str]:
        try:
            table = self._lister(author)
        except Exception as error:  # the Hub is down, unreachable, or answers nonsense
            logger.info("Featured checkpoints of %s unavailable: %s", author, error)
            return None, "unreachable"
        return table, "ok"

    def _store(self, author: str, future: concurrent.futures.Future) -> None:
        table, state = future.result()
        with self._lock:
            self._cache[author] = (time.monotonic(), table, state)
            self._pending.pop(author, None)

    def get(self, author: str) -> tuple[pd.DataFrame | None, str]:
        """(table or None, state): state is "ok", "unreachable" or "slow" (still being asked)."""
        with self._lock:
            cached = self._cache.get(author)
            if cached:
                stamp, table, state = cached
                if time.monotonic() - stamp < (self._ttl if state == "ok" else self._failure_ttl):
                    return table, state
            future = self._pending.get(author)
            first = future is None  # later page loads do not queue up behind a hanging Hub
            if first:
                future = self._pool.submit(self._fetch, author)
                future.add_done_callback(lambda f: self._store(author, f))
                self._pending[author] = future
        try:
            return future.result(timeout=self._wait if first else 0)
        except concurrent.futures.TimeoutError:
            return None, "slow"


def note(author: str, table: pd.DataFrame | None, state: str) -> str:
    """The quiet line under the table."""
    if state == "ok" and table is not None and len(table):
        return (f"Featured: checkpoints published by **{author}**. Click a row (or pick one) and press "
                "**Pull and mesh**.")
    if state == "ok":
        return f"*No checkpoints published by {author} yet: list everyone's with the button above.*"
    if state == "slow":
        return ("*The Hub did not answer in time, so there are no featured checkpoints yet: press the list "
                "button to try again.*")
    return "*The Hub cannot be reached, so there are no featured checkpoints; you can still fit and compare.*"


def page_load(featured: FeaturedCheckpoints) -> Callable[[], tuple[Any, Any, Any, str]]:
    """The demo.load function: (table, pick dropdown, repo id box, note) for the Hub tab."""

    def load() -> tuple[Any, Any, Any, str]:
        author = featured_author()
        if not author:
            return gr.skip(), gr.skip(), gr.skip(), ""
        table, state = featured.get(author)
        choices = [] if table is None or not len(table) else list(table["repo_id"])
        return (
            table if choices else gr.skip(),
            gr.Dropdown(choices=choices, value=choices[0] if choices else None),
            choices[0] if choices else gr.skip(),
            note(author, table, state),
        )

    return load


def row_repo(table: pd.DataFrame | None, event: gr.SelectData) -> tuple[Any, Any]:
    """A click on a row of the checkpoint table picks its repo: (repo id box, pick dropdown)."""
    try:
        row = event.index[0] if isinstance(event.index, (list, tuple)) else int(event.index)
        repo = str(table["repo_id"].iloc[row])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return gr.skip(), gr.skip()
    return repo, gr.Dropdown(value=repo)

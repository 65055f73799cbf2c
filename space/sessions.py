"""Per-session working folders and stop flags.

Each browser tab (or gradio_client Client) has a session hash. Its files live in
ROOT/<hash>/ and are deleted when the tab closes (demo.unload), when the app exits, or, for
sessions that never said goodbye (API clients, crashed tabs), once they have been idle for
`max_age` seconds. A session's stop flag lets its Stop button end its own fit, never another's.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9-]")
SHARED_FOLDER = "_shared"
"""Files of the app, not of a session (example previews): never swept. Session ids have no '_'."""


class SessionStore:
    """Working folders and stop flags of the app's sessions."""

    def __init__(self, root: str | Path | None = None, *, max_age: float = 6 * 3600):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="diffcd-space-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self._stops: dict[str, threading.Event] = {}
        self._closed: set[str] = set()
        self._lock = threading.Lock()
        atexit.register(self.remove_all)

    @staticmethod
    def key(request) -> str:
        """A file-name-safe id of the request's session (a fresh one when it has none)."""
        session = getattr(request, "session_hash", None) if request is not None else None
        return _SAFE.sub("", str(session))[:64] if session else f"anon-{uuid.uuid4().hex}"

    def folder(self, request) -> Path:
        """The session's folder, created on first use; touching it keeps it from being swept."""
        folder = self.root / self.key(request)
        folder.mkdir(parents=True, exist_ok=True)
        folder.touch()
        return folder

    def fresh_folder(self, request, kind: str) -> Path:
        """A new, empty `kind-<time>` sub-folder of the session's folder; earlier `kind-*` ones
        (the session's previous fit, pull, ...) are removed."""
        session = self.folder(request)
        for old in session.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        folder = session / f"{kind}-{time.time_ns()}"
        folder.mkdir()
        return folder

    def stop_flag(self, request) -> threading.Event:
        """The session's stop flag (set by its Stop button, cleared when a fit starts)."""
        with self._lock:
            return self._stops.setdefault(self.key(request), threading.Event())

    def is_closed(self, request) -> bool:
        """Whether the session's tab has been closed (its work should end without output)."""
        with self._lock:
            return self.key(request) in self._closed

    def close(self, request) -> None:
        """Stop the session's work and delete its files (the tab was closed)."""
        key = self.key(request)
        with self._lock:
            self._closed.add(key)
            flag = self._stops.pop(key, None)
        if flag is not None:
            flag.set()
        shutil.rmtree(self.root / key, ignore_errors=True)

    def sweep(self) -> list[str]:
        """Delete the folders of sessions idle for longer than max_age; returns their ids."""
        now = time.time()
        removed = []
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            if folder.name == SHARED_FOLDER:
                continue
            try:
                idle = now - folder.stat().st_mtime
            except FileNotFoundError:
                continue
            if idle > self.max_age:
                shutil.rmtree(folder, ignore_errors=True)
                with self._lock:
                    self._stops.pop(folder.name, None)
                removed.append(folder.name)
        return removed

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

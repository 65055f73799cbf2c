"""Per-session working folders and stop signals.

Each browser tab (or gradio_client Client) has a session hash, chosen by the client. It is never
used in a path: the folder of a session is ROOT/<HMAC of the hash under a key of this process>,
32 hex digits, whatever the hash is ("", "!!!", "..", 10,000 characters). So no session id can
name the root, the shared folder or another session's folder. Folders are deleted when the tab
closes (demo.unload), when the app exits, or once idle for `max_age` seconds (a background
sweeper, so API-only sessions that never say goodbye are cleaned too); a session with work
running is marked busy and never swept.

Stop signals are generation counters per session and kind ("fit", "compare"): a job notes the
generation when it arrives, and is stopped by any Stop pressed after that, also one pressed while
it was still waiting for the device.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import hmac
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

SHARED_FOLDER = "_shared"
"""Files of the app, not of a session (example previews): never swept, never a session's name."""
_SESSION_NAME = re.compile(r"^[0-9a-f]{32}$")


class SessionStore:
    """Working folders and stop signals of the app's sessions."""

    def __init__(self, root: str | Path | None = None, *, max_age: float = 6 * 3600):
        self.root = (Path(root) if root else Path(tempfile.mkdtemp(prefix="diffcd-space-"))).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self._secret = secrets.token_bytes(32)
        self._stops: collections.Counter[tuple[str, str]] = collections.Counter()
        self._closed: dict[str, float] = {}
        self._busy: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._stop_sweeper = threading.Event()
        atexit.register(self.remove_all)

    def key(self, request) -> str:
        """The folder name of the request's session: a keyed hash of its id (a fresh one when it has none)."""
        session = getattr(request, "session_hash", None) if request is not None else None
        if not isinstance(session, str) or not session:
            session = f"anonymous-{uuid.uuid4().hex}"
        digest = hmac.new(self._secret, session.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return digest.hexdigest()[:32]

    def _path(self, key: str) -> Path:
        """ROOT/key, only for a well-formed key (never the root or the shared folder)."""
        if not _SESSION_NAME.match(key):
            raise ValueError(f"not a session folder name: {key!r}")
        return self.root / key

    def folder_of(self, request) -> Path:
        """Where the session's folder is (whether or not it exists)."""
        return self._path(self.key(request))

    def folder(self, request) -> Path:
        """The session's folder, created on first use; touching it keeps it from being swept."""
        folder = self._path(self.key(request))
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

    # -- stop signals ------------------------------------------------------------------------
    def stop_check(self, request, kind: str) -> Callable[[], bool]:
        """A check that turns true once Stop (of `kind`) is pressed after now, or the tab closes."""
        key = self.key(request)
        with self._lock:
            since = self._stops[(key, kind)]

        def stopped() -> bool:
            with self._lock:
                return self._stops[(key, kind)] != since or key in self._closed
        return stopped

    def request_stop(self, request, kind: str) -> None:
        """Stop the session's `kind` job that is running or waiting (a later one is not affected)."""
        with self._lock:
            self._stops[(self.key(request), kind)] += 1

    # -- life and death ----------------------------------------------------------------------
    @contextlib.contextmanager
    def busy(self, request) -> Iterator[Path]:
        """Mark the session as working (never swept meanwhile); yields its folder."""
        key = self.key(request)
        with self._lock:
            self._busy[key] += 1
        try:
            yield self.folder(request)
        finally:
            with self._lock:
                self._busy[key] -= 1
                if self._busy[key] <= 0:
                    del self._busy[key]
            folder = self._path(key)
            if folder.is_dir():
                folder.touch()

    def is_closed(self, request) -> bool:
        """Whether the session's tab has been closed (its work should end without output)."""
        with self._lock:
            return self.key(request) in self._closed

    def close(self, request) -> None:
        """Stop the session's work and delete its files (the tab was closed)."""
        key = self.key(request)
        with self._lock:
            self._closed[key] = time.time()
            for name in [k for k in self._stops if k[0] == key]:
                del self._stops[name]
        shutil.rmtree(self._path(key), ignore_errors=True)

    def sweep(self) -> list[str]:
        """Delete the folders of sessions idle for longer than max_age (not busy); returns their names."""
        now = time.time()
        removed = []
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            if not _SESSION_NAME.match(folder.name):
                continue  # the shared folder and anything not made by this store
            with self._lock:
                if self._busy.get(folder.name):
                    continue
            try:
                idle = now - folder.stat().st_mtime
            except FileNotFoundError:
                continue
            if idle > self.max_age:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        with self._lock:
            for key, when in list(self._closed.items()):
                if now - when > self.max_age:
                    del self._closed[key]
            for name in [k for k in self._stops if k[0] in removed]:
                del self._stops[name]
        return removed

    def start_sweeper(self, every: float, *, also: Callable[[], object] | None = None) -> None:
        """Sweep every `every` seconds in a daemon thread (API-only sessions never load a page);
        `also` runs after each sweep (the app prunes the Hub cache there)."""
        if self._sweeper is not None:
            return

        def loop() -> None:
            while not self._stop_sweeper.wait(every):
                try:
                    self.sweep()
                    if also is not None:
                        also()
                except OSError:
                    pass
        self._sweeper = threading.Thread(target=loop, name="diffcd-session-sweeper", daemon=True)
        self._sweeper.start()

    def remove_all(self) -> None:
        self._stop_sweeper.set()
        shutil.rmtree(self.root, ignore_errors=True)

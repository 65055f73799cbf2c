"""Train in a worker thread and show progress without pausing it (issue 11 §6).

The fit runs in its own thread and hands its events to the request's handler through a queue; the
handler sends at most one update per `ui_interval` seconds (the latest event, the latest snapshot).
Snapshot meshes are built in a third thread from a copy of the parameters, so neither snapshots nor
UI updates hold up the training loop: between chunks the trainer only puts the event in a queue and,
when a snapshot is due and the snapshot thread is idle, hands it the parameters. A finished snapshot
also goes through the queue, so it reaches the page at once rather than with the next chunk.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from diffcd import Fitter, NoSurfaceError
from diffcd.errors import LimitError
from diffcd_space import viewer


@dataclasses.dataclass
class Progress:
    """What the handler shows: the latest event, and a snapshot GLB newer than the last shown one."""

    event: object
    snapshot: str | None
    events_seen: int


class _Snapshots:
    """Meshes the latest handed-over model in a background thread; keeps the last two GLBs."""

    def __init__(self, folder: Path, resolution: int, max_faces: int | None, should_stop: Callable[[], bool],
                 on_ready: Callable[[], None] = lambda: None):
        self.folder, self.resolution, self.max_faces, self.should_stop = folder, resolution, max_faces, should_stop
        self.on_ready = on_ready
        self._pending: queue.Queue = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._latest: str | None = None
        self._kept: list[Path] = []
        self.busy = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="diffcd-snapshots", daemon=True)
        self._thread.start()

    def offer(self, fitted, step: int) -> bool:
        """Hand over a model to mesh unless one is being meshed; returns whether it was taken."""
        if self.busy.is_set():
            return False
        try:
            self.busy.set()
            self._pending.put_nowait((fitted, step))
            return True
        except queue.Full:
            return False

    def _loop(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            fitted, step = item
            try:
                mesh = fitted.extract_mesh(self.resolution, max_faces=self.max_faces, should_stop=self.should_stop)
                path = viewer.mesh_glb(mesh, self.folder / f"snapshot-{step:07d}.glb")
                with self._lock:
                    self._latest = str(path)
                    self._kept.append(path)
                    while len(self._kept) > 3:  # the viewer has already copied older ones
                        self._kept.pop(0).unlink(missing_ok=True)
                self.on_ready()
            except (NoSurfaceError, LimitError, OSError):
                pass  # no snapshot this time; the fit goes on
            finally:
                self.busy.clear()

    def take(self) -> str | None:
        """The newest snapshot not taken before."""
        with self._lock:
            latest, self._latest = self._latest, None
            return latest

    def close(self) -> None:
        self._pending.put(None)
        self._thread.join(timeout=30)


def train(fitter: Fitter, *, folder: Path, snapshot_seconds: float, snapshot_resolution: int,
          should_stop: Callable[[], bool], max_faces: int | None = None,
          ui_interval: float = 0.5) -> Iterator[Progress]:
    """Run the fit in a worker thread; yields Progress at most every `ui_interval` s, then the done event.

    `should_stop()` (Stop pressed, the tab closed, the time limit reached) is checked after every
    chunk and cancels the fit; the last Progress carries the done event with its FitResult.
    """
    events: queue.Queue = queue.Queue()
    snapshots = _Snapshots(folder, snapshot_resolution, max_faces, should_stop,
                           on_ready=lambda: events.put(("snapshot", None)))
    abandoned = threading.Event()

    def work() -> None:
        last_offer = -float("inf")
        try:
            for event in fitter.run():
                if should_stop() or abandoned.is_set():
                    fitter.cancel()
                if not event.done and time.monotonic() - last_offer >= snapshot_seconds:
                    if snapshots.offer(fitter.fitted(), event.step):
                        last_offer = time.monotonic()
                events.put(("event", event))
        except BaseException as error:  # handed to the request's thread, which raises it
            events.put(("error", error))

    worker = threading.Thread(target=work, name="diffcd-fit", daemon=True)
    worker.start()
    seen = 0
    try:
        last_sent = 0.0
        latest = None  # the newest event
        unsent = False  # an event or a snapshot the page has not had yet
        while True:
            # nothing unsent: wait for the next event; else until the next update may go out
            timeout = 1.0 if not unsent else max(0.0, ui_interval - (time.monotonic() - last_sent))
            try:
                kind, item = events.get(timeout=timeout) if timeout > 0 else events.get_nowait()
            except queue.Empty:
                kind, item = "tick", None
            pending = [] if kind == "tick" else [(kind, item)]
            while not events.empty():  # coalesce what has piled up
                pending.append(events.get_nowait())
            for kind, item in pending:
                if kind == "error":
                    raise item
                if kind == "snapshot":
                    unsent = unsent or latest is not None
                    continue
                seen += 1
                if item.done:
                    if unsent:  # the last chunk's numbers, then the end
                        yield Progress(latest, snapshots.take(), seen - 1)
                    yield Progress(item, snapshots.take(), seen)
                    return
                latest, unsent = item, True
            if unsent and time.monotonic() - last_sent >= ui_interval:
                last_sent = time.monotonic()
                yield Progress(latest, snapshots.take(), seen)
                unsent = False
    finally:
        abandoned.set()
        fitter.cancel()
        worker.join(timeout=60)
        snapshots.close()

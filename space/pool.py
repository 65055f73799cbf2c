"""A bounded pool for reading visitors' files: downloads of URLs and parses of uploads.

Reading a file costs memory and time before any job line is involved (a 100 MB mesh, a URL that
drips one byte every few seconds). The app therefore reads every visitor's file inside a slot of
one `ReadPool`: at most `total` reads at once over all visitors and `per_client` per client
(space.clients), so one client cannot hold more than its share and all reads together stay within
`total` times one read's memory bound. A request that finds no free slot waits for one, up to
`wait_seconds`, if few enough requests wait already; otherwise it is refused at once with a
sentence, so waiting requests never pile up in the server's worker threads.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import Iterator

import gradio as gr

from diffcd_space.clients import Client


class ReadPoolBusy(gr.Error):
    """No read slot could be had; the message says why and when to retry."""

    def __init__(self, message: str):
        super().__init__(message, title="The server is busy reading files", print_exception=False)


class ReadPool:
    """Slots for reading visitors' files, counted in all and per client."""

    def __init__(self, *, total: int, per_client: int, max_waiting: int, wait_seconds: float):
        self.total, self.per_client = total, per_client
        self.max_waiting, self.wait_seconds = max_waiting, wait_seconds
        self._cond = threading.Condition()
        self._holding: collections.Counter[str] = collections.Counter()
        self._waiting: collections.Counter[str] = collections.Counter()

    def _free(self, key: str) -> bool:
        return sum(self._holding.values()) < self.total and self._holding[key] < self.per_client

    @contextlib.contextmanager
    def slot(self, client: Client, what: str) -> Iterator[None]:
        """Hold a read slot for `what` ("the upload", "the URL's file", ...) while the block runs.

        Raises:
          ReadPoolBusy: the client already has its reads waiting, too many requests wait, or no
            slot came free within `wait_seconds`.
        """
        key = client.key
        with self._cond:
            if not self._free(key):
                if self._waiting[key] >= self.per_client:
                    raise ReadPoolBusy(
                        f"Another file of {client.described} is being read or waits to be read (this app reads "
                        f"{self.per_client} at a time per visitor): wait until it is done, then send {what} again.")
                if sum(self._waiting.values()) >= self.max_waiting:
                    raise ReadPoolBusy(f"The server is reading many visitors' files right now; send {what} "
                                       "again in a minute.")
                self._waiting[key] += 1
                deadline = time.monotonic() + self.wait_seconds
                try:
                    while not self._free(key):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise ReadPoolBusy(f"The server was busy reading other files for {self.wait_seconds:.0f} s; "
                                               f"send {what} again in a minute.")
                        self._cond.wait(remaining)
                finally:
                    self._waiting[key] -= 1
                    if self._waiting[key] <= 0:
                        del self._waiting[key]
            self._holding[key] += 1
        try:
            yield
        finally:
            with self._cond:
                self._holding[key] -= 1
                if self._holding[key] <= 0:
                    del self._holding[key]
                self._cond.notify_all()

    def snapshot(self) -> dict:
        """Reads running and waiting, in all (for status and tests)."""
        with self._cond:
            return {"reading": sum(self._holding.values()), "waiting": sum(self._waiting.values())}

"""The app's own line for the device: one compute job at a time, a bounded line, a few jobs per session.

Compute events (fit, compare, re-mesh, pull) are not held back in Gradio's queue: they enter at
once and wait here, where the app can count them. So a session over its share, or a full line, is
told so at once with when to retry, and Stop and status calls are never stuck behind waiting jobs.
Every job runs under a wall-time `Budget` that starts when it gets the device.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from typing import Iterator

import gradio as gr

from diffcd.errors import TimeLimitError


class Budget:
    """The wall-time limit of one compute request (None: unlimited), counted from `begin()`."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._start: float | None = None

    def begin(self) -> "Budget":
        self._start = time.monotonic()
        return self

    @property
    def elapsed(self) -> float:
        return 0.0 if self._start is None else time.monotonic() - self._start

    def remaining(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.elapsed

    def expired(self) -> bool:
        return self.remaining() <= 0

    def past(self, share: float) -> bool:
        """Whether `share` of the limit is used up (a fit trains for a share, then meshes)."""
        return self.seconds is not None and self.elapsed >= share * self.seconds

    def check(self, what: str) -> None:
        if self.expired():
            raise TimeLimitError(f"{what} ran past this app's limit of {self.seconds:g} s per request. "
                                 "Use a lower mesh resolution or a smaller network, or run it locally.")


class Job:
    """A place in the line; `wait()` yields the position until the job holds the device."""

    def __init__(self, line: "ComputeLine", session: str, kind: str):
        self.line, self.session, self.kind = line, session, kind
        self.started: float | None = None

    def wait(self, poll: float = 0.5) -> Iterator[int]:
        """Yield this job's position (1 = next) every `poll` seconds until it may run."""
        line = self.line
        with line._cond:
            while True:
                if line._running is None and line._waiting and line._waiting[0] is self:
                    line._waiting.popleft()
                    line._running = self
                    self.started = time.monotonic()
                    return
                position = line._waiting.index(self) + 1
                line._cond.wait(poll)
                line._cond.release()
                try:
                    yield position
                finally:
                    line._cond.acquire()

    def wait_quietly(self) -> None:
        for _ in self.wait():
            pass


class ComputeLine:
    """Jobs waiting for and running on the device, counted per session."""

    def __init__(self, *, jobs_per_session: int, max_waiting: int):
        self.jobs_per_session = jobs_per_session
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._per_session: collections.Counter[str] = collections.Counter()
        self._durations: collections.deque[float] = collections.deque([60.0], maxlen=20)

    def retry_after(self) -> float:
        """A rough wait until the line has room: the jobs ahead times the recent mean duration."""
        mean = sum(self._durations) / len(self._durations)
        return mean * (len(self._waiting) + 1)

    @contextlib.contextmanager
    def enter(self, session: str, kind: str) -> Iterator[Job]:
        """Join the line, or fail at once (gr.Error) when the session or the line is full."""
        with self._cond:
            if self._per_session[session] >= self.jobs_per_session:
                raise gr.Error(f"This session already has {self._per_session[session]} job(s) waiting or "
                               f"running (the limit is {self.jobs_per_session}): wait until it ends or "
                               f"press Stop, then start the {kind} again.", title="One job at a time")
            if len(self._waiting) >= self.max_waiting:
                minutes = max(1, round(self.retry_after() / 60))
                raise gr.Error(f"The queue is full: {len(self._waiting)} jobs are waiting for the device. "
                               f"Try again in about {minutes} min.", title="Queue full")
            job = Job(self, session, kind)
            self._per_session[session] += 1
            self._waiting.append(job)
        try:
            yield job
        finally:
            with self._cond:
                if job in self._waiting:
                    self._waiting.remove(job)
                if self._running is job:
                    self._running = None
                    self._durations.append(time.monotonic() - (job.started or time.monotonic()))
                self._per_session[session] -= 1
                if self._per_session[session] <= 0:
                    del self._per_session[session]
                self._cond.notify_all()

    def snapshot(self) -> dict:
        """How many jobs wait and whether one runs (for status and tests)."""
        with self._cond:
            return {"waiting": len(self._waiting), "running": self._running is not None,
                    "sessions": dict(self._per_session)}

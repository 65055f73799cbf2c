"""The app's own line for the device: one compute job at a time, a bounded line, a share per client.

Compute events (fit, compare, re-mesh, pull) are not held back in Gradio's queue: they enter at
once and wait here, where the app can count them. Jobs are counted per client (space.clients: a
signed-in user or a network address, not a session, since one client can open any number of
sessions), and each client's device time over the last hour is kept in a `DeviceLedger`. So a
client over its share, or a full line, is told so at once with when to retry, and Stop and status
calls are never stuck behind waiting jobs. Every job runs under a wall-time `Budget` that starts
when it gets the device and never exceeds the device time its client has left this hour.
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

MIN_JOB_SECONDS = 30.0
"""A client with less device time left than this this hour cannot start a job."""


WINDOW_SECONDS = 3600.0
"""The window over which a client's device time is counted."""


class Budget:
    """The wall-time limit of one compute request (None: unlimited), counted from `begin()`."""

    def __init__(self, seconds: float | None, *, limit: str | None = None):
        self.seconds = seconds
        self.limit = limit or (f"this app's limit of {seconds:g} s per request" if seconds is not None else "")
        """What the limit is, for messages."""
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
            raise TimeLimitError(f"{what} ran past {self.limit}. "
                                 "Use a lower mesh resolution or a smaller network, or run it locally.")


class DeviceLedger:
    """The device seconds each client used over the last `window` seconds."""

    def __init__(self, window: float = WINDOW_SECONDS):
        self.window = window
        self._spans: dict[str, collections.deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def add(self, client: str, start: float, end: float) -> None:
        with self._lock:
            self._spans.setdefault(client, collections.deque()).append((start, end))

    def used(self, client: str, now: float | None = None) -> float:
        """Seconds of finished jobs inside the window (a running job is counted by its Budget)."""
        now = time.monotonic() if now is None else now
        since = now - self.window
        with self._lock:
            spans = self._spans.get(client)
            if not spans:
                return 0.0
            while spans and spans[0][1] <= since:
                spans.popleft()
            if not spans:
                del self._spans[client]
                return 0.0
            return sum(end - max(start, since) for start, end in spans)

    def free_again_in(self, client: str, needed: float, quota: float, now: float | None = None) -> float:
        """Seconds until at least `needed` of `quota` is free again (spans leave the window)."""
        now = time.monotonic() if now is None else now
        used = self.used(client, now)
        with self._lock:
            spans = list(self._spans.get(client, ()))
        for start, end in spans:
            if quota - used >= needed:
                break
            leaves = end + self.window - now  # this span is out of the window then
            used -= end - max(start, now - self.window)
            if quota - used >= needed:
                return max(0.0, leaves)
        return 0.0


class Job:
    """A place in the line; `wait()` yields the position until the job holds the device."""

    def __init__(self, line: "ComputeLine", client: str, kind: str, quota: float | None):
        self.line, self.client, self.kind, self.quota = line, client, kind, quota
        self.started: float | None = None

    def budget(self, request_seconds: float | None) -> Budget:
        """The job's wall-time Budget, begun now: the request limit, or less when its client has
        less device time left this hour."""
        if self.quota is None:
            return Budget(request_seconds).begin()
        left = max(0.0, self.quota - self.line.ledger.used(self.client))
        if request_seconds is None or left < request_seconds:
            return Budget(left, limit=f"the device time your client had left this hour ({left:.0f} s "
                          f"of {self.quota:.0f} s)").begin()
        return Budget(request_seconds).begin()

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
    """Jobs waiting for and running on the device, counted per client."""

    def __init__(self, *, jobs_per_client: int, max_waiting: int, ledger: DeviceLedger | None = None):
        self.jobs_per_client = jobs_per_client
        self.max_waiting = max_waiting
        self.ledger = ledger or DeviceLedger()
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._per_client: collections.Counter[str] = collections.Counter()
        self._durations: collections.deque[float] = collections.deque([60.0], maxlen=20)

    def retry_after(self) -> float:
        """A rough wait until the line has room: the jobs ahead times the recent mean duration."""
        mean = sum(self._durations) / len(self._durations)
        return mean * (len(self._waiting) + 1)

    def _check_quota(self, client: str, described: str, kind: str, quota: float | None) -> None:
        if quota is None:
            return
        used = self.ledger.used(client)
        if quota - used >= min(MIN_JOB_SECONDS, quota):
            return
        minutes = max(1, math.ceil(self.ledger.free_again_in(client, MIN_JOB_SECONDS, quota) / 60))
        raise gr.Error(f"{described[0].upper()}{described[1:]} has used {used:.0f} s of device time in the last "
                       f"hour; this app gives each visitor {quota:.0f} s an hour. Start the {kind} again in about "
                       f"{minutes} min, sign in for a larger share, or run it locally (python app.py).",
                       title="Device time used up", print_exception=False)

    @contextlib.contextmanager
    def enter(self, client: str, kind: str, *, described: str = "this client",
              quota: float | None = None) -> Iterator[Job]:
        """Join the line, or fail at once (gr.Error) when the client has its share of jobs or of
        device time, or the line is full. `quota`: the client's device seconds per hour (None: no bound)."""
        with self._cond:
            if self._per_client[client] >= self.jobs_per_client:
                raise gr.Error(f"{described[0].upper()}{described[1:]} already has {self._per_client[client]} job(s) "
                               f"waiting or running (this app allows {self.jobs_per_client} per visitor, and "
                               f"people sharing a network count as one unless signed in): wait until it ends "
                               f"or press Stop, then start the {kind} again.", title="One job at a time", print_exception=False)
            self._check_quota(client, described, kind, quota)
            if len(self._waiting) >= self.max_waiting:
                minutes = max(1, round(self.retry_after() / 60))
                raise gr.Error(f"The queue is full: {len(self._waiting)} jobs are waiting for the device. "
                               f"Try again in about {minutes} min.", title="Queue full", print_exception=False)
            job = Job(self, client, kind, quota)
            self._per_client[client] += 1
            self._waiting.append(job)
        try:
            yield job
        finally:
            with self._cond:
                if job in self._waiting:
                    self._waiting.remove(job)
                if self._running is job:
                    self._running = None
                    end = time.monotonic()
                    started = job.started or end
                    self._durations.append(end - started)
                    self.ledger.add(client, started, end)
                self._per_client[client] -= 1
                if self._per_client[client] <= 0:
                    del self._per_client[client]
                self._cond.notify_all()

    def snapshot(self) -> dict:
        """How many jobs wait and whether one runs (for status and tests)."""
        with self._cond:
            return {"waiting": len(self._waiting), "running": self._running is not None,
                    "clients": dict(self._per_client)}

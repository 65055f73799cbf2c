"""How the app's events are queued, shared by every tab's bindings.

Compute jobs (fit, comparison, re-mesh, pull) enter Gradio's queue at once and wait in the app's own
line (diffcd_space.jobs): one runs at a time, a client has at most Limits.jobs_per_client and its
device time, and a full line says when to retry. Each action first validates in a quick private
event (no wait for the worker, and a failure leaves the outputs as they were), then runs; the run
validates again for API callers.
"""

from __future__ import annotations

CHECKS = "checks"
"""Concurrency group of the quick checks that read uploads (parsing is bounded, but not free)."""

COMPUTE = {"concurrency_limit": None}
"""A compute job: no Gradio limit, the app's own line bounds it."""

CHECK = {"api_visibility": "private", "concurrency_id": CHECKS, "concurrency_limit": 2}
"""The quick validation that runs before an action."""

INSTANT = {"api_visibility": "private", "queue": False}
"""A page-only event that never waits (form filling, picking a row)."""

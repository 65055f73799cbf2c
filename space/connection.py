"""Whether the caller of the running event is still connected.

Gradio streams an event's updates to its caller over one connection per session; when that
connection closes (the page is closed, an API client's stream is dropped), Gradio marks the
session's events as no longer alive and stops reading their updates. A compute job checks
`client_connected()` between chunks of work, so a job nobody waits for stops within a chunk and
frees the device, instead of running to its time limit.
"""

from __future__ import annotations

from typing import Callable


def client_connected() -> Callable[[], bool]:
    """A check, made for the event running now, that turns False once its caller has gone.

    Outside a queued Gradio event (direct calls, tests of handlers) the check is always True.
    """
    try:
        from gradio.context import LocalContext

        blocks = LocalContext.blocks.get(None)
        event_id = LocalContext.event_id.get(None)
    except Exception:  # a Gradio without these context variables
        return lambda: True
    queue = getattr(blocks, "_queue", None)
    events = getattr(queue, "event_ids_to_events", None)
    if event_id is None or not isinstance(events, dict):
        return lambda: True
    event = events.get(event_id)
    if event is None:
        return lambda: True

    def connected() -> bool:
        return bool(getattr(event, "alive", True)) and not getattr(queue, "stopped", False)

    return connected

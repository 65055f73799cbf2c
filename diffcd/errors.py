"""Errors raised by diffcd.

Every error's message is one or two sentences: what is wrong, then what to do about it. Callers
(the CLI, the Gradio app, the Hub scripts) show ``str(error)`` to the user as it is.
"""

from __future__ import annotations

__all__ = [
    "DiffCDError",
    "PointCloudError",
    "MeshError",
    "NoSurfaceError",
    "CheckpointError",
    "ConfigError",
    "LimitError",
    "TimeLimitError",
    "DiffCDWarning",
]


class DiffCDError(Exception):
    """Base class of every diffcd error; ``str(e)`` names the problem and what to do."""


class PointCloudError(DiffCDError):
    """An input point cloud is unreadable, empty, too small, non-finite or badly shaped."""


class MeshError(DiffCDError):
    """A mesh file is unreadable, has no faces, or has no surface area."""


class NoSurfaceError(DiffCDError):
    """The fitted signed distance function has no zero level set inside the box."""


class CheckpointError(DiffCDError):
    """A file is not a diffcd export, has an unknown schema, mismatched shapes or is corrupted."""


class ConfigError(DiffCDError):
    """An option has a bad value, or a method, preset or example name is unknown."""


class LimitError(DiffCDError):
    """A request exceeds a bound set by the caller (points, network size, mesh size, bytes)."""


class TimeLimitError(LimitError):
    """Work was stopped because it ran past its wall-time limit (or was asked to stop)."""


class DiffCDWarning(UserWarning):
    """Something was changed on the user's behalf (e.g. a cloud was downsampled)."""

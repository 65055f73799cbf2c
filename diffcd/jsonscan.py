"""How deeply JSON text nests, measured on its bytes without parsing it.

Python's json module recurses once per level, so a file of thousands of nested brackets reaches
the recursion limit inside json.loads; readers of visitors' JSON (a checkpoint's config.json and
safetensors header, a GLB's JSON chunk) measure the depth first and refuse what is too deep.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["json_depth"]

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
"""A JSON string; unrolled so that matching a long one needs no backtracking stack."""
_OPENING, _CLOSING = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
_DEPTH_CHUNK = 1 << 20


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text, without parsing it (strings skipped).

    The running depth is a cumulative sum over the bytes, a chunk at a time (vectorised)."""
    data = _STRING.sub('""', text).encode("utf-8", "replace")
    depth = deepest = 0
    for offset in range(0, len(data), _DEPTH_CHUNK):
        chunk = np.frombuffer(data, np.uint8, count=min(_DEPTH_CHUNK, len(data) - offset), offset=offset)
        steps = np.isin(chunk, _OPENING).astype(np.int32) - np.isin(chunk, _CLOSING)
        levels = np.cumsum(steps, dtype=np.int64) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
    return deepest

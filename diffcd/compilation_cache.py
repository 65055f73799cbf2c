"""JAX's persistent compilation cache for diffcd: compile once per machine, not once per process.

A training chunk of the paper network takes seconds to compile on a CPU and 10-30 s on a GPU
(autotuning). With the cache on, a later process loads the compiled program from disk instead.
Importing diffcd changes nothing: the command line, the benchmarks and the app call
`enable_compilation_cache()` before their first compilation.

The folder is `$DIFFCD_COMPILATION_CACHE` when set ("off", "0" or "" turns the cache off), else
JAX_COMPILATION_CACHE_DIR when the user configured JAX directly, else `diffcd/jax` under the
user's cache folder ($XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS,
%LOCALAPPDATA% on Windows). It is created private to the user: JAX trusts what it loads from it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax

ENV_VAR = "DIFFCD_COMPILATION_CACHE"
_OFF = {"", "0", "off", "false", "no", "none"}


def user_cache_root() -> Path:
    """The platform's per-user cache folder (what platformdirs.user_cache_dir returns)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def default_cache_dir() -> Path | None:
    """Where diffcd keeps compiled programs, or None when the user turned the cache off."""
    if ENV_VAR in os.environ:
        value = os.environ[ENV_VAR].strip()
        return None if value.lower() in _OFF else Path(value).expanduser()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    return user_cache_root() / "diffcd" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in `path` (default: `default_cache_dir()`).

    Every program is cached, however small or quick to compile (JAX's defaults skip programs
    compiled in under a second, most of them on a CPU), unless the user set
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS or JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES.
    Call it before the first compilation of the process: JAX opens its cache once. Returns the
    folder, or None when the cache is off or the folder cannot be created (a read-only home:
    fits then compile as without a cache).
    """
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    if jax.config.jax_compilation_cache_dir != str(folder):
        jax.config.update("jax_compilation_cache_dir", str(folder))
        # JAX decides once per process, at its first compilation, whether a cache is used;
        # start that decision afresh so that enabling after some compilation still works.
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in os.environ:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder

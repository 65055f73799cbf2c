"""Where the app runs: a Space with GPU hardware must not fit on the CPU without saying so.

A Space whose requirements install JAX's CPU build, or whose CUDA plugin fails to load (driver
or CUDA mismatch), still starts and still fits, 20 to 50 times slower: visitors would wait minutes
for what should take seconds and nobody would know why. When the app runs in a Space
(SPACE_ID) on GPU hardware and JAX's backend is not "gpu", it logs an error at start-up and
shows a banner on the page.

GPU hardware is recognised by, in order: DIFFCD_SPACE_GPU=1/0 (explicit), SPACE_HARDWARE
(a hardware flavour such as "l4x1"; "cpu-*" means none), an NVIDIA driver on the machine
(/proc/driver/nvidia, /dev/nvidia0, nvidia-smi).
"""

from __future__ import annotations

import html
import importlib.util
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger("diffcd.space")

GPU_ENV = "DIFFCD_SPACE_GPU"
_NVIDIA_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidia0")


def space_gpu() -> str | None:
    """A description of the GPU hardware of the Space the app runs in; None off a Space or on a CPU one."""
    if not os.environ.get("SPACE_ID"):
        return None
    explicit = os.environ.get(GPU_ENV, "").strip().lower()
    if explicit in ("1", "true", "yes"):
        return f"GPU hardware ({GPU_ENV}=1)"
    if explicit in ("0", "false", "no"):
        return None
    flavour = os.environ.get("SPACE_HARDWARE", "").strip()
    if flavour:
        return None if flavour.lower().startswith("cpu") else f"GPU hardware ({flavour})"
    if any(Path(p).exists() for p in _NVIDIA_MARKERS) or shutil.which("nvidia-smi"):
        return "an NVIDIA GPU"
    return None


def _cuda_plugin_installed() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in ("jax_cuda12_plugin", "jax_cuda13_plugin"))


def backend_problem(backend: str | None = None) -> str | None:
    """What is wrong when a GPU Space computes on something else (one paragraph), else None."""
    hardware = space_gpu()
    if hardware is None:
        return None
    if backend is None:
        import jax

        backend = jax.default_backend()
    if backend == "gpu":
        return None
    if _cuda_plugin_installed():
        cause = ("JAX's CUDA plugin is installed but did not start (a driver or CUDA version mismatch; "
                 "the Space's build and start-up logs say which)")
    else:
        cause = ("this Space installed JAX's CPU build: its requirements.txt must ask for jax[cuda12] "
                 "(deploy with `python -m diffcd_space.deploy`, which writes it)")
    return (f"This Space has {hardware}, but JAX computes on the {backend.upper()}: {cause}. Fits run 20 "
            "to 50 times slower than they should.")


def check_backend(backend: str | None = None) -> str | None:
    """Log an error when a GPU Space runs JAX elsewhere; returns the message (None when all is well)."""
    problem = backend_problem(backend)
    if problem:
        logger.error("GPU NOT IN USE: %s", problem)
    return problem


def banner_html(problem: str | None) -> str:
    """A red banner with the problem, for the top of the page (empty when there is none)."""
    if not problem:
        return ""
    return ('<div id="gpu-warning" role="alert" style="border:2px solid #dc2626;background:#fef2f2;'
            'color:#7f1d1d;padding:10px 14px;border-radius:6px;font-weight:500">'
            f"⚠ <b>Running on the CPU, not the GPU.</b> {html.escape(problem)}</div>")

"""The Gradio app of diffcd: fit with live progress, compare methods, pull and push on the Hub.

`build_app()` returns the Blocks; app.py queues and launches it. Everything here calls the
library (diffcd) and the Hub helpers (hub); geometry is not computed here.
"""

from diffcd_space.presets import AppPreset
from diffcd_space.ui import QUEUE_MAX_SIZE, build_app, launch_options

__all__ = ["AppPreset", "QUEUE_MAX_SIZE", "build_app", "launch_options"]

"""The app's event functions, one class per tab (diffcd_space.fit_tab with its cloud inputs
and re-mesh section, compare_tab, hub_tab), joined here into the one object the tabs bind. Each
public method is an API endpoint: typed, with its docstring as the endpoint's documentation.
Validation comes first; work happens in the session's own folder.

The session's current model (the last fit or pull) lives in a gr.State, a small dict of paths:
    {"model_dir", "mesh", "cloud", "gt_mesh", "label", "units"}
so /extract_mesh, /evaluate and /push_checkpoint act on what this session made, never on
another session's files.
"""

from __future__ import annotations

import gradio as gr

from diffcd_space.compare_tab import MAX_VIEWERS, CompareTab
from diffcd_space.hub_tab import HubTab
from diffcd_space.outputs import metrics_table

__all__ = ["Handlers", "MAX_VIEWERS"]


class Handlers(CompareTab, HubTab):
    """Every event function of the app, bound to its settings (presets, session store, Hub endpoint)."""

    metrics_table = staticmethod(metrics_table)

    def close_session(self, request: gr.Request) -> None:
        """The tab was closed: stop its work and delete its files."""
        self.store.close(request)

    def sweep_sessions(self) -> None:
        """On each page load: delete the folders of sessions idle for hours (API clients never say bye)."""
        self.store.sweep()

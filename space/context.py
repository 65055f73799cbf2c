"""What every tab's events share: the app's settings, and the checks that turn settings and state into objects."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import trimesh

from diffcd import DiffCDError, load_mesh
from space.presets import AppPreset
from space.sessions import SessionStore
from space.validation import LoadedCloud


class AppContext:
    """The app's settings (presets, session store, Hub endpoint) and helpers every tab uses."""

    def __init__(self, *, presets: dict[str, AppPreset], store: SessionStore, max_points: int,
                 hub_endpoint: str | None = None, max_fit_seconds: float | None = None):
        self.presets = presets
        self.max_fit_seconds = max_fit_seconds
        self.store = store
        self.max_points = max_points
        self.hub_endpoint = hub_endpoint
        self._examples: dict[str, tuple[str, str]] = {}

    def _config(self, preset: AppPreset, method: str, settings: dict):
        try:
            return preset.config(method, **settings)
        except DiffCDError as error:
            raise gr.Error(str(error), title="Invalid settings") from None

    def _ground_truth(self, loaded: LoadedCloud) -> trimesh.Trimesh | None:
        if loaded.example is None or loaded.example.gt_mesh is None:
            return None
        try:
            return load_mesh(loaded.example.gt_mesh)
        except DiffCDError as error:
            gr.Warning(f"The example's ground-truth mesh cannot be read ({error}); scoring without it.")
            return None

    @staticmethod
    def _current(current: dict | None) -> dict:
        if not current or not current.get("model_dir") or not Path(current["model_dir"]).is_dir():
            raise gr.Error("There is no model yet in this session: fit a cloud or pull a checkpoint first.")
        return current


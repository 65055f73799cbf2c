"""What every tab's events share: the app's settings and bounds, the device line, and the checks
that turn settings and state into objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import gradio as gr
import trimesh

from diffcd import DiffCDError, load_mesh, load_sdf
from diffcd.export import export_sdf
from space.jobs import ComputeLine
from space.limits import Limits
from space.presets import AppPreset
from space.sessions import SessionStore
from space.validation import LoadedCloud, load_cloud


def bounded(fitted, *, max_faces: int | None, should_stop: Callable[[], bool] | None):
    """`fitted` whose extract_mesh (also when called by diffcd.runs.write_run) keeps these bounds."""
    base = type(fitted)

    class Bounded(base):
        def extract_mesh(self, resolution: int = 256, **options):
            options.setdefault("max_faces", max_faces)
            options.setdefault("should_stop", should_stop)
            return base.extract_mesh(self, resolution, **options)

    Bounded.__name__ = Bounded.__qualname__ = base.__name__
    return Bounded(**{f.name: getattr(fitted, f.name) for f in dataclasses.fields(fitted)})


class AppContext:
    """The app's settings (presets, bounds, session store, Hub endpoint) and helpers every tab uses."""

    def __init__(self, *, presets: dict[str, AppPreset], store: SessionStore, max_points: int | None = None,
                 hub_endpoint: str | None = None, max_fit_seconds: float | None = None,
                 limits: Limits | None = None):
        limits = limits or Limits.local()
        if max_points is not None:
            limits = limits.with_changes(max_points=max_points)
        if max_fit_seconds is not None:
            limits = limits.with_changes(max_request_seconds=max_fit_seconds)
        self.limits = limits
        self.presets = presets
        self.store = store
        self.hub_endpoint = hub_endpoint
        self.line = ComputeLine(jobs_per_session=limits.jobs_per_session, max_waiting=limits.max_waiting_jobs)
        self._examples: dict[str, tuple[str, str]] = {}

    @property
    def max_points(self) -> int:
        return self.limits.max_points

    @property
    def max_fit_seconds(self) -> float | None:
        return self.limits.max_request_seconds

    def _load_cloud(self, cloud, example, *, warn: bool = True) -> LoadedCloud:
        """The chosen cloud, parsed once, within the upload bounds."""
        return load_cloud(cloud, example, max_points=self.limits.max_points, warn=warn,
                          max_bytes=self.limits.max_upload_bytes, input_limits=self.limits.input_limits())

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
        if current and current.get("fitted") is not None:
            return current  # kept in memory after a failed write
        if not current or not current.get("model_dir") or not Path(current["model_dir"]).is_dir():
            raise gr.Error("There is no model yet in this session: fit a cloud or pull a checkpoint first.")
        return current

    def _sdf(self, current: dict):
        """The current model: in memory, else loaded within the bounds of a network this app accepts."""
        if current.get("fitted") is not None:
            return current["fitted"]
        return load_sdf(current["model_dir"], limits=self.limits.network_limits())

    def _model_folder(self, current: dict, request) -> str:
        """A folder holding the current model's export (written now if it is only in memory)."""
        if current.get("fitted") is None:
            return current["model_dir"]
        folder = self.store.fresh_folder(request, "kept")
        export_sdf(current["fitted"], folder)
        return str(folder)

    def _keep_model(self, fitted, request, state: dict) -> tuple[dict, str]:
        """After a failed write: the model exported to a small folder of its own, else kept in memory.

        Returns (the session state to show, a sentence that says where the model is)."""
        try:
            folder = self.store.fresh_folder(request, "kept")
            export_sdf(fitted, folder)
            return ({**state, "model_dir": str(folder), "mesh": None, "fitted": None},
                    "The trained model is kept (config.json and model.safetensors in this session's folder): "
                    "Extract mesh meshes it again and Push publishes it.")
        except OSError:
            return ({**state, "model_dir": None, "mesh": None, "fitted": fitted},
                    "The trained model is kept in this session's memory (the disk is full): Extract mesh "
                    "meshes it again once there is space, and Push publishes it.")

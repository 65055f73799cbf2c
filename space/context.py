"""What every tab's events share: the app's settings and bounds, the device line, and the checks
that turn settings and state into objects."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import trimesh

from diffcd import DiffCDError, load_mesh, load_sdf
from diffcd.export import export_sdf
from diffcd.io import MESH_EXTENSIONS, SUPPORTED_EXTENSIONS
from diffcd.runs import network_absent_reason
from diffcd_space.clients import Client, ClientResolver, ConfirmedTokens
from diffcd_space.connection import client_connected
from diffcd_space.jobs import ComputeLine, Job
from diffcd_space.limits import Limits
from diffcd_space.pool import ReadPool
from diffcd_space.presets import AppPreset
from diffcd_space.remote import download
from diffcd_space.sessions import SessionStore
from diffcd_space.validation import LoadedCloud, file_path, file_text, is_url, load_cloud


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


@dataclasses.dataclass(frozen=True)
class StopCheck:
    """Whether a job should stop: Stop was pressed, the tab was closed, or the caller is gone."""

    stop_pressed: Callable[[], bool]
    connected: Callable[[], bool]

    def __call__(self) -> bool:
        return self.stop_pressed() or not self.connected()

    def caller_gone(self) -> bool:
        """Nobody waits for the result any more: skip the work that would only show it."""
        return not self.connected()


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
        self.line = ComputeLine(jobs_per_client=limits.jobs_per_client, max_waiting=limits.max_waiting_jobs)
        self.reads = ReadPool(total=limits.reads_at_once, per_client=limits.reads_per_client,
                              max_waiting=limits.reads_waiting, wait_seconds=limits.read_wait_seconds)
        self.clients = ClientResolver(trusted_proxy_hops=limits.trusted_proxy_hops or 0,
                                      tokens=ConfirmedTokens(self._token_owner))
        self._examples: dict[str, tuple[str, str]] = {}

    # -- who asks, and their share ------------------------------------------------------------
    def _token_owner(self, token: str) -> str | None:
        from diffcd_hub.account import token_owner

        return token_owner(token, endpoint=self.hub_endpoint)

    def client(self, request) -> Client:
        """The client a request counts against (space.clients)."""
        return self.clients(request)

    def _quota(self, client: Client) -> float | None:
        limits = self.limits
        return limits.signed_in_device_seconds_per_hour if client.signed_in else limits.device_seconds_per_hour

    @contextlib.contextmanager
    def _job(self, request, kind: str) -> Iterator[Job]:
        """Join the device line as the request's client, with the session marked busy meanwhile."""
        client = self.client(request)
        with self.line.enter(client.key, kind, described=client.described, quota=self._quota(client)) as job, \
                self.store.busy(request):
            yield job

    def _stop_check(self, request, kind: str) -> "StopCheck":
        """True once Stop is pressed, the tab is closed, or the caller's connection is gone."""
        return StopCheck(self.store.stop_check(request, kind), client_connected())

    # -- reading visitors' files in the bounded pool -------------------------------------------
    @contextlib.contextmanager
    def _reading(self, request, what: str) -> Iterator[Callable]:
        """Hold one of the client's read slots; yields `local(value, suffixes)`, which gives an
        upload's path, or downloads a URL (within the URL bounds) into a folder deleted afterwards."""
        scratch: list[Path] = []

        def local(value, suffixes: tuple[str, ...] | None = None) -> Path | None:
            text = file_text(value)
            if text is None or not is_url(text):
                return file_path(value)
            folder = self.store.folder(request) / f"download-{uuid.uuid4().hex}"
            scratch.append(folder)
            return download(text, folder, suffixes=suffixes, max_bytes=self.limits.max_url_bytes,
                            seconds=self.limits.url_seconds)

        with self.reads.slot(self.client(request), what):
            try:
                yield local
            finally:
                for folder in scratch:
                    shutil.rmtree(folder, ignore_errors=True)

    def _read_cloud(self, cloud, example, request, *, warn: bool = True) -> LoadedCloud:
        """The chosen cloud, downloaded if it is a URL and parsed once, in a read slot (a built-in
        example needs no slot)."""
        if file_path(cloud) is None:
            return self._load_cloud(None, example, warn=warn)
        with self._reading(request, "the point cloud") as local:
            return self._load_cloud(local(cloud, SUPPORTED_EXTENSIONS), example, warn=warn)

    def _read_mesh(self, value, request, title: str) -> trimesh.Trimesh:
        """A visitor's mesh (upload or URL), read within the input bounds in a read slot."""
        with self._reading(request, "the mesh") as local:
            try:
                return load_mesh(local(value, MESH_EXTENSIONS), limits=self.limits.input_limits())
            except DiffCDError as error:
                raise gr.Error(str(error), title=title) from None

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

    @staticmethod
    def _network_absent(current: dict | None) -> str | None:
        """A sentence when the current model is a run without a network (Screened Poisson), else None."""
        if not current or current.get("fitted") is not None or not current.get("model_dir"):
            return None
        return network_absent_reason(current["model_dir"], name=current.get("label") or "This run")

    def _require_network(self, current: dict) -> None:
        """Refuse, with network_absent_reason's sentence, to re-mesh or push a run that has no network."""
        if reason := self._network_absent(current):
            raise gr.Error(reason, title="No network in this run")

    def _sdf(self, current: dict):
        """The current model: in memory, else loaded within the bounds of a network this app accepts."""
        if current.get("fitted") is not None:
            return current["fitted"]
        self._require_network(current)
        return load_sdf(current["model_dir"], limits=self.limits.network_limits())

    def _model_folder(self, current: dict, request) -> str:
        """A folder holding the current model's export (written now if it is only in memory)."""
        if current.get("fitted") is None:
            self._require_network(current)
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

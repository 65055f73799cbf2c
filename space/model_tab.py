"""Re-mesh or evaluate a model: the session's current one (its last fit or pull), or a checkpoint zip.

/remesh_checkpoint and /evaluate_checkpoint need no session: the checkpoint zip that /fit
and /pull_checkpoint return comes back as an upload or a URL (what MCP callers can do).
`ModelTab` holds the events; `ModelSection` is their part of the Fit tab (an accordion under the
results), laid out and bound here.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import trimesh

from diffcd import DiffCDError, load_mesh, load_sdf
from diffcd.metrics import cloud_surface_distances, evaluate_mesh
from diffcd_space import overlay
from diffcd_space.checkpoint_upload import unpack_checkpoint
from diffcd_space.context import AppContext
from diffcd_space.errors import catch_all
from diffcd_space.events import CHECK, COMPUTE
from diffcd_space.outputs import mesh_files, metrics_table
from diffcd_space.remote import BoundedFile
from diffcd_space.validation import MAX_RESOLUTION, MIN_RESOLUTION, check_resolution

MESH_FILE_TYPES = [".ply", ".obj", ".off", ".stl", ".glb"]


class ModelTab(AppContext):
    """/extract_mesh, /evaluate, /remesh_checkpoint and /evaluate_checkpoint."""

    def check_extract(self, resolution, current) -> None:
        """The UI's first step before /extract_mesh."""
        self._require_network(self._current(current))
        check_resolution(resolution)

    @catch_all("Cannot mesh this model")
    def extract_mesh(self, resolution: int = 128, current: dict | None = None,
                     request: gr.Request = None) -> tuple[str, list[str], str, dict]:
        """Mesh this session's current model (its last fit or pull) at another resolution.

        A Screened Poisson run has no network to mesh again: it is refused with a sentence.

        Args:
            resolution: marching-cubes grid resolution, 16 to 512 (time grows with its cube).

        Returns:
            The mesh (GLB), downloads (GLB, PLY, OBJ) and a status line.
        """
        current = self._current(current)
        self._require_network(current)
        resolution = check_resolution(resolution)
        stopped = self._stop_check(request, "fit")
        with self._job(request, "re-mesh") as job:
            job.wait_quietly()
            budget = job.budget(self.limits.max_request_seconds)
            sdf = self._sdf(current)
            start = time.perf_counter()
            mesh = sdf.extract_mesh(resolution, max_faces=self.limits.max_mesh_faces,
                                    should_stop=lambda: budget.expired() or stopped())
            seconds = time.perf_counter() - start
            state = dict(current)
            if current.get("fitted") is not None:  # kept in memory after a failed write: write it now
                state.update(model_dir=self._model_folder(current, request), fitted=None)
            folder = self.store.fresh_folder(request, "mesh")
            glb, ply, obj = mesh_files(mesh, folder, f"{current['label']}-{resolution}")
        state["mesh"] = str(ply)
        status = (f"**Meshed {current['label']} at {resolution}³** in {seconds:.1f} s: "
                  f"{len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces.")
        return str(glb), [str(glb), str(ply), str(obj)], status, state

    @catch_all("Cannot evaluate")
    def evaluate(self, ground_truth: str | None = None, current: dict | None = None,
                 request: gr.Request = None) -> pd.DataFrame:
        """Score this session's current mesh: against a ground-truth mesh and against its cloud.

        Args:
            ground_truth: a triangle mesh (.ply .obj .off .stl .glb) in the cloud's coordinates;
                empty uses the example's ground truth when the fit was of an example.

        Returns:
            A table of metrics: Chamfer, squared Chamfer, normal angle, Hausdorff and F-score
            against the ground truth, and both directed cloud↔surface distances when the cloud is
            known. Distances are in the cloud's own units.
        """
        current = self._current(current)
        if not current.get("mesh") or not Path(current["mesh"]).is_file():
            raise gr.Error("This model has no mesh (no surface was found); mesh it first with a "
                           "finer resolution, or fit again.")
        cloud_path = current.get("cloud")
        has_cloud = bool(cloud_path) and Path(cloud_path).is_file()
        if not ground_truth and not current.get("gt_mesh") and not has_cloud:
            raise gr.Error("Upload a ground-truth mesh to score this model (it has no input cloud "
                           "to compare with).")
        if ground_truth:  # the visitor's file: read in a read slot within the input bounds
            reference = self._read_mesh(ground_truth, request, "Cannot read the ground-truth mesh")
        elif current.get("gt_mesh"):  # a built-in example's own mesh
            reference = load_mesh(current["gt_mesh"])
        else:
            reference = None
        try:
            mesh = trimesh.load(current["mesh"], process=False)
            summary: dict = {}
            if reference is not None:
                summary["eval"] = evaluate_mesh(mesh, reference)
            if has_cloud:
                points = np.load(cloud_path, allow_pickle=False)
                summary["cloud_distances"] = cloud_surface_distances(points, mesh)
        except DiffCDError as error:
            raise gr.Error(str(error), title="Cannot evaluate") from None
        return metrics_table(summary, current.get("units") or "")


    def _checkpoint_mesh(self, checkpoint: str | None, resolution, request, kind: str, ground_truth=None):
        """Join the compute line, then read a visitor's checkpoint zip (and ground-truth mesh) in a
        read slot within the bounds, load the model and mesh it once the job has the device.

        Returns (the mesh, the session folder it is in, seconds meshing took, the ground truth or None)."""
        if not checkpoint:
            raise gr.Error("Give a checkpoint zip (the *-checkpoint.zip that Fit and Pull offer), "
                           "as an upload or an http(s) URL.", title="Missing checkpoint")
        resolution = check_resolution(resolution)
        stopped = self._stop_check(request, "fit")
        with self._job(request, kind) as job:
            folder = self.store.fresh_folder(request, kind)
            with self._reading(request, "the checkpoint zip") as local:
                unpack_checkpoint(local(checkpoint, (".zip",)), folder, max_file_bytes=self.limits.max_upload_bytes,
                                  network=self.limits.network_limits())
            reference = None if ground_truth is None else \
                self._read_mesh(ground_truth, request, "Cannot read the ground-truth mesh")
            job.wait_quietly()
            budget = job.budget(self.limits.max_request_seconds)
            try:
                sdf = load_sdf(folder, limits=self.limits.network_limits(), name="The checkpoint zip")
            except DiffCDError as error:
                raise gr.Error(str(error), title="Cannot use this checkpoint zip") from None
            budget.check("Loading this checkpoint")
            start = time.perf_counter()
            mesh = sdf.extract_mesh(resolution, max_faces=self.limits.max_mesh_faces,
                                    should_stop=lambda: budget.expired() or stopped())
            seconds = time.perf_counter() - start
        return mesh, folder, seconds, reference

    @staticmethod
    def _label(checkpoint: str) -> str:
        """A file-name stem from the zip's name (already a safe name in Gradio's cache)."""
        stem = Path(checkpoint).name.removesuffix(".zip").removesuffix("-checkpoint")
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60].strip(".") or "checkpoint"

    @catch_all("Cannot mesh this checkpoint")
    def remesh_checkpoint(self, checkpoint: str | None, resolution: int = 128,
                          request: gr.Request = None) -> tuple[str, list[str], str]:
        """Mesh a fitted SDF given as its checkpoint zip, at the resolution you choose.

        The checkpoint zip is the *-checkpoint.zip download that fit and pull_checkpoint
        return (config.json and model.safetensors); no session is needed.

        Args:
            checkpoint: the checkpoint zip, as an upload or an http(s) URL (e.g. the URL of the zip
                a fit returned).
            resolution: marching-cubes grid resolution, 16 to 512 (time grows with its cube).

        Returns:
            The mesh (GLB), downloads (GLB, PLY, OBJ) and a status line.
        """
        mesh, folder, seconds, _ = self._checkpoint_mesh(checkpoint, resolution, request, "remesh")
        resolution = check_resolution(resolution)
        label = self._label(checkpoint)
        glb, ply, obj = mesh_files(mesh, folder, f"{label}-{resolution}")
        status = (f"**Meshed {label} at {resolution}³** in {seconds:.1f} s: "
                  f"{len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces.")
        return str(glb), [str(glb), str(ply), str(obj)], status

    @catch_all("Cannot evaluate this checkpoint")
    def evaluate_checkpoint(self, checkpoint: str | None, ground_truth: str | None, resolution: int = 128,
                            request: gr.Request = None) -> pd.DataFrame:
        """Score a fitted SDF given as its checkpoint zip against a ground-truth mesh.

        The model is meshed at `resolution`, then compared with the ground truth; no session is
        needed.

        Args:
            checkpoint: the checkpoint zip (the *-checkpoint.zip that fit and
                pull_checkpoint return), as an upload or an http(s) URL.
            ground_truth: a triangle mesh (.ply .obj .off .stl .glb) in the cloud's coordinates, as
                an upload or an http(s) URL.
            resolution: marching-cubes grid resolution of the scored mesh, 16 to 512.

        Returns:
            A table of metrics against the ground truth: Chamfer, squared Chamfer, normal angle,
            Hausdorff and F-score, in the cloud's own units.
        """
        if not ground_truth:
            raise gr.Error("Give a ground-truth mesh (.ply .obj .off .stl .glb) to score the checkpoint "
                           "against.", title="Missing ground truth")
        mesh, _, _, reference = self._checkpoint_mesh(checkpoint, resolution, request, "evaluate",
                                                      ground_truth=ground_truth)
        if len(mesh.faces) == 0:
            raise gr.Error("The checkpoint has no surface at this resolution; try a finer resolution.")
        try:
            summary = {"eval": evaluate_mesh(mesh, reference)}
        except DiffCDError as error:
            raise gr.Error(str(error), title="Cannot evaluate this checkpoint") from None
        return metrics_table(summary)


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """The Fit tab's "Re-mesh or evaluate" accordion: the current model, or a checkpoint zip."""

    resolution: gr.Slider
    remesh_button: gr.Button
    ground_truth: BoundedFile
    evaluate_button: gr.Button
    checkpoint: BoundedFile
    remesh_checkpoint_button: gr.Button
    evaluate_checkpoint_button: gr.Button

    @classmethod
    def layout(cls) -> ModelSection:
        with gr.Accordion("Re-mesh or evaluate the current model", open=False):
            with gr.Row():
                resolution = gr.Slider(MIN_RESOLUTION, MAX_RESOLUTION, value=128, step=8, label="Mesh resolution")
                remesh_button = gr.Button("Extract mesh")
            with gr.Row():
                ground_truth = BoundedFile(label="Ground-truth mesh (optional for examples)",
                                           file_types=MESH_FILE_TYPES, type="filepath", height=110)
                evaluate_button = gr.Button("Evaluate")
            gr.Markdown("…or mesh and score a checkpoint zip (a *-checkpoint.zip download) "
                        "instead of the current model:")
            with gr.Row():
                checkpoint = BoundedFile(label="Checkpoint zip", file_types=[".zip"], type="filepath", height=110,
                                         elem_id="fit-checkpoint-upload")
                with gr.Column(min_width=160):
                    remesh_checkpoint_button = gr.Button("Mesh the checkpoint")
                    evaluate_checkpoint_button = gr.Button("Evaluate the checkpoint")
        return cls(resolution, remesh_button, ground_truth, evaluate_button, checkpoint, remesh_checkpoint_button,
                   evaluate_checkpoint_button)

    def bind(self, events: ModelTab, *, surface, downloads, status, metrics, show_cloud, current) -> None:
        """/extract_mesh, /evaluate, /remesh_checkpoint and /evaluate_checkpoint, shown in the Fit
        tab's viewer (`surface`), downloads, status line and metrics table."""
        self.remesh_button.click(events.check_extract, [self.resolution, current], None, **CHECK) \
            .success(events.extract_mesh, [self.resolution, current], [surface, downloads, status, current],
                     api_name="extract_mesh", **COMPUTE) \
            .success(overlay.after_result, [show_cloud, current], [surface], api_visibility="private")
        self.evaluate_button.click(events.evaluate, [self.ground_truth, current], [metrics], api_name="evaluate",
                                   concurrency_limit=2)
        # The same on a checkpoint zip (upload or URL): no session model, so MCP callers can use them.
        self.remesh_checkpoint_button.click(events.remesh_checkpoint, [self.checkpoint, self.resolution],
                                            [surface, downloads, status], api_name="remesh_checkpoint", **COMPUTE)
        self.evaluate_checkpoint_button.click(events.evaluate_checkpoint,
                                              [self.checkpoint, self.ground_truth, self.resolution], [metrics],
                                              api_name="evaluate_checkpoint", **COMPUTE)

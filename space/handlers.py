"""The app's event functions. Each public one is an API endpoint: typed, with its docstring as the
endpoint's documentation. Validation comes first; work happens in the session's own folder.

The session's current model (the last fit or pull) lives in a gr.State, a small dict of paths:
    {"model_dir", "mesh", "cloud", "gt_mesh", "label", "units"}
so /extract_mesh, /evaluate and /push_checkpoint act on what this session made, never on
another session's files.
"""

from __future__ import annotations

import math
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
import pandas as pd
import trimesh

from diffcd import METHODS, DiffCDError, Fitter, NoSurfaceError, load_mesh, load_sdf
from diffcd.metrics import cloud_surface_distances, evaluate_mesh
from diffcd.runs import CLOUD_FILE, write_run
from space import viewer
from space.presets import AppPreset
from space.sessions import SHARED_FOLDER, SessionStore
from space.validation import (LoadedCloud, check_method, check_methods, check_preset, check_repo_id,
                              check_resolution, check_settings, load_cloud)

MAX_VIEWERS = len(METHODS)
EXPORT_FILES = ("config.json", "model.safetensors", "summary.json", "metrics.csv", "eval.json",
                "cloud_distances.json")
METRIC_ROWS = (
    # (group, key, label, what it says)
    ("eval", "chamfer", "Chamfer distance (vs ground truth)",
     "½ (mean GT→fit + mean fit→GT distance); lower is better"),
    ("eval", "chamfer_squared", "Squared Chamfer (vs ground truth)", "the same with squared distances"),
    ("eval", "normal_angle_deg", "Normal angle error (°)", "mean angle between matched normals"),
    ("eval", "hausdorff", "Hausdorff (vs ground truth)", "the largest distance either way"),
    ("eval", "fscore", "F-score", "share of both surfaces within the threshold of the other"),
    ("eval", "fscore_threshold", "F-score threshold", "1 % of the ground truth's longest side"),
    ("cloud_distances", "cloud_to_surface_mean", "Cloud → surface, mean",
     "how well the surface explains the points"),
    ("cloud_distances", "cloud_to_surface_max", "Cloud → surface, max", "the worst-explained point"),
    ("cloud_distances", "surface_to_cloud_mean", "Surface → cloud, mean",
     "large: surface where there is no data"),
    ("cloud_distances", "surface_to_cloud_max", "Surface → cloud, max", "the most spurious surface point"),
)
COMPARE_COLUMNS = (
    ("cloud_distances", "cloud_to_surface_mean", "cloud→surface mean"),
    ("cloud_distances", "surface_to_cloud_mean", "surface→cloud mean"),
    ("cloud_distances", "surface_to_cloud_max", "surface→cloud max"),
    ("eval", "chamfer", "Chamfer (GT)"),
    ("eval", "normal_angle_deg", "normal angle ° (GT)"),
    ("eval", "fscore", "F-score (GT)"),
    ("eval", "hausdorff", "Hausdorff (GT)"),
)


def _seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "…"
    if value < 60:
        return f"{value:.0f} s"
    return f"{int(value // 60)} min {int(value % 60):02d} s"


def _number(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _error_message(error: BaseException, secret: str | None = None) -> str:
    text = str(error) or type(error).__name__
    return text.replace(secret, "***") if secret else text


class Handlers:
    """Event functions bound to the app's settings (presets, session store, Hub endpoint)."""

    def __init__(self, *, presets: dict[str, AppPreset], store: SessionStore, max_points: int,
                 hub_endpoint: str | None = None, max_fit_seconds: float | None = None):
        self.presets = presets
        self.max_fit_seconds = max_fit_seconds
        self.store = store
        self.max_points = max_points
        self.hub_endpoint = hub_endpoint
        self._examples: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------------- input clouds
    def _cloud_info(self, loaded: LoadedCloud) -> str:
        cloud = loaded.cloud
        lo, hi = cloud.points.min(axis=0), cloud.points.max(axis=0)
        size = " × ".join(viewer.format_length(float(s), loaded.units) for s in hi - lo)
        lines = []
        if loaded.example:
            lines.append(f"**{loaded.example.title}** — {loaded.example.description}")
        else:
            lines.append(f"**{Path(cloud.source).name}**")
        extra = " with normals" if cloud.normals is not None else ""
        lines.append(f"{len(cloud):,} points{extra}; bounding box {size}.")
        if loaded.example and loaded.example.gt_mesh:
            lines.append("Has a ground-truth mesh: fits are scored against it.")
        lines += [f"⚠ {note}" for note in loaded.notes]
        return "\n\n".join(lines)

    def example_preview(self, example_id: str) -> tuple[str, str]:
        """The preview GLB and description of a built-in example, built once per app."""
        if example_id not in self._examples:
            loaded = load_cloud(None, example_id, max_points=self.max_points)
            folder = self.store.root / SHARED_FOLDER
            folder.mkdir(exist_ok=True)
            path = viewer.cloud_glb(loaded.cloud.points, folder / f"{example_id}-cloud.glb")
            self._examples[example_id] = (str(path), self._cloud_info(loaded))
        return self._examples[example_id]

    def load_example(self, example: str) -> tuple[str, str]:
        """Show a built-in example point cloud in 3D, with what it is.

        Args:
            example: the example's id, e.g. "torus" (see the dropdown's choices).

        Returns:
            The cloud as a GLB of small glyphs (a subsample of at most 6,000 points), and a
            Markdown description (points, size, whether it has a ground-truth mesh).
        """
        if not example:
            raise gr.Error("Pick an example first.")
        return self.example_preview(example)

    def preview_cloud(self, cloud: str, request: gr.Request) -> tuple[str, str]:
        """Check an uploaded point cloud and show it in 3D before fitting.

        Args:
            cloud: a point cloud file: .npy/.npz (N×3 or N×6 float array), .xyz/.txt/.pts (3 or 6
                columns), .ply/.obj/.off/.stl (points, or a mesh whose surface is sampled).

        Returns:
            The cloud as a GLB of small glyphs and a Markdown description. A cloud larger than the
            app's limit is downsampled, with a warning.
        """
        loaded = load_cloud(cloud, None, max_points=self.max_points)
        folder = self.store.folder(request)
        path = viewer.cloud_glb(loaded.cloud.points, folder / f"upload-{time.time_ns()}.glb")
        for old in folder.glob("upload-*.glb"):
            if old != path:
                old.unlink(missing_ok=True)
        return str(path), self._cloud_info(loaded)

    def clear_preview(self) -> tuple[None, str]:
        return None, ""

    # ------------------------------------------------------------------------- fitting
    def preset_settings(self, preset: str, method: str) -> tuple:
        """The advanced settings a preset and method amount to, to fill the form with.

        Returns (steps, width, depth, eikonal weight, area weight, mesh resolution); a weight the
        method does not have is 0 and its field is locked.
        """
        if preset not in self.presets or method not in METHODS:
            return (gr.skip(),) * 6
        config = self.presets[preset].config(method)
        weights = {name: getattr(config.method_config, name, None) for name in ("eikonal_weight", "area_weight")}
        return (
            config.schedule.steps, config.network.width, config.network.hidden_layers,
            *(gr.Number(value=w if w is not None else 0, interactive=w is not None) for w in weights.values()),
            config.mesh_resolution,
        )

    def preset_steps(self, preset: str) -> int | Any:
        """The preset's number of steps (the comparison form's default)."""
        return self.presets[preset].config("diffcd").schedule.steps if preset in self.presets else gr.skip()

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

    def _snapshot(self, fitter: Fitter, resolution: int, path: Path) -> str | None:
        try:
            mesh = fitter.fitted().extract_mesh(resolution)
        except NoSurfaceError:
            return None
        return str(viewer.mesh_glb(mesh, path))

    @staticmethod
    def _progress(event, *, stage: str, title: str = "") -> dict:
        return {
            "stage": stage,
            "method": title,
            "step": int(event.step) if event else 0,
            "total_steps": int(event.total_steps) if event else 0,
            "steps_per_second": round(float(event.steps_per_second), 3) if event else 0.0,
            "elapsed_seconds": round(float(event.elapsed), 2) if event else 0.0,
            "eta_seconds": (round(float(event.eta), 1) if event and math.isfinite(event.eta) else None),
            "valid_surface_fraction": (None if not event or event.valid_surface_fraction is None
                                       else round(float(event.valid_surface_fraction), 4)),
            "losses": {k: float(v) for k, v in (event.losses if event else {}).items()},
        }

    @staticmethod
    def _status(event, title: str, *, prefix: str = "") -> str:
        valid = ("" if event.valid_surface_fraction is None
                 else f" · valid surface samples {100 * event.valid_surface_fraction:.1f} %")
        rate = f"{event.steps_per_second:.1f} steps/s" if event.steps_per_second else "compiling…"
        return (f"{prefix}**{title}: step {event.step:,} / {event.total_steps:,}** · {rate} · "
                f"ETA {_seconds(event.eta)} · elapsed {_seconds(event.elapsed)}{valid} · "
                f"loss {event.losses.get('loss', float('nan')):.4g}")

    def _fit_stream(self, fitter: Fitter, preset: AppPreset, folder: Path, stop) -> Iterator[tuple]:
        """(event, snapshot path or None) after every chunk; the last event has done=True."""
        last_snapshot = -math.inf
        kept: list[Path] = []
        for event in fitter.run():
            over_time = self.max_fit_seconds is not None and event.elapsed > self.max_fit_seconds
            if stop.is_set() or over_time:
                fitter.cancel()
            if event.done:
                yield event, None
                return
            snapshot = None
            if time.monotonic() - last_snapshot >= preset.snapshot_seconds:
                path = folder / f"snapshot-{event.step:07d}.glb"
                snapshot = self._snapshot(fitter, preset.snapshot_resolution, path)
                last_snapshot = time.monotonic()
                if snapshot:
                    kept.append(path)
                    while len(kept) > 2:  # the viewer has already copied older ones
                        kept.pop(0).unlink(missing_ok=True)
            yield event, snapshot

    def _finish_run(self, folder: Path, result, config, loaded: LoadedCloud, gt, preset: AppPreset) -> dict:
        """Mesh, score and export a finished fit into folder/run; returns the run summary."""
        run_dir = folder / "run"
        summary = write_run(
            run_dir, result, resolution=config.mesh_resolution, cloud_points=loaded.cloud.points,
            gt_mesh=gt, eval_samples=preset.eval_samples,
            metadata={"cloud": loaded.label, "points": len(loaded.cloud), "app": "diffcd space",
                      "preset": preset.name},
        )
        return summary

    @staticmethod
    def _mesh_files(mesh: trimesh.Trimesh, folder: Path, name: str) -> list[Path]:
        """The mesh as name.glb (what the viewer shows), name.ply and name.obj; GLB first."""
        glb = viewer.mesh_glb(mesh, folder / f"{name}.glb")
        ply, obj = folder / f"{name}.ply", folder / f"{name}.obj"
        mesh.export(ply)
        obj.write_text(mesh.export(file_type="obj"))
        return [glb, ply, obj]

    @staticmethod
    def _checkpoint_zip(folder: Path, name: str, files: tuple[str, ...]) -> Path:
        """name-checkpoint.zip of those of `files` that folder has, under a top folder `name`."""
        archive = folder / f"{name}-checkpoint.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in files:
                if (folder / file).is_file():
                    zf.write(folder / file, f"{name}/{file}")
        return archive

    def _downloads(self, run_dir: Path, name: str) -> tuple[str | None, list[str]]:
        """(the GLB the viewer shows, the download files): the shown GLB is the downloaded one."""
        files: list[Path] = []
        if (run_dir / "mesh.ply").is_file():
            files = self._mesh_files(trimesh.load(run_dir / "mesh.ply", process=False), run_dir, name)
        files.append(self._checkpoint_zip(run_dir, name, EXPORT_FILES))
        return (str(files[0]) if len(files) > 1 else None), [str(f) for f in files]

    @staticmethod
    def metrics_table(summary: dict, units: str = "") -> pd.DataFrame:
        """Rows (metric, value, what it says) for the metrics present in a run summary."""
        rows = []
        for group, key, label, meaning in METRIC_ROWS:
            value = (summary.get(group) or {}).get(key)
            if value is None:
                continue
            text = _number(value)
            if units and key not in ("normal_angle_deg", "fscore", "chamfer_squared"):
                text += f" {units}"
            rows.append((label, text, meaning))
        for key, label, meaning in (
            ("steps", "Steps", "training steps done"),
            ("fit_seconds", "Fit time (s)", "wall time, compilation and snapshots included"),
            ("steps_per_second", "Steps per second", "training only"),
            ("compile_seconds", "Compile time (s)", "XLA compilation of the training chunk"),
            ("nan_steps_skipped", "NaN steps skipped", "updates dropped for a non-finite gradient"),
            ("mesh_vertices", "Mesh vertices", "of the final mesh"),
        ):
            if summary.get(key) is not None:
                rows.append((label, _number(summary[key]), meaning))
        return pd.DataFrame(rows, columns=["metric", "value", "what it says"])

    def check_fit(self, cloud, example, method, preset, steps, width, depth, eikonal_weight, area_weight,
                  seed, mesh_resolution) -> None:
        """The UI's first step before /fit: fail fast, before waiting in the queue for the worker."""
        load_cloud(cloud, example, max_points=self.max_points)
        check_method(method)
        settings = check_settings(method, steps=steps, width=width, depth=depth, eikonal_weight=eikonal_weight,
                                  area_weight=area_weight, seed=seed, resolution=mesh_resolution)
        self._config(check_preset(preset, self.presets), method, settings)

    def fit(
        self,
        cloud: str | None = None,
        example: str | None = None,
        method: str = "diffcd",
        preset: str = "cpu-quick",
        steps: int | None = None,
        width: int | None = None,
        depth: int | None = None,
        eikonal_weight: float | None = None,
        area_weight: float | None = None,
        seed: int = 0,
        mesh_resolution: int | None = None,
        current: dict | None = None,
        request: gr.Request = None,
    ) -> Iterator[tuple]:
        """Fit a signed distance function to a point cloud, streaming progress as it trains.

        Args:
            cloud: a point cloud file (.npy .npz .xyz .txt .pts .ply .obj .off .stl), uploaded or
                given as an http(s) URL (at most 100 MB, downloaded within 30 s); when given it is
                used instead of `example`.
            example: a built-in example id (e.g. "torus"), used when `cloud` is empty.
            method: "diffcd", "igr", "neural-pull" or "siren".
            preset: a fit size: "cpu-quick", "gpu-demo", "paper" (see the preset dropdown).
            steps: training steps; None uses the preset's.
            width: features per hidden layer; None uses the preset's.
            depth: hidden layers (a skip connection is put half-way); None uses the preset's.
            eikonal_weight: λ of the eikonal term; None uses the method's paper value.
            area_weight: μ of the area term (not for Neural-Pull); None uses the method's value.
            seed: seed of initialisation and sampling; the same seed gives the same fit.
            mesh_resolution: grid resolution of the final mesh; None uses the preset's.

        Returns:
            A stream of updates. Each carries the latest mesh snapshot (GLB, every few seconds),
            the loss curve, a status line, and a progress dict (step, total_steps,
            steps_per_second, eta_seconds, valid_surface_fraction, losses, stage). The last update
            adds the final mesh, a metrics table (against the ground truth when the example has
            one; cloud↔surface distances always) and downloads: GLB, PLY, OBJ and a checkpoint
            zip (config.json + model.safetensors, loadable with diffcd.load_sdf).
        """
        loaded = load_cloud(cloud, example, max_points=self.max_points, warn=False)
        check_method(method)
        app_preset = check_preset(preset, self.presets)
        settings = check_settings(method, steps=steps, width=width, depth=depth,
                                  eikonal_weight=eikonal_weight, area_weight=area_weight, seed=seed,
                                  resolution=mesh_resolution)
        config = self._config(app_preset, method, settings)
        title = METHODS[method].title
        stop = self.store.stop_flag(request)
        stop.clear()
        folder = self.store.fresh_folder(request, "fit")
        notes = "".join(f"⚠ {n}\n\n" for n in loaded.notes)
        yield (gr.skip(), None, f"{notes}Preparing the fit of **{loaded.label}** with {title} "
               f"({config.network.hidden_layers}×{config.network.width} network, "
               f"{config.schedule.steps:,} steps)…", self._progress(None, stage="preparing", title=title),
               None, None, gr.skip())
        try:
            fitter = Fitter(loaded.cloud, config)
            for event, snapshot in self._fit_stream(fitter, app_preset, folder, stop):
                if event.done:
                    break
                yield (snapshot or gr.skip(), viewer.loss_frame(fitter.history),
                       self._status(event, title, prefix=notes),
                       self._progress(event, stage="fitting", title=title), gr.skip(), gr.skip(), gr.skip())
            if self.store.is_closed(request):  # the tab was closed: no one to show the result to
                shutil.rmtree(folder, ignore_errors=True)
                return
            result = event.result
            cancelled = bool(result.summary.get("cancelled"))
            yield (gr.skip(), viewer.loss_frame(fitter.history),
                   f"{notes}{'Stopped' if cancelled else 'Trained'} at step {result.summary['steps']:,}; "
                   f"meshing at {config.mesh_resolution}³ and computing metrics…",
                   self._progress(event, stage="meshing", title=title), gr.skip(), gr.skip(), gr.skip())
            summary = self._finish_run(folder, result, config, loaded, self._ground_truth(loaded), app_preset)
        except DiffCDError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise gr.Error(str(error), title="The fit failed") from None
        run_dir = folder / "run"
        shown, downloads = self._downloads(run_dir, f"{loaded.label}-{method}")
        state = {
            "model_dir": str(run_dir), "mesh": str(run_dir / "mesh.ply") if summary.get("surface_found") else None,
            "cloud": str(run_dir / CLOUD_FILE), "label": f"{loaded.label}-{method}", "units": loaded.units,
            "gt_mesh": str(loaded.example.gt_mesh) if loaded.example and loaded.example.gt_mesh else None,
        }
        progress = self._progress(event, stage="cancelled" if cancelled else "done", title=title)
        progress["summary"] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
        verb = "Stopped" if cancelled else "Done"
        if cancelled and not stop.is_set():
            notes += (f"⚠ This app stops a fit after {_seconds(self.max_fit_seconds)}; the model so far is "
                      "below. Run longer fits locally (python app.py) or with the CLI.\n\n")
        status = (f"{notes}**{verb}: {title}, {summary['steps']:,} steps in {_seconds(summary['fit_seconds'])}** "
                  f"(compile {summary['compile_seconds']:.1f} s, {summary['steps_per_second']:.1f} steps/s, "
                  f"{summary.get('backend', 'cpu').upper()})")
        if shown:
            status += f" · final mesh {config.mesh_resolution}³: {summary['mesh_vertices']:,} vertices"
            final = shown
        else:
            status += f" · **no surface found** — {summary.get('mesh_error', '')} The viewer keeps the last snapshot."
            final = gr.skip()
        yield (final, viewer.loss_frame(fitter.history), status, progress,
               self.metrics_table(summary, loaded.units), downloads, state)

    def stop(self, request: gr.Request) -> str:
        """Stop this session's running fit or comparison after the current chunk of steps.

        The fit keeps what it learned so far: its last snapshot stays in the viewer and the
        stopped model is meshed, scored and offered for download as usual.

        Returns:
            A status line.
        """
        self.store.stop_flag(request).set()
        return "Stopping after the current chunk of steps…"

    # ------------------------------------------------------------------------- comparison
    def check_compare(self, cloud, example, methods, preset, seed, steps) -> None:
        """The UI's first step before /compare."""
        load_cloud(cloud, example, max_points=self.max_points)
        chosen = check_methods(methods)
        settings = check_settings("diffcd", steps=steps, seed=seed)
        app_preset = check_preset(preset, self.presets)
        for method in chosen:
            self._config(app_preset, method, settings)

    def compare(
        self,
        cloud: str | None = None,
        example: str | None = None,
        methods: list[str] | None = None,
        preset: str = "cpu-quick",
        seed: int = 0,
        steps: int | None = None,
        request: gr.Request = None,
    ) -> Iterator[tuple]:
        """Fit one cloud with two to four methods, one after another, with the same seed.

        Each method uses its paper loss weights and the preset's network and schedule. Every
        final mesh is coloured by each vertex's distance to the nearest input point, on one
        scale for all methods (0 to 2 % of the cloud's longest side), so surface that no data
        supports shows up red.

        Args:
            cloud: a point cloud file, uploaded or given as an http(s) URL; when given it is used
                instead of `example`.
            example: a built-in example id, used when `cloud` is empty.
            methods: two to four of "diffcd", "igr", "neural-pull", "siren".
            preset: a fit size (see the preset dropdown).
            seed: the seed every method uses.
            steps: training steps per method; None uses the preset's.

        Returns:
            A stream of updates: one viewer per method (in the order diffcd, igr, neural-pull,
            siren among those chosen; unused viewers empty), the metrics table with one row per
            finished method, a status line and the colour legend (HTML).
        """
        loaded = load_cloud(cloud, example, max_points=self.max_points, warn=False)
        chosen = check_methods(methods)
        app_preset = check_preset(preset, self.presets)
        settings = check_settings("diffcd", steps=steps, seed=seed)
        configs = {m: self._config(app_preset, m, settings) for m in chosen}
        stop = self.store.stop_flag(request)
        stop.clear()
        folder = self.store.fresh_folder(request, "compare")
        scale = viewer.DISTANCE_SCALE * viewer.longest_side(loaded.cloud.points)
        legend = viewer.legend_html(scale, loaded.units)
        gt = self._ground_truth(loaded)
        views: list[Any] = [gr.Model3D(value=None, label=METHODS[m].title, visible=True) for m in chosen]
        views += [gr.Model3D(value=None, visible=False)] * (MAX_VIEWERS - len(chosen))
        rows: list[dict] = []
        table = lambda: pd.DataFrame(rows) if rows else None  # noqa: E731
        notes = "".join(f"⚠ {n}\n\n" for n in loaded.notes)
        yield (*views, None, f"{notes}Comparing {', '.join(METHODS[m].title for m in chosen)} on "
               f"**{loaded.label}** (seed {settings['seed']})…", legend)
        skip_views = [gr.skip()] * MAX_VIEWERS
        finals: list[Any] = [None] * MAX_VIEWERS  # the last update repeats every mesh, for API callers
        for index, method in enumerate(chosen):
            title = METHODS[method].title
            prefix = f"{notes}Method {index + 1} of {len(chosen)} · "
            if stop.is_set():
                break
            method_folder = folder / method
            method_folder.mkdir()
            try:
                fitter = Fitter(loaded.cloud, configs[method])
                for event, snapshot in self._fit_stream(fitter, app_preset, method_folder, stop):
                    if event.done:
                        break
                    update = list(skip_views)
                    if snapshot:
                        update[index] = snapshot
                    yield (*update, gr.skip(), self._status(event, title, prefix=prefix), gr.skip())
                if self.store.is_closed(request):
                    shutil.rmtree(folder, ignore_errors=True)
                    return
                yield (*skip_views, gr.skip(), f"{prefix}**{title}**: meshing and scoring…", gr.skip())
                summary = self._finish_run(method_folder, event.result, configs[method], loaded, gt,
                                           app_preset)
            except DiffCDError as error:
                raise gr.Error(f"{title} failed: {error}", title="The comparison failed") from None
            row = {"method": title, "steps": summary["steps"], "fit s": round(summary["fit_seconds"], 1),
                   "steps/s": round(summary["steps_per_second"], 1)}
            for group, key, label in COMPARE_COLUMNS:
                value = (summary.get(group) or {}).get(key)
                if value is not None:
                    row[label] = float(f"{value:.4g}")
            update = list(skip_views)
            if summary.get("surface_found"):
                mesh = trimesh.load(method_folder / "run" / "mesh.ply", process=False)
                path = viewer.distance_mesh_glb(mesh, loaded.cloud.points, scale,
                                                method_folder / f"{method}-distance.glb")
                finals[index] = update[index] = str(path)
            else:
                row["note"] = "no surface found"
            if summary.get("cancelled") and not stop.is_set():
                row["note"] = f"stopped at the {_seconds(self.max_fit_seconds)} limit"
            rows.append(row)
            yield (*update, table(), f"{prefix}**{title}** done in {_seconds(summary['fit_seconds'])}.", gr.skip())
        done = len(rows)
        status = (f"{notes}**Stopped after {done} of {len(chosen)} methods.**" if done < len(chosen)
                  else f"{notes}**Done: {done} methods on {loaded.label}.**")
        status += (" Lower distances are better; 'surface→cloud max' exposes spurious surface"
                   f"{', distances in ' + loaded.units if loaded.units else ''}.")
        yield (*finals, table(), status, legend)

    # ------------------------------------------------------------------------- current model
    @staticmethod
    def _current(current: dict | None) -> dict:
        if not current or not current.get("model_dir") or not Path(current["model_dir"]).is_dir():
            raise gr.Error("There is no model yet in this session: fit a cloud or pull a checkpoint first.")
        return current

    def check_extract(self, resolution, current) -> None:
        """The UI's first step before /extract_mesh."""
        self._current(current)
        check_resolution(resolution)

    def extract_mesh(self, resolution: int = 128, current: dict | None = None,
                     request: gr.Request = None) -> tuple[str, list[str], str, dict]:
        """Mesh this session's current model (its last fit or pull) at another resolution.

        Args:
            resolution: marching-cubes grid resolution, 16 to 512 (time grows with its cube).

        Returns:
            The mesh (GLB), downloads (GLB, PLY, OBJ) and a status line.
        """
        current = self._current(current)
        resolution = check_resolution(resolution)
        try:
            sdf = load_sdf(current["model_dir"])
            start = time.perf_counter()
            mesh = sdf.extract_mesh(resolution)
        except DiffCDError as error:
            raise gr.Error(str(error), title="Cannot mesh this model") from None
        seconds = time.perf_counter() - start
        folder = self.store.fresh_folder(request, "mesh")
        glb, ply, obj = self._mesh_files(mesh, folder, f"{current['label']}-{resolution}")
        state = {**current, "mesh": str(ply)}
        status = (f"**Meshed {current['label']} at {resolution}³** in {seconds:.1f} s: "
                  f"{len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces.")
        return str(glb), [str(glb), str(ply), str(obj)], status, state

    def evaluate(self, ground_truth: str | None = None, current: dict | None = None) -> pd.DataFrame:
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
        gt_path = ground_truth or current.get("gt_mesh")
        cloud_path = current.get("cloud")
        has_cloud = bool(cloud_path) and Path(cloud_path).is_file()
        if not gt_path and not has_cloud:
            raise gr.Error("Upload a ground-truth mesh to score this model (it has no input cloud "
                           "to compare with).")
        try:
            mesh = trimesh.load(current["mesh"], process=False)
            summary: dict = {}
            if gt_path:
                summary["eval"] = evaluate_mesh(mesh, load_mesh(gt_path))
            if has_cloud:
                points = np.load(cloud_path, allow_pickle=False)
                summary["cloud_distances"] = cloud_surface_distances(points, mesh)
        except DiffCDError as error:
            raise gr.Error(str(error), title="Cannot evaluate") from None
        return self.metrics_table(summary, current.get("units") or "")

    # ------------------------------------------------------------------------- Hub
    def list_checkpoints(self, author: str | None = None, search: str | None = None) -> pd.DataFrame:
        """List published diffcd checkpoints on the Hub, most recently changed first.

        Args:
            author: only this user's or organisation's repos; empty lists everyone's.
            search: only repos whose name contains this text; empty lists all.

        Returns:
            A table: repo id, method, Chamfer and F-score when published, last change.
        """
        from hub.discover import list_checkpoints
        from hub.errors import HubError

        try:
            # Anonymous: a Space's own HF_TOKEN must never list its owner's private repos.
            found = list_checkpoints(author=(author or "").strip() or None, token=False,
                                     search=(search or "").strip() or None, endpoint=self.hub_endpoint)
        except HubError as error:
            raise gr.Error(str(error), title="Cannot list checkpoints") from None
        rows = []
        for item in found:
            scores = (item.get("metrics") or {}).get("eval") or {}
            rows.append({
                "repo_id": item["repo_id"],
                "method": item.get("method") or "",
                "chamfer": None if scores.get("chamfer") is None else float(f"{scores['chamfer']:.4g}"),
                "fscore": None if scores.get("fscore") is None else float(f"{scores['fscore']:.4g}"),
                "last_modified": (item.get("last_modified") or "")[:19].replace("T", " "),
            })
        if not rows:
            gr.Info("No published diffcd checkpoints were found.")
        return pd.DataFrame(rows, columns=["repo_id", "method", "chamfer", "fscore", "last_modified"])

    @staticmethod
    def checkpoint_choices(table: pd.DataFrame | None):
        choices = [] if table is None or len(table) == 0 else list(table["repo_id"])
        return gr.Dropdown(choices=choices, value=choices[0] if choices else None)

    @staticmethod
    def check_pull(repo_id, revision, resolution) -> None:
        """The UI's first step before /pull_checkpoint."""
        check_repo_id(repo_id)
        check_resolution(resolution)

    def pull_checkpoint(self, repo_id: str, revision: str | None = None, resolution: int = 128,
                        token: str | None = None, current: dict | None = None,
                        request: gr.Request = None) -> tuple:
        """Download a published diffcd checkpoint from the Hub and mesh it.

        Only config.json, model.safetensors and JSON metadata are loaded (no pickle, no code).

        Args:
            repo_id: "namespace/name" of the checkpoint repo.
            revision: a branch, tag or commit sha; empty means main.
            resolution: marching-cubes grid resolution of the mesh, 16 to 512.
            token: an access token, needed only for private repos.

        Returns:
            The mesh (GLB), a Markdown description (commit, method, settings, published metrics),
            downloads (GLB, PLY, OBJ, the checkpoint zip) and a status line.
        """
        from hub._common import method_label
        from hub.errors import HubError
        from hub.pull import pull_checkpoint

        repo_id = check_repo_id(repo_id)
        resolution = check_resolution(resolution)
        token = (token or "").strip() or None
        try:
            # No token typed: anonymous, never the server's own HF_TOKEN or login.
            pulled = pull_checkpoint(repo_id, revision=(revision or "").strip() or None, token=token or False,
                                     resolution=None, endpoint=self.hub_endpoint)
            mesh = pulled.sdf.extract_mesh(resolution)
        except (HubError, DiffCDError) as error:
            raise gr.Error(_error_message(error, token), title="Cannot pull this checkpoint") from None
        folder = self.store.fresh_folder(request, "pull")
        for name in ("config.json", "model.safetensors", "README.md", "metrics.json"):
            if (pulled.folder / name).is_file():
                shutil.copyfile(pulled.folder / name, folder / name)
        label = f"{repo_id.replace('/', '--')}-{pulled.commit_sha[:8]}"
        glb, ply, obj = self._mesh_files(mesh, folder, "mesh")
        archive = self._checkpoint_zip(folder, label, ("config.json", "model.safetensors", "metrics.json"))
        config = pulled.config
        network = config.get("network") or {}
        method = method_label(config.get("method"))
        lines = [f"**{repo_id}** @ `{pulled.commit_sha[:12]}` ({pulled.revision})",
                 f"{method} · {network.get('hidden_layers', '?')}×{network.get('width', '?')} network · "
                 f"{config.get('steps', '?')} steps · seed {config.get('seed', '?')}"]
        scores = (pulled.metrics or {}).get("eval") or {}
        if scores:
            lines.append("Published metrics: " + ", ".join(f"{k} {_number(v)}" for k, v in scores.items()))
        state = {"model_dir": str(folder), "mesh": str(ply), "cloud": None,
                 "gt_mesh": None, "label": label, "units": ""}
        status = f"Pulled {repo_id} and meshed it at {resolution}³: {len(mesh.vertices):,} vertices."
        downloads = [str(glb), str(ply), str(obj), str(archive)]
        return str(glb), "\n\n".join(lines), downloads, status, state

    def check_push(self, repo_id, token, private, include_cloud, current,
                   oauth_token: gr.OAuthToken | None = None) -> None:
        """The UI's first step before /push_checkpoint (the token is only checked for presence)."""
        self._push_inputs(repo_id, token, include_cloud, current, oauth_token)

    def _push_inputs(self, repo_id, token, include_cloud, current, oauth_token):
        current = self._current(current)
        repo_id = check_repo_id(repo_id)
        secret = (token or "").strip() or (oauth_token.token if oauth_token is not None else None)
        if not secret:
            raise gr.Error("Pushing needs a Hugging Face access token with write access: paste one "
                           "(huggingface.co/settings/tokens) or sign in.", title="Missing token")
        cloud = current.get("cloud") if include_cloud else None
        if include_cloud and not (cloud and Path(cloud).is_file()):
            raise gr.Error("This model has no input cloud to include (it was pulled from the Hub); "
                           "untick 'include the input cloud'.")
        return current, repo_id, secret, cloud

    def push_checkpoint(self, repo_id: str, token: str | None = None, private: bool = False,
                        include_cloud: bool = False, current: dict | None = None,
                        oauth_token: gr.OAuthToken | None = None) -> tuple[str, str]:
        """Publish this session's current model (its last fit or pull) to a Hub repo of yours.

        The commit holds model.safetensors and config.json as exported, a model card, mesh.glb,
        metrics.json when there are metrics and, on request, a subsample of the input cloud. The
        token is used for this one request only: it is never stored or logged.

        Args:
            repo_id: "namespace/name" of your repo (created if missing).
            token: a Hugging Face access token with write access (or sign in on a Space).
            private: create the repo private (an existing repo keeps its visibility).
            include_cloud: also publish a subsample (at most 20,000 points) of the input cloud.

        Returns:
            The commit URL and a status line with the commit sha.
        """
        from hub.errors import HubError
        from hub.push import push_checkpoint

        current, repo_id, secret, cloud = self._push_inputs(repo_id, token, include_cloud, current, oauth_token)
        try:
            result = push_checkpoint(current["model_dir"], repo_id, token=secret, private=bool(private),
                                     include_cloud=cloud or False, endpoint=self.hub_endpoint)
        except (HubError, DiffCDError) as error:
            raise gr.Error(_error_message(error, secret), title="Push failed") from None
        status = (f"Pushed **{current['label']}** to [{repo_id}]({result.repo_url}) as commit "
                  f"`{result.commit_sha[:12]}` ({', '.join(result.files)}).")
        return result.commit_url, status

    # ------------------------------------------------------------------------- session end
    def close_session(self, request: gr.Request) -> None:
        """The tab was closed: stop its work and delete its files."""
        self.store.close(request)

    def sweep_sessions(self) -> None:
        """On each page load: delete the folders of sessions idle for hours (API clients never say bye)."""
        self.store.sweep()

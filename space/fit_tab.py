"""The Fit tab: fit one method to a cloud with live progress, and Stop.

`FitTab` holds the events (/fit, /stop, the settings form); `FitView` lays the tab out and binds
them, with the cloud picker (diffcd_space.inputs) and the re-mesh section (diffcd_space.model_tab).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from diffcd import Fitter
from diffcd.methods import ALL_METHODS, METHODS, is_reconstructor
from diffcd.presets import NOISE_LEVEL_LABELS, NOISE_LEVELS
from diffcd.runs import CLOUD_FILE, write_run
from diffcd_space import overlay, viewer
from diffcd_space.context import bounded
from diffcd_space.errors import as_sentence, catch_all
from diffcd_space.events import CHECK, COMPUTE, INSTANT
from diffcd_space.examples import Example
from diffcd_space.inputs import CloudInputs, CloudPicker
from diffcd_space.jobs import Budget
from diffcd_space.model_tab import ModelSection, ModelTab
from diffcd_space.outputs import metrics_table, run_downloads, seconds
from diffcd_space.presets import AppPreset, preset_choices
from diffcd_space.reconstruction import Reconstructions
from diffcd_space.training import Progress, train
from diffcd_space.validation import (MAX_RESOLUTION, MAX_TRIM_QUANTILE, MIN_RESOLUTION, OCTREE_DEPTHS, LoadedCloud,
                                     check_cloud_choice, check_method, check_poisson_settings, check_preset,
                                     check_settings, offered_methods)

FIT_OUTPUTS = ("surface", "losses", "status", "progress", "metrics", "downloads", "current")
"""The outputs of /fit, in their order (the API's)."""


def fit_update(**changed: Any) -> tuple:
    """One update of /fit: the named outputs changed, every other one left as it is (gr.skip())."""
    unknown = set(changed) - set(FIT_OUTPUTS)
    if unknown:
        raise TypeError(f"/fit has no output {sorted(unknown)}")
    return tuple(changed[name] if name in changed else gr.skip() for name in FIT_OUTPUTS)


def method_choices() -> list[tuple[str, str]]:
    """(title, name) of every method this server can run (Screened Poisson only with Open3D)."""
    return [(ALL_METHODS[name].title, name) for name in offered_methods()]


def method_summary(method: str) -> str:
    """The method's one-line summary, shown under the method picker."""
    spec = ALL_METHODS.get(method)
    return f"*{spec.title}: {spec.summary}*" if spec else ""


class FitTab(CloudInputs, ModelTab, Reconstructions):
    """/fit and /stop, and the settings form; with the events of the tab's cloud picker and of its
    re-mesh section. A classical reconstructor (Screened Poisson) runs through diffcd_space.reconstruction."""

    @staticmethod
    def method_form(method: str) -> tuple:
        """What the form shows for a method: (preset, advanced settings, reconstructor settings, noise).

        A reconstructor trains no network: the preset and the advanced settings (steps, network,
        loss weights, noise) are hidden and its own settings shown; its noise setting is "none"."""
        classical = is_reconstructor(method)
        return (gr.Dropdown(visible=not classical), gr.Accordion(visible=not classical), gr.Group(visible=classical),
                gr.Dropdown(value="none") if classical else gr.skip())

    def preset_settings(self, preset: str, method: str, noise: str = "none") -> tuple:
        """The advanced settings a preset, method and noise setting amount to, to fill the form with.

        Returns (steps, width, depth, eikonal weight, area weight, mesh resolution); a weight the
        method does not have is 0 and its field is locked.
        """
        if is_reconstructor(method):  # no network: every field empty, the weights locked
            return (None, None, None, gr.Number(value=None, interactive=False),
                    gr.Number(value=None, interactive=False), None)
        if preset not in self.presets or method not in METHODS or (noise or "none") not in NOISE_LEVELS:
            return (gr.skip(),) * 6
        config = self.presets[preset].config(method, noise=noise or "none")
        weights = {name: getattr(config.method_config, name, None) for name in ("eikonal_weight", "area_weight")}
        return (
            config.schedule.steps, config.network.width, config.network.hidden_layers,
            *(gr.Number(value=w if w is not None else 0, interactive=w is not None) for w in weights.values()),
            config.mesh_resolution,
        )

    def noise_info(self, preset: str, noise: str = "none") -> Any:
        """The noise dropdown's note: what the chosen level does at the chosen preset."""
        if preset not in self.presets or (noise or "none") not in NOISE_LEVELS:
            return gr.skip()
        return gr.Dropdown(info=self.presets[preset].noise_description(noise or "none"))

    def preset_steps(self, preset: str) -> int | Any:
        """The preset's number of steps (the comparison form's default)."""
        return self.presets[preset].config("diffcd").schedule.steps if preset in self.presets else gr.skip()

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
                f"ETA {seconds(event.eta)} · elapsed {seconds(event.elapsed)}{valid} · "
                f"loss {event.losses.get('loss', float('nan')):.4g}")

    def _stream(self, fitter: Fitter, preset: AppPreset, folder: Path, should_stop) -> Iterator[Progress]:
        """Progress of a fit trained in a worker thread (at most two updates a second), then the done event."""
        return train(fitter, folder=folder, snapshot_seconds=preset.snapshot_seconds,
                     snapshot_resolution=preset.snapshot_resolution, should_stop=should_stop,
                     max_faces=self.limits.max_mesh_faces, ui_interval=min(0.5, preset.snapshot_seconds))

    def _training_stop(self, stopped, budget: Budget):
        """Stop training on Stop, a closed tab, or once the fit's share of the time limit is used."""
        return lambda: stopped() or budget.past(self.limits.fit_share)

    def _finish_run(self, folder: Path, result, config, loaded: LoadedCloud, gt, preset: AppPreset,
                    budget: Budget) -> dict:
        """Mesh, score and export a finished fit into folder/run within the request's time and mesh
        bounds; returns the run summary."""
        run_dir = folder / "run"
        fitted = bounded(result.fitted, max_faces=self.limits.max_mesh_faces, should_stop=budget.expired)
        summary = write_run(
            run_dir, dataclasses.replace(result, fitted=fitted), resolution=config.mesh_resolution, cloud_points=loaded.cloud.points,
            gt_mesh=gt, eval_samples=preset.eval_samples,
            metadata={"cloud": loaded.label, "points": len(loaded.cloud), "app": "diffcd space",
                      "preset": preset.name},
        )
        return summary


    def _checked(self, cloud, example, method, preset, octree_depth, trim_quantile, **form) -> tuple:
        """Validate /fit's inputs (the cloud is parsed once, later, by /fit); returns (the app preset,
        the method's config: a FitConfig, or a reconstructor's)."""
        check_cloud_choice(cloud, example, max_bytes=self.limits.max_upload_bytes)
        check_method(method)
        app_preset = check_preset(preset, self.presets)
        settings = check_settings(method, **form)
        if is_reconstructor(method):
            return app_preset, check_poisson_settings(octree_depth, trim_quantile)
        return app_preset, self._config(app_preset, method, settings)

    def check_fit(self, cloud, example, method, preset, steps, width, depth, eikonal_weight, area_weight,
                  seed, mesh_resolution, noise=None, octree_depth="auto", trim_quantile=None) -> None:
        """The UI's first step before /fit: check the settings (the cloud is parsed once, by /fit)."""
        self._checked(cloud, example, method, preset, octree_depth, trim_quantile, steps=steps, width=width,
                      depth=depth, eikonal_weight=eikonal_weight, area_weight=area_weight, seed=seed,
                      resolution=mesh_resolution, noise=noise)

    @catch_all("The fit failed")
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
        noise: str = "none",
        octree_depth: str | int = "auto",
        trim_quantile: float = 0.02,
        current: dict | None = None,
        request: gr.Request = None,
    ) -> Iterator[tuple]:
        """Fit a signed distance function to a point cloud, streaming progress as it trains.

        With method "poisson", Screened Poisson reconstructs a mesh instead (seconds, no network).

        Args:
            cloud: a point cloud file (.npy .npz .xyz .txt .pts .ply .obj .off .stl), uploaded or
                given as an http(s) URL (at most 100 MB, downloaded within 30 s); when given it is
                used instead of `example`.
            example: a built-in example id (e.g. "torus"), used when `cloud` is empty.
            method: "diffcd", "igr", "neural-pull", "siren", or "poisson" (Screened Poisson: a
                classical reconstruction in seconds, no network; it takes no steps, network, loss
                weights, mesh resolution or noise setting, only octree_depth and trim_quantile).
            preset: a fit size: "cpu-quick", "gpu-demo", "paper" (see the preset dropdown).
            steps: training steps; None uses the preset's.
            width: features per hidden layer; None uses the preset's.
            depth: hidden layers (a skip connection is put half-way); None uses the preset's.
            eikonal_weight: λ of the eikonal term; None uses the method's paper value.
            area_weight: μ of the area term (not for Neural-Pull); None uses the method's value.
            seed: seed of initialisation and sampling; the same seed gives the same fit.
            mesh_resolution: grid resolution of the final mesh; None uses the preset's.
            noise: how noisy the cloud is: "none", "medium" (about 0.5 % of its size) or "max"
                (about 1 %). The paper preset applies the paper's settings (eikonal weight 0.5;
                1.0 and a 20x lower learning rate); the shorter presets keep the clean settings,
                which measured best there. An explicit eikonal_weight wins.
            octree_depth: Screened Poisson only: the octree depth, 5 to 10, or "auto" (chosen from
                the point count: 8 for 16k to 65k points).
            trim_quantile: Screened Poisson only: the share (0 to 0.2) of least supported vertices
                removed, i.e. surface the points do not support.

        Returns:
            A stream of updates. Each carries the latest mesh snapshot (GLB, every few seconds),
            the loss curve, a status line, and a progress dict (step, total_steps,
            steps_per_second, eta_seconds, valid_surface_fraction, losses, stage). The last update
            adds the final mesh, a metrics table (against the ground truth when the example has
            one; cloud↔surface distances always) and downloads: GLB, PLY, OBJ and a checkpoint
            zip (config.json + model.safetensors, loadable with diffcd.load_sdf). Screened Poisson
            streams its stages instead (starting, normals, solve, trim, scoring) and has no loss
            curve, snapshots or checkpoint zip.
        """
        app_preset, config = self._checked(cloud, example, method, preset, octree_depth, trim_quantile, steps=steps,
                                           width=width, depth=depth, eikonal_weight=eikonal_weight,
                                           area_weight=area_weight, seed=seed, resolution=mesh_resolution, noise=noise)
        title = ALL_METHODS[method].title
        stopped = self._stop_check(request, "fit")
        with self._job(request, "fit") as job:
            loaded = self._read_cloud(cloud, example, request, warn=False)
            notes = "".join(f"⚠ {n}\n\n" for n in loaded.notes)
            for position in job.wait():
                if stopped():
                    break
                yield fit_update(status=f"{notes}Waiting for the device: {position} job(s) ahead of yours "
                                        "(Stop cancels it).",
                                 progress=self._progress(None, stage="waiting", title=title))
            if stopped():
                yield fit_update(status="**Stopped** before the fit started.",
                                 progress=self._progress(None, stage="cancelled", title=title))
                return
            budget = job.budget(self.limits.max_request_seconds)
            yield from self._run_on_device(loaded, method, title, config, app_preset, notes, stopped, budget,
                                           request)

    def _run_on_device(self, loaded: LoadedCloud, method: str, title: str, config, app_preset: AppPreset,
                       notes: str, stopped, budget: Budget, request) -> Iterator[tuple]:
        """The job once it holds the device: a neural fit, or a reconstructor's run."""
        if not is_reconstructor(method):
            yield from self._fit_on_device(loaded, method, title, config, app_preset, notes, stopped, budget, request)
            return
        for changed in self._reconstruct_on_device(loaded, method, config, app_preset, notes, stopped, budget,
                                                   request):
            yield fit_update(**changed)

    def _fit_on_device(self, loaded: LoadedCloud, method: str, title: str, config, app_preset: AppPreset,
                       notes: str, stopped, budget: Budget, request) -> Iterator[tuple]:
        folder = self.store.fresh_folder(request, "fit")
        yield fit_update(losses=None, status=f"{notes}Preparing the fit of **{loaded.label}** with {title} "
                         f"({config.network.hidden_layers}×{config.network.width} network, "
                         f"{config.schedule.steps:,} steps)…",
                         progress=self._progress(None, stage="preparing", title=title), metrics=None, downloads=None)
        fitter = Fitter(loaded.cloud, config)
        event = None
        for update in self._stream(fitter, app_preset, folder, self._training_stop(stopped, budget)):
            event = update.event
            if event.done:
                break
            yield fit_update(surface=update.snapshot or gr.skip(), losses=viewer.loss_frame(fitter.history),
                             status=self._status(event, title, prefix=notes),
                             progress=self._progress(event, stage="fitting", title=title))
        if self.store.is_closed(request) or stopped.caller_gone():  # no one to show the result to
            shutil.rmtree(folder, ignore_errors=True)
            return
        result = event.result
        cancelled = bool(result.summary.get("cancelled"))
        yield fit_update(losses=viewer.loss_frame(fitter.history),
                         status=f"{notes}{'Stopped' if cancelled else 'Trained'} at step {result.summary['steps']:,}; "
                         f"meshing at {config.mesh_resolution}³ and computing metrics…",
                         progress=self._progress(event, stage="meshing", title=title))
        label = f"{loaded.label}-{method}"
        state = {"label": label, "units": loaded.units, "cloud": None,
                 "gt_mesh": str(loaded.example.gt_mesh) if loaded.example and loaded.example.gt_mesh else None}
        try:
            summary = self._finish_run(folder, result, config, loaded, self._ground_truth(loaded), app_preset,
                                       budget)
            run_dir = folder / "run"
            shown, downloads = run_downloads(run_dir, label)
        except Exception as error:
            kept, where = self._keep_model(result.fitted, request, state)
            yield fit_update(current=kept)
            sentence = as_sentence(error, "The fit's results could not be written")
            raise gr.Error(f"{sentence.message} {where}", title="The fit's results could not be written") from None
        state.update(model_dir=str(run_dir), mesh=str(run_dir / "mesh.ply") if summary.get("surface_found") else None,
                     cloud=str(run_dir / CLOUD_FILE))
        progress = self._progress(event, stage="cancelled" if cancelled else "done", title=title)
        progress["summary"] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
        verb = "Stopped" if cancelled else "Done"
        if cancelled and not stopped():
            notes += (f"⚠ This app stops a fit after {seconds(self.limits.fit_share * (budget.seconds or 0))} "
                      f"to leave time for meshing within {budget.limit}; the model so far is below. Run longer "
                      "fits locally (python app.py) or with the CLI.\n\n")
        status = (f"{notes}**{verb}: {title}, {summary['steps']:,} steps in {seconds(summary['fit_seconds'])}** "
                  f"(compile {summary['compile_seconds']:.1f} s, {summary['steps_per_second']:.1f} steps/s, "
                  f"{summary.get('backend', 'cpu').upper()})")
        if shown:
            status += f" · final mesh {config.mesh_resolution}³: {summary['mesh_vertices']:,} vertices"
            final = shown
        else:
            status += f" · **no surface found** — {summary.get('mesh_error', '')} The viewer keeps the last snapshot."
            final = gr.skip()
        yield fit_update(surface=final, losses=viewer.loss_frame(fitter.history), status=status, progress=progress,
                         metrics=metrics_table(summary, loaded.units), downloads=downloads, current=state)

    def stop(self, request: gr.Request) -> str:
        """Stop this session's fit after the current chunk of steps (or before it starts, if it waits).

        The fit keeps what it learned so far: its last snapshot stays in the viewer and the
        stopped model is meshed, scored and offered for download as usual. A Screened Poisson run
        is ended at once and leaves no mesh (it has no partial result).

        Returns:
            A status line.
        """
        self.store.request_stop(request, "fit")
        return "Stopping after the current chunk of steps…"


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The Fit tab's left column: method, preset, the advanced settings, Fit and Stop."""

    method: gr.Dropdown
    method_info: gr.Markdown
    reconstructor: gr.Group
    """Screened Poisson's settings, shown only when it is chosen."""
    octree_depth: gr.Dropdown
    trim_quantile: gr.Slider
    preset: gr.Dropdown
    settings: gr.Accordion
    steps: gr.Number
    seed: gr.Number
    width: gr.Number
    depth: gr.Number
    eikonal: gr.Number
    area: gr.Number
    resolution: gr.Number
    noise: gr.Dropdown
    fit_button: gr.Button
    stop_button: gr.Button

    @classmethod
    def layout(cls, presets: dict[str, AppPreset], default_preset: str) -> FitSettings:
        method = gr.Dropdown(method_choices(), value="diffcd", label="Method", elem_id="fit-method")
        method_info = gr.Markdown(method_summary("diffcd"))
        with gr.Group(visible=False) as reconstructor:
            octree_depth = gr.Dropdown([("auto (from the point count)", "auto"), *((str(d), d) for d in OCTREE_DEPTHS)],
                                       value="auto", label="Octree depth", elem_id="fit-octree-depth",
                                       info="Finer surface detail with each level; time and memory grow about 4x.")
            trim_quantile = gr.Slider(0, MAX_TRIM_QUANTILE, value=0.02, step=0.005, label="Density trim quantile",
                                      info="Share of least supported vertices removed.", elem_id="fit-trim")
        preset = gr.Dropdown(preset_choices(presets), value=default_preset, label="Preset",
                             info="Network size, steps and mesh resolution.", elem_id="fit-preset")
        with gr.Accordion("Advanced settings (filled in from the preset and method)", open=False) as settings:
            with gr.Row():
                steps = gr.Number(None, label="Steps", precision=0)
                seed = gr.Number(0, label="Seed", precision=0)
            with gr.Row():
                width = gr.Number(None, label="Network width", precision=0)
                depth = gr.Number(None, label="Network depth (hidden layers)", precision=0)
            with gr.Row():
                eikonal = gr.Number(None, label="Eikonal weight λ")
                area = gr.Number(None, label="Area weight μ")
            resolution = gr.Number(None, label=f"Final mesh resolution ({MIN_RESOLUTION}–{MAX_RESOLUTION})",
                                   precision=0)
            noise = gr.Dropdown([(NOISE_LEVEL_LABELS[level], level) for level in NOISE_LEVELS], value="none",
                                label="Noise in the cloud", elem_id="fit-noise",
                                info=presets[default_preset].noise_description("none"))
        with gr.Row():
            fit_button = gr.Button("Fit", variant="primary", elem_id="fit-button")
            stop_button = gr.Button("Stop", variant="stop", elem_id="fit-stop")
        return cls(method, method_info, reconstructor, octree_depth, trim_quantile, preset, settings, steps, seed,
                   width, depth, eikonal, area, resolution, noise, fit_button, stop_button)

    @property
    def advanced(self) -> list:
        """The fields a preset fills in, in the order of FitTab.preset_settings' answer."""
        return [self.steps, self.width, self.depth, self.eikonal, self.area, self.resolution]


@dataclasses.dataclass(frozen=True)
class FitResults:
    """The Fit tab's right column: status, the live viewer, loss curve, metrics, downloads."""

    status: gr.Markdown
    surface: gr.Model3D
    show_cloud: gr.Checkbox
    losses: gr.LinePlot
    metrics: gr.Dataframe
    downloads: gr.File
    model: ModelSection
    progress: gr.JSON

    @classmethod
    def layout(cls) -> FitResults:
        status = gr.Markdown("Pick an example or upload a cloud, then press **Fit**.", elem_id="fit-status")
        surface = gr.Model3D(label="Fitted surface (live snapshots, then the final mesh)", height=420,
                             interactive=False, elem_id="fit-surface-view")
        show_cloud = gr.Checkbox(False, label="Show the input cloud over the surface (orange)", elem_id="fit-overlay")
        losses = gr.LinePlot(None, x="step", y="log10 loss", color="term", title="Loss (log10)", height=240,
                             elem_id="fit-loss")
        metrics = gr.Dataframe(label="Metrics (in the cloud's units)", interactive=False, wrap=True,
                               elem_id="fit-metrics")
        downloads = gr.File(label="Downloads: mesh (GLB, PLY, OBJ) and checkpoint", file_count="multiple",
                            interactive=False, elem_id="fit-downloads")
        model = ModelSection.layout()
        with gr.Accordion("Progress details (JSON)", open=False):
            progress = gr.JSON(label="Progress", elem_id="fit-progress")
        return cls(status, surface, show_cloud, losses, metrics, downloads, model, progress)


@dataclasses.dataclass(frozen=True)
class FitView:
    """The Fit tab: the cloud and settings on the left, the fit's progress and results on the right."""

    picker: CloudPicker
    settings: FitSettings
    results: FitResults

    @classmethod
    def layout(cls, events: FitTab, *, presets: dict[str, AppPreset], default_preset: str,
               examples: list[Example], default_example: str | None) -> FitView:
        with gr.Tab("Fit", id="fit"):
            with gr.Row():
                with gr.Column(scale=1, min_width=340):
                    picker = CloudPicker.layout(events, "fit", examples, default_example)
                    settings = FitSettings.layout(presets, default_preset)
                with gr.Column(scale=2):
                    results = FitResults.layout()
        return cls(picker, settings, results)

    def bind(self, events: FitTab, *, current: gr.State, demo: gr.Blocks) -> None:
        """/load_example, /preview_cloud, /fit and /stop, and the settings form filled in from the
        preset, method and noise (also when the page loads: the form starts empty, so that an API
        caller's default is "the preset's")."""
        s, r = self.settings, self.results
        self.picker.bind(events, public=True)
        inputs = [self.picker.upload, self.picker.example, s.method, s.preset, s.steps, s.width, s.depth, s.eikonal,
                  s.area, s.seed, s.resolution, s.noise, s.octree_depth, s.trim_quantile, current]
        outputs = [current if name == "current" else getattr(r, name) for name in FIT_OUTPUTS]
        s.fit_button.click(events.check_fit, inputs[:-1], None, **CHECK) \
            .success(events.fit, inputs, outputs, api_name="fit", **COMPUTE) \
            .success(overlay.after_result, [r.show_cloud, current], [r.surface], api_visibility="private")
        # Stop never waits: no queue from the page, and no concurrency limit for API callers.
        s.stop_button.click(events.stop, None, [r.status], api_name="stop", queue=False)
        r.show_cloud.input(overlay.surface_view, [r.show_cloud, current], [r.surface], api_visibility="private",
                           concurrency_limit=4)
        form = [s.preset, s.method, s.noise]
        for trigger in (s.preset.change, s.method.change, s.noise.change):
            trigger(events.preset_settings, form, s.advanced, **INSTANT)
        for trigger in (s.preset.change, s.noise.change):
            trigger(events.noise_info, [s.preset, s.noise], [s.noise], **INSTANT)
        s.method.change(method_summary, [s.method], [s.method_info], **INSTANT)
        s.method.change(events.method_form, [s.method], [s.preset, s.settings, s.reconstructor, s.noise], **INSTANT)
        demo.load(events.preset_settings, form, s.advanced, **INSTANT)

    def bind_model_section(self, events: FitTab, *, current: gr.State) -> None:
        """/extract_mesh, /evaluate, /remesh_checkpoint and /evaluate_checkpoint, into this tab's results."""
        r = self.results
        r.model.bind(events, surface=r.surface, downloads=r.downloads, status=r.status, metrics=r.metrics,
                     show_cloud=r.show_cloud, current=current)

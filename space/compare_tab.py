"""The Compare tab: two to four methods on one cloud, one after another, one table.

`CompareTab` holds the events (/compare, /stop_compare); `CompareView` lays the tab out and binds them.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import gradio as gr
import pandas as pd
import trimesh

from diffcd import Fitter
from diffcd.methods import ALL_METHODS, is_reconstructor
from diffcd_space import viewer
from diffcd_space.errors import as_sentence, catch_all
from diffcd_space.events import CHECK, COMPUTE, INSTANT
from diffcd_space.examples import Example
from diffcd_space.fit_tab import FitTab
from diffcd_space.inputs import CloudPicker
from diffcd_space.jobs import Budget
from diffcd_space.outputs import COMPARE_COLUMNS, is_reconstruction, seconds, table_seconds, wall_seconds
from diffcd_space.presets import AppPreset, preset_choices
from diffcd_space.reconstruction import STAGES, describe
from diffcd_space.validation import (MAX_COMPARED, LoadedCloud, check_cloud_choice, check_methods,
                                     check_poisson_settings, check_preset, check_settings, offered_methods)

MAX_VIEWERS = MAX_COMPARED
COMPARE_OUTPUTS = ("table", "status", "legend")
"""The outputs of /compare after its MAX_VIEWERS viewers, in their order (the API's)."""


def compare_update(*, views: Sequence[Any] | Mapping[int, Any] = (), **changed: Any) -> tuple:
    """One update of /compare: the viewers given (a list from the first, or {index: value}) and the
    named outputs changed, everything else left as it is (gr.skip())."""
    unknown = set(changed) - set(COMPARE_OUTPUTS)
    if unknown:
        raise TypeError(f"/compare has no output {sorted(unknown)}")
    shown = views if isinstance(views, Mapping) else dict(enumerate(views))
    return (*(shown[i] if i in shown else gr.skip() for i in range(MAX_VIEWERS)),
            *(changed[name] if name in changed else gr.skip() for name in COMPARE_OUTPUTS))


@dataclasses.dataclass(frozen=True)
class _Comparison:
    """What every method of one comparison shares."""

    loaded: LoadedCloud
    preset: AppPreset
    configs: dict[str, Any]
    gt: trimesh.Trimesh | None
    stopped: Any
    """The request's StopCheck."""
    budget: Budget
    request: Any


class CompareTab(FitTab):
    """/compare and /stop_compare."""

    def check_compare(self, cloud, example, methods, preset, seed, steps) -> None:
        """The UI's first step before /compare (the cloud is parsed once, by /compare)."""
        check_cloud_choice(cloud, example, max_bytes=self.limits.max_upload_bytes)
        chosen = check_methods(methods)
        settings = check_settings("diffcd", steps=steps, seed=seed)
        app_preset = check_preset(preset, self.presets)
        self._compare_configs(chosen, app_preset, settings)

    def _compare_configs(self, chosen: list[str], app_preset: AppPreset, settings: dict) -> dict:
        """Each method's config: the preset's with the paper's weights, or a reconstructor's defaults."""
        return {m: check_poisson_settings() if is_reconstructor(m) else self._config(app_preset, m, settings)
                for m in chosen}

    @catch_all("The comparison failed")
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

        Each neural method uses its paper loss weights and the preset's network and schedule;
        Screened Poisson ("poisson") its automatic octree depth. Every final mesh is coloured by
        each vertex's distance to the nearest input point, on one scale for all methods (0 to 2 %
        of the cloud's longest side), so surface that no data supports shows up red.

        Args:
            cloud: a point cloud file, uploaded or given as an http(s) URL; when given it is used
                instead of `example`.
            example: a built-in example id, used when `cloud` is empty.
            methods: two to four of "diffcd", "igr", "neural-pull", "siren", "poisson".
            preset: a fit size (see the preset dropdown).
            seed: the seed every method uses.
            steps: training steps per method; None uses the preset's.

        Returns:
            A stream of updates: one viewer per method (in the order diffcd, igr, neural-pull,
            siren, poisson among those chosen; unused viewers empty), the metrics table with one
            row per finished method (its wall time to a mesh in seconds, training or reconstruction
            plus meshing, beside its distances), a status line and the colour legend (HTML).
        """
        check_cloud_choice(cloud, example, max_bytes=self.limits.max_upload_bytes)
        chosen = check_methods(methods)
        app_preset = check_preset(preset, self.presets)
        settings = check_settings("diffcd", steps=steps, seed=seed)
        configs = self._compare_configs(chosen, app_preset, settings)
        stopped = self._stop_check(request, "compare")
        with self._job(request, "comparison") as job:
            loaded = self._read_cloud(cloud, example, request, warn=False)
            for position in job.wait():
                if stopped():
                    break
                yield compare_update(status=f"Waiting for the device: {position} job(s) ahead of yours "
                                     "(Stop cancels it).")
            if stopped():
                yield compare_update(status="**Stopped** before the comparison started.")
                return
            budget = job.budget(self.limits.max_request_seconds)
            yield from self._compare_on_device(loaded, chosen, app_preset, settings, configs, stopped, budget,
                                               request)

    def _compare_on_device(self, loaded, chosen, app_preset, settings, configs, stopped, budget: Budget,
                           request) -> Iterator[tuple]:
        """All methods under ONE time budget: method i runs until its share of the fit time is used."""
        folder = self.store.fresh_folder(request, "compare")
        scale = viewer.DISTANCE_SCALE * viewer.longest_side(loaded.cloud.points)
        legend = viewer.legend_html(scale, loaded.units)
        run = _Comparison(loaded, app_preset, configs, self._ground_truth(loaded), stopped, budget, request)
        views: list[Any] = [gr.Model3D(value=None, label=ALL_METHODS[m].title, visible=True) for m in chosen]
        views += [gr.Model3D(value=None, visible=False)] * (MAX_VIEWERS - len(chosen))
        rows: list[dict] = []
        table = lambda: pd.DataFrame(rows) if rows else None  # noqa: E731
        notes = "".join(f"⚠ {n}\n\n" for n in loaded.notes)
        yield compare_update(views=views, table=None, status=f"{notes}Comparing "
                             f"{', '.join(ALL_METHODS[m].title for m in chosen)} on **{loaded.label}** "
                             f"(seed {settings['seed']})…", legend=legend)
        finals: list[Any] = [None] * MAX_VIEWERS  # the last update repeats every mesh, for API callers
        for index, method in enumerate(chosen):
            title = ALL_METHODS[method].title
            prefix = f"{notes}Method {index + 1} of {len(chosen)} · "
            if stopped() or budget.past(self.limits.fit_share):
                break
            method_folder = folder / method
            method_folder.mkdir()
            share = self.limits.fit_share * (index + 1) / len(chosen)
            one = self._compare_reconstruct if is_reconstructor(method) else self._compare_fit
            try:
                summary = yield from one(run, method, index, method_folder, share, prefix)
            except Exception as error:
                sentence = as_sentence(error, "The comparison failed")
                raise gr.Error(f"{title} failed: {sentence.message}", title="The comparison failed") from None
            if self.store.is_closed(request) or stopped.caller_gone():  # no one to show it to
                shutil.rmtree(folder, ignore_errors=True)
                return
            if summary is None:  # Stop ended a reconstruction, which keeps no partial mesh
                break
            row = self._compare_row(title, summary, stopped, budget)
            if summary.get("surface_found"):
                mesh = trimesh.load(method_folder / "run" / "mesh.ply", process=False)
                finals[index] = str(viewer.distance_mesh_glb(mesh, loaded.cloud.points, scale,
                                                             method_folder / f"{method}-distance.glb"))
            rows.append(row)
            yield compare_update(views={index: finals[index]} if finals[index] else {}, table=table(),
                                 status=f"{prefix}**{title}** done in {seconds(wall_seconds(summary))}.")
        done = len(rows)
        status = (f"{notes}**Stopped after {done} of {len(chosen)} methods.**" if done < len(chosen)
                  else f"{notes}**Done: {done} methods on {loaded.label}.**")
        status += (" Lower distances are better; 'surface→cloud max' exposes spurious surface"
                   f"{', distances in ' + loaded.units if loaded.units else ''}; 'wall time (s)' is each method's "
                   "time to its mesh.")
        yield compare_update(views=finals, table=table(), status=status, legend=legend)

    def _compare_fit(self, run: _Comparison, method: str, index: int, folder: Path, share: float,
                     prefix: str) -> Iterator[tuple]:
        """Train, mesh and score one neural method of a comparison until `share` of the budget is used;
        returns its run summary (None when nobody waits for it any more)."""
        title = ALL_METHODS[method].title
        should_stop = lambda: run.stopped() or run.budget.past(share)  # noqa: E731
        fitter = Fitter(run.loaded.cloud, run.configs[method])
        for progress in self._stream(fitter, run.preset, folder, should_stop):
            event = progress.event
            if event.done:
                break
            yield compare_update(views={index: progress.snapshot} if progress.snapshot else {},
                                 status=self._status(event, title, prefix=prefix))
        if self.store.is_closed(run.request) or run.stopped.caller_gone():
            return None
        yield compare_update(status=f"{prefix}**{title}**: meshing and scoring…")
        return self._finish_run(folder, event.result, run.configs[method], run.loaded, run.gt, run.preset, run.budget)

    def _compare_reconstruct(self, run: _Comparison, method: str, index: int, folder: Path, share: float,
                             prefix: str) -> Iterator[tuple]:
        """Reconstruct and score with a classical method (no snapshots: it has no model in between);
        returns its run summary (None when Stop ended it or nobody waits)."""
        title, config = ALL_METHODS[method].title, run.configs[method]

        def report(stage: str, elapsed: float) -> tuple:
            return compare_update(status=f"{prefix}**{title}** ({describe(config)}): {STAGES.get(stage, stage)}… · "
                                  f"elapsed {seconds(elapsed)}")

        result = yield from self._reconstruct(method, run.loaded, config, stopped=run.stopped, budget=run.budget,
                                              share=share, report=report)
        if result is None or self.store.is_closed(run.request) or run.stopped.caller_gone():
            return None
        yield report("scoring", result.summary["fit_seconds"])
        return self._write_mesh_run(folder, result, run.loaded, run.gt, run.preset)

    @staticmethod
    def _compare_row(title: str, summary: dict, stopped, budget: Budget) -> dict:
        """A method's row of the metrics table: its wall time to a mesh, steps, and distances."""
        trained = not is_reconstruction(summary)
        row = {"method": title, "wall time (s)": table_seconds(wall_seconds(summary)), "steps": summary["steps"],
               "fit s": table_seconds(summary["fit_seconds"]),
               "steps/s": round(summary["steps_per_second"], 1) if trained else None}
        for group, key, label in COMPARE_COLUMNS:
            value = (summary.get(group) or {}).get(key)
            if value is not None:
                row[label] = float(f"{value:.4g}")
        if not summary.get("surface_found"):
            row["note"] = "no surface found"
        if summary.get("cancelled") and not stopped():
            row["note"] = f"stopped: the whole comparison has {seconds(budget.seconds)}"
        return row

    def stop_compare(self, request: gr.Request) -> str:
        """Stop this session's comparison after the current chunk of steps (or before it starts).

        The methods finished so far stay in the table; a fit in the Fit tab is not affected.

        Returns:
            A status line.
        """
        self.store.request_stop(request, "compare")
        return "Stopping the comparison after the current chunk of steps…"


@dataclasses.dataclass(frozen=True)
class CompareView:
    """The Compare tab: cloud, methods and preset on the left; a viewer per method, the legend and
    one metrics table on the right."""

    picker: CloudPicker
    methods: gr.CheckboxGroup
    preset: gr.Dropdown
    seed: gr.Number
    steps: gr.Number
    compare_button: gr.Button
    stop_button: gr.Button
    status: gr.Markdown
    legend: gr.HTML
    views: tuple[gr.Model3D, ...]
    table: gr.Dataframe

    @classmethod
    def layout(cls, events: CompareTab, *, presets: dict[str, AppPreset], default_preset: str,
               examples: list[Example], default_example: str | None) -> CompareView:
        names = offered_methods()
        with gr.Tab("Compare", id="compare"):
            with gr.Row():
                with gr.Column(scale=1, min_width=340):
                    picker = CloudPicker.layout(events, "compare", examples, default_example)
                    methods = gr.CheckboxGroup([(ALL_METHODS[m].title, m) for m in names],
                                               value=names[:2] if len(names) < 3 else ["diffcd", "igr", "siren"],
                                               label="Methods (two to four)", elem_id="compare-methods")
                    preset = gr.Dropdown(preset_choices(presets), value=default_preset, label="Preset")
                    with gr.Row():
                        seed = gr.Number(0, label="Seed", precision=0)
                        steps = gr.Number(None, label="Steps per method", precision=0)
                    with gr.Row():
                        compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                        stop_button = gr.Button("Stop", variant="stop")
                with gr.Column(scale=2):
                    status = gr.Markdown("Choose methods and press **Compare**: they run one after another with "
                                         "the same seed.", elem_id="compare-status")
                    legend = gr.HTML(viewer.legend_html(None), elem_id="compare-legend")
                    views = []
                    for row in range(0, MAX_VIEWERS, 2):
                        with gr.Row():
                            for i in range(row, min(row + 2, MAX_VIEWERS)):
                                views.append(gr.Model3D(label=ALL_METHODS[names[i]].title, height=300,
                                                        interactive=False, elem_id=f"compare-view-{i}"))
                    table = gr.Dataframe(label="Metrics per method (the cloud's units)", interactive=False,
                                         elem_id="compare-metrics")
        return cls(picker, methods, preset, seed, steps, compare_button, stop_button, status, legend, tuple(views),
                   table)

    def bind(self, events: CompareTab, *, demo: gr.Blocks) -> None:
        """/compare and /stop_compare; the steps field follows the preset (filled in when the page
        loads). The tab's cloud picker is private: /load_example and /preview_cloud are the Fit tab's."""
        self.picker.bind(events, public=False)
        inputs = [self.picker.upload, self.picker.example, self.methods, self.preset, self.seed, self.steps]
        outputs = [*self.views, *(getattr(self, name) for name in COMPARE_OUTPUTS)]
        self.compare_button.click(events.check_compare, inputs, None, **CHECK) \
            .success(events.compare, inputs, outputs, api_name="compare", **COMPUTE)
        self.stop_button.click(events.stop_compare, None, [self.status], api_name="stop_compare", queue=False)
        self.preset.change(events.preset_steps, [self.preset], [self.steps], **INSTANT)
        demo.load(events.preset_steps, [self.preset], [self.steps], **INSTANT)

"""The Compare tab: two to four methods on one cloud, one after another, one table."""

from __future__ import annotations

import shutil
from typing import Any, Iterator

import gradio as gr
import pandas as pd
import trimesh

from diffcd import METHODS, Fitter
from diffcd_space import viewer
from diffcd_space.errors import as_sentence, catch_all
from diffcd_space.fit_tab import FitTab
from diffcd_space.jobs import Budget
from diffcd_space.outputs import COMPARE_COLUMNS, seconds
from diffcd_space.validation import check_cloud_choice, check_methods, check_preset, check_settings

MAX_VIEWERS = len(METHODS)


class CompareTab(FitTab):
    """/compare and /stop_compare."""

    def check_compare(self, cloud, example, methods, preset, seed, steps) -> None:
        """The UI's first step before /compare (the cloud is parsed once, by /compare)."""
        check_cloud_choice(cloud, example, max_bytes=self.limits.max_upload_bytes)
        chosen = check_methods(methods)
        settings = check_settings("diffcd", steps=steps, seed=seed)
        app_preset = check_preset(preset, self.presets)
        for method in chosen:
            self._config(app_preset, method, settings)

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
        check_cloud_choice(cloud, example, max_bytes=self.limits.max_upload_bytes)
        chosen = check_methods(methods)
        app_preset = check_preset(preset, self.presets)
        settings = check_settings("diffcd", steps=steps, seed=seed)
        configs = {m: self._config(app_preset, m, settings) for m in chosen}
        stopped = self._stop_check(request, "compare")
        with self._job(request, "comparison") as job:
            loaded = self._read_cloud(cloud, example, request, warn=False)
            for position in job.wait():
                if stopped():
                    break
                yield (*[gr.skip()] * MAX_VIEWERS, gr.skip(), f"Waiting for the device: {position} job(s) ahead "
                       "of yours (Stop cancels it).", gr.skip())
            if stopped():
                yield (*[gr.skip()] * MAX_VIEWERS, gr.skip(), "**Stopped** before the comparison started.", gr.skip())
                return
            budget = job.budget(self.limits.max_request_seconds)
            yield from self._compare_on_device(loaded, chosen, app_preset, settings, configs, stopped, budget,
                                               request)

    def _compare_on_device(self, loaded, chosen, app_preset, settings, configs, stopped, budget: Budget,
                           request) -> Iterator[tuple]:
        """All methods under ONE time budget: method i trains until its share of the fit time is used."""
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
            if stopped() or budget.past(self.limits.fit_share):
                break
            method_folder = folder / method
            method_folder.mkdir()
            share = self.limits.fit_share * (index + 1) / len(chosen)
            should_stop = lambda share=share: stopped() or budget.past(share)  # noqa: E731
            try:
                fitter = Fitter(loaded.cloud, configs[method])
                for progress in self._stream(fitter, app_preset, method_folder, should_stop):
                    event = progress.event
                    if event.done:
                        break
                    update = list(skip_views)
                    if progress.snapshot:
                        update[index] = progress.snapshot
                    yield (*update, gr.skip(), self._status(event, title, prefix=prefix), gr.skip())
                if self.store.is_closed(request) or stopped.caller_gone():  # no one to show it to
                    shutil.rmtree(folder, ignore_errors=True)
                    return
                yield (*skip_views, gr.skip(), f"{prefix}**{title}**: meshing and scoring…", gr.skip())
                summary = self._finish_run(method_folder, event.result, configs[method], loaded, gt,
                                           app_preset, budget)
            except Exception as error:
                sentence = as_sentence(error, "The comparison failed")
                raise gr.Error(f"{title} failed: {sentence.message}", title="The comparison failed") from None
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
            if summary.get("cancelled") and not stopped():
                row["note"] = f"stopped: the whole comparison has {seconds(budget.seconds)}"
            rows.append(row)
            yield (*update, table(), f"{prefix}**{title}** done in {seconds(summary['fit_seconds'])}.", gr.skip())
        done = len(rows)
        status = (f"{notes}**Stopped after {done} of {len(chosen)} methods.**" if done < len(chosen)
                  else f"{notes}**Done: {done} methods on {loaded.label}.**")
        status += (" Lower distances are better; 'surface→cloud max' exposes spurious surface"
                   f"{', distances in ' + loaded.units if loaded.units else ''}.")
        yield (*finals, table(), status, legend)

    def stop_compare(self, request: gr.Request) -> str:
        """Stop this session's comparison after the current chunk of steps (or before it starts).

        The methods finished so far stay in the table; a fit in the Fit tab is not affected.

        Returns:
            A status line.
        """
        self.store.request_stop(request, "compare")
        return "Stopping the comparison after the current chunk of steps…"

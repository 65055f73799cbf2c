"""The Compare tab: two to four methods on one cloud, one after another, one table."""

from __future__ import annotations

import shutil
from typing import Any, Iterator

import gradio as gr
import pandas as pd
import trimesh

from diffcd import METHODS, DiffCDError, Fitter
from space import viewer
from space.fit_tab import FitTab
from space.outputs import COMPARE_COLUMNS, seconds
from space.validation import check_methods, check_preset, check_settings, load_cloud

MAX_VIEWERS = len(METHODS)


class CompareTab(FitTab):
    """/compare (its Stop button shares /stop's handler)."""

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
            cloud: a point cloud file; when given it is used instead of `example`.
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
                row["note"] = f"stopped at the {seconds(self.max_fit_seconds)} limit"
            rows.append(row)
            yield (*update, table(), f"{prefix}**{title}** done in {seconds(summary['fit_seconds'])}.", gr.skip())
        done = len(rows)
        status = (f"{notes}**Stopped after {done} of {len(chosen)} methods.**" if done < len(chosen)
                  else f"{notes}**Done: {done} methods on {loaded.label}.**")
        status += (" Lower distances are better; 'surface→cloud max' exposes spurious surface"
                   f"{', distances in ' + loaded.units if loaded.units else ''}.")
        yield (*finals, table(), status, legend)


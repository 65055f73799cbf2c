"""Classical reconstructors (diffcd.methods.RECONSTRUCTORS: Screened Poisson) in the app.

They train no network: a cloud goes in, a mesh comes out of a bounded child process
(diffcd.poisson.reconstruct). `reconstruct_stream` runs one in a worker thread and hands its stages
("starting", "normals", "solve", "trim") to the request's handler as they come; Stop, or a caller
who left, kills the child at once. `Reconstructions` is what the Fit and Compare tabs share: the
bounds of Limits, the run folder without a network (diffcd.runs.write_mesh_run) and its outputs.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from diffcd.errors import TimeLimitError
from diffcd.methods import RECONSTRUCTORS
from diffcd.runs import CLOUD_FILE, write_mesh_run
from diffcd_space.context import AppContext
from diffcd_space.jobs import Budget
from diffcd_space.outputs import metrics_table, run_downloads, seconds
from diffcd_space.presets import AppPreset
from diffcd_space.validation import LoadedCloud

STAGES = {"preparing": "preparing", "starting": "starting Open3D", "normals": "estimating and orienting normals",
          "solve": "solving on the octree", "trim": "trimming unsupported surface", "scoring": "computing metrics"}
"""What each stage of a reconstruction is called in a status line."""


def reconstruct_stream(spec, cloud, config, *, should_stop: Callable[[], bool],
                       bounds: dict) -> Iterator[tuple[str, Any]]:
    """Yields ("stage", name) as the reconstructor reports each stage, then ("done", its result).

    Its errors are raised here (a stop is diffcd's TimeLimitError); closing the generator early
    kills the child process too."""
    events: queue.Queue = queue.Queue()
    abandoned = threading.Event()

    def work() -> None:
        try:
            result = spec.reconstruct(cloud, config=config, progress=lambda stage: events.put(("stage", stage)),
                                      should_stop=lambda: abandoned.is_set() or should_stop(), **bounds)
            events.put(("done", result))
        except BaseException as error:  # handed to the request's thread, which raises it
            events.put(("error", error))

    worker = threading.Thread(target=work, name="diffcd-reconstruct", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = events.get()
            if kind == "error":
                raise item
            yield kind, item
            if kind == "done":
                return
    finally:
        abandoned.set()
        worker.join(timeout=30)


def stage_progress(stage: str, title: str, elapsed: float, summary: dict | None = None) -> dict:
    """The progress dict of /fit (the keys a neural fit's has) at a reconstruction's stage."""
    progress = {"stage": stage, "method": title, "step": 0, "total_steps": 0, "steps_per_second": 0.0,
                "elapsed_seconds": round(elapsed, 2), "eta_seconds": None, "valid_surface_fraction": None,
                "losses": {}}
    if summary is not None:
        progress["summary"] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
    return progress


def describe(config) -> str:
    """The settings of a Screened Poisson config, for a status line."""
    depth = "auto" if config.depth is None else config.depth
    return f"octree depth {depth}, trim quantile {config.trim_quantile:g}"


class Reconstructions(AppContext):
    """A reconstructor's run for the Fit tab (streamed as named outputs of /fit) and the Compare tab."""

    def _reconstruct_bounds(self, budget: Budget, share: float) -> dict:
        """Limits' bounds, with a time limit that ends by `share` of the request's budget."""
        left = None if budget.seconds is None else share * budget.seconds - budget.elapsed
        return self.limits.reconstruct_bounds(left)

    def _reconstruct(self, method: str, loaded: LoadedCloud, config, *, stopped, budget: Budget, share: float,
                     report: Callable[[str, float], Any]) -> Iterator[Any]:
        """Run the reconstructor, yielding report(stage, elapsed) at each stage; returns its result,
        or None when Stop ended it (no partial mesh exists)."""
        start = time.perf_counter()
        try:
            for kind, item in reconstruct_stream(RECONSTRUCTORS[method], loaded.cloud, config, should_stop=stopped,
                                                 bounds=self._reconstruct_bounds(budget, share)):
                if kind == "done":
                    return item
                yield report(item, time.perf_counter() - start)
        except TimeLimitError:
            if not stopped():
                raise  # its own time limit: a sentence that says what to lower
        return None

    def _write_mesh_run(self, folder: Path, result, loaded: LoadedCloud, gt, preset: AppPreset) -> dict:
        """Score and save a reconstructor's mesh into folder/run; returns the run summary."""
        return write_mesh_run(folder / "run", result.mesh, result.summary, cloud_points=loaded.cloud.points,
                              gt_mesh=gt, eval_samples=preset.eval_samples,
                              metadata={"cloud": loaded.label, "points": len(loaded.cloud), "app": "diffcd space"})

    def _reconstruct_on_device(self, loaded: LoadedCloud, method: str, config, preset: AppPreset, notes: str,
                               stopped, budget: Budget, request) -> Iterator[dict]:
        """The Fit tab's run of a reconstructor: dicts of the /fit outputs that change."""
        title = RECONSTRUCTORS[method].title
        folder = self.store.fresh_folder(request, "fit")
        yield {"losses": None, "metrics": None, "downloads": None, "progress": stage_progress("preparing", title, 0),
               "status": f"{notes}Reconstructing **{loaded.label}** with {title} ({describe(config)})…"}

        def report(stage: str, elapsed: float) -> dict:
            return {"status": f"{notes}**{title}: {STAGES.get(stage, stage)}…** · elapsed {seconds(elapsed)}",
                    "progress": stage_progress(stage, title, elapsed)}

        result = yield from self._reconstruct(method, loaded, config, stopped=stopped, budget=budget,
                                              share=self.limits.fit_share, report=report)
        if self.store.is_closed(request) or stopped.caller_gone():  # no one to show the result to
            shutil.rmtree(folder, ignore_errors=True)
            return
        if result is None:
            yield {"status": f"{notes}**Stopped** before {title} finished: it keeps no partial result, so there "
                   "is no mesh.", "progress": stage_progress("cancelled", title, 0)}
            return
        yield report("scoring", result.summary["fit_seconds"])
        summary = self._write_mesh_run(folder, result, loaded, self._ground_truth(loaded), preset)
        run_dir, label = folder / "run", f"{loaded.label}-{method}"
        shown, downloads = run_downloads(run_dir, label, checkpoint=False)
        state = {"label": label, "units": loaded.units, "model_dir": str(run_dir), "mesh": str(run_dir / "mesh.ply"),
                 "cloud": str(run_dir / CLOUD_FILE),
                 "gt_mesh": str(loaded.example.gt_mesh) if loaded.example and loaded.example.gt_mesh else None}
        status = (f"{notes}**Done: {title} at octree depth {summary[method]['depth']} in "
                  f"{summary['fit_seconds']:.1f} s** (normals {summary['normals_seconds']:.1f} s, "
                  f"{summary['normals']}; solve {summary['solve_seconds']:.1f} s; trim {summary['trim_seconds']:.1f} s)"
                  f" · {summary['mesh_vertices']:,} vertices · no network, so nothing to push or re-mesh")
        yield {"surface": shown, "losses": None, "status": status, "metrics": metrics_table(summary, loaded.units),
               "progress": stage_progress("done", title, summary["fit_seconds"], summary), "downloads": downloads,
               "current": state}

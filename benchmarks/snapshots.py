"""What a visitor watches: the app's live snapshots of a fit, and how close the fit is at 5, 10 and
20 seconds.

    python -m benchmarks.snapshots [--cases bunny-scan dragon-scan] [--presets cpu-quick cpu-quick-fourier]

Each case and preset is fitted through the app's own training loop (`diffcd_space.training.train`,
with the preset's live-snapshot settings of a CPU Space: a 64³ mesh at most every 3 s), twice: the
first run compiles the training step (or reads it from the persistent compilation cache, as a
Space does after its first fit), the second is the one timed, as a visitor's fit on a warm server.
Recorded: when the first snapshot reached the page, and the fit's parameters at 5, 10 and 20 s
after the fit started and at its end; those are meshed afterwards at the preset's final resolution
and scored against the ground truth (Chamfer and Hausdorff in % of the longest side), so the
scores say how far the fit had come, not how coarse a snapshot is. Wall times need the machine
alone: the load average is recorded with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.encodings import mesh_and_score
from benchmarks.quality import load_case
from diffcd import Fitter

RESULTS = Path(__file__).parent / "results"
MARKS = (5.0, 10.0, 20.0)
"""Seconds after the fit started at which its parameters are kept and scored."""


class _Recorder:
    """The fitter as `train` drives it, keeping a copy of the model when each mark has passed. The
    copy is taken in the training thread between chunks, as the app's snapshots are (the next
    chunk reuses the parameters' buffers)."""

    def __init__(self, fitter: Fitter, start: float):
        self.fitter, self.start = fitter, start
        self.kept: dict[str, tuple[float, int, object]] = {}

    def run(self):
        for event in self.fitter.run():
            now = time.perf_counter() - self.start
            for mark in MARKS:
                if f"{mark:g}s" not in self.kept and now >= mark and not event.done:
                    self.kept[f"{mark:g}s"] = (now, event.step, self.fitter.fitted())
            if event.done:
                self.kept["end"] = (now, event.step, event.result.fitted)
            yield event

    def cancel(self) -> None:
        self.fitter.cancel()

    def fitted(self):
        return self.fitter.fitted()


def watch(cloud, preset) -> dict:
    """One fit through the app's loop: when snapshots arrived, and the model at each mark and the end."""
    from diffcd_space.training import train

    config = preset.config("diffcd")
    start = time.perf_counter()  # as the Fit button is pressed: the fitter's set-up counts
    recorder = _Recorder(Fitter(cloud, config), start)
    snapshots: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        for progress in train(recorder, folder=Path(folder), snapshot_seconds=preset.snapshot_seconds,
                              snapshot_resolution=preset.snapshot_resolution, should_stop=lambda: False):
            if progress.snapshot:
                snapshots.append((round(time.perf_counter() - recorder.start, 2), progress.event.step))
            if progress.event.done:
                summary = progress.event.result.summary
    return {"config": config, "snapshots": snapshots, "kept": recorder.kept, "summary": summary}


def score(fitted, resolution: int, truth) -> dict:
    _, _, units = mesh_and_score(fitted, resolution, truth)
    return {"chamfer_percent": round(units["chamfer_x100"], 4), "hausdorff_percent": round(units["hausdorff_x100"], 3)}


def run_case(case: str, preset_name: str) -> dict:
    from diffcd_space.presets import library_presets

    preset = library_presets(gpu=False)[preset_name]
    cloud, truth = load_case(case)
    first = watch(cloud, preset)  # compiles, or reads the persistent cache
    timed = watch(cloud, preset)
    load = os.getloadavg()[0]
    row = {"case": case, "preset": preset_name, "load_average": round(load, 2),
           "first_run_compile_seconds": round(first["summary"]["compile_seconds"], 1),
           "compile_seconds": round(timed["summary"]["compile_seconds"], 2),
           "first_snapshot_seconds": timed["snapshots"][0][0] if timed["snapshots"] else None,
           "snapshots": timed["snapshots"], "steps": timed["config"].schedule.steps,
           "snapshot_resolution": preset.snapshot_resolution, "mesh_resolution": timed["config"].mesh_resolution,
           "marks": {}}
    for name, (seconds, step, fitted) in timed["kept"].items():
        row["marks"][name] = {"seconds": round(seconds, 2), "step": int(step),
                              **score(fitted, timed["config"].mesh_resolution, truth)}
    return row


def write_report(path: Path, rows: list[dict]) -> None:
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": jax.default_backend(), "rows": rows}
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# What a visitor watches: live snapshots and the fit at 5, 10 and 20 s", "",
             f"{report['date']}, backend {report['backend']}; `python -m benchmarks.snapshots`. DiffCD through "
             "the app's training loop with a CPU Space's live snapshots (64³, at most every 3 s), the second "
             "of two runs (the first compiles). Chamfer and Hausdorff in % of the longest side, of the fit "
             "as it stood at that moment, meshed at the preset's final resolution. The load average says "
             "whether the machine was quiet (2 cores: below 2.5).", "",
             "| case | preset | load | first snapshot s | 5 s: step, Chamfer % | 10 s | 20 s | end: s, Chamfer %, Hausdorff % |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        marks = r["marks"]
        cell = lambda k: (f"{marks[k]['step']}, {marks[k]['chamfer_percent']:.3f}" if k in marks else "—")
        end = marks["end"]
        lines.append(f"| {r['case']} | {r['preset']} | {r['load_average']} | {r['first_snapshot_seconds']} | "
                     f"{cell('5s')} | {cell('10s')} | {cell('20s')} | {end['seconds']:.0f}, "
                     f"{end['chamfer_percent']:.3f}, {end['hausdorff_percent']:.2f} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["bunny-scan", "dragon-scan"])
    parser.add_argument("--presets", nargs="+", default=["cpu-quick", "cpu-quick-fourier"])
    args = parser.parse_args()
    from diffcd.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"snapshots-{jax.default_backend()}.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    for case in args.cases:
        for preset in args.presets:
            row = run_case(case, preset)
            rows = [r for r in rows if (r["case"], r["preset"]) != (case, preset)] + [row]
            print(json.dumps({k: v for k, v in row.items() if k != "snapshots"}), flush=True)
            write_report(path, rows)


if __name__ == "__main__":
    main()

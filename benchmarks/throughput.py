"""Throughput benchmark: shapes per hour with K shapes per compiled program (diffcd.fit_many).

    python -m benchmarks.throughput                 # CPU: cpu-quick, K = 1, 4, 8
    python -m benchmarks.throughput --gpu           # GPU: paper size, K = 1, 8, 32

For every K it fits K example shapes (cycling through examples/) for a short run and measures the
steady state: shape-steps per second between the first chunk (compilation) and the last, seed
refreshes included. From that: steps/s per shape, shapes per hour at the preset's full length,
and the projected wall time of the paper's table (22 shapes x 5 settings = 110 fits of 40,000
steps). On the CPU, paper-size steps are not run: the projection scales the measured cpu-quick
rate by XLA's FLOP count of one paper-size step over one cpu-quick step (an estimate; marked so).
On a GPU it also records the peak device memory and the time of one full 40k-step DiffCD fit.

Writes benchmarks/results/throughput-<backend>.md and .json (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax

from diffcd import Fitter, make_config
from diffcd.batch import fit_many
from diffcd.dataset import discover
from diffcd.io import load_point_cloud

RESULTS = Path(__file__).parent / "results"
EXAMPLES = Path(__file__).parent.parent / "examples"
PAPER_FITS, PAPER_STEPS = 110, 40_000


def clouds(count: int, max_points: int):
    shapes = [s for s in discover(EXAMPLES) if s.noise_level in (None, "none")]
    loaded = [load_point_cloud(s.cloud, max_points=max_points) for s in shapes]
    return [loaded[i % len(loaded)] for i in range(count)]


def config_for(preset: str, method: str, steps: int):
    config = make_config(preset, method)
    full = config.schedule.steps
    # The preset's schedule shape (warm-up, refresh cadence) with fewer steps: same cost per step.
    config = dataclasses.replace(config, schedule=dataclasses.replace(
        config.schedule, steps=steps, warmup_steps=min(steps, config.schedule.warmup_steps)))
    return config, full


def measure(preset: str, method: str, k: int, steps: int, max_points: int) -> dict:
    config, full_steps = config_for(preset, method, steps)
    marks = []
    start = time.perf_counter()
    for event in fit_many(clouds(k, max_points), config):
        if not event.event.done:
            marks.append((time.perf_counter(), event.steps_done))
    end_time, end_steps = marks[-1]
    first_time, first_steps = marks[0]
    rate = (end_steps - first_steps) / (end_time - first_time)  # shape-steps per second
    row = {
        "K": k, "method": method, "preset": preset, "measured_steps": steps,
        "first_chunk_seconds": round(first_time - start, 2),
        "shape_steps_per_second": round(rate, 3),
        "steps_per_second_per_shape": round(rate / k, 3),
        "shapes_per_hour": round(3600 * rate / full_steps, 2),
        "full_fit_steps": full_steps,
        "paper_table_hours_at_this_size": round(PAPER_FITS * full_steps / rate / 3600, 2),
    }
    if jax.default_backend() == "gpu":
        stats = jax.local_devices()[0].memory_stats() or {}
        row["peak_gpu_memory_gib"] = round(stats.get("peak_bytes_in_use", 0) / 2**30, 2)
        row["full_paper_fit_minutes"] = round(PAPER_STEPS * k / rate / 60, 1)
        row["paper_table_hours"] = round(PAPER_FITS * PAPER_STEPS / rate / 3600, 2)
    return row


def flop_ratio(method: str, max_points: int) -> float:
    """XLA's FLOPs of one paper-size step over one cpu-quick step (compiles, runs nothing)."""
    cloud = clouds(1, max_points)[0]
    quick = Fitter(cloud, make_config("cpu-quick", method)).step_flops()
    paper = Fitter(cloud, make_config("paper", method)).step_flops()
    return paper / quick


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Throughput: {meta['preset']}, {meta['method']}, {meta['backend']}", "",
             f"{meta['machine']}. {meta['note']}", "",
             "| K | steps/s per shape | shape-steps/s | shapes/hour | first chunk (s) | 110-fit table at this size (h) |"
             + (" peak GPU memory (GiB) | one 40k fit (min) | paper table (h) |" if "paper_table_hours" in rows[0] else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if "paper_table_hours" in rows[0] else "")]
    for r in rows:
        line = (f"| {r['K']} | {r['steps_per_second_per_shape']} | {r['shape_steps_per_second']} | "
                f"{r['shapes_per_hour']} | {r['first_chunk_seconds']} | {r['paper_table_hours_at_this_size']} |")
        if "paper_table_hours" in r:
            line += f" {r['peak_gpu_memory_gib']} | {r['full_paper_fit_minutes']} | {r['paper_table_hours']} |"
        lines.append(line)
    if "paper_projection" in meta:
        p = meta["paper_projection"]
        lines += ["", f"Paper size on this machine (estimate, not run): one paper step costs {p['flop_ratio']:.1f}x "
                      f"the FLOPs of a cpu-quick step, so at the best K ({p['best_k']}) the paper's 110 fits of 40,000 "
                      f"steps would take about {p['paper_table_hours']:,.0f} hours ({p['paper_table_hours'] / 24:,.0f} days)."]
    if meta["backend"] == "cpu":
        lines += ["", "GPU: `python -m benchmarks.throughput --gpu` (paper size, K = 1, 8, 32: steps/s per shape, "
                      "peak GPU memory, one 40k-step fit, the 110-fit table) writes throughput-gpu.md. "
                      "Not run yet: no GPU was available when this page was made."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="paper size, K = 1 8 32, 300 steps")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--method", default="diffcd")
    parser.add_argument("--ks", type=int, nargs="+")
    parser.add_argument("--steps", type=int, help="steps per measured run")
    parser.add_argument("--max-points", type=int, default=20_000)
    parser.add_argument("--no-projection", action="store_true", help="skip the FLOP-based paper projection")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    preset = args.preset or ("paper" if args.gpu else "cpu-quick")
    ks = args.ks or ([1, 8, 32] if args.gpu else [1, 4, 8])
    steps = args.steps or (300 if args.gpu else 48)
    backend = jax.default_backend()
    meta = {"preset": preset, "method": args.method, "backend": backend,
            "machine": f"{platform.machine()}, {jax.device_count()} {backend} device(s): {jax.devices()[0].device_kind}",
            "note": args.note, "jax": jax.__version__}
    rows = []
    for k in ks:
        rows.append(measure(preset, args.method, k, steps, args.max_points))
        print(json.dumps(rows[-1]), flush=True)
        write(rows, meta)  # every K as it comes: a long run stopped early keeps what it measured
    if backend == "cpu" and not args.no_projection and preset != "paper":
        best = max(rows, key=lambda r: r["shape_steps_per_second"])
        ratio = flop_ratio(args.method, args.max_points)
        meta["paper_projection"] = {
            "flop_ratio": ratio, "best_k": best["K"],
            "paper_table_hours": PAPER_FITS * PAPER_STEPS * ratio / best["shape_steps_per_second"] / 3600,
        }
    print(write(rows, meta))


def write(rows: list[dict], meta: dict) -> str:
    RESULTS.mkdir(exist_ok=True)
    name = f"throughput-{meta['backend']}"
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    text = markdown(rows, meta)
    (RESULTS / f"{name}.md").write_text(text)
    return text


if __name__ == "__main__":
    main()

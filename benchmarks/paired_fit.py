"""Whole fits of method variants side by side, their chunks interleaved: what a change costs.

    python -m benchmarks.paired_fit [--case bunny-scan] [--preset cpu-quick]
                                    [--variants diffcd diffcd:nn_search=candidates]

Whole fits run one after the other vary by about ±8 % on a shared virtual machine, more than
the differences worth measuring. Here every variant advances one chunk in turn, so a slow spell
falls on all of them. Reports training seconds only (no compilation, no seed refreshes), in
total and over the first 100 steps, steps 100-300 and the rest: DiffCD's exact nearest-neighbour
search costs most early, while the surface is far from the cloud.

Writes benchmarks/results/paired-fit-<case>-<backend>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from benchmarks.quality import load_case
from benchmarks.speed import parse_variant, run_interleaved
from diffcd.compilation_cache import enable_compilation_cache
from diffcd.fit import Fitter
from diffcd.presets import make_config

RESULTS = Path(__file__).parent / "results"
PHASES = ((0, 100), (100, 300), (300, None))


def paired_fits(cloud, preset: str, variants: list[str]) -> list[dict]:
    """Whole fits of `variants` (METHOD or METHOD:key=value,..., as in benchmarks.speed)."""
    fitters = {}
    for v in variants:
        method, overrides = parse_variant(v)
        fitters[v] = Fitter(cloud, make_config(preset, method, method_overrides=overrides))
    for fitter in fitters.values():
        fitter.compile()
    marks = run_interleaved(fitters)
    rows = []
    for v, fitter in fitters.items():
        summary = fitter.summary()
        row = {"variant": v, "steps": summary["steps"], "train_seconds": summary["train_seconds"]}
        for start, stop in PHASES:
            stop = stop or summary["steps"]
            row[f"train_seconds_{start}_{stop}"] = round(sum(
                t1 - t0 for (s0, t0), (s1, t1) in zip(marks[v], marks[v][1:]) if start < s1 <= stop
            ), 3)
        rows.append(row)
    base = rows[-1]["train_seconds"]
    for row in rows:
        row["vs_last"] = round(row["train_seconds"] / base, 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="bunny-scan", help="an example id or a real-scan case of benchmarks.quality")
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--variants", nargs="+", default=["diffcd", "diffcd:nn_search=candidates"],
                        help="METHOD or METHOD:key=value,... per fit (as in benchmarks.speed); the last is the baseline")
    args = parser.parse_args()
    enable_compilation_cache()
    cloud, _ = load_case(args.case)
    rows = paired_fits(cloud, args.preset, args.variants)
    backend = jax.default_backend()
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": backend, "case": args.case,
              "preset": args.preset, "jax": jax.__version__, "rows": rows}
    name = f"paired-fit-{args.case}-{backend}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    phase_names = [k for k in rows[0] if k.startswith("train_seconds_")]
    lines = [f"# Paired whole fits: {args.case}, {args.preset} ({backend})", "",
             f"{report['date']}, JAX {report['jax']}. Chunks interleaved; training seconds only.", "",
             "| variant | steps | training s | vs last | " + " | ".join(
                 "steps " + k.removeprefix("train_seconds_").replace("_", "-") for k in phase_names) + " |",
             "| --- " * (4 + len(phase_names)) + "|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | {r['train_seconds']} | {r['vs_last']} | "
                     + " | ".join(str(r[k]) for k in phase_names) + " |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

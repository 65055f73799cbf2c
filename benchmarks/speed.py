"""Speed benchmark: steps/s per method, compile time (cold and cached), seed refreshes and how
much of them overlaps training, whole fits with their final mesh and metrics, meshing dense vs
coarse-to-fine, memory.

    python -m benchmarks.speed [--sizes cpu-quick paper] [--steps 20] [--mesh 128 256]
    python -m benchmarks.speed --sizes cpu-quick --full-fit diffcd --overlap both   # refresh A/B
    python -m benchmarks.speed --gpu-report            # on a GPU: see gpu_report(), ~8 min on an H200
    python -m benchmarks.speed --cloud-sweep 30000 200000 1000000 --warm-steps 96 --steps 32 --repeats 7
    python -m benchmarks.speed --cloud-sweep 30000 200000 1000000 --whole-fits 3  # whole fits, ~20 min

Prints a table and writes benchmarks/results/speed-<backend>.md and .json (see docs/benchmarks.md). Timings exclude compilation: each method first runs one chunk, then a timed run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from diffcd import METHODS, Fitter, make_config, metrics
from diffcd.compilation_cache import ENV_VAR as CACHE_ENV_VAR
from diffcd.compilation_cache import enable_compilation_cache
from diffcd.io import load_mesh, load_point_cloud
from diffcd.meshing import extract_mesh
from diffcd.sdf import evaluate_in_chunks

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
CLOUD = ROOT / "examples" / "bracket_cloud.npy"
GT_MESH = ROOT / "examples" / "bracket_gt.ply"
APP_CLOUD = ROOT / "examples" / "torus_cloud.npy"
"""The app's default example: its first-fit latency is measured on it."""


def parse_variant(name: str) -> tuple[str, dict]:
    """"diffcd:projection_steps=0" -> ("diffcd", {"projection_steps": 0}): a method with overrides."""
    method, _, settings = name.partition(":")
    overrides = {}
    for item in filter(None, settings.split(",")):
        key, value = item.split("=")
        overrides[key] = type(getattr(METHODS[method].config_type(), key))(value)
    return method, overrides


def _timed_fitter(cloud, preset: str, name: str, steps: int, repeats: int, precision: str = "highest",
                  warm: int = 0, **fitter_options):
    """A fitter for `repeats` timed chunks of `steps` steps after `warm` steps of training.

    With `warm` (methods with surface seeds only), the preset's seed refreshes run as in a real
    fit and the timed chunks start from a fit in progress, whose surface is near the cloud:
    DiffCD's exact nearest-neighbour search costs most in the first few hundred steps, when it is
    far. Without, seeds are refreshed at step 0 only and chunks start from the untrained net.
    """
    method, overrides = parse_variant(name)
    base = dataclasses.replace(make_config(preset, method, method_overrides=overrides or None),
                               precision=precision)
    warm = warm if METHODS[method].uses_surface_seeds else 0
    schedule = dataclasses.replace(base.schedule, steps=warm + (repeats + 2) * steps,
                                   warmup_steps=min(base.schedule.warmup_steps, warm) or steps)
    config = dataclasses.replace(base, chunk_steps=steps, schedule=schedule)
    if method == "diffcd" and not warm:  # time training steps only: no seed refresh inside the timed chunks
        config = dataclasses.replace(
            config, method_config=dataclasses.replace(config.method_config, seed_refresh_every=10**9)
        )
    return Fitter(cloud, config, **fitter_options), warm


def _time_chunks(runs: dict, fitters: dict, warm: dict, steps: int, repeats: int) -> dict:
    """Best seconds per step of each fitter over `repeats` chunks, fitters interleaved so that
    load from other processes affects them alike. Counts training time only (the fitter's
    train_seconds: no compilation, no seed refresh)."""
    for key, run in runs.items():
        next(run)  # compile + first chunk (includes the step-0 seed mesh for DiffCD)
        while fitters[key].state.step < warm[key]:
            next(run)
    best = {key: float("inf") for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            fitter = fitters[key]
            step, train = fitter.state.step, fitter.summary()["train_seconds"]
            next(run)
            done = fitter.state.step - step
            if done:
                best[key] = min(best[key], (fitter.summary()["train_seconds"] - train) / done)
    for run in runs.values():
        run.close()
    return best


def steps_per_second(cloud, preset: str, methods: list[str], steps: int, repeats: int,
                     precision: str = "highest", flops: bool = True, warm: int = 0) -> list[dict]:
    """Each method's best chunk time over `repeats` (see _timed_fitter for `warm`)."""
    made = {m: _timed_fitter(cloud, preset, m, steps, repeats, precision, warm) for m in methods}
    fitters = {m: f for m, (f, _) in made.items()}
    best = _time_chunks({m: f.run() for m, f in fitters.items()}, fitters,
                        {m: w for m, (_, w) in made.items()}, steps, repeats)
    rows = []
    for method, fitter in fitters.items():
        summary = fitter.summary()
        row = {
            "preset": preset, "method": method, "batch_size": fitter.config.batch_size,
            "precision": precision, "warm_steps": made[method][1],
            "compile_seconds": round(summary["compile_seconds"], 2),
            "steps_per_second": round(1 / best[method], 3),
            "seconds_per_step": round(best[method], 4),
            "seed_mesh_seconds": round(summary["seed_mesh_seconds"], 2),
        }
        if flops:
            count = fitter.step_flops()
            row["gflop_per_step"] = round(count / 1e9, 2)
            row["gflop_per_second"] = round(count / 1e9 / best[method], 1)
        rows.append(row)
    return rows


_COMPILE_ONE = """
import json, sys, time
from diffcd import Fitter, make_config, load_point_cloud
from diffcd.compilation_cache import enable_compilation_cache
enable_compilation_cache()
fitter = Fitter(load_point_cloud(sys.argv[1]), make_config(sys.argv[2], sys.argv[3]))
print(json.dumps({"compile_seconds": fitter.compile()}))
"""


def compile_cold_and_cached(preset: str, method: str) -> dict:
    """Seconds to compile a fit's chunk programs in a fresh process: with an empty persistent
    cache (cold), then in a second process with the cache the first one filled (cached)."""
    out = {"preset": preset, "method": method}
    with tempfile.TemporaryDirectory(prefix="diffcd-cache-") as cache:
        env = {**os.environ, CACHE_ENV_VAR: cache}
        for name in ("cold", "cached"):
            done = subprocess.run([sys.executable, "-c", _COMPILE_ONE, str(CLOUD), preset, method],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            out[f"{name}_seconds"] = round(json.loads(done.stdout.strip().splitlines()[-1])["compile_seconds"], 2)
    return out


NO_PROJECTION = "diffcd:projection_steps=0"


def cost_ratios(rows: list[dict], method: str, cost: str) -> dict[str, float]:
    """Per preset: `method`'s cost (seconds_per_step or gflop_per_step) over IGR's."""
    ratios = {}
    for preset in dict.fromkeys(r["preset"] for r in rows):
        by = {r["method"]: r for r in rows if r["preset"] == preset}
        if method in by and "igr" in by:
            ratios[preset] = round(by[method][cost] / by["igr"][cost], 2)
    return ratios


def full_fit(cloud, preset: str, method: str, steps: int | None, *, overlap: bool = True,
             precision: str = "highest", gt_mesh=None, label: str = "") -> tuple[dict, object]:
    """Wall time of a whole fit as a user runs it: compile, seed refreshes, training, final mesh,
    and the final mesh's metrics against `gt_mesh`. Returns the row and the fitted SDF."""
    base_method, overrides = parse_variant(method)
    config = dataclasses.replace(make_config(preset, base_method, steps=steps, method_overrides=overrides or None),
                                 overlap_seed_refresh=overlap, precision=precision)
    fitter = Fitter(cloud, config)
    start, reported = time.perf_counter(), 0
    for event in fitter.run():
        if 10 * event.step // event.total_steps > reported:  # a line per tenth of the fit
            reported = 10 * event.step // event.total_steps
            print(f"  {method}{label}: step {event.step}/{event.total_steps}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    fit_seconds = time.perf_counter() - start
    fitted = fitter.fitted()
    mesh = fitted.extract_mesh(config.mesh_resolution)
    mesh_seconds = time.perf_counter() - start - fit_seconds
    summary = fitter.summary()
    row = {
        "preset": preset, "method": method, "steps": summary["steps"], "precision": precision,
        "overlap": summary["seed_refresh_overlap"],
        "wall_seconds": round(fit_seconds + mesh_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "train_seconds": round(summary["train_seconds"], 1),
        "final_mesh_seconds": round(mesh_seconds, 1),
        "final_mesh_resolution": config.mesh_resolution,
        "compile_seconds": round(summary["compile_seconds"], 1),
        "seed_refreshes": summary["seed_refreshes"],
        "seed_mesh_seconds": round(summary["seed_mesh_seconds"], 1),
        "seed_refresh_wait_seconds": round(summary["seed_refresh_wait_seconds"], 1),
        "seed_refresh_overlapped_seconds": round(summary["seed_refresh_overlapped_seconds"], 1),
        "steps_per_second": summary["steps_per_second"],
    }
    if gt_mesh is not None:
        scores = metrics.evaluate_mesh(mesh, gt_mesh, n_samples=30_000)
        row.update(chamfer=round(scores["chamfer"], 6), normal_angle_deg=round(scores["normal_angle_deg"], 3))
    return row, fitted


def refresh_ab(cloud, preset: str, method: str, steps: int | None, overlap: str, rounds: int,
               gt_mesh=None) -> list[dict]:
    """Whole fits with the seed refresh overlapped and synchronous, interleaved (`rounds` each)
    so that load from other processes affects both alike."""
    variants = {"on": [True], "off": [False], "both": [False, True]}[overlap]
    rows = []
    for round_ in range(rounds):
        for flag in variants:
            row, _ = full_fit(cloud, preset, method, steps, overlap=flag, gt_mesh=gt_mesh,
                              label=f" (overlap {'on' if flag else 'off'}, round {round_ + 1})")
            row["round"] = round_ + 1
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def meshing(cloud, resolution: int, preset: str) -> dict:
    fitter = Fitter(cloud, make_config(preset, "igr"))
    params = fitter.state.params
    evaluate = lambda x: evaluate_in_chunks(fitter.config.network, params, x)
    evaluate(np.zeros((40_000, 3), np.float32))  # compile both chunk shapes
    evaluate(np.zeros((10, 3), np.float32))
    out = {"preset": preset, "resolution": resolution}
    meshes = {}
    for name, c2f in (("dense", False), ("coarse_to_fine", True)):
        start = time.perf_counter()
        meshes[name] = extract_mesh(evaluate, resolution, coarse_to_fine=c2f)
        out[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
        out[f"{name}_evaluations"] = int(meshes[name].evaluated_points)
    a, b = meshes["dense"], meshes["coarse_to_fine"]
    out["speedup"] = round(out["dense_seconds"] / out["coarse_to_fine_seconds"], 2)
    out["identical_vertices"] = bool(a.vertices.shape == b.vertices.shape and np.array_equal(a.vertices, b.vertices))
    out["identical_faces"] = bool(a.faces.shape == b.faces.shape and np.array_equal(a.faces, b.faces))
    return out


def _app_first_fit(preset: str, mode: str, cache: str, steps: int | None) -> dict:
    """Seconds from pressing Fit to the first progress event of the app's default fit (DiffCD on
    the torus example), in a fresh process: `cold` (empty persistent cache), `cached` (the cache
    a cold run filled) or `warmed` (after warm_up, which the app runs at start-up)."""
    code = f"""
import json, time, dataclasses
from diffcd import Fitter, make_config, load_point_cloud
from diffcd.compilation_cache import enable_compilation_cache
enable_compilation_cache()
cloud = load_point_cloud({str(APP_CLOUD)!r})
config = make_config({preset!r}, "diffcd", steps={steps!r})
warm = warm_up(config, cloud) if {mode!r} == "warmed" else 0.0
start = time.perf_counter()
event = next(Fitter(cloud, config).run())
print(json.dumps({{"first_event_seconds": time.perf_counter() - start, "warm_up_seconds": warm,
                  "first_event_step": event.step}}))
"""
    env = {**os.environ, CACHE_ENV_VAR: cache}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"preset": preset, "mode": mode, **{k: round(v, 2) for k, v in row.items()}}


def gpu_report(args: argparse.Namespace) -> dict:
    """The GPU check, one run of about 8 minutes on one H200:

    1. paper-preset steps/s of DiffCD at each matmul precision (highest, high, default);
    2. the app's first-fit latency (gpu-demo, torus): cold cache, cached, after the warm-up;
    3. a whole 40k-step paper DiffCD fit as the paper runs it (fp32, synchronous seed refresh)
       and the fast way (TF32 training passes, overlapped refresh): wall time, compile, seed
       refreshes and how much of them overlapped training, final 512³ mesh, and quality
       (Chamfer, normal angle against the ground truth; each fit's cloud distance; the two
       fields' difference at the cloud).

    Each part is written to the results file as soon as it is done, so a run cut short keeps
    what it measured. `--dry-run` does the same with the cpu-quick preset and few steps, to
    test this code on a CPU.
    """
    dry = args.dry_run
    if jax.default_backend() != "gpu" and not dry:
        raise SystemExit("--gpu-report needs a GPU (jax.default_backend() is "
                         f"{jax.default_backend()!r}); --dry-run checks the script on a CPU.")
    preset = "cpu-quick" if dry else "paper"
    app_preset = "cpu-quick" if dry else "gpu-demo"
    fit_steps = args.full_fit_steps or (48 if dry else None)
    cloud = load_point_cloud(CLOUD)
    gt_mesh = load_mesh(GT_MESH)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": jax.default_backend(),
              "device": jax.devices()[0].device_kind, "jax": jax.__version__, "dry_run": dry,
              "cloud": f"{CLOUD.name} ({len(cloud.points)} points)", "precision_steps": [],
              "app_first_fit": [], "full_fits": []}
    name = f"speed-{jax.default_backend()}-report{'-dry-run' if dry else ''}"
    out = Path(args.out_dir) if args.out_dir else RESULTS

    def save() -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / f"{name}.md").write_text(gpu_markdown(report))

    for precision in ("highest", "high", "default"):
        row = steps_per_second(cloud, preset, ["diffcd"], args.steps, args.repeats, precision, flops=False)[0]
        report["precision_steps"].append(row)
        print(json.dumps(row), flush=True)
        save()
    with tempfile.TemporaryDirectory(prefix="diffcd-cache-") as cache:
        for mode in ("cold", "cached", "warmed"):
            row = _app_first_fit(app_preset, mode, cache, 48 if dry else None)
            report["app_first_fit"].append(row)
            print(json.dumps(row), flush=True)
            save()
    fits = {}
    # The reference is the paper's procedure (fp32, synchronous seed refresh); the fast fit is
    # what a GPU runs by choice (TF32 training passes, overlapped refresh).
    for precision, overlap in (("highest", False), ("default", True)):
        row, fits[precision] = full_fit(cloud, preset, "diffcd", fit_steps, precision=precision,
                                        overlap=overlap, gt_mesh=gt_mesh,
                                        label=f" ({precision}, overlap {'on' if overlap else 'off'})")
        row["cloud_to_surface_mean"] = round(float(abs(fits[precision](cloud.points)).mean()), 6)
        report["full_fits"].append(row)
        print(json.dumps(row), flush=True)
        save()
    # How far the fast fit's surface is from the fp32 fit's: |f_fp32| at the fast fit's cloud-side
    # zero set is hard to get; the fp32 field at the cloud and the fields' difference there are not.
    difference = abs(fits["default"](cloud.points) - fits["highest"](cloud.points))
    report["fast_vs_fp32"] = {"field_difference_mean": round(float(difference.mean()), 6),
                              "field_difference_max": round(float(difference.max()), 6)}
    save()
    return report


def gpu_markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['backend']}: {report['device']}){' — DRY RUN on a CPU' if report['dry_run'] else ''}",
             "", f"{report['date']}, JAX {report['jax']}, cloud {report['cloud']}.", "",
             "| preset | method | precision | steps/s | s/step | compile s |", "| --- | --- | --- | --- | --- | --- |"]
    for r in report["precision_steps"]:
        lines.append(f"| {r['preset']} | {r['method']} | {r['precision']} | {r['steps_per_second']} | "
                     f"{r['seconds_per_step']} | {r['compile_seconds']} |")
    lines += ["", "App first fit (seconds from Fit to the first progress event, fresh process):", "",
              "| preset | cache | first event s | warm-up s (at start-up) |", "| --- | --- | --- | --- |"]
    for r in report["app_first_fit"]:
        lines.append(f"| {r['preset']} | {r['mode']} | {r['first_event_seconds']} | {r['warm_up_seconds']} |")
    lines += ["", "Whole DiffCD fits:", "", FULL_FIT_HEADER, FULL_FIT_RULE]
    lines += [_full_fit_line(r) for r in report["full_fits"]]
    if report.get("fast_vs_fp32"):
        d = report["fast_vs_fp32"]
        lines += ["", f"|f_default − f_highest| at the cloud points: mean {d['field_difference_mean']}, "
                      f"max {d['field_difference_max']} (normalised to the input's units)."]
    return "\n".join(lines) + "\n"


FULL_FIT_HEADER = ("| preset | method | precision | overlap | steps | wall s | compile s | train s | refreshes | "
                   "refresh s | waited s | overlapped s | final mesh s | steps/s | Chamfer | normal ° |")
FULL_FIT_RULE = "| " + " | ".join(["---"] * 16) + " |"


def _full_fit_line(r: dict) -> str:
    return (f"| {r['preset']} | {r['method']} | {r.get('precision', 'highest')} | {r.get('overlap', '')} | "
            f"{r['steps']} | {r['wall_seconds']} | {r['compile_seconds']} | {r.get('train_seconds', '')} | "
            f"{r.get('seed_refreshes', '')} | {r['seed_mesh_seconds']} | {r.get('seed_refresh_wait_seconds', '')} | "
            f"{r.get('seed_refresh_overlapped_seconds', '')} | {r['final_mesh_seconds']} "
            f"({r['final_mesh_resolution']}³) | {r['steps_per_second']} | {r.get('chamfer', '')} | "
            f"{r.get('normal_angle_deg', '')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["cpu-quick", "paper"])
    parser.add_argument("--methods", nargs="+", default=[*METHODS, NO_PROJECTION],
                        help="methods, or METHOD:key=value,... for a variant (the default's last entry "
                             "shows what DiffCD costs without its projection steps)")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks per method (best is kept)")
    parser.add_argument("--warm-steps", type=int, default=0,
                        help="train DiffCD this many steps, with its seed refreshes, before timing (a fit "
                             "in progress; 0: time from the untrained net, seeds refreshed at step 0 only)")
    parser.add_argument("--mesh", nargs="*", type=int, default=[128, 256], help="meshing resolutions (paper net)")
    parser.add_argument("--compile", nargs="*", default=["diffcd"], metavar="METHOD",
                        help="time compilation of these methods per preset, cold and from the persistent cache")
    parser.add_argument("--full-fit", nargs="*", default=[], metavar="METHOD",
                        help="also time whole fits of these methods at the last of --sizes (for a GPU: "
                             "the paper preset's 40k steps take hours on a CPU)")
    parser.add_argument("--full-fit-steps", type=int, help="steps of the whole fits (default: the preset's)")
    parser.add_argument("--overlap", choices=["on", "off", "both"], default="both",
                        help="whole DiffCD fits with the seed refresh overlapped, synchronous, or both interleaved")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the whole fits")
    parser.add_argument("--gpu-report", action="store_true", help="the GPU check (see gpu_report); nothing else")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu-report: small sizes, runs on a CPU")
    parser.add_argument("--out-dir", help="folder of the results files (default: benchmarks/results)")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    enable_compilation_cache()

    if args.gpu_report:
        print(gpu_markdown(gpu_report(args)))
        return
    cloud = load_point_cloud(CLOUD)
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    compile_rows = []
    for preset in args.sizes:
        for method in args.compile:
            row = compile_cold_and_cached(preset, method)
            compile_rows.append(row)
            print(json.dumps(row), flush=True)
    rows = []
    for preset in args.sizes:
        for row in steps_per_second(cloud, preset, args.methods, args.steps, args.repeats, warm=args.warm_steps):
            rows.append(row)
            print(json.dumps(row), flush=True)
    mesh_rows = []
    for resolution in args.mesh:
        row = meshing(cloud, resolution, "paper")
        mesh_rows.append(row)
        print(json.dumps(row), flush=True)
    full_rows = []
    gt_mesh = load_mesh(GT_MESH)
    for method in args.full_fit:
        overlap = args.overlap if METHODS[parse_variant(method)[0]].uses_surface_seeds else "on"
        full_rows += refresh_ab(cloud, args.sizes[-1], method, args.full_fit_steps, overlap, args.rounds, gt_mesh)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "backend": backend, "device": device,
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "jax": jax.__version__, "cloud": f"{CLOUD.name} ({len(cloud.points)} points)",
        "compile": compile_rows, "steps": rows, "meshing": mesh_rows, "full_fits": full_rows,
        "peak_rss_mib": round(peak_mib),
    }
    report["diffcd_step_cost_vs_igr"] = cost_ratios(rows, "diffcd", "seconds_per_step")
    report["diffcd_step_flops_vs_igr"] = cost_ratios(rows, "diffcd", "gflop_per_step")
    report["diffcd_without_projection_vs_igr"] = cost_ratios(rows, NO_PROJECTION, "seconds_per_step")
    out = Path(args.out_dir) if args.out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    name = f"speed-{backend}{'-' + args.tag if args.tag else ''}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


FLOP_MODEL = (
    "Why the ratio cannot go much lower while following docs/method.md (§4): with F the cost of one network "
    "pass at one point (0.92 MFLOP for the paper net), a spatial gradient costs 2F, a parameter "
    "gradient of f 3F, and a parameter gradient of the eikonal term 6F (it differentiates through "
    "∇ₓf). IGR's step is 5,000 points at 3F plus 5,625 eikonal points at 6F = 48,750F. DiffCD's is "
    "10,625 eikonal points at 6F, 4 projection steps of 5,000 points at 2F, and one pass at the "
    "5,000 projected points that gives f, ∇ₓf and the implicit gradient (4F): 123,750F, 2.54x IGR. "
    "The compiled programs match this count to within a few per cent, so a DiffCD step at 1.5x an "
    "IGR step would need 40 % fewer operations than the method performs."
)


def markdown(report: dict) -> str:
    lines = [
        f"# Speed ({report['backend']}: {report['device']}, {report['cpu_count']} cores)",
        "",
        f"{report['date']}, JAX {report['jax']}, cloud {report['cloud']}; peak RSS {report['peak_rss_mib']} MiB.",
        "",
        "Steps timed after `warm` steps of training with the preset's seed refreshes (a fit in "
        "progress), or from the untrained net (warm 0; seeds refreshed at step 0 only). DiffCD's "
        "exact nearest-neighbour search costs most while the surface is far from the cloud, early in "
        "a fit; `diffcd:nn_search=candidates` searches only each seed's 32 candidates (exact where their certificate holds), for comparison.",
        "",
        "| preset | method | batch | warm | compile s | steps/s | s/step | GFLOP/step | GFLOP/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["steps"]:
        lines.append(f"| {r['preset']} | {r['method']} | {r['batch_size']} | {r.get('warm_steps', 0)} | {r['compile_seconds']} | "
                     f"{r['steps_per_second']} | {r['seconds_per_step']} | {r.get('gflop_per_step', '')} | "
                     f"{r.get('gflop_per_second', '')} |")
    lines += ["", "DiffCD step cost / IGR step cost, measured time: "
              + ", ".join(f"{k}: {v}x" for k, v in report["diffcd_step_cost_vs_igr"].items())
              + "; floating-point operations (XLA's count of the compiled step): "
              + ", ".join(f"{k}: {v}x" for k, v in report.get("diffcd_step_flops_vs_igr", {}).items()), "",
              FLOP_MODEL, ""]
    floor = report.get("diffcd_without_projection_vs_igr")
    if floor:
        lines += [
            "Where DiffCD's time goes: its eikonal term covers the cloud batch as well as the local and "
            "global samples (10,625 points against IGR's 5,625 at paper size), and each step evaluates "
            "the network once more at the 5,000 projected surface points (validity, ∇ₓf and the implicit "
            "gradient in one pass). Without any projection step (`diffcd:projection_steps=0`) a step "
            "already costs " + ", ".join(f"{k}: {v}x" for k, v in sorted(floor.items()))
            + " an IGR step; each of the paper's 4 projection steps adds one forward and one "
            "spatial-gradient pass at 5,000 points.", ""]
    if report["meshing"]:
        lines += ["| grid | dense s | coarse-to-fine s | speed-up | dense evals | c2f evals | same mesh |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["meshing"]:
        lines.append(f"| {r['resolution']}³ | {r['dense_seconds']} | {r['coarse_to_fine_seconds']} | "
                     f"{r['speedup']}x | {r['dense_evaluations']:,} | {r['coarse_to_fine_evaluations']:,} | "
                     f"{r['identical_vertices'] and r['identical_faces']} |")
    if report.get("compile"):
        lines += ["", "Compilation of a fit's chunk programs in a fresh process, with an empty persistent "
                  "cache (cold) and with the cache a first process filled (cached):", "",
                  "| preset | method | cold s | cached s |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['preset']} | {r['method']} | {r['cold_seconds']} | {r['cached_seconds']} |"
                  for r in report["compile"]]
    if report.get("full_fits"):
        lines += ["", "Whole fits (compile, seed refreshes, training and the final mesh; a refresh's "
                  "seconds either stall training (waited) or run beside it (overlapped)):", "",
                  FULL_FIT_HEADER, FULL_FIT_RULE]
        lines += [_full_fit_line(r) for r in report["full_fits"]]
    return "\n".join(lines) + "\n"


# -- cloud-size sweep: a step's cost must not grow with the cloud --------------------------------

SWEEP_MESH = Path(__file__).parent / "data" / "bunny_gt.ply"


def cloud_size_sweep(sizes: list[int], preset: str, method: str, steps: int, repeats: int,
                     warm: int = 0) -> list[dict]:
    """Steps/s of one method on clouds of `sizes` points sampled from one real scan, timed
    interleaved (best chunk of `repeats`, after `warm` steps: see _timed_fitter), and the
    set-up time before the first step."""
    fitters, warms, setup = {}, {}, {}
    for size in sizes:
        cloud = load_point_cloud(SWEEP_MESH, mesh_samples=size, seed=0)
        stages, start = [], time.perf_counter()
        fitter, warms[size] = _timed_fitter(cloud, preset, method, steps, repeats, warm=warm,
                                            progress=lambda s: stages.append((s, time.perf_counter())))
        end = time.perf_counter()
        marks = [t for _, t in stages] + [end]
        setup[size] = {"setup_seconds": round(end - start, 2),
                       **{f"setup_{name}_seconds": round(b - a, 2)
                          for name, a, b in zip(("tree_and_sigma", "method"), marks, marks[1:])}}
        fitters[size] = fitter
        print(f"  {size:,} points: set-up {setup[size]}", flush=True)
    best = _time_chunks({size: f.run() for size, f in fitters.items()}, fitters, warms, steps, repeats)
    base = 1 / best[sizes[0]]
    return [{"preset": preset, "method": method, "points": size, "warm_steps": warms[size], **setup[size],
             "steps_per_second": round(1 / best[size], 3),
             "relative_to_smallest": round(1 / best[size] / base, 3)} for size in sizes]


def write_results(stem: str, report: dict, lines: list[str]) -> None:
    """benchmarks/results/<stem>.json (the report) and .md (the lines), and print the lines."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _sweep_report(rows: list[dict]) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": jax.default_backend(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__, "cloud": f"{SWEEP_MESH.name} sampled",
            "rows": rows}


def run_interleaved(fitters: dict) -> dict[str, list[tuple[int, float]]]:
    """Run compiled `Fitter`s to the end, one chunk of each in turn, so that a slow spell of a
    shared machine falls on all of them; returns each one's (step, training seconds so far)
    after every chunk."""
    runs = {name: fitter.run() for name, fitter in fitters.items()}
    marks = {name: [(0, 0.0)] for name in fitters}
    live = list(fitters)
    while live:
        for name in list(live):
            try:
                next(runs[name])
            except StopIteration:
                live.remove(name)
                continue
            marks[name].append((fitters[name].state.step, fitters[name].summary()["train_seconds"]))
    return marks


def whole_fit_sweep(sizes: list[int], preset: str, method: str, rounds: int) -> list[dict]:
    """Training steps/s of whole preset fits on clouds of `sizes` points: every round fits each
    size once, their chunks interleaved (a ratio within a round compares fits run under the same
    load). Counts training only (no compilation, set-up, seed refresh or final mesh), over
    every step."""
    name, overrides = parse_variant(method)
    clouds = {size: load_point_cloud(SWEEP_MESH, mesh_samples=size, seed=0) for size in sizes}
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    steps = {}
    for _ in range(rounds):
        fitters = {size: Fitter(cloud, make_config(preset, name, method_overrides=overrides or None))
                   for size, cloud in clouds.items()}
        for fitter in fitters.values():
            fitter.compile()
        run_interleaved(fitters)
        for size, fitter in fitters.items():
            summary = fitter.summary()
            steps[size] = summary["steps"]
            rates[size].append(summary["steps"] / summary["train_seconds"])
        print("  " + ", ".join(f"{size:,} points: {rates[size][-1]:.2f} steps/s" for size in sizes), flush=True)
    relative = {size: [r / base for r, base in zip(rates[size], rates[sizes[0]])] for size in sizes}
    return [{"preset": preset, "method": method, "points": size, "steps": steps[size],
             "steps_per_second": [round(r, 2) for r in rates[size]],
             "relative_to_smallest": [round(r, 3) for r in relative[size]],
             "median_relative_to_smallest": round(float(np.median(relative[size])), 3)}
            for size in sizes]


def _write_whole_fit_report(rows: list[dict], args: argparse.Namespace) -> None:
    report = _sweep_report(rows)
    backend = report["backend"]
    lines = [f"# Whole-fit training speed against cloud size ({backend}, {report['cpu_count']} cores)", "",
             f"{report['date']}, JAX {report['jax']}; {args.method}, {args.preset} ({rows[0]['steps']:,} steps), "
             f"clouds sampled from {SWEEP_MESH.name}; {args.whole_fits} rounds, each fitting every size once "
             "with their chunks interleaved. Training time only, over every step of the fit.", "",
             "| points | steps/s per round | vs smallest, same round | median |", "| --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['points']:,} | {', '.join(map(str, r['steps_per_second']))} | "
                     f"{', '.join(map(str, r['relative_to_smallest']))} | {r['median_relative_to_smallest']} |")
    write_results(f"speed-cloud-size-whole-fit-{backend}", report, lines)


def sweep_main() -> None:
    parser = argparse.ArgumentParser(description="Steps/s against cloud size.")
    parser.add_argument("--cloud-sweep", nargs="+", type=int, default=[30_000, 200_000, 1_000_000])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--method", default="diffcd")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-steps", type=int, default=0,
                        help="train this many steps, with seed refreshes, before timing (see _timed_fitter)")
    parser.add_argument("--whole-fits", type=int, default=0, metavar="ROUNDS",
                        help="instead of timed chunks, train whole preset fits, this many rounds")
    args = parser.parse_args()
    if args.whole_fits:
        _write_whole_fit_report(whole_fit_sweep(args.cloud_sweep, args.preset, args.method, args.whole_fits), args)
        return
    rows = cloud_size_sweep(args.cloud_sweep, args.preset, args.method, args.steps, args.repeats,
                            args.warm_steps)
    for row in rows:
        print(json.dumps(row), flush=True)
    report = _sweep_report(rows)
    backend = report["backend"]
    lines = [f"# Steps/s against cloud size ({backend}, {report['cpu_count']} cores)", "",
             f"{report['date']}, JAX {report['jax']}; {args.method}, {args.preset}, clouds sampled from "
             f"{SWEEP_MESH.name}; best of {args.repeats} interleaved chunks of {args.steps} steps"
             + (f" after {args.warm_steps} steps of training with seed refreshes" if args.warm_steps else
                ", from the untrained net") + ".", "",
             "| points | steps/s | vs smallest | set-up s | KD-tree + sigma s | method set-up s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['points']:,} | {r['steps_per_second']} | {r['relative_to_smallest']} | "
                     f"{r['setup_seconds']} | {r.get('setup_tree_and_sigma_seconds', '')} | "
                     f"{r.get('setup_method_seconds', '')} |")
    write_results(f"speed-cloud-size-{backend}", report, lines)


if __name__ == "__main__":
    sweep_main() if "--cloud-sweep" in sys.argv else main()

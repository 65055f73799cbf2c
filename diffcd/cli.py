"""Command line: `python -m diffcd fit | mesh | eval | bench`."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from diffcd._help import HelpFormatter
from diffcd.errors import DiffCDError

FIT_EXAMPLE = "python -m diffcd fit examples/torus_cloud.npy --gt-mesh examples/torus_gt.ply --out runs/torus"


def _fit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffcd import checkpoint, io, runs
    from diffcd.fit import Fitter
    from diffcd.methods import is_reconstructor
    from diffcd.presets import make_config

    if is_reconstructor(args.method):
        return _reconstruct(args)
    if args.depth is not None or args.trim_quantile is not None:
        raise DiffCDError("--depth and --trim-quantile are settings of --method poisson.")
    run_dir = runs.check_output_folder(args.out, overwrite=args.overwrite)
    overrides = {}
    if args.eikonal_weight is not None:
        overrides["eikonal_weight"] = args.eikonal_weight
    if args.area_weight is not None:
        overrides["area_weight"] = args.area_weight
    config = make_config(
        args.preset, args.method, steps=args.steps, seed=args.seed,
        resolution=args.resolution, method_overrides=overrides or None, noise=args.noise,
    )
    gt_mesh = io.load_mesh(args.gt_mesh) if args.gt_mesh else None
    cloud = _load_cloud(args)
    setup_start = time.perf_counter()
    fitter = Fitter(cloud, config, progress=None if args.quiet else lambda stage: print(
        f"preparing ({time.perf_counter() - setup_start:.0f} s): {stage}", file=sys.stderr, flush=True))
    if args.resume:
        fitter.restore(checkpoint.restore_train_state(args.resume, fitter))
    print(f"fitting {len(cloud.points):,} points with {config.method} ({args.preset}, "
          f"{config.schedule.steps:,} steps) -> {run_dir}", file=sys.stderr)
    bar = tqdm(total=config.schedule.steps, initial=fitter.state.step, unit="step",
               disable=args.quiet, dynamic_ncols=True)
    result = None
    try:
        for event in fitter.run():
            if event.done:
                result = event.result
                break
            bar.n = event.step
            bar.set_postfix(loss=f"{event.losses.get('loss', float('nan')):.4g}", refresh=False)
            bar.refresh()
    except KeyboardInterrupt:
        fitter.cancel()
        print("\ninterrupted: saving the fit so far", file=sys.stderr)
        from diffcd.fit import FitResult

        result = FitResult(fitter.fitted(), fitter.summary(), fitter.history)
    finally:
        bar.close()
    summary = runs.write_run(
        run_dir, result, resolution=config.mesh_resolution, cloud_points=cloud.points,
        gt_mesh=gt_mesh, state=fitter.state,
        metadata={"source": Path(args.cloud).name, "preset": args.preset, "noise": args.noise},
    )
    _report(summary)
    return 0 if summary.get("surface_found") else 1


def _load_cloud(args: argparse.Namespace):
    from diffcd import io

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", io.DiffCDWarning)
        cloud = io.load_point_cloud(args.cloud, max_points=args.max_points, seed=args.seed)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return cloud


def _reconstruct(args: argparse.Namespace) -> int:
    """`fit --method poisson`: a classical reconstructor writes the same run folder, without a network."""
    from diffcd import io, runs
    from diffcd.methods import RECONSTRUCTORS

    spec = RECONSTRUCTORS[args.method]
    given = [flag for flag, value in (("--steps", args.steps), ("--resume", args.resume),
                                      ("--eikonal-weight", args.eikonal_weight), ("--area-weight", args.area_weight),
                                      ("--resolution", args.resolution))
             if value is not None] + (["--noise"] if args.noise != "none" else [])
    if given:
        raise DiffCDError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to "
                          f"{spec.title}, which trains no network; leave {'it' if len(given) == 1 else 'them'} out.")
    overrides = {k: v for k, v in (("depth", args.depth), ("trim_quantile", args.trim_quantile)) if v is not None}
    config = spec.config_type(**overrides)
    run_dir = runs.check_output_folder(args.out, overwrite=args.overwrite)
    gt_mesh = io.load_mesh(args.gt_mesh) if args.gt_mesh else None
    cloud = _load_cloud(args)
    print(f"reconstructing {len(cloud.points):,} points with {spec.title} -> {run_dir}", file=sys.stderr)
    result = spec.reconstruct(cloud, config=config, progress=None if args.quiet else lambda stage: print(
        f"{spec.title}: {stage}", file=sys.stderr, flush=True))
    summary = runs.write_mesh_run(
        run_dir, result.mesh, result.summary, cloud_points=cloud.points, gt_mesh=gt_mesh,
        metadata={"source": Path(args.cloud).name},
    )
    print(f"{spec.title} at depth {summary[args.method]['depth']}: normals {summary['normals_seconds']:.1f} s "
          f"({summary['normals']}), solve {summary['solve_seconds']:.1f} s, trim {summary['trim_seconds']:.1f} s; "
          f"{summary['fit_seconds']:.1f} s in all")
    _report_mesh(summary)
    return 0


def _report(summary: dict) -> None:
    print(f"{summary['steps']} steps, {summary['steps_per_second']:.1f} steps/s "
          f"(compile {summary['compile_seconds']:.1f} s, seed meshes {summary['seed_mesh_seconds']:.1f} s), "
          f"{summary['nan_steps_skipped']} NaN steps skipped")
    if not summary.get("surface_found"):
        print(f"error: {summary.get('mesh_error')}", file=sys.stderr)
        return
    _report_mesh(summary)


def _report_mesh(summary: dict) -> None:
    where = (f" at {summary['mesh_resolution']}³ ({summary['mesh_seconds']:.1f} s)"
             if "mesh_resolution" in summary else "")
    print(f"mesh: {summary['mesh_vertices']:,} vertices, {summary['mesh_faces']:,} faces{where}")
    for name, values in (("cloud <-> surface", summary.get("cloud_distances")), ("vs ground truth", summary.get("eval"))):
        if values:
            print(f"{name}: " + ", ".join(f"{k}={v:.5g}" for k, v in values.items()))


def _mesh(args: argparse.Namespace) -> int:
    from diffcd.export import load_sdf
    from diffcd.runs import network_absent_reason

    if not Path(args.checkpoint).exists():
        raise DiffCDError(f"{args.checkpoint} does not exist: pass a run folder (python -m diffcd fit --out ...) "
                          "or an export folder.")
    if reason := network_absent_reason(args.checkpoint):
        raise DiffCDError(reason)
    fitted = load_sdf(args.checkpoint)
    mesh = fitted.extract_mesh(args.resolution)
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"mesh_{args.resolution}.ply"
    if out.suffix.lower() not in (".ply", ".glb", ".obj", ".stl", ".off"):
        raise DiffCDError(f"Cannot write a mesh as {out.suffix!r}; use .ply, .glb, .obj, .stl or .off.")
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out)
    print(f"{out}: {len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from diffcd import io, metrics

    from diffcd.runs import network_absent_reason

    estimate = Path(args.mesh)
    if estimate.is_dir() and network_absent_reason(estimate):
        estimate = estimate / "mesh.ply"  # a run without a network: its mesh is the result
        print(f"scoring {estimate} (the run has no network to re-mesh)", file=sys.stderr)
        if args.resolution:
            raise DiffCDError("--resolution applies only to a run or export folder with a network.")
    if estimate.is_dir():
        # A run or export folder: mesh its SDF the way the protocol says.
        from diffcd.export import load_sdf

        resolution = args.resolution or metrics.PAPER_RESOLUTION
        spacing = "paper" if args.protocol == "paper" else "true"
        mesh = load_sdf(estimate).extract_mesh(resolution, spacing=spacing)
        print(f"meshed {estimate} at {resolution}³ ({spacing} grid spacing)", file=sys.stderr)
    else:
        if args.resolution:
            raise DiffCDError("--resolution applies only when MESH is a run or export folder.")
        mesh = io.load_mesh(estimate)
        if args.protocol == "paper":
            print("note: MESH is a mesh file, so the paper protocol's grid spacing and 512³ "
                  "resolution are whatever it was meshed with; pass a run folder to mesh it "
                  "the paper's way", file=sys.stderr)
    truth = io.load_mesh(args.gt_mesh)
    scores = metrics.evaluate_mesh(
        mesh, truth, n_samples=args.samples, fscore_threshold=args.threshold, seed=args.seed,
        protocol=args.protocol,
    )
    longest = float((truth.bounds[1] - truth.bounds[0]).max())
    scores.update({f"paper_{k}": v for k, v in metrics.paper_units(scores, longest).items()})
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        for name, value in scores.items():
            print(f"{name:>32}: {value:.6g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from diffcd.methods import ALL_METHODS
    from diffcd.metrics import PROTOCOLS
    from diffcd.presets import DEFAULT_PRESET, NOISE_LEVELS, PAPER_NOISE_SETTINGS, PRESETS

    parser = argparse.ArgumentParser(
        prog="python -m diffcd",
        description="Fit neural implicit surfaces to point clouds (DiffCD, IGR, Neural-Pull, SIREN), "
                    "or reconstruct a mesh with Screened Poisson.",
        epilog=f"example: {FIT_EXAMPLE}",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="fit an SDF to a point cloud and write a run folder",
                              formatter_class=HelpFormatter)
    fit.add_argument("cloud", help="point cloud (.npy .npz .xyz .txt .pts .ply .obj .off .stl; "
                                   "a mesh file is sampled on its surface)")
    fit.add_argument("--out", required=True, help="run folder to write (mesh.ply, mesh.glb, "
                     "model.safetensors, config.json, checkpoint/, metrics.csv, summary.json, ...)")
    fit.add_argument("--method", default="diffcd", choices=list(ALL_METHODS),
                     help="method: " + "; ".join(f"{m.name}: {m.summary}" for m in ALL_METHODS.values()))
    fit.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                     help="sizes: " + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
                     .replace("%", "%%"))  # argparse formats help with %
    fit.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    fit.add_argument("--seed", type=int, default=0, help="random seed; the same seed repeats a fit exactly")
    fit.add_argument("--resolution", type=int, help="grid resolution of the final mesh (default: the preset's)")
    fit.add_argument("--gt-mesh", help="ground-truth mesh: writes eval.json (Chamfer, normal angle, "
                     "Hausdorff, F-score) in the input's units")
    fit.add_argument("--noise", default="none", choices=list(NOISE_LEVELS),
                     help="how noisy the cloud is (medium: about 0.5 %% of its size, max: about 1 %%). The "
                     "paper preset applies the paper's settings (" + "; ".join(
                         f"{n.name}: {n.description}" for n in PAPER_NOISE_SETTINGS.values()) + "); the "
                     "shorter presets keep the clean settings, which measured best on noisy scans there")
    fit.add_argument("--eikonal-weight", type=float, help="λ of the eikonal term (paper: 0.1; "
                     "overrides --noise)")
    fit.add_argument("--area-weight", type=float, help="μ of the area term (SIREN: 0.033 or 0.33)")
    fit.add_argument("--depth", type=int, help="poisson: octree depth (default: from the point count, "
                     "8 for 16k-65k points)")
    fit.add_argument("--trim-quantile", type=float, help="poisson: fraction of the lowest-density vertices "
                     "removed (default 0.02)")
    fit.add_argument("--max-points", type=int, default=1_000_000, help="downsample larger clouds to this many points")
    fit.add_argument("--resume", help="an earlier run's checkpoint/ folder to continue from")
    fit.add_argument("--overwrite", action="store_true", help="replace the files of an existing run folder")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(handler=_fit)

    mesh = commands.add_parser("mesh", help="re-mesh a stored SDF without refitting",
                               formatter_class=HelpFormatter)
    mesh.add_argument("checkpoint", help="a run folder or export folder (model.safetensors + config.json)")
    mesh.add_argument("--resolution", type=int, default=256, help="grid resolution")
    mesh.add_argument("--out", help="mesh file to write (.ply .glb .obj .stl .off; default CHECKPOINT/mesh_RES.ply)")
    mesh.set_defaults(handler=_mesh)

    evaluate = commands.add_parser("eval", help="compare a mesh with a ground-truth mesh",
                                   formatter_class=HelpFormatter)
    evaluate.add_argument("mesh", help="the estimated mesh, or a run/export folder whose SDF is meshed")
    evaluate.add_argument("gt_mesh", help="the ground-truth mesh")
    evaluate.add_argument("--protocol", default="default", choices=list(PROTOCOLS),
                          help="default: true grid step (upper - lower)/(n - 1); paper: the original "
                          "code's, for numbers next to the paper's tables: grid step (upper - lower)/n "
                          "and 512³ when meshing a folder, Hausdorff values on a second sample draw, "
                          "plus the Hausdorff normal angle (docs/method.md §7)")
    evaluate.add_argument("--resolution", type=int, help="grid resolution when MESH is a folder (default 512)")
    evaluate.add_argument("--samples", type=int, default=30_000, help="surface samples per mesh")
    evaluate.add_argument("--threshold", type=float, help="F-score distance (default: 1%% of the GT's longest side)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=_eval)

    from diffcd.bench import add_parser as add_bench_parser

    add_bench_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffcd.compilation_cache import enable_compilation_cache

    enable_compilation_cache()  # compiled programs persist across runs (DIFFCD_COMPILATION_CACHE)
    try:
        return args.handler(args)
    except DiffCDError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

"""`python -m diffcd bench DATASET`: fit every shape of a dataset with every method setting and
noise level, and write the results table.

    OUT/bench.json                       the settings of this table (a resumed run must match)
    OUT/runs/NOISE/SETTING/SHAPE/        one run folder per fit (diffcd.runs; `hub push` takes it)
    OUT/runs/NOISE/SETTING/SHAPE/row.json  its table row, written last: the fit is finished
    OUT/rows.csv                         every row (diffcd.table.ROW_FIELDS)
    OUT/summary.md                       mean / median per setting and noise level

Finished fits (a row.json) are skipped, so after a crash or Ctrl-C the same command resumes.
Fits train through `diffcd.fit_many` (K shapes per compiled program, every local device); with
several processes (`--coordinator`, or SLURM) each process fits its share and process 0 writes the
table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from diffcd.errors import ConfigError
from diffcd.presets import NOISE_LEVELS

BENCH_FILE = "bench.json"
SETTINGS_KEYS = ("preset", "steps", "seed", "resolution", "max_points", "hidden_layers", "width", "batch_size")
"""Settings a resumed table must share with its finished fits."""
ROW_FILE = "row.json"
PAPER_SETTINGS = ("neural-pull", "igr", "siren:area_weight=0.033", "siren:area_weight=0.33", "diffcd")
"""The five method settings of the paper's table (docs/method.md §8)."""
ALIASES = {"paper": PAPER_SETTINGS, "siren": ("siren:area_weight=0.033", "siren:area_weight=0.33")}
EVALUATORS: dict[str, Callable[[Path, Any], dict[str, float]] | None] = {
    "default": None,
    "paper": lambda run_dir, gt_mesh: _paper_protocol_scores(run_dir, gt_mesh),
}
"""Evaluation protocols: name -> f(run folder, gt_mesh) -> evaluate_mesh-like scores. "default"
is the one runs.write_run computes (diffcd.metrics.evaluate_mesh, docs/method.md §7); "paper" re-meshes
the fit at 512³ with the original's grid spacing and scores it with its definitions."""


def _paper_protocol_scores(run_dir: Path, gt_mesh) -> dict[str, float]:
    from diffcd import export, metrics

    mesh = export.load_sdf(run_dir).extract_mesh(metrics.PAPER_RESOLUTION, spacing="paper")
    return metrics.evaluate_mesh(mesh, gt_mesh, protocol="paper")


@dataclasses.dataclass(frozen=True)
class Setting:
    """A method with optional overrides of its config: 'siren:area_weight=0.33'."""

    method: str
    overrides: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Setting":
        from diffcd.methods import get_any_method

        method, _, rest = text.partition(":")
        spec = get_any_method(method)
        overrides = []
        fields = {f.name for f in dataclasses.fields(spec.config_type)}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in fields:
                raise ConfigError(f"Bad method setting {text!r}: {key!r} is not a setting of {method} "
                                  f"(settings: {', '.join(sorted(fields))}).")
            try:
                overrides.append((key, float(value)))
            except ValueError:
                raise ConfigError(f"Bad method setting {text!r}: {value!r} is not a number.") from None
        return cls(method, tuple(overrides))

    @property
    def id(self) -> str:
        """A folder-safe name: siren_area_weight=0.33."""
        return self.method + "".join(f"_{k}={v:g}" for k, v in self.overrides)

    @property
    def label(self) -> str:
        names = {"area_weight": "μ", "eikonal_weight": "λ"}
        from diffcd.methods import ALL_METHODS

        return " ".join([ALL_METHODS[self.method].title] + [f"{names.get(k, k)}={v:g}" for k, v in self.overrides])


def expand_settings(names: list[str]) -> list[Setting]:
    """Method arguments to settings: aliases expanded, duplicates dropped, order kept."""
    out: list[Setting] = []
    for name in names:
        for text in ALIASES.get(name, (name,)):
            setting = Setting.parse(text)
            if setting not in out:
                out.append(setting)
    return out


@dataclasses.dataclass(frozen=True)
class Job:
    shape: Any  # diffcd.dataset.Shape
    setting: Setting
    noise: str
    run_dir: Path


def plan_jobs(shapes, settings: list[Setting], noises: list[str], out: Path) -> list[Job]:
    """Every (noise, setting, shape) to fit; a shape of unknown noise level joins every level."""
    return [Job(shape, setting, noise, out / "runs" / noise / setting.id / shape.name)
            for noise in noises for setting in settings for shape in shapes
            if shape.noise_level in (None, noise)]


def job_config(job: Job, args: argparse.Namespace):
    """The FitConfig of one job: preset, method setting, noise level's settings."""
    from diffcd.presets import make_config

    overrides = dict(job.setting.overrides)
    network = {}
    if args.hidden_layers:
        network = {"hidden_layers": args.hidden_layers,
                   "skip_layers": (args.hidden_layers // 2,) if args.hidden_layers > 1 else ()}
    if args.width:
        network["width"] = args.width
    config = make_config(args.preset, job.setting.method, steps=args.steps, seed=args.seed,
                         resolution=args.resolution, method_overrides=overrides or None,
                         network_overrides=network or None, batch_size=args.batch_size, noise=job.noise)
    if getattr(args, "no_overlap", False):
        config = dataclasses.replace(config, overlap_seed_refresh=False)
    return config


def _reconstruct(job: Job, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One classical reconstruction (no network, no steps): its run folder and table row."""
    from diffcd import io, runs
    from diffcd.methods import RECONSTRUCTORS
    from diffcd.table import paper_units

    spec = RECONSTRUCTORS[job.setting.method]
    cloud = io.load_point_cloud(job.shape.cloud, max_points=args.max_points, seed=args.seed)
    gt_mesh = io.load_mesh(job.shape.gt_mesh)
    gt_scale = float(np.ptp(np.asarray(gt_mesh.vertices), axis=0).max())
    result = spec.reconstruct(cloud, config=spec.config_type(**dict(job.setting.overrides)))
    summary = runs.write_mesh_run(
        job.run_dir, result.mesh, result.summary, cloud_points=cloud.points, gt_mesh=gt_mesh,
        eval_samples=args.eval_samples,
        metadata={"source": job.shape.cloud.name, "setting": job.setting.label, "dataset_shape": job.shape.name},
    )
    # A mesh has one protocol's scores: the paper's re-meshes an SDF at 512³, which it does not have.
    row = {"noise": job.noise, "setting": job.setting.label, "method": job.setting.method,
           "shape": job.shape.name, "protocol": "default", "surface_found": True, "gt_scale": gt_scale,
           "steps": 0, "seed": args.seed, "preset": "", "fit_seconds": summary["fit_seconds"],
           "steps_per_second": 0.0, "shapes_in_program": 1, "run": str(job.run_dir.relative_to(Path(args.out))),
           **paper_units(summary["eval"], gt_scale)}
    (job.run_dir / f".{ROW_FILE}.partial").write_text(json.dumps([row], indent=2) + "\n")
    (job.run_dir / f".{ROW_FILE}.partial").replace(job.run_dir / ROW_FILE)
    return [row]


def _reconstruct_all(jobs: list[Job], args: argparse.Namespace, failures: list[str]) -> None:
    """The classical reconstructions, one after another (each a bounded child process)."""
    from diffcd.errors import DiffCDError

    for job in jobs:
        if not args.quiet:
            print(f"{job.setting.label}: {job.shape.name} ({job.noise})", file=sys.stderr)
        try:
            _reconstruct(job, args)
        except DiffCDError as error:  # one failed shape must not lose the others
            failures.append(f"{job.run_dir}: {error}")


def _check_bench_file(out: Path, settings: dict[str, Any], *, write: bool) -> None:
    """Refuse to resume a table made with other settings; record this run's (process 0 only)."""
    path = out / BENCH_FILE
    if path.is_file():
        earlier = json.loads(path.read_text())
        changed = [k for k in SETTINGS_KEYS if earlier.get(k) != settings[k]]
        if changed:
            raise ConfigError(f"{out} holds a table made with other settings ({', '.join(changed)}); "
                              "resume with the same settings or choose another --out.")
    if not write:
        return
    out.mkdir(parents=True, exist_ok=True)
    merged = {**settings, "methods": sorted(set(settings["methods"]) | set(json.loads(path.read_text()).get("methods", [])))
              if path.is_file() else settings["methods"]}
    partial = out / f".{BENCH_FILE}.partial"  # other processes may be reading it
    partial.write_text(json.dumps(merged, indent=2) + "\n")
    partial.replace(path)


def read_row(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / ROW_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_fit(job: Job, result, cloud, args, config) -> dict[str, Any]:
    """Mesh, evaluate and save one finished fit; returns its table row (also row.json)."""
    from diffcd import io, runs
    from diffcd.table import paper_units

    gt_mesh = io.load_mesh(job.shape.gt_mesh)
    gt_scale = float(np.ptp(np.asarray(gt_mesh.vertices), axis=0).max())
    summary = runs.write_run(
        job.run_dir, result, resolution=config.mesh_resolution, cloud_points=cloud.points, gt_mesh=gt_mesh,
        eval_samples=args.eval_samples,
        metadata={"source": job.shape.cloud.name, "preset": args.preset, "noise": job.noise,
                  "setting": job.setting.label, "dataset_shape": job.shape.name},
    )
    base = {"noise": job.noise, "setting": job.setting.label, "method": job.setting.method,
            "shape": job.shape.name, "surface_found": bool(summary.get("surface_found")),
            "gt_scale": gt_scale, "steps": summary["steps"], "seed": args.seed, "preset": args.preset,
            "fit_seconds": summary["fit_seconds"], "steps_per_second": summary["steps_per_second"],
            "shapes_in_program": summary.get("shapes_in_program", 1),
            "run": str(job.run_dir.relative_to(Path(args.out)))}
    rows = []
    for protocol in args.protocols:
        evaluate = EVALUATORS[protocol]
        row = {**base, "protocol": protocol}
        scores = summary.get("eval") if evaluate is None else (
            evaluate(job.run_dir, gt_mesh) if summary.get("surface_found") else None)
        if scores:
            row.update(paper_units(scores, gt_scale))
        rows.append(row)
    (job.run_dir / f".{ROW_FILE}.partial").write_text(json.dumps(rows, indent=2) + "\n")
    (job.run_dir / f".{ROW_FILE}.partial").replace(job.run_dir / ROW_FILE)
    return rows


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffcd import dataset, distributed, io, table
    from diffcd.batch import fit_many
    from diffcd.methods import is_reconstructor

    process, processes = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    out = Path(args.out)
    shapes = dataset.discover(args.dataset)
    settings = expand_settings(args.methods)
    for noise in args.noise:
        if noise not in NOISE_LEVELS:
            raise ConfigError(f"Unknown noise level {noise!r}; choose from {', '.join(NOISE_LEVELS)}.")
    _check_bench_file(out, {"dataset": str(Path(args.dataset).resolve()),
                            **{k: getattr(args, k) for k in SETTINGS_KEYS},
                            "methods": [s.label for s in settings]}, write=process == 0)
    jobs = plan_jobs(shapes, settings, list(args.noise), out)
    if not jobs:
        raise ConfigError(f"No shape of {args.dataset} has noise level {' or '.join(args.noise)}.")
    mine = [jobs[i] for i in distributed.owned(len(jobs))]
    pending_jobs = [job for job in mine if read_row(job.run_dir) is None]
    classical = [job for job in pending_jobs if is_reconstructor(job.setting.method)]
    todo = [job for job in pending_jobs if not is_reconstructor(job.setting.method)]
    trained = [job for job in mine if not is_reconstructor(job.setting.method)]
    configs = [job_config(job, args) for job in todo]
    total_steps = sum(job_config(job, args).schedule.steps for job in trained)
    done_steps = total_steps - sum(c.schedule.steps for c in configs)
    where = f" (process {process} of {processes})" if processes > 1 else ""
    print(f"{len(jobs)} fits: {len(shapes)} shapes x {len(settings)} settings x {len(args.noise)} noise "
          f"levels{where}; {len(mine) - len(pending_jobs)} of this process's {len(mine)} already done -> {out}",
          file=sys.stderr)

    failures: list[str] = []
    _reconstruct_all(classical, args, failures)
    clouds = [io.load_point_cloud(job.shape.cloud, max_points=args.max_points, seed=args.seed) for job in todo]
    bar = tqdm(total=total_steps, initial=done_steps, unit="step", disable=args.quiet or not todo,
               dynamic_ncols=True, desc=f"{len(trained) - len(todo)}/{len(trained)} fits")
    interrupted = False
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="diffcd-write") as writer:
        pending = []
        events = fit_many(clouds, configs, shapes_per_device=args.shapes_per_device) if todo else iter(())
        try:
            for event in events:
                bar.n = done_steps + event.steps_done
                if event.event.done:
                    i = event.index
                    pending.append((todo[i], writer.submit(_write_fit, todo[i], event.event.result,
                                                           clouds[i], args, configs[i])))
                    bar.set_description(f"{len(trained) - len(todo) + event.shapes_done}/{len(trained)} fits")
                bar.refresh()
        except KeyboardInterrupt:
            interrupted = True
            if todo:
                events.close()
            print("\ninterrupted: saving the fits that finished; run the same command to resume",
                  file=sys.stderr)
        finally:
            bar.close()
        for job, future in pending:
            try:
                future.result()
            except Exception as error:  # one unreadable mesh must not lose the other fits
                failures.append(f"{job.run_dir}: {error}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    my_rows = [row for job in mine for row in (read_row(job.run_dir) or [])]
    gathered = distributed.gather("bench-rows", my_rows) if not interrupted else None
    if process == 0:
        rows = [row for part in (gathered or [my_rows]) for row in part]
        # Earlier runs into the same folder (other methods or noise levels) stay in the table.
        seen = {(r["noise"], r["setting"], r["shape"], r["protocol"]) for r in rows}
        for path in sorted((out / "runs").glob(f"*/*/*/{ROW_FILE}")):
            rows += [r for r in (read_row(path.parent) or []) if (r["noise"], r["setting"], r["shape"], r["protocol"]) not in seen]
        table.write_rows(out / "rows.csv", rows)
        order = [s.label for s in settings]
        (out / "summary.md").write_text(table.markdown(rows, settings=order, title=f"{Path(args.dataset).name}: {args.preset}"))
        print(f"{len(rows)} rows -> {out / 'rows.csv'}, summary -> {out / 'summary.md'}", file=sys.stderr)
        if not args.quiet:
            print(table.markdown(rows, settings=order))
    if interrupted:
        return 130
    return 1 if failures else 0


def add_parser(commands) -> None:
    """The `bench` subcommand (called by diffcd.cli.build_parser)."""
    from diffcd._help import HelpFormatter
    from diffcd.presets import DEFAULT_PRESET, PRESETS

    bench = commands.add_parser(
        "bench", help="fit every shape of a dataset with every method and noise level; write the table",
        formatter_class=HelpFormatter,
        epilog="example: python -m diffcd bench examples --methods diffcd igr --noise none --out runs/table",
    )
    bench.add_argument("dataset", help="a folder with index.json (like examples/) or sibling folders of "
                                       "clouds and meshes matched by name (04_pts/ + 03_meshes/, points/ + meshes/)")
    bench.add_argument("--out", required=True, help="table folder: rows.csv, summary.md, runs/NOISE/SETTING/SHAPE/")
    bench.add_argument("--methods", nargs="+", default=["paper"],
                       help="method settings: diffcd, igr, neural-pull, siren (both of the paper's μ), "
                            "poisson (Screened Poisson, no network; default protocol only), "
                            "METHOD:key=value,... (e.g. siren:area_weight=0.33, poisson:depth=9), or "
                            "paper (the paper's five)")
    bench.add_argument("--noise", nargs="+", default=["none"], choices=list(NOISE_LEVELS),
                       help="noise levels: shapes of that level (unknown level: every level), fitted with "
                            "that level's settings")
    bench.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS), help="sizes")
    bench.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    bench.add_argument("--seed", type=int, default=0, help="seed of every fit")
    bench.add_argument("--hidden-layers", type=int, help="network depth (default: the preset's)")
    bench.add_argument("--width", type=int, help="network width (default: the preset's)")
    bench.add_argument("--batch-size", type=int, help="cloud points per step (default: the preset's)")
    bench.add_argument("--resolution", type=int, help="final mesh resolution (default: the preset's)")
    bench.add_argument("--eval-samples", type=int, default=30_000, help="surface samples per mesh for the metrics")
    bench.add_argument("--protocols", nargs="+", default=list(EVALUATORS), choices=list(EVALUATORS),
                       help="evaluation protocols: default (ours, docs/method.md §7) and paper (the original's "
                            "512³ mesh spacing and definitions, for numbers next to the paper's table)")
    bench.add_argument("--max-points", type=int, default=1_000_000, help="downsample larger clouds to this many points")
    bench.add_argument("--shapes-per-device", type=int, default=8, help="most shapes per device in one compiled program")
    bench.add_argument("--no-overlap", action="store_true",
                       help="DiffCD: wait for every seed refresh (default: mesh while training on an "
                            "accelerator, wait on a CPU; FitConfig.overlap_seed_refresh)")
    bench.add_argument("--coordinator", help="multi-host: HOST:PORT of process 0 (SLURM is detected without it)")
    bench.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    bench.add_argument("--process-id", type=int, help="multi-host: this process's id")
    bench.add_argument("--quiet", action="store_true", help="no progress bar or table on the terminal")
    bench.set_defaults(handler=run)

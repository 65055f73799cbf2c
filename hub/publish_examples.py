"""Maintainer command: fit every built-in example with every method and publish each fit.

    python -m diffcd_hub.publish_examples --namespace NAME [--preset cpu-quick] [--methods diffcd igr ...]
        [--examples sphere torus ...] [--out RUNS_DIR] [--no-push]

Each fit is written as a run folder RUNS_DIR/<example>-<method> (the layout of diffcd.runs),
with a subsample of the example's cloud as cloud.npy, and pushed to NAME/<example>-<method>.
A run folder that already exists is published as it is, without fitting again (pass --refit to
redo it), so an interrupted publication resumes where it stopped. The same run folders can
pre-fill the dev server: `python -m tools.hubserver --seed-examples RUNS_DIR`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from diffcd_hub._common import CLOUD_FILE, CONFIG_FILE, method_label, WEIGHTS_FILE
from diffcd_hub.errors import scrub

__all__ = ["fit_example", "publish_examples", "seed_server", "main"]

DEFAULT_OUT = Path("runs") / "hub-examples"
MAX_CLOUD_POINTS = 20_000


def run_name(example_id: str, method: str) -> str:
    return f"{example_id}-{method}"


def fit_example(example: dict, method: str, run_dir: Path, *, preset: str = "cpu-quick",
                steps: int | None = None, resolution: int | None = None) -> dict:
    """Fit one example with one method into `run_dir` (a diffcd run folder plus cloud.npy)."""
    from diffcd import examples, fit, make_config, runs

    cloud, gt_mesh = examples.load_example(example["id"], seed=int(example.get("seed", 0)))
    config = make_config(preset, method, steps=steps, resolution=resolution, seed=int(example.get("seed", 0)))
    result = None
    for event in fit(cloud, config):
        if event.done:
            result = event.result
    assert result is not None, "a fit ends with a done event"
    metadata = {"example": example["id"], "title": example.get("title", example["id"]),
                "source": Path(examples.example_cloud_path(example["id"])).name, "preset": preset,
                "points": int(len(cloud.points)), "noise_level": example.get("noise_level", "none")}
    summary = runs.write_run(run_dir, result, resolution=config.mesh_resolution, cloud_points=cloud.points,
                             gt_mesh=gt_mesh, metadata=metadata)
    points = np.asarray(cloud.points, np.float32)
    if len(points) > MAX_CLOUD_POINTS:
        points = points[np.sort(np.random.default_rng(0).choice(len(points), MAX_CLOUD_POINTS, replace=False))]
    np.save(run_dir / CLOUD_FILE, points, allow_pickle=False)
    return summary


def _is_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def publish_examples(namespace: str | None, *, preset: str = "cpu-quick", methods: list[str] | None = None,
                     example_ids: list[str] | None = None, out: str | os.PathLike = DEFAULT_OUT,
                     steps: int | None = None, resolution: int | None = None, refit: bool = False,
                     push: bool = True, private: bool = False, token: str | None = None,
                     endpoint: str | None = None) -> Iterator[tuple[str, str | None, str]]:
    """Fit (unless already fitted) and publish each (example, method).

    Yields (run name, commit url or None, message) per item; an item that fails is reported and
    the others go on.
    """
    from diffcd import METHODS, DiffCDError
    from diffcd.examples import list_examples

    from diffcd_hub.push import push_checkpoint

    entries = list_examples()
    known = {e["id"]: e for e in entries}
    unknown = [e for e in example_ids or [] if e not in known]
    if unknown:
        raise DiffCDError(f"Unknown example(s) {', '.join(unknown)}; choose from {', '.join(known)}.")
    bad = [m for m in methods or [] if m not in METHODS]
    if bad:
        raise DiffCDError(f"Unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}.")
    for example in [known[e] for e in example_ids] if example_ids else entries:
        for method in methods or list(METHODS):
            name = run_name(example["id"], method)
            run_dir = Path(out) / name
            try:
                note = "reused the existing run"
                if refit or not _is_run(run_dir):
                    start = time.perf_counter()
                    summary = fit_example(example, method, run_dir, preset=preset, steps=steps,
                                          resolution=resolution)
                    chamfer = (summary.get("eval") or {}).get("chamfer")
                    note = f"fitted in {time.perf_counter() - start:.0f} s" + (
                        f", chamfer {chamfer:.4g}" if isinstance(chamfer, float) else "")
                if not push:
                    yield name, None, note
                    continue
                label = method_label(method)
                result = push_checkpoint(
                    run_dir, f"{namespace}/{name}", token=token, private=private, endpoint=endpoint,
                    include_cloud=(run_dir / CLOUD_FILE) if (run_dir / CLOUD_FILE).is_file() else False,
                    commit_message=f"Publish the {example.get('title', example['id'])} example fitted with "
                                   f"{label} ({preset})")
                yield name, result.commit_url, note
            except DiffCDError as exc:
                yield name, None, f"failed: {exc}"


def seed_server(url: str, token: str, runs_dir: str | os.PathLike, namespace: str) -> Iterator[str]:
    """Publish every run folder in `runs_dir` to the Hub at `url` as namespace/<folder name>."""
    from diffcd import DiffCDError

    from diffcd_hub.push import push_checkpoint

    folders = sorted(p for p in Path(runs_dir).iterdir() if p.is_dir() and _is_run(p)) \
        if Path(runs_dir).is_dir() else []
    if not folders:
        yield f"warning: no run folders (config.json + model.safetensors) in {runs_dir}; nothing seeded"
    for folder in folders:
        cloud = folder / CLOUD_FILE
        try:
            result = push_checkpoint(folder, f"{namespace}/{folder.name}", token=token, endpoint=url,
                                     include_cloud=cloud if cloud.is_file() else False,
                                     commit_message=f"Seed {folder.name}")
            yield f"seeded {namespace}/{folder.name} at {result.commit_sha[:12]}"
        except DiffCDError as exc:
            yield f"warning: could not seed {folder.name}: {exc}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffcd_hub.publish_examples",
        description="Fit every built-in example (examples/index.json) with every method and publish each "
                    "fit to NAMESPACE/<example>-<method> on the Hub (HF_ENDPOINT, default huggingface.co).",
        epilog="A cpu-quick fit takes up to two and a half minutes per example and method on two CPU "
               "cores (DiffCD; the other methods well under a minute). Existing run "
               "folders in --out are published without refitting; --no-push only fits (e.g. to prepare "
               "`python -m tools.hubserver --seed-examples OUT`).")
    parser.add_argument("--namespace", help="user or organisation to publish under (required unless --no-push)")
    parser.add_argument("--preset", default="cpu-quick", help="fit preset: cpu-quick, gpu-demo or paper "
                                                              "(default cpu-quick)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="methods to fit (default: all of diffcd, igr, neural-pull, siren)")
    parser.add_argument("--examples", nargs="+", default=None, metavar="ID",
                        help="example ids to fit (default: every example in examples/index.json)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="RUNS_DIR",
                        help=f"where the run folders go (default {DEFAULT_OUT})")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    parser.add_argument("--resolution", type=int, default=None, help="override the preset's mesh resolution")
    parser.add_argument("--refit", action="store_true", help="fit again even where a run folder exists")
    parser.add_argument("--no-push", action="store_true", help="only fit; publish nothing")
    parser.add_argument("--private", action="store_true", help="create the repos private")
    parser.add_argument("--token", default=None, help="access token with write access (default: HF_TOKEN "
                                                      "or the saved login)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.no_push and not args.namespace:
        print("error: pass --namespace NAME (or --no-push to only fit)", file=sys.stderr)
        return 2
    from diffcd import DiffCDError

    failures = 0
    try:
        for name, url, note in publish_examples(
                args.namespace, preset=args.preset, methods=args.methods, example_ids=args.examples,
                out=args.out, steps=args.steps, resolution=args.resolution, refit=args.refit,
                push=not args.no_push, private=args.private, token=args.token):
            failures += note.startswith("failed")
            print(scrub(f"{name}: {note}" + (f" -> {url}" if url else "")), flush=True)
    except DiffCDError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

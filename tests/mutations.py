"""Plant known bugs one at a time in a temporary copy of the repository and report which the fast
tests catch. Run by hand (not in CI): a test that claims to guard a behaviour should fail here.

    python tests/mutations.py                     # every mutation, report to tests/mutations-report.md
    python tests/mutations.py --only diffcd-      # mutations whose name starts with this (no report file)
    python tests/mutations.py --list

Each mutation replaces exact snippets of source (each must match exactly once in the files its glob
names, else the script stops: update the snippet after the code changed). The copy holds the
working tree's tracked and untracked, not ignored, files; each mutation is planted, its tests run
with `-x -m "not slow and not browser"` and a time limit, and the file is restored.
A mutation is CAUGHT when pytest fails, MISSED when it passes; an error before any test ran
(collection, timeout) is reported as such, not as caught.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    files: str
    """Glob (relative to the repo) of the files one of which holds each snippet."""
    edits: tuple[tuple[str, str], ...]
    """(exact snippet, replacement) pairs."""
    tests: tuple[str, ...]
    """pytest arguments: files, node ids, -k expressions."""
    loses: str
    """What a user would lose."""


M = Mutation
MUTATIONS: list[Mutation] = [
    # --- Screened Poisson's child process (diffcd/poisson.py, diffcd/_poisson_worker.py) --------
    M("poisson-memory-unbounded", "diffcd/_poisson_worker.py",
      (("    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))", "    pass"),),
      ("tests/test_poisson.py", "-k", "memory"),
      "one visitor's deep octree takes the server's memory"),
    M("snapshot-waits-for-the-next-chunk", "space/training.py",
      (("                self.on_ready()\n", ""),),
      ("tests/app/test_hostile.py", "-k", "snapshot_reaches"),
      "each live snapshot reaches the page one training chunk (about a second on a CPU) after it is ready"),
    M("table-rounds-fast-runs-to-zero", "space/outputs.py",
      (("return round(value, 1) if value >= 1 else float(f\"{value:.2g}\")", "return round(value, 1)"),),
      ("tests/app/test_parts.py", "-k", "sub_second"),
      "a 20 ms Screened Poisson run shows a wall time of 0.0 s in the comparison table"),
    M("noise-max-is-the-paper-s-at-short-presets", "diffcd/presets.py",
      (("    \"max\": NoiseSetting(\n        \"max\", \"Maximum noise: at this preset the clean settings fit noisy scans best",
        "    \"max\": PAPER_NOISE_SETTINGS[\"max\"], \"unused\": NoiseSetting(\n        \"max\", \"Maximum noise: at this preset the clean settings fit noisy scans best"),),
      ("tests/test_cli.py", "-k", "short_presets"),
      "--noise max at cpu-quick leaves a 1,600-step fit unconverged (2-3.6 % instead of 0.64 %)"),
    M("guide-publishes-busy-wall-times", "benchmarks/guide_table.py",
      ((" for r in members if max(r[\"load_before\"], r[\"load_after\"]) <= QUIET_LOAD]", " for r in members]"),),
      ("tests/test_guide_benchmark.py", "-k", "bolds"),
      "the method guide quotes wall times taken beside other jobs as if the machine were quiet"),
    M("guide-bolds-the-wrong-method", "benchmarks/guide_table.py",
      (("if p[\"chamfer_percent\"] <= d[\"chamfer_percent\"]:", "if p[\"chamfer_percent\"] >= d[\"chamfer_percent\"]:"),),
      ("tests/test_guide_benchmark.py", "-k", "bolds"),
      "the method guide credits the less accurate method"),
    M("poisson-mesh-inward", "diffcd/_poisson_worker.py",
      (("    return faces if volume >= 0 else", "    return faces if volume < 0 else"),),
      ("tests/test_poisson.py", "-k", "analytic"),
      "Screened Poisson meshes face inward: dark in viewers, a normal angle of 180° in every table"),
    # --- the rows of issue 9's table --------------------------------------------------------
    M("diffcd-surface-term-no-gradient", "diffcd/*.py",
      (("surface_values, surface, surface_gradients, mean_distance_to_cloud",
        "jax.lax.stop_gradient(surface_values), surface, surface_gradients, mean_distance_to_cloud"),),
      ("tests/test_method_behaviour.py",),
      "DiffCD silently becomes IGR plus a logged number"),
    M("diffcd-surface-term-opposite-sign", "diffcd/*.py",
      (("surrogate = -jnp.sum(coefficients * values)", "surrogate = jnp.sum(coefficients * values)"),),
      ("tests/test_method_behaviour.py",),
      "surfaces pushed away from the data"),
    M("neural-pull-wrong-sign", "diffcd/*.py",
      (("    return queries - values[:, None] * direction", "    return queries + values[:, None] * direction"),),
      ("tests/test_method_behaviour.py", "-k", "pull"),
      "a broken baseline in every comparison"),
    M("export-ignores-method-settings", "diffcd/*.py",
      (('_config_from_dataclass(config["method"], config.get("method_config"), name)',
        '_config_from_dataclass(config["method"], None, name)'),),
      ("tests/test_export_settings.py",),
      "a pulled checkpoint reports the wrong λ, seeds, thresholds"),
    M("app-prints-push-token", "space/**/*.py",
      (("current, repo_id, secret, cloud = self._push_inputs(",
        "print('pushing with', token, flush=True); current, repo_id, secret, cloud = self._push_inputs("),),
      ("tests/app/test_app_process.py",),
      "a visitor's write token in the Space logs"),
    M("app-checkpoint-zip-empty-files", "space/**/*.py",
      (('zf.write(folder / file, f"{name}/{file}")', 'zf.writestr(f"{name}/{file}", b"")'),),
      ("tests/app/test_upload_fit.py", "-k", "zip"),
      "the download button gives an unusable checkpoint"),
    M("app-progress-no-rate-no-eta", "space/**/*.py",
      (('"steps_per_second": round(float(event.steps_per_second), 3) if event else 0.0,',
        '"steps_per_second": 0.0,'),
       ('"eta_seconds": (round(float(event.eta), 1) if event and math.isfinite(event.eta) else None),',
        '"eta_seconds": None,')),
      ("tests/app/test_upload_fit.py", "-k", "progress"),
      "the progress a user watches is wrong"),
    # --- more -------------------------------------------------------------------------------
    M("app-logs-push-token", "space/**/*.py",
      (("current, repo_id, secret, cloud = self._push_inputs(",
        "__import__('logging').getLogger('space').info('push token %s', token); "
        "current, repo_id, secret, cloud = self._push_inputs("),),
      ("tests/app/test_app_process.py",),
      "the token in the Space's logs (logging, not print)"),
    M("diffcd-drops-cloud-to-surface-term", "diffcd/*.py",
      (("0.5 * (point_to_surface + surface_to_point)", "0.5 * surface_to_point"),),
      ("tests/test_method_behaviour.py",),
      "DiffCD stops pulling the surface onto the points"),
    M("diffcd-ignores-validity-mask", "diffcd/*.py",
      (('< weights["valid_threshold"]', "< jnp.inf"),),
      ("tests/test_method_behaviour.py", "-k", "per_point"),
      "off-surface projections poison the surface term"),
    M("nn-certificate-unsound", "diffcd/*.py",
      (("<= radius - losses.safe_norm(surface - seeds)", "<= radius"),),
      ("tests/test_method_behaviour.py", "-k", "certif"),
      "uncertified (wrong) nearest neighbours counted as exact"),
    M("nn-searched-from-seed-not-surface", "diffcd/*.py",
      (("distances = losses.safe_norm(surface[:, None, :] - cloud)",
        "distances = losses.safe_norm(seeds[:, None, :] - cloud)"),),
      ("tests/test_method_behaviour.py",),
      "surface→cloud targets of the seed, not of the projected point"),
    M("projection-wrong-sign", "diffcd/*.py",
      (("return x - values[:, None] * direction, None", "return x + values[:, None] * direction, None"),),
      ("tests/test_losses.py", "tests/test_method_behaviour.py"),
      "DiffCD's surface points are not on the surface"),
    M("neural-pull-targets-not-nearest", "diffcd/*.py",
      (("return queries, points[nearest].astype(np.float32)",
        "return queries, points[::-1][nearest].astype(np.float32)"),),
      ("tests/test_method_behaviour.py", "-k", "pull"),
      "Neural-Pull pulls queries towards random points"),
    M("siren-area-term-off", "diffcd/*.py",
      (("if config.area_weight == 0:", "if True:"),),
      ("tests/test_method_behaviour.py", "-k", "siren"),
      "the SIREN rows are IGR under another name"),
    M("normalisation-undo-drops-centre", "diffcd/*.py",
      (("return x * scale + center", "return x * scale"),),
      ("tests/test_export.py", "tests/app/test_upload_fit.py", "-k", "coordinates or remesh or input_units"),
      "meshes come back in the wrong place"),
    M("fit-eta-infinite", "diffcd/*.py",
      (("eta=remaining / rate if rate > 0 else math.inf", "eta=math.inf"),),
      ("tests/app/test_upload_fit.py", "-k", "progress"),
      "no ETA while fitting"),
    M("export-writes-a-pickle", "diffcd/*.py",
      (('_atomic_write(config, lambda p: Path(p).write_text(text + "\\n"))',
        '_atomic_write(config, lambda p: Path(p).write_text(text + "\\n")); '
        '(out / "state.bin").write_bytes(__import__("pickle").dumps(fitted.method_config))'),),
      ("tests/test_export_settings.py", "-k", "pickle"),
      "loading a checkpoint could run code"),
    M("cli-resume-ignored", "diffcd/*.py",
      (("fitter.restore(checkpoint.restore_train_state(args.resume, fitter))",
        "checkpoint.restore_train_state(args.resume, fitter)"),),
      ("tests/test_cli_runs.py", "-k", "resume"),
      "--resume starts over from scratch"),
    M("cli-overwrite-never-refuses", "diffcd/*.py",
      (("and any(run_dir.iterdir()) and not overwrite", "and False"),),
      ("tests/test_cli_runs.py", "-k", "overwrite"),
      "a finished run silently overwritten"),
    M("cli-eval-ignores-samples", "diffcd/*.py",
      (("n_samples=args.samples", "n_samples=1000"),),
      ("tests/test_cli.py", "-k", "eval_prints"),
      "`diffcd eval` prints numbers for other settings"),
    M("cli-mesh-ignores-resolution", "diffcd/*.py",
      (("mesh = fitted.extract_mesh(args.resolution)", "mesh = fitted.extract_mesh(64)"),),
      ("tests/test_cli.py", "-k", "remeshes"),
      "`diffcd mesh --resolution` has no effect"),
    M("app-evaluate-ignores-upload", "space/**/*.py",
      (("        if ground_truth:  # the visitor's file", "        if False:  # the visitor's file"),),
      ("tests/app/test_upload_fit.py", "-k", "evaluate"),
      "/evaluate silently scores against nothing or the example"),
    M("app-max-points-env-ignored", "space/**/*.py",
      (("            raw = environ.get(name)\n",
        '            raw = None if field.name == "max_points" else environ.get(name)\n'),),
      ("tests/app/test_app_process.py", "tests/app/test_limits.py"),
      "a Space operator cannot bound cloud sizes"),
    M("app-max-fit-seconds-env-ignored", "space/**/*.py",
      (('_LEGACY_NAMES = {"max_request_seconds": "DIFFCD_SPACE_MAX_FIT_SECONDS",',
        '_LEGACY_NAMES = {"max_request_seconds": "DIFFCD_SPACE_MAX_FIT_SECONDS_UNREAD",'),),
      ("tests/app/test_app_process.py", "tests/app/test_limits.py"),
      "a public Space cannot bound a fit's time"),
    M("app-jobs-counted-per-session", "space/**/*.py",
      (("with self.line.enter(client.key, kind,", "with self.line.enter(self.store.key(request), kind,"),),
      ("tests/app/test_fairness.py", "-k", "many_sessions"),
      "one client with many sessions fills the device line"),
    M("app-client-ignores-proxy-header", "space/**/*.py",
      (("peer if isinstance(peer, str) else None, self.trusted_proxy_hops)",
        "peer if isinstance(peer, str) else None, 0)"),),
      ("tests/app/test_fairness.py", "-k", "many_sessions"),
      "on a Space every visitor is the proxy's address: one job for the whole world"),
    M("app-read-pool-unbounded", "space/**/*.py",
      (("return sum(self._holding.values()) < self.total and self._holding[key] < self.per_client",
        "return True"),),
      ("tests/app/test_fairness.py", "-k", "read_pool"),
      "slow URLs and big files read without a bound on how many at once"),
    M("app-zip-without-weights", "space/**/*.py",
      (('EXPORT_FILES = ("config.json", "model.safetensors", ', 'EXPORT_FILES = ("config.json", '),),
      ("tests/app/test_upload_fit.py", "-k", "zip"),
      "the downloaded checkpoint has no weights"),
    M("train-step-one-rate-for-every-group", "diffcd/*.py",
      (("lambda group: rates[group], self.groups.labels(params)", "lambda group: rates[0], self.groups.labels(params)"),),
      ("tests/test_engine.py", "-k", "group"),
      "a network's parameter groups all train at the first group's learning rate"),
    M("fit-many-trains-at-highest-precision", "diffcd/*.py",
      (("self.program = train_program(shapes[0].structure, batched=True)",
        "self.program = train_program(dataclasses.replace(shapes[0].structure, precision='highest'), batched=True)"),),
      ("tests/test_engine.py", "-k", "precision"),
      "fit_many ignores FitConfig.precision (trains slower than asked on a GPU)"),
    M("app-telemetry-on-by-default", "app.py",
      (('os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")', "pass"),),
      ("tests/app/test_app_process.py",),
      "the app phones home"),
    # --- Screened Poisson in the app (space/reconstruction.py, space/context.py) --------------
    M("app-poisson-ignores-stop", "space/reconstruction.py",
      (("should_stop=lambda: abandoned.is_set() or should_stop(),", "should_stop=lambda: abandoned.is_set(),"),),
      ("tests/app/test_poisson_app.py", "-k", "stop"),
      "Stop does nothing during a Screened Poisson solve: the visitor waits and the device stays busy"),
    M("app-poisson-push-not-refused", "space/context.py",
      (("        if reason := self._network_absent(current):", "        if reason := None:"),),
      ("tests/app/test_poisson_app.py", "-k", "hub_tab"),
      "the Hub tab offers to push a Screened Poisson run and fails with a missing-file error"),
    M("app-poisson-takes-loss-weights", "space/validation.py",
      (("    if weights:\n        raise gr.Error(f\"{title} has no loss", "    if False:\n        raise gr.Error(f\"{title} has no loss"),),
      ("tests/app/test_poisson_app.py", "-k", "refuses"),
      "a loss weight given for Screened Poisson is silently ignored"),
    # --- input encodings (NetworkConfig.encoding) --------------------------------------------
    M("grid-tables-not-zero-initialised", "diffcd/networks.py",
      (("self.param(f\"grid_{k}\", nn.initializers.zeros,", "self.param(f\"grid_{k}\", nn.initializers.normal(0.01),"),),
      ("tests/test_encodings.py", "-k", "untrained"),
      "a grid network starts as noise instead of the geometric-init sphere"),
    M("trilinear-weights-swapped", "diffcd/networks.py",
      (("jnp.where(offsets == 1, t, 1.0 - t)", "jnp.where(offsets == 1, 1.0 - t, t)"),),
      ("tests/test_encodings.py", "-k", "trilinear or central"),
      "grid features interpolated from the wrong corners"),
    M("encoding-levels-never-masked", "diffcd/networks.py",
      (("if config.encoding_level_steps else None", "if False else None"),),
      ("tests/test_encodings.py", "-k", "masks or fit_many"),
      "fine levels train from the first step: no coarse-to-fine"),
    M("fourier-band-masks-misaligned", "diffcd/networks.py",
      (("jnp.repeat(jnp.stack(started), 6)[:, None]", "jnp.tile(jnp.stack(started), 6)[:, None]"),),
      ("tests/test_encodings.py", "-k", "masks"),
      "Fourier bands start at the wrong steps"),
    M("encoding-trains-at-the-mlp-rate", "diffcd/networks.py",
      (("learning_rate_scales=(1.0, config.encoding_learning_rate_scale)", "learning_rate_scales=(1.0, 1.0)"),),
      ("tests/test_encodings.py", "-k", "masks"),
      "grid tables train at the MLP's rate whatever the preset says"),
    M("export-drops-encoding-settings", "diffcd/export.py",
      (('    if network.encoding == "none":\n        settings =', '    if True:\n        settings ='),),
      ("tests/test_encodings.py", "-k", "export"),
      "an exported grid network loads as a plain MLP (or not at all)"),
    M("grid-bounds-unchecked", "diffcd/export.py",
      (("            if value > bound:", "            if False:"),),
      ("tests/test_encodings.py", "-k", "oversized"),
      "a pulled config.json of a 2048³ grid allocates gigabytes"),
    M("preset-loss-settings-ignored", "diffcd/presets.py",
      (("**p.method_overrides.get(method, {}))", "**{})"),),
      ("tests/test_encodings.py", "-k", "preset"),
      "cpu-quick-fourier fits DiffCD with λ = 0.1, the setting that measured worse with its network"),
    M("card-hides-the-encoding", "hub/card.py",
      (("    return text + _encoding_phrase(network)", "    return text"),),
      ("tests/hub/test_model.py", "-k", "encoded"),
      "a Fourier or grid checkpoint's card describes it as a plain MLP"),
    M("space-drops-grid-bounds", "space/limits.py",
      (("                             max_grid_parameters=self.max_grid_values)", "                             )"),),
      ("tests/app/test_limits.py", "-k", "network_type or library_gets"),
      "a Space accepts any grid a library default allows: 40M table values, 160 MB per pull"),
    M("grid-tables-count-as-layers", "diffcd/export.py",
      (("expected_shapes(network).values()) - tables", "expected_shapes(network).values())"),),
      ("tests/app/test_limits.py", "-k", "network_type"),
      "a Space refuses a 16³-128³ grid checkpoint for its tables, though they are within the grid row"),
    # --- what a reader builds is bounded from the file's bytes ------------------------------
    M("io-no-corners-per-face-check", "diffcd/io.py",
      (("    if counts.corners > limits.max_face_corners:", "    if False:"),),
      ("tests/test_hostile_inputs.py", "-k", "refuses_before_parsing"),
      "one polygon of a million corners is triangulated: a 20 MB OBJ takes gigabytes"),
    M("io-no-read-cost-check", "diffcd/io.py",
      (("    if cost > budget:", "    if False:"),),
      ("tests/test_hostile_inputs.py", "-k", "refuses_before_parsing"),
      "dense triangles and GLB nodes that place one mesh many times are read whatever they cost"),
    M("meshscan-obj-counts-faces-not-triangles", "diffcd/meshscan.py",
      (("            triangles += int(np.maximum(tokens[face] - 3, 0).sum())",
        "            triangles += int(np.count_nonzero(face))"),),
      ("tests/test_hostile_inputs.py", "-k", "refuses_before_parsing"),
      "an OBJ of many large polygons passes as if each made one triangle"),
]


def tracked_files(root: Path) -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
    return [name for name in listing.split("\0") if name and (root / name).is_file()]


def copy_repo(root: Path, target: Path) -> None:
    for name in tracked_files(root):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, destination)
    # The editable install maps diffcd_hub and diffcd_space to this checkout's hub/ and space/; in
    # the copy (first on PYTHONPATH) these names must find the copy's folders, mutated ones included.
    package_dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in package_dirs.items():
        if package != folder:
            (target / package).symlink_to(folder, target_is_directory=True)


def locate(copy: Path, mutation: Mutation) -> dict[Path, str]:
    """The mutated text of every file the edits touch; raises if a snippet does not match once."""
    texts: dict[Path, str] = {}
    for old, new in mutation.edits:
        hits = [(path, text.count(old)) for path in sorted(copy.glob(mutation.files))
                for text in [texts.get(path) or path.read_text()] if old in text]
        total = sum(count for _, count in hits)
        if total != 1:
            raise SystemExit(f"mutation {mutation.name}: the snippet {old!r} matches {total} times in "
                             f"{mutation.files} (expected once); update it to the current code.")
        path = hits[0][0]
        texts[path] = (texts.get(path) or path.read_text()).replace(old, new)
    return texts


def run_tests(copy: Path, args: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow and not browser",
               *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "TIMEOUT", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    tail = (done.stdout + done.stderr).strip().splitlines()
    summary = tail[-1] if tail else ""
    if done.returncode == 0:
        return "MISSED", seconds, summary
    if done.returncode == 1:
        failed = next((line for line in tail if line.startswith("FAILED")), summary)
        reason = next((line[1:].strip() for line in tail if line.startswith("E ")), "")
        return "CAUGHT", seconds, f"{failed.removeprefix('FAILED ')} — {reason[:100]}"
    return f"ERROR (pytest exit {done.returncode})", seconds, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutations whose name starts with this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutation's test run")
    parser.add_argument("--baseline", action="store_true", help="first run every mutation's tests unmutated")
    parser.add_argument("--report", help="Markdown report to write (default: tests/mutations-report.md "
                        "for a run of every mutation, none with --only)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if m.name.startswith(args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name:40} {m.files:20} {' '.join(m.tests)}")
        return 0
    lines = ["# Mutation report (tests/mutations.py)", "",
             f"Commit {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}"
             f" plus the working tree; fast tests only (`-m 'not slow and not browser'`, `-x`).", "",
             "| mutation | what a user would lose | tests run | result | s | first failure |",
             "|---|---|---|---|---|---|"]
    results = []
    with tempfile.TemporaryDirectory(prefix="diffcd-mutations-") as folder:
        copy = Path(folder) / "repo"
        copy_repo(ROOT, copy)
        planned = [(m, locate(copy, m)) for m in chosen]  # every snippet checked before any run
        if args.baseline:
            for m in chosen:
                outcome, seconds, summary = run_tests(copy, m.tests, args.timeout)
                print(f"baseline {m.name}: {'ok' if outcome == 'MISSED' else outcome} ({seconds:.0f} s) {summary}",
                      flush=True)
        for mutation, texts in planted_in_turn(planned):
            outcome, seconds, summary = run_tests(copy, mutation.tests, args.timeout)
            results.append(outcome)
            print(f"{outcome:8} {mutation.name} ({seconds:.0f} s) {summary}", flush=True)
            lines.append(f"| {mutation.name} | {mutation.loses} | `{' '.join(mutation.tests)}` | {outcome} | "
                         f"{seconds:.0f} | {summary.replace('|', '/')[:160]} |")
    caught = results.count("CAUGHT")
    lines += ["", f"{caught} of {len(results)} mutations caught."]
    report = args.report or (None if args.only else ROOT / "tests" / "mutations-report.md")
    if report:
        Path(report).write_text("\n".join(lines) + "\n")
    print(f"{caught} of {len(results)} caught" + (f"; report in {report}" if report else ""))
    return 0 if caught == len(results) else 1


def planted_in_turn(planned):
    """Yield each mutation with its files mutated; restore them afterwards."""
    for mutation, texts in planned:
        originals = {path: path.read_text() for path in texts}
        try:
            for path, text in texts.items():
                path.write_text(text)
            yield mutation, texts
        finally:
            for path, text in originals.items():
                path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())

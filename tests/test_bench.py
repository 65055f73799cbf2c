"""`python -m diffcd bench`: a whole table, resumable, and the same table from two processes."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from diffcd import load_sdf
from diffcd.bench import expand_settings
from diffcd.cli import main
from diffcd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--steps", "10", "--hidden-layers", "2", "--width", "32", "--batch-size", "128",
             "--resolution", "24", "--eval-samples", "1000", "--protocols", "default", "--quiet"]


def make_dataset(root: Path, names=("ball", "donut")) -> Path:
    meshes = {"ball": trimesh.creation.icosphere(2, radius=1.0), "donut": trimesh.creation.torus(1.0, 0.4),
              "box": trimesh.creation.box((1.0, 0.6, 0.8)), "pill": trimesh.creation.capsule(1.0, 0.4)}
    (root / "points").mkdir(parents=True)
    (root / "meshes").mkdir()
    for i, name in enumerate(names):
        np.save(root / "points" / f"{name}.xyz.npy", meshes[name].sample(300 + 50 * i, seed=i).astype(np.float32))
        meshes[name].export(root / "meshes" / f"{name}.ply")
    return root


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_bench_writes_rows_summary_and_run_folders_then_resumes(tmp_path, capsys):
    data, out = make_dataset(tmp_path / "data"), tmp_path / "table"
    assert main(["bench", str(data), "--methods", "igr", "--out", str(out), *TINY_ARGS]) == 0
    rows = read_rows(out / "rows.csv")
    assert [(r["setting"], r["shape"], r["noise"]) for r in rows] == [("IGR", "ball", "none"), ("IGR", "donut", "none")]
    assert all(float(r["cd_x100"]) > 0 and 0 <= float(r["fscore"]) <= 1 for r in rows)
    assert rows[0]["shapes_in_program"] == "2"
    summary = (out / "summary.md").read_text()
    assert "| IGR | 2 |" in summary and "CD×100" in summary
    run = out / rows[0]["run"]
    assert load_sdf(run).steps == 10 and (run / "mesh.ply").is_file() and (run / "eval.json").is_file()

    # A crash after one fit: that fit is kept, the rerun fits only the missing one.
    (out / rows[1]["run"] / "row.json").unlink()
    before = (run / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["bench", str(data), "--methods", "igr", "--out", str(out), *TINY_ARGS]) == 0
    assert "1 of this process's 2 already done" in capsys.readouterr().err
    assert (run / "summary.json").stat().st_mtime_ns == before
    assert len(read_rows(out / "rows.csv")) == 2

    # Resuming with other sizes would mix incomparable fits in one table.
    changed = [a if a != "10" else "11" for a in TINY_ARGS]
    assert main(["bench", str(data), "--methods", "igr", "--out", str(out), *changed]) == 2


def test_method_settings_expand_the_papers_rows():
    labels = [s.label for s in expand_settings(["diffcd", "igr", "neural-pull", "siren"])]
    assert labels == ["DiffCD", "IGR", "Neural-Pull", "SIREN μ=0.033", "SIREN μ=0.33"]
    assert len(expand_settings(["paper"])) == 5
    assert expand_settings(["siren:area_weight=0.33"])[0].id == "siren_area_weight=0.33"
    with pytest.raises(ConfigError, match="not a setting of igr"):
        expand_settings(["igr:mu=1"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_split_the_shapes_and_gather_one_table(tmp_path):
    data, out = make_dataset(tmp_path / "data", ("ball", "donut", "box", "pill")), tmp_path / "table"
    coordinator = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "diffcd", "bench", str(data), "--methods", "igr", "--out", str(out),
               "--coordinator", coordinator, "--num-processes", "2", *TINY_ARGS]
    procs = [subprocess.Popen(command + ["--process-id", str(p)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in (0, 1)]
    try:
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    # 4 fits over 2 x 2 global devices: fit i on device i mod 4, so two per process.
    assert "(process 0 of 2); 0 of this process's 2 already done" in outputs[0][1]
    assert "(process 1 of 2); 0 of this process's 2 already done" in outputs[1][1]
    rows = read_rows(out / "rows.csv")
    assert sorted(r["shape"] for r in rows) == ["ball", "box", "donut", "pill"]
    assert "| IGR | 4 |" in (out / "summary.md").read_text()
    assert json.loads((out / "bench.json").read_text())["steps"] == 10

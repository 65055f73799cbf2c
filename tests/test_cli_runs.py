"""`python -m diffcd fit --resume` and `--overwrite`: a resumed fit continues the stored state, an
overwritten run folder holds only the new run.

Same cloud, method and preset as test_cli.py's fit, so one pytest process compiles the step once.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from diffcd.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPHERE = ROOT / "examples" / "sphere_cloud.npy"
SPHERE_GT = ROOT / "examples" / "sphere_gt.ply"
FIT = ["fit", str(SPHERE), "--method", "igr", "--resolution", "32", "--quiet"]


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-runs") / "first"
    assert main([*FIT, "--steps", "30", "--gt-mesh", str(SPHERE_GT), "--out", str(out)]) == 0
    return out


def test_resume_continues_the_checkpointed_fit(first_run, tmp_path):
    out = tmp_path / "resumed"
    assert main([*FIT, "--steps", "40", "--resume", str(first_run / "checkpoint"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 40
    resumed, first = rows(out), rows(first_run)
    assert [int(r["step"]) for r in resumed] == list(range(31, 41))  # only the steps not done before
    # it starts where the first run ended, far below where a fresh network starts
    assert float(resumed[0]["loss"]) < 0.5 * float(first[0]["loss"])
    assert float(resumed[0]["loss"]) < 2 * float(first[-1]["loss"])
    before, after = weights(first_run), weights(out)
    assert not all(np.array_equal(before[k], after[k]) for k in before)  # and it trained on


def test_resume_of_a_finished_run_keeps_its_weights(first_run, tmp_path):
    out = tmp_path / "again"
    assert main([*FIT, "--steps", "30", "--resume", str(first_run / "checkpoint"), "--out", str(out)]) == 0
    before, after = weights(first_run), weights(out)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def test_overwrite_replaces_the_whole_run(first_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(first_run, out)
    assert (out / "eval.json").is_file()
    assert main([*FIT, "--steps", "5", "--out", str(out)]) == 2  # refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*FIT, "--steps", "10", "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["seed"] == 1
    assert len(rows(out)) == 10
    before, after = weights(first_run), weights(out)
    assert not all(np.array_equal(before[k], after[k]) for k in before)
    # the old run's scores against a ground truth must not sit next to the new model
    assert not (out / "eval.json").exists()

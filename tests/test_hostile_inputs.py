"""Every reader the app uses stays within its memory and time bound on hostile files of every format.

One worker process (benchmarks/hostile_inputs.py) reads each generated file, honest or hostile, at
two small sizes, each in a forked child whose added peak memory and time are measured. The bound
is the app's own (``diffcd.io.read_budget`` with ``Limits.public()``: 6 bytes of added memory per
input byte plus 40 MB, and 0.1 s per MB plus 2 s of CPU time, which other jobs on a shared machine
do not inflate as they do wall time); between the two sizes, no cost may grow faster than the file. The full-size run (100 MB) is ``python -m benchmarks.hostile_inputs``.
"""

from __future__ import annotations

import pytest

from benchmarks.hostile_inputs import allowance, cases, measure

SIZES = (1_000_000, 4_000_000)
GROWTH_SLACK = 1.5
"""How much faster than the file a cost may seem to grow between the sizes (measurement noise)."""
FLOOR_MB, FLOOR_SECONDS = 6.0, 0.5
"""Costs below these are noise, not growth: the smaller size's cost is raised to them."""


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str, str], dict[int, dict]]:
    found: dict[tuple[str, str, str], dict[int, dict]] = {}
    for row in measure(list(SIZES), timeout=60.0, kill_mb=2000.0):
        found.setdefault((row["format"], row["attack"], row["reader"]), {})[row["size"]] = row
    return found


def _name(key) -> str:
    return " / ".join(key)


def test_every_format_and_attack_was_measured_at_both_sizes(results):
    expected = {(c.format, c.attack, c.reader) for c in cases(SIZES[0])}
    assert expected - set(results) == set(), "cases that did not report"
    assert {f for f, _, _ in expected} >= {"npy", "npz", "xyz", "obj", "off", "ply-ascii", "ply-binary",
                                           "stl-ascii", "stl-binary", "glb", "checkpoint-zip", "pull"}
    assert all(len(by_size) == len(SIZES) for by_size in results.values())


def test_reading_any_file_stays_within_the_bound_scaled_to_its_size(results):
    over = []
    for key, by_size in results.items():
        for row in by_size.values():
            peak, seconds = allowance(row["bytes"])
            if row["outcome"].startswith(("killed", "crashed")) or row["peak_mb"] > peak or row["cpu_seconds"] > seconds:
                over.append(f"{_name(key)} at {row['bytes'] / 1e6:.1f} MB: {row['peak_mb']:.0f} MB "
                            f"(bound {peak:.0f}), {row['cpu_seconds']:.1f} s of CPU (bound {seconds:.1f}): "
                            f"{row['outcome'][:120]}")
    assert not over, "\n".join(over)


def test_no_cost_grows_faster_than_the_file(results):
    small, large = SIZES
    faster = []
    for key, by_size in results.items():
        a, b = by_size[small], by_size[large]
        ratio = max(b["bytes"], 1) / max(a["bytes"], 1)
        if b["peak_mb"] > GROWTH_SLACK * ratio * max(a["peak_mb"], FLOOR_MB):
            faster.append(f"{_name(key)}: {a['peak_mb']:.0f} MB -> {b['peak_mb']:.0f} MB for {ratio:.1f}x the bytes")
        if b["cpu_seconds"] > GROWTH_SLACK * ratio * max(a["cpu_seconds"], FLOOR_SECONDS):
            faster.append(f"{_name(key)}: {a['cpu_seconds']:.2f} s -> {b['cpu_seconds']:.2f} s of CPU for {ratio:.1f}x "
                          "the bytes")
    assert not faster, "\n".join(faster)


def test_every_refusal_is_a_sentence_of_the_reader_s_own_errors(results):
    own = ("PointCloudError", "PointCloudLimitError", "MeshError", "MeshLimitError", "CheckpointError",
           "CheckpointLimitError", "CheckpointZipError", "LimitExceededError", "NotACheckpointError")
    bare = [f"{_name(key)}: {row['outcome'][:160]}" for key, by_size in results.items() for row in by_size.values()
            if row["outcome"].startswith("refused") and row["outcome"].split(":")[1].strip() not in own]
    assert not bare, "\n".join(bare)


@pytest.mark.parametrize("fmt", ["obj", "off", "ply-ascii", "ply-binary"])
def test_a_polygon_bomb_is_refused_before_it_is_triangulated(results, fmt):
    for reader in ("cloud", "mesh"):
        for row in results[(fmt, "polygon bomb (one face)", reader)].values():
            assert "LimitError" in row["outcome"] and "corners" in row["outcome"], row["outcome"]


def test_honest_files_of_every_format_are_accepted_at_the_small_size(results):
    refused = [f"{_name(key)}: {by_size[SIZES[0]]['outcome'][:160]}" for key, by_size in results.items()
               if key[1] == "honest" and by_size[SIZES[0]]["outcome"] != "accepted"]
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize("fmt, attack, needle", [
    ("obj", "polygon bomb (one face)", "corners"),
    ("off", "polygon bomb (one face)", "corners"),
    ("ply-binary", "polygon bomb (one face)", "corners"),
    ("obj", "many 64-corner faces", "memory"),
    ("ply-binary", "dense triangles (uchar indices)", "memory"),
    ("glb", "instancing (nodes share a mesh)", "memory"),
])
def test_the_app_refuses_before_parsing(tmp_path, fmt, attack, needle):
    """The same files read in this process: each refusal names the problem (no measuring here)."""
    from diffcd.errors import LimitError

    from benchmarks.hostile_inputs import read_mesh

    (case,) = [c for c in cases(SIZES[0], fmt) if c.attack == attack and c.reader == "mesh"]
    path = tmp_path / f"input{case.suffix}"
    path.write_bytes(case.make())
    with pytest.raises(LimitError, match=needle):
        read_mesh(path)

"""Hostile input files for every format the app reads, and what reading each costs.

    python -m benchmarks.hostile_inputs                  # 99.5 MB files: benchmarks/results/hostile-inputs-cpu.{md,json}
    python -m benchmarks.hostile_inputs --size 4e6 --no-write --only obj

Every case is a file (or, for a pull, a folder) of about a given size in bytes, made by a generator
here: an honest file of that size as the reference, and attacks on the reader (huge polygons,
lying counts, deep nesting, long lines, NaN/inf/1e38, duplicates, degenerate faces, truncated
files). Each is fed to the reader exactly as the app calls it, with the public Space's bounds
(`diffcd_space.limits.Limits.public()`): a point cloud upload (`load_point_cloud`), a ground-truth mesh
(`load_mesh`), a checkpoint zip (`unpack_checkpoint`, then `diffcd.export.load_sdf`) and the
files of a Hub pull (the sizes the listing gives, then `diffcd_hub.pull.load_folder` and its metrics).

A worker process imports the readers and reads a tiny file of each kind once; each case runs in a
child forked from it, whose peak resident memory (VmHWM, reset at the fork) minus its resident
memory at the fork is what reading the file added. A child over `kill_mb` is killed.

The app's bound (the bounds table of the README): a file up to the 100 MB upload bound adds at
most 600 MB and takes at most 10 s to read on 2 cores; a smaller file its share, 6 bytes per byte
and 0.1 s per MB, plus a fixed allowance (`allowance`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SECONDS_PER_BYTE = 10.0 / 100e6
"""Read time per input byte: 10 s per 100 MB upload on 2 cores."""
SECONDS_ALLOWANCE = 2.0
"""Fixed time any read may take: lazy imports inside trimesh, a shared machine's noise."""


def allowance(size: int) -> tuple[float, float]:
    """(peak MB, seconds) that reading a file of `size` bytes may cost under the app's bound: the
    memory of ``diffcd.io.read_budget`` (600 MB per 100 MB plus 40 MB, at most 600 MB) and the time
    above."""
    from diffcd.io import read_budget

    return read_budget(size, _app_limits().input_limits()) / 1e6, SECONDS_PER_BYTE * size + SECONDS_ALLOWANCE


# ----------------------------------------------------------------------------------------------
# Honest geometry and text helpers


def grid(triangles: int) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float64 (V, 3), faces int64 (F, 3)) of a wavy square with about `triangles` faces."""
    n = max(3, int(np.sqrt(max(triangles, 2) / 2)) + 1)
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    vertices = np.stack([u, v, 0.1 * np.sin(6 * u) * np.cos(5 * v)], axis=-1).reshape(-1, 3)
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices, faces


def rows(array: np.ndarray, fmt: str, prefix: str = "") -> bytes:
    """`prefix` + each row of `array` formatted with `fmt`, one per line."""
    if len(array) == 0:
        return b""
    out = io.BytesIO()
    np.savetxt(out, array, fmt=fmt, delimiter=" ")
    text = out.getvalue()
    if prefix:
        text = prefix.encode() + text.replace(b"\n", b"\n" + prefix.encode())[: -len(prefix)]
    return text


def repeat_to(unit: bytes, size: int) -> bytes:
    """`unit` repeated to at most `size` bytes less a little (room for a header)."""
    return unit * max(1, (size - 256) // len(unit))


def by_rate(make: Callable[[int], bytes], size: int) -> bytes:
    """make(count) with the count that gives about `size` bytes (measured on a small sample)."""
    count = 2000
    for _ in range(3):  # the rate grows with the count (longer indices): correct it on the real output
        made = make(count)
        if 0.97 * size <= len(made) <= size:
            break
        count = max(4, int(count * 0.985 * size / len(made)))
    return made if len(made) <= size else make(max(4, int(count * 0.95)))


# ----------------------------------------------------------------------------------------------
# Mesh formats


def obj_mesh(vertices, faces, fmt="%.6f") -> bytes:
    return rows(vertices, fmt, "v ") + rows(np.asarray(faces) + 1, "%d", "f ")


def off_mesh(vertices, faces, fmt="%.6f", header=None) -> bytes:
    head = header or f"OFF\n{len(vertices)} {len(faces)} 0\n"
    counts = np.full((len(faces), 1), 3)
    return head.encode() + rows(vertices, fmt) + rows(np.hstack([counts, faces]), "%d")


def ply_ascii(vertices, faces, fmt="%.6f", header_counts=None) -> bytes:
    nv, nf = header_counts or (len(vertices), len(faces))
    head = (f"ply\nformat ascii 1.0\nelement vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face {nf}\nproperty list uchar int vertex_indices\nend_header\n")
    counts = np.full((len(faces), 1), 3)
    return head.encode() + rows(vertices, fmt) + rows(np.hstack([counts, faces]), "%d")


def ply_binary(vertices, faces, *, count_type="uchar", index_type="int", header_counts=None,
               face_bytes: bytes | None = None) -> bytes:
    nv, nf = header_counts or (len(vertices), len(faces))
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {nv}\nproperty float x\nproperty float y\n"
            f"property float z\nelement face {nf}\nproperty list {count_type} {index_type} vertex_indices\n"
            "end_header\n").encode()
    if face_bytes is None:
        codes = {"uchar": "u1", "uint": "<u4", "int": "<i4", "ushort": "<u2"}
        record = np.dtype([("n", codes[count_type]), ("i", codes[index_type], (3,))])
        data = np.zeros(len(faces), record)
        data["n"], data["i"] = 3, faces
        face_bytes = data.tobytes()
    return head + np.asarray(vertices, "<f4").tobytes() + face_bytes


def stl_binary(triangles: np.ndarray, count: int | None = None) -> bytes:
    record = np.zeros(len(triangles), np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]))
    record["v"] = triangles
    return b"\0" * 80 + struct.pack("<I", len(triangles) if count is None else count) + record.tobytes()


def stl_ascii(triangles: np.ndarray, fmt="%.6f") -> bytes:
    body = rows(np.asarray(triangles).reshape(-1, 3), fmt, "vertex ").split(b"\n")[:-1]
    out = [b"solid s"]
    for i in range(0, len(body), 3):
        out += [b"facet normal 0 0 0", b"outer loop", *body[i: i + 3], b"endloop", b"endfacet"]
    return b"\n".join(out + [b"endsolid s", b""])


def _triangles(count: int) -> np.ndarray:
    vertices, faces = grid(count)
    return vertices[faces]


def glb(document: dict, binary: bytes) -> bytes:
    """A GLB container: the JSON chunk (padded with spaces) and the binary chunk."""
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def glb_mesh(vertices, indices, *, index_type=5125, primitives=1, nodes=1, index_count=None, mode=4) -> bytes:
    """A GLB of one mesh whose `primitives` all share one position and one index accessor, placed
    by `nodes` nodes."""
    positions = np.asarray(vertices, "<f4").tobytes()
    dtype = {5121: "u1", 5123: "<u2", 5125: "<u4"}[index_type]
    index_bytes = np.asarray(indices, dtype).reshape(-1).tobytes()
    pad = -len(positions) % 4
    document = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": list(range(nodes))}],
        "nodes": [{"mesh": 0} for _ in range(nodes)],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": mode}] * primitives}],
        "buffers": [{"byteLength": len(positions) + pad + len(index_bytes)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions)},
                        {"buffer": 0, "byteOffset": len(positions) + pad, "byteLength": len(index_bytes)}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(vertices), "type": "VEC3",
             "min": np.min(vertices, 0).tolist(), "max": np.max(vertices, 0).tolist()},
            {"bufferView": 1, "componentType": index_type, "type": "SCALAR",
             "count": int(np.size(indices) if index_count is None else index_count)}],
    }
    return glb(document, positions + b"\0" * pad + index_bytes)


def _nested_json(size: int) -> bytes:
    depth = max(1, size // 2 - 8)
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


def _glb_honest(size: int) -> bytes:
    vertices, faces = grid(size // 18)
    return glb_mesh(vertices, faces)


def _glb_cases(size: int) -> dict[str, Callable[[], bytes]]:
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    few = grid(size // 400)
    return {
        "honest": lambda: _glb_honest(size),
        "deep nesting (JSON)": lambda: _glb_deep(size),
        "lying counts (accessor)": lambda: glb_mesh(square, [0, 1, 2], index_count=2_000_000_000),
        "aliasing (primitives share data)": lambda: glb_mesh(*few, primitives=max(1, size // 200)),
        "instancing (nodes share a mesh)": lambda: glb_mesh(*few, nodes=max(1, size // 100)),
        "dense triangles (uint8 indices)": lambda: glb_mesh(square, np.zeros(size - 200, int) + np.arange(
            size - 200) % 3, index_type=5121),
        "triangle fan": lambda: glb_mesh(square, np.arange(size // 4) % 4, mode=6),
        "long line (JSON string)": lambda: glb({"asset": {"version": "2.0"}, "x": "a" * size}, b""),
        "many JSON objects": lambda: glb({"asset": {"version": "2.0"}, "extras": [{"a": 0}] * (size // 10)}, b""),
        "nan/inf/1e38": lambda: glb_mesh(np.where(few[0] > 0.5, np.float32(3e38), few[0]), few[1]),
        "truncated": lambda: _glb_honest(size)[: int(size * 0.6)],
    }


def _glb_deep(size: int) -> bytes:
    depth = max(1, size // 2 - 64)
    text = b'{"asset": {"version": "2.0"}, "extras": ' + b"[" * depth + b"]" * depth + b"}"
    text += b" " * (-len(text) % 4)
    return struct.pack("<4sII", b"glTF", 2, 20 + len(text)) + struct.pack("<I4s", len(text), b"JSON") + text


def _obj_cases(size: int) -> dict[str, Callable[[], bytes]]:
    square = b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
    return {
        "honest": lambda: by_rate(lambda n: obj_mesh(*grid(n)), size),
        "polygon bomb (one face)": lambda: square + b"f " + repeat_to(b"1 2 3 4 ", size) + b"\n",
        "many 64-corner faces": lambda: square + repeat_to(b"f " + b"1 2 3 4 " * 16 + b"\n", size),
        "dense triangles": lambda: square + repeat_to(b"f 1 2 3\n", size),
        "out-of-range references": lambda: square + repeat_to(b"f 1 2 999999999\nf -7 1 2\n", size),
        "long line (vertex)": lambda: square + b"f 1 2 3\nv " + repeat_to(b"1 ", size) + b"\n",
        "nan/inf/1e38": lambda: by_rate(lambda n: obj_mesh(*grid(n)).replace(b"0.000000 ", b"nan ").replace(
            b"1.000000", b"1e38").replace(b"0.5", b"inf"), size),
        "duplicates": lambda: by_rate(lambda n: obj_mesh(*(lambda v, f: (np.vstack([v, v]), np.vstack([f, f])))(
            *grid(n))), size),
        "degenerate faces": lambda: square + repeat_to(b"f 1 1 1\n", size),
        "truncated": lambda: by_rate(lambda n: obj_mesh(*grid(n)), size)[: int(size * 0.6) + 3],
    }


def _off_cases(size: int) -> dict[str, Callable[[], bytes]]:
    square = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
    corners = max(4, size // 2 - 40)
    return {
        "honest": lambda: by_rate(lambda n: off_mesh(*grid(n)), size),
        "polygon bomb (one face)": lambda: (f"OFF\n4 1 0\n{square}{corners} ".encode()
                                            + repeat_to(b"0 1 2 3 ", corners * 2)[: corners * 2] + b"\n"),
        "lying counts (more faces than declared)": lambda: (f"OFF\n4 1 0\n{square}".encode()
                                                            + repeat_to(b"3 0 1 2\n", size)),
        "lying counts (huge)": lambda: f"OFF\n4 2000000000 0\n{square}".encode() + repeat_to(b"3 0 1 2\n", size),
        "dense triangles": lambda: f"OFF\n4 {size // 8} 0\n{square}".encode() + repeat_to(b"3 0 1 2\n", size),
        "out-of-range references": lambda: (f"OFF\n4 {size // 15} 0\n{square}".encode()
                                            + repeat_to(b"3 0 1 99999999\n", size)),
        "nan/inf/1e38": lambda: by_rate(lambda n: off_mesh(*grid(n)).replace(b"0.000000 ", b"nan ").replace(
            b"1.000000", b"1e38"), size),
        "degenerate faces": lambda: f"OFF\n4 {size // 8} 0\n{square}".encode() + repeat_to(b"3 0 0 0\n", size),
        "truncated": lambda: by_rate(lambda n: off_mesh(*grid(n)), size)[: int(size * 0.6) + 3],
    }


def _ply_ascii_cases(size: int) -> dict[str, Callable[[], bytes]]:
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    corners = max(4, size // 2 - 300)

    def bomb() -> bytes:
        head = ply_ascii(square, np.zeros((0, 3), int), header_counts=(4, 1))
        return head + f"{corners} ".encode() + repeat_to(b"0 1 2 3 ", corners * 2)[: corners * 2] + b"\n"

    return {
        "honest": lambda: by_rate(lambda n: ply_ascii(*grid(n)), size),
        "polygon bomb (one face)": bomb,
        "lying counts (huge)": lambda: ply_ascii(square, np.zeros((size // 8, 3), int),
                                                 header_counts=(4, 2_000_000_000)),
        "dense triangles": lambda: ply_ascii(square, np.tile([0, 1, 2], (size // 8, 1))),
        "out-of-range references": lambda: ply_ascii(square, np.tile([0, 1, 99999999], (size // 15, 1))),
        "nan/inf/1e38": lambda: by_rate(lambda n: ply_ascii(*grid(n)).replace(b"0.000000 ", b"nan ").replace(
            b"1.000000", b"1e38"), size),
        "degenerate faces": lambda: ply_ascii(square, np.zeros((size // 8, 3), int)),
        "truncated": lambda: by_rate(lambda n: ply_ascii(*grid(n)), size)[: int(size * 0.6) + 3],
    }


def _ply_binary_cases(size: int) -> dict[str, Callable[[], bytes]]:
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    corners = max(4, size // 4 - 80)
    bomb = struct.pack("<I", corners) + (np.arange(corners) % 4).astype("<i4").tobytes()
    return {
        "honest": lambda: by_rate(lambda n: ply_binary(*grid(n)), size),
        "polygon bomb (one face)": lambda: ply_binary(square, [], count_type="uint", header_counts=(4, 1),
                                                      face_bytes=bomb),
        "lying counts (huge)": lambda: ply_binary(square, np.tile([0, 1, 2], (size // 13, 1)),
                                                  header_counts=(4, 2_000_000_000)),
        "lying counts (list longer than the file)": lambda: ply_binary(
            square, [], count_type="uint", header_counts=(4, 1),
            face_bytes=struct.pack("<I", 4_000_000_000) + bomb[4: size]),
        "dense triangles (uchar indices)": lambda: ply_binary(square, np.tile([0, 1, 2], (size // 4, 1)),
                                                              index_type="uchar"),
        "out-of-range references": lambda: ply_binary(square, np.tile([0, 1, 2_000_000_000], (size // 13, 1))),
        "nan/inf/1e38": lambda: by_rate(lambda n: ply_binary(*(lambda v, f: (
            np.where(v > 0.5, np.nan, np.where(v > 0.3, 1e38, v)), f))(*grid(n))), size),
        "degenerate faces": lambda: ply_binary(square, np.zeros((size // 13, 3), int)),
        "truncated": lambda: by_rate(lambda n: ply_binary(*grid(n)), size)[: int(size * 0.6)],
    }


def _stl_binary_cases(size: int) -> dict[str, Callable[[], bytes]]:
    count = max(2, (size - 84) // 50)
    return {
        "honest": lambda: stl_binary(_triangles(count)[:count]),
        "lying counts (huge)": lambda: stl_binary(_triangles(count)[:count], count=4_000_000_000),
        "lying counts (small)": lambda: stl_binary(_triangles(count)[:count], count=1),
        "nan/inf/1e38": lambda: stl_binary(np.where(_triangles(count)[:count] > 0.5, np.float32(3e38), np.nan)),
        "duplicates": lambda: stl_binary(np.repeat(_triangles(4)[:1], count, axis=0)),
        "degenerate faces": lambda: stl_binary(np.zeros((count, 3, 3))),
        "truncated": lambda: stl_binary(_triangles(count)[:count])[: int(size * 0.6)],
    }


def _stl_ascii_cases(size: int) -> dict[str, Callable[[], bytes]]:
    loop = b"solid s\nfacet normal 0 0 0\nouter loop\n" + repeat_to(b"vertex 0 0 0\nvertex 1 0 0\nvertex 1 1 0\n",
                                                                 size) + b"endloop\nendfacet\nendsolid s\n"
    return {
        "honest": lambda: by_rate(lambda n: stl_ascii(_triangles(n)), size),
        "polygon bomb (one loop)": lambda: loop,
        "long line": lambda: b"solid s\nfacet normal 0 0 0\nouter loop\nvertex " + repeat_to(b"1 ", size) + b"\n",
        "nan/inf/1e38": lambda: by_rate(lambda n: stl_ascii(_triangles(n)).replace(b"0.000000 ", b"nan ").replace(
            b"1.000000", b"1e38"), size),
        "degenerate faces": lambda: by_rate(lambda n: stl_ascii(np.zeros((n, 3, 3))), size),
        "truncated": lambda: by_rate(lambda n: stl_ascii(_triangles(n)), size)[: int(size * 0.6)],
    }


# ----------------------------------------------------------------------------------------------
# Point clouds


def _cloud(count: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, 3)).astype(np.float32)


def _npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _npz(compress=False, **arrays) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(out, **arrays)
    return out.getvalue()


def _npy_cases(size: int) -> dict[str, Callable[[], bytes]]:
    count = max(60, size // 12)
    return {
        "honest": lambda: _npy(_cloud(count)),
        "lying counts (shape)": lambda: _npy(_cloud(count)).replace(f"({count}, 3)".encode(),
                                                                   b"(4000000000, 3)".ljust(len(str(count)) + 5)),
        "nan/inf/1e38": lambda: _npy(np.where(_cloud(count) > 1, np.float32(3e38), np.where(
            _cloud(count) < -2, np.inf, _cloud(count)))),
        "duplicates": lambda: _npy(np.ones((count, 3), np.float32)),
        "wide rows": lambda: _npy(_cloud(count).reshape(1, -1)),
        "truncated": lambda: _npy(_cloud(count))[: int(size * 0.6)],
    }


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _bomb_bytes(size: int) -> int:
    """What a zip bomb unpacks to: 64 MB of zeros, about 1000 times its compressed size (the
    readers refuse it by that ratio, whatever the total)."""
    return 64 << 20


def _zip_bomb(name: str, head: bytes, base: bytes = b"") -> bytes:
    """`base` (a zip, or nothing) with a member `name`: `head` then zeros, deflated (streamed)."""
    out = io.BytesIO(base)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a" if base else "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=False) as member:
            member.write(head)
            zeros = bytes(1 << 24)
            for _ in range(_bomb_bytes(0) // len(zeros)):
                member.write(zeros)
    return out.getvalue()


def _many_members(size: int, content: bytes = b"") -> bytes:
    """A zip of as many tiny members as fit in `size` bytes (about 100 bytes each)."""
    members = {f"m{i}": content for i in range(max(2, size // 100))}
    return _zip(members)


def _npz_cases(size: int) -> dict[str, Callable[[], bytes]]:
    count = max(60, size // 12)
    return {
        "honest": lambda: _npz(points=_cloud(count)),
        "zip bomb": lambda: _zip_bomb("points.npy", _npy(np.zeros((_bomb_bytes(size) // 12, 3), np.float32))[:128]),
        "many members": lambda: _many_members(size, _npy(_cloud(60))[:0]),
        "nan/inf/1e38": lambda: _npz(points=np.where(_cloud(count) > 1, np.float32(3e38), np.nan)),
        "truncated": lambda: _npz(points=_cloud(count))[: int(size * 0.6)],
    }


def _xyz_cases(size: int) -> dict[str, Callable[[], bytes]]:
    honest = lambda: by_rate(lambda n: rows(_cloud(n), "%.6f"), size)  # noqa: E731
    return {
        "honest": honest,
        "one huge row": lambda: repeat_to(b"1 ", size) + b"\n",
        "dense rows": lambda: repeat_to(b"1 2 3\n3 1 2\n2 3 1\n", size),
        "long comment line": lambda: b"# " + repeat_to(b"x", size) + b"\n" + rows(_cloud(100), "%.6f"),
        "empty lines": lambda: rows(_cloud(100), "%.6f") + repeat_to(b"\n", size),
        "many columns": lambda: repeat_to(b"1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", size),
        "nan/inf/1e38": lambda: honest().replace(b"0.1", b"nan ").replace(b"0.2", b"1e38").replace(b"0.3", b"inf"),
        "duplicates": lambda: repeat_to(b"1.000000 2.000000 3.000000\n", size),
        "truncated": lambda: honest()[: int(size * 0.6) + 3],
    }


# ----------------------------------------------------------------------------------------------
# Checkpoints and pulls


def _export(width: int = 16, layers: int = 2) -> dict[str, bytes]:
    """config.json and model.safetensors of an untrained network of the given width."""
    import jax

    from diffcd.export import export_sdf
    from diffcd.io import Normalization
    from diffcd.networks import NetworkConfig, init_params
    from diffcd.sdf import FittedSDF

    network = NetworkConfig(hidden_layers=layers, width=width, skip_layers=())
    fitted = FittedSDF(network, init_params(network, jax.random.PRNGKey(0)), Normalization((0, 0, 0), 1.0))
    with tempfile.TemporaryDirectory() as tmp:
        export_sdf(fitted, tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in ("config.json", "model.safetensors")}


def _honest_width(size: int) -> int:
    """A width whose 2-hidden-layer network's weights are about `size` bytes, within the app's 4M parameters."""
    return int(min(1024, max(8, np.sqrt(max(size, 1) / 4))))


def _config(changes: Callable[[dict], dict]) -> dict[str, bytes]:
    files = _export()
    files["config.json"] = json.dumps(changes(json.loads(files["config.json"]))).encode()
    return files


def _deep_config(size: int) -> dict[str, bytes]:
    files = _export()
    config = files["config.json"]
    depth = max(1, min(size, 1 << 20) // 2 - len(config))
    files["config.json"] = config[:-1].rstrip() + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    return files


def _header_lie(size: int) -> dict[str, bytes]:
    files = _export()
    files["model.safetensors"] = struct.pack("<Q", 2**62) + b"{}" + b"\0" * max(0, size - 10)
    return files


def _checkpoint_zip(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    return _zip({f"fit/{name}": data for name, data in files.items()}, compression)


def _network(config: dict, **changes) -> dict:
    config["network"].update(changes)
    return config


def _checkpoint_cases(size: int) -> dict[str, Callable[[], bytes]]:
    return {
        "honest": lambda: _checkpoint_zip(_export(_honest_width(size)), zipfile.ZIP_STORED),
        "deep nesting (config.json)": lambda: _checkpoint_zip(_deep_config(size)),
        "huge numbers (config.json)": lambda: _checkpoint_zip(_config(lambda c: _network(c, width=10**38))),
        "nan/inf/1e38 (config.json)": lambda: _checkpoint_zip(_config(
            lambda c: _network(c, softplus_beta=float("nan"), init_radius=1e38))),
        "lying counts (safetensors header)": lambda: _checkpoint_zip(_header_lie(size), zipfile.ZIP_STORED),
        "zip bomb": lambda: _zip_bomb("fit/metrics.json", b"", _checkpoint_zip(_export())),
        "many members": lambda: _many_members(size),
        "long line (member name)": lambda: _zip({"fit/" + "a" * min(size, 60000): b"", **{
            f"fit/{k}": v for k, v in _export().items()}}),
        "truncated": lambda: _checkpoint_zip(_export(_honest_width(size)), zipfile.ZIP_STORED)[: int(size * 0.6)],
    }


def _pull_folder(size: int, **replace: bytes) -> dict[str, bytes]:
    files = _export(_honest_width(size))
    files["metrics.json"] = json.dumps({"eval": {"chamfer": 0.01, "f_score": 0.9}}).encode()
    files["README.md"] = b"---\nlibrary_name: diffcd\ntags:\n- sdf\n---\n\n# A fit\n"
    files.update(replace)
    return files


def _pull_cases(size: int) -> dict[str, Callable[[], dict[str, bytes]]]:
    return {
        "honest": lambda: _pull_folder(size),
        "deep nesting (metrics.json)": lambda: _pull_folder(size // 8, **{"metrics.json": _nested_json(size)}),
        "long line (metrics.json)": lambda: _pull_folder(size // 8, **{
            "metrics.json": b'{"eval": {"note": "' + repeat_to(b"a", size) + b'"}}'}),
        "nan/inf/1e38 (metrics.json)": lambda: _pull_folder(size // 8, **{
            "metrics.json": b'{"eval": {"chamfer": NaN, "f_score": Infinity, "x": 1e38, "y": 1e999}}'}),
        "deep nesting (card YAML)": lambda: _pull_folder(size // 8, **{
            "README.md": b"---\na: " + b"[" * (size // 2) + b"]" * (size // 2) + b"\n---\n"}),
        "deep nesting (config.json)": lambda: {**_pull_folder(size // 8), **_deep_config(size)},
        "lying counts (safetensors header)": lambda: {**_pull_folder(size // 8), **_header_lie(size)},
        "mesh (polygon bomb GLB)": lambda: _pull_folder(size // 8, **{"mesh.glb": _glb_cases(size)[
            "instancing (nodes share a mesh)"]()}),
    }


# ----------------------------------------------------------------------------------------------
# Cases and readers


@dataclass(frozen=True)
class Case:
    format: str
    attack: str
    reader: str
    """cloud (an upload to fit), mesh (a ground-truth mesh), checkpoint (a zip), pull (a Hub pull's files)."""
    suffix: str
    make: Callable[[], bytes | dict[str, bytes]]


FORMATS: dict[str, tuple[str, tuple[str, ...], Callable[[int], dict]]] = {
    "obj": (".obj", ("cloud", "mesh"), _obj_cases),
    "off": (".off", ("cloud", "mesh"), _off_cases),
    "ply-binary": (".ply", ("cloud", "mesh"), _ply_binary_cases),
    "ply-ascii": (".ply", ("cloud", "mesh"), _ply_ascii_cases),
    "glb": (".glb", ("mesh",), _glb_cases),
    "stl-binary": (".stl", ("cloud", "mesh"), _stl_binary_cases),
    "stl-ascii": (".stl", ("cloud", "mesh"), _stl_ascii_cases),
    "checkpoint-zip": (".zip", ("checkpoint",), _checkpoint_cases),
    "pull": ("", ("pull",), _pull_cases),
    "npy": (".npy", ("cloud",), _npy_cases),
    "npz": (".npz", ("cloud",), _npz_cases),
    "xyz": (".xyz", ("cloud",), _xyz_cases),
}
"""format -> (file suffix, readers that take it, cases at a size)."""


def cases(size: int, only: str = "") -> list[Case]:
    """Every (format, attack, reader) at about `size` bytes; `only` keeps names that contain it."""
    found = []
    for name, (suffix, readers, make) in FORMATS.items():
        for attack, generate in make(size).items():
            for reader in readers:
                case = Case(name, attack, reader, suffix, generate)
                if only in f"{name} {attack} {reader}":
                    found.append(case)
    return found


def write_case(case: Case, folder: Path) -> tuple[Path, int]:
    """The case's file (or folder) under `folder`, and its size in bytes."""
    content = case.make()
    if isinstance(content, dict):
        target = folder / "pulled"
        target.mkdir()
        for name, data in content.items():
            (target / name).write_bytes(data)
        return target, sum(len(data) for data in content.values())
    target = folder / f"input{case.suffix}"
    target.write_bytes(content)
    return target, len(content)


def _app_limits():
    from diffcd_space.limits import Limits

    return Limits.public()


def read_cloud(path: Path):
    from diffcd.io import load_point_cloud

    limits = _app_limits()
    return load_point_cloud(path, max_points=limits.max_points, limits=limits.input_limits())


def read_mesh(path: Path):
    from diffcd.io import load_mesh

    return load_mesh(path, limits=_app_limits().input_limits())


def read_checkpoint(path: Path):
    from diffcd.export import load_sdf
    from diffcd_space.checkpoint_upload import unpack_checkpoint

    limits = _app_limits()
    with tempfile.TemporaryDirectory() as tmp:
        folder = unpack_checkpoint(path, Path(tmp), max_file_bytes=limits.max_upload_bytes,
                                   network=limits.network_limits())
        return load_sdf(folder, limits=limits.network_limits())


def read_pull(folder: Path):
    """What a pull does with the files it fetched: sizes from the listing first, then the loaders."""
    from diffcd_hub.pull import _check_sizes, _read_metrics, load_folder

    pull = _app_limits().pull_limits()
    _check_sizes("user/repo", {path.name: path.stat().st_size for path in folder.iterdir()}, pull)
    sdf = load_folder(folder, "user/repo@0123456789ab", pull)
    return sdf, _read_metrics(folder, pull)


READERS = {"cloud": read_cloud, "mesh": read_mesh, "checkpoint": read_checkpoint, "pull": read_pull}


# ----------------------------------------------------------------------------------------------
# Measuring in forked children


def _status_kb(key: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    """CPU time of this process (user and system, all threads): unlike wall time, not inflated by
    other jobs on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "accepted"
    return f"refused: {type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _child(reader: str, path: Path, pipe: int) -> None:
    """Runs in the forked child: read the file, report (added MB, seconds, outcome) and exit."""
    import warnings

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := the RSS now
    base = _status_kb("VmRSS")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            READERS[reader](path)
    except Exception as exc:  # noqa: BLE001 - the outcome is reported, whatever it is
        error = exc
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
    report = {"peak_mb": (_status_kb("VmHWM") - base) / 1024, "seconds": seconds, "cpu_seconds": cpu_seconds,
              "outcome": _outcome(error)}
    os.write(pipe, json.dumps(report).encode())
    os._exit(0)


def _give_back_free_memory() -> None:
    """Return the allocator's free pages to the system, so that a child's reads show in its RSS
    instead of reusing memory the worker freed."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measure is a little optimistic
        pass


def _run_forked(reader: str, path: Path, timeout: float, kill_mb: float) -> dict:
    """Fork a child that reads `path`; kill it past `timeout` seconds or `kill_mb` of added memory."""
    read_end, write_end = os.pipe()
    _give_back_free_memory()
    base = _status_kb("VmRSS")
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(reader, path, write_end)
    os.close(write_end)
    start, peak, killed = time.perf_counter(), 0.0, ""
    while True:
        ready, _, _ = select.select([read_end], [], [], 0.02)
        if ready:
            break
        try:
            peak = max(peak, (_status_kb("VmRSS", str(pid)) - base) / 1024)
        except OSError:
            break
        if peak > kill_mb or time.perf_counter() - start > timeout:
            killed = f"killed: over {kill_mb:.0f} MB" if peak > kill_mb else f"killed: over {timeout:.0f} s"
            os.kill(pid, signal.SIGKILL)
            break
    data = b""
    while chunk := os.read(read_end, 1 << 16) if not killed else b"":
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    if killed or not data:
        elapsed = time.perf_counter() - start
        return {"peak_mb": peak, "seconds": elapsed, "cpu_seconds": elapsed, "outcome": killed or "crashed"}
    return json.loads(data)


def _warm_up(folder: Path) -> None:
    """Read a tiny file of every kind once, so that lazy imports and caches are in the baseline."""
    for size in (2000,):
        for case in cases(size):
            if case.attack != "honest":
                continue
            sub = folder / f"warm-{case.format}-{case.reader}"
            sub.mkdir()
            path, _ = write_case(case, sub)
            try:
                READERS[case.reader](path)
            except Exception:  # noqa: BLE001 - only imports matter here
                pass


def worker(sizes: list[int], only: str, timeout: float, kill_mb: float) -> None:
    """Measure every case at each of `sizes`; print one JSON line per case."""
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        _warm_up(Path(tmp))
        for size in sizes:
            written: dict[tuple[str, str], tuple[Path, int]] = {}
            for index, case in enumerate(cases(size, only)):
                if (case.format, case.attack) not in written:  # one file for all the readers of a case
                    for old_path, _ in written.values():
                        _remove(old_path.parent)
                    folder = Path(tmp) / f"case{size}-{index}"
                    folder.mkdir()
                    written = {(case.format, case.attack): write_case(case, folder)}
                path, actual = written[(case.format, case.attack)]
                result = _run_forked(case.reader, path, timeout, kill_mb)
                result.update(format=case.format, attack=case.attack, reader=case.reader, size=size, bytes=actual)
                print(json.dumps(result), flush=True)
            for old_path, _ in written.values():
                _remove(old_path.parent)


def _remove(folder: Path) -> None:
    for item in sorted(folder.rglob("*"), reverse=True):
        item.rmdir() if item.is_dir() else item.unlink()
    folder.rmdir()


def measure(sizes: list[int], only: str = "", timeout: float = 120.0, kill_mb: float = 4000.0,
            on_result: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Every case at each of `sizes` bytes, each measured in a child of one fresh worker process;
    `on_result` gets the results so far after each case."""
    command = [sys.executable, "-m", "benchmarks.hostile_inputs", "--worker", "--only", only,
               "--timeout", str(timeout), "--kill-mb", str(kill_mb), "--size", *map(str, sizes)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    results = []
    with tempfile.TemporaryFile("w+") as errors:
        worker_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env,
                                          cwd=Path(__file__).parent.parent)
        for line in worker_process.stdout:
            if line.startswith("{"):
                results.append(json.loads(line))
                if on_result is not None:
                    on_result(results)
        if worker_process.wait() != 0:
            errors.seek(0)
            raise RuntimeError(f"the hostile-input worker failed:\n{errors.read()[-4000:]}")
    return results


# ----------------------------------------------------------------------------------------------
# The benchmark's report


def table(results: list[dict]) -> list[str]:
    lines = ["| Format | Attack | Reader | File MB | Peak MB | Seconds (CPU) | Within bound | Outcome |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in results:
        within = row["peak_mb"] <= allowance(row["bytes"])[0] and row["cpu_seconds"] <= allowance(row["bytes"])[1]
        outcome = row["outcome"].replace("|", "\\|")
        lines.append(f"| {row['format']} | {row['attack']} | {row['reader']} | {row['bytes'] / 1e6:.1f} | "
                     f"{row['peak_mb']:.0f} | {row['seconds']:.2f} ({row['cpu_seconds']:.2f}) | "
                     f"{'yes' if within else '**no**'} | {outcome} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, nargs="+", default=[99.5e6],
                        help="bytes per file (default 99.5 MB, just under the 100 MB upload bound)")
    parser.add_argument("--only", default="", help="cases whose 'format attack reader' contains this")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--kill-mb", type=float, default=4000.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker([int(size) for size in args.size], args.only, args.timeout, args.kill_mb)
        return
    size = int(args.size[0])
    load, start = os.getloadavg(), time.time()

    def report(results: list[dict], done: bool = False) -> list[str]:
        lines = page(results, size, load, time.time() - start, done)
        if not args.no_write:
            write_page(lines, results, size, load)
        return lines

    results = measure([size], args.only, args.timeout, args.kill_mb, on_result=report)
    print("\n".join(report(results, done=True)))


def page(results: list[dict], size: int, load, seconds: float, done: bool) -> list[str]:
    """The results page: how it was measured, the bound, the table."""
    peak_bound, seconds_bound = allowance(size)
    now = os.getloadavg()
    state = "" if done else f" **Partial: {len(results)} cases so far; the run was still going.**"
    return [f"# Hostile inputs at {size / 1e6:g} MB (CPU)", "",
            f"`python -m benchmarks.hostile_inputs --size {size:g}` on {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{os.cpu_count()} cores, load average {load[0]:.2f} at the start and {now[0]:.2f} at the last case "
            f"(other engineers' jobs shared the machine: wall times are inflated, CPU times are not), "
            f"{seconds:.0f} s in all.{state}", "",
            "Bound (`diffcd.io.read_budget` with the app's limits): 6 bytes of added memory per input byte "
            f"plus 40 MB, at most 600 MB; {SECONDS_PER_BYTE * 1e6:g} s per MB plus {SECONDS_ALLOWANCE:g} s "
            f"(at this size: {peak_bound:.0f} MB, {seconds_bound:.0f} s). Peak MB is the reading child's peak "
            "resident memory minus its memory when forked from a worker that had imported the readers and read "
            "a tiny file of each kind. Seconds are wall time, with the child's CPU time in brackets; the bound "
            "is checked on CPU time.", ""] + table(results)


def write_page(lines: list[str], results: list[dict], size: int, load) -> None:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "hostile-inputs-cpu"
    peak_bound, seconds_bound = allowance(size)
    report = {"size": size, "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_start": load,
              "bound": {"peak_mb": peak_bound, "seconds": seconds_bound}, "results": results}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

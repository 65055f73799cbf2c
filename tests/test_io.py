"""diffcd.io: every reader's round trip, and a clear error for every kind of bad input."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import trimesh

from diffcd.errors import ConfigError, DiffCDError, DiffCDWarning, MeshError, PointCloudError
from diffcd.io import (
    SUPPORTED_EXTENSIONS,
    Normalization,
    PointCloud,
    load_mesh,
    load_point_cloud,
    points_from_array,
    save_point_cloud,
)


@pytest.fixture
def cloud():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)) * [1.0, 2.0, 0.5] + [10.0, -3.0, 2.0]
    normals = rng.normal(size=(500, 3))
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def box_mesh():
    return trimesh.creation.box(extents=(1.0, 2.0, 4.0))


# ----------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("extension", [".npy", ".npz", ".xyz", ".txt", ".pts", ".ply"])
@pytest.mark.parametrize("with_normals", [False, True])
def test_save_load_round_trip(tmp_path, cloud, extension, with_normals):
    points, normals = cloud
    path = save_point_cloud(tmp_path / f"cloud{extension}", points, normals if with_normals else None)
    loaded = load_point_cloud(path)
    assert isinstance(loaded, PointCloud)
    assert loaded.points.dtype == np.float32 and loaded.points.shape == (500, 3)
    np.testing.assert_array_equal(loaded.points, points.astype(np.float32))
    if with_normals:
        np.testing.assert_allclose(loaded.normals, normals, atol=1e-6)
    else:
        assert loaded.normals is None
    assert loaded.source == str(path) and loaded.original_count == 500 and not loaded.downsampled


@pytest.mark.parametrize("key", ["points", "xyz", "pts"])
def test_npz_point_keys(tmp_path, cloud, key):
    points, normals = cloud
    np.savez(tmp_path / "c.npz", colors=np.zeros((500, 3)), **{key: points}, normals=normals)
    loaded = load_point_cloud(tmp_path / "c.npz")
    np.testing.assert_array_equal(loaded.points, points.astype(np.float32))
    np.testing.assert_allclose(loaded.normals, normals, atol=1e-6)


def test_npz_falls_back_to_first_array(tmp_path, cloud):
    np.savez(tmp_path / "c.npz", vertices=cloud[0], other=np.zeros(3))
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "c.npz").points, cloud[0].astype(np.float32))


def test_npy_with_six_columns_gives_normals(tmp_path, cloud):
    np.save(tmp_path / "c.npy", np.hstack(cloud))
    loaded = load_point_cloud(tmp_path / "c.npy")
    np.testing.assert_allclose(loaded.normals, cloud[1], atol=1e-6)


def test_text_variants(tmp_path, cloud):
    points = cloud[0][:100]
    rows = "\n".join(",".join(f"{v:.9g}" for v in p) for p in points)
    variants = {
        "comma.xyz": rows,
        "header.txt": "x,y,z\n" + rows,
        "count.pts": f"{len(points)}\n" + rows.replace(",", " "),
        "comments.xyz": "# exported by a scanner\n// units: m\n" + rows.replace(",", "\t") + "\n",
    }
    for name, text in variants.items():
        (tmp_path / name).write_text(text)
        loaded = load_point_cloud(tmp_path / name)
        # 9 significant digits, then float32: equal up to float32 rounding.
        np.testing.assert_allclose(loaded.points, points, rtol=2e-7, err_msg=name)


def test_six_text_columns_that_are_colours_are_ignored(tmp_path, cloud):
    colours = np.random.default_rng(1).integers(0, 256, size=(500, 3))
    np.savetxt(tmp_path / "c.xyz", np.hstack([cloud[0], colours]), fmt="%.9g")
    with pytest.warns(DiffCDWarning, match="not unit normals"):
        loaded = load_point_cloud(tmp_path / "c.xyz")
    assert loaded.normals is None and loaded.points.shape == (500, 3)


@pytest.mark.parametrize("extension", [".ply", ".obj", ".off", ".stl"])
def test_mesh_files_are_sampled_by_area_with_face_normals(tmp_path, extension):
    path = tmp_path / f"box{extension}"
    box_mesh().export(path)
    loaded = load_point_cloud(path, mesh_samples=4000, seed=3)
    assert loaded.points.shape == (4000, 3) and loaded.normals.shape == (4000, 3)
    half = np.array([0.5, 1.0, 2.0])
    # Every sample lies on a face: one coordinate at +-half, and its normal points along that axis.
    on_face = np.isclose(np.abs(loaded.points), half, atol=1e-5)
    assert on_face.any(axis=1).all()
    axis = np.argmax(np.abs(loaded.normals), axis=1)
    assert on_face[np.arange(4000), axis].all()
    np.testing.assert_allclose(np.sign(loaded.normals[np.arange(4000), axis]),
                               np.sign(loaded.points[np.arange(4000), axis]))
    # Area-uniform: faces normal to z have area 2 of the total 28 (both sides together 4/28).
    assert abs(np.mean(axis == 2) - 4 / 28) < 0.03
    again = load_point_cloud(path, mesh_samples=4000, seed=3)
    np.testing.assert_array_equal(loaded.points, again.points)
    other = load_point_cloud(path, mesh_samples=4000, seed=4)
    assert not np.array_equal(loaded.points, other.points)


def test_point_only_ply_and_obj_give_their_vertices(tmp_path, cloud):
    points, normals = cloud
    save_point_cloud(tmp_path / "c.ply", points, normals)
    loaded = load_point_cloud(tmp_path / "c.ply")
    np.testing.assert_array_equal(loaded.points, points.astype(np.float32))
    np.testing.assert_allclose(loaded.normals, normals, atol=1e-6)
    (tmp_path / "c.obj").write_text("".join(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in points))
    np.testing.assert_allclose(load_point_cloud(tmp_path / "c.obj").points, points, rtol=2e-7)


def test_load_mesh_returns_the_mesh(tmp_path):
    for extension in (".ply", ".obj", ".off", ".stl", ".glb"):
        box_mesh().export(tmp_path / f"box{extension}")
        mesh = load_mesh(tmp_path / f"box{extension}")
        assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) == 12
        assert mesh.is_watertight and np.isclose(mesh.area, 28.0)


# ----------------------------------------------------------------------------------------------
# Bad inputs: each raises the right class, names the file and says what is wrong


def raises(error, path_or_call, *words, **kwargs):
    with pytest.raises(error) as info:
        if callable(path_or_call):
            path_or_call()
        else:
            load_point_cloud(path_or_call, **kwargs)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message
    assert isinstance(info.value, DiffCDError)
    return info.value


def test_missing_file_and_folder(tmp_path):
    raises(PointCloudError, tmp_path / "nope.xyz", "nope.xyz", "not found")
    raises(PointCloudError, tmp_path, "folder")
    raises(MeshError, lambda: load_mesh(tmp_path / "nope.ply"), "nope.ply", "not found")


def test_unknown_extension_lists_supported_ones(tmp_path):
    (tmp_path / "cloud.las").write_bytes(b"LASF")
    error = raises(PointCloudError, tmp_path / "cloud.las", "cloud.las", ".las")
    for extension in SUPPORTED_EXTENSIONS:
        assert extension in str(error)
    (tmp_path / "mesh.fbx").write_bytes(b"x")
    raises(MeshError, lambda: load_mesh(tmp_path / "mesh.fbx"), ".stl")


@pytest.mark.parametrize("extension", SUPPORTED_EXTENSIONS)
def test_empty_file(tmp_path, extension):
    (tmp_path / f"empty{extension}").write_bytes(b"")
    raises(PointCloudError, tmp_path / f"empty{extension}", f"empty{extension}", "empty")


def test_text_file_with_only_comments_has_no_points(tmp_path):
    (tmp_path / "c.xyz").write_text("# nothing here\n\n")
    raises(PointCloudError, tmp_path / "c.xyz", "no points")


@pytest.mark.parametrize("extension", SUPPORTED_EXTENSIONS)
def test_binary_junk(tmp_path, extension):
    path = tmp_path / f"junk{extension}"
    path.write_bytes(np.random.default_rng(7).bytes(3000))
    error = raises(PointCloudError, path, f"junk{extension}")
    # Either recognised up front (no NumPy header / not UTF-8 text), or the parser's own
    # exception is chained behind a sentence that says what to do.
    assert error.__cause__ is not None or "not a" in str(error)
    assert "Traceback" not in str(error) and "allow_pickle" not in str(error)


def test_truncated_npy_is_found_from_its_header(tmp_path, cloud):
    np.save(tmp_path / "full.npy", cloud[0])
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:400])
    raises(PointCloudError, tmp_path / "cut.npy", "cut.npy", "could not be read", "truncated")


def test_junk_mesh_for_load_mesh(tmp_path):
    (tmp_path / "junk.stl").write_bytes(np.random.default_rng(8).bytes(3000))
    error = raises(MeshError, lambda: load_mesh(tmp_path / "junk.stl"), "junk.stl", "STL")
    assert error.__cause__ is not None


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"points": 1}], dtype=object), allow_pickle=True)
    raises(PointCloudError, tmp_path / "objects.npy", "objects.npy", "pickled", "never loads")


def test_single_point_and_too_few_points(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((1, 3)))
    raises(PointCloudError, tmp_path / "one.npy", "single point")
    np.save(tmp_path / "few.npy", np.random.default_rng(0).normal(size=(50, 3)))
    raises(PointCloudError, tmp_path / "few.npy", "50 points", "51")
    assert len(load_point_cloud(tmp_path / "few.npy", min_points=10)) == 50
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    raises(PointCloudError, tmp_path / "none.npy", "no points")


def test_nan_and_inf_rows_are_counted(tmp_path, cloud):
    points = cloud[0][:100].copy()
    points[[3, 10], 0] = np.nan
    points[42, 2] = np.inf
    np.savetxt(tmp_path / "cloud.xyz", points)
    raises(PointCloudError, tmp_path / "cloud.xyz", "cloud.xyz", "3 of 100 rows", "nan or inf", "remove")


@pytest.mark.parametrize("shape", [(100, 4), (100,), (100, 3, 2), (100, 2)])
def test_wrong_shape(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.ones(shape))
    raises(PointCloudError, tmp_path / "bad.npy", "bad.npy", "(N, 3)", str(shape))


def test_transposed_array_gets_a_hint():
    raises(PointCloudError, lambda: points_from_array(np.ones((3, 100))), "transposed")


def test_non_numeric_array():
    raises(PointCloudError, lambda: points_from_array(np.array([["a", "b", "c"]] * 60)), "not numbers")


def test_identical_and_collinear_points():
    raises(PointCloudError, lambda: points_from_array(np.ones((100, 3))), "identical", "zero extent")
    for direction in ([1.0, 0.0, 0.0], [1.0, 2.0, 3.0]):
        line = np.outer(np.linspace(-1, 1, 100), direction) + [5.0, 0.0, 1.0]
        raises(PointCloudError, lambda: points_from_array(line), "line")
    plane = np.c_[np.random.default_rng(0).normal(size=(100, 2)), np.zeros(100)]
    assert len(points_from_array(plane)) == 100  # a planar patch is a valid surface


def test_mesh_without_faces_for_load_mesh(tmp_path, cloud):
    save_point_cloud(tmp_path / "points.ply", cloud[0])
    raises(MeshError, lambda: load_mesh(tmp_path / "points.ply"), "points.ply", "no faces")


def test_zero_area_mesh(tmp_path):
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False)
    flat.export(tmp_path / "flat.ply")
    raises(PointCloudError, tmp_path / "flat.ply", "zero surface area")


def test_explicit_normals_must_match(tmp_path, cloud):
    np.savez(tmp_path / "c.npz", points=cloud[0], normals=cloud[1][:10])
    raises(PointCloudError, tmp_path / "c.npz", "normals", "(10, 3)")
    np.savez(tmp_path / "z.npz", points=cloud[0], normals=np.zeros_like(cloud[1]))
    raises(PointCloudError, tmp_path / "z.npz", "zero length")
    np.savez(tmp_path / "n.npz", normals=cloud[1])
    raises(PointCloudError, tmp_path / "n.npz", "no point array")


def test_bad_limits_are_config_errors(tmp_path, cloud):
    with pytest.raises(ConfigError, match="max_points"):
        points_from_array(cloud[0], max_points=10)
    with pytest.raises(ConfigError, match="min_points"):
        points_from_array(cloud[0], min_points=0)


def test_save_rejects_unknown_extension_and_bad_shapes(tmp_path, cloud):
    raises(PointCloudError, lambda: save_point_cloud(tmp_path / "c.las", cloud[0]), ".npy")
    raises(PointCloudError, lambda: save_point_cloud(tmp_path / "c.npy", cloud[0][:, :2]), "(N, 3)")
    raises(PointCloudError, lambda: save_point_cloud(tmp_path / "c.npy", cloud[0], cloud[1][:5]), "normals")


# ----------------------------------------------------------------------------------------------
# Downsampling and warnings


def test_downsampling_warns_and_records_the_count(tmp_path, cloud):
    points, normals = cloud
    save_point_cloud(tmp_path / "c.npy", points, normals)
    with pytest.warns(DiffCDWarning, match="max_points=100"):
        small = load_point_cloud(tmp_path / "c.npy", max_points=100, seed=5)
    assert len(small) == 100 and small.original_count == 500 and small.downsampled
    # A subset of the original rows, in their original order, with their own normals.
    rows = [int(np.flatnonzero((points.astype(np.float32) == p).all(axis=1))[0]) for p in small.points]
    assert rows == sorted(rows) and len(set(rows)) == 100
    np.testing.assert_allclose(small.normals, normals[rows], atol=1e-6)
    with pytest.warns(DiffCDWarning):
        again = load_point_cloud(tmp_path / "c.npy", max_points=100, seed=5)
    np.testing.assert_array_equal(small.points, again.points)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not load_point_cloud(tmp_path / "c.npy").downsampled


def test_points_from_array_validates_like_files(cloud):
    result = points_from_array(cloud[0], source="scan 7")
    assert result.source == "scan 7" and result.points.dtype == np.float32
    bad = cloud[0].copy()
    bad[0, 0] = np.nan
    raises(PointCloudError, lambda: points_from_array(bad, source="scan 7"), "scan 7", "1 of 500 rows")
    with pytest.warns(DiffCDWarning):
        assert points_from_array(cloud[0], max_points=60).original_count == 500


def test_far_from_origin_warns(cloud):
    with pytest.warns(DiffCDWarning, match="far from the origin"):
        points_from_array(cloud[0] * 1e-3 + 1e6)


# ----------------------------------------------------------------------------------------------
# Normalization


def test_normalization_maps_the_bounding_box_into_the_unit_box(cloud):
    points = cloud[0]
    norm = Normalization.from_points(points)
    low, high = points.min(axis=0), points.max(axis=0)
    np.testing.assert_allclose(norm.center, (low + high) / 2)
    assert np.isclose(norm.scale, (high - low).max())
    normalised = norm.apply(points)
    assert np.isclose(np.ptp(normalised, axis=0).max(), 1.0)
    np.testing.assert_allclose(normalised.min(axis=0), -normalised.max(axis=0), atol=1e-12)
    assert normalised.min() >= -0.5 - 1e-12 and normalised.max() <= 0.5 + 1e-12
    np.testing.assert_allclose(norm.undo(normalised), points, atol=1e-12)


def test_normalization_keeps_dtype_and_batch_shape(cloud):
    norm = Normalization.from_points(PointCloud(cloud[0].astype(np.float32), None, "x", 500))
    batch = cloud[0].astype(np.float32).reshape(5, 100, 3)
    out = norm.apply(batch)
    assert out.dtype == np.float32 and out.shape == (5, 100, 3)
    np.testing.assert_allclose(norm.undo(out), batch, rtol=1e-5, atol=1e-4)
    assert norm.apply([[0.0, 0.0, 0.0]]).shape == (1, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        norm.apply(np.zeros((4, 2)))


def test_normalization_is_frozen_and_validated(cloud):
    norm = Normalization(center=np.array([1, 2, 3]), scale=2)
    assert norm.center == (1.0, 2.0, 3.0) and isinstance(norm.scale, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        norm.scale = 3.0
    assert Normalization.from_dict(norm.to_dict()) == norm
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="scale"):
            Normalization(center=(0, 0, 0), scale=bad)
    with pytest.raises(ValueError, match="centre"):
        Normalization(center=(0, 0), scale=1.0)
    with pytest.raises(PointCloudError, match="identical"):
        Normalization.from_points(np.ones((10, 3)))


# ----------------------------------------------------------------------------------------------
# Hostile files: refused from their headers, before anything is decompressed or allocated


def _zip_bomb(path, decoded_bytes: int, key: str = "points"):
    """An .npz whose member is a valid (N, 3) float32 array of zeros: tiny on disk, huge decoded.

    Streamed into the archive so that building it costs no memory.
    """
    import zipfile

    rows = decoded_bytes // 12
    header = np.lib.format.header_data_from_array_1_0(np.zeros((0, 3), np.float32))
    header["shape"] = (rows, 3)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(1 << 22)
            for _ in range(rows * 12 // len(chunk)):
                member.write(chunk)
            member.write(bytes(rows * 12 % len(chunk)))
    return path


def _load_traced(path, **kwargs):
    """(the exception raised, peak bytes Python and numpy allocated, seconds) for a load."""
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    try:
        load_point_cloud(path, **kwargs)
        error = None
    except DiffCDError as caught:
        error = caught
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak, seconds


def test_npz_zip_bomb_is_refused_before_decompressing(tmp_path):
    from diffcd.errors import LimitError

    bomb = _zip_bomb(tmp_path / "bomb.npz", 128 << 20)
    assert bomb.stat().st_size < 200 << 10  # about 130 KB on disk, 134 MB decoded (ratio ~1000)
    error, peak, seconds = _load_traced(bomb)
    assert isinstance(error, PointCloudError) and isinstance(error, LimitError), error
    assert "bomb.npz" in str(error) and "decompressed" in str(error)
    assert peak < 8 << 20, f"{peak / 1e6:.0f} MB allocated while refusing"
    assert seconds < 2.0


def test_npz_decoded_size_bound_without_the_ratio_check(tmp_path):
    from diffcd.io import InputLimits, PointCloudLimitError

    bomb = _zip_bomb(tmp_path / "big.npz", 64 << 20)
    limits = InputLimits(max_decoded_bytes=16 << 20, max_compression_ratio=1e9)
    error, peak, _ = _load_traced(bomb, limits=limits)
    assert isinstance(error, PointCloudLimitError) and "would decode to 67.1 MB" in str(error), error
    assert peak < 8 << 20


def test_npz_member_whose_header_lies_about_its_shape(tmp_path):
    import zipfile

    header = np.lib.format.header_data_from_array_1_0(np.zeros((0, 3), np.float32))
    header["shape"] = (10**7, 3)  # 120 MB claimed (within the caps), a few bytes stored
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as archive:
        with archive.open("points.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(120))
    error, peak, _ = _load_traced(tmp_path / "liar.npz")
    assert isinstance(error, PointCloudError) and "truncated" in str(error), error
    assert peak < 8 << 20


def test_npy_header_is_bounded_before_allocating(tmp_path):
    from diffcd.io import InputLimits, PointCloudLimitError

    header = np.lib.format.header_data_from_array_1_0(np.zeros((0, 3), np.float64))
    header["shape"] = (10**10, 3)
    with open(tmp_path / "huge.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        file.write(bytes(240))
    error, peak, _ = _load_traced(tmp_path / "huge.npy")
    assert isinstance(error, PointCloudLimitError) and "10,000,000,000 points" in str(error), error
    assert peak < 8 << 20
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).normal(size=(1000, 3)))
    raises(PointCloudLimitError, tmp_path / "ok.npy", "ok.npy", "more than the 500", limits=InputLimits(max_elements=500))


def test_file_size_and_text_rows_are_bounded(tmp_path, cloud):
    from diffcd.io import InputLimits, PointCloudLimitError

    save_point_cloud(tmp_path / "c.xyz", cloud[0])
    raises(PointCloudLimitError, tmp_path / "c.xyz", "c.xyz", "allowed",
           limits=InputLimits(max_file_bytes=1000))
    raises(PointCloudLimitError, tmp_path / "c.xyz", "c.xyz", "rows", limits=InputLimits(max_elements=100))
    assert len(load_point_cloud(tmp_path / "c.xyz", limits=InputLimits(max_elements=1000))) == 500


def test_downsampling_still_applies_below_the_hard_caps(tmp_path, cloud):
    from diffcd.io import InputLimits

    save_point_cloud(tmp_path / "c.npy", cloud[0])
    with pytest.warns(DiffCDWarning, match="random subset"):
        loaded = load_point_cloud(tmp_path / "c.npy", max_points=100, limits=InputLimits(max_elements=500))
    assert len(loaded) == 100 and loaded.original_count == 500


@pytest.mark.parametrize("kind", ["ply", "off", "stl"])
def test_mesh_headers_declaring_huge_counts_are_refused(tmp_path, kind):
    from diffcd.errors import LimitError
    from diffcd.io import MeshLimitError

    path = tmp_path / f"huge.{kind}"
    if kind == "ply":
        path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 2000000000\n"
                         b"property float x\nproperty float y\nproperty float z\nend_header\n" + bytes(36))
    elif kind == "off":
        path.write_text("OFF\n2000000000 1000000000 0\n0 0 0\n")
    else:  # a binary STL's count is trusted only when the file's size matches it
        from diffcd.io import InputLimits

        box_mesh().export(path)
        with pytest.raises(MeshLimitError, match="12 vertices and faces"):
            load_mesh(path, limits=InputLimits(max_elements=5))
        return
    error, peak, _ = _load_traced(path)
    assert isinstance(error, LimitError) and isinstance(error, PointCloudError), error
    assert "2,000,000,000" in str(error) or "3,000,000,000" in str(error)
    assert peak < 8 << 20
    with pytest.raises(MeshLimitError):
        load_mesh(path)


def test_mesh_loads_open_no_other_file(tmp_path):
    """An OBJ's mtllib (or a glTF's buffer URI) must not make trimesh read files next to or above it."""
    import sys

    secret = tmp_path / "secret.mtl"
    secret.write_text("newmtl leak\nKd 1 0 0\n")
    obj = tmp_path / "upload" / "mesh.obj"
    obj.parent.mkdir()
    obj.write_text("mtllib ../secret.mtl\nmtllib /etc/passwd\nusemtl leak\n"
                   "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    opened = []
    active = [True]

    def hook(event, args):
        if active[0] and event == "open" and isinstance(args[0], (str, bytes)):
            opened.append(str(args[0]))

    sys.addaudithook(hook)
    try:
        mesh = load_mesh(obj)
        load_point_cloud(obj, mesh_samples=200)
    finally:
        active[0] = False
    assert len(mesh.faces) == 4
    assert not [p for p in opened if "secret" in p or "passwd" in p], opened

"""What a mesh or text file will make a reader build, counted from its bytes before it is parsed.

A header can lie and one polygon of n corners becomes n - 2 triangles, so the counts here come
from the data itself: the tokens on each line of a text format (OBJ, OFF, ASCII PLY, .xyz), the
bytes left for the face lists of a binary PLY, the ``vertex`` keywords of an ASCII STL, and for a
GLB the accessors of every primitive times the nodes that place it. The text scan is vectorised
NumPy over fixed-size chunks of the bytes, so the scan itself adds a bounded amount of memory.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

__all__ = ["MeshCounts", "GLB_MAX_JSON_BYTES", "line_tokens", "count_mesh", "longest_row"]

_CHUNK = 1 << 18
"""Bytes scanned at once: the scan's own arrays (a few per byte and per line) stay below about 10 MB."""
_SPACE = np.zeros(256, bool)
_SPACE[[ord(c) for c in " \t\r\f\v"]] = True
_SEPARATORS = _SPACE.copy()
_SEPARATORS[[ord(c) for c in ",;"]] = True
GLB_MAX_JSON_BYTES = 1 << 19
"""Largest JSON chunk of a GLB read: parsed into Python objects it costs up to about 45 bytes per byte,
so 512 KB stays within the fixed allowance of a read (a mesh's own JSON is a few KB)."""
_GLB_MAX_NODE_VISITS = 100_000
"""Most node placements a GLB scene may make (each one copies its meshes when the scene is read)."""


@dataclass(frozen=True)
class MeshCounts:
    """What reading a mesh file builds, counted from its bytes.

    Attributes:
      vertices: vertices read (an upper bound).
      triangles: triangles after fan triangulation of every polygon (an upper bound).
      corners: the most corners of one polygon.
      values: the most values on one line of a text format (0 for a binary one).
      lines: lines of a text format's body (0 for a binary one).
      tokens: values of a text format's body; a GLB's JSON bytes (0 for other binary files).
      binary: whether the file is the binary variant of its format (PLY, STL).
      problem: why the bytes cannot be what the format says (None when they can).
    """

    vertices: int
    triangles: int
    corners: int = 3
    values: int = 0
    lines: int = 0
    tokens: int = 0
    binary: bool = False
    problem: str | None = None


def _chunk_lines(chunk: np.ndarray, separators: np.ndarray, previous_separator: bool):
    """(line break positions, tokens ending on each line, tokens after the last break, whether the
    chunk ends on a separator) of one chunk; its temporary arrays die with the call."""
    newline = chunk == 10
    separator = separators[chunk]
    separator |= newline
    starts = ~separator
    starts[1:] &= separator[:-1]
    starts[0] &= previous_separator
    counts = np.cumsum(starts, dtype=np.int32)
    ends = np.flatnonzero(newline)
    tokens = np.diff(counts[ends], prepend=0).astype(np.int64)
    tail = int(counts[-1] - (counts[ends[-1]] if len(ends) else 0))
    return ends, tokens, tail, bool(separator[-1])


def line_tokens(data: bytes, *, separators: np.ndarray = _SPACE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(first byte, token count) of every line of `data`, a chunk of lines at a time.

    Tokens are runs of bytes that are neither line breaks nor `separators`; the last line need not
    end with a line break. Memory is a few arrays of one chunk, whatever the lines' lengths.
    """
    view = memoryview(data).cast("B")
    carried_tokens, carried_first, previous_separator = 0, -1, True
    for offset in range(0, len(view), _CHUNK):
        chunk = np.frombuffer(view[offset: offset + _CHUNK], np.uint8)
        ends, tokens, tail, previous_separator = _chunk_lines(chunk, separators, previous_separator)
        if not len(ends):
            carried_tokens += tail
            carried_first = carried_first if carried_first >= 0 else int(chunk[0])
            continue
        firsts = np.empty(len(ends), np.int16)
        firsts[0] = carried_first if carried_first >= 0 else chunk[0]
        firsts[1:] = chunk[ends[:-1] + 1]
        tokens[0] += carried_tokens
        carried_tokens = tail
        carried_first = int(chunk[ends[-1] + 1]) if ends[-1] + 1 < len(chunk) else -1
        yield firsts, tokens
    if carried_tokens or carried_first >= 0:
        yield np.array([carried_first], np.int16), np.array([carried_tokens])


def longest_row(data: bytes, *, skip: bytes = b"#/") -> int:
    """The most numbers on one line of a text point cloud (commas and semicolons separate too);
    lines that start with a byte of `skip` (comments) are not counted."""
    most = 0
    skipped = np.array(sorted(skip), np.int16)
    for firsts, tokens in line_tokens(data, separators=_SEPARATORS):
        kept = tokens[~np.isin(firsts, skipped)]
        if len(kept):
            most = max(most, int(kept.max()))
    return most


def _face_lines(data, start: int, vertices: int, faces: int, *, skip_blank: bool) -> MeshCounts:
    """Counts of a text format whose body (from byte `start`) holds `vertices` vertex lines and
    then `faces` face lines of 'n i1 ... in' (OFF, ASCII PLY); blank and '#' lines are skipped
    when `skip_blank` (OFF), as the reader does."""
    seen, triangles, corners, values, lines, total = 0, 0, 0, 0, 0, 0
    for firsts, tokens in line_tokens(memoryview(data)[start:]):
        values, lines, total = max(values, int(tokens.max())), lines + len(tokens), total + int(tokens.sum())
        if skip_blank:
            keep = (tokens > 0) & (firsts != ord("#"))
            tokens = tokens[keep]
        low, high = max(0, vertices - seen), max(0, vertices + faces - seen)
        face_tokens = tokens[low:high]
        seen += len(tokens)
        if len(face_tokens):
            triangles += int(np.maximum(face_tokens - 3, 0).sum())
            corners = max(corners, int(face_tokens.max()) - 1)
    return MeshCounts(vertices, triangles, corners, values, lines, total)


def _obj(data) -> MeshCounts:
    vertices, triangles, corners, values, lines, total = 0, 0, 0, 0, 0, 0
    for firsts, tokens in line_tokens(data):
        values, lines, total = max(values, int(tokens.max())), lines + len(tokens), total + int(tokens.sum())
        face = firsts == ord("f")
        vertices += int(np.count_nonzero(firsts == ord("v")))
        if face.any():
            triangles += int(np.maximum(tokens[face] - 3, 0).sum())
            corners = max(corners, int(tokens[face].max()) - 1)
    return MeshCounts(vertices, triangles, corners, values, lines, total)


_OFF_HEADER = re.compile(rb"\A(?:\s*#[^\n]*\n|\s)*\w*OFF\b")


def _off(data) -> MeshCounts:
    head = _OFF_HEADER.match(data[: 1 << 16])
    if head is None:
        return MeshCounts(0, 0, problem="it does not start with OFF")
    numbers, at = [], head.end()
    for match in re.finditer(rb"#[^\n]*|\S+", data[at: at + (1 << 16)]):
        if not match.group().startswith(b"#"):
            numbers.append(match.group())
        if len(numbers) == 3:
            at += match.end()
            break
    if len(numbers) < 2 or not all(n.isdigit() for n in numbers[:2]):
        return MeshCounts(0, 0, problem="its vertex and face counts are missing")
    vertices, faces = int(numbers[0]), int(numbers[1])
    body = data.find(b"\n", at) + 1 or len(data)
    return _face_lines(data, body, vertices, faces, skip_blank=True)


_PLY_TYPES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def _ply_elements(header: str) -> list[tuple[str, int, list[list[str]]]]:
    """(name, count, properties as token lists) of each element of a PLY header."""
    elements = []
    for line in header.splitlines():
        words = line.split()
        if words[:1] == ["element"] and len(words) >= 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and elements:
            elements[-1][2].append(words[1:])
    return elements


def _ply(data) -> MeshCounts:
    end = data.find(b"end_header", 0, 1 << 16)
    if end < 0:
        return MeshCounts(0, 0, problem="its header has no end_header line")
    header = data[:end].decode("ascii", "replace")
    body = end + len(b"end_header") + (2 if data[end + 10: end + 12] == b"\r\n" else 1)
    elements = _ply_elements(header)
    sizes = {name: count for name, count, _ in elements}
    vertices, faces = sizes.get("vertex", 0), sizes.get("face", 0)
    if "binary" not in header:  # one element per line, in the header's order
        names = [name for name, _, _ in elements]
        before = sum(count for _, count, _ in elements[: names.index("face")]) if "face" in sizes else vertices
        return _face_lines(data, body, before, faces, skip_blank=False)
    return _ply_binary(data, body, elements)


def _ply_binary(data, body: int, elements) -> MeshCounts:
    """A binary PLY's triangles, bounded by the bytes its face lists can occupy: each face of n
    corners takes at least its count and n indices, so the corners of all faces are at most the
    face bytes over the index size."""
    fixed_bytes, list_elements = 0, []
    for name, count, properties in elements:
        lists = [p for p in properties if p[:1] == ["list"] and len(p) >= 3]
        if lists:
            list_elements.append((name, count, properties, lists))
        else:
            fixed_bytes += count * sum(_PLY_TYPES.get(p[0], 8) for p in properties)
    free = len(data) - body - fixed_bytes
    if free < 0:
        return MeshCounts(0, 0, problem="it is shorter than its header declares")
    vertices = dict((e[0], e[1]) for e in elements).get("vertex", 0)
    triangles = corners = 0
    for name, count, properties, lists in list_elements:
        record = sum(_PLY_TYPES.get(p[0], 8) for p in properties if p[:1] != ["list"])
        record += sum(_PLY_TYPES.get(p[1], 8) for p in lists)
        index = min(_PLY_TYPES.get(p[2], 8) for p in lists)
        most_corners = max(0, (free - count * record) // index)
        if name == "face":
            triangles += max(0, most_corners - 2 * count)
            corners = max(corners, most_corners - 3 * max(count - 1, 0))
    return MeshCounts(vertices, triangles, corners, binary=True)


def _stl(data) -> MeshCounts:
    if len(data) >= 84:
        (count,) = struct.unpack("<I", data[80:84])
        if len(data) == 84 + 50 * count:
            return MeshCounts(3 * count, count, binary=True)
    keywords = data.count(b"vertex")  # an ASCII STL: its reader groups every 3 vertices into a triangle
    return MeshCounts(keywords, keywords // 3)


def _glb_document(data) -> dict | None:
    if len(data) < 20 or data[:4] != b"glTF":
        return None
    length, kind = struct.unpack("<I4s", data[12:20])
    if kind != b"JSON":
        return None
    from diffcd.jsonscan import json_depth

    if length > GLB_MAX_JSON_BYTES:
        raise ValueError(f"its JSON chunk is {length:,} bytes; a glTF scene's description is far smaller")
    text = data[20: 20 + min(length, len(data) - 20)].decode("utf-8", "replace")
    if json_depth(text) > 64:
        raise ValueError("its JSON nests more than 64 levels deep")
    document = json.loads(text)
    return document if isinstance(document, dict) else None


def _glb_placements(document: dict) -> dict[int, int]:
    """How many times each mesh is placed by the scenes' node trees (a mesh in no scene: once)."""
    nodes = document.get("nodes") or []
    placed: dict[int, int] = {}
    stack = [n for scene in document.get("scenes") or [] for n in (scene.get("nodes") or [])]
    visits = 0
    while stack:
        index = stack.pop()
        visits += 1
        if visits > _GLB_MAX_NODE_VISITS:
            raise ValueError(f"its scene places nodes more than {_GLB_MAX_NODE_VISITS:,} times")
        node = nodes[index] if isinstance(index, int) and 0 <= index < len(nodes) else {}
        if isinstance(node.get("mesh"), int):
            placed[node["mesh"]] = placed.get(node["mesh"], 0) + 1
        stack.extend(c for c in node.get("children") or [] if isinstance(c, int))
    for mesh in range(len(document.get("meshes") or [])):
        placed.setdefault(mesh, 1)
    return placed


def _glb(data) -> MeshCounts:
    try:
        document = _glb_document(data)
        if document is None:
            return MeshCounts(0, 0)
        accessors = document.get("accessors") or []

        def count(index) -> int:
            valid = isinstance(index, int) and 0 <= index < len(accessors)
            return int(accessors[index].get("count", 0)) if valid else 0

        vertices = triangles = 0
        meshes = document.get("meshes") or []
        for mesh, times in _glb_placements(document).items():
            for primitive in (meshes[mesh] if 0 <= mesh < len(meshes) else {}).get("primitives") or []:
                positions = count((primitive.get("attributes") or {}).get("POSITION"))
                corners = count(primitive["indices"]) if "indices" in primitive else positions
                vertices += times * positions
                triangles += times * (corners // 3 if primitive.get("mode", 4) == 4 else max(corners - 2, 0))
    except ValueError as error:
        return MeshCounts(0, 0, problem=str(error))
    except (RecursionError, AttributeError, TypeError, KeyError, IndexError):
        return MeshCounts(0, 0, problem="its JSON chunk is not a glTF document")
    return MeshCounts(vertices, triangles, tokens=struct.unpack("<I", data[12:16])[0])


def count_mesh(data: bytes, kind: str) -> MeshCounts:
    """What reading `data` as a `kind` file ("obj", "off", "ply", "stl", "glb") builds."""
    return {"obj": _obj, "off": _off, "ply": _ply, "stl": _stl, "glb": _glb}[kind](data)

"""Find pickles by what they are, not by a word: protocol headers, a stream pickletools can parse,
numpy object arrays (which need allow_pickle), pickle-named members of zip archives, and any
byte a safetensors file holds beyond its header and tensors.

`pickle_findings(path)` takes a file, a folder (searched recursively) or a zip archive and
returns one line per finding; an empty list means no pickle was found.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct
import zipfile
from pathlib import Path

import numpy as np

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".bin", ".p")
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                           "U8": 1, "BOOL": 1}


def is_pickle_stream(data: bytes) -> bool:
    """True for bytes that are a whole pickle: a protocol 2-5 header, or opcodes to a final STOP."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    if not data or data[-1:] != b".":
        return False
    try:
        for opcode, _, position in pickletools.genops(io.BytesIO(data)):
            if opcode.name == "STOP":
                return position == len(data) - 1
    except Exception:  # not a pickle: genops meets an unknown opcode or runs out of bytes
        return False
    return False


def _safetensors_findings(name: str, data: bytes) -> list[str]:
    """A safetensors file is 8 bytes of header length, a JSON header, then exactly its tensors."""
    if len(data) < 8:
        return [f"{name}: too short for safetensors"]
    (header_length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + header_length])
    except ValueError:
        return [f"{name}: safetensors header is not JSON"]
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        start, stop = entry["data_offsets"]
        expected = int(np.prod(entry["shape"], dtype=np.int64)) * SAFETENSORS_DTYPE_BYTES.get(entry["dtype"], 0)
        if stop - start != expected:
            return [f"{name}: tensor {key} spans {stop - start} bytes, not {expected}"]
        end = max(end, stop)
    extra = len(data) - 8 - header_length - end
    return [f"{name}: {extra} bytes beyond the safetensors tensors"] if extra else []


def _numpy_findings(name: str, data: bytes) -> list[str]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                for key in loaded.files:
                    loaded[key]
    except ValueError as error:
        return [f"{name}: numpy file needs pickle ({error})"]
    return []


def bytes_findings(name: str, data: bytes) -> list[str]:
    """Findings for one file's bytes (name says what kind of file it claims to be)."""
    lower = name.lower()
    findings = []
    if lower.endswith(PICKLE_SUFFIXES):
        findings.append(f"{name}: a pickle-format file name")
    if is_pickle_stream(data):
        findings.append(f"{name}: a pickle stream")
    if lower.endswith(".safetensors"):
        findings += _safetensors_findings(name, data)
    elif lower.endswith((".npy", ".npz")) or data[:6] == b"\x93NUMPY":
        findings += _numpy_findings(name, data)
    if zipfile.is_zipfile(io.BytesIO(data)) and not lower.endswith(".npz"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                if not member.is_dir():
                    findings += bytes_findings(f"{name}!{member.filename}", archive.read(member))
    return findings


def pickle_findings(path: str | Path) -> list[str]:
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    findings = []
    for file in files:
        findings += bytes_findings(str(file), file.read_bytes())
    return findings

"""A checkpoint zip given by a visitor (upload or URL), checked before a byte of it is extracted.

The zip is the app's own download (`<name>-checkpoint.zip` of space.outputs.checkpoint_zip,
holding `<name>/config.json`, `<name>/model.safetensors` and a few result files), but anyone can
craft one: a zip bomb, a member named `../../app.py`, a central directory of a million entries.
So, in order and before any decompression:
  1. the file's size is at most the upload limit;
  2. the end-of-central-directory record is read by hand: at most MAX_MEMBERS entries and a small
     central directory, so that opening the zip cannot allocate much;
  3. each member's name is a plain `file` or `folder/file` (no absolute path, no `..`, no
     backslash), none is encrypted, each is stored or deflated, each declares a size within its
     bound and a compression ratio no zip of real weights reaches;
  4. only config.json and model.safetensors are extracted, to those fixed names in a fresh
     folder, and reading stops at the declared size.
Member names never choose a path.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path, PurePosixPath

import gradio as gr

from diffcd.export import NetworkLimits

MAX_MEMBERS = 10
"""A fit's zip holds six files (a folder entry or two more from other zip tools are fine)."""
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 1024
MAX_COMPRESSION_RATIO = 100
"""Weights barely compress and a config a few times; deflate bombs reach about 1000."""
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_CHUNK = 1 << 20


class CheckpointZipError(gr.Error):
    """A checkpoint zip that is refused; the message says why and what to do."""

    def __init__(self, message: str):
        super().__init__(message, title="Cannot use this checkpoint zip")


def _central_directory(path: Path, size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from the end-of-central-directory record."""
    with open(path, "rb") as file:
        tail_size = min(size, _EOCD.size + 0xFFFF)  # the record and a comment of at most 64 KiB
        file.seek(size - tail_size)
        tail = file.read(tail_size)
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD.size:
        raise CheckpointZipError("This file is not a zip archive: download the checkpoint zip again "
                                 "(the *-checkpoint.zip that Fit and Pull offer).")
    _, disk, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    if disk != 0 or entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        raise CheckpointZipError("This zip spans several disks or is a ZIP64 archive; a checkpoint zip "
                                 "is a plain zip of a few small files.")
    return entries, cd_size


def _bad_name(name: str) -> bool:
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or ":" in name:
        return True
    parts = PurePosixPath(name.rstrip("/")).parts
    return not parts or len(parts) > 2 or any(p in ("", ".", "..") for p in parts)


def check_checkpoint_zip(path: str | Path, *, max_file_bytes: int,
                         network: NetworkLimits) -> dict[str, zipfile.ZipInfo]:
    """The members to extract ({"config.json": info, "model.safetensors": info}), all bounds checked.

    Raises:
      CheckpointZipError: the file or one of its members breaks a bound, or it is no checkpoint.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_file_bytes:
        raise CheckpointZipError(f"The checkpoint zip is {size / 1e6:.3g} MB, more than this app's limit of "
                                 f"{max_file_bytes / 1e6:.3g} MB.")
    entries, cd_size = _central_directory(path, size)
    if entries > MAX_MEMBERS or cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise CheckpointZipError(f"The zip holds {entries:,} entries; a checkpoint zip holds at most "
                                 f"{MAX_MEMBERS} ({CONFIG_FILE}, {WEIGHTS_FILE} and a few result files).")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointZipError("This zip archive is damaged: download the checkpoint zip again.") from None
    if len(members) > MAX_MEMBERS:  # the record and the directory disagree: refuse either way
        raise CheckpointZipError(f"The zip holds more than {MAX_MEMBERS} entries; it is not a checkpoint zip.")
    bounds = {CONFIG_FILE: network.max_config_bytes, WEIGHTS_FILE: network.max_weights_bytes}
    found: dict[str, zipfile.ZipInfo] = {}
    for info in members:
        name = info.filename
        if _bad_name(name):
            raise CheckpointZipError(f"The zip holds a member named {name[:80]!r}, a path outside its folder; "
                                     "a checkpoint zip holds `name/config.json` and `name/model.safetensors`.")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise CheckpointZipError("The zip is encrypted; export the checkpoint again without a password.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointZipError(f"{name[:80]!r} in the zip is compressed with a method this app does "
                                     "not read; zip the checkpoint with plain deflate (any zip tool's default).")
        if info.file_size > max_file_bytes or info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise CheckpointZipError(f"{name[:80]!r} in the zip unpacks to {info.file_size:,} bytes from "
                                     f"{info.compress_size:,}: a zip bomb, not a checkpoint.")
        base = PurePosixPath(name).name
        if base in bounds:
            if base in found:
                raise CheckpointZipError(f"The zip holds two {base} files; zip one checkpoint at a time.")
            if info.file_size > bounds[base]:
                raise CheckpointZipError(f"{base} in the zip is {info.file_size:,} bytes, more than the "
                                         f"{bounds[base]:,} bytes of the largest network this app accepts.")
            found[base] = info
    missing = [name for name in bounds if name not in found]
    if missing:
        raise CheckpointZipError(f"The zip has no {' or '.join(missing)}: it is not a diffcd checkpoint zip "
                                 "(use the *-checkpoint.zip that Fit and Pull offer).")
    return found


def unpack_checkpoint(path: str | Path, folder: Path, *, max_file_bytes: int, network: NetworkLimits) -> Path:
    """Check the zip (check_checkpoint_zip), then extract config.json and model.safetensors into
    `folder` under those fixed names; returns folder, ready for diffcd.export.load_sdf."""
    members = check_checkpoint_zip(path, max_file_bytes=max_file_bytes, network=network)
    try:
        with zipfile.ZipFile(path) as archive:
            for target, info in members.items():
                written = 0
                with archive.open(info) as source, open(folder / target, "wb") as out:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        if written > info.file_size:  # zipfile stops there too; never trust one check
                            raise CheckpointZipError(f"{target} in the zip is longer than it declares.")
                        out.write(chunk)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as error:
        raise CheckpointZipError(f"The zip is damaged ({type(error).__name__}: {str(error)[:80]}); download "
                                 "the checkpoint zip again.") from None
    return folder

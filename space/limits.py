"""Every bound of the public app in one place.

A public Space is hostile ground: each visitor-controlled value (file bytes, API arguments, session
ids, a pulled repo's files) is bounded before the work starts. `Limits.from_environment()` gives
the public bounds when the app runs as a Space (SPACE_ID is set) and the local ones otherwise; any
bound can be overridden with an environment variable named DIFFCD_SPACE_<FIELD NAME IN CAPITALS>
(0, "none" or "off" turns an optional bound off). The table of bounds in docs/security.md is
`markdown_table()` of the public values (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

ENV_PREFIX = "DIFFCD_SPACE_"
_OFF = {"", "0", "none", "off", "no"}
_LEGACY_NAMES = {"max_request_seconds": "DIFFCD_SPACE_MAX_FIT_SECONDS",
                 "jobs_per_client": "DIFFCD_SPACE_JOBS_PER_SESSION"}
"""Older variable names still honoured (a newer name wins)."""


def _field(default, doc: str, unit: str = ""):
    return dataclasses.field(default=default, metadata={"doc": doc, "unit": unit})


@dataclasses.dataclass(frozen=True)
class Limits:
    """The bounds one app instance enforces (public defaults; see `local()` for a workstation)."""

    max_upload_bytes: int = _field(100_000_000, "Largest uploaded file (checked before it is read)", "bytes")
    max_points: int = _field(200_000, "Points kept from a cloud (larger clouds are downsampled, with a warning)",
                             "points")
    max_decoded_bytes: int = _field(512_000_000, "Largest decoded array of an upload (.npy/.npz checked "
                                    "before decompressing or allocating)", "bytes")
    max_read_bytes: int = _field(600_000_000, "Most memory reading one upload of the largest size may add, decoded "
                                 "arrays included, in at most 10 s on 2 cores (a smaller file: its share plus 40 MB; "
                                 "estimated from the triangles, lines and rows its bytes make and refused before "
                                 "parsing)", "bytes")
    max_face_corners: int = _field(256, "Most corners of one polygon of an uploaded mesh", "corners")
    max_network_parameters: int = _field(4_000_000, "Largest network a pull or upload accepts: parameters of its "
                                         "layers (a grid encoding's tables have their own row)", "parameters")
    max_network_width: int = _field(1024, "Largest network a pull accepts: features per layer", "features")
    max_network_depth: int = _field(16, "Largest network a pull accepts: hidden layers", "layers")
    max_sine_omega: float = _field(60.0, "Largest SIREN frequency ω a pull accepts", "")
    max_fourier_bands: int = _field(10, "Largest Fourier encoding a pull accepts: bands (the highest frequency "
                                    "is 2^(bands-1) π)", "bands")
    max_grid_levels: int = _field(8, "Largest grid encoding a pull accepts: levels", "levels")
    max_grid_resolution: int = _field(256, "Largest grid encoding a pull accepts: points per axis of a level",
                                      "points")
    max_grid_values: int = _field(8_000_000, "Largest grid encoding a pull accepts: values in all its tables "
                                  "(4 bytes each; 16³…128³ with 2 features holds 4.8M)", "values")
    max_pull_bytes: int = _field(64_000_000, "Largest download per pull (all files together)", "bytes")
    max_url_bytes: int = _field(100_000_000, "Largest file fetched from a URL an API or MCP caller passes "
                                "(as large as an upload)", "bytes")
    url_seconds: float = _field(30.0, "Wall-time limit of a URL fetch, connection and redirects included", "s")
    max_listing_bytes: int = _field(4_000_000, "Largest download per listing of checkpoints", "bytes")
    max_listing_repos: int = _field(50, "Repos per listing", "repos")
    max_mesh_faces: int = _field(6_000_000, "Largest mesh any request may produce", "triangles")
    max_request_seconds: float | None = _field(
        600.0, "Wall-time limit of every compute request (fit with its final mesh, a whole comparison, "
        "re-mesh, pull and mesh), counted from when it gets the device", "s")
    fit_share: float = _field(0.8, "Share of that limit a fit may train before it is stopped and meshed", "")
    poisson_seconds: float = _field(300.0, "Wall-time limit of one Screened Poisson reconstruction, its "
                                    "process's start included (within the request's limit and fit share)", "s")
    poisson_memory_bytes: int = _field(4_000_000_000, "Memory a Screened Poisson reconstruction's process may "
                                       "add to the loaded Open3D (past it the solve fails with a sentence)", "bytes")
    jobs_per_client: int = _field(1, "Compute jobs one client (a signed-in user, else a network address; "
                                  "an IPv6 address by its /64) may have waiting or running", "")
    max_waiting_jobs: int = _field(16, "Compute jobs waiting for the device, all clients together", "")
    device_seconds_per_hour: float | None = _field(
        1800.0, "Device time one client may use in any hour (its jobs' wall time on the device)", "s")
    signed_in_device_seconds_per_hour: float | None = _field(
        3600.0, "Device time a signed-in Hugging Face user may use in any hour", "s")
    reads_at_once: int = _field(4, "Visitors' files downloaded or parsed at once, all clients together "
                                "(each within the reader's memory bound)", "files")
    reads_per_client: int = _field(1, "Files one client may have downloaded or parsed at once", "")
    reads_waiting: int = _field(8, "Requests waiting for a read slot, all clients together (more are "
                                "refused at once)", "requests")
    read_wait_seconds: float = _field(60.0, "Longest wait for a read slot before the request is refused", "s")
    trusted_proxy_hops: int | None = _field(
        1, "Proxies in front of the app whose X-Forwarded-For entries are trusted (none: the socket "
        "peer is the client)", "")
    session_max_age: float = _field(2 * 3600.0, "A session folder idle this long is deleted", "s")
    sweep_seconds: float = _field(600.0, "How often idle session folders are looked for", "s")
    cache_max_age: float = _field(1800.0, "Gradio's copies of outputs (meshes, snapshots, downloads) "
                                  "are deleted after", "s")
    cache_sweep_seconds: float = _field(600.0, "How often Gradio's cache is swept", "s")
    hub_cache_max_bytes: int = _field(2_000_000_000, "Pulled checkpoints kept in the Hub cache (least "
                                      "recently used deleted first, at each sweep)", "bytes")
    hub_cache_max_age: float = _field(6 * 3600.0, "A pulled checkpoint unused this long is deleted from "
                                      "the Hub cache", "s")

    @classmethod
    def public(cls) -> "Limits":
        """The bounds of a public Space."""
        return cls()

    @classmethod
    def local(cls) -> "Limits":
        """A workstation: no wall-time or device-time limit (Screened Poisson: the library's 10 min), a few
        jobs per client, no proxy in front;
        the owner's own mesh files may take more memory to read than a visitor's (8 GB for the
        largest upload), other memory bounds as on a Space."""
        return cls(max_request_seconds=None, jobs_per_client=4, session_max_age=6 * 3600.0, poisson_seconds=600.0,
                   device_seconds_per_hour=None, signed_in_device_seconds_per_hour=None,
                   trusted_proxy_hops=None, max_read_bytes=8_000_000_000)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Limits":
        """Public bounds when SPACE_ID is set, else local ones; DIFFCD_SPACE_* variables override."""
        environ = os.environ if environ is None else environ
        base = cls.public() if environ.get("SPACE_ID") else cls.local()
        changes = {}
        for field in dataclasses.fields(cls):
            name = ENV_PREFIX + field.name.upper()
            raw = environ.get(name)
            if raw is None and field.name in _LEGACY_NAMES:
                name, raw = _LEGACY_NAMES[field.name], environ.get(_LEGACY_NAMES[field.name])
            if raw is None:
                continue
            changes[field.name] = _parse(field, raw.strip(), name)
        return dataclasses.replace(base, **changes)

    def with_changes(self, **changes) -> "Limits":
        return dataclasses.replace(self, **changes)

    def input_limits(self):
        """These bounds as diffcd.io.InputLimits: checked before an upload is decoded."""
        from diffcd.io import InputLimits

        return InputLimits(max_file_bytes=self.max_upload_bytes, max_decoded_bytes=self.max_decoded_bytes,
                           max_read_bytes=self.max_read_bytes, max_face_corners=self.max_face_corners)

    def network_limits(self):
        """These bounds as diffcd.export.NetworkLimits: checked from config.json before any tensor."""
        from diffcd.export import NetworkLimits

        return NetworkLimits(max_parameters=self.max_network_parameters, max_width=self.max_network_width,
                             max_hidden_layers=self.max_network_depth, max_sine_omega=self.max_sine_omega,
                             max_fourier_bands=self.max_fourier_bands, max_grid_levels=self.max_grid_levels,
                             max_grid_resolution=self.max_grid_resolution,
                             max_grid_parameters=self.max_grid_values)

    def reconstruct_bounds(self, seconds_left: float | None = None) -> dict:
        """These bounds as the keywords of a reconstructor (diffcd.poisson.reconstruct): points,
        faces, memory and a time limit of at most `seconds_left` (what the request has left)."""
        seconds = self.poisson_seconds if seconds_left is None else min(self.poisson_seconds, seconds_left)
        return {"max_points": self.max_points, "max_faces": self.max_mesh_faces,
                "memory_bytes": self.poisson_memory_bytes, "time_limit_s": max(1.0, seconds)}

    def pull_limits(self):
        """These bounds as hub.PullLimits: file sizes from the Hub's listing, before downloading."""
        from diffcd_hub import PullLimits

        return PullLimits(network=self.network_limits(), max_pull_bytes=self.max_pull_bytes)

    def list_limits(self):
        """These bounds as hub.ListLimits: repos per listing and bytes read per repo."""
        from diffcd_hub import ListLimits

        return ListLimits(max_repos=self.max_listing_repos,
                          max_json_bytes=max(1, self.max_listing_bytes // max(1, self.max_listing_repos)))


def _parse(field: dataclasses.Field, raw: str, name: str):
    optional = "None" in str(field.type)
    if optional and raw.lower() in _OFF:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number.") from None
    if value < 0 or (value == 0 and not optional):
        raise ValueError(f"{name} must be positive (got {raw}).")
    return int(value) if "int" in str(field.type) and value == int(value) else value


def _format(value, unit: str) -> str:
    if value is None:
        return "none"
    if unit == "bytes":
        return f"{value:,} ({value / 1e6:g} MB)"
    if unit == "s":
        text = f"{value:,.0f} s"
        if value >= 3600:
            return f"{text} ({value / 3600:g} h)"
        return f"{text} ({value / 60:g} min)" if value >= 60 else text
    if isinstance(value, float) and value == int(value) and unit not in ("",):
        value = int(value)
    return f"{value:,}" + (f" {unit}" if unit else "") if not isinstance(value, float) else f"{value:g}"


def markdown_table(limits: Limits | None = None) -> str:
    """The bounds as a Markdown table: what, public value, local value, variable that overrides it."""
    public, local = limits or Limits.public(), Limits.local()
    lines = ["| Bound | On a Space | Locally | Override |", "| --- | --- | --- | --- |"]
    for field in dataclasses.fields(Limits):
        unit = field.metadata["unit"]
        lines.append(f"| {field.metadata['doc']} | {_format(getattr(public, field.name), unit)} | "
                     f"{_format(getattr(local, field.name), unit)} | `{ENV_PREFIX}{field.name.upper()}` |")
    return "\n".join(lines)

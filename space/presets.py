"""The app's fit presets: the library's presets plus, for tests, smaller ones passed to build_app.

An app preset names a library preset (diffcd.PRESETS) and optional overrides; it also fixes what
only the app needs: how often and how finely a running fit is meshed for the live viewer, and how
many surface samples the final metrics use. The library's presets are never modified.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from diffcd import DEFAULT_PRESET, PRESETS, FitConfig, make_config
from diffcd.presets import noise_setting


@dataclasses.dataclass(frozen=True)
class AppPreset:
    """A named fit size offered in the app."""

    name: str
    base: str
    """The library preset this one starts from (a key of diffcd.PRESETS)."""
    description: str
    steps: int | None = None
    network: dict[str, Any] | None = None
    """NetworkConfig overrides, e.g. {"hidden_layers": 2, "width": 32, "skip_layers": ()}."""
    resolution: int | None = None
    """Final mesh resolution (None: the library preset's)."""
    batch_size: int | None = None
    snapshot_resolution: int = 64
    """Grid resolution of the live snapshot meshes."""
    snapshot_seconds: float = 3.0
    """Least wall time between two live snapshots (0: after every progress event)."""
    eval_samples: int = 30_000
    """Surface samples drawn for the final metrics."""

    def config(
        self,
        method: str,
        *,
        seed: int = 0,
        steps: int | None = None,
        width: int | None = None,
        depth: int | None = None,
        eikonal_weight: float | None = None,
        area_weight: float | None = None,
        resolution: int | None = None,
        noise: str = "none",
    ) -> FitConfig:
        """The FitConfig of this preset for `method`, with the user's advanced settings on top.

        Raises:
          diffcd.ConfigError: an invalid combination (e.g. an area weight for Neural-Pull).
        """
        network = dict(self.network or {})
        if width is not None:
            network["width"] = int(width)
        if depth is not None:
            depth = int(depth)
            network["hidden_layers"] = depth
            # the paper puts its one skip connection half-way up the network
            network["skip_layers"] = (depth // 2,) if depth >= 3 else ()
        method_overrides: dict[str, Any] = {}
        if eikonal_weight is not None:
            method_overrides["eikonal_weight"] = float(eikonal_weight)
        if area_weight is not None:
            method_overrides["area_weight"] = float(area_weight)
        return make_config(
            self.base,
            method,
            steps=steps if steps is not None else self.steps,
            seed=int(seed),
            resolution=resolution if resolution is not None else self.resolution,
            method_overrides=method_overrides or None,
            network_overrides=network or None,
            batch_size=self.batch_size,
            noise=noise,
        )

    def noise_description(self, level: str) -> str:
        """What the noise level does at this preset (the library preset's measured setting)."""
        return noise_setting(self.base, level).description

    def summary(self) -> str:
        """One line: network, steps and mesh size of this preset."""
        config = self.config("diffcd")
        net = config.network
        reads = {"fourier": f" + {net.encoding_levels} Fourier bands",
                 "grid": f" + {net.encoding_levels} feature grids"}.get(net.encoding, "")
        return (f"{net.hidden_layers}×{net.width} network{reads}, {config.schedule.steps:,} steps, "
                f"{config.mesh_resolution}³ final mesh")


def library_presets(gpu: bool) -> dict[str, AppPreset]:
    """One app preset per library preset; live snapshots are finer on a GPU."""
    snapshot = 96 if gpu else 64
    return {
        name: AppPreset(name=name, base=name, description=preset.description,
                        snapshot_resolution=snapshot)
        for name, preset in PRESETS.items()
    }


CPU_APP_PRESET = "cpu-quick-fourier"
"""The preset a CPU app opens with: the best quality in about a minute and a half of two cores
(benchmarks/results/encodings-cpu.md: cpu-quick's time, a 20-40 % lower Chamfer distance)."""
GPU_APP_PRESET = "gpu-demo"
"""The preset a GPU app opens with: the paper's network, 4,000 steps."""


def default_preset_name(presets: dict[str, AppPreset], gpu: bool) -> str:
    """gpu-demo on a GPU, cpu-quick-fourier otherwise, when offered; else the library's default."""
    for name in (GPU_APP_PRESET if gpu else CPU_APP_PRESET, DEFAULT_PRESET):
        if name in presets:
            return name
    return next(iter(presets))


def preset_choices(presets: dict[str, AppPreset]) -> list[tuple[str, str]]:
    """(label, name) of each preset, for a dropdown: the name and what the preset amounts to."""
    return [(f"{p.name} — {p.summary()}", name) for name, p in presets.items()]

"""The Fit tab's "show the input cloud" toggle: the current mesh alone, or with the cloud over it.

Acts on the session's current model (the gr.State dict of space.handlers: "mesh" is its PLY,
"cloud" its points as .npy). The GLBs are built once per mesh and kept next to it, so toggling
back and forth costs nothing after the first time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import trimesh

from diffcd_space import viewer


def _is_file(path) -> bool:
    return bool(path) and Path(path).is_file()


def surface_view(show_cloud: bool, current: dict | None) -> Any:
    """The GLB the Fit tab's viewer shows for the current model: with the cloud over it or not.

    Leaves the viewer as it is when there is no mesh yet (live snapshots keep showing).
    """
    if not current or not _is_file(current.get("mesh")):
        return gr.skip()
    mesh_path = Path(current["mesh"])
    has_cloud = _is_file(current.get("cloud"))
    if show_cloud and not has_cloud:
        gr.Info("This model has no input cloud (it was pulled from the Hub), so only the surface is shown.")
    wanted = mesh_path.with_name(f"{mesh_path.stem}-{'overlay' if show_cloud and has_cloud else 'surface'}.glb")
    if not wanted.is_file():
        mesh = trimesh.load(mesh_path, process=False, force="mesh")
        if show_cloud and has_cloud:
            viewer.overlay_glb(mesh, np.load(current["cloud"], allow_pickle=False), wanted)
        else:
            viewer.mesh_glb(mesh, wanted)
    return str(wanted)


def after_result(show_cloud: bool, current: dict | None) -> Any:
    """After a fit or re-mesh: put the cloud over the new mesh when the toggle is on."""
    return surface_view(True, current) if show_cloud else gr.skip()

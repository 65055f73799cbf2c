"""The cloud inputs of the Fit and Compare tabs: built-in examples and uploads, shown in 3D before
fitting. `CloudInputs` holds their events; `CloudPicker` lays the fields out and binds them."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import gradio as gr

from diffcd_space import viewer
from diffcd_space.context import AppContext
from diffcd_space.errors import catch_all
from diffcd_space.examples import Example
from diffcd_space.remote import BoundedFile  # a gr.File whose URL inputs are bounded (MCP, API)
from diffcd_space.sessions import SHARED_FOLDER
from diffcd_space.validation import LoadedCloud, file_path

CLOUD_FILE_TYPES = [".npy", ".npz", ".xyz", ".txt", ".pts", ".ply", ".obj", ".off", ".stl"]


_EXAMPLES_LOCK = threading.Lock()


class CloudInputs(AppContext):
    """Events of the example picker and the upload field."""

    def _cloud_info(self, loaded: LoadedCloud) -> str:
        cloud = loaded.cloud
        lo, hi = cloud.points.min(axis=0), cloud.points.max(axis=0)
        size = " × ".join(viewer.format_length(float(s), loaded.units) for s in hi - lo)
        lines = []
        if loaded.example:
            lines.append(f"**{loaded.example.title}** — {loaded.example.description}")
        else:
            lines.append(f"**{Path(cloud.source).name}**")
        extra = " with normals" if cloud.normals is not None else ""
        lines.append(f"{len(cloud):,} points{extra}; bounding box {size}.")
        if loaded.example and loaded.example.gt_mesh:
            lines.append("Has a ground-truth mesh: fits are scored against it.")
        lines += [f"⚠ {note}" for note in loaded.notes]
        return "\n\n".join(lines)

    def example_preview(self, example_id: str) -> tuple[str, str]:
        """The preview GLB and description of a built-in example, built once per app (two requests
        for the same example at once build it once)."""
        with _EXAMPLES_LOCK:
            if example_id not in self._examples:
                loaded = self._load_cloud(None, example_id)
                folder = self.store.root / SHARED_FOLDER
                folder.mkdir(exist_ok=True)
                path = viewer.cloud_glb(loaded.cloud.points, folder / f"{example_id}-cloud.glb")
                self._examples[example_id] = (str(path), self._cloud_info(loaded))
            return self._examples[example_id]

    @catch_all("Cannot show this example")
    def load_example(self, example: str) -> tuple[str, str]:
        """Show a built-in example point cloud in 3D, with what it is.

        Args:
            example: the example's id, e.g. "torus" (see the dropdown's choices).

        Returns:
            The cloud as a GLB of small glyphs (a subsample of at most 6,000 points), and a
            Markdown description (points, size, whether it has a ground-truth mesh).
        """
        if not example:
            raise gr.Error("Pick an example first.")
        return self.example_preview(example)

    @catch_all("Cannot use this point cloud")
    def preview_cloud(self, cloud: str, request: gr.Request) -> tuple[str, str]:
        """Check an uploaded point cloud and show it in 3D before fitting.

        Args:
            cloud: a point cloud file: .npy/.npz (N×3 or N×6 float array), .xyz/.txt/.pts (3 or 6
                columns), .ply/.obj/.off/.stl (points, or a mesh whose surface is sampled).

        Returns:
            The cloud as a GLB of small glyphs and a Markdown description. A cloud larger than the
            app's limit is downsampled, with a warning.
        """
        if file_path(cloud) is None:
            raise gr.Error("Upload a point cloud file first.")
        loaded = self._read_cloud(cloud, None, request)
        folder = self.store.folder(request)
        path = viewer.cloud_glb(loaded.cloud.points, folder / f"upload-{time.time_ns()}.glb")
        for old in folder.glob("upload-*.glb"):
            if old != path:
                old.unlink(missing_ok=True)
        return str(path), self._cloud_info(loaded)

    def clear_preview(self) -> tuple[None, str]:
        return None, ""


@dataclasses.dataclass(frozen=True)
class CloudPicker:
    """The example picker, the upload field and the 3D preview of the chosen cloud."""

    upload: BoundedFile
    example: gr.Dropdown
    preview: gr.Model3D
    info: gr.Markdown

    @classmethod
    def layout(cls, inputs: CloudInputs, prefix: str, examples: list[Example],
               default_example: str | None) -> CloudPicker:
        """The fields, with the default example shown; `prefix` starts their elem_ids ("fit", "compare")."""
        example_choices = [(e.label, e.id) for e in examples]
        preview_value, info_value = (inputs.example_preview(default_example) if default_example else (None, ""))
        example = gr.Dropdown(example_choices, value=default_example, label="Example cloud",
                              info="Built-in clouds with ground-truth meshes.", elem_id=f"{prefix}-example")
        upload = BoundedFile(label="…or upload a point cloud", file_types=CLOUD_FILE_TYPES,
                             type="filepath", height=110, elem_id=f"{prefix}-upload")
        preview = gr.Model3D(value=preview_value, label="Input cloud", height=280, interactive=False,
                             elem_id=f"{prefix}-cloud-view")
        info = gr.Markdown(info_value, elem_id=f"{prefix}-cloud-info")
        return cls(upload=upload, example=example, preview=preview, info=info)

    def bind(self, inputs: CloudInputs, *, public: bool) -> None:
        """Show a picked example or an upload; one clears the other. `public`: the events are the
        /load_example and /preview_cloud endpoints (the Fit tab's; the Compare tab's are private)."""
        api = {"api_visibility": "public" if public else "private"}
        self.example.input(inputs.load_example, [self.example], [self.preview, self.info],
                           api_name="load_example" if public else None, concurrency_limit=4, **api) \
            .success(lambda: None, None, [self.upload], api_visibility="private", queue=False)
        self.upload.upload(inputs.preview_cloud, [self.upload], [self.preview, self.info],
                           api_name="preview_cloud" if public else None, concurrency_limit=4, **api) \
            .success(lambda: None, None, [self.example], api_visibility="private", queue=False)
        self.upload.clear(inputs.clear_preview, None, [self.preview, self.info], api_visibility="private",
                          queue=False)

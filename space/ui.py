"""The layout of the app and the wiring of its events (the functions live in space.handlers)."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import jax

from diffcd import METHODS
from diffcd.presets import NOISE_SETTINGS
from diffcd_hub.cache import prune as prune_hub_cache
from diffcd_space import mcp, overlay, runtime, viewer
from diffcd_space.examples import list_examples
from diffcd_space.featured import FeaturedCheckpoints, page_load, row_repo
from diffcd_space.handlers import MAX_VIEWERS, Handlers
from diffcd_space.limits import Limits
from diffcd_space.presets import AppPreset, default_preset_name, library_presets
from diffcd_space.remote import BoundedFile  # hfconv: gr.File whose URL inputs are bounded (MCP, API)
from diffcd_space.sessions import SessionStore
from diffcd_space.validation import MAX_RESOLUTION, MIN_RESOLUTION

QUEUE_MAX_SIZE = 64
"""Events held in Gradio's own queue (quick checks waiting for their slot). Compute jobs do not
wait there: they wait in the app's own line (space.jobs), bounded by Limits.max_waiting_jobs, so
Stop and status calls are never refused because fits are waiting."""
CHECKS = "checks"
"""Concurrency group of the quick checks that read uploads (parsing is bounded, but not free)."""

INTRO = """# DiffCD — fit neural implicit surfaces to point clouds
Fit a signed distance function (SDF) to a point cloud with **DiffCD** (ECCV 2024: a symmetric,
differentiable Chamfer distance between the cloud and the zero level set) or with the methods it is
compared with — **IGR**, **Neural-Pull** and **SIREN**. Watch the surface form, compare methods on
the same cloud, and share fitted SDFs through the Hugging Face Hub."""

CSS = """
#fit-status, #compare-status {min-height: 2.5em}
"""


def _on_space_with_oauth() -> bool:
    return bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"))


def _method_choices() -> list[tuple[str, str]]:
    return [(spec.title, name) for name, spec in METHODS.items()]


def _method_summary(method: str) -> str:
    spec = METHODS.get(method)
    return f"*{spec.title}: {spec.summary}*" if spec else ""


def _preset_choices(presets: dict[str, AppPreset]) -> list[tuple[str, str]]:
    return [(f"{p.name} — {p.summary()}", name) for name, p in presets.items()]


def _cloud_inputs(handlers: Handlers, prefix: str, examples, default_example: str | None):
    """Example picker, upload and input preview; returns (upload, example, preview, info)."""
    example_choices = [(e.label, e.id) for e in examples]
    preview_value, info_value = (handlers.example_preview(default_example) if default_example else (None, ""))
    example = gr.Dropdown(example_choices, value=default_example, label="Example cloud",
                          info="Built-in clouds with ground-truth meshes.", elem_id=f"{prefix}-example")
    upload = BoundedFile(label="…or upload a point cloud", file_types=[
        ".npy", ".npz", ".xyz", ".txt", ".pts", ".ply", ".obj", ".off", ".stl"],
        type="filepath", height=110, elem_id=f"{prefix}-upload")
    preview = gr.Model3D(value=preview_value, label="Input cloud", height=280, interactive=False,
                         elem_id=f"{prefix}-cloud-view")
    info = gr.Markdown(info_value, elem_id=f"{prefix}-cloud-info")
    return upload, example, preview, info


def _wire_cloud_inputs(handlers: Handlers, upload, example, preview, info, *, public: bool) -> None:
    api = {"api_visibility": "public" if public else "private"}
    example.input(handlers.load_example, [example], [preview, info],
                  api_name="load_example" if public else None, concurrency_limit=4, **api) \
        .success(lambda: None, None, [upload], api_visibility="private", queue=False)
    upload.upload(handlers.preview_cloud, [upload], [preview, info],
                  api_name="preview_cloud" if public else None, concurrency_limit=4, **api) \
        .success(lambda: None, None, [example], api_visibility="private", queue=False)
    upload.clear(handlers.clear_preview, None, [preview, info], api_visibility="private", queue=False)


def build_app(
    *,
    presets: dict[str, AppPreset] | None = None,
    extra_presets: dict[str, AppPreset] | None = None,
    default_preset: str | None = None,
    hub_endpoint: str | None = None,
    max_points: int | None = None,
    max_fit_seconds: float | None = None,
    session_root: str | Path | None = None,
    limits: Limits | None = None,
) -> gr.Blocks:
    """Build the Gradio app (call .queue() and .launch() on it, as app.py does).

    Args:
      presets: fit sizes offered (default: one per library preset).
      extra_presets: added to those, e.g. a tiny preset for tests.
      default_preset: the preset selected at start (default: gpu-demo on a GPU, else cpu-quick).
      hub_endpoint: the Hub URL (default: HF_ENDPOINT, else huggingface.co).
      max_points: clouds above this are downsampled (overrides limits.max_points).
      max_fit_seconds: the wall-time limit of every compute request (overrides
        limits.max_request_seconds).
      session_root: where per-session folders live (default: a new temporary folder).
      limits: every bound of the app (default: Limits.from_environment(): the public bounds when
        running as a Space, local ones otherwise, DIFFCD_SPACE_* variables override).
    """
    gpu = jax.default_backend() == "gpu"
    backend_problem = runtime.check_backend()  # hfconv: a GPU Space on the CPU says so (log + banner)
    presets = dict(presets or library_presets(gpu))
    presets.update(extra_presets or {})
    default_preset = default_preset or default_preset_name(presets, gpu)
    limits = limits or Limits.from_environment()
    store = SessionStore(session_root, max_age=limits.session_max_age)
    # API-only sessions never load a page; pulled checkpoints must not fill the disk either.
    store.start_sweeper(limits.sweep_seconds,
                        also=lambda: prune_hub_cache(limits.hub_cache_max_bytes, limits.hub_cache_max_age))
    handlers = Handlers(presets=presets, store=store, max_points=max_points, hub_endpoint=hub_endpoint,
                        max_fit_seconds=max_fit_seconds, limits=limits)
    limits = handlers.limits
    examples = list_examples()
    default_example = next((e.id for e in examples if e.id == "torus"), examples[0].id if examples else None)
    method_names = list(METHODS)

    with gr.Blocks(title="DiffCD: neural implicit surfaces", delete_cache=(int(limits.cache_sweep_seconds), int(limits.cache_max_age)),
                   analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.HTML(runtime.banner_html(backend_problem), visible=bool(backend_problem), elem_id="gpu-banner")
        current = gr.State(None)
        with gr.Tabs():
            # ----------------------------------------------------------------------------- Fit
            with gr.Tab("Fit", id="fit"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=340):
                        upload, example, preview, info = _cloud_inputs(handlers, "fit", examples, default_example)
                        method = gr.Dropdown(_method_choices(), value="diffcd", label="Method", elem_id="fit-method")
                        method_info = gr.Markdown(_method_summary("diffcd"))
                        preset = gr.Dropdown(_preset_choices(presets), value=default_preset, label="Preset",
                                             info="Network size, steps and mesh resolution.", elem_id="fit-preset")
                        with gr.Accordion("Advanced settings (filled in from the preset and method)", open=False):
                            with gr.Row():
                                steps = gr.Number(None, label="Steps", precision=0)
                                seed = gr.Number(0, label="Seed", precision=0)
                            with gr.Row():
                                width = gr.Number(None, label="Network width", precision=0)
                                depth = gr.Number(None, label="Network depth (hidden layers)", precision=0)
                            with gr.Row():
                                eikonal = gr.Number(None, label="Eikonal weight λ")
                                area = gr.Number(None, label="Area weight μ")
                            resolution = gr.Number(None, label=f"Final mesh resolution ({MIN_RESOLUTION}–{MAX_RESOLUTION})",
                                                   precision=0)
                            noise = gr.Dropdown([(s.description, name) for name, s in NOISE_SETTINGS.items()],
                                                value="none", label="Noise in the cloud (the paper's settings)",
                                                elem_id="fit-noise")
                        with gr.Row():
                            fit_button = gr.Button("Fit", variant="primary", elem_id="fit-button")
                            stop_button = gr.Button("Stop", variant="stop", elem_id="fit-stop")
                    with gr.Column(scale=2):
                        status = gr.Markdown("Pick an example or upload a cloud, then press **Fit**.",
                                             elem_id="fit-status")
                        surface = gr.Model3D(label="Fitted surface (live snapshots, then the final mesh)",
                                             height=420, interactive=False, elem_id="fit-surface-view")
                        show_cloud = gr.Checkbox(False, label="Show the input cloud over the surface (orange)",
                                                 elem_id="fit-overlay")
                        losses = gr.LinePlot(None, x="step", y="log10 loss", color="term",
                                             title="Loss (log10)", height=240, elem_id="fit-loss")
                        metrics = gr.Dataframe(label="Metrics (in the cloud's units)", interactive=False,
                                               wrap=True, elem_id="fit-metrics")
                        downloads = gr.File(label="Downloads: mesh (GLB, PLY, OBJ) and checkpoint",
                                            file_count="multiple", interactive=False, elem_id="fit-downloads")
                        with gr.Accordion("Re-mesh or evaluate the current model", open=False):
                            with gr.Row():
                                remesh_resolution = gr.Slider(MIN_RESOLUTION, MAX_RESOLUTION, value=128, step=8,
                                                              label="Mesh resolution")
                                remesh_button = gr.Button("Extract mesh")
                            with gr.Row():
                                gt_upload = BoundedFile(label="Ground-truth mesh (optional for examples)",
                                                    file_types=[".ply", ".obj", ".off", ".stl", ".glb"],
                                                    type="filepath", height=110)
                                evaluate_button = gr.Button("Evaluate")
                            gr.Markdown("…or mesh and score a checkpoint zip (a *-checkpoint.zip download) "
                                        "instead of the current model:")
                            with gr.Row():
                                checkpoint_upload = BoundedFile(label="Checkpoint zip", file_types=[".zip"],
                                                                type="filepath", height=110,
                                                                elem_id="fit-checkpoint-upload")
                                with gr.Column(min_width=160):
                                    remesh_checkpoint_button = gr.Button("Mesh the checkpoint")
                                    evaluate_checkpoint_button = gr.Button("Evaluate the checkpoint")
                        with gr.Accordion("Progress details (JSON)", open=False):
                            progress = gr.JSON(label="Progress", elem_id="fit-progress")
                _wire_cloud_inputs(handlers, upload, example, preview, info, public=True)

            # ------------------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=340):
                        c_upload, c_example, c_preview, c_info = _cloud_inputs(handlers, "compare", examples,
                                                                               default_example)
                        c_methods = gr.CheckboxGroup([(METHODS[m].title, m) for m in method_names],
                                                     value=method_names[:2] if len(method_names) < 3
                                                     else ["diffcd", "igr", "siren"],
                                                     label="Methods (two to four)", elem_id="compare-methods")
                        c_preset = gr.Dropdown(_preset_choices(presets), value=default_preset, label="Preset")
                        with gr.Row():
                            c_seed = gr.Number(0, label="Seed", precision=0)
                            c_steps = gr.Number(None, label="Steps per method", precision=0)
                        with gr.Row():
                            compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                            compare_stop = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=2):
                        c_status = gr.Markdown("Choose methods and press **Compare**: they run one after "
                                               "another with the same seed.", elem_id="compare-status")
                        legend = gr.HTML(viewer.legend_html(None), elem_id="compare-legend")
                        views = []
                        for row in range(0, MAX_VIEWERS, 2):
                            with gr.Row():
                                for i in range(row, min(row + 2, MAX_VIEWERS)):
                                    views.append(gr.Model3D(label=METHODS[method_names[i]].title, height=300,
                                                            interactive=False, elem_id=f"compare-view-{i}"))
                        c_table = gr.Dataframe(label="Metrics per method (the cloud's units)", interactive=False,
                                               elem_id="compare-metrics")
                _wire_cloud_inputs(handlers, c_upload, c_example, c_preview, c_info, public=False)

            # ----------------------------------------------------------------------------- Hub
            with gr.Tab("Hub", id="hub"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=340):
                        gr.Markdown("### Pull a published checkpoint")
                        with gr.Row():
                            h_author = gr.Textbox(label="Author (optional)", scale=1)
                            h_search = gr.Textbox(label="Search (optional)", scale=1)
                        list_button = gr.Button("List published diffcd checkpoints")
                        h_table = gr.Dataframe(label="Published checkpoints", interactive=False,
                                               elem_id="hub-checkpoints")
                        h_featured = gr.Markdown("", elem_id="hub-featured-note")
                        h_pick = gr.Dropdown([], label="Pick one", elem_id="hub-pick")
                        h_repo = gr.Textbox(label="Repo id", placeholder="namespace/name", elem_id="hub-repo")
                        with gr.Row():
                            h_revision = gr.Textbox(label="Revision (branch, tag or sha; empty: main)")
                            h_resolution = gr.Slider(MIN_RESOLUTION, MAX_RESOLUTION, value=256 if gpu else 128,
                                                     step=8, label="Mesh resolution")
                        pull_button = gr.Button("Pull and mesh", variant="primary", elem_id="hub-pull")
                        gr.Markdown("### Push the current model (your last fit or pull)")
                        p_repo = gr.Textbox(label="Your repo id", placeholder="your-name/torus-diffcd",
                                            elem_id="hub-push-repo")
                        h_token = gr.Textbox(label="Access token (write access for pushing; never stored)",
                                             type="password", placeholder="hf_…", elem_id="hub-token")
                        if _on_space_with_oauth():
                            gr.LoginButton()
                        with gr.Row():
                            p_private = gr.Checkbox(False, label="Private repo")
                            p_cloud = gr.Checkbox(False, label="Include the input cloud (≤ 20k points)")
                        push_button = gr.Button("Push", elem_id="hub-push")
                        commit_url = gr.Textbox(label="Commit URL", interactive=False, elem_id="hub-commit-url")
                    with gr.Column(scale=2):
                        h_status = gr.Markdown("", elem_id="hub-status")
                        h_view = gr.Model3D(label="Pulled surface", height=420, interactive=False,
                                            elem_id="hub-view")
                        h_info = gr.Markdown("")
                        h_downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)

        # ------------------------------------------------------------------------------ events
        # Compute jobs enter at once and wait in the app's own line (space.jobs): one runs at a time,
        # a client has at most limits.jobs_per_client and its device time, and a full line says when to retry.
        compute = {"concurrency_limit": None}
        fit_inputs = [upload, example, method, preset, steps, width, depth, eikonal, area, seed, resolution, noise,
                      current]
        # Each action first validates in a quick private event (no queue wait for the worker, and a
        # failure leaves the outputs as they were), then runs; the run validates again for API callers.
        check = {"api_visibility": "private", "concurrency_id": CHECKS, "concurrency_limit": 2}
        fit_button.click(handlers.check_fit, fit_inputs[:-1], None, **check) \
            .success(handlers.fit, fit_inputs, [surface, losses, status, progress, metrics, downloads, current],
                     api_name="fit", **compute) \
            .success(overlay.after_result, [show_cloud, current], [surface], api_visibility="private")
        # Stop never waits: no queue from the page, and no concurrency limit for API callers.
        stop_button.click(handlers.stop, None, [status], api_name="stop", queue=False)
        compare_inputs = [c_upload, c_example, c_methods, c_preset, c_seed, c_steps]
        compare_button.click(handlers.check_compare, compare_inputs, None, **check) \
            .success(handlers.compare, compare_inputs, [*views, c_table, c_status, legend], api_name="compare",
                     **compute)
        compare_stop.click(handlers.stop_compare, None, [c_status], api_name="stop_compare", queue=False)
        remesh_button.click(handlers.check_extract, [remesh_resolution, current], None, **check) \
            .success(handlers.extract_mesh, [remesh_resolution, current], [surface, downloads, status, current],
                     api_name="extract_mesh", **compute) \
            .success(overlay.after_result, [show_cloud, current], [surface], api_visibility="private")
        show_cloud.input(overlay.surface_view, [show_cloud, current], [surface], api_visibility="private",
                         concurrency_limit=4)
        evaluate_button.click(handlers.evaluate, [gt_upload, current], [metrics], api_name="evaluate",
                              concurrency_limit=2)
        # The same on a checkpoint zip (upload or URL): no session model, so MCP callers can use them.
        remesh_checkpoint_button.click(handlers.remesh_checkpoint, [checkpoint_upload, remesh_resolution],
                                       [surface, downloads, status], api_name="remesh_checkpoint", **compute)
        evaluate_checkpoint_button.click(handlers.evaluate_checkpoint,
                                         [checkpoint_upload, gt_upload, remesh_resolution], [metrics],
                                         api_name="evaluate_checkpoint", **compute)
        list_button.click(handlers.list_checkpoints, [h_author, h_search], [h_table], api_name="list_checkpoints",
                          concurrency_limit=4) \
            .success(handlers.checkpoint_choices, [h_table], [h_pick], api_visibility="private", queue=False)
        h_pick.input(lambda repo: repo, [h_pick], [h_repo], api_visibility="private", queue=False)
        # hfconv: the Hub tab opens with the featured checkpoints; a row click picks one
        featured = FeaturedCheckpoints(lambda author: handlers.list_checkpoints(author, ""))
        demo.load(page_load(featured), None, [h_table, h_pick, h_repo, h_featured], api_visibility="private",
                  queue=False)
        h_table.select(row_repo, [h_table], [h_repo, h_pick], api_visibility="private", queue=False)
        pull_button.click(handlers.check_pull, [h_repo, h_revision, h_resolution], None, **check) \
            .success(handlers.pull_checkpoint, [h_repo, h_revision, h_resolution, h_token, current],
                     [h_view, h_info, h_downloads, h_status, current], api_name="pull_checkpoint", **compute)
        push_inputs = [p_repo, h_token, p_private, p_cloud, current]
        push_button.click(handlers.check_push, push_inputs, None, **check) \
            .success(handlers.push_checkpoint, push_inputs, [commit_url, h_status], api_name="push_checkpoint",
                     concurrency_limit=2)
        advanced = [steps, width, depth, eikonal, area, resolution]
        for trigger in (preset.change, method.change, noise.change):
            trigger(handlers.preset_settings, [preset, method, noise], advanced, api_visibility="private",
                    queue=False)
        method.change(_method_summary, [method], [method_info], api_visibility="private", queue=False)
        c_preset.change(handlers.preset_steps, [c_preset], [c_steps], api_visibility="private", queue=False)
        # The forms start empty (so an API caller's default is "the preset's") and are filled on load.
        demo.load(handlers.preset_settings, [preset, method, noise], advanced, api_visibility="private",
                  queue=False)
        demo.load(handlers.preset_steps, [c_preset], [c_steps], api_visibility="private", queue=False)
        demo.unload(handlers.close_session)
        demo.load(handlers.sweep_sessions, None, None, api_visibility="private", queue=False)
    demo.diffcd_handlers = handlers  # for tests and for app.py's launch
    mcp.prepare_tools(demo)  # hfconv: one-line Args for MCP descriptions; session tools off the MCP list
    return demo


def launch_options(limits: Limits | None = None) -> dict:
    """Keyword arguments for demo.launch(): upload size cap, the page's CSS, the MCP server switch."""
    limits = limits or Limits.from_environment()
    return {"max_file_size": limits.max_upload_bytes, "css": CSS + viewer.EMPTY_TABLE_CSS,
            **mcp.launch_option()}

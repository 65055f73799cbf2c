"""The app: the tabs composed into one page. Each tab lays itself out and binds its events
(diffcd_space.fit_tab, compare_tab, hub_tab); their functions are joined in diffcd_space.handlers."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import jax

from diffcd_hub.cache import prune as prune_hub_cache
from diffcd_space import mcp, runtime, viewer
from diffcd_space.compare_tab import CompareView
from diffcd_space.examples import list_examples
from diffcd_space.fit_tab import FitView
from diffcd_space.handlers import Handlers
from diffcd_space.hub_tab import HubView
from diffcd_space.limits import Limits
from diffcd_space.presets import AppPreset, default_preset_name, library_presets
from diffcd_space.sessions import SessionStore

QUEUE_MAX_SIZE = 64
"""Events held in Gradio's own queue (quick checks waiting for their slot). Compute jobs do not
wait there: they wait in the app's own line (diffcd_space.jobs), bounded by Limits.max_waiting_jobs,
so Stop and status calls are never refused because fits are waiting."""

INTRO = """# DiffCD — fit neural implicit surfaces to point clouds
Fit a signed distance function (SDF) to a point cloud with **DiffCD** (ECCV 2024: a symmetric,
differentiable Chamfer distance between the cloud and the zero level set) or with the methods it is
compared with — **IGR**, **Neural-Pull** and **SIREN** — or reconstruct it in seconds with the classical
**Screened Poisson**. Watch the surface form, compare methods on the same cloud, and share fitted SDFs
through the Hugging Face Hub."""

CSS = """
#fit-status, #compare-status {min-height: 2.5em}
"""


def _handlers(presets: dict[str, AppPreset], *, limits: Limits, session_root, **settings) -> Handlers:
    """The app's event functions, with the session store and its sweeper started."""
    store = SessionStore(session_root, max_age=limits.session_max_age)
    # API-only sessions never load a page; pulled checkpoints must not fill the disk either.
    store.start_sweeper(limits.sweep_seconds,
                        also=lambda: prune_hub_cache(limits.hub_cache_max_bytes, limits.hub_cache_max_age))
    return Handlers(presets=presets, store=store, limits=limits, **settings)


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
    backend_problem = runtime.check_backend()  # a GPU Space on the CPU says so (log + banner)
    presets = dict(presets or library_presets(gpu))
    presets.update(extra_presets or {})
    default_preset = default_preset or default_preset_name(presets, gpu)
    handlers = _handlers(presets, limits=limits or Limits.from_environment(), session_root=session_root,
                         max_points=max_points, hub_endpoint=hub_endpoint, max_fit_seconds=max_fit_seconds)
    limits = handlers.limits
    examples = list_examples()
    default_example = next((e.id for e in examples if e.id == "torus"), examples[0].id if examples else None)
    form = {"presets": presets, "default_preset": default_preset, "examples": examples,
            "default_example": default_example}

    with gr.Blocks(title="DiffCD: neural implicit surfaces", analytics_enabled=False,
                   delete_cache=(int(limits.cache_sweep_seconds), int(limits.cache_max_age))) as demo:
        gr.Markdown(INTRO)
        gr.HTML(runtime.banner_html(backend_problem), visible=bool(backend_problem), elem_id="gpu-banner")
        current = gr.State(None)  # the session's current model (its last fit or pull): see handlers
        with gr.Tabs():
            fit = FitView.layout(handlers, **form)
            compare = CompareView.layout(handlers, **form)
            hub = HubView.layout(gpu=gpu)
        # Bound in the order of the API page: fit, compare, re-mesh and evaluate, the Hub.
        fit.bind(handlers, current=current, demo=demo)
        compare.bind(handlers, demo=demo)
        fit.bind_model_section(handlers, current=current)
        hub.bind(handlers, current=current, demo=demo)
        demo.unload(handlers.close_session)
        demo.load(handlers.sweep_sessions, None, None, api_visibility="private", queue=False)
    demo.diffcd_handlers = handlers  # for tests and for app.py's launch
    mcp.prepare_tools(demo)  # one-line Args for MCP descriptions; session tools off the MCP list
    return demo


def launch_options(limits: Limits | None = None) -> dict:
    """Keyword arguments for demo.launch(): upload size cap, the page's CSS, the MCP server switch."""
    limits = limits or Limits.from_environment()
    return {"max_file_size": limits.max_upload_bytes, "css": CSS + viewer.EMPTY_TABLE_CSS,
            **mcp.launch_option()}

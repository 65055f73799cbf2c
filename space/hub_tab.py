"""The Hub tab: list, pull (and mesh) and push diffcd checkpoints.

`HubTab` holds the events (/list_checkpoints, /pull_checkpoint, /push_checkpoint); `HubView` lays
the tab out and binds them, with the featured checkpoints listed when a page opens.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import gradio as gr
import pandas as pd

from diffcd import DiffCDError
from diffcd_space.context import AppContext
from diffcd_space.errors import catch_all
from diffcd_space.events import CHECK, COMPUTE, INSTANT
from diffcd_space.featured import FeaturedCheckpoints, page_load, row_repo
from diffcd_space.outputs import checkpoint_zip, error_message, mesh_files, number, plain_markdown
from diffcd_space.validation import MAX_RESOLUTION, MIN_RESOLUTION, check_repo_id, check_resolution


def on_space_with_oauth() -> bool:
    """A Space with "Sign in with Hugging Face" (hf_oauth in its README): offer the login button."""
    return bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"))


class HubTab(AppContext):
    """/list_checkpoints, /pull_checkpoint and /push_checkpoint."""

    @catch_all("Cannot list checkpoints")
    def list_checkpoints(self, author: str | None = None, search: str | None = None) -> pd.DataFrame:
        """List published diffcd checkpoints on the Hub, most recently changed first.

        Args:
            author: only this user's or organisation's repos; empty lists everyone's.
            search: only repos whose name contains this text; empty lists all.

        Returns:
            A table: repo id, method, Chamfer and F-score when published, last change.
        """
        from diffcd_hub.discover import list_checkpoints
        from diffcd_hub.errors import HubError

        try:
            # Anonymous: a Space's own HF_TOKEN must never list its owner's private repos.
            found = list_checkpoints(author=(author or "").strip()[:96] or None, token=False,
                                     search=(search or "").strip()[:96] or None, endpoint=self.hub_endpoint,
                                     limits=self.limits.list_limits())
        except HubError as error:
            raise gr.Error(str(error), title="Cannot list checkpoints") from None
        rows = []
        for item in found[:self.limits.max_listing_repos]:
            scores = (item.get("metrics") or {}).get("eval") or {}
            rows.append({
                "repo_id": item["repo_id"],
                "method": item.get("method") or "",
                "chamfer": None if scores.get("chamfer") is None else float(f"{scores['chamfer']:.4g}"),
                "fscore": None if scores.get("fscore") is None else float(f"{scores['fscore']:.4g}"),
                "last_modified": (item.get("last_modified") or "")[:19].replace("T", " "),
            })
        if not rows:
            gr.Info("No published diffcd checkpoints were found.")
        return pd.DataFrame(rows, columns=["repo_id", "method", "chamfer", "fscore", "last_modified"])

    @staticmethod
    def checkpoint_choices(table: pd.DataFrame | None):
        choices = [] if table is None or len(table) == 0 else list(table["repo_id"])
        return gr.Dropdown(choices=choices, value=choices[0] if choices else None)

    @staticmethod
    def check_pull(repo_id, revision, resolution) -> None:
        """The UI's first step before /pull_checkpoint."""
        check_repo_id(repo_id)
        check_resolution(resolution)

    @catch_all("Cannot pull this checkpoint")
    def pull_checkpoint(self, repo_id: str, revision: str | None = None, resolution: int = 128,
                        token: str | None = None, current: dict | None = None,
                        request: gr.Request = None) -> tuple:
        """Download a published diffcd checkpoint from the Hub and mesh it.

        Only config.json, model.safetensors and JSON metadata are loaded (no pickle, no code).

        Args:
            repo_id: "namespace/name" of the checkpoint repo.
            revision: a branch, tag or commit sha; empty means main.
            resolution: marching-cubes grid resolution of the mesh, 16 to 512.
            token: an access token, needed only for private repos.

        Returns:
            The mesh (GLB), a Markdown description (commit, method, settings, published metrics),
            downloads (GLB, PLY, OBJ, the checkpoint zip) and a status line.
        """
        from diffcd_hub._common import method_label
        from diffcd_hub.errors import HubError
        from diffcd_hub.pull import pull_checkpoint

        repo_id = check_repo_id(repo_id)
        resolution = check_resolution(resolution)
        revision = (revision or "").strip() or None
        if revision is not None and len(revision) > 200:
            raise gr.Error("That revision is too long to be a branch, tag or commit sha.")
        token = (token or "").strip() or None
        stopped = self._stop_check(request, "fit")
        with self._job(request, "pull") as job:
            job.wait_quietly()
            budget = job.budget(self.limits.max_request_seconds)
            try:
                # No token typed: anonymous, never the server's own HF_TOKEN or login.
                pulled = pull_checkpoint(repo_id, revision=revision, token=token or False, resolution=None,
                                         endpoint=self.hub_endpoint, limits=self.limits.pull_limits())
            except (HubError, DiffCDError) as error:
                raise gr.Error(error_message(error, token), title="Cannot pull this checkpoint") from None
            budget.check("Pulling this checkpoint")
            mesh = pulled.sdf.extract_mesh(resolution, max_faces=self.limits.max_mesh_faces,
                                           should_stop=lambda: budget.expired() or stopped())
            folder = self.store.fresh_folder(request, "pull")
            for name in ("config.json", "model.safetensors", "README.md", "metrics.json"):
                if (pulled.folder / name).is_file():
                    shutil.copyfile(pulled.folder / name, folder / name)
            label = f"{repo_id.replace('/', '--')}-{pulled.commit_sha[:8]}"
            glb, ply, obj = mesh_files(mesh, folder, "mesh")
            archive = checkpoint_zip(folder, label, ("config.json", "model.safetensors", "metrics.json"))
        config = pulled.config if isinstance(pulled.config, dict) else {}
        network = config.get("network") if isinstance(config.get("network"), dict) else {}
        method = method_label(config.get("method")) if isinstance(config.get("method"), str) else "?"
        # Everything below comes from the pulled repo: shown as inert text, never as links or images.
        lines = [f"**{repo_id}** @ {plain_markdown(pulled.commit_sha[:12])} ({plain_markdown(pulled.revision)})",
                 f"{plain_markdown(method)} · {plain_markdown(network.get('hidden_layers', '?'))}×"
                 f"{plain_markdown(network.get('width', '?'))} network · {plain_markdown(config.get('steps', '?'))} "
                 f"steps · seed {plain_markdown(config.get('seed', '?'))}"]
        metrics = pulled.metrics if isinstance(pulled.metrics, dict) else {}
        scores = metrics.get("eval") if isinstance(metrics.get("eval"), dict) else {}
        if scores:
            lines.append("Published metrics: " + ", ".join(f"{plain_markdown(k)} {plain_markdown(number(v))}"
                                                           for k, v in list(scores.items())[:12]))
        state = {"model_dir": str(folder), "mesh": str(ply), "cloud": None,
                 "gt_mesh": None, "label": label, "units": ""}
        status = f"Pulled {repo_id} and meshed it at {resolution}³: {len(mesh.vertices):,} vertices."
        downloads = [str(glb), str(ply), str(obj), str(archive)]
        return str(glb), "\n\n".join(lines), downloads, status, state

    def check_push(self, repo_id, token, private, include_cloud, current,
                   oauth_token: gr.OAuthToken | None = None) -> None:
        """The UI's first step before /push_checkpoint (the token is only checked for presence)."""
        self._push_inputs(repo_id, token, include_cloud, current, oauth_token)

    def push_availability(self, current: dict | None) -> tuple:
        """The push button and its note for the session's current model: a run without a network
        (Screened Poisson) has nothing to push, and the note says so (network_absent_reason)."""
        reason = self._network_absent(current)
        return gr.Button(interactive=reason is None), reason or ""

    def _push_inputs(self, repo_id, token, include_cloud, current, oauth_token):
        current = self._current(current)
        self._require_network(current)
        repo_id = check_repo_id(repo_id)
        secret = (token or "").strip() or (oauth_token.token if oauth_token is not None else None)
        if not secret:
            raise gr.Error("Pushing needs a Hugging Face access token with write access: paste one "
                           "(huggingface.co/settings/tokens) or sign in.", title="Missing token")
        cloud = current.get("cloud") if include_cloud else None
        if include_cloud and not (cloud and Path(cloud).is_file()):
            raise gr.Error("This model has no input cloud to include (it was pulled from the Hub); "
                           "untick 'include the input cloud'.")
        return current, repo_id, secret, cloud

    @catch_all("Push failed")
    def push_checkpoint(self, repo_id: str, token: str | None = None, private: bool = False,
                        include_cloud: bool = False, current: dict | None = None,
                        oauth_token: gr.OAuthToken | None = None,
                        request: gr.Request = None) -> tuple[str, str]:
        """Publish this session's current model (its last fit or pull) to a Hub repo of yours.

        A Screened Poisson run has no network and is refused with a sentence that says so.

        The commit holds model.safetensors and config.json as exported, a model card, mesh.glb,
        metrics.json when there are metrics and, on request, a subsample of the input cloud. The
        token is used for this one request only: it is never stored or logged.

        Args:
            repo_id: "namespace/name" of your repo (created if missing).
            token: a Hugging Face access token with write access (or sign in on a Space).
            private: create the repo private (an existing repo keeps its visibility).
            include_cloud: also publish a subsample (at most 20,000 points) of the input cloud.

        Returns:
            The commit URL and a status line with the commit sha.
        """
        from diffcd_hub.errors import HubError
        from diffcd_hub.push import push_checkpoint

        current, repo_id, secret, cloud = self._push_inputs(repo_id, token, include_cloud, current, oauth_token)
        try:
            result = push_checkpoint(self._model_folder(current, request), repo_id, token=secret,
                                     private=bool(private), include_cloud=cloud or False, endpoint=self.hub_endpoint)
        except (HubError, DiffCDError) as error:
            raise gr.Error(error_message(error, secret), title="Push failed") from None
        status = (f"Pushed **{current['label']}** to {repo_id} ({result.repo_url}) as commit "
                  f"`{result.commit_sha[:12]}` ({', '.join(result.files)}).")
        return result.commit_url, status


@dataclasses.dataclass(frozen=True)
class HubView:
    """The Hub tab: list and pull on the left, then push; the pulled surface on the right."""

    author: gr.Textbox
    search: gr.Textbox
    list_button: gr.Button
    table: gr.Dataframe
    featured_note: gr.Markdown
    pick: gr.Dropdown
    repo: gr.Textbox
    revision: gr.Textbox
    resolution: gr.Slider
    pull_button: gr.Button
    push_repo: gr.Textbox
    token: gr.Textbox
    private: gr.Checkbox
    include_cloud: gr.Checkbox
    push_button: gr.Button
    push_note: gr.Markdown
    """Why pushing is off (the current model is a run without a network), else empty."""
    commit_url: gr.Textbox
    status: gr.Markdown
    view: gr.Model3D
    info: gr.Markdown
    downloads: gr.File

    @classmethod
    def layout(cls, *, gpu: bool) -> HubView:
        with gr.Tab("Hub", id="hub"):
            with gr.Row():
                with gr.Column(scale=1, min_width=340):
                    gr.Markdown("### Pull a published checkpoint")
                    with gr.Row():
                        author = gr.Textbox(label="Author (optional)", scale=1)
                        search = gr.Textbox(label="Search (optional)", scale=1)
                    list_button = gr.Button("List published diffcd checkpoints")
                    table = gr.Dataframe(label="Published checkpoints", interactive=False, elem_id="hub-checkpoints")
                    featured_note = gr.Markdown("", elem_id="hub-featured-note")
                    pick = gr.Dropdown([], label="Pick one", elem_id="hub-pick")
                    repo = gr.Textbox(label="Repo id", placeholder="namespace/name", elem_id="hub-repo")
                    with gr.Row():
                        revision = gr.Textbox(label="Revision (branch, tag or sha; empty: main)")
                        resolution = gr.Slider(MIN_RESOLUTION, MAX_RESOLUTION, value=256 if gpu else 128, step=8,
                                               label="Mesh resolution")
                    pull_button = gr.Button("Pull and mesh", variant="primary", elem_id="hub-pull")
                    gr.Markdown("### Push the current model (your last fit or pull)")
                    push_repo = gr.Textbox(label="Your repo id", placeholder="your-name/torus-diffcd",
                                           elem_id="hub-push-repo")
                    token = gr.Textbox(label="Access token (write access for pushing; never stored)", type="password",
                                       placeholder="hf_…", elem_id="hub-token")
                    if on_space_with_oauth():
                        gr.LoginButton()
                    with gr.Row():
                        private = gr.Checkbox(False, label="Private repo")
                        include_cloud = gr.Checkbox(False, label="Include the input cloud (≤ 20k points)")
                    push_button = gr.Button("Push", elem_id="hub-push")
                    push_note = gr.Markdown("", elem_id="hub-push-note")
                    commit_url = gr.Textbox(label="Commit URL", interactive=False, elem_id="hub-commit-url")
                with gr.Column(scale=2):
                    status = gr.Markdown("", elem_id="hub-status")
                    view = gr.Model3D(label="Pulled surface", height=420, interactive=False, elem_id="hub-view")
                    info = gr.Markdown("")
                    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
        return cls(author, search, list_button, table, featured_note, pick, repo, revision, resolution, pull_button,
                   push_repo, token, private, include_cloud, push_button, push_note, commit_url, status, view, info,
                   downloads)

    def bind(self, events: HubTab, *, current: gr.State, demo: gr.Blocks) -> None:
        """/list_checkpoints, /pull_checkpoint and /push_checkpoint; picking a listed repo (from the
        dropdown or a row of the table) fills in the repo id; the featured list when a page opens; Push
        is off, with the reason, while the current model is a run without a network."""
        self.list_button.click(events.list_checkpoints, [self.author, self.search], [self.table],
                               api_name="list_checkpoints", concurrency_limit=4) \
            .success(events.checkpoint_choices, [self.table], [self.pick], **INSTANT)
        self.pick.input(lambda repo: repo, [self.pick], [self.repo], **INSTANT)
        featured = FeaturedCheckpoints(lambda author: events.list_checkpoints(author, ""))
        demo.load(page_load(featured), None, [self.table, self.pick, self.repo, self.featured_note], **INSTANT)
        self.table.select(row_repo, [self.table], [self.repo, self.pick], **INSTANT)
        self.pull_button.click(events.check_pull, [self.repo, self.revision, self.resolution], None, **CHECK) \
            .success(events.pull_checkpoint, [self.repo, self.revision, self.resolution, self.token, current],
                     [self.view, self.info, self.downloads, self.status, current], api_name="pull_checkpoint",
                     **COMPUTE)
        push_inputs = [self.push_repo, self.token, self.private, self.include_cloud, current]
        current.change(events.push_availability, [current], [self.push_button, self.push_note], **INSTANT)
        self.push_button.click(events.check_push, push_inputs, None, **CHECK) \
            .success(events.push_checkpoint, push_inputs, [self.commit_url, self.status],
                     api_name="push_checkpoint", concurrency_limit=2)

"""`SDFModel`: a fitted SDF with the Hub's own model convention (huggingface_hub.ModelHubMixin).

    from diffcd_hub import SDFModel
    sdf = SDFModel.from_pretrained("user/bunny-diffcd", revision="v1")
    mesh = sdf.extract_mesh(256)
    sdf.save_pretrained("bunny")            # config.json + model.safetensors + README.md
    sdf.push_to_hub("user/bunny-copy")      # the same files, one commit

It is a ``diffcd.FittedSDF`` (evaluate, mesh, export as usual). ``save_pretrained`` writes exactly
``diffcd.export_sdf``'s export (no second format, no pickle) plus the model card that `hub push`
writes; ``from_pretrained`` goes through the same bounded, access-checked download as
``diffcd_hub.pull_checkpoint`` and the same validation as ``diffcd.load_sdf``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from diffcd.export import export_config, export_sdf, read_config
from diffcd.networks import parameter_count
from diffcd.sdf import FittedSDF

from diffcd_hub._common import CARD_FILE, CONFIG_FILE, LIBRARY_NAME, WEIGHTS_FILE, repo_name, resolve_endpoint, resolve_token
from diffcd_hub.card import BASE_TAGS, LICENSE, PAPER_URL, build_model_card
from diffcd_hub.errors import request_scope, translate
from diffcd_hub.limits import DEFAULT_PULL_LIMITS, PullLimits
from diffcd_hub.pull import download_checkpoint, load_folder
from diffcd_hub.push import open_repo

__all__ = ["SDFModel", "load_sdf"]


class SDFModel(FittedSDF, ModelHubMixin, library_name=LIBRARY_NAME, license=LICENSE, tags=list(BASE_TAGS),
               paper_url=PAPER_URL):
    """A ``FittedSDF`` that loads from and saves to the Hub like any other Hub model."""

    @classmethod
    def from_fitted(cls, fitted: FittedSDF, *, metadata: dict[str, Any] | None = None) -> "SDFModel":
        """The same fitted SDF as an SDFModel (`metadata` is kept in config.json on save)."""
        model = cls(**{f.name: getattr(fitted, f.name) for f in dataclasses.fields(FittedSDF)})
        object.__setattr__(model, "_export_metadata", dict(metadata or getattr(fitted, "metadata", {}) or {}))
        return model

    @property
    def metadata(self) -> dict[str, Any]:
        """The export's free-form metadata (cloud name, points, run summary...), saved in config.json."""
        return dict(self.__dict__.get("_export_metadata") or {})

    # ------------------------------------------------------------------------------ saving
    def _save_pretrained(self, save_directory: Path) -> None:
        """config.json and model.safetensors, exactly as diffcd.export_sdf writes them."""
        export_sdf(self, save_directory, metadata=self.metadata)

    def generate_model_card(self, repo_id: str | None = None, *, metrics: dict[str, dict] | None = None,
                            summary: dict[str, Any] | None = None, files: list[str] | None = None,
                            cloud_points: int | None = None, **_: Any):
        """The model card `hub push` writes (huggingface_hub.ModelCard), for this model."""
        return build_model_card(repo_id, export_config(self, self.metadata), metrics=metrics, summary=summary,
                                files=files or [CARD_FILE, CONFIG_FILE, WEIGHTS_FILE],
                                parameters=parameter_count(self.params), cloud_points=cloud_points)

    @request_scope
    def push_to_hub(self, repo_id: str, *, config: Any = None, commit_message: str = "Upload diffcd SDF",
                    private: bool | None = None, token: str | None = None, branch: str | None = None,
                    create_pr: bool | None = None, allow_patterns: list[str] | str | None = None,
                    ignore_patterns: list[str] | str | None = None, delete_patterns: list[str] | str | None = None,
                    model_card_kwargs: dict[str, Any] | None = None, endpoint: str | None = None) -> str:
        """Save and upload config.json, model.safetensors and README.md as one commit; the commit URL.

        Like ModelHubMixin.push_to_hub, plus `endpoint` (default HF_ENDPOINT) and the checks of
        `hub push`: a token is required, `private=True` on an existing public repo is refused
        (nothing is committed), every failure is a HubError sentence.
        """
        import tempfile

        repo_name(repo_id)
        endpoint = resolve_endpoint(endpoint)
        token = resolve_token(token)
        api, _ = open_repo(repo_id, token=token, private=bool(private), endpoint=endpoint, branch=branch)
        kwargs = {"repo_id": repo_id, **(model_card_kwargs or {})}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                self.save_pretrained(Path(tmp), model_card_kwargs=kwargs)
                info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                         revision=branch, create_pr=create_pr, allow_patterns=allow_patterns,
                                         ignore_patterns=ignore_patterns, delete_patterns=delete_patterns)
        except Exception as exc:
            raise translate(exc, repo_id, action="pushing to", revision=branch or "main", token_given=True,
                            endpoint=endpoint) from None
        return str(info)

    # ------------------------------------------------------------------------------ loading
    @classmethod
    @request_scope
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        endpoint: str | None = None, limits: PullLimits = DEFAULT_PULL_LIMITS,
                        **model_kwargs: Any) -> "SDFModel":
        """Load a published checkpoint (a repo id, with a branch, tag or commit as `revision`) or a
        local export folder.

        Overrides ModelHubMixin.from_pretrained (same arguments, plus `endpoint` and `limits`) so
        that config.json is never parsed before its size and nesting are checked, no file is
        downloaded before its size is, and a private repo is never served from a shared cache to a
        token the Hub did not accept (see ``diffcd_hub.pull``).

        Raises:
          HubError: the same sentences as ``diffcd_hub.pull_checkpoint`` (unknown repo or revision, private
            repo without access, not a diffcd checkpoint, a limit exceeded).
        """
        if model_kwargs:
            raise TypeError(f"SDFModel.from_pretrained got unexpected arguments {sorted(model_kwargs)}.")
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, endpoint=endpoint,
                                    limits=limits)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | os.PathLike | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         endpoint: str | None = None, limits: PullLimits = DEFAULT_PULL_LIMITS) -> "SDFModel":
        if os.path.isdir(model_id):
            folder, label = Path(model_id), model_id
        else:
            folder = download_checkpoint(model_id, revision=revision, token=token, endpoint=endpoint,
                                         limits=limits, cache_dir=cache_dir, force_download=force_download,
                                         local_files_only=local_files_only)
            label = f"{model_id}@{folder.name[:12]}"
        fitted = load_folder(folder, label, limits)
        metadata = read_config(folder / CONFIG_FILE, limits.network, name=label).get("metadata") or {}
        return cls.from_fitted(fitted, metadata=metadata)


@request_scope
def load_sdf(repo_id: str, revision: str | None = None, token: str | bool | None = None, *,
             endpoint: str | None = None, limits: PullLimits = DEFAULT_PULL_LIMITS):
    """The FittedSDF published at `repo_id` (a branch, tag or commit sha as `revision`).

    A thin call to ``diffcd_hub.SDFModel.from_pretrained`` (the Hub's own model convention):

        from diffcd_hub import load_sdf
        sdf = load_sdf("user/bunny-diffcd")
        mesh = sdf.extract_mesh(256)
    """
    return SDFModel.from_pretrained(repo_id, revision=revision, token=token, endpoint=endpoint, limits=limits)

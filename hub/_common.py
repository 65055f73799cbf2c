"""What push, pull and discover share: the endpoint, the token, the file names of a Hub checkpoint."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from diffcd.methods import METHODS

from diffcd_hub.errors import HubError, remember_secret

LIBRARY_NAME = "diffcd"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
MESH_FILE = "mesh.glb"
CLOUD_FILE = "cloud.npy"
PULLED_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE, MESH_FILE)
"""The only files a pull may download (mesh.glb only when the published mesh is asked for); of
these only the JSON files and the safetensors are loaded."""



def method_label(method: str) -> str:
    """A method's display name from the library's registry (DiffCD, IGR, ...), else the name."""
    spec = METHODS.get(method)
    return spec.title if spec else method


def resolve_endpoint(endpoint: str | None = None) -> str:
    """`endpoint`, else HF_ENDPOINT as set now, else huggingface_hub's default.

    Also turns Xet uploads off for any endpoint other than huggingface.co: a self-hosted or local
    Hub (like tools.hubserver) speaks classic LFS only, and huggingface_hub would otherwise pick Xet
    whenever the hf_xet package is installed.
    """
    from huggingface_hub import constants

    url = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    host = urlsplit(url).hostname or ""
    if not (host == "huggingface.co" or host.endswith(".huggingface.co")):
        constants.HF_HUB_DISABLE_XET = True
    return url


def resolve_token(token: str | bool | None = None) -> str | bool | None:
    """The token argument, else HF_TOKEN, else the huggingface_hub login; None if there is none.

    `False` means anonymous: no token is looked up or sent (a server that holds its own HF_TOKEN,
    such as a Space, passes it so that its visitors never act with the owner's credentials).
    """
    from huggingface_hub import get_token

    if token is False:
        return False
    if token is not None and not isinstance(token, str):
        raise HubError("The token must be a string.")
    token = (token or "").strip() or get_token()
    remember_secret(token)
    return token


def repo_name(repo_id: str) -> str:
    """Check the shape of a repo id ("namespace/name") and return it."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(parts):
        raise HubError(f"{repo_id!r} is not a repo id: use the form namespace/name, e.g. user/bunny-diffcd.")
    return repo_id

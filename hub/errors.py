"""Errors of the Hub helpers, and the translation of huggingface_hub's exceptions into them.

Every message names the repo and says what to do. No message ever contains an access token:
`HubError` scrubs HF_TOKEN and every token of the request being served (see `secret_scope`).
A request's token is held only while that request runs: nothing keeps it afterwards.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from contextvars import ContextVar

from diffcd.errors import DiffCDError, LimitError

__all__ = [
    "HubError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "AuthError",
    "NotACheckpointError",
    "UploadError",
    "LimitExceededError",
    "VisibilityError",
    "remember_secret",
    "secret_scope",
    "request_scope",
    "scrub",
    "translate",
]

_REQUEST_SECRETS: ContextVar[tuple[str, ...] | None] = ContextVar("hub_request_secrets", default=None)
TOKEN_HINT = "set HF_TOKEN or pass --token"


@contextmanager
def secret_scope(*tokens: str | None):
    """While the block runs (one request), `tokens` and any `remember_secret` are scrubbed from
    every HubError; when it ends they are forgotten."""
    held = list(_REQUEST_SECRETS.get() or ()) + [t for t in tokens if isinstance(t, str) and len(t) >= 4]
    reset = _REQUEST_SECRETS.set(held)  # a list: remember_secret adds to this request's only
    try:
        yield
    finally:
        _REQUEST_SECRETS.reset(reset)


def request_scope(function):
    """Run `function` in its own `secret_scope` (the public entry points of hub/ use it)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with secret_scope():
            return function(*args, **kwargs)

    return wrapper


def remember_secret(value: str | None) -> None:
    """Scrub this token from messages for the rest of the current request (`secret_scope`); outside
    a request scope nothing is kept (a token never outlives its request)."""
    held = _REQUEST_SECRETS.get()
    if held is not None and value and len(value) >= 4:
        held.append(value)


def _known_secrets() -> set[str]:
    found = set(_REQUEST_SECRETS.get() or ())
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if len(os.environ.get(name) or "") >= 4:
            found.add(os.environ[name])
    return found


def scrub(text: str) -> str:
    """`text` with every known token replaced by ***."""
    for secret in sorted(_known_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class HubError(DiffCDError):
    """A Hub operation failed. ``str(e)`` names the repo, the problem and what to do."""

    def __init__(self, message: str, *, repo_id: str | None = None):
        super().__init__(scrub(message))
        self.repo_id = repo_id


class RepoNotFoundError(HubError):
    """The repo does not exist, or it is private and the token cannot see it."""


class RevisionNotFoundError(HubError):
    """The repo exists but the branch, tag or commit does not."""


class AuthError(HubError):
    """No token where one is needed, or the Hub refused the token."""


class NotACheckpointError(HubError):
    """The repo's files are not a loadable diffcd checkpoint."""


class UploadError(HubError):
    """The Hub failed during a push; the remote repo was left as it was."""


class LimitExceededError(HubError, LimitError):
    """A repo's file, a pull's total or its network exceeds a bound; nothing too big was fetched."""


class VisibilityError(HubError):
    """A push asked for a private repo, but the existing repo is public (nothing was committed)."""


def translate(exc: BaseException, repo_id: str, *, action: str, revision: str | None = None,
              token_given: bool = False, endpoint: str | None = None) -> HubError:
    """A `HubError` for an exception raised by huggingface_hub (or httpx) while doing `action`."""
    from huggingface_hub import errors as hf

    if isinstance(exc, HubError):
        return exc
    cause = exc.__cause__
    if isinstance(exc, (RuntimeError, ValueError)) and not isinstance(exc, hf.HfHubHTTPError) \
            and isinstance(cause, Exception):
        # huggingface_hub wraps failed LFS uploads and forced downloads around the real error
        return translate(cause, repo_id, action=action, revision=revision, token_given=token_given,
                         endpoint=endpoint)
    where = f" on {endpoint}" if endpoint else ""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    server_message = response.headers.get("X-Error-Message", "") if response is not None else ""
    text = str(exc)
    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFoundError(
            f"Revision {revision!r} does not exist in {repo_id}{where}: pass an existing branch, tag or "
            "commit sha (see `python -m diffcd_hub list`).", repo_id=repo_id)
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return NotACheckpointError(
            f"{repo_id} is not a diffcd checkpoint: it has no config.json and model.safetensors.",
            repo_id=repo_id)
    if status == 401 and "Invalid credentials" in server_message + text:
        return AuthError(f"The Hub{where} refused the access token while {action} {repo_id}: the token "
                         f"is wrong or expired; {TOKEN_HINT} with a valid one.", repo_id=repo_id)
    if isinstance(exc, hf.RepositoryNotFoundError):
        if token_given:
            return RepoNotFoundError(f"Repository {repo_id} was not found{where}, or your token has no "
                                     "access to it: check the name and the token.", repo_id=repo_id)
        return RepoNotFoundError(f"Repository {repo_id} was not found{where}, or it is private: check the "
                                 f"name, and if it is private {TOKEN_HINT}.", repo_id=repo_id)
    if status == 403:
        return AuthError(f"The Hub{where} refused to let this token write to {repo_id} (403 Forbidden): "
                         f"use a token with write access to that namespace; {TOKEN_HINT}.", repo_id=repo_id)
    if isinstance(exc, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        return HubError(f"{repo_id} is not in the local cache and the Hub{where} cannot be reached (offline "
                        "mode or no connection): check the connection and HF_ENDPOINT, or unset HF_HUB_OFFLINE, "
                        "and pull it once while online.", repo_id=repo_id)
    if isinstance(exc, hf.HfHubHTTPError):
        pushing = action.startswith("pushing")
        cls = UploadError if pushing else HubError
        unchanged = "; nothing was committed" if pushing else ""
        if status is not None and 400 <= status < 500:
            reason = server_message or "the request was refused"
            return cls(f"The Hub{where} refused {action} {repo_id} (HTTP {status}: {reason}){unchanged}.",
                       repo_id=repo_id)
        return cls(f"The Hub{where} failed while {action} {repo_id} (HTTP {status}){unchanged}: try again "
                   "later.", repo_id=repo_id)
    if is_unreachable(exc):
        return HubError(f"Cannot reach the Hub{where} while {action} {repo_id} ({type(exc).__name__}): "
                        "check the connection and HF_ENDPOINT.", repo_id=repo_id)
    return HubError(f"Failed while {action} {repo_id}: {type(exc).__name__}: {text}", repo_id=repo_id)


def is_unreachable(exc: BaseException) -> bool:
    """The Hub could not be reached (transport or connection error), as opposed to a refusal."""
    return type(exc).__module__.startswith(("httpx", "httpcore")) or isinstance(exc, (ConnectionError, OSError))

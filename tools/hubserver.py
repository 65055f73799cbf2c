"""A small loopback server that speaks the Hugging Face Hub's HTTP API.

It implements the part of the API that `huggingface_hub` 2.4 calls for creating repos, committing
files (regular and classic LFS uploads), listing and downloading them, refs, branches, tags,
`list_models` and `whoami`. It exists so that `hub/` can be tested, and tried by a user, with no
access to huggingface.co: point `HF_ENDPOINT` (or `endpoint=`) at it and set `HF_HUB_DISABLE_XET=1`.
It is a development tool: nothing under diffcd/, hub/ or space/ imports it.

Storage is git-like and content-addressed: blobs are stored by sha256; a commit holds the full file
map ``{path: (sha256, size, is_lfs, git_oid)}`` and its parent; branches and tags point at
40-hex commit shas. Everything lives in memory, or in a directory when one is given (persistent).

    with HubServer(tokens={"hf_dev": "user"}) as server:
        api = HfApi(endpoint=server.url, token="hf_dev")

Command line: ``python -m tools.hubserver [--port 8090] [--data DIR] [--token TOKEN]
[--user NAME] [--seed-examples RUNS_DIR --seed-namespace NAME]``. Without ``--token`` it accepts
``DEFAULT_TOKEN`` (``hf_local``); it never prints a token.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

__all__ = ["HubServer", "DEFAULT_TOKEN", "main"]

DEFAULT_TOKEN = "hf_local"
"""The token the command-line server accepts when no --token is given (for user DEFAULT_USER)."""
DEFAULT_USER = "user"
REPO_TYPES = ("model", "dataset", "space")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores anything this big (or binary) with LFS
TREE_PAGE_SIZE = 1000
COMMITS_PAGE_SIZE = 50
MODELS_PAGE_SIZE = 1000
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

DEFAULT_GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.glb filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""


# --------------------------------------------------------------------------------------- helpers


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _front_matter(text: str) -> dict | None:
    """The YAML block at the top of a README, or None when there is none. Raises yaml.YAMLError."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise yaml.YAMLError("the metadata block must be a mapping")
    return data


def _looks_binary(sample: bytes) -> bool:
    """Whether the first bytes of a file are not UTF-8 text (a cut multi-byte character is fine)."""
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(sample) - 3 or exc.reason != "unexpected end of data"
    return False


class HttpError(Exception):
    """An error answer: status, message and, for the client's typed exceptions, an X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}


def _repo_not_found(user: str | None) -> HttpError:
    # Like the Hub: a private repo is indistinguishable from a missing one; 401 when anonymous.
    status = 401 if user is None else 404
    return HttpError(status, "Repository not found", "RepoNotFound")


# --------------------------------------------------------------------------------------- storage


@dataclass
class FileEntry:
    sha256: str
    size: int
    lfs: bool
    oid: str  # git oid: sha1 of the blob, or of the LFS pointer file

    def to_json(self) -> list:
        return [self.sha256, self.size, self.lfs, self.oid]

    @classmethod
    def from_json(cls, row: list) -> "FileEntry":
        return cls(*row)


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, FileEntry]

    def to_json(self) -> dict:
        return {
            "sha": self.sha, "parent": self.parent, "title": self.title, "message": self.message,
            "author": self.author, "date": self.date,
            "files": {path: entry.to_json() for path, entry in self.files.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "Commit":
        files = {path: FileEntry.from_json(row) for path, row in data["files"].items()}
        return cls(**{**data, "files": files})


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.id.split("/")[0]

    def to_json(self) -> dict:
        return {
            "type": self.type, "id": self.id, "private": self.private, "created_at": self.created_at,
            "branches": self.branches, "tags": self.tags,
            "commits": {sha: commit.to_json() for sha, commit in self.commits.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "Repo":
        commits = {sha: Commit.from_json(c) for sha, c in data["commits"].items()}
        return cls(**{**data, "commits": commits})

    def resolve(self, revision: str) -> Commit:
        """A branch, a tag or a full commit sha of this repo; RevisionNotFound otherwise."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and _HEX40.match(revision) and revision in self.commits:
            sha = revision
        if sha is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[sha]

    def history(self, head: Commit) -> list[Commit]:
        out, commit = [], head
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


class BlobStore:
    """Content-addressed bytes, by sha256: in a dict, or as files under a directory."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._memory: dict[str, bytes] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        assert self.directory is not None
        return self.directory / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if self.directory is None:
            self._memory[sha256] = data
        elif not self._path(sha256).exists():
            path = self._path(sha256)
            path.parent.mkdir(exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        return sha256

    def has(self, sha256: str) -> bool:
        if self.directory is None:
            return sha256 in self._memory
        return self._path(sha256).exists()

    def get(self, sha256: str) -> bytes:
        if self.directory is None:
            return self._memory[sha256]
        return self._path(sha256).read_bytes()

    def size(self, sha256: str) -> int:
        if self.directory is None:
            return len(self._memory[sha256])
        return self._path(sha256).stat().st_size


class HubState:
    """Repos and blobs, behind one lock; saved to `directory/state.json` after every change."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else None
        self.lock = threading.RLock()
        self.blobs = BlobStore(self.directory / "blobs" if self.directory else None)
        self.repos: dict[str, Repo] = {}
        if self.directory is not None and (self.directory / "state.json").exists():
            data = json.loads((self.directory / "state.json").read_text())
            self.repos = {key: Repo.from_json(repo) for key, repo in data["repos"].items()}

    @staticmethod
    def key(repo_type: str, repo_id: str) -> str:
        return f"{repo_type}s/{repo_id}"

    def save(self) -> None:
        if self.directory is None:
            return
        payload = json.dumps({"repos": {k: r.to_json() for k, r in self.repos.items()}})
        tmp = self.directory / "state.json.tmp"
        tmp.write_text(payload)
        os.replace(tmp, self.directory / "state.json")

    def new_commit(self, repo: Repo, parent: Commit | None, files: dict[str, FileEntry],
                   title: str, message: str, author: str) -> Commit:
        date = _now()
        digest_input = json.dumps({
            "parent": parent.sha if parent else None, "title": title, "message": message, "date": date,
            "files": {p: e.to_json() for p, e in sorted(files.items())}, "nonce": secrets.token_hex(8),
        }).encode()
        sha = hashlib.sha1(digest_input).hexdigest()
        commit = Commit(sha, parent.sha if parent else None, title, message, author, date, files)
        repo.commits[sha] = commit
        return commit

    def add_file(self, data: bytes, lfs: bool) -> FileEntry:
        sha256 = self.blobs.put(data)
        oid = _git_blob_oid(_lfs_pointer(sha256, len(data)) if lfs else data)
        return FileEntry(sha256, len(data), lfs, oid)


# --------------------------------------------------------------------------------------- the API


@dataclass
class Request:
    method: str
    path: str  # raw, percent-encoded
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    user: str | None
    base_url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HttpError(400, f"Invalid JSON body: {exc}") from None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name) or self.query.get(name + "[]")
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict | None = None) -> "Response":
        return cls(status, json.dumps(data).encode(), dict(headers or {}))


class HubApp:
    """The routing and the semantics of each endpoint, independent of the HTTP server."""

    def __init__(self, state: HubState, tokens: dict[str, str], orgs: dict[str, list[str]]):
        self.state = state
        self.tokens = dict(tokens)
        self.orgs = {org: list(members) for org, members in orgs.items()}
        self.tree_page_size = TREE_PAGE_SIZE
        self.commits_page_size = COMMITS_PAGE_SIZE
        self.models_page_size = MODELS_PAGE_SIZE
        self._uploads: dict[str, tuple[str, int]] = {}  # LFS upload ticket -> (sha256, size)
        self._failures: dict[str, list[int]] = {}
        self._fail_lock = threading.Lock()
        self.request_log: list[dict] = []

    # ----- auth

    def user_for(self, headers) -> str | None:
        auth = headers.get("Authorization") or ""
        if not auth:
            return None
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else auth.strip()
        user = self.tokens.get(token)
        if user is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return user

    def _namespaces(self, user: str | None) -> set[str]:
        if user is None:
            return set()
        return {user} | {org for org, members in self.orgs.items() if user in members}

    def _repo(self, req: Request, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        repo = self.state.repos.get(HubState.key(repo_type, repo_id))
        allowed = self._namespaces(req.user)
        if repo is None or (repo.private and repo.namespace not in allowed):
            raise _repo_not_found(req.user)
        if write and repo.namespace not in allowed:
            if req.user is None:
                raise HttpError(401, "You must be authenticated to write to this repo")
            raise HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # ----- fault injection

    def fail_next(self, endpoint: str, status: int = 500, times: int = 1) -> None:
        with self._fail_lock:
            self._failures.setdefault(endpoint, []).extend([status] * times)

    def _injected_failure(self, endpoint: str) -> int | None:
        with self._fail_lock:
            pending = self._failures.get(endpoint)
            return pending.pop(0) if pending else None

    # ----- routing

    def handle(self, req: Request) -> Response:
        endpoint = "unknown"
        try:
            endpoint, handler, args = self._route(req)
            status = self._injected_failure(endpoint)
            if status is not None:
                raise HttpError(status, f"Injected failure of the {endpoint} endpoint")
            req.user = self.user_for(req.headers)
            with self.state.lock:
                response = handler(req, *args)
        except HttpError as err:
            body = {"error": err.message, **err.extra}
            headers = {"X-Error-Message": err.message.encode("ascii", "replace").decode()}
            if err.code:
                headers["X-Error-Code"] = err.code
            response = Response.json(body, err.status, headers)
        self.request_log.append({"method": req.method, "path": req.path, "endpoint": endpoint,
                                 "status": response.status})
        return response

    def _route(self, req: Request):
        parts = [unquote(p) for p in req.path.split("/")[1:]]
        m = req.method
        if parts[:1] == ["api"]:
            rest = parts[1:]
            if rest == ["whoami-v2"] and m == "GET":
                return "whoami", self.whoami, ()
            if rest == ["validate-yaml"] and m == "POST":
                return "validate_yaml", self.validate_yaml, ()
            if rest == ["repos", "create"] and m == "POST":
                return "create_repo", self.create_repo, ()
            if rest == ["repos", "delete"] and m == "DELETE":
                return "delete_repo", self.delete_repo, ()
            if len(rest) == 1 and rest[0] in ("models", "datasets", "spaces") and m == "GET":
                return "list_models", self.list_repos, (rest[0][:-1],)
            if len(rest) >= 3 and rest[0] in ("models", "datasets", "spaces"):
                repo_type, repo_id, tail = rest[0][:-1], f"{rest[1]}/{rest[2]}", rest[3:]
                args = (repo_type, repo_id)
                if not tail and m == "GET":
                    return "model_info", self.repo_info, (*args, None)
                action, more = tail[0], tail[1:]
                routes = {
                    ("revision", "GET"): ("model_info", self.repo_info),
                    ("tree", "GET"): ("tree", self.tree),
                    ("commits", "GET"): ("commits", self.commits),
                    ("branch", "POST"): ("branch", self.create_branch),
                    ("branch", "DELETE"): ("branch", self.delete_branch),
                    ("tag", "POST"): ("tag", self.create_tag),
                    ("tag", "DELETE"): ("tag", self.delete_tag),
                    ("preupload", "POST"): ("preupload", self.preupload),
                    ("commit", "POST"): ("commit", self.commit),
                    ("paths-info", "POST"): ("paths_info", self.paths_info),
                }
                if action == "refs" and m == "GET" and not more:
                    return "refs", self.refs, args
                if action == "settings" and m == "PUT" and not more:
                    return "settings", self.update_settings, args
                if (action, m) in routes and more:
                    name, handler = routes[(action, m)]
                    if action == "tree":
                        return name, handler, (*args, more[0], "/".join(more[1:]))
                    return name, handler, (*args, "/".join(more))
        elif parts[:1] == ["_lfs"] and len(parts) == 3:
            if parts[1] == "upload" and m == "PUT":
                return "lfs_upload", self.lfs_upload, (parts[2],)
            if parts[1] == "verify" and m == "POST":
                return "lfs_verify", self.lfs_verify, (parts[2],)
        else:
            repo_type = "model"
            if parts and parts[0] in ("datasets", "spaces"):
                repo_type, parts = parts[0][:-1], parts[1:]
            if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
                return "lfs_batch", self.lfs_batch, (repo_type, f"{parts[0]}/{parts[1][:-4]}")
            if len(parts) >= 5 and parts[2] == "resolve" and m in ("GET", "HEAD"):
                return "resolve", self.resolve, (repo_type, f"{parts[0]}/{parts[1]}", parts[3],
                                                 "/".join(parts[4:]))
            if len(parts) >= 2 and m == "GET":
                return "page", self.page, (repo_type, f"{parts[0]}/{parts[1]}")
        raise HttpError(404, f"No such endpoint: {req.method} {req.path}")

    # ----- users and repos

    def whoami(self, req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, "You must be authenticated to call whoami")
        orgs = sorted(self._namespaces(req.user) - {req.user})
        return Response.json({
            "type": "user", "id": req.user, "name": req.user, "fullname": req.user, "email": None,
            "emailVerified": False, "isPro": False, "orgs": [{"type": "org", "name": o} for o in orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "hubserver", "role": "write"}},
        })

    def validate_yaml(self, req: Request) -> Response:
        content = req.json().get("content", "")
        try:
            _front_matter(content)
        except yaml.YAMLError as exc:
            message = f"Invalid YAML in README.md metadata: {exc}".replace("\n", " ")
            return Response.json({"errors": [{"message": message}], "warnings": []}, 400)
        return Response.json({"errors": [], "warnings": []})

    def _repo_url(self, req: Request, repo: Repo) -> str:
        prefix = "" if repo.type == "model" else f"{repo.type}s/"
        return f"{req.base_url}/{prefix}{repo.id}"

    def create_repo(self, req: Request) -> Response:
        if req.user is None:
            raise HttpError(401, "You must be authenticated to create a repo")
        body = req.json()
        repo_type = body.get("type") or "model"
        name, namespace = body.get("name"), body.get("organization") or req.user
        if repo_type not in REPO_TYPES:
            raise HttpError(400, f"Invalid repo type: {repo_type}")
        if not isinstance(name, str) or not _REPO_NAME.match(name) or not _REPO_NAME.match(namespace):
            raise HttpError(400, f"Invalid repo name: {namespace}/{name}")
        if namespace not in self._namespaces(req.user):
            raise HttpError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        private = body.get("visibility") == "private" or bool(body.get("private"))
        repo_id = f"{namespace}/{name}"
        key = HubState.key(repo_type, repo_id)
        if key in self.state.repos:
            url = self._repo_url(req, self.state.repos[key])
            raise HttpError(409, "You already created this repo", extra={"url": url})
        repo = Repo(repo_type, repo_id, private, _now())
        files = {".gitattributes": self.state.add_file(DEFAULT_GITATTRIBUTES.encode(), lfs=False)}
        initial = self.state.new_commit(repo, None, files, "initial commit", "", req.user)
        repo.branches["main"] = initial.sha
        self.state.repos[key] = repo
        self.state.save()
        return Response.json({"url": self._repo_url(req, repo), "name": repo_id, "id": repo_id})

    def update_settings(self, req: Request, repo_type: str, repo_id: str) -> Response:
        """PUT /api/{type}s/{repo}/settings: change a repo's visibility (`private` or `visibility`)."""
        body = req.json()
        repo = self._repo(req, repo_type, repo_id, write=True)
        if "private" in body or "visibility" in body:
            repo.private = body.get("visibility") == "private" if "visibility" in body else bool(body["private"])
        self.state.save()
        return Response.json({})

    def delete_repo(self, req: Request) -> Response:
        body = req.json()
        namespace = body.get("organization") or req.user
        repo = self._repo(req, body.get("type") or "model", f"{namespace}/{body.get('name')}", write=True)
        del self.state.repos[HubState.key(repo.type, repo.id)]
        self.state.save()
        return Response.json({})

    def _card(self, commit: Commit) -> dict | None:
        entry = commit.files.get("README.md")
        if entry is None:
            return None
        try:
            return _front_matter(self.state.blobs.get(entry.sha256).decode("utf-8", "replace"))
        except yaml.YAMLError:
            return None

    def _info(self, req: Request, repo: Repo, commit: Commit, *, siblings: bool, blobs: bool,
              card: bool) -> dict:
        expand = req.query.get("expand") or req.query.get("expand[]")
        if expand:  # compute everything, keep what was asked for
            siblings = blobs = card = True
        card_data = self._card(commit) or {}
        library = card_data.get("library_name")
        tags = [str(t) for t in (card_data.get("tags") or []) if isinstance(t, (str, int, float))]
        if library:
            tags.append(str(library))
        if card_data.get("license"):
            tags.append(f"license:{card_data['license']}")
        tags = list(dict.fromkeys(tags))
        info = {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "modelId": repo.id,
            "author": repo.namespace, "sha": commit.sha, "lastModified": commit.date,
            "createdAt": repo.created_at, "private": repo.private, "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": tags, "library_name": library,
            "pipeline_tag": card_data.get("pipeline_tag"),
        }
        if card:
            info["cardData"] = card_data
        if siblings:
            rows = []
            for path, entry in sorted(commit.files.items()):
                row: dict[str, Any] = {"rfilename": path}
                if blobs:
                    row.update(size=entry.size, blobId=entry.oid)
                    if entry.lfs:
                        row["lfs"] = {"size": entry.size, "sha256": entry.sha256,
                                      "pointerSize": len(_lfs_pointer(entry.sha256, entry.size))}
                rows.append(row)
            info["siblings"] = rows
            info["usedStorage"] = sum(e.size for e in commit.files.values())
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        return info

    def repo_info(self, req: Request, repo_type: str, repo_id: str, revision: str | None) -> Response:
        repo = self._repo(req, repo_type, repo_id)
        commit = repo.resolve(revision or "main")
        return Response.json(self._info(req, repo, commit, siblings=True, blobs=req.flag("blobs"), card=True))

    def list_repos(self, req: Request, repo_type: str) -> Response:
        allowed = self._namespaces(req.user)
        filters = req.query.get("filter", [])
        search = (req.param("search") or "").lower()
        author, library = req.param("author"), req.param("library")
        full, card = req.flag("full"), req.flag("cardData")
        rows = []
        for repo in self.state.repos.values():
            if repo.type != repo_type or (repo.private and repo.namespace not in allowed):
                continue
            if author and repo.namespace != author or search and search not in repo.id.lower():
                continue
            info = self._info(req, repo, repo.resolve("main"), siblings=full, blobs=False, card=card or full)
            if library and info["library_name"] != library:
                continue
            if any(f not in info["tags"] and f != info["library_name"] for f in filters):
                continue
            rows.append(info)
        sort = req.param("sort") or "lastModified"
        if sort in ("lastModified", "createdAt", "id"):
            rows.sort(key=lambda r: r.get(sort) or "", reverse=req.param("direction", "-1") == "-1")
        limit = req.param("limit")
        if limit is not None and limit.isdigit():
            rows = rows[: int(limit)]
        return self._paginated(req, rows, self.models_page_size)

    def _paginated(self, req: Request, rows: list, page_size: int) -> Response:
        cursor = int(req.param("cursor") or 0)
        page = rows[cursor: cursor + page_size]
        headers = {}
        if cursor + page_size < len(rows):
            query = [(k, v) for k, values in req.query.items() if k != "cursor" for v in values]
            query.append(("cursor", str(cursor + page_size)))
            encoded = "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in query)
            headers["Link"] = f'<{req.base_url}{req.path}?{encoded}>; rel="next"'
        return Response.json(page, headers=headers)

    def page(self, req: Request, repo_type: str, repo_id: str) -> Response:
        """A plain-text stand-in for the repo's web page (the URL printed after a push)."""
        repo = self._repo(req, repo_type, repo_id)
        head = repo.resolve("main")
        lines = [f"{repo.id} ({'private' if repo.private else 'public'}) at {head.sha}", ""]
        lines += [f"{entry.size:>12}  {path}" for path, entry in sorted(head.files.items())]
        return Response(200, ("\n".join(lines) + "\n").encode(), content_type="text/plain; charset=utf-8")

    # ----- listing

    @staticmethod
    def _tree_entry(path: str, entry: FileEntry) -> dict:
        row: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            row["lfs"] = {"oid": entry.sha256, "size": entry.size,
                          "pointerSize": len(_lfs_pointer(entry.sha256, entry.size))}
        return row

    def tree(self, req: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        repo = self._repo(req, repo_type, repo_id)
        commit = repo.resolve(revision)
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        recursive = req.flag("recursive")
        files, folders = [], {}
        for file_path, entry in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix):].split("/")
            for depth in range(1, len(rest) if recursive else min(len(rest), 2)):
                folder = prefix + "/".join(rest[:depth])
                folders.setdefault(folder, hashlib.sha1(folder.encode() + commit.sha.encode()).hexdigest())
            if recursive or len(rest) == 1:
                files.append(self._tree_entry(file_path, entry))
        if path and not files and not folders:
            raise HttpError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        rows = [{"type": "directory", "oid": oid, "size": 0, "path": p} for p, oid in sorted(folders.items())]
        return self._paginated(req, rows + files, self.tree_page_size)

    def paths_info(self, req: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._repo(req, repo_type, repo_id)
        commit = repo.resolve(revision)
        if req.headers.get("Content-Type", "").startswith("application/json"):
            paths = req.json().get("paths", [])
        else:
            paths = parse_qs(req.body.decode()).get("paths", [])
        rows = []
        for path in paths:
            if path in commit.files:
                rows.append(self._tree_entry(path, commit.files[path]))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                rows.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(),
                             "size": 0, "path": path})
        return Response.json(rows)

    def commits(self, req: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._repo(req, repo_type, repo_id)
        rows = [
            {"id": c.sha, "title": c.title, "message": c.message, "date": c.date,
             "authors": [{"user": c.author}],
             "formatted": {"title": c.title, "message": c.message}}
            for c in repo.history(repo.resolve(revision))
        ]
        return self._paginated(req, rows, self.commits_page_size)

    def refs(self, req: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._repo(req, repo_type, repo_id)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()]
        tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()]
        return Response.json({"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    # ----- refs

    def create_branch(self, req: Request, repo_type: str, repo_id: str, branch: str) -> Response:
        repo = self._repo(req, repo_type, repo_id, write=True)
        if branch in repo.branches:
            raise HttpError(409, f"Branch {branch} already exists")
        if not branch or branch in repo.tags or _HEX40.match(branch):
            raise HttpError(400, f"Invalid branch name: {branch}")
        start = req.json().get("startingPoint") or "main"
        repo.branches[branch] = repo.resolve(start).sha
        self.state.save()
        return Response.json({})

    def delete_branch(self, req: Request, repo_type: str, repo_id: str, branch: str) -> Response:
        repo = self._repo(req, repo_type, repo_id, write=True)
        if branch not in repo.branches:
            raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        if branch == "main":
            raise HttpError(403, "The main branch cannot be deleted")
        del repo.branches[branch]
        self.state.save()
        return Response.json({})

    def create_tag(self, req: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._repo(req, repo_type, repo_id, write=True)
        tag = req.json().get("tag")
        if not isinstance(tag, str) or not tag:
            raise HttpError(400, "Missing tag name")
        if tag in repo.tags:
            raise HttpError(409, f"Tag {tag} already exists")
        repo.tags[tag] = repo.resolve(revision).sha
        self.state.save()
        return Response.json({})

    def delete_tag(self, req: Request, repo_type: str, repo_id: str, tag: str) -> Response:
        repo = self._repo(req, repo_type, repo_id, write=True)
        if tag not in repo.tags:
            raise HttpError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
        del repo.tags[tag]
        self.state.save()
        return Response.json({})

    # ----- uploads

    def _branch_head(self, repo: Repo, revision: str) -> Commit:
        if revision not in repo.branches:
            if revision in repo.tags or revision in repo.commits:
                raise HttpError(400, f"Cannot commit to {revision}: it is not a branch")
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[repo.branches[revision]]

    @staticmethod
    def _lfs_patterns(commit: Commit, state: HubState) -> list[str]:
        entry = commit.files.get(".gitattributes")
        text = state.blobs.get(entry.sha256).decode("utf-8", "replace") if entry else ""
        return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line and line.split()]

    def preupload(self, req: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._repo(req, repo_type, repo_id, write=True)
        head = self._branch_head(repo, revision)
        patterns = self._lfs_patterns(head, self.state)
        rows = []
        for item in req.json().get("files", []):
            path, size = item["path"], int(item.get("size", 0))
            binary = _looks_binary(base64.b64decode(item.get("sample", "")))
            matches = any(fnmatch.fnmatch(path if "/" in p else path.rsplit("/", 1)[-1], p) for p in patterns)
            lfs = size >= LFS_SIZE_THRESHOLD or binary or matches
            row = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = head.files.get(path)
            if existing is not None:
                row["oid"] = existing.sha256 if lfs else _git_blob_oid(self.state.blobs.get(existing.sha256))
            rows.append(row)
        return Response.json({"files": rows, "commitOid": head.sha})

    def lfs_batch(self, req: Request, repo_type: str, repo_id: str) -> Response:
        self._repo(req, repo_type, repo_id, write=True)
        body = req.json()
        if body.get("operation") != "upload":
            raise HttpError(400, "Only the upload operation is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            row: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.state.blobs.has(oid):
                ticket = secrets.token_urlsafe(24)
                self._uploads[ticket] = (oid, size)
                row["actions"] = {
                    "upload": {"href": f"{req.base_url}/_lfs/upload/{ticket}", "expires_in": 3600},
                    "verify": {"href": f"{req.base_url}/_lfs/verify/{ticket}", "expires_in": 3600},
                }
            objects.append(row)
        return Response.json({"transfer": "basic", "objects": objects},
                             headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, req: Request, ticket: str) -> Response:
        if ticket not in self._uploads:
            raise HttpError(403, "Unknown or expired upload URL")
        oid, size = self._uploads[ticket]
        if len(req.body) != size or hashlib.sha256(req.body).hexdigest() != oid:
            raise HttpError(400, "The uploaded content does not match the announced oid and size")
        self.state.blobs.put(req.body)
        return Response(200, b"", {"ETag": f'"{oid}"'})

    def lfs_verify(self, req: Request, ticket: str) -> Response:
        if ticket not in self._uploads:
            raise HttpError(403, "Unknown or expired verify URL")
        oid, size = self._uploads.pop(ticket)
        body = req.json()
        if body.get("oid") != oid or int(body.get("size", -1)) != size or not self.state.blobs.has(oid):
            raise HttpError(404, "LFS object not found")
        return Response.json({"success": True})

    def commit(self, req: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._repo(req, repo_type, repo_id, write=True)
        if req.flag("create_pr"):
            raise HttpError(400, "Pull requests are not supported by the dev server")
        head = self._branch_head(repo, revision)
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and parent != head.sha:
            raise HttpError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                    else value["content"].encode()
                files[path] = self.state.add_file(data, lfs=False)
            elif key == "lfsFile":
                oid = value["oid"]
                if not self.state.blobs.has(oid):
                    raise HttpError(400, f"LFS object {oid} for {path} was not uploaded")
                size = self.state.blobs.size(oid)
                if value.get("size") is not None and int(value["size"]) != size:
                    raise HttpError(400, f"Size mismatch for LFS object of {path}")
                files[path] = FileEntry(oid, size, True, _git_blob_oid(_lfs_pointer(oid, size)))
            elif key == "deletedFile":
                if path not in files:
                    raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HttpError(400, f"Unknown commit operation: {key}")
        commit = self.state.new_commit(repo, head, files, header.get("summary") or "Update",
                                       header.get("description") or "", req.user or "anonymous")
        repo.branches[revision] = commit.sha
        self.state.save()
        url = f"{self._repo_url(req, repo)}/commit/{commit.sha}"
        return Response.json({"success": True, "commitOid": commit.sha, "commitUrl": url,
                              "pullRequestUrl": None})

    # ----- downloads

    def resolve(self, req: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        repo = self._repo(req, repo_type, repo_id)
        commit = repo.resolve(revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"ETag": f'"{entry.sha256}"', "X-Linked-Etag": f'"{entry.sha256}"',
                            "X-Linked-Size": str(entry.size)})
        else:
            headers["ETag"] = f'"{entry.oid}"'
        data = b"" if req.method == "HEAD" else self.state.blobs.get(entry.sha256)
        status, length = 200, entry.size
        match = re.match(r"bytes=(\d+)-(\d*)$", req.headers.get("Range") or "")
        if match and req.method == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else entry.size - 1
            if start >= entry.size:
                raise HttpError(416, "Requested range not satisfiable")
            data = data[start: end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{entry.size}"
            status, length = 206, len(data)
        headers["Content-Length"] = str(length)
        return Response(status, data, headers, content_type="application/octet-stream")


# --------------------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every request body must be read in full
    server_version = "diffcd-hubserver/1"
    app: HubApp
    quiet: bool = True

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        req = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True),
                      self.headers, body, None, f"http://{host}")
        response = self.app.handle(req)
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type, **response.headers}
        headers.setdefault("Content-Length", str(len(response.body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))


class HubServer:
    """A Hub-compatible HTTP server on a background thread.

    Args:
      tokens: token -> user name; a request with any other token is refused (401).
      orgs: organisation -> member user names; members may write to the organisation's namespace.
      storage_dir: keep repos and blobs in this directory (persistent); in memory when None.
      host: address to bind; loopback by default.
      port: 0 picks a free port.
      quiet: do not log requests.
    """

    def __init__(self, tokens: dict[str, str] | None = None, *, orgs: dict[str, Iterable[str]] | None = None,
                 storage_dir: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 0,
                 quiet: bool = True):
        self.state = HubState(storage_dir)
        self.app = HubApp(self.state, tokens or {}, {k: list(v) for k, v in (orgs or {}).items()})
        self.host, self.port, self.quiet = host, port, quiet
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The server is not running; call start() first")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self._httpd.server_address[1]}"

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"app": self.app, "quiet": self.quiet})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hubserver", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, endpoint: str, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests to `endpoint` with `status`, before doing anything.

        Endpoint names: create_repo, preupload, lfs_batch, lfs_upload, lfs_verify, commit, resolve,
        model_info, tree, commits, refs, branch, tag, paths_info, list_models, whoami, validate_yaml.
        Note that huggingface_hub retries 500/502/503/504 on preupload, LFS and listing requests
        (with backoff), but not on commit.
        """
        self.app.fail_next(endpoint, status, times)

    @property
    def requests(self) -> list[dict]:
        """Every request answered so far: method, path, endpoint name, status."""
        return self.app.request_log

    def set_page_sizes(self, *, tree: int | None = None, commits: int | None = None,
                       models: int | None = None) -> None:
        """Smaller pages, to exercise the client's pagination."""
        self.app.tree_page_size = tree or self.app.tree_page_size
        self.app.commits_page_size = commits or self.app.commits_page_size
        self.app.models_page_size = models or self.app.models_page_size


# --------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.hubserver",
        description="Run a local stand-in for the Hugging Face Hub (enough of its API for huggingface_hub "
                    "to create repos, push, pull and list models). Point clients at it with "
                    "HF_ENDPOINT=http://HOST:PORT and HF_HUB_DISABLE_XET=1, and set HF_TOKEN to a token it "
                    f"accepts: a --token value, or {DEFAULT_TOKEN} when none is given.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: only this machine can connect)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on; 0 picks a free one (default 8090)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="keep repos in this directory across restarts (default: in memory only)")
    parser.add_argument("--token", action="append", default=None, metavar="TOKEN",
                        help=f"an access token the server accepts, repeatable (default: {DEFAULT_TOKEN})")
    parser.add_argument("--user", default=DEFAULT_USER,
                        help="the user name the tokens belong to; they may write under this namespace (default user)")
    parser.add_argument("--org", action="append", default=[], metavar="NAME",
                        help="an organisation the user belongs to, so it may push under NAME/..., repeatable")
    parser.add_argument("--seed-examples", metavar="RUNS_DIR", default=None,
                        help="at start, publish every run folder in RUNS_DIR (as written by "
                             "`python -m diffcd_hub.publish_examples --out RUNS_DIR`) as SEED_NAMESPACE/<folder name>")
    parser.add_argument("--seed-namespace", default=None,
                        help="namespace for --seed-examples (default: the --user name); added to --org if different")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tokens = args.token or [DEFAULT_TOKEN]
    namespace = args.seed_namespace or args.user
    orgs = {org: [args.user] for org in [*args.org, namespace] if org != args.user}
    server = HubServer({t: args.user for t in tokens}, orgs=orgs, storage_dir=args.data, host=args.host,
                       port=args.port, quiet=not args.verbose)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: other machines can reach this server", file=sys.stderr)
    url = server.start()
    try:
        if args.seed_examples:
            from diffcd_hub.publish_examples import seed_server

            for line in seed_server(url, tokens[0], args.seed_examples, namespace):
                print(line, flush=True)
        print(f"Hub dev server at {url} (user {args.user!r}; storage: {args.data or 'memory'})", flush=True)
        token = "one of your --token values" if args.token else "the default token, see --help"
        print(f"  export HF_ENDPOINT={url} HF_HUB_DISABLE_XET=1 HF_TOKEN=<{token}>", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

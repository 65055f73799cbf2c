"""Files given by URL: a cloud passed as "https://..." instead of an upload, bounded like an upload.

Gradio downloads a URL given for a File input itself, with no size or time bound. Every file
input of the app is a `BoundedFile`, which leaves URLs to be downloaded here instead: the size is capped
before and while reading, the whole download has a deadline, redirects are followed a few
times and re-checked, and, unless DIFFCD_ALLOW_PRIVATE_URLS=1, only public internet addresses
are contacted (no loopback, private, link-local or cloud-metadata address: a public Space must
not become a proxy into its own network). The connection goes to the address that was checked,
so a DNS answer that changes between check and connect does not get through.

This is what lets an MCP client (or gradio_client, with `handle_file(url)`) fit a cloud given by
URL on the public Space with exactly the bounds of an upload. The app calls `download` inside a
slot of its read pool, so slow URLs can hold at most that pool's slots, never the server's threads.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import gradio as gr
import httpx
from gradio_client import utils as client_utils

from diffcd_space.limits import Limits

MAX_REDIRECTS = 5
ALLOW_PRIVATE_ENV = "DIFFCD_ALLOW_PRIVATE_URLS"
# Hugging Face answers its own hosts with internal addresses inside a Space (split DNS).
HF_HOSTS = ("huggingface.co", "hf.co")


class DownloadError(gr.Error):
    """A URL that cannot be used; the message says why and what to do."""

    def __init__(self, message: str):
        super().__init__(message, title="Cannot download this file")


def download_limits() -> tuple[int, float]:
    """(max bytes, seconds) of a URL download: the app's `Limits` (DIFFCD_SPACE_MAX_URL_BYTES and
    DIFFCD_SPACE_URL_SECONDS override them)."""
    limits = Limits.from_environment()
    return limits.max_url_bytes, limits.url_seconds


def private_urls_allowed() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def _is_hf_host(host: str) -> bool:
    return any(host == h or host.endswith("." + h) for h in HF_HOSTS)


def _checked_address(host: str, port: int, *, allow_private: bool) -> str:
    """An IP address of host that may be contacted (the first one, when all of them may)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise DownloadError(f"The host {host!r} of the URL cannot be found; check the URL.") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise DownloadError(f"The host {host!r} of the URL has no address; check the URL.")
    if not (allow_private or _is_hf_host(host)):
        for address in addresses:
            if not ipaddress.ip_address(address.split("%")[0]).is_global:
                raise DownloadError(
                    f"The URL's host {host!r} is a local or private address ({address}); this app only "
                    "downloads from public addresses. Upload the file instead.")
    return addresses[0]


def _pinned_request(client: httpx.Client, url: str, *, allow_private: bool, timeout: float) -> httpx.Response:
    """GET url (streamed) from the checked address, with the right Host header and TLS name."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"Only http:// and https:// URLs can be downloaded (got {url[:80]!r}).")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _checked_address(host, port, allow_private=allow_private)
    literal = f"[{address}]" if ":" in address else address
    target = parts._replace(netloc=f"{literal}:{port}").geturl()
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept-Encoding": "identity"}
    request = client.build_request("GET", target, headers=headers, timeout=timeout,
                                   extensions={"sni_hostname": host} if parts.scheme == "https" else {})
    return client.send(request, stream=True)


def _file_name(url: str, suffixes: tuple[str, ...] | None) -> str:
    """A safe local file name: a fresh stem, and the URL's suffix when it is an accepted one."""
    suffix = Path(urlsplit(url).path).suffix.lower()
    if suffixes is not None and suffix not in suffixes:
        raise DownloadError(f"The URL must name a file ending in one of {' '.join(suffixes)} "
                            f"(its path ends in {suffix or 'no suffix'!r}).")
    if not suffix.replace(".", "").isalnum():
        suffix = ""
    stem = client_utils.strip_invalid_filename_characters(Path(urlsplit(url).path).stem)[:60] or "download"
    return f"{stem}{suffix}"


def download(url: str, folder: str | os.PathLike, *, suffixes: tuple[str, ...] | None = None,
             max_bytes: int | None = None, seconds: float | None = None,
             allow_private: bool | None = None) -> Path:
    """Download url into a new sub-folder of folder, within the size and time bounds.

    Args:
      url: an http(s) URL.
      folder: where to put it (a fresh sub-folder is made; the URL never chooses the path).
      suffixes: accepted file suffixes (".ply", ...); None accepts any.
      max_bytes, seconds, allow_private: the bounds (default: download_limits(), the environment).

    Raises:
      DownloadError: a bad URL, a refused address, an HTTP error, too large or too slow.
    """
    default_bytes, default_seconds = download_limits()
    max_bytes = default_bytes if max_bytes is None else max_bytes
    seconds = default_seconds if seconds is None else seconds
    allow_private = private_urls_allowed() if allow_private is None else allow_private
    name = _file_name(url, suffixes)
    deadline = time.monotonic() + seconds
    target = Path(folder) / f"url-{uuid.uuid4().hex}"
    target.mkdir(parents=True)
    path = target / name
    too_large = (f"The file at the URL is larger than this app's limit of {max_bytes / 1e6:.3g} MB; "
                 "downsample it first.")
    too_slow = f"The download did not finish within {seconds:.0f} s; use a faster host or upload the file."
    try:
        with httpx.Client(follow_redirects=False, trust_env=False) as client:
            current = url
            for _ in range(MAX_REDIRECTS + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DownloadError(too_slow)
                response = _pinned_request(client, current, allow_private=allow_private,
                                           timeout=min(remaining, 10.0))
                if response.is_redirect and "location" in response.headers:
                    response.close()
                    current = urljoin(current, response.headers["location"])
                    continue
                break
            else:
                raise DownloadError(f"The URL redirects more than {MAX_REDIRECTS} times.")
            try:
                if response.status_code != 200:
                    raise DownloadError(f"The server answered HTTP {response.status_code} for the URL; "
                                        "check that the file is public.")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise DownloadError(too_large)
                size = 0
                with open(path, "wb") as out:
                    for chunk in response.iter_raw():
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadError(too_large)
                        if time.monotonic() > deadline:
                            raise DownloadError(too_slow)
                        out.write(chunk)
            finally:
                response.close()
    except httpx.TimeoutException:
        _remove(target)
        raise DownloadError(too_slow) from None
    except httpx.HTTPError as error:
        _remove(target)
        raise DownloadError(f"The URL cannot be downloaded ({type(error).__name__}); check it.") from None
    except BaseException:
        _remove(target)
        raise
    return path


def _remove(folder: Path) -> None:
    for file in folder.glob("*"):
        file.unlink(missing_ok=True)
    folder.rmdir()


class BoundedFile(gr.File):
    """gr.File whose URL inputs are left for the event to download, in the app's read pool.

    Gradio downloads a URL given for a File input before the event runs, with no bound on how many
    run at once, in the threads every visitor's events need. This component hands the URL to the
    event unchanged instead; the event downloads it with `download` inside a slot of the app's
    bounded read pool (space.pool), counted against the caller's client. Shown in the page exactly
    as gr.File (is_template); API and MCP callers may pass an http(s) URL instead of uploading.
    """

    is_template = True

    async def async_move_resource_to_block_cache(self, url_or_file_path):
        if isinstance(url_or_file_path, str) and client_utils.is_http_url_like(url_or_file_path):
            return url_or_file_path
        return await super().async_move_resource_to_block_cache(url_or_file_path)

    def move_resource_to_block_cache(self, url_or_file_path):
        if isinstance(url_or_file_path, str) and client_utils.is_http_url_like(url_or_file_path):
            return url_or_file_path
        return super().move_resource_to_block_cache(url_or_file_path)

"""What the browser tests share: Debian's Chromium, the flags it runs headless with here, and the
marks that skip a module (with the reason) when Chromium is missing.

Headless Chromium here advertises WebGPU (`navigator.gpu`) but has no adapter. Gradio's 3D viewer
then tries WebGPU first and falls back to WebGL on the same canvas; when the failed WebGPU attempt
has already claimed the canvas, the fallback draws nothing and the viewer stays empty. The pages
therefore hide `navigator.gpu` before any script runs, so the viewer goes straight to WebGL, as it
does in a browser without WebGPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DIFFCD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
HIDE_WEBGPU = "delete Navigator.prototype.gpu;"
MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)),
                       reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`"),
]


@contextlib.contextmanager
def recording_page():
    """A headless Chromium page that records every URL it requests (page.requests_seen), the
    requests that failed and the console's errors (page.problems_seen, for failure messages);
    tall enough for a full-page screenshot without resizing (a resize can blank the 3D canvas)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 2000})
        context.add_init_script(HIDE_WEBGPU)
        page = context.new_page()
        page.requests_seen = []
        page.problems_seen = []
        page.on("request", lambda request: page.requests_seen.append(request.url))
        page.on("requestfailed", lambda request: page.problems_seen.append(
            f"request failed: {request.url} ({request.failure})"))
        page.on("console", lambda message: message.type == "error" and page.problems_seen.append(
            f"console error: {message.text}"))
        page.on("pageerror", lambda error: page.problems_seen.append(f"page error: {error}"))
        try:
            yield page
        finally:
            browser.close()

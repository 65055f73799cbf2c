"""The app in headless Chromium: pick an example, fit, see a mesh, and nothing leaves 127.0.0.1.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`) and the playwright
Python package; skipped with the reason when either is missing.
"""

from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from _browser import MARKS, recording_page

pytestmark = MARKS
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def _canvas_spread(page, selector: str) -> float:
    """Standard deviation of the canvas's pixel values (a blank canvas gives ~0)."""
    from PIL import Image

    png = page.locator(selector).screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    return float(pixels.std())


def _pick(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option).click()


@pytest.fixture
def page(app_url):
    """A Chromium page that records every URL it requests (page.requests_seen)."""
    with recording_page() as page:
        yield page


def _session_folders(demo) -> set[str]:
    root = demo.diffcd_handlers.store.root
    return {p.name for p in root.iterdir() if p.name != "_shared"}


def test_fit_an_example_in_the_browser(page, app_server, tmp_path_factory):
    app_url, demo = app_server
    before = _session_folders(demo)
    page.goto(app_url)
    page.wait_for_selector("#fit-example input", timeout=60_000)
    _pick(page, "fit-example", "Sphere (20,000 points)")
    page.wait_for_function("document.querySelector('#fit-cloud-info').innerText.includes('Sphere')",
                           timeout=60_000)
    page.click("#fit-button")
    page.wait_for_function("document.querySelector('#fit-status').innerText.includes('Done')", timeout=240_000)
    status = page.inner_text("#fit-status")
    assert "DiffCD" in status and "60 steps" in status

    canvas = "#fit-surface-view canvas"
    page.wait_for_selector(canvas, timeout=30_000)
    deadline, spread = time.time() + 30, 0.0
    while time.time() < deadline and spread < 8:  # the viewer draws once the GLB has loaded
        time.sleep(1)
        spread = _canvas_spread(page, canvas)
    assert spread >= 8, f"the 3D canvas looks blank (pixel std {spread:.2f})"
    assert page.locator("#fit-downloads").inner_text().count(".glb") >= 1

    shot = tmp_path_factory.mktemp("screenshots") / "fit.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the finished fit: {shot}")

    hosts = {urlsplit(url).hostname for url in page.requests_seen if urlsplit(url).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, f"the page contacted {hosts - {'127.0.0.1'}}"

    # closing the tab deletes the session's files (demo.unload)
    mine = _session_folders(demo) - before
    assert mine, "the fit should have used a session folder"
    page.close()
    deadline = time.time() + 30
    while time.time() < deadline and mine & _session_folders(demo):
        time.sleep(0.5)
    assert not mine & _session_folders(demo), "the closed tab's session folder was not removed"


@pytest.mark.slow  # about 20 s on a quiet machine; the API tests of test_poisson_app.py run in the fast suite
def test_choosing_screened_poisson_swaps_the_settings_and_turns_push_off(page, app_server):
    """The form hides the preset and advanced settings for Screened Poisson and shows its own, and
    the Hub tab turns Push off after its run (the state's change event)."""
    from diffcd import poisson

    if not poisson.available():
        pytest.skip("Open3D (the poisson extra) is not installed")
    app_url, _ = app_server
    page.goto(app_url)
    page.wait_for_selector("#fit-method input", timeout=60_000)
    assert page.locator("#fit-preset").is_visible() and not page.locator("#fit-octree-depth").is_visible()
    _pick(page, "fit-example", "Sphere (20,000 points)")
    _pick(page, "fit-method", "Screened Poisson")
    page.wait_for_selector("#fit-octree-depth", state="visible", timeout=10_000)
    assert page.locator("#fit-trim").is_visible() and not page.locator("#fit-preset").is_visible()
    _pick(page, "fit-method", "DiffCD")  # and back: the neural settings return
    page.wait_for_selector("#fit-preset", state="visible", timeout=10_000)
    assert not page.locator("#fit-octree-depth").is_visible()
    _pick(page, "fit-method", "Screened Poisson")
    page.wait_for_selector("#fit-octree-depth", state="visible", timeout=10_000)
    page.click("#fit-button")
    page.wait_for_function("document.querySelector('#fit-status').innerText.includes('Done')", timeout=120_000)
    assert "Screened Poisson at octree depth" in page.inner_text("#fit-status")
    page.get_by_role("tab", name="Hub").click()
    page.wait_for_function("document.querySelector('#hub-push-note').innerText.includes('no network')",
                           timeout=10_000)
    assert page.locator("#hub-push").is_disabled()

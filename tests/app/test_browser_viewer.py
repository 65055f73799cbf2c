"""The viewer in headless Chromium: featured checkpoints pulled with one click, empty tables that
show nothing, and the input cloud drawn over the fitted surface.

Needs Debian's Chromium at /usr/bin/chromium and the playwright package (skipped otherwise).
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from _apptest import TOKEN, USER

from _browser import MARKS, recording_page

pytestmark = MARKS
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

FEATURED = f"{USER}/featured-sphere"


@pytest.fixture
def page(app_url):
    with recording_page() as page:
        yield page


@pytest.fixture
def featured_on_the_hub(hub, monkeypatch, tmp_path):
    """A checkpoint published under the featured namespace (here the test user's)."""
    from _hubtest import make_run

    from diffcd_hub.push import push_checkpoint

    push_checkpoint(make_run(tmp_path / "run"), FEATURED, token=TOKEN, endpoint=hub.url)
    monkeypatch.setenv("DIFFCD_FEATURED_AUTHOR", USER)


def _empty(page, table_id: str) -> bool:
    """The table draws no grid (no header row "1 2 3") while it has no rows."""
    return page.locator(f"#{table_id} .table-wrap").is_hidden() and "1\n" not in page.inner_text(f"#{table_id}")


def _orange_pixels(page, selector: str) -> int:
    """Pixels of the canvas in the overlay cloud's orange (red well above green, green above blue)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"), dtype=np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(np.sum((r > 120) & (r > 1.6 * g) & (g > 1.3 * b)))


def _wait_for_the_viewer(page, canvas: str) -> None:
    """Wait for the 3D viewer's canvas; when it never comes, fail with what the page showed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(canvas, timeout=90_000)
    except PlaywrightTimeout:
        glbs = [url for url in page.requests_seen if url.endswith(".glb")]
        pytest.fail(f"the viewer drew no canvas within 90 s of the fit's end.\n"
                    f"status: {page.inner_text('#fit-status')!r}\n"
                    f"viewer: {page.inner_html('#fit-surface-view')[:2000]!r}\n"
                    f"GLBs requested: {glbs[-5:]}\nproblems: {page.problems_seen[-10:]}")


def test_featured_checkpoints_pull_with_one_click_and_empty_tables_show_nothing(page, app_url, featured_on_the_hub):
    page.goto(app_url)
    page.wait_for_selector("#fit-example input", timeout=60_000)
    assert _empty(page, "fit-metrics")
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#compare-metrics", state="attached", timeout=30_000)
    assert _empty(page, "compare-metrics")

    page.get_by_role("tab", name="Hub").click()
    page.wait_for_function("document.querySelector('#hub-featured-note')?.innerText.includes('published by')",
                           timeout=30_000)
    assert FEATURED in page.inner_text("#hub-checkpoints")
    assert page.input_value("#hub-repo textarea, #hub-repo input") == FEATURED
    page.click("#hub-pull")  # the one click
    page.wait_for_function("document.querySelector('#hub-status').innerText.includes('Pulled')", timeout=120_000)
    assert FEATURED in page.inner_text("#hub-status")


def test_featured_list_degrades_quietly_without_a_hub(page, app_url, monkeypatch):
    monkeypatch.setenv("DIFFCD_FEATURED_AUTHOR", "nobody-publishes-here")
    page.goto(app_url)
    page.get_by_role("tab", name="Hub").click()
    page.wait_for_function("document.querySelector('#hub-featured-note')?.innerText.includes('nobody-publishes-here')",
                           timeout=30_000)
    assert _empty(page, "hub-checkpoints")
    assert page.locator(".toast-body").count() == 0, "no error popup on page load"


def test_the_cloud_over_the_fitted_surface(page, app_url, tmp_path_factory):
    page.goto(app_url)
    assert not page.evaluate("'gpu' in navigator"), "the viewer must take WebGL here (see _browser.py)"
    page.wait_for_selector("#fit-example input", timeout=60_000)
    page.locator("#fit-example input").click()
    page.get_by_role("option", name="Sphere (20,000 points)").click()
    page.wait_for_function("document.querySelector('#fit-cloud-info').innerText.includes('Sphere')", timeout=60_000)
    page.click("#fit-button")
    page.wait_for_function("document.querySelector('#fit-status').innerText.includes('Done')", timeout=240_000)
    assert not _empty(page, "fit-metrics") and "Cloud → surface" in page.inner_text("#fit-metrics")

    canvas = "#fit-surface-view canvas"
    _wait_for_the_viewer(page, canvas)
    time.sleep(3)
    before = _orange_pixels(page, canvas)
    page.click("#fit-overlay input")
    deadline, after = time.time() + 60, 0
    while time.time() < deadline and after < 200:  # the viewer redraws once the overlay GLB has loaded
        time.sleep(1)
        after = _orange_pixels(page, canvas)
    assert any(url.endswith("-overlay.glb") for url in page.requests_seen)
    assert before < 50 and after >= 200, f"orange cloud pixels: {before} before, {after} after the toggle"
    shot = tmp_path_factory.mktemp("screenshots") / "overlay.png"
    page.locator("#fit-surface-view").screenshot(path=str(shot))
    print(f"\nscreenshot of the cloud over the surface: {shot}")

    page.click("#fit-overlay input")  # off again: the plain surface
    deadline = time.time() + 60
    while time.time() < deadline and _orange_pixels(page, canvas) >= 50:
        time.sleep(1)
    assert _orange_pixels(page, canvas) < 50

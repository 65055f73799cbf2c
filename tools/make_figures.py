"""The README's pictures, taken from the running app: a finished fit and a comparison of the methods.

    python tools/make_figures.py                      # bracket example, cpu-quick: about 10 min on 2 cores
    python tools/make_figures.py --steps 400          # shorter fits, for a quick look

Starts `python app.py` on loopback (a free port, no outbound connection), drives the page with
Playwright in Debian's headless Chromium (/usr/bin/chromium, or DIFFCD_CHROMIUM), and writes

    docs/images/app-fit.png           the Fit tab after a DiffCD fit of the example
    docs/images/compare-methods.png   the Compare tab after DiffCD, IGR, Neural-Pull and SIREN

each under 300 KB (downscaled and reduced to a 256-colour palette). Needs the `playwright`
package (requirements-test.txt) and `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DIFFCD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
METHOD_TITLES = {"diffcd": "DiffCD", "igr": "IGR", "neural-pull": "Neural-Pull", "siren": "SIREN"}
MAX_BYTES = 300_000
FIT_SECONDS = 900
"""How long one fit, or the whole comparison, may take on a slow machine before the script gives up."""


def example_label(example_id: str) -> str:
    """The app's dropdown label of a built-in example: "Bracket (CSG part) (30,000 points)"."""
    index = json.loads((ROOT / "examples" / "index.json").read_text())["examples"]
    entry = next((e for e in index if e["id"] == example_id), None)
    if entry is None:
        raise SystemExit(f"no example {example_id!r}; choose one of {[e['id'] for e in index]}")
    return f"{entry['title']} ({entry['points']:,} points)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log) -> subprocess.Popen:
    """`python app.py` on 127.0.0.1:port with local bounds and no telemetry or featured Hub list;
    its output goes to the file `log`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SPACE_ID", "DIFFCD_FEATURED_AUTHOR", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_DISABLE_TELEMETRY="1", JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"))
    return subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(url: str, app: subprocess.Popen, log_path: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise SystemExit(f"python app.py exited with {app.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def pick_example(page, prefix: str, label: str) -> None:
    page.locator(f"#{prefix}-example input").click()
    page.get_by_role("option", name=label).click()
    title = label.rsplit(" (", 1)[0]
    page.wait_for_function(f"document.querySelector('#{prefix}-cloud-info').innerText.includes({title!r})",
                           timeout=60_000)


def wait_for_text(page, selector: str, text: str, seconds: float) -> None:
    page.wait_for_function(f"document.querySelector({selector!r})?.innerText.includes({text!r})",
                           timeout=seconds * 1000)


def settle_canvases(page, selectors: list[str]) -> None:
    """Every 3D viewer has drawn its mesh (a canvas exists), plus a moment for the last frame."""
    for selector in selectors:
        page.wait_for_selector(f"{selector} canvas", timeout=120_000)
    time.sleep(4)


def save_small(png: bytes, path: Path, width: int) -> None:
    """Downscale to `width` pixels and store with a 256-colour palette, under MAX_BYTES."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        scaled = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        scaled.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES or width <= 600:
            break
        width = int(width * 0.85)
    path.write_bytes(buffer.getvalue())
    print(f"{path}: {scaled.width}x{scaled.height}, {buffer.tell() / 1000:.0f} KB")


def region(page, bottom: str, margin: int = 12) -> dict:
    """The app's column from its tab bar down to the bottom of an element."""
    tabs, last = page.locator("[role=tablist]").first.bounding_box(), page.locator(bottom).bounding_box()
    x, y = max(0, tabs["x"] - margin), max(0, tabs["y"] - margin)
    return {"x": x, "y": y, "width": tabs["width"] + 2 * margin, "height": last["y"] + last["height"] + margin - y}


def fit_figure(page, label: str, steps: int | None, out: Path, width: int) -> None:
    pick_example(page, "fit", label)
    if steps:
        page.get_by_text("Advanced settings").click()
        page.get_by_label("Steps", exact=True).first.fill(str(steps))
    page.click("#fit-button")
    wait_for_text(page, "#fit-status", "Done", FIT_SECONDS)
    settle_canvases(page, ["#fit-surface-view"])
    page.mouse.move(0, 0)
    shot = page.screenshot(clip=region(page, "#fit-metrics"))
    save_small(shot, out / "app-fit.png", width)


def compare_figure(page, label: str, steps: int | None, out: Path, width: int) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#compare-example input", timeout=30_000)
    pick_example(page, "compare", label)
    methods = page.locator("#compare-methods")
    for title in METHOD_TITLES.values():
        methods.get_by_label(title, exact=True).check()
    if steps:
        page.get_by_label("Steps per method").fill(str(steps))
    page.click("#compare-button")
    wait_for_text(page, "#compare-status", "Done", FIT_SECONDS * len(METHOD_TITLES))
    settle_canvases(page, [f"#compare-view-{i}" for i in range(len(METHOD_TITLES))])
    page.mouse.move(0, 0)
    shot = page.screenshot(clip=region(page, "#compare-metrics"))
    save_small(shot, out / "compare-methods.png", width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", default="bracket", help="built-in example to fit and compare on")
    parser.add_argument("--steps", type=int, help="steps per fit (default: the cpu-quick preset's 1600)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--width", type=int, default=1200, help="width of the saved images in pixels")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    label = example_label(args.example)
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="diffcd-figures-app-", suffix=".log")[1])
    with log_path.open("w") as log:
        app = start_app(port, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, app, log_path)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
            page.goto(url)
            page.wait_for_selector("#fit-example input", timeout=60_000)
            fit_figure(page, label, args.steps, args.out, args.width)
            compare_figure(page, label, args.steps, args.out, args.width)
            browser.close()
    finally:
        if app.poll() is None:
            os.killpg(app.pid, 15)
            app.wait(30)
    log_path.unlink()


if __name__ == "__main__":
    main()

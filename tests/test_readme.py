"""Every ```python and ```bash block of README.md runs as written, against a live app (python app.py)
and the loopback Hub server (python -m tools.hubserver, as HF_ENDPOINT).

A block may be preceded by a marker line (an HTML comment, invisible on GitHub and the Hub):

    <!-- readme-test: skip (why it cannot run here) -->   not run; the reason is required
    <!-- readme-test: serve (what is checked) -->         a server: started, checked to answer, stopped

Blocks run one by one in a scratch folder that has the repository's examples/. Python blocks
import the project as the README's set-up installed it (`pip install -e .`), as from any folder;
bash blocks have the repository on PYTHONPATH (for `python -m tools.hubserver`, `benchmarks`). The only change made to a block: the app's address http://127.0.0.1:7860 is the
live app's (on a free port, so the test never collides with an app already running).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
APP_ADDRESS = "http://127.0.0.1:7860"
_BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mode>skip|serve) \((?P<why>[^)]+)\) -->\n)?"
                    r"```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S)

pytestmark = pytest.mark.slow


def readme_blocks() -> list[tuple[str, str, str, str]]:
    """(id, language, mode: run/skip/serve, code) of every python and bash block, in order."""
    blocks = []
    text = README.read_text()
    for found in _BLOCK.finditer(text):
        line = text[:found.start("lang")].count("\n") + 1
        blocks.append((f"{found['lang']}-line{line}", found["lang"], found["mode"] or "run", found["code"]))
    return blocks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds:.0f} s")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(ROOT / "examples")
    return folder


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"),
               HF_HOME=str(tmp_path_factory.mktemp("hf_home")), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", GRADIO_ANALYTICS_ENABLED="False",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def _publish_the_readme_s_checkpoint(env: dict[str, str], scratch: Path) -> None:
    """user/torus-diffcd, which the README's Python example pulls: a short CLI fit, then `hub push`
    (the README's own commands, with a short fit)."""
    run = scratch / "runs" / "torus-readme"
    for command in (
        [sys.executable, "-m", "diffcd", "fit", "examples/torus_cloud.npy", "--method", "igr", "--steps", "40",
         "--resolution", "48", "--out", str(run), "--quiet"],
        [sys.executable, "-m", "diffcd_hub", "push", str(run), "user/torus-diffcd"],
    ):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command[2:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def live(environment, scratch):
    """The loopback Hub and `python app.py` on free ports; yields the environment blocks run in."""
    hub_port, app_port = _free_port(), _free_port()
    hub = subprocess.Popen([sys.executable, "-m", "tools.hubserver", "--port", str(hub_port), "--token", "hf_readme"],
                           cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    env = {**environment, "HF_ENDPOINT": f"http://127.0.0.1:{hub_port}", "GRADIO_SERVER_PORT": str(app_port)}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.STDOUT)
    try:
        _wait_until_up(f"http://127.0.0.1:{hub_port}/api/models", hub, 60)
        _publish_the_readme_s_checkpoint({**env, "HF_TOKEN": "hf_readme"}, scratch)
        _wait_until_up(f"http://127.0.0.1:{app_port}/", app)
        # Blocks run as a signed-in user would (push_to_hub needs a write token); the app never
        # sees the token.
        yield {**env, "HF_TOKEN": "hf_readme", "README_APP_ADDRESS": f"http://127.0.0.1:{app_port}"}
    finally:
        for process in (app, hub):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_readme_has_runnable_blocks_and_every_skip_says_why():
    blocks = readme_blocks()
    assert any(mode == "run" and lang == "python" and "gradio_client" in code for _, lang, mode, code in blocks), \
        "the README's gradio_client example is not run"
    skipped = [b for b in blocks if b[2] == "skip"]
    assert len(skipped) <= len(blocks) // 2, "most README blocks are skipped"


@pytest.mark.parametrize("block_id, lang, mode, code", readme_blocks(), ids=[b[0] for b in readme_blocks()])
def test_readme_block_runs_as_written(block_id, lang, mode, code, live, scratch):
    if mode == "skip":
        pytest.skip("marked readme-test: skip in README.md")
    code = code.replace(APP_ADDRESS, live["README_APP_ADDRESS"])
    if mode == "serve":
        port = _free_port()
        process = subprocess.Popen(["bash", "-c", f"cd {ROOT} && {code}"], cwd=scratch,
                                   env={**live, "GRADIO_SERVER_PORT": str(port)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_up(f"http://127.0.0.1:{port}/", process)
        finally:
            os.killpg(process.pid, 15)
            process.wait(30)
        return
    command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    env = live if lang == "bash" else {name: value for name, value in live.items() if name != "PYTHONPATH"}
    done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README block {block_id} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

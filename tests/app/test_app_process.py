"""`python app.py` as deployed: the environment variables the README documents take effect, and a
push and a pull with a write token leave that token nowhere in the process's stdout, stderr, logs
or files.

One subprocess (app.py run as __main__, Python logging at INFO to stderr) against the loopback
Hub; the test reads what the process really printed and wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np

from _apptest import START_APP, ROOT, TOKEN, USER, free_port

SCRIPT = textwrap.dedent('''
    import json, logging, os, runpy, sys, threading, time, urllib.request

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
    port, cloud, repo, token = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
''') + START_APP + textwrap.dedent('''

    import huggingface_hub.constants as hf
    telemetry = {"GRADIO_ANALYTICS_ENABLED": os.environ.get("GRADIO_ANALYTICS_ENABLED"),
                 "HF_HUB_DISABLE_TELEMETRY": hf.HF_HUB_DISABLE_TELEMETRY}
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False, analytics_enabled=False)
    fit = client.predict(cloud=handle_file(cloud), example=None, method="igr", preset="cpu-quick", steps=100000,
                         width=32, depth=2, mesh_resolution=24, api_name="/fit")
    print("pushing with the token", flush=True)
    commit, pushed = client.predict(repo_id=repo, token=token, private=True, include_cloud=False,
                                    api_name="/push_checkpoint")
    pulled = client.predict(repo_id=repo, revision="", resolution=24, token=token, api_name="/pull_checkpoint")
    print("RESULT " + json.dumps({"fit_status": fit[2], "fit_progress": fit[3], "pushed": pushed,
                                  "commit": commit, "pulled_status": pulled[3], "telemetry": telemetry}),
          flush=True)
''')


def test_app_env_variables_and_no_token_in_its_output(hub, tmp_path):
    cloud = tmp_path / "cloud.npy"
    rng = np.random.default_rng(0)
    points = rng.standard_normal((3000, 3))
    np.save(cloud, (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "GRADIO_", "DIFFCD_SPACE_"))}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), HF_ENDPOINT=hub.url,
               HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1", TMPDIR=str(tmp_path / "tmp"),
               GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
               DIFFCD_SPACE_MAX_POINTS="800", DIFFCD_SPACE_MAX_FIT_SECONDS="20")
    (tmp_path / "tmp").mkdir()
    repo = f"{USER}/env-check"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(port), str(cloud), repo, TOKEN], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=500)
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, output[-4000:]
    result = json.loads(lines[-1][len("RESULT "):])

    # telemetry is off by default (app.py sets it before gradio and huggingface_hub are imported)
    assert result["telemetry"] == {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": True}
    # DIFFCD_SPACE_MAX_POINTS: the 3000-point upload was downsampled to 800
    assert "800" in result["fit_status"] and re.search(r"3,?000", result["fit_status"]), result["fit_status"]
    # DIFFCD_SPACE_MAX_FIT_SECONDS=20 (the legacy name of the request limit; 0 would turn it off): the
    # 100,000-step fit was stopped after 80 % of it (the rest is for meshing) and still delivered a model
    assert result["fit_progress"]["stage"] == "cancelled" and result["fit_progress"]["summary"]["steps"] < 100000
    assert "stops a fit after 16 s" in result["fit_status"]
    # HF_ENDPOINT: the push and the pull reached the loopback Hub
    assert result["commit"].startswith(hub.url) and "Pushed" in result["pushed"]
    assert "24³" in result["pulled_status"]

    # the token: not in anything the process printed or logged, nor in any file it wrote
    assert "pushing with the token" in done.stdout and "HTTP Request" in done.stderr, \
        "the scan must read the process's real stdout and its INFO logs"
    assert TOKEN not in output
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []

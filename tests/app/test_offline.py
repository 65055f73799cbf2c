"""`python app.py` + a fit make no connection outside the machine, with no variables set by the user.

The app runs in a subprocess whose environment has none of the telemetry switches (app.py must
set its own defaults); an audit hook records every socket.connect and socket.getaddrinfo of that
process, including the gradio_client that drives the fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from _apptest import START_APP, ROOT, free_port

SCRIPT = textwrap.dedent('''
    import json, runpy, sys, threading, time, urllib.request

    seen = []
    def audit(event, args):
        if event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) else f"unix:{address!r}"
            seen.append(["connect", host])
        elif event == "socket.getaddrinfo":
            host = args[0]
            seen.append(["getaddrinfo", host.decode() if isinstance(host, bytes) else host])
    sys.addaudithook(audit)

    port = int(sys.argv[1])
''') + START_APP + textwrap.dedent('''

    from gradio_client import Client
    client = Client(url, verbose=False, analytics_enabled=False)
    outputs = client.predict(example="sphere", method="igr", preset="cpu-quick", steps=50, width=32, depth=2,
                             mesh_resolution=32, api_name="/fit")
    print("RESULT " + json.dumps({"status": outputs[2], "seen": seen}), flush=True)
''')

LOOPBACK = {"127.0.0.1", "localhost", "::1", "", None}


def test_launch_and_fit_make_no_outside_connection(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "HF_ENDPOINT", "HF_TOKEN")}
    port = free_port()
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", HF_HOME=str(tmp_path / "hf"),
               GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(port)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=400)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert "Done" in result["status"], result["status"]
    assert result["seen"], "the audit hook saw no connection at all: it is not working"
    outside = [(kind, host) for kind, host in result["seen"]
               if host not in LOOPBACK and not str(host).startswith("unix:")]
    assert outside == [], f"connections outside the machine: {outside}"

"""Start the diffcd Gradio app: `python app.py` (serves on http://127.0.0.1:7860).

Works with no network: the built-in examples are local, and telemetry of Gradio and
huggingface_hub is off unless you turn it on. GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose
the address. JAX uses the GPU when a CUDA build of jaxlib is installed.
"""

import os

# Before gradio or huggingface_hub is imported: both read these at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from space import QUEUE_MAX_SIZE, build_app, launch_options  # noqa: E402

demo = build_app()
demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)

if __name__ == "__main__":
    demo.launch(**launch_options())

"""Start the diffcd Gradio app: `python app.py` (serves on http://127.0.0.1:7860).

Works with no network: the built-in examples are local, and telemetry of Gradio and
huggingface_hub is off unless you turn it on. GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose
the address. JAX uses the GPU when a CUDA build of jaxlib is installed.
"""

import os

# Before gradio or huggingface_hub is imported: both read these at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from diffcd.compilation_cache import enable_compilation_cache  # noqa: E402
from diffcd_space import QUEUE_MAX_SIZE, build_app, launch_options  # noqa: E402

enable_compilation_cache()  # compiled programs persist across restarts (DIFFCD_COMPILATION_CACHE)
demo = build_app()
demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)


WARM_UP_EXIT_WAIT_SECONDS = 60.0


def warm_up_in_background() -> None:
    """Compile the default preset's DiffCD fit of the default example while the app starts, so
    that the first visitor does not wait for it (10-30 s on a GPU). DIFFCD_WARM_UP=0 skips it."""
    import atexit
    import logging
    import threading

    import jax

    from diffcd import load_point_cloud
    from diffcd.fit import warm_up
    from diffcd_space.examples import get_example
    from diffcd_space.presets import default_preset_name, library_presets

    def work() -> None:
        try:
            gpu = jax.default_backend() == "gpu"
            presets = library_presets(gpu)
            example = get_example("torus")
            if example is not None:
                config = presets[default_preset_name(presets, gpu)].config("diffcd")
                seconds = warm_up(config, load_point_cloud(example.cloud))
                logging.getLogger("diffcd.app").info("warm-up compiled the default fit in %.1f s", seconds)
        except Exception:  # a failed warm-up only means the first fit compiles
            logging.getLogger("diffcd.app").exception("warm-up failed")

    if os.environ.get("DIFFCD_WARM_UP", "1") != "0":
        thread = threading.Thread(target=work, name="diffcd-warm-up", daemon=True)
        thread.start()
        # A process that exits while XLA compiles in this thread aborts ("FATAL: exception not
        # rethrown"); give the compilation a bounded time to finish first.
        atexit.register(thread.join, WARM_UP_EXIT_WAIT_SECONDS)


if __name__ == "__main__":
    warm_up_in_background()
    demo.launch(**launch_options())

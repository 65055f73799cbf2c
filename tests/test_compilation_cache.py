"""The persistent compilation cache: a second process compiles nothing that a first one did."""

import json
import os
import subprocess
import sys
from pathlib import Path


from diffcd import compilation_cache

ROOT = Path(__file__).resolve().parent.parent

# One tiny fit's first chunk, counting JAX's compilation-cache events around it.
FIRST_CHUNK = """
import json, dataclasses, numpy as np, jax
from jax import monitoring
from diffcd import Fitter, make_config
from diffcd.compilation_cache import enable_compilation_cache

folder = enable_compilation_cache()
counts = {}
monitoring.register_event_listener(lambda event, **kw: counts.__setitem__(event, counts.get(event, 0) + 1))
points = np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32)
config = make_config("cpu-quick", "igr", steps=8, batch_size=100,
                     network_overrides={"hidden_layers": 1, "width": 8, "skip_layers": ()})
fitter = Fitter(points / np.linalg.norm(points, axis=1, keepdims=True), dataclasses.replace(config, chunk_steps=4))
counts.clear()
next(fitter.run())
print(json.dumps({"folder": str(folder), "compile_seconds": fitter.summary()["compile_seconds"],
                  "requests": counts.get("/jax/compilation_cache/compile_requests_use_cache", 0),
                  "hits": counts.get("/jax/compilation_cache/cache_hits", 0)}))
"""


def _first_chunk(cache: Path) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", compilation_cache.ENV_VAR: str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", FIRST_CHUNK], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_every_program_of_its_first_chunk_from_the_cache(tmp_path):
    cache = tmp_path / "jax-cache"
    first = _first_chunk(cache)
    assert first["folder"] == str(cache)
    assert first["requests"] > 0 and first["hits"] == 0  # a cold cache: everything compiled
    assert any(cache.iterdir())
    second = _first_chunk(cache)
    assert second["requests"] == first["requests"]
    assert second["hits"] == second["requests"]  # nothing compiled
    assert second["compile_seconds"] < first["compile_seconds"]


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "here"))
    assert compilation_cache.default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv(compilation_cache.ENV_VAR, "off")
    assert compilation_cache.default_cache_dir() is None
    assert compilation_cache.enable_compilation_cache() is None
    monkeypatch.delenv(compilation_cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert compilation_cache.default_cache_dir() == tmp_path / "xdg" / "diffcd" / "jax"


def test_importing_diffcd_leaves_jax_configuration_alone():
    code = ("import jax; before = jax.config.jax_compilation_cache_dir; import diffcd, diffcd.fit, "
            "diffcd.compilation_cache; assert jax.config.jax_compilation_cache_dir == before, 'changed'")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

#!/usr/bin/env bash
# The GPU check of issue 11, one run of about 8 minutes on one H200 (python -m benchmarks.speed
# --gpu-report): paper-preset DiffCD steps/s at each matmul precision (highest, high, default),
# the app's first-fit latency (gpu-demo on the torus: cold compilation cache, cached, after the
# start-up warm-up), and a whole 40k-step paper DiffCD fit as the paper runs it (fp32,
# synchronous seed refresh) and the fast way (TF32 training passes, overlapped refresh): wall
# time, compile, seed refreshes and how much of them overlapped training, final 512³ mesh,
# Chamfer and normal angle against the ground truth, the two fields' difference.
#
# Usage, from the repository root of a machine with an NVIDIA GPU and JAX's CUDA build:
#   bash benchmarks/gpu_check.sh [OUT_DIR]       # results: OUT_DIR/speed-gpu-report.{md,json}
#   bash benchmarks/gpu_check.sh OUT_DIR encodings
#     instead: whole gpu-demo-size DiffCD fits (8x256, 4,000 steps) of the bunny and dragon scans
#     with the plain network, 6 Fourier bands (DiffCD's λ = 0.02, as in cpu-quick-fourier) and the
#     16³..128³ grid (benchmarks/encodings.py --preset gpu-demo), compile included: the data for a
#     GPU Space's encoded preset, OUT_DIR/encodings-gpu.{md,json}.
# OUT_DIR defaults to $OUT when set (the device tool's folder), else benchmarks/results.
# Each part is written as soon as it is measured, so a run cut off by GPU_CHECK_TIMEOUT (default
# 560 s) keeps what it measured. GPU_CHECK_STEPS shortens the two whole fits (default: 40,000).
#
# A machine without network but with JAX, Flax, Optax, Orbax, SciPy, scikit-image and
# safetensors (the H200 image) lacks only trimesh: bring it as a wheel in .whl/, which is
# installed into /tmp/site first. Prepare it here, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl trimesh==5.2.0
# and pass `.whl` in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${1:-${OUT:-benchmarks/results}}
mkdir -p "$OUT_DIR"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 - <<'EOF'
import jax
print("jax", jax.__version__, jax.devices())
if jax.default_backend() != "gpu":
    raise SystemExit("JAX sees no GPU: install JAX's CUDA build (pip install -U 'jax[cuda12]').")
EOF

export PYTHONUNBUFFERED=1
# A fresh persistent cache, so that "cold" compile times are cold.
export DIFFCD_COMPILATION_CACHE=$(mktemp -d /tmp/diffcd-cache.XXXXXX)
if [ "${2:-speed}" = encodings ]; then
  set +e
  timeout "${GPU_CHECK_TIMEOUT:-560}" python3 -m benchmarks.encodings --preset gpu-demo \
    --cases bunny-scan dragon-scan --variants mlp fourier-6-eik0.02 grid-128 2>&1 | tee "$OUT_DIR/gpu-check-encodings.log"
  status=${PIPESTATUS[0]}
  set -e
  cp benchmarks/results/encodings-gpu.* "$OUT_DIR"/ 2>/dev/null || true
  exit "$status"
fi
steps=()
if [ -n "${GPU_CHECK_STEPS:-}" ]; then steps=(--full-fit-steps "$GPU_CHECK_STEPS"); fi
set +e
timeout "${GPU_CHECK_TIMEOUT:-560}" python3 -m benchmarks.speed --gpu-report --steps 100 --repeats 3 \
  --out-dir "$OUT_DIR" "${steps[@]}" 2>&1 | tee "$OUT_DIR/gpu-check.log"
status=${PIPESTATUS[0]}
set -e
[ "$status" = 124 ] && echo "gpu_check: stopped at the time limit; $OUT_DIR holds the parts measured" >&2
exit "$status"

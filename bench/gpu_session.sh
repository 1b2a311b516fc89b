#!/usr/bin/env bash
# What a session with a lent GPU machine runs there (the `device` tool of this workplace),
# in as few calls as possible: each call is at most 10 minutes and a session has 30
# minutes of device time in all, machine start included.
#
# The machine has no network; its python3 has JAX (with the CUDA 13 plugin, which brings
# the `nvidia-cuda-nvrtc` 13 wheel), scikit-build-core, nanobind, CMake, ninja, pytest,
# hypothesis and filelock, but not platformdirs (nor pykeops). Before the first call,
# here, in the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl platformdirs
#
# then call the device with carry [".whl"] and one of (steps run in order, logs and
# reports land in $OUT):
#
#   bash bench/gpu_session.sh install test          # fast suite, cuda params included (~5-8 min)
#   bash bench/gpu_session.sh install paths         # reductions and stage tests with each
#                                                   # JAX_LAZY_CUDA_INNER / SQDIST path
#   bash bench/gpu_session.sh install bench-quick   # bench/gpu.py --quick (or `bench`: all rows)
#   bash bench/gpu_session.sh install gpu cuda bench-small
#                                                   # a 15-minute lease: the GPU-only tests
#                                                   # (stage paths, tuning, handler), every
#                                                   # cuda-parametrised test (slow ones too,
#                                                   # no tuning), 4 bench rows without pykeops
#   bash bench/gpu_session.sh install ranges        # block-sparse ranges (issue 13): their
#                                                   # tests on the cuda backend, then the
#                                                   # ranges vs dense Gaussian sum and Sinkhorn
#                                                   # (bench/ranges.py, --backend cuda)
#
# STEP_TIMEOUT (seconds, default 600) bounds each step's commands, STEP_TIMEOUT_<step>
# (e.g. STEP_TIMEOUT_cuda=180) one step's; they are stopped with SIGINT, so that pytest
# still prints the failures it has seen.
#
# Every call re-installs: the machine is bare again once it has gone back (30 s idle).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/jax_lazy_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 JAX_LAZY_CACHE_DIR=/tmp/jax_lazy_cache
# several pytest workers share the GPU: no preallocation of 75% of its memory each
export XLA_PYTHON_CLIENT_PREALLOCATE=false

install() {
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation \
      -C build-dir=/tmp/jax_lazy_build -C cmake.define.JAX_LAZY_REQUIRE_XLA_FFI=ON -e . \
      2>&1 | tail -20 || return 1
  "$PY" - <<'PY' 2>&1 | tee "$OUT/install.txt"
import jax, jax_lazy
from jax_lazy.backends import cuda, nvrtc
print("jax", jax.__version__, jax.devices())
print("nvrtc", nvrtc.status() or (nvrtc.version(), nvrtc.library_path()))
print("cuda backend:", cuda.available() or "available")
jax_lazy.doctor()
PY
}


run_tests() {
  "${T[@]}" "$PY" -m pytest -m "not slow" -q -n 8 -p no:cacheprovider 2>&1 | tee "$OUT/test.log" | tail -40
}

# Each inner-product path of the stage on the GPU (test_inner_stage_on_the_gpu sets the
# switches per case), the launch-configuration measurement, then the backend-parametrised
# reductions with the stage off and on register tiles only.
run_paths() {
  run_gpu_only 2>&1 | tail -8
  local inner
  for inner in fma off; do
    echo "== JAX_LAZY_CUDA_INNER=$inner"
    JAX_LAZY_CUDA_INNER=$inner JAX_LAZY_TEST_BACKENDS=cuda \
      "${T[@]}" "$PY" -m pytest -q -n 8 -p no:cacheprovider tests/test_reductions.py tests/test_transforms.py 2>&1 | tail -5
  done
}

# The tests that need a GPU: each inner-product path of the stage, the real
# launch-configuration measurement, the cuda FFI handler.
run_gpu_only() {
  "${T[@]}" "$PY" -m pytest -q -n 8 -p no:cacheprovider -rfE tests/test_cuda_host.py::test_inner_stage_on_the_gpu \
    tests/test_tuning.py tests/test_cuda_handler.py
}

# Every test parametrised by backend, on the cuda backend only, slow ones included; the
# launch measurement off (it runs once per kernel, and run_gpu_only tests it).
run_cuda_params() {
  JAX_LAZY_TEST_BACKENDS=cuda JAX_LAZY_CUDA_TUNE=0 "${T[@]}" "$PY" -m pytest -q -n 12 -p no:cacheprovider -rfE \
    -m "slow or not slow" -k "not test_fuzz_many and not four_devices" \
    tests/test_forward_transpose.py tests/test_reductions.py tests/test_transforms.py tests/test_grad.py \
    tests/test_ops.py tests/test_fuzz.py tests/test_special_values.py tests/test_empty.py tests/test_kinks.py \
    tests/test_large_sizes.py tests/test_shared_subformulas.py tests/test_ranges_backends.py tests/test_ranges.py
}

# Block-sparse ranges on the GPU: the backend contract and the public API (every
# reduction, both axes, batch, grad/jvp/vmap), the ranges kernels with each stage path,
# then the timing of ranges against dense (truncated Gaussian sum on 1e5 clustered points,
# 5 % of the blocks kept; multiscale Sinkhorn), written to $OUT/benchmarks_ranges.md.
run_ranges() {
  JAX_LAZY_TEST_BACKENDS=cuda JAX_LAZY_CUDA_TUNE=0 "${T[@]}" "$PY" -m pytest -q -n 8 -p no:cacheprovider -rfE \
    -m "slow or not slow" tests/test_ranges_backends.py tests/test_ranges.py \
    "tests/test_cuda_host.py::test_ranges_with_the_stage_on_the_gpu"
  "${T[@]}" "$PY" bench/run.py --ranges --backend cuda --rounds 5 --sinkhorn-rounds 3 --out "$OUT/benchmarks_ranges.md"
}

for step in "$@"; do
  echo "=== $step $(date +%T)"
  limit="STEP_TIMEOUT_${step//-/_}"
  T=(timeout -s INT -k 15 "${!limit:-${STEP_TIMEOUT:-600}}")
  case "$step" in
    install) install ;;
    test) run_tests ;;
    paths) run_paths 2>&1 | tee "$OUT/paths.log" ;;
    gpu) run_gpu_only 2>&1 | tee "$OUT/gpu_only.log" | tail -40 ;;
    cuda) run_cuda_params 2>&1 | tee "$OUT/cuda_params.log" | tail -60 ;;
    ranges) run_ranges 2>&1 | tee "$OUT/ranges.log" | tail -60 ;;
    bench-small) "${T[@]}" "$PY" bench/gpu.py --no-keops --budget 3 --repeats 3 \
        --rows gauss3-1e5,grad3-1e5,gauss64-2e5,argkmin3-1e6 --out "$OUT/benchmarks_gpu.md" 2>&1 | tail -40 ;;
    bench-quick) "$PY" bench/gpu.py --quick --out "$OUT/benchmarks_gpu.md" 2>&1 | tail -40 ;;
    bench) "$PY" bench/gpu.py --out "$OUT/benchmarks_gpu.md" 2>&1 | tail -40 ;;
    *) echo "unknown step $step (install, test, paths, gpu, cuda, ranges, bench-quick, bench-small, bench)"; exit 2 ;;
  esac || { echo "step $step failed"; [ "$step" != install ] || exit 1; failed=1; }
done
echo "=== end $(date +%T)"
exit "${failed:-0}"

"""Times one Gaussian matvec (D, M=N) on the cuda backend under the stage switches given
in the environment (JAX_LAZY_CUDA_INNER / TF32 / SQDIST); one line per run.

    JAX_LAZY_CUDA_INNER=fma python bench/gpu_variants.py 64 200000
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_lazy import Vi, Vj

D, N = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x, y = (jnp.asarray(rng.normal(size=(N, D)).astype(np.float32)) for _ in range(2))
b = jnp.asarray(rng.normal(size=(N,)).astype(np.float32))
s2 = 2.0 * D


@jax.jit
def f(x, y, b):
    return ((-Vi(x).sqdist(Vj(y)) / s2).exp() * Vj(b[:, None])).sum(axis=1, backend="cuda")[:, 0]


f(x, y, b).block_until_ready()
best = np.inf
for _ in range(3):
    t = time.perf_counter()
    out = f(x, y, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
ref = (np.exp(-((np.asarray(x[:64], np.float64)[:, None] - np.asarray(y, np.float64)[None]) ** 2).sum(-1) / s2)
       @ np.asarray(b, np.float64))
err = np.abs(np.asarray(out[:64]) - ref).max() / np.abs(ref).max()
sw = {k: v for k, v in os.environ.items() if k.startswith("JAX_LAZY_CUDA")}
print(f"D={D} N={N} {sw}: {best * 1e3:.1f} ms, {N * N / best / 1e9:.0f} G pairs/s, err {err:.1e}", flush=True)

"""Python floats as runtime parameters (issue 12, item 6): a Gaussian matvec at 5 bandwidths
outside ``jit`` (M = N = 2000, D = 3, float32, the cpu backend by "auto"), timed per call,
with the C++ compiles and plans it made. Before floats were parameters each bandwidth was a
new formula (5 compiles); now one kernel serves them all.

    JAX_LAZY_CACHE_DIR=$(mktemp -d) python bench/float_params.py   # a cold kernel cache
"""
import time

import numpy as np
import jax.numpy as jnp
from jax_lazy import Vi, Vj, compilers
from jax_lazy import primitive

rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(2000, 3)), jnp.float32)
y = jnp.asarray(rng.normal(size=(2000, 3)), jnp.float32)
b = jnp.asarray(rng.normal(size=(2000, 1)), jnp.float32)
t0 = time.perf_counter()
times = []
for s in (0.5, 0.75, 1.25, 1.5, 2.5):
    t = time.perf_counter()
    out = (-(Vi(x).sqdist(Vj(y))) * (1 / s**2) ).exp() @ b[:, 0]
    out.block_until_ready()
    times.append(time.perf_counter() - t)
tot = time.perf_counter() - t0
print(f"total {tot:.2f} s, per call {[round(t, 3) for t in times]}, C++ compiles {len(compilers.build_times)}, "
      f"plans {primitive._executable.cache_info().currsize}")

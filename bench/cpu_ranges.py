"""Block-sparse cpu kernels (issue 13): each reduction family with and without ranges,
M = N = 20,000, D = 3, float32, the blocks of ``tests/oracle.random_ranges`` (rows and
columns cut at random into 100 blocks each, 5 % of the (row, column) block pairs kept:
4.72 % of the pairs). Work, not wall time: the CPU time of the process with one kernel
thread (``time.process_time``), best of 5 calls after a warm-up, so that other loads on the
machine weigh less. "efficiency": the dense time per pair over the ranges time per kept pair.

    JAX_LAZY_NUM_THREADS=1 python bench/cpu_ranges.py [Sum LogSumExp Min_ArgMin ArgKMin]
"""
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import oracle  # noqa: E402
from jax_lazy import Vi, Vj  # noqa: E402

M = N = 20000


def reduction(name, x, y, h, ranges):
    d2 = Vi(x).sqdist(Vj(y))
    if name == "Sum":
        return ((-d2).exp() * Vj(h)).sum(1, ranges=ranges, backend="cpu")
    if name == "LogSumExp":
        return (-d2 + Vj(h)).logsumexp(1, ranges=ranges, backend="cpu")
    if name == "Min_ArgMin":
        return d2.min_argmin(1, ranges=ranges, backend="cpu")
    if name == "ArgKMin":
        return d2.argKmin(8, 1, ranges=ranges, backend="cpu")
    raise ValueError(name)


def cpu_time(fn, *args, rounds=5):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        jax.block_until_ready(fn(*args))
        best = min(best, time.process_time() - t)
    return best


def main(names):
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.normal(size=(n, 3)), jnp.float32) for n in (M, N))
    h = jnp.asarray(rng.normal(size=(N, 1)), jnp.float32)
    six, mask = oracle.random_ranges(rng, M, N, (), (100, 100), 0.05)
    six = tuple(jnp.asarray(a, jnp.int32) for a in six)
    kept = mask.mean()
    print(f"M = N = {M}, kept pairs {kept:.2%} (ideal speed-up x{1 / kept:.1f})")
    print("| reduction | dense | ranges | speed-up | efficiency |\n|---|---|---|---|---|")
    for name in names:
        fn = jax.jit(lambda x, y, h, r, name=name: reduction(name, x, y, h, r))
        dense, sparse = cpu_time(fn, x, y, h, None), cpu_time(fn, x, y, h, six)
        print(f"| {name} | {dense * 1e3:.1f} ms | {sparse * 1e3:.1f} ms | x{dense / sparse:.1f} | "
              f"{dense * kept / sparse:.0%} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["Sum", "LogSumExp", "Min_ArgMin", "ArgKMin"])

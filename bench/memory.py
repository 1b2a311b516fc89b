"""Peak memory of a Gaussian kernel sum with M = N = n under jit (default 1e5).

    python bench/memory.py [n] [--backend jnp]

Prints one markdown row: n, backend, wall time of the second call, pairs/s, peak RSS of
the process and what the dense M x N float32 matrix would need. The peak RSS includes the
Python/JAX runtime (~200 MiB).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_lazy import Vi, Vj


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100_000)
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args(argv)
    n = args.n
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.normal(size=(n, 3)), jnp.float32) for _ in range(2))
    b = jnp.asarray(rng.normal(size=(n, 1)), jnp.float32)

    @jax.jit
    def gauss(x, y, b):
        return ((-Vi(x).sqdist(Vj(y)) / 2).exp() * Vj(b)).sum(axis=1, backend=args.backend)

    gauss(x, y, b).block_until_ready()
    t = time.perf_counter()
    out = gauss(x, y, b).block_until_ready()
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    dense = n * n * 4 / 2**30
    print("| n | backend | time (s) | pairs/s | peak RSS (MiB) | dense matrix (GiB) |")
    print("|---|---|---|---|---|---|")
    print(f"| {n:,} | {args.backend} | {wall:.2f} | {n * n / wall:.3g} | {peak:.0f} | {dense:.1f} |")
    assert bool(jnp.isfinite(out).all())
    return {"n": n, "seconds": wall, "peak_mib": peak}


if __name__ == "__main__":
    main()

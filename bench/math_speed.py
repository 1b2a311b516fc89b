"""Time of the cpu backend's sum over j of f(x_i * y_j) for the element-wise math functions
of prelude_cpu.h, against exp and a plain product: a function whose inner loop stayed scalar
(a libm call, a branch) shows as several times slower than exp.

Run: ``python bench/math_speed.py [M] [dtype]`` (defaults 4000, float32); prints
nanoseconds per (i, j) pair, best of 5.
"""

import sys
import time

import jax
import numpy as np

from jax_lazy import Vi, Vj

FUNCS = ["mult", "exp", "log", "sin", "asin", "acos", "atan", "tanh", "sigmoid", "erf", "xlogx", "sinxdivx",
         "floor", "atan2"]


def formula(name, x, y):
    f = Vi(x) * Vj(y)
    if name == "mult":
        return f
    if name == "atan2":
        return f.atan2(Vj(y))
    if name in ("log", "xlogx"):
        return getattr(f.abs(), name)()
    return getattr(f, name)()


def main(M=4000, dtype="float32"):
    jax.config.update("jax_enable_x64", dtype == "float64")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (M, 1)).astype(dtype), rng.uniform(-1, 1, (M, 1)).astype(dtype)
    for name in FUNCS:
        run = jax.jit(lambda x, y: formula(name, x, y).sum(axis=1, backend="cpu"))
        run(x, y).block_until_ready()
        best = min(_time(run, x, y) for _ in range(5))
        print(f"{name:9s} {best / M / M * 1e9:6.2f} ns/pair")


def _time(run, x, y):
    t = time.perf_counter()
    run(x, y).block_until_ready()
    return time.perf_counter() - t


if __name__ == "__main__":
    main(*(int(a) if a.isdigit() else a for a in sys.argv[1:]))

"""The cost of the numerics options on the cpu backend, measured side by side in one run.

    python bench/run.py --numerics [--size 20000] [--rounds 3]

A Gaussian kernel matvec (Sum, D = 3, E = 1) and a log-sum-exp over M = N = size float32
points, each with the default options, ``dtype_acc="float64"`` and
``sum_scheme="kahan_scheme"``; each is compiled ahead of time, then the three variants
are timed in turn, ``rounds`` times (best of each), so that the ratios compare runs made
under the same load. Also printed: each variant's largest relative error over the first
rows against float64 NumPy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

VARIANTS = {"default": {}, "dtype_acc=float64": {"dtype_acc": "float64"}, "kahan_scheme": {"sum_scheme": "kahan_scheme"}}
CHECK_ROWS = 64


def _cases(x, y, b):
    from jax_lazy import Vi, Vj

    K = lambda x: (-Vi(x).sqdist(Vj(y))).exp()  # noqa: E731
    X, Y = x[:CHECK_ROWS].astype(np.float64), y.astype(np.float64)
    d = ((X[:, None] - Y[None]) ** 2).sum(-1)
    return {
        "gauss matvec": (lambda x, **kw: (K(x) * Vj(b)).sum(1, backend="cpu", **kw), np.exp(-d) @ b.astype(np.float64)),
        "logsumexp": (lambda x, **kw: (-Vi(x).sqdist(Vj(y))).logsumexp(1, backend="cpu", **kw),
                      np.log(np.exp(-d).sum(1, keepdims=True))),
    }


def main(argv=None, command="python bench/run.py --numerics") -> str:
    import jax

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=20000, help="M = N (default 20000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of the three variants (default 3)")
    opts = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x, y = (rng.random((opts.size, 3), dtype=np.float32) for _ in range(2))
    b = rng.normal(size=(opts.size, 1)).astype(np.float32)
    lines = [f"# {command}: M = N = {opts.size}, float32, cpu backend, best of {opts.rounds} rounds",
             "| reduction | variant | time (ms) | vs default | max rel. error |", "|---|---|---|---|---|"]
    for name, (fn, ref) in _cases(x, y, b).items():
        calls = {v: jax.jit(lambda x, kw=kw: fn(x, **kw)).lower(x).compile() for v, kw in VARIANTS.items()}
        best = {v: float("inf") for v in VARIANTS}
        errs = {}
        for _ in range(opts.rounds):
            for v, call in calls.items():
                t = time.perf_counter()
                out = call(x).block_until_ready()
                best[v] = min(best[v], time.perf_counter() - t)
                errs[v] = float(np.abs(np.asarray(out[:CHECK_ROWS], np.float64) - ref).max() / np.abs(ref).max())
        for v in VARIANTS:
            lines.append(f"| {name} | {v} | {best[v] * 1e3:.1f} | {best[v] / best['default']:.2f}x | {errs[v]:.1e} |")
    text = "\n".join(lines)
    print(text)
    return text

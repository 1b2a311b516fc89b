"""Block-sparse reductions (``ranges=``, issue 13) against the same reductions without ranges.

    python bench/run.py --ranges [--quick] [--size 100000] [--sinkhorn-size 20000]
                                 [--backend cpu] [--rounds 3] [--sinkhorn-rounds 1]
                                 [--out docs/benchmarks.md]

(a) Truncated Gaussian sum. ``size`` points x and as many y, uniform in the unit cube
(D = 3, float32), labelled by a grid of cells holding ~CLUSTER points each
(``jax_lazy.cluster.grid_cluster``), sorted by cell (``sort_clusters``); the blocks
(i cell, j cell) whose centroids (``cluster_ranges_centroids``) are within the 5 %
quantile of the centroid distances are kept (``from_matrix``): 5 % of the blocks. The
Gaussian ``sum_j exp(-|x_i - y_j|^2 / 2 s^2) b_j`` (s = a fifth of the cell size) is
timed with and without the ranges, each compiled ahead of time, best of ``rounds``
rounds that call both in turn (same load), after a warm-up. Printed: the times, their ratio, the kept fraction of pairs,
the largest error of the ranges result against the float64 NumPy sum over the kept pairs
(the first CHECK_ROWS rows, relative to the largest value) and, for scale, the
truncation error (ranges against the dense result).

(b) Multiscale Sinkhorn, as geomloss' ``SamplesLoss("sinkhorn", scaling=SCALING,
truncate=TRUNCATE)`` does it: entropic OT between two ``sinkhorn_size``-point clouds
(D = 2, uniform weights, x in the unit square, y in an annulus; cost |x - y|^2 / 2),
epsilon-scaling from the diameter down to BLUR (one log-domain update of f, then of g,
per epsilon; FINAL_ITERS more at BLUR, enough for both runs' costs to agree to ~1e-4:
geomloss' symmetric averaged updates converge too slowly at this blur for a
comparison). Full resolution: every update a dense LogSumExp over the points. Multiscale: the
points clustered by a grid of cell CELL; while the blur is above the cell size, the
updates run on the clusters (centroids, cluster masses); then the fine potentials are
extrapolated from the coarse ones (one c-transform against the clusters), the blocks
kept where ``f_I + g_J - C(c_I, c_J) > -TRUNCATE * eps`` on the coarse potentials and
centroids (geomloss' kernel truncation), and the remaining updates run on the points
with those ranges. Printed: both times (compiled beforehand; the multiscale time
includes the clustering and ``from_matrix``), the kept fraction of pairs and the
difference of the transport costs ``<a, f> + <b, g>``. Timed as (a), in rounds.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

CLUSTER = 250  # points per cell of (a)
KEEP = 0.05  # fraction of the blocks kept in (a)
CHECK_ROWS = 200
SCALING, BLUR, FINAL_ITERS, TRUNCATE = 0.5, 0.02, 20, 5.0
CELL = 0.05  # cluster size of (b), above BLUR


def _best(calls, rounds: int) -> list[tuple[float, float, object]]:
    """``calls`` (pairs ``(fn, args)``, each compiled already or cheap to retrace): one
    warm-up call each, then ``rounds`` rounds calling each in turn, so that the methods
    compared run under the same load of the shared machine. Returns each one's best wall
    time, best CPU time of the process (all threads: the work, which other loads on the
    machine change less) and last result."""
    import jax

    outs = [jax.block_until_ready(fn(*args)) for fn, args in calls]
    wall, cpu = [float("inf")] * len(calls), [float("inf")] * len(calls)
    for _ in range(rounds):
        for n, (fn, args) in enumerate(calls):
            t, c = time.perf_counter(), time.process_time()
            outs[n] = jax.block_until_ready(fn(*args))
            wall[n] = min(wall[n], time.perf_counter() - t)
            cpu[n] = min(cpu[n], time.process_time() - c)
    return list(zip(wall, cpu, outs))


def _times(base, new) -> str:
    """Table cells: the two methods' wall and CPU times, and the speed-ups."""
    ms = lambda t: f"{t * 1e3:.0f} ms" if t >= 0.1 else f"{t * 1e3:.1f} ms"  # noqa: E731
    return (f"{ms(base[0])}, {ms(base[1])} | {ms(new[0])}, {ms(new[1])} | "
            f"x{base[0] / new[0]:.1f}, x{base[1] / new[1]:.1f}")


def _clustered(pts, cell):
    """Points sorted by grid cell: (points, (C, 2) ranges, centroids, masses, labels)."""
    from jax_lazy import cluster

    lab = cluster.grid_cluster(pts, cell)
    pts, lab = cluster.sort_clusters(pts, lab)
    ranges, cent, mass = cluster.cluster_ranges_centroids(pts, lab)
    return pts, ranges, cent, mass, lab


def _pairs(six) -> int:
    r, s, red = (np.asarray(a, np.int64) for a in six[:3])
    per_block = np.diff(np.concatenate([[0], np.cumsum(red[:, 1] - red[:, 0])])[np.concatenate([[0], s])])
    return int(((r[:, 1] - r[:, 0]) * per_block).sum())


# ---------------------------------------------------------------- (a) truncated Gaussian sum


def gaussian(size: int, backend: str, rounds: int) -> list[str]:
    import jax
    import jax.numpy as jnp
    from jax_lazy import Vi, Vj, cluster

    rng = np.random.default_rng(0)
    cell = (CLUSTER / size) ** (1 / 3)
    x, rx, cx, _, lx = _clustered(rng.random((size, 3), dtype=np.float32), cell)
    y, ry, cy, _, ly = _clustered(rng.random((size, 3), dtype=np.float32), cell)
    b = jnp.asarray(rng.normal(size=(size, 1)).astype(np.float32))
    dist = np.sqrt(((np.asarray(cx)[:, None] - np.asarray(cy)[None]) ** 2).sum(-1))
    thr = float(np.quantile(dist, KEEP))
    keep = dist <= thr
    six = cluster.from_matrix(rx, ry, keep)
    s = cell / 5  # the kept blocks hold every pair closer than ~cell: truncation at ~5 s

    def gauss(x, y, b, six=None):
        K = (-Vi(x).sqdist(Vj(y)) / (2 * s * s)).exp()
        return (K * Vj(b)).sum(1, ranges=six, backend=backend)

    sparse = jax.jit(gauss).lower(x, y, b, six).compile()
    dense = jax.jit(gauss).lower(x, y, b).compile()
    (*t_dense, out_dense), (*t_sparse, out_sparse) = _best([(dense, (x, y, b)), (sparse, (x, y, b, six))], rounds)
    X, Y, B = (np.asarray(a, np.float64) for a in (x[:CHECK_ROWS], y, b))
    mask = keep[np.asarray(lx)[:CHECK_ROWS]][:, np.asarray(ly)]
    kb = np.exp(-((X[:, None] - Y[None]) ** 2).sum(-1) / (2 * s * s)) * B[:, 0]
    want = np.where(mask, kb, 0).sum(1)
    got = np.asarray(out_sparse[:CHECK_ROWS, 0], np.float64)
    scale = np.abs(want).max()
    kept = _pairs(six) / size**2
    trunc = np.abs(np.asarray(out_sparse, np.float64) - np.asarray(out_dense, np.float64)).max()
    return [
        f"(a) truncated Gaussian sum, M = N = {size:.0e}, D = 3, float32, backend {backend!r}: {len(rx)} x {len(ry)} "
        f"clusters of ~{CLUSTER} points, blocks within {thr:.3f} kept ({keep.mean():.1%} of the blocks), s = {s:.4f}",
        "",
        "| without ranges: wall, CPU | with ranges: wall, CPU | speed-up: wall, CPU | kept pairs (1 / fraction) "
        "| max error vs kept pairs (f64) | truncation error |",
        "|---|---|---|---|---|---|",
        f"| {_times(t_dense, t_sparse)} | {kept:.2%} (x{1 / kept:.1f}) | "
        f"{np.abs(got - want).max() / scale:.1e} | {trunc / np.abs(np.asarray(out_dense)).max():.1e} |",
    ]


# ---------------------------------------------------------------- (b) multiscale Sinkhorn


def _epsilons(diameter: float) -> list[float]:
    """geomloss' epsilon-scaling: blurs diameter * SCALING^k down to BLUR, squared, then
    FINAL_ITERS more at BLUR^2."""
    blurs = []
    blur = diameter
    while blur > BLUR:
        blurs.append(blur)
        blur *= SCALING
    return [b * b for b in blurs + [BLUR] * (1 + FINAL_ITERS)]


def _softmin(backend):
    """``-eps log sum_j exp(h_j - |x_i - y_j|^2 / (2 eps))``: the Sinkhorn update, ``h``
    (N,) the log-weights plus the other potential over eps."""
    import jax
    import jax.numpy as jnp
    from jax_lazy import Pm, Vi, Vj

    def softmin(eps, x, y, h, six=None):
        F = Vj(h[:, None]) - Vi(x).sqdist(Vj(y)) * Pm(jnp.reshape(0.5 / eps, (1,)))
        return -eps * F.logsumexp(1, ranges=six, backend=backend)[:, 0]

    return jax.jit(softmin)


def _sinkhorn_steps(softmin, epsilons, x, y, loga, logb, f, g, six=None):
    from jax_lazy import cluster

    six_t = cluster.swap_axes(six)
    for eps in epsilons:  # alternate: f, then g from the new f
        f = softmin(eps, x, y, logb + g / eps, six)
        g = softmin(eps, y, x, loga + f / eps, six_t)
    return f, g


def sinkhorn(size: int, backend: str, rounds: int) -> list[str]:
    import jax.numpy as jnp
    from jax_lazy import cluster

    rng = np.random.default_rng(1)
    x = rng.random((size, 2), dtype=np.float32)
    theta = rng.random(size) * 2 * np.pi  # y: an annulus around the square's centre
    r = 0.25 + 0.2 * np.sqrt(rng.random(size))
    y = (0.5 + np.stack([r * np.cos(theta), r * np.sin(theta)], 1)).astype(np.float32)
    epsilons = _epsilons(float(np.sqrt(2)))
    softmin = _softmin(backend)
    loga = jnp.full((size,), -np.log(size), jnp.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def full():
        zero = jnp.zeros((size,), jnp.float32)
        return _sinkhorn_steps(softmin, epsilons, x, y, loga, loga, zero, zero)

    state = {}

    def multiscale():
        xs, rx, cx, ax, _ = _clustered(x, CELL)
        ys, ry, cy, by, _ = _clustered(y, CELL)
        lax_, lby = jnp.log(ax / size), jnp.log(by / size)
        k = next(n for n, e in enumerate(epsilons) if np.sqrt(e) <= CELL)
        fc, gc = _sinkhorn_steps(softmin, epsilons[:k], cx, cy, lax_, lby, jnp.zeros_like(lax_), jnp.zeros_like(lby))
        eps = epsilons[k]
        cost = ((np.asarray(cx)[:, None] - np.asarray(cy)[None]) ** 2).sum(-1) / 2
        keep = np.asarray(fc)[:, None] + np.asarray(gc)[None] - cost > -TRUNCATE * eps
        six = cluster.from_matrix(rx, ry, keep)
        f = softmin(eps, xs, cy, lby + gc / eps)  # extrapolated to the points: c-transforms of the coarse ones
        g = softmin(eps, ys, cx, lax_ + fc / eps)
        state.update(six=six, keep=keep)
        return _sinkhorn_steps(softmin, epsilons[k:], xs, ys, loga, loga, f, g, six)

    (*t_full, (f1, g1)), (*t_ms, (f2, g2)) = _best([(full, ()), (multiscale, ())], rounds)
    c_full = float(jnp.mean(f1) + jnp.mean(g1))
    c_ms = float(jnp.mean(f2) + jnp.mean(g2))
    nfine = len(epsilons) - next(n for n, e in enumerate(epsilons) if np.sqrt(e) <= CELL)
    return [
        f"(b) multiscale Sinkhorn, M = N = {size:.0e}, D = 2, float32, backend {backend!r}: {len(epsilons)} updates "
        f"(blur {np.sqrt(2):.2f} -> {BLUR}, scaling {SCALING}, {FINAL_ITERS} more at the end), the last {nfine} on "
        f"the points; clusters of cell {CELL} ({state['keep'].shape[0]} x {state['keep'].shape[1]}), "
        f"truncate {TRUNCATE}",
        "",
        "| full resolution: wall, CPU | multiscale + ranges: wall, CPU | speed-up: wall, CPU "
        "| kept pairs (fine updates) | OT cost (full) | cost difference |",
        "|---|---|---|---|---|---|",
        f"| {_times(t_full, t_ms)} | {_pairs(state['six']) / size**2:.2%} | "
        f"{c_full:.6f} | {abs(c_ms - c_full):.1e} ({abs(c_ms - c_full) / abs(c_full):.1e} rel.) |",
    ]


def main(argv=None, command="python bench/run.py --ranges") -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (2e4 and 4e3 points)")
    ap.add_argument("--size", type=int, help="points of (a) (default 1e5; 2e4 with --quick)")
    ap.add_argument("--sinkhorn-size", type=int, help="points of (b) (default 2e4; 4e3 with --quick)")
    ap.add_argument("--backend", default="cpu", help="jax_lazy backend (default cpu)")
    ap.add_argument("--rounds", type=int, default=3, help="timed calls of (a) after the warm-up (default 3)")
    ap.add_argument("--sinkhorn-rounds", type=int, default=1, help="timed runs of (b) after the warm-up (default 1)")
    ap.add_argument("--out", help="write the tables into this markdown file's section 'Block-sparse ranges'")
    opts = ap.parse_args(argv)
    size = opts.size or (20000 if opts.quick else 100000)
    ssize = opts.sinkhorn_size or (4000 if opts.quick else 20000)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    lines = gaussian(size, opts.backend, opts.rounds) + [""] + sinkhorn(ssize, opts.backend, opts.sinkhorn_rounds)
    text = "\n".join([f"Command: `{command}` ({time.perf_counter() - t0:.0f} s in all; best of {opts.rounds} calls "
                      f"(a) and {opts.sinkhorn_rounds} runs (b) after a warm-up, compiles excluded; CPU: the "
                      f"process's CPU time, all threads; load average {load:.1f} at the start, "
                      f"{os.getloadavg()[0]:.1f} at the end: the machine is shared)", ""] + lines)
    text += ("\n\nReading: (a) skips all but the kept pairs, so the ideal speed-up is 1 / (kept fraction); the "
             "CPU-time ratio is the work ratio, which the shared machine's load disturbs less than wall time. "
             "(b) the multiscale time includes the coarse updates, the clustering and `from_matrix`; its fine "
             "updates reduce over the kept pairs only (geomloss' truncation keeps more blocks than (a)), and its "
             "transport cost agrees with the full-resolution one to the printed difference.")
    print(text)
    if opts.out:
        _write_section(opts.out, text)
    return text


SECTION = "## Block-sparse ranges"


def _write_section(path: str, text: str) -> None:
    """Replace (or append) the section SECTION of the markdown file ``path``."""
    from pathlib import Path

    from sharded import splice

    splice(Path(path), f"{SECTION}\n\n{text}\n", SECTION)

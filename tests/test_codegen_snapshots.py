"""Snapshots of a few generated kernels: a change of the code generator shows up in review.

Regenerate after an intended change with ``JAX_LAZY_UPDATE_SNAPSHOTS=1 pytest
tests/test_codegen_snapshots.py`` and read the diff.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from jax_lazy import Vi, Vj, Pm
from jax_lazy import plan as plan_mod
from jax_lazy.backends import cpu
from jax_lazy.reductions import REDUCTIONS

HERE = Path(__file__).parent / "snapshots"
x = np.zeros((4, 3), np.float32)
b = np.zeros((4, 2), np.float32)
s = np.ones((1,), np.float32)

CASES = {
    "gauss_sum": (lambda: ((-Vi(x).sqdist(Vj(x)) / Pm(s)).exp() * Vj(b),), "Sum", None),
    "lse_weight": (lambda: (-Vi(x).sqdist(Vj(x)), Vj(b)), "LogSumExp", None),
    "argkmin": (lambda: (Vi(x).sqdist(Vj(x)),), "ArgKMin", 5),
    "max_argmax": (lambda: (Vi(x) * Vj(x),), "Max_ArgMax", None),
}


def _kernel_body(name):
    build, red, k = CASES[name]
    lazies = build()
    nodes, (vars_, *_rest) = lazies[0]._join(*lazies[1:])
    plan = plan_mod.Plan(tuple(nodes), REDUCTIONS[red], k, tuple(vars_), "float32", "cpu")
    source = cpu.kernel_source(plan)
    return source[source.index('extern "C"'):]  # the prelude is hand-written, not generated


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_kernel_matches_snapshot(name):
    body = _kernel_body(name)
    path = HERE / f"{name}.cpp"
    if os.environ.get("JAX_LAZY_UPDATE_SNAPSHOTS"):
        path.write_text(body)
    assert path.exists(), f"missing snapshot {path}: run with JAX_LAZY_UPDATE_SNAPSHOTS=1"
    assert body == path.read_text()

"""Large K and large D: the kernels neither crash nor take a compile time that grows with D.

- KMin's state (R rows x D components x K sorted (value, index) pairs) and the buffers
  of the chunked reductions used to be arrays on the thread stack: at D = 64, K = N =
  4096 (float64) they passed the 8 MiB stack and the process died of a segfault. Such
  runs go to a subprocess here, so that a crash fails the test instead of pytest.
- A node of dim D used to become D C++ statements; past ``codegen.LOOP_MIN_DIM`` vector
  ops are loops over arrays instead, so the source (and the compile time) of
  ``(x_i - y_j).min()`` no longer grows with D.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=900)


def test_kmin_large_state_cpu_subprocess():
    """K = N = 4096 lists of D = 64 components in float64 (8 MiB of state for the 2 rows of
    a block, more than a thread's stack): the cpu kernel keeps it on the heap; values
    and indices match a stable NumPy argsort of the float64 differences."""
    code = """
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        from jax_lazy import Vi, Vj
        rng = np.random.default_rng(0)
        M, N, D, K = 2, 4096, 64, 4096
        x, y = rng.standard_normal((M, D)), rng.standard_normal((N, D))
        vals, idx = (Vi(x) - Vj(y)).Kmin_argKmin(K, axis=1, backend="cpu")
        diff = x[:, None, :] - y[None, :, :]                       # (M, N, D), float64
        order = np.argsort(diff, axis=1, kind="stable")[:, :K]     # (M, K, D)
        np.testing.assert_array_equal(np.asarray(idx), order)
        np.testing.assert_array_equal(np.asarray(vals), np.take_along_axis(diff, order, axis=1))
        print("ok")
    """
    run = _run(code)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (run.returncode, run.stderr[-3000:])

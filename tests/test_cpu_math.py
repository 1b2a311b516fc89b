"""Accuracy of the CPU kernels' own vectorised exp (``jl_exp`` in
``jax_lazy/backends/kernels/prelude_cpu.h``) against NumPy in float64.

The formula ``Exp(Var)`` reduced over a single column returns exp(x) computed by the
generated kernel, so this measures exactly what every Gaussian kernel uses.
"""

import numpy as np
import pytest

from jax_lazy import Vi
from jax_lazy.backends import cpu

pytestmark = pytest.mark.skipif(cpu.available() is not None, reason=f"cpu backend unavailable: {cpu.available()}")


def _kernel_exp(x):
    return np.asarray(Vi(x[:, None]).exp().sum(axis=1, backend="cpu"))[:, 0]


def _ulps(got, x, dtype):
    ref = np.exp(x.astype(np.float64))
    return np.abs(got.astype(np.float64) - ref) / np.spacing(ref.astype(dtype)).astype(np.float64)


def test_exp_float32_within_2_ulps_on_the_normal_range():
    x = np.linspace(-87.0, 88.5, 200_001, dtype=np.float32)
    ulps = _ulps(_kernel_exp(x), x, np.float32)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])


def test_exp_float64_within_2_ulps_on_the_normal_range():
    with pytest.importorskip("jax").enable_x64(True):
        x = np.linspace(-700.0, 705.0, 200_001)
        ulps = _ulps(_kernel_exp(x), x, np.float64)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_special_values(dtype):
    import jax

    with jax.enable_x64(dtype == "float64"):
        x = np.array([-np.inf, -1e4, -800.0, -110.0, 0.0, -0.0, 1e4, np.inf, np.nan], dtype)
        got = _kernel_exp(x)
    assert got[0] == 0 and got[1] == 0 and got[2] == 0  # underflow gives 0 (via denormals)
    assert got[4] == 1 and got[5] == 1
    assert np.isposinf(got[6]) and np.isposinf(got[7])
    assert np.isnan(got[8])
    if dtype == "float32":  # exp(-110) is below the smallest float32 denormal
        assert got[3] == 0


def test_exp_float32_below_the_normal_range_is_tiny():
    """Below 2**-126 the result is a denormal or, where the thread flushes denormals to
    zero (XLA's CPU runtime does), 0: never a wrong large value."""
    x = np.linspace(-103.0, -87.5, 10_001, dtype=np.float32)
    got = _kernel_exp(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    assert (np.abs(got - ref) <= 2 * 2.0**-149).all() or (got <= 2.0**-126).all()
    assert (got >= 0).all()


def _kernel_log(x):
    return np.asarray(Vi(x[:, None]).log().sum(axis=1, backend="cpu"))[:, 0]


def test_log_float32_within_3_ulps():
    x = np.concatenate([np.logspace(-37, 38, 200_001), np.linspace(0.5, 2.0, 100_001)]).astype(np.float32)
    ref = np.log(x.astype(np.float64))
    ulps = np.abs(_kernel_log(x) - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 3.0, (ulps.max(), x[ulps.argmax()])


def test_log_float64_within_3_ulps():
    import jax

    with jax.enable_x64(True):
        x = np.concatenate([np.logspace(-300, 300, 200_001), np.linspace(0.5, 2.0, 100_001)])
        got = _kernel_log(x)
    ref = np.log(x)
    ulps = np.abs(got - ref) / np.spacing(np.abs(ref))
    assert ulps.max() <= 3.0, (ulps.max(), x[ulps.argmax()])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_special_values(dtype):
    import jax

    with jax.enable_x64(dtype == "float64"):
        got = _kernel_log(np.array([0.0, -1.0, np.inf, np.nan, 1.0], dtype))
    assert np.isneginf(got[0]) and np.isnan(got[1]) and np.isposinf(got[2]) and np.isnan(got[3]) and got[4] == 0

"""Accuracy of the CPU kernels' own vectorised exp, log, sin and cos (``jl_exp`` ... in
``jax_lazy/backends/kernels/prelude_cpu.h``) against NumPy in float64.

The formula ``Exp(Var)`` reduced over a single column returns exp(x) computed by the
generated kernel, so this measures exactly what every Gaussian kernel uses.
"""

import platform
import re
import subprocess

import numpy as np
import pytest

from jax_lazy import Vi, cache
from jax_lazy.backends import cpu

pytestmark = pytest.mark.skipif((cpu.available() or cpu.limitation()) is not None,
                                reason=f"cpu backend unavailable: {cpu.available() or cpu.limitation()}")


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


# --------------------------------------------------------------------------- sin, cos
# prelude_cpu.h documents within 1.5 ulp for |x| <= 1e5 (float32) and |x| <= 1e9 (float64),
# next to the zeros too (the reduced argument keeps its relative accuracy there). The tests
# allow 2 ulp: the float64 reference is np.longdouble where that is wider (x86), else
# NumPy's float64 sin, itself within half an ulp.

SIN_COS = {"sin": np.sin, "cos": np.cos}


def _kernel(op, x):
    return np.asarray(getattr(Vi(x[:, None]), op)().sum(axis=1, backend="cpu"))[:, 0]


def _trig_ulps(op, x, dtype):
    """|kernel - reference| in ulps of the reference rounded to dtype."""
    import jax

    wide = np.longdouble if dtype == np.float64 else np.float64
    with jax.enable_x64(dtype == np.float64):
        got = _kernel(op, x.astype(dtype))
    ref = SIN_COS[op](x.astype(dtype).astype(wide))
    ulp = np.spacing(np.abs(ref).astype(dtype)).astype(wide)
    return np.asarray(np.abs(got.astype(wide) - ref) / ulp, np.float64), got


def _near_multiples_of_pio2(k, dtype):
    """The dtype values nearest k pi/2 and their 2 neighbours each side: sin or cos is
    tiny there, and a naive reduction loses all its digits."""
    x = (k * (np.pi / 2)).astype(dtype)
    out, lo, hi = [x], x, x
    for _ in range(2):
        lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
        out += [lo, hi]
    return np.concatenate(out)


@pytest.mark.parametrize("op", ["sin", "cos"])
def test_sin_cos_float32_within_2_ulps_up_to_1e5(op):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-10.0, 10.0, 200_001), np.linspace(-1e5, 1e5, 400_001),
                        rng.uniform(-1e5, 1e5, 200_000), np.logspace(-30, 5, 100_000),
                        _near_multiples_of_pio2(np.arange(1, 63_662), np.float32)]).astype(np.float32)
    ulps, got = _trig_ulps(op, x, np.float32)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])
    mirrored = _kernel(op, -x)
    assert (mirrored == (-got if op == "sin" else got)).all()  # exactly odd / even


@pytest.mark.parametrize("op", ["sin", "cos"])
def test_sin_cos_float64_within_2_ulps_up_to_1e9(op):
    rng = np.random.default_rng(1)
    k = np.concatenate([np.arange(1, 100_000), rng.integers(1, 636_619_772, 100_000)])
    x = np.concatenate([np.linspace(-10.0, 10.0, 200_001), rng.uniform(-1e5, 1e5, 200_000),
                        rng.uniform(-1e9, 1e9, 200_000), np.logspace(-300, 9, 100_000),
                        _near_multiples_of_pio2(k, np.float64)])
    ulps, _ = _trig_ulps(op, x, np.float64)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sin_cos_special_values(dtype):
    import jax

    x = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -1e-30], dtype)
    with jax.enable_x64(dtype == "float64"):
        s = np.asarray(Vi(x[:, None]).sin().max(axis=1, backend="cpu"))[:, 0]  # Sum would add +0
        c = _kernel("cos", x)
    assert s[0] == 0 and not np.signbit(s[0]) and s[1] == 0 and np.signbit(s[1])
    assert np.isnan(s[2:5]).all() and np.isnan(c[2:5]).all()
    assert (s[5:] == x[5:]).all() and (c[[0, 1, 5, 6]] == 1).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sin_cos_beyond_the_range_stay_in_minus_1_1(dtype):
    """Past 1e5 (float32) / 1e9 (float64) the reduction loses bits: no accuracy is
    promised, but the values stay those of a sine: finite and in [-1, 1]."""
    import jax

    big = np.logspace(5, 38, 10_000) if dtype == "float32" else np.logspace(9, 308, 10_000)
    x = np.concatenate([big, -big, [np.finfo(dtype).max]]).astype(dtype)
    with jax.enable_x64(dtype == "float64"):
        for op in ("sin", "cos"):
            v = _kernel(op, x)
            assert (np.abs(v) <= 1).all(), op


_MATH = ("exp", "log", "sin", "cos", "sqrt", "rsqrt")
_SIMD_LOOPS = "#define JL_T {T}\n#define JL_IDX int64_t\n{prelude}\n" + "".join(
    f"void {f}_loop(const T* __restrict in, T* __restrict out, int n) {{{{\n"
    f"#pragma omp simd\n  for (int w = 0; w < n; ++w) out[w] = jl_{f}(in[w]);\n}}}}\n" for f in _MATH)


@pytest.mark.parametrize("march", ["default", "-march=x86-64-v3"])
@pytest.mark.parametrize("T", ["float", "double"])
def test_math_simd_loops_call_no_libm_and_vectorise(T, march, tmp_path):
    """The point of our jl_exp, jl_log, jl_sin...: a libm call or a branch in them keeps
    the kernels' ``#pragma omp simd`` loops scalar. Compiled with the kernels' flags, and
    for AVX2 without AVX-512 (x86-64-v3: no mask registers, no int64 <-> double vector
    conversions, where GCC leaves ternaries as branches); the vectoriser's report is read
    where the compiler is GCC."""
    compiler = cache.find_compiler()
    if compiler is None:
        pytest.skip(cache.compiler_problem())
    if march != "default" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86-64 only")
    src = tmp_path / "loops.cpp"
    text = _SIMD_LOOPS.format(T=T, prelude=cpu._PRELUDE.read_text())
    src.write_text(text)
    loops = {str(n + 1) for n, line in enumerate(text.splitlines()) if "out[w] = jl_" in line}
    flags = [f for f in cache.default_flags() if f not in ("-shared", "-fPIC")]
    if march != "default":
        flags = [f for f in flags if not f.startswith("-march=")] + [march]
    gcc = "clang" not in compiler.identity.lower()
    cmd = [*compiler.argv, *flags, "-S", "-o", str(tmp_path / "loops.s"), str(src)]
    report = ["-fopt-info-vec-optimized"] if gcc else []
    proc = subprocess.run(cmd + report, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    asm = (tmp_path / "loops.s").read_text()
    assert not re.search(r"\b(call|jmp|bl|b)\s+\S*\b(exp|log|sin|cos|sqrt)f?\b", asm), "a jl_ function calls libm"
    if gcc:
        vectorised = set(re.findall(r":(\d+):\d+: optimized: loop vectorized", proc.stderr))
        missing = [text.splitlines()[int(n) - 1].strip() for n in loops - vectorised]
        assert not missing, missing

"""Accuracy of the CPU kernels' own vectorised exp, log, sin and cos (``jl_exp`` ... in
``jax_lazy/backends/kernels/prelude_cpu.h``) against NumPy in float64.

The formula ``Exp(Var)`` reduced over a single column returns exp(x) computed by the
generated kernel, so this measures exactly what every Gaussian kernel uses.
"""

import math
import platform
import re
import subprocess

import numpy as np
import pytest

import jax_lazy
from jax_lazy import Vi, compilers
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


def _whole_range(dtype):
    """Samples of [bound of the fast path / 2, largest finite value]: log-spaced, uniform
    over a few decades, and the values nearest k pi/2 at every scale (sin or cos is tiny
    there: a reduction that loses bits shows it first)."""
    rng = np.random.default_rng(2)
    top = np.log10(np.finfo(dtype).max) * (1 - 1e-12)
    lo = 3e4 if dtype == np.float32 else 3e8
    x = [np.logspace(np.log10(lo), top, 300_000), rng.uniform(lo, 30 * lo, 50_000), rng.uniform(1e15, 1e16, 50_000)]
    k = rng.integers(1, 2**20, 2_000)
    for scale in 2.0 ** np.arange(0, int(top * 3.32) - 21, 7):
        x.append(_near_multiples_of_pio2(k * scale, np.float64))
    if dtype == np.float64:  # the double nearest a multiple of pi/2 (relative distance 2^-61)
        x.append(np.array([6381956970095103 * 2.0**797, np.finfo(dtype).max]))
    x = np.concatenate(x)
    with np.errstate(over="ignore"):
        x = x[(x < np.finfo(dtype).max) & (x >= lo)].astype(dtype)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["sin", "cos"])
def test_sin_cos_within_2_ulps_over_the_whole_range(op, dtype):
    """Past the fast path's bound (2^16 in float, 2^29 in double) the lanes take the exact
    (Payne-Hanek) reduction: the same accuracy up to the largest finite value."""
    x = _whole_range(dtype)
    ulps, _ = _trig_ulps(op, x, dtype)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sin_cos_past_the_fast_range_inside_the_lane_loops(dtype):
    """sin / cos of (i, j) values in the vectorised loops (fused Sum, buffered Min): a
    kernel whose fast pass meets an argument past the fast reduction's range runs again
    with the exact one, for every column."""
    import jax

    big = 1e30 if dtype == np.float32 else 1e200
    x = np.array([0.5, 3e5, big, -7e9, 1.0], dtype)[:, None]
    ones = np.ones((70, 1), dtype)
    with jax.enable_x64(dtype == np.float64):
        f = (jax_lazy.Vi(x) * jax_lazy.Vj(ones))
        s = np.asarray(f.sin().sum(axis=1, backend="cpu"))[:, 0]
        c = np.asarray(f.cos().min(axis=1, backend="cpu"))[:, 0]
    ref = x[:, 0].astype(np.float64)
    np.testing.assert_allclose(s, 70 * np.sin(ref), rtol=1e-5 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(c, np.cos(ref), rtol=2e-7 if dtype == np.float32 else 3e-16)


# ---- the tables of 2/pi bits of prelude_cpu.h (JL_2OPI_F32, JL_2OPI_F64), from Python integers


def _arctan_inv(x: int, bits: int) -> int:
    """atan(1/x) 2^bits by its Taylor series in integers (error below n units, n terms)."""
    total, term, n, sign = 0, (1 << bits) // x, 1, 1
    while term:
        total += sign * (term // n)
        term //= x * x
        n, sign = n + 2, -sign
    return total


def _pi_scaled(bits: int, machin=((16, 5), (-4, 239))) -> int:
    """pi 2^bits (error a few hundred units), from a Machin-like formula."""
    return sum(c * _arctan_inv(x, bits) for c, x in machin)


def two_over_pi(bits: int, machin=((16, 5), (-4, 239))) -> int:
    """floor(2/pi 2^bits) (64 guard bits: exact unless 2/pi had 64 equal bits there)."""
    g = bits + 64
    return ((1 << (2 * g + 1)) // _pi_scaled(g, machin)) >> 64


def _table_f32() -> list[float]:
    """Row eb - 143, eb = 143 .. 254 (e = eb - 150): C_i = I_i 2^-(22 + 24 i), I_i = the
    24 bits of 2/pi ending at bit e + 22 + 24 i."""
    out = []
    for e in range(143 - 150, 255 - 150):
        for i in range(4):
            sh = e + 22 + 24 * i
            out.append(float((two_over_pi(sh) if sh >= 0 else 0) & 0xFFFFFF) * 2.0 ** -(22 + 24 * i))
    return out


def _table_f64() -> list[float]:
    """Entry n + 2: the integer of bits 24 n + 1 .. 24 n + 24 of 2/pi; zeros for n < 0."""
    return [0.0, 0.0] + [float(two_over_pi(24 * (n + 1)) & 0xFFFFFF) for n in range(50)]


def _header_table(name: str) -> list[float]:
    text = cpu._PRELUDE.read_text()
    body = text[text.index(name):]
    body = body[body.index("{") + 1: body.index("};")]
    return [float.fromhex(v.strip().rstrip("f")) if "0x" in v else float(v.strip().rstrip("f"))
            for v in body.replace("{", "").replace("}", "").split(",") if v.strip()]


def test_two_over_pi_bits_are_right():
    """Two Machin-like formulas agree to 1200 bits, and the leading bits are math.pi's."""
    import math

    bits = 1300
    assert two_over_pi(bits) == two_over_pi(bits, machin=((48, 18), (32, 57), (-20, 239)))
    assert abs(two_over_pi(60) / 2**60 - 2 / math.pi) < 1e-16


def test_reduction_tables_are_the_bits_of_two_over_pi():
    assert _header_table("JL_2OPI_F32[112][4]") == _table_f32()
    assert _header_table("JL_2OPI_F64[52]") == _table_f64()


_MATH = ("exp", "log", "sin", "cos", "sqrt", "rsqrt",
         "asin", "acos", "atan", "tanh", "sigmoid", "erf", "xlogx", "floor")  # 2nd line: issue 12
_SIMD_LOOPS = "#define JL_T {T}\n#define JL_IDX int64_t\n{prelude}\n" + "".join(
    f"void {f}_loop(const T* __restrict in, T* __restrict out, int n) {{{{\n"
    f"#pragma omp simd\n  for (int w = 0; w < n; ++w) out[w] = jl_{f}(in[w]);\n}}}}\n" for f in _MATH) + (
    "void atan2_loop(const T* __restrict in, T* __restrict out, int n) {{\n"
    "#pragma omp simd\n  for (int w = 0; w < n; ++w) out[w] = jl_atan2(in[w], in[w + n]);\n}}\n") + "".join(
    # the first pass of a kernel with sin / cos: fast reduction, or-ing whether it sufficed
    f"int {f}_k_loop(const T* __restrict in, T* __restrict out, int n) {{{{\n  int big = 0;\n"
    f"#pragma omp simd reduction(|: big)\n  for (int w = 0; w < n; ++w) out[w] = jl_{f}_k<false>(in[w], big);\n"
    f"  return big;\n}}}}\n" for f in ("sin", "cos"))


@pytest.mark.parametrize("march", ["default", "-march=x86-64-v3"])
@pytest.mark.parametrize("T", ["float", "double"])
def test_math_simd_loops_call_no_libm_and_vectorise(T, march, tmp_path):
    """The point of our jl_exp, jl_log, jl_sin...: a libm call or a branch in them keeps
    the kernels' ``#pragma omp simd`` loops scalar. Compiled with the kernels' flags, and
    for AVX2 without AVX-512 (x86-64-v3: no mask registers, no int64 <-> double vector
    conversions, where GCC leaves ternaries as branches); the vectoriser's report is read
    where the compiler is GCC."""
    compiler = compilers.find_compiler()
    if compiler is None:
        pytest.skip(compilers.compiler_problem())
    if march != "default" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86-64 only")
    src = tmp_path / "loops.cpp"
    text = _SIMD_LOOPS.format(T=T, prelude=cpu._PRELUDE.read_text())
    src.write_text(text)
    loops = {str(n + 1) for n, line in enumerate(text.splitlines()) if "out[w] = jl_" in line}
    flags = [f for f in compilers.default_flags() if f not in ("-shared", "-fPIC")]
    if march != "default":
        flags = [f for f in flags if not f.startswith("-march=")] + [march]
    gcc = "clang" not in compiler.identity.lower()
    cmd = [*compiler.argv, *flags, "-S", "-o", str(tmp_path / "loops.s"), str(src)]
    report = ["-fopt-info-vec-optimized"] if gcc else []
    proc = subprocess.run(cmd + report, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    asm = (tmp_path / "loops.s").read_text()
    libm = r"exp|log|sin|cos|sqrt|asin|acos|atan2?|tanh|erf|floor"
    assert not re.search(rf"\b(call|jmp|bl|b)\s+\S*\b({libm})f?\b", asm), "a jl_ function calls libm"
    if gcc:
        vectorised = set(re.findall(r":(\d+):\d+: optimized: loop vectorized", proc.stderr))
        missing = [text.splitlines()[int(n) - 1].strip() for n in loops - vectorised]
        assert not missing, missing


# --------------------------------------------------------------------------- issue 12
# asin, acos, atan, atan2, tanh, sigmoid, erf, xlogx, sinxdivx, floor (prelude_cpu.h,
# "element-wise math"): every function in one kernel (a column of X each, atan2 two), so
# that a dtype costs one compile. References: NumPy (and the math module for erf) in
# float64 for float32 results; in np.longdouble where NumPy has it (x86: 64-bit mantissa)
# for float64 results, float64 for erf (itself within 1 ulp: the bound allows for it).

def _wide_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(np.asarray(x, np.float64)).astype(x.dtype)


_ELEMENTWISE = {  # column name: (LazyArray method, reference on the wide type, ulp bound f32, f64)
    "asin": ("asin", np.arcsin, 2.5, 2.5),
    "acos": ("acos", np.arccos, 1.5, 1.5),
    "atan": ("atan", np.arctan, 2.5, 2.0),
    "tanh": ("tanh", np.tanh, 3.0, 3.0),
    "sigmoid": ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), 3.0, 3.0),
    "erf": ("erf", _wide_erf, 2.5, 2.0),
    "xlogx": ("xlogx", lambda x: np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1, x))), 3.5, 4.0),  # +0 at -0
    "sinxdivx": ("sinxdivx", lambda x: np.where(x == 0, 1 + 0 * x, np.sin(x) / np.where(x == 0, 1, x)), 2.5, 2.5),
    "floor": ("floor", np.floor, 0.0, 0.0),
}
_COLUMNS = list(_ELEMENTWISE) + ["atan2_y", "atan2_x"]


def _elementwise_kernel(X):
    """Each function of _ELEMENTWISE on its column of X (n, 11), then atan2 of the last two."""
    x = Vi(X)
    outs = [getattr(x[k], _ELEMENTWISE[name][0])() for k, name in enumerate(_ELEMENTWISE)]
    outs.append(x[len(_ELEMENTWISE)].atan2(x[len(_ELEMENTWISE) + 1]))
    return np.asarray(jax_lazy.LazyArray.concatenate(outs).max(axis=1, backend="cpu"))  # a Sum would add +0 to -0


def _signed(v):
    return np.concatenate([v, -v])


def _elementwise_samples(dtype, n=120_000):
    rng = np.random.default_rng(12)
    big = 300 if dtype == np.float64 else 30
    tiny = np.logspace(-big, 0, n // 4)
    near1 = 1 - np.logspace(-16 if dtype == np.float64 else -7.5, -0.3, n // 4)
    cols = {
        "asin": _signed(np.concatenate([rng.uniform(0, 1, n // 4), tiny, near1])),
        "atan": _signed(np.concatenate([np.logspace(-big, big, n // 4), rng.uniform(0, 5, n // 4), tiny])),
        "tanh": _signed(np.concatenate([rng.uniform(0, 25, n // 4), tiny, np.logspace(-3, 1.5, n // 4)])),
        "sigmoid": np.concatenate([rng.uniform(-80 if dtype == np.float32 else -700, 40, n // 2), rng.uniform(-5, 5, n // 2)]),
        "erf": _signed(np.concatenate([rng.uniform(0, 7, n // 4), tiny, rng.uniform(0.5, 1.5, n // 4)])),
        "xlogx": np.concatenate([np.logspace(-big, big, n // 2), rng.uniform(0.3, 3, n // 2)]),
        "sinxdivx": _signed(np.concatenate([rng.uniform(0, 60, n // 4), tiny, rng.uniform(0, 3, n // 4)])),
        "floor": _signed(np.concatenate([rng.uniform(0, 1e6, n // 4), rng.uniform(0, 3, n // 4), tiny])),
    }
    cols["acos"] = cols["asin"][::-1].copy()
    r, t = np.logspace(-big / 2, big / 2, n), rng.uniform(-np.pi, np.pi, n)
    cols["atan2_y"], cols["atan2_x"] = r * np.sin(t), r * np.cos(t) * rng.uniform(0.01, 100, n)
    return np.stack([np.resize(cols[c], n) for c in _COLUMNS], axis=1).astype(dtype)


def _reference(X, dtype):
    wide = np.longdouble if dtype == np.float64 else np.float64
    W = X.astype(wide)
    refs = [_ELEMENTWISE[name][1](W[:, k]) for k, name in enumerate(_ELEMENTWISE)]
    refs.append(np.arctan2(W[:, -2], W[:, -1]))
    return np.stack(refs, axis=1), wide


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_math_within_documented_ulps(dtype):
    import jax

    X = _elementwise_samples(dtype)
    with jax.enable_x64(dtype == np.float64):
        got = _elementwise_kernel(X)
    ref, wide = _reference(X, dtype)
    with np.errstate(over="ignore"):
        ulp = np.spacing(np.abs(ref).astype(dtype)).astype(wide)
    ulps = np.asarray(np.abs(got.astype(wide) - ref) / ulp, np.float64)
    bounds = [b[2 if dtype == np.float32 else 3] for b in _ELEMENTWISE.values()] + [2.5]  # atan2
    worst = {name: (ulps[:, k].max(), X[ulps[:, k].argmax(), k]) for k, name in enumerate(_COLUMNS[:-1])}
    assert all(worst[name][0] <= b for name, b in zip(_COLUMNS, bounds)), worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_math_special_values(dtype):
    """+-0, +-1, +-inf, NaN as NumPy (C99 for atan2's 49 pairs); sign of zero included."""
    import jax

    s = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan])
    y, x = np.repeat(s, 7), np.tile(s, 7)
    X = np.stack([x] * len(_ELEMENTWISE) + [y, x], axis=1).astype(dtype)
    with jax.enable_x64(dtype == np.float64), np.errstate(all="ignore"):
        got = _elementwise_kernel(X)
        ref, _ = _reference(X, np.float32)  # float64 references
    ref[:, _COLUMNS.index("sinxdivx")][np.isinf(x)] = np.nan  # sin(inf) / inf
    for k, name in enumerate(_COLUMNS[:-1]):  # exact but for sin(1), asin(1)...: 4 ulps there
        np.testing.assert_allclose(got[:, k], ref[:, k].astype(dtype), rtol=4 * np.finfo(dtype).eps, err_msg=name)
        assert (np.signbit(got[:, k]) == np.signbit(ref[:, k]))[~np.isnan(ref[:, k])].all(), name

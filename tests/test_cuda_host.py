"""The generated CUDA kernels, run on the CPU (``cuda_host.py``), against the jnp backend
and the NumPy float64 oracle: values, indices, ties, NaN, tiles, rows past M, batch
broadcasting, float16/bfloat16 storage, and the backend's j-split with its merge.

What this cannot check: the GPU's math library (expf, logf, ... here they are the host's
libm), its memory model and its timing. Needs a C++20 compiler and NVRTC is not used.
"""

from __future__ import annotations

from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import Pm, Vi, Vj, compilers
from jax_lazy import plan as plan_mod
from jax_lazy.backends import cuda
from jax_lazy.backends import jnp as jnp_backend

import cuda_host
from conftest import assert_close, precision, set_env
from op_table import ROWS, dense_reference, lazy_operands, sample_operands
from test_cuda_compile import make_plan

pytestmark = pytest.mark.skipif(compilers.find_compiler() is None, reason=f"{compilers.compiler_problem()}")
slow = pytest.mark.slow

M, N = 300, 700  # two blocks of 256 rows (the second one mostly past M), j tiles of 256 + a partial one


def _data(rng, dtype, batch_x=(), batch_y=(), d=3, ties=False):
    # ties: small nonzero integers (a zero product can be -0., which jnp's sort puts before +0.)
    draw = (lambda s: rng.choice([-2.0, -1.0, 1.0, 2.0], s)) if ties else (lambda s: rng.normal(size=s))
    x = draw(batch_x + (M, d)).astype(dtype)
    y = draw(batch_y + (N, d)).astype(dtype)
    w = rng.normal(size=batch_y + (N, 2)).astype(dtype)
    p = rng.uniform(0.5, 1.5, (1,)).astype(dtype)
    return x, y, w, p


# (name, formulas from (x, y, w, p), reduction, K)
CASES = {
    "gauss_sum": (lambda x, y, w, p: ((-Vi(x).sqdist(Vj(y)) * Pm(p)).exp() * Vj(w),), "Sum", None),
    "vector_sum": (lambda x, y, w, p: (Vi(x) * Vj(y) - Pm(p),), "Sum", None),
    "lse": (lambda x, y, w, p: (-Vi(x).sqdist(Vj(y)), 1), "LogSumExp", None),
    "lse_weight": (lambda x, y, w, p: (-Vi(x).sqdist(Vj(y)), Vj(w).exp()), "LogSumExp", None),
    "softmax": (lambda x, y, w, p: (-Vi(x).sqdist(Vj(y)) * Pm(p), Vj(w)), "SumSoftMaxWeight", None),
    "min_argmin": (lambda x, y, w, p: (Vi(x) * Vj(y),), "Min_ArgMin", None),
    "max_argmax": (lambda x, y, w, p: (Vi(x) - Vj(y),), "Max_ArgMax", None),
    "argmin_sqdist": (lambda x, y, w, p: (Vi(x).sqdist(Vj(y)),), "ArgMin", None),
    "kmin_argkmin": (lambda x, y, w, p: (Vi(x).sqdist(Vj(y)),), "KMin_ArgKMin", 10),
    "kmin_vector": (lambda x, y, w, p: (Vi(x) * Vj(y),), "KMin_ArgKMin", 3),
    "argkmin_1": (lambda x, y, w, p: (Vi(x).sqdist(Vj(y)),), "ArgKMin", 1),
    "argkmin_128": (lambda x, y, w, p: (Vi(x).sqdist(Vj(y)),), "ArgKMin", 128),
}
FAST = {"gauss_sum", "lse_weight", "softmax", "min_argmin", "max_argmax", "kmin_argkmin"}


def _plan_and_arrays(name, dtype, rng, axis=1, **data):
    build, red, k = CASES[name]
    x, y, w, p = _data(rng, dtype, **data)
    with precision(np.float64 if dtype == np.float64 else np.float32):
        lazies = build(x, y, w, p)
        plan = make_plan(lazies, red, k, np.dtype(dtype).name, axis=axis)
        _, (_, arrays, *_rest) = lazies[0]._join(*lazies[1:])
    return plan, [np.array(a) for a in arrays]


def _compare(plan, arrays, dtype, rtol=None):
    """cuda.reduce (kernel on the host) vs the jnp backend, in float64 for float64 data,
    else float32 on the same (rounded) inputs."""
    ref_dtype = np.float64 if dtype == np.float64 else np.float32
    with precision(ref_dtype):
        geom = plan_mod.geometry(plan, arrays)
        got = cuda.reduce(plan, [jnp.asarray(a) for a in arrays], geom)
        ref_plan = replace(plan, dtype=np.dtype(ref_dtype).name, backend="jnp")
        ref_arrays = [jnp.asarray(a.astype(ref_dtype)) for a in arrays]
        want = jnp_backend.reduce(ref_plan, ref_arrays, plan_mod.geometry(ref_plan, ref_arrays))
    assert len(got) == len(want)
    for pos, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (pos, g.shape, w.shape)
        if plan.red.is_index(pos):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w, err_msg=f"{plan.describe()} output {pos}")
        else:
            assert g.dtype == np.dtype(plan.dtype), (g.dtype, plan.dtype)
            assert_close(g.astype(ref_dtype), w, ref_dtype, rtol=rtol, terms=np.nan_to_num(np.abs(w)),
                         err_msg=f"{plan.describe()} output {pos}")


@pytest.fixture
def host_backend(monkeypatch):
    cuda_host.patch_backend(monkeypatch)


def _params():
    out = []
    for name in CASES:
        for dtype in (np.float32, np.float64):
            fast = name in FAST and (dtype == np.float32 or name == "softmax")
            out.append(pytest.param(name, dtype, id=f"{name}-{np.dtype(dtype).name}", marks=() if fast else slow))
    return out


@pytest.mark.parametrize("name,dtype", _params())
def test_reductions_match_jnp(name, dtype, host_backend, rng):
    """Batch broadcasting: x (2, 1, M, 3), y (1, 3, N, 3)."""
    plan, arrays = _plan_and_arrays(name, dtype, rng, batch_x=(2, 1), batch_y=(1, 3))
    _compare(plan, arrays, dtype)


@pytest.mark.parametrize("name", [
    "min_argmin", "max_argmax", pytest.param("kmin_argkmin", marks=slow), pytest.param("kmin_vector", marks=slow)])
def test_ties_go_to_the_smallest_index(name, host_backend, rng):
    plan, arrays = _plan_and_arrays(name, np.float32, rng, ties=True)
    _compare(plan, arrays, np.float32)


def test_nan_propagates_through_min(host_backend, rng):
    plan, (x, y) = _plan_and_arrays("min_argmin", np.float32, rng)
    y[[5, 400, 650], 1] = np.nan  # first NaN of column 1 at j = 5, in the first tile
    x[7, 1] = np.nan  # the whole row
    geom = plan_mod.geometry(plan, [x, y])
    values, idx = cuda.reduce(plan, [jnp.asarray(x), jnp.asarray(y)], geom)
    values, idx = np.asarray(values), np.asarray(idx)
    assert np.isnan(values[:, 1]).all() and (idx[np.arange(M) != 7, 1] == 5).all() and idx[7, 1] == 0
    assert not np.isnan(values[np.arange(M) != 7][:, [0, 2]]).any()
    _compare(plan, [x, y], np.float32)


def test_reduction_over_i(host_backend, rng):
    plan, arrays = _plan_and_arrays("softmax", np.float32, rng, axis=0)
    _compare(plan, arrays, np.float32)


@pytest.mark.parametrize("dtype,rtol", [(jnp.float16, 2e-3), (jnp.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("name", ["gauss_sum", "softmax", "min_argmin", pytest.param("kmin_argkmin", marks=slow)])
def test_half_storage(name, dtype, rtol, host_backend, rng):
    """float16 / bfloat16 inputs and outputs, float32 compute: within the rounding of the
    output of the float32 result on the same inputs."""
    plan, arrays = _plan_and_arrays(name, np.float32, rng, batch_y=(2,))
    plan = replace(plan, dtype=np.dtype(dtype).name)
    _compare(plan, [a.astype(dtype) for a in arrays], dtype, rtol=rtol)


@pytest.mark.parametrize("name", ["gauss_sum", "lse_weight", "softmax", "min_argmin",
                                  pytest.param("kmin_argkmin", marks=slow), pytest.param("max_argmax", marks=slow)])
def test_split_j_for_few_rows(name, monkeypatch, rng):
    """Few rows: j is cut into parts (an extra batch axis, plus a remainder launch) whose
    outputs are merged; the same results as without the split."""
    cuda_host.patch_backend(monkeypatch, multiprocessors=4)
    plan, (x, y, *rest) = _plan_and_arrays(name, np.float32, rng)
    x = x[:20]
    y = np.concatenate([y] * 8)[: 2 * cuda.SPLIT_COLUMNS + 5]
    rest = [np.concatenate([r] * 8)[: len(y)] if r.shape[0] == N else r for r in rest]
    arrays = [a for a in (x, y, *rest)]
    geom = plan_mod.geometry(plan, arrays)
    assert cuda._split_count(plan, geom) == 2
    _compare(plan, arrays, np.float32)


# ---------------------------------------------------------------- launch configurations


@pytest.mark.parametrize("name", ["gauss_sum", "softmax", "min_argmin", pytest.param("kmin_argkmin", marks=slow),
                                  pytest.param("argkmin_128", marks=slow)])
def test_every_launch_candidate_matches_jnp(name, monkeypatch, rng):
    """Each launch configuration that tuning may pick (block sizes 256, 128, 64; their
    tiles) gives the jnp backend's results, through the backend path (source and launch
    attributes of the chosen configuration)."""
    plan, arrays = _plan_and_arrays(name, np.float32, rng, batch_x=(2,))
    cands = cuda.candidates(plan)
    assert len(cands) == len(cuda.BLOCK_SIZES) and len(set(cands)) == len(cands)
    for cfg in cands:
        cuda_host.patch_backend(monkeypatch, choose=lambda p, cfg=cfg: cfg)
        _compare(plan, arrays, np.float32)


@pytest.mark.parametrize("D,name,path", [(64, "sum_dot", "f32"), (100, "kmin_sqdist", "f32"),
                                         pytest.param(256, "lse_dot", "bf16", marks=slow),
                                         pytest.param(64, "kmin_dot", "f64", marks=slow)])
def test_every_stage_candidate_matches_the_oracle(D, name, path, monkeypatch, rng):
    """With an inner-product stage the candidates are 128 and 64 rows per block."""
    dtype = PATHS[path][0]
    with precision(np.float64):
        x = rng.normal(size=(STAGE_M, D))
        lazies, red, k, *_ = _inner_case(name, x, rng.normal(size=(STAGE_N, D)), rng.normal(size=(STAGE_N, 2)), 1.0)
        plan = make_plan(lazies, red, k, dtype)
    cands = cuda.candidates(plan)
    assert [c.block_threads for c in cands] == list(cuda.STAGE_ROWS) and all(c.inners for c in cands)
    for cfg in cands:
        monkeypatch.setattr(cuda, "config", lambda p, cfg=cfg: cfg)
        test_inner_stage_matches_the_float64_oracle(D, name, path, monkeypatch, rng)


# ---------------------------------------------------------------- the op table


def _row_params():
    fast = {"gaussian", "mixed", "wsqnorm_full", "one_hot"}
    return [pytest.param(r, id=r.name, marks=() if r.name in fast else slow) for r in ROWS]


@pytest.mark.parametrize("r", _row_params())
def test_op_rows_match_the_oracle(r, host_backend, rng):
    """Sum over i and over j of each row (float64, broadcast batch) vs NumPy float64."""
    arrays = sample_operands(r, rng, "bcast", M=M, N=40)
    dense = dense_reference(r, np, arrays)
    with precision(np.float64):
        F = r.build(*lazy_operands(r, arrays))
        _, (_, bound, *_rest) = F._join()
        outs = []
        for axis in (0, 1):
            plan = make_plan((F,), "Sum", dtype="float64", axis=axis)
            (out,) = cuda.reduce(plan, [jnp.asarray(a) for a in bound], plan_mod.geometry(plan, bound))
            outs.append(out)
    assert_close(outs[0], dense.sum(-3), np.float64, terms=np.abs(dense).sum(-3), err_msg=f"{r.name} over i")
    assert_close(outs[1], dense.sum(-2), np.float64, terms=np.abs(dense).sum(-2), err_msg=f"{r.name} over j")


# ---------------------------------------------------------------- the inner-product stage

STAGE_M, STAGE_N = 150, 70  # a full and a partial block of 128 rows; tiles of 32 columns, the last partial


def _inner_case(name, x, y, w, scale):
    """(formulas, reduction, K) of ``name``, and the float64 oracle of its outputs with the
    absolute values of the summed terms (the tolerances' scale)."""
    dot = x @ np.swapaxes(y, -1, -2)
    sq = ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)
    mag = np.abs(x) @ np.swapaxes(np.abs(y), -1, -2)  # sum of |x_c y_c|: the scale of a dot product's error
    if name == "sum_dot":
        return ((Vi(x) | Vj(y)) * Vj(w),), "Sum", None, [dot @ w], [mag @ np.abs(w)]
    if name == "sum_sqdist":
        return (Vi(x).sqdist(Vj(y)) * Vj(w),), "Sum", None, [sq @ w], [sq @ np.abs(w)]
    if name == "lse_dot":  # |F| ~ 1: exp does not overflow
        F = dot * scale
        lse = np.log(np.exp(F - F.max(-1, keepdims=True)).sum(-1, keepdims=True)) + F.max(-1, keepdims=True)
        return ((Vi(x) | Vj(y)) * scale, 1), "LogSumExp", None, [lse], [np.broadcast_to((mag * scale).max(-1, keepdims=True), lse.shape)]
    if name in ("kmin_sqdist", "kmin_dot"):
        F = sq if name == "kmin_sqdist" else -dot
        idx = np.argsort(F, -1, kind="stable")[..., :5]
        lazy = Vi(x).sqdist(Vj(y)) if name == "kmin_sqdist" else -(Vi(x) | Vj(y))
        scale = sq if name == "kmin_sqdist" else mag
        return (lazy,), "KMin_ArgKMin", 5, [np.take_along_axis(F, idx, -1), idx], [np.take_along_axis(scale, idx, -1), (F, scale)]
    raise ValueError(name)


# (dtype, *cuda._switches()): float32 on tensor cores (3xTF32), on register
# tiles, and plain TF32; float64 (register tiles); bfloat16 (tensor cores, 1xTF32, exact
# products); "_sqmma": sqdist on tensor cores too (the guarded expansion; sqdist cases only)
PATHS = {"f32": ("float32", "mma", False, "fma"), "f32_fma": ("float32", "fma", False, "fma"),
         "f32_tf32": ("float32", "mma", True, "fma"), "f64": ("float64", "mma", False, "fma"),
         "bf16": ("bfloat16", "mma", False, "fma"), "f32_sqmma": ("float32", "mma", False, "mma"),
         "bf16_sqmma": ("bfloat16", "mma", False, "mma")}
RTOLS = {"float32": 1e-4, "float64": 1e-10, "bfloat16": 1.6e-2}
INNER_FAST = {(16, "lse_dot", "f32"), (17, "kmin_sqdist", "f32"), (64, "sum_dot", "f32_fma"), (100, "kmin_dot", "bf16"),
              (256, "sum_sqdist", "f64"), (1000, "lse_dot", "f32"), (17, "sum_dot", "f64"), (64, "kmin_dot", "f32"),
              (100, "lse_dot", "f32_tf32"), (64, "kmin_sqdist", "f32_sqmma"), (100, "sum_sqdist", "bf16_sqmma")}


def _inner_params():
    out = []
    for D in (16, 17, 64, 100, 256, 1000):
        for name in ("sum_dot", "sum_sqdist", "lse_dot", "kmin_sqdist", "kmin_dot"):
            for path in PATHS:
                if path.endswith("_sqmma") and not name.endswith("sqdist"):
                    continue
                fast = (D, name, path) in INNER_FAST
                out.append(pytest.param(D, name, path, id=f"{name}-D{D}-{path}", marks=() if fast else slow))
    return out


def _gpu_params():
    reason = cuda.available()
    marks = [pytest.mark.skip(reason=f"needs a GPU: {reason}")] if reason else []
    return [pytest.param(*p.values, id=f"gpu-{p.id}", marks=marks) for p in _inner_params()]


@pytest.mark.parametrize("D,name,path", _gpu_params())
def test_inner_stage_on_the_gpu(D, name, path, monkeypatch, rng):
    """The same cases through the real cuda backend (NVRTC, the FFI handler, the device's
    tensor cores and maths library): every path of the stage on a GPU."""
    test_inner_stage_matches_the_float64_oracle(D, name, path, monkeypatch, rng, gpu=True)


@pytest.mark.parametrize("D,name,path", _inner_params())
def test_inner_stage_matches_the_float64_oracle(D, name, path, monkeypatch, rng, batch=(), gpu=False):
    """Inner products of dim D computed by the stage (register tiles, or the emulated
    tensor cores of the host shim), against NumPy in float64 on the same (rounded) inputs."""
    dtype, inner, tf32, sqdist = PATHS[path]
    set_env(monkeypatch, JAX_LAZY_CUDA_INNER=inner, JAX_LAZY_CUDA_TF32=int(tf32), JAX_LAZY_CUDA_SQDIST=sqdist)
    store = cuda_host.STORAGE[dtype]
    x = rng.normal(size=batch + (STAGE_M, D)).astype(store)
    y = rng.normal(size=(STAGE_N, D)).astype(store)
    w = rng.normal(size=(STAGE_N, 2)).astype(store)
    with precision(np.float64):  # the lazies hold float64 copies of the rounded inputs
        lazies, red, k, want, terms = _inner_case(name, *(a.astype(np.float64) for a in (x, y, w)), 1 / np.sqrt(D))
        plan = make_plan(lazies, red, k, dtype)
        _, (_, bound, *_rest) = lazies[0]._join(*lazies[1:])
    assert len(cuda.config(plan).inners) == 1, "the stage computes the inner product"
    arrays = [np.asarray(b).astype(store) for b in bound]
    geom = plan_mod.geometry(plan, arrays)
    if gpu:
        with precision(np.float64 if dtype == "float64" else np.float32):
            got = cuda.reduce(plan, [jnp.asarray(a) for a in arrays], plan_mod.geometry(plan, arrays))
        got = [np.asarray(g) for g in got]
    else:
        got = cuda_host.launch(plan, arrays, cuda_host.out_types(plan, geom), batch, STAGE_M, STAGE_N)
    rtol = 1e-2 if tf32 else RTOLS[dtype]
    for pos, (g, wnt, t) in enumerate(zip(got, want, terms)):
        g = g.reshape(wnt.shape)
        if isinstance(t, tuple):  # indices: those of the oracle, or of values within the tolerance (near-ties)
            F, scale = t
            assert_close(np.take_along_axis(F, g, -1), np.take_along_axis(F, wnt, -1), np.float64, rtol=rtol,
                         terms=np.take_along_axis(scale, wnt, -1), err_msg=f"{name} D={D} {path} indices")
            assert tf32 or (g == wnt).mean() > 0.99, f"{name} D={D} {path}: {(g != wnt).sum()} indices differ"
            continue
        assert_close(g.astype(np.float64), wnt, np.float64, rtol=rtol, terms=t, err_msg=f"{name} D={D} {path} output {pos}")


def test_inner_stage_with_batch_broadcasting(monkeypatch, rng):
    """x (2, M, D) against one y (N, D): the stage reads each batch element's rows."""
    test_inner_stage_matches_the_float64_oracle(64, "kmin_sqdist", "f32", monkeypatch, rng, batch=(2,))


# ---------------------------------------------------------------- sqdist on tensor cores (opt-in)


def _sqdist_data(kind, D, rng):
    """x (STAGE_M, D), y (STAGE_N, D) float32 and positive weights w (STAGE_N, 1); ``kind``:
    normal; offset (+100 on every component: |x|^2 ~ 2e4 D, d ~ 2 D, the guard fires
    everywhere); duplicates (y_j = x_j for j < 20: d = 0); nonfinite (x_3 NaN, x_9 and y_7
    with an inf component, y_11 with -inf: inf - inf = NaN in the expansion)."""
    x, y = rng.normal(size=(STAGE_M, D)), rng.normal(size=(STAGE_N, D))
    if kind == "offset":
        x, y = x + 100, y + 100
    if kind == "duplicates":
        y[:20] = x[:20]
    if kind == "nonfinite":
        x[3, 5], x[9, 0], y[7, 2], y[11, 1] = np.nan, np.inf, np.inf, -np.inf
    return x.astype(np.float32), y.astype(np.float32), rng.uniform(0.5, 1.5, (STAGE_N, 1)).astype(np.float32)


SQ_KINDS = ("normal", "offset", "duplicates", "nonfinite")
SQ_FAST = {(16, "normal"), (64, "offset"), (64, "duplicates"), (16, "nonfinite"), (256, "normal")}


@pytest.mark.parametrize("D,kind", [pytest.param(D, k, id=f"D{D}-{k}", marks=() if (D, k) in SQ_FAST else slow)
                                    for D in (16, 64, 256, 1000) for k in SQ_KINDS])
def test_sqdist_expansion_matches_the_float64_oracle(D, kind, monkeypatch, rng):
    """JAX_LAZY_CUDA_SQDIST=mma: |x|^2 + |y|^2 - 2<x, y> (emulated 3xTF32) with the
    cancellation guard, in a Gaussian Sum and an ArgKMin, against NumPy in float64 on the
    same float32 inputs; the guard's recomputations are counted by the host shim."""
    set_env(monkeypatch, JAX_LAZY_CUDA_SQDIST="mma")
    x, y, w = _sqdist_data(kind, D, rng)
    x64, y64, w64 = (a.astype(np.float64) for a in (x, y, w))
    with np.errstate(invalid="ignore"):
        sq = ((x64[:, None, :] - y64[None, :, :]) ** 2).sum(-1)
    hits = []
    for red, k in (("Sum", None), ("ArgKMin", 5)):
        with precision(np.float64):
            F = (-Vi(x64).sqdist(Vj(y64)) * (1 / D)).exp() * Vj(w64) if red == "Sum" else Vi(x64).sqdist(Vj(y64))
            plan = make_plan((F,), red, k, "float32")
            _, (_, bound, *_rest) = F._join()
        assert "jl_store_sqdist" in cuda.kernel_body(plan, arch="sm_90")
        arrays = [np.asarray(b).astype(np.float32) for b in bound]
        geom = plan_mod.geometry(plan, arrays)
        got = cuda_host.launch(plan, arrays, cuda_host.out_types(plan, geom), (), STAGE_M, STAGE_N)[-1]
        hits.append(cuda_host.guard_hits)
        if red == "Sum":
            terms = np.exp(-sq / D) * w64.T
            assert_close(got, terms.sum(-1, keepdims=True), np.float32, rtol=1e-4, terms=np.nan_to_num(terms.sum(-1, keepdims=True)),
                         err_msg=f"Gaussian sum D={D} {kind}")
            continue
        rows = np.isfinite(x64).all(-1)  # rows of all-NaN / all-inf distances: no k nearest
        F64 = np.where(np.isnan(sq), np.inf, sq)[rows]
        want = np.argsort(F64, -1, kind="stable")[:, :5]
        got = got.reshape(STAGE_M, 5)[rows]
        got_d, want_d = np.take_along_axis(F64, got, -1), np.take_along_axis(F64, want, -1)
        assert_close(got_d, want_d, np.float64, rtol=1e-4, terms=want_d, err_msg=f"ArgKMin D={D} {kind}")
        assert (got == want).mean() > 0.99, f"ArgKMin D={D} {kind}: {(got != want).sum()} indices differ"
        if kind == "duplicates":  # d = 0 exactly: the nearest neighbour of x_j is y_j
            assert (got[:20, 0] == np.arange(20)).all()
    entries = STAGE_M * STAGE_N
    # the recomputed entries: none, all, the 20 pairs with d = 0, rows 3 and 9 and columns 7 and 11
    expect = {"normal": 0, "offset": entries, "duplicates": 20, "nonfinite": 2 * STAGE_N + 2 * STAGE_M - 4}[kind]
    assert hits == [expect, expect], (kind, hits, entries)


def test_sqdist_expansion_duplicates_are_exactly_zero(monkeypatch, rng):
    """KMin values: d(x_j, y_j) = 0 exactly, as in the direct form (the guard recomputes it)."""
    set_env(monkeypatch, JAX_LAZY_CUDA_SQDIST="mma")
    x, y, _ = _sqdist_data("duplicates", 64, rng)
    with precision(np.float64):
        F = Vi(x.astype(np.float64)).sqdist(Vj(y.astype(np.float64)))
        plan = make_plan((F,), "KMin_ArgKMin", 1, "float32")
    geom = plan_mod.geometry(plan, [x, y])
    values, idx = cuda_host.launch(plan, [x, y], cuda_host.out_types(plan, geom), (), STAGE_M, STAGE_N)
    assert (values.reshape(-1)[:20] == 0).all() and (idx.reshape(-1)[:20] == np.arange(20)).all()
    assert (values.reshape(-1)[20:] > 0).all()


# ---------------------------------------------------------------- block-sparse ranges (issue 13)

# (D, case, path): the stage of a ranges kernel reads the rows of its chunk, not those of
# blockIdx.x R (tests/test_ranges_backends.py runs every family without a stage)
RANGES_STAGE = [(17, "kmin_sqdist", "f32"), (64, "lse_dot", "f32"), (64, "kmin_sqdist", "f32_sqmma"),
                (17, "sum_dot", "f64"), (100, "sum_dot", "f32_fma"), (256, "kmin_dot", "bf16")]
RANGES_STAGE_FAST = {(64, "kmin_sqdist", "f32_sqmma"), (17, "sum_dot", "f64")}


def _ranges_stage_params(gpu: bool):
    """On the host shim (a few in the fast suite), or on a GPU (skipped without one)."""
    reason = cuda.available() if gpu else None
    out = []
    for c in RANGES_STAGE:
        marks = [pytest.mark.skip(reason=f"needs a GPU: {reason}")] if reason else []
        marks += [] if gpu or c in RANGES_STAGE_FAST else [slow]
        out.append(pytest.param(*c, id=("gpu-" if gpu else "") + f"{c[1]}-D{c[0]}-{c[2]}", marks=marks))
    return out


def _ranges_dense(name, x, y, w, scale):
    """The float64 (M, N, E) matrix of ``name``'s per-pair values (oracle.masked_reduce's F)."""
    dot = x @ y.T
    if name == "sum_dot":
        return dot[:, :, None] * w[None]
    if name == "lse_dot":
        return (dot * scale)[:, :, None]
    sq = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return (sq if name == "kmin_sqdist" else -dot)[:, :, None]


@pytest.mark.parametrize("D,name,path", _ranges_stage_params(gpu=True))
def test_ranges_with_the_stage_on_the_gpu(D, name, path, monkeypatch, rng):
    """The same cases through the real cuda backend."""
    test_ranges_with_the_stage(D, name, path, monkeypatch, rng, gpu=True)


@pytest.mark.parametrize("D,name,path", _ranges_stage_params(gpu=False))
def test_ranges_with_the_stage(D, name, path, monkeypatch, rng, gpu=False):
    """Ranges kernels with an inner-product stage (each path) against the dense masked
    float64 oracle: random blocks, some row blocks with no kept column (empty values)."""
    import oracle as o

    if not gpu:
        cuda_host.patch_backend(monkeypatch)
    dtype, inner, tf32, sqdist = PATHS[path]
    set_env(monkeypatch, JAX_LAZY_CUDA_INNER=inner, JAX_LAZY_CUDA_TF32=int(tf32), JAX_LAZY_CUDA_SQDIST=sqdist)
    store = cuda_host.STORAGE[dtype]
    x, y, w = (rng.normal(size=s).astype(store) for s in ((STAGE_M, D), (STAGE_N, D), (STAGE_N, 2)))
    X, Y, W = (a.astype(np.float64) for a in (x, y, w))
    with precision(np.float64):
        lazies, red, k, _, _ = _inner_case(name, X, Y, W, 1 / np.sqrt(D))
        plan = replace(make_plan(lazies, red, k, dtype), ranges=True)
        _, (_, bound, *_rest) = lazies[0]._join(*lazies[1:])
    assert len(cuda.config(plan).inners) == 1, "the stage computes the inner product"
    six, mask = o.random_ranges(rng, STAGE_M, STAGE_N, (), (5, 4), 0.5)
    F = _ranges_dense(name, X, Y, W, 1 / np.sqrt(D))
    want = o.masked_reduce(red, F, mask, K=k)
    with precision(np.float64 if dtype == "float64" else np.float32):
        arrays = [jnp.asarray(np.asarray(b).astype(store)) for b in bound]
        got = cuda.reduce(plan, arrays, plan_mod.geometry(plan, arrays),
                          ranges=tuple(jnp.asarray(a, jnp.int32) for a in six[:3]))
    rtol = RTOLS[dtype]
    terms = o.masked_reduce("Sum", np.abs(F), mask)[0]  # the scale of the sums' rounding
    for g, e in zip(got, want):
        g = np.asarray(g).reshape(e.shape)
        if np.issubdtype(g.dtype, np.integer):
            assert (g == e).mean() > 0.99, f"{(g != e).sum()} indices differ"
            continue
        scale = terms if red == "Sum" else np.abs(np.nan_to_num(e, posinf=0, neginf=0))
        assert_close(g.astype(np.float64), e, np.float64, rtol=rtol, terms=np.broadcast_to(scale, e.shape))


def _ranges_sum(rng, M, N):
    """A float64 Sum plan with ranges (|x_i - y_j|^2 w_j, x batched (2,)),
    its arrays and the dense float64 (2, M, N, 1) matrix of its terms."""
    x, y, w = rng.normal(size=(2, M, 3)), rng.normal(size=(N, 3)), rng.normal(size=(N, 1))
    plan = replace(make_plan((Vi(x).sqdist(Vj(y)) * Vj(w),), "Sum", dtype="float64"), ranges=True)
    F = ((x[:, :, None, :] - y[None, None]) ** 2).sum(-1, keepdims=True) * w[None, None]
    return plan, (x, y, w), F


def _check_ranges_sum(plan, arrays, F, triple, mask):
    import oracle as o

    with precision(np.float64):
        arrays = [jnp.asarray(a) for a in arrays]
        (got,) = cuda.reduce(plan, arrays, plan_mod.geometry(plan, arrays),
                             ranges=tuple(jnp.asarray(a, jnp.int32) for a in triple))
    (want,) = o.masked_reduce("Sum", F, np.broadcast_to(mask, F.shape[:-1]))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)


def test_ranges_edge_tables(monkeypatch, rng):
    """Ranges without row blocks (every row empty), and ranges without batch axes
    broadcast against batched variables, against the dense masked oracle."""
    import oracle as o

    cuda_host.patch_backend(monkeypatch)
    plan, arrays, F = _ranges_sum(rng, 40, 50)
    six, mask = o.random_ranges(rng, 40, 50, (), (4, 3), 0.6)
    _check_ranges_sum(plan, arrays, F, six[:3], mask)
    none = (np.zeros((0, 2)), np.zeros(0), np.asarray([[0, 50]]))
    _check_ranges_sum(plan, arrays, F, none, np.zeros((40, 50), bool))


@slow
def test_ranges_every_launch_candidate(monkeypatch, rng):
    """Each launch configuration (256, 128, 64 rows per chunk) with row blocks longer
    than a chunk: several chunks per block."""
    import oracle as o

    plan, arrays, F = _ranges_sum(rng, 700, 300)
    six, mask = o.random_ranges(rng, 700, 300, (), (2, 4), 0.6)
    for cfg in cuda.candidates(plan):
        cuda_host.patch_backend(monkeypatch, choose=lambda p, cfg=cfg: cfg)
        _check_ranges_sum(plan, arrays, F, six[:3], mask)

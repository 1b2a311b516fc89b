"""The CUDA code generator, compile-only: every generated kernel must go through NVRTC.

No GPU is needed (NVRTC only compiles); the tests skip when NVRTC is unavailable. What
runs where:

- every row of ``op_table.py``, reduced over i and over j, in float32 and float64:
  through NVRTC's front end only in the fast suite, to PTX and to sm_90 cubins in the
  slow suite;
- every reduction (Max via negation, ArgKMin with K = 1, 10, 128, weighted LogSumExp,
  SumSoftMaxWeight, i- and j-reductions) to sm_90 cubins, in float32 and float64 (fast
  suite), float16 and bfloat16 (a subset in the fast suite, all in the slow one); one
  sm_80 and one PTX case;
- snapshots of three generated kernels (``JAX_LAZY_UPDATE_SNAPSHOTS=1`` rewrites them);
- the launch configuration, the persistent cache of cubins, NVRTC's error reporting.

Batch shapes (and their broadcasting) are run-time arguments of the kernels: they do not
change the source, so they need no compile case of their own.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from jax_lazy import Pm, Vi, Vj, compilers, store
from jax_lazy import plan as plan_mod
from jax_lazy.backends import cuda, nvrtc
from jax_lazy.errors import BackendError, CompileError
from jax_lazy.reductions import REDUCTIONS

from conftest import set_env
from op_table import ROWS, lazy_operands, sample_operands

pytestmark = pytest.mark.skipif(nvrtc.status() is not None, reason=f"NVRTC unavailable: {nvrtc.status()}")
slow = pytest.mark.slow
SNAPSHOTS = Path(__file__).parent / "snapshots"
WORKERS = max(2, min(8, os.cpu_count() or 2))  # NVRTC compiles separate programs in parallel


def make_plan(lazies, red, k=None, dtype="float32", axis=1):
    """The canonical plan of reducing ``lazies`` (F, and the weight if any) over ``axis``."""
    nodes, (vars_, *_rest) = lazies[0]._join(*lazies[1:])
    nodes, vars_ = tuple(nodes), tuple(vars_)
    if axis == 0:
        nodes = tuple(plan_mod.swap_ij(n) for n in nodes)
        vars_ = tuple(plan_mod.swap_var(v) for v in vars_)
    return plan_mod.Plan(nodes, REDUCTIONS[red], k, vars_, dtype, "cuda")


def compile_all(plans, arch="sm_90", syntax_only=False):
    """Compile every plan's kernel (in parallel); fail with the plans and NVRTC logs of the
    ones that do not compile. ``syntax_only``: NVRTC's front end only (parsing, types,
    overloads, templates: ~20 ms a kernel instead of 50-1000), no image."""
    options = nvrtc.default_options(arch) + (["--fdevice-syntax-only"] if syntax_only else [])

    def one(plan):
        try:
            return nvrtc.compile(cuda.kernel_source(plan, arch), arch, options=options)
        except CompileError as exc:
            return exc

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, plans))
    failed = [f"{p.describe()} [{p.dtype}]:\n{r.log[:3000]}" for p, r in zip(plans, results)
              if isinstance(r, Exception)]
    assert not failed, f"{len(failed)} of {len(plans)} kernels do not compile:\n" + "\n".join(failed[:5])
    return results


# ---------------------------------------------------------------- the op table


def _row_plans(dtype):
    plans = []
    for r in ROWS:
        arrays = sample_operands(r, np.random.default_rng(0), "plain", M=2, N=3)
        F = r.build(*lazy_operands(r, [a.astype(np.float32) for a in arrays]))
        plans += [make_plan((F,), "Sum", dtype=dtype, axis=axis) for axis in (0, 1)]
    return plans


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_op_table_rows_pass_the_front_end(dtype):
    """Sum over i and over j of every row of the op table: NVRTC's front end."""
    compile_all(_row_plans(dtype), "sm_90", syntax_only=True)


@slow
@pytest.mark.parametrize("dtype,arch", [(d, a) for d in ("float32", "float64") for a in ("compute_90", "sm_90")])
def test_op_table_rows_compile(dtype, arch):
    """The same, to PTX (NVVM) and to cubins (ptxas)."""
    images = compile_all(_row_plans(dtype), arch)
    if arch.startswith("compute"):
        assert all(b".entry jax_lazy_kernel" in img for img in images)
    else:
        assert all(img[:4] == b"\x7fELF" for img in images)


# ---------------------------------------------------------------- every reduction

x3 = np.zeros((4, 3), np.float32)
w2 = np.zeros((4, 2), np.float32)
s1 = np.ones((1,), np.float32)


def _gauss():
    return (-Vi(x3).sqdist(Vj(x3)) * Pm(s1)).exp()


def _reduction_plans(dtype):
    """Each reduction on a scalar and a vector formula, over j and over i."""
    scalar, vector = (lambda: -Vi(x3).sqdist(Vj(x3))), (lambda: Vi(x3) * Vj(x3) - Pm(s1))
    cases = [
        ((_gauss() * Vj(w2),), "Sum", None),
        ((vector(),), "Sum", None),
        ((scalar(), 1), "LogSumExp", None),  # no weight: IntCst(1), as LazyArray.logsumexp
        ((scalar(), Vj(w2)), "LogSumExp", None),  # weighted, vector weight
        ((scalar(), Vj(w2)), "SumSoftMaxWeight", None),
    ]
    for red in ("Min", "ArgMin", "Min_ArgMin", "Max", "ArgMax", "Max_ArgMax"):
        cases += [((scalar(),), red, None), ((vector(),), red, None)]
    for red in ("KMin", "ArgKMin", "KMin_ArgKMin"):
        cases += [((scalar(),), red, 10), ((vector(),), red, 3)]
    cases += [((scalar(),), "ArgKMin", 1), ((scalar(),), "ArgKMin", 128)]
    plans = [make_plan(f, red, k, dtype, axis=1) for f, red, k in cases]
    plans += [make_plan(f, red, k, dtype, axis=0) for f, red, k in cases[::3]]
    assert {p.red.name for p in plans} == set(REDUCTIONS)
    return plans


@pytest.mark.parametrize("dtype,subset", [
    ("float32", False), ("float64", False), ("float16", True), ("bfloat16", True),
    pytest.param("float16", False, marks=slow), pytest.param("bfloat16", False, marks=slow),
])
def test_every_reduction_compiles(dtype, subset):
    plans = _reduction_plans(dtype)
    if subset:  # one per family: the storage type only changes the loads and stores
        plans = [p for p in plans if p.red.name in ("Sum", "LogSumExp", "SumSoftMaxWeight", "Max_ArgMax")]
        plans = plans[:4] + [make_plan((-Vi(x3).sqdist(Vj(x3)),), "KMin_ArgKMin", 4, dtype)]
    images = compile_all(plans, "sm_90")
    assert all(img[:4] == b"\x7fELF" for img in images)


def test_sm80_and_ptx():
    plan = make_plan((_gauss() * Vj(w2),), "Sum", dtype="bfloat16")
    assert nvrtc.compile(cuda.kernel_source(plan, "sm_80"), "sm_80")[:4] == b"\x7fELF"
    ptx = nvrtc.compile(cuda.kernel_source(plan, "compute_80"), "compute_80")
    assert b".target sm_80" in ptx and b".entry jax_lazy_kernel" in ptx


# ---------------------------------------------------------------- launch configuration


def test_launch_config():
    gauss = make_plan((_gauss() * Vj(w2),), "Sum")
    rows, threads, shared = cuda.launch_config(gauss, None)
    assert rows == threads == cuda.BLOCK_THREADS
    assert shared == threads * (3 + 2) * 4  # one tile of x_j and w_j, float32
    assert cuda.launch_config(make_plan((_gauss() * Vj(w2),), "Sum", dtype="float64"))[2] == threads * 5 * 8
    assert cuda.launch_config(make_plan((_gauss() * Vj(w2),), "Sum", dtype="float16"))[2] == threads * 5 * 4
    # a large per-thread state: fewer threads per block
    assert cuda.launch_config(make_plan((-Vi(x3).sqdist(Vj(x3)),), "ArgKMin", 128))[1] == cuda.BLOCK_THREADS // 2


def test_wide_j_variables_are_read_from_global_memory(monkeypatch):
    """Columns too wide for 32 per tile are not staged through shared memory (without the
    inner-product stage, which would take these inner products)."""
    set_env(monkeypatch, JAX_LAZY_CUDA_INNER="off")
    wide = np.zeros((4, 200), np.float64)  # 1600 B per column: fewer than 32 in 48 KiB
    plan = make_plan(((Vi(wide) * Vj(wide)).sum(-1),), "Min_ArgMin", dtype="float64")
    cfg = cuda.config(plan)
    assert not cfg.staged and cfg.shared_bytes == 0
    src = cuda.kernel_source(plan)
    assert "__shared__" not in src and "__syncthreads" not in src
    medium = np.zeros((4, 100), np.float32)  # 400 B per column: tiles of 96 columns
    cfg = cuda.config(make_plan((Vi(medium).sqdist(Vj(medium)),), "Sum"))
    assert cfg.staged and cfg.tile == 96 and cfg.shared_bytes <= cuda.SMEM_BUDGET
    compile_all([plan, make_plan((Vi(medium).sqdist(Vj(medium)),), "Sum")])


def test_formula_without_j_variables():
    plan = make_plan(((Vi(x3) * Pm(s1)).exp(),), "Sum")
    assert cuda.config(plan).shared_bytes == 0
    compile_all([plan])


def test_too_many_variables_is_refused():
    arrays = [np.zeros((4, 1), np.float32) for _ in range(33)]
    F = Vi(arrays[0])
    for a in arrays[1:]:
        F = F + Vj(a)
    with pytest.raises(BackendError, match="at most 32"):
        cuda.kernel_source(make_plan((F,), "Sum"))


def test_kmin_at_the_local_memory_limit_compiles():
    """K-lists of exactly cuda.KMIN_STATE_BYTES per thread (one more pair: BackendError,
    tests/test_large_sizes.py) go through NVRTC and ptxas."""
    pair = 4 + np.dtype(np.int32).itemsize
    compile_all([make_plan(((Vi(x3) - Vj(x3)).sum(-1),), "ArgKMin", k=cuda.KMIN_STATE_BYTES // pair)])


# ---------------------------------------------------------------- snapshots

x32 = np.zeros((4, 32), np.float32)
SNAPSHOT_CASES = {
    "cuda_inner_lse_dot": lambda: make_plan(((Vi(x32) | Vj(x32)) * Pm(s1), Vj(w2)), "LogSumExp"),
    "cuda_inner_kmin_sqdist_f64": lambda: make_plan((Vi(x32).sqdist(Vj(x32)),), "KMin_ArgKMin", 4, dtype="float64"),
    "cuda_gauss_sum": lambda: make_plan(((-Vi(x3).sqdist(Vj(x3)) / Pm(s1)).exp() * Vj(w2),), "Sum"),
    "cuda_softmax_f16": lambda: make_plan((-Vi(x3).sqdist(Vj(x3)), Vj(w2)), "SumSoftMaxWeight", dtype="float16"),
    "cuda_argkmin": lambda: make_plan((Vi(x3).sqdist(Vj(x3)),), "ArgKMin", 5),
    "cuda_inner_kmin_sqdist_mma": lambda: make_plan((Vi(x32).sqdist(Vj(x32)),), "KMin_ArgKMin", 4),  # SQDIST=mma
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_CASES))
def test_generated_kernel_matches_snapshot(name, monkeypatch):
    set_env(monkeypatch, JAX_LAZY_CUDA_SQDIST="mma" if name.endswith("_mma") else "fma")
    body = cuda.kernel_body(SNAPSHOT_CASES[name]())  # the prelude is hand-written, not generated
    path = SNAPSHOTS / f"{name}.cu"
    if os.environ.get("JAX_LAZY_UPDATE_SNAPSHOTS"):
        path.write_text(body)
    assert path.exists(), f"missing snapshot {path}: run with JAX_LAZY_UPDATE_SNAPSHOTS=1"
    assert body == path.read_text()


# ---------------------------------------------------------------- the inner-product stage


def _inner_plan(name, D, dtype):
    x = np.zeros((4, D), np.float32)
    dot, sq = (lambda: Vi(x) | Vj(x)), (lambda: Vi(x).sqdist(Vj(x)))
    build = {"sum_dot": lambda: ((dot() * Vj(w2)),), "sum_sqdist": lambda: ((-sq()).exp() * Vj(w2),),
             "lse_dot": lambda: (dot() * Pm(s1), 1), "kmin_sqdist": lambda: (sq(),), "kmin_dot": lambda: (-dot(),)}
    red, k = {"sum": ("Sum", None), "lse": ("LogSumExp", None), "kmin": ("KMin_ArgKMin", 5)}[name.split("_")[0]]
    return make_plan(build[name](), red, k, dtype)


# (INNER, TF32, SQDIST) -> the stage's implementation for a float32 dot product (and sqdist)
VARIANTS = {("mma", False, "fma"): "3xTF32", ("mma", True, "fma"): "1xTF32", ("fma", False, "fma"): "register tiles",
            ("mma", False, "mma"): "sqdist-mma"}
INNER_COMPILE_FAST = [("lse_dot", 64, "float32"), ("kmin_sqdist", 17, "float32"), ("sum_dot", 100, "bfloat16"),
                      ("sum_dot", 256, "float16"), ("kmin_dot", 1000, "float64"), ("sum_sqdist", 16, "float64")]
INNER_COMPILE_ALL = [(n, D, t) for n in ("sum_dot", "sum_sqdist", "lse_dot", "kmin_sqdist", "kmin_dot")
                     for D in (16, 17, 64, 100, 256, 1000) for t in ("float32", "float64", "float16", "bfloat16")]


def _inner_compile_params():
    out = []
    for cases, cid in ((INNER_COMPILE_FAST, "fast"), (INNER_COMPILE_ALL, "all")):
        for variant, vid in VARIANTS.items():
            for arch in ("sm_80", "sm_90"):
                fast = cid == "fast" and (arch == "sm_90" or variant in (("mma", False, "fma"), ("mma", False, "mma")))
                out.append(pytest.param(cases, variant, arch, id=f"{cid}-{vid}-{arch}", marks=() if fast else slow))
    return out


@pytest.mark.parametrize("cases,variant,arch", _inner_compile_params())
def test_inner_stage_compiles(cases, variant, arch, monkeypatch):
    """Every implementation of the stage, to cubins for sm_80 and sm_90 (fast suite: a
    few plans, the default variant on both, the others on sm_90)."""
    set_env(monkeypatch, JAX_LAZY_CUDA_INNER=variant[0], JAX_LAZY_CUDA_TF32=int(variant[1]), JAX_LAZY_CUDA_SQDIST=variant[2])
    plans = [_inner_plan(*c) for c in cases]
    assert all(cuda.config(p).inners for p in plans)
    images = compile_all(plans, arch)
    assert all(img[:4] == b"\x7fELF" for img in images)
    for p, c in zip(plans, cases):
        src = cuda.kernel_body(p, arch=arch)
        on_mma = c[0].endswith("dot") or variant[2] == "mma"
        mma = variant[0] == "mma" and on_mma and c[2] != "float64"
        assert ("jl_tile_mma" in src) == mma and ("jl_tile_fma" in src) != mma, c
        assert ("jl_store_sqdist" in src) == (mma and c[0].endswith("sqdist")), c
        if mma:
            split = 1 if (variant[1] and c[0].endswith("dot")) or c[2] != "float32" else 3
            assert f"jl_tile_mma<{cuda.config(p).block_threads}, {cuda.config(p).chunk}, {split}>" in src


def test_inner_stage_before_sm80_uses_register_tiles():
    """No tf32 mma before sm_80: the stage falls back to register tiles."""
    if 75 not in nvrtc.supported_archs():
        pytest.skip("this NVRTC does not compile for sm_75")
    plan = _inner_plan("lse_dot", 64, "float32")
    assert "jl_tile_fma" in cuda.kernel_body(plan, arch="sm_75")
    assert nvrtc.compile(cuda.kernel_source(plan, "sm_75"), "sm_75")[:4] == b"\x7fELF"


def ptxas_usage(plan, arch="sm_90") -> tuple[int, int]:
    """(registers, spill store bytes) of ``plan``'s kernel, from ptxas's verbose log."""
    options = nvrtc.default_options(arch) + ["--ptxas-options=-v"]
    _, log = nvrtc.compile_with_log(cuda.kernel_source(plan, arch), arch, options=options)
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    return regs, int(re.search(r"(\d+) bytes spill stores", log).group(1))


@pytest.mark.parametrize("name,dtype,sqdist", [("kmin_sqdist", "float32", "fma"), ("kmin_sqdist", "float32", "mma"),
                                                ("lse_dot", "float32", "fma"), ("sum_dot", "float64", "fma")])
def test_inner_stage_does_not_spill_at_large_d(name, dtype, sqdist, monkeypatch):
    """D = 1000: without the stage every thread holds x_i (1000 values) and spills; with
    it, the registers do not depend on D."""
    set_env(monkeypatch, JAX_LAZY_CUDA_SQDIST=sqdist)
    regs, spills = ptxas_usage(_inner_plan(name, 1000, dtype))
    assert spills == 0 and regs <= 255


def test_inner_stage_launch_config():
    f32, f64 = _inner_plan("sum_dot", 64, "float32"), _inner_plan("sum_dot", 64, "float64")
    for plan in (f32, f64):
        cfg = cuda.config(plan)
        assert cfg.block_threads == 128 and cfg.tile == cuda.STAGE_TJ and cfg.staged
        assert cuda.launch_config(plan) == (128, 128, cfg.shared_bytes) and cfg.shared_bytes <= cuda.SMEM_BUDGET
    assert cuda.config(f32).chunk == 16 and cuda.config(f64).chunk == 8
    # below STAGE_MIN_DIM, or an inner product of two j-variables: no stage
    assert not cuda.config(_inner_plan("sum_dot", 15, "float32")).inners
    y = np.zeros((4, 64), np.float32)
    assert not cuda.config(make_plan(((Vj(y) | Vj(y)) * Vi(x3),), "Sum")).inners


# ---------------------------------------------------------------- cache and errors


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=d)
    cuda._build.cache_clear()
    yield d
    cuda._build.cache_clear()


def test_build_goes_through_the_cache(cache_dir):
    plan = make_plan((_gauss() * Vj(w2),), "Sum")
    image = cuda.build(plan, "sm_90")
    assert image[:4] == b"\x7fELF"
    (cubin,) = cache_dir.glob("*/*.cubin")
    manifest = json.loads(cubin.with_suffix(".json").read_text())
    assert manifest["arch"] == "sm_90" and manifest["size"] == len(image)
    key = cubin.stem
    assert cubin.with_suffix(".cu").read_text() == cuda.kernel_source(plan, "sm_90") + compilers.key_stamp(key, "cuda")
    # the image carries its own key, a __device__ string the handler reads back on load
    assert b"jax_lazy_kernel_key" in image and key.encode() + b"\0" in image
    # a new process: found on disk, not compiled again
    store.forget("image")
    compiled = dict(compilers.build_times)
    assert compilers.build_cubin("Sum", cuda.kernel_source(plan, "sm_90"), "sm_90") == image
    assert compilers.build_times == compiled
    # a corrupted image is rebuilt
    store.forget("image")
    cubin.write_bytes(b"garbage")
    assert compilers.build_cubin("Sum", cuda.kernel_source(plan, "sm_90"), "sm_90") == image
    # another arch is another entry
    cuda.build(plan, "sm_80")
    assert len(list(cache_dir.glob("*/*.cubin"))) == 2


def test_compile_error_has_the_log_and_the_source(cache_dir):
    source = 'extern "C" __global__ void jax_lazy_kernel() { undefined_thing(); }\n'
    with pytest.raises(CompileError) as info:
        compilers.build_cubin("broken", source, "sm_90")
    err = info.value
    assert "undefined_thing" in err.log and "undefined_thing" in str(err)
    assert Path(err.source_path).read_text().startswith(source) and str(err.source_path) in str(err)
    assert not list(cache_dir.glob("*/*.cubin")) and not list(cache_dir.glob("*/*.json"))


def test_bad_arch():
    with pytest.raises(BackendError, match="sm_XX"):
        nvrtc.compile("", "ampere")
    with pytest.raises(BackendError, match="cannot compile for sm_11"):
        nvrtc.compile("", "sm_11")


def test_nvrtc_missing(monkeypatch):
    saved = (nvrtc._lib, nvrtc._problem, nvrtc._loaded, nvrtc._path)
    monkeypatch.setattr(nvrtc, "_candidates", lambda: ["/nonexistent/libnvrtc.so.12"])
    nvrtc._loaded = False
    try:
        reason = nvrtc.status()
        assert "nvidia-cuda-nvrtc-cu12" in reason and "/nonexistent/libnvrtc.so.12" in reason
        assert cuda.available() == reason  # checked first
        with pytest.raises(BackendError, match="cannot compile kernels"):
            nvrtc.compile("", "sm_90")
    finally:
        nvrtc._lib, nvrtc._problem, nvrtc._loaded, nvrtc._path = saved


def test_nvrtc_facts():
    major, minor = nvrtc.version()
    assert major >= 11
    assert 90 in nvrtc.supported_archs() and 80 in nvrtc.supported_archs()
    assert f"nvrtc {major}.{minor}" in nvrtc.identity()


def _wheel_libs(package):
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    roots = spec.submodule_search_locations or [] if spec else []
    return [p for r in roots for p in glob.glob(f"{r}/lib/libnvrtc.so*")]


@pytest.mark.parametrize("major", [12, 13])
def test_the_wheel_of_jax_cuda_major_comes_first(major, monkeypatch):
    cu12, cu13 = _wheel_libs("nvidia.cuda_nvrtc"), _wheel_libs("nvidia.cu13")
    if not (cu12 and cu13):
        pytest.skip("needs both NVRTC wheels (the test extra)")
    set_env(monkeypatch, JAX_LAZY_NVRTC=None)
    monkeypatch.setattr(nvrtc, "_jax_cuda_major", lambda: major)
    found = nvrtc._candidates()
    first, second = (cu12, cu13) if major == 12 else (cu13, cu12)
    assert found.index(sorted(first)[0]) < found.index(sorted(second)[0])
    assert not any("builtins" in p for p in found)


def test_nvrtc_13_wheel_compiles(tmp_path):
    """CUDA 13's wheel (jax[cuda13]) lays NVRTC out differently and needs its builtins
    preloaded: a fresh process that uses it compiles a stage kernel and a KMin kernel."""
    libs = [p for p in _wheel_libs("nvidia.cu13") if ".alt." not in p]
    if not libs:
        pytest.skip("the nvidia-cuda-nvrtc (13) wheel is not installed")
    script = """
import numpy as np
from jax_lazy import Vi, Vj
from jax_lazy.backends import cuda, nvrtc
from test_cuda_compile import make_plan
assert nvrtc.version()[0] == 13, nvrtc.version()
x, y = np.ones((5, 64), np.float32), np.ones((7, 64), np.float32)
for plan in (make_plan(((Vi(x) | Vj(y)).exp(),), "Sum"), make_plan((Vi(x).sqdist(Vj(y)),), "ArgKMin", 10)):
    assert nvrtc.compile(cuda.kernel_source(plan, "sm_90"), "sm_90")[:4] == b"\x7fELF"
    assert b".entry" in nvrtc.compile(cuda.kernel_source(plan, "compute_90"), "compute_90")
print("ok")
"""
    env = {**os.environ, "JAX_LAZY_NVRTC": libs[0], "JAX_LAZY_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_supports():
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        assert cuda.supports(dtype) is None
    assert "int32" in cuda.supports("int32")


# ---------------------------------------------------------------- block-sparse ranges (issue 13)


def _ranges(plans):
    return [replace(p, ranges=True) for p in plans]


@pytest.mark.parametrize("dtype,subset", [("float32", True), pytest.param("float32", False, marks=slow),
                                          pytest.param("float64", False, marks=slow),
                                          pytest.param("float16", False, marks=slow)])
def test_ranges_variants_compile(dtype, subset):
    """The block-sparse variant of every reduction (fast suite: one plan per family) to
    sm_90 cubins; the dense source of the same plans has no ranges code."""
    plans = _reduction_plans(dtype)
    if subset:  # the first plan of each family
        plans = list({p.red.family: p for p in reversed(plans)}.values())
    for p in plans[:2]:
        assert "jl_tab" in cuda.kernel_body(replace(p, ranges=True)) and "jl_tab" not in cuda.kernel_body(p)
    images = compile_all(_ranges(plans), "sm_90")
    assert all(img[:4] == b"\x7fELF" for img in images)


@pytest.mark.parametrize("variant", [pytest.param(v, id=vid, marks=() if vid == "sqdist-mma" else slow)
                                     for v, vid in VARIANTS.items()])
def test_ranges_with_the_stage_compile(variant, monkeypatch):
    """The block-sparse variant with each path of the inner-product stage (its rows are the
    chunk's: ``jl_stage_rows(..., jl_r0, jl_r1, ...)``), to sm_90 cubins."""
    set_env(monkeypatch, JAX_LAZY_CUDA_INNER=variant[0], JAX_LAZY_CUDA_TF32=int(variant[1]), JAX_LAZY_CUDA_SQDIST=variant[2])
    plans = _ranges([_inner_plan(*c) for c in INNER_COMPILE_FAST[:2]])
    assert all("jl_stage_rows" in cuda.kernel_body(p) and "jl_r0, jl_r1" in cuda.kernel_body(p) for p in plans)
    images = compile_all(plans, "sm_90")
    assert all(img[:4] == b"\x7fELF" for img in images)


def test_ranges_too_many_variables_is_refused():
    """The ranges table takes one of the JL_MAX_INPUTS inputs."""
    arrays = [np.zeros((4, 1), np.float32) for _ in range(32)]
    F = Vi(arrays[0])
    for a in arrays[1:]:
        F = F + Vj(a)
    plan = make_plan((F,), "Sum")
    assert cuda.kernel_body(plan)
    with pytest.raises(BackendError, match="at most 31"):
        cuda.kernel_source(replace(plan, ranges=True))

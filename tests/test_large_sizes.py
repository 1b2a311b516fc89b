"""Large K and large D: the kernels neither crash nor take a compile time that grows with D.

- KMin's state (R rows x D components x K sorted (value, index) pairs) and the buffers
  of the chunked reductions used to be arrays on the thread stack: at D = 64, K = N =
  4096 (float64) they passed the 8 MiB stack and the process died of a segfault. Such
  runs go to a subprocess here, so that a crash fails the test instead of pytest.
- A node of dim D used to become D C++ statements; past ``codegen.LOOP_MIN_DIM`` vector
  ops are loops over the components instead, so the source (and the compile time) of
  ``(x_i - y_j).min()`` no longer grows with D. Those loops run with the lanes innermost
  (vectorised over j), not inside the lane loop (where GCC vectorised them over the
  components: ~10x slower per pair).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jax_lazy.backends import cuda
from jax_lazy.errors import BackendError


def _run(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new process on JAX's cpu platform (the cpu backend's kernels run in cpu
    computations, also on a machine with a GPU)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "JAX_PLATFORMS": "cpu"})


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


# ---------------------------------------------------------------- large D: loops, not D statements


def _diff(x, y):
    return x[:, None, :] - y[None, :, :]  # (M, N, D)


LARGE_D = {  # name -> (lazy formula, reduction, its NumPy float64 value)
    "min_argmin": (lambda X, Y: X - Y, "Min_ArgMin",
                   lambda x, y: (_diff(x, y).min(1), _diff(x, y).argmin(1))),
    "abs_sum": (lambda X, Y: (X - Y).abs(), "Sum", lambda x, y: np.abs(_diff(x, y)).sum(1)),
    "laplace": (lambda X, Y: (-(X - Y).abs().sum(-1) / 100.0).exp(), "Sum",
                lambda x, y: np.exp(-np.abs(_diff(x, y)).sum(-1, keepdims=True) / 100.0).sum(1)),
    "sq_relu_max": (lambda X, Y: ((X * 0.5 - Y) ** 2).relu().sum(-1), "Max",
                    lambda x, y: ((0.5 * x[:, None] - y[None]) ** 2).sum(-1, keepdims=True).max(1)),
    "l1_sum": (lambda X, Y: (X - Y).abs().sum(-1), "Sum",
               lambda x, y: np.abs(_diff(x, y)).sum(-1, keepdims=True).sum(1)),
    "l1_lse": (lambda X, Y: -(X - Y).abs().sum(-1) / 100.0, "LogSumExp",
               lambda x, y: np.log(np.exp(-np.abs(_diff(x, y)).sum(-1, keepdims=True) / 100.0).sum(1))),
    "kmin": (lambda X, Y: X - Y, "KMin_ArgKMin",
             lambda x, y: (np.sort(_diff(x, y), axis=1)[:, :3], np.argsort(_diff(x, y), axis=1, kind="stable")[:, :3])),
}
K = 3  # of the KMin cases
_METHODS = {"Min_ArgMin": "min_argmin", "Sum": "sum", "Max": "max", "LogSumExp": "logsumexp"}


def _reduce(lazy, red, backend):
    """The reduction ``red`` of ``lazy`` over j: a tuple of outputs."""
    if red == "KMin_ArgKMin":
        return lazy.Kmin_argKmin(K, axis=1, backend=backend)
    out = getattr(lazy, _METHODS[red])(axis=1, backend=backend)
    return out if isinstance(out, tuple) else (out,)


def _plan(name, D):
    from jax_lazy import Vi, Vj
    from jax_lazy import plan as plan_mod
    from jax_lazy.reductions import REDUCTIONS

    build, red, _ = LARGE_D[name]
    z = np.zeros((3, D), np.float32)
    lazy = build(Vi(z), Vj(z))
    nodes, (vars_, *_rest) = lazy._join(1) if red == "LogSumExp" else lazy._join()  # LSE: its weight 1
    return plan_mod.Plan(tuple(nodes), REDUCTIONS[red], K if "KMin" in red else None, tuple(vars_), "float32", "cpu")


def _cpu_source(name, D):
    from jax_lazy.backends import cpu

    source = cpu.kernel_source(_plan(name, D))
    return source[source.index('extern "C"'):]  # the generated part


@pytest.mark.parametrize("name", sorted(LARGE_D))
def test_cpu_source_does_not_grow_with_dim(name):
    """The generated kernel at D = 20000 is less than twice its size at D = LOOP_MIN_DIM (it
    used to hold a few statements per component: 100 times larger, minutes of g++)."""
    from jax_lazy.backends.codegen import LOOP_MIN_DIM

    small, large = _cpu_source(name, LOOP_MIN_DIM), _cpu_source(name, 20000)
    assert len(large) < 2 * len(small), (name, len(small), len(large))


@pytest.mark.parametrize("D", [64, 2000])
@pytest.mark.parametrize("name", sorted(LARGE_D))
def test_large_dim_values(backend, name, D, x64):
    """D = 64 and 2000 against NumPy float64 (the cpu kernel loops over the components)."""
    if backend == "cuda" and jax.default_backend() != "gpu":
        pytest.skip("the cuda kernels scalarise every component: D = 2000 takes minutes through the host shim")
    from jax_lazy import Vi, Vj

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, D)), rng.standard_normal((70, D))
    build, red, oracle = LARGE_D[name]
    if backend == "cuda" and name == "kmin" and D * 3 * 16 > cuda.KMIN_STATE_BYTES:  # K = 3, float64
        with pytest.raises(BackendError, match="KMIN_STATE_BYTES"):
            _reduce(build(Vi(x), Vj(y)), red, backend)
        return
    want = oracle(x, y)
    for got, want in zip(_reduce(build(Vi(x), Vj(y)), red, backend), want if isinstance(want, tuple) else (want,)):
        if np.issubdtype(np.asarray(got).dtype, np.integer):
            np.testing.assert_array_equal(np.asarray(got), want)
        else:
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=0)


def _unvectorised_simd_loops(source: str, report: str, skip: frozenset = frozenset()) -> list[str]:
    """The ``#pragma omp simd`` loops of ``source`` that GCC's ``-fopt-info-vec`` report
    does not call vectorised. GCC reports a loop at its header or at a line of its body;
    a line holding a ``for`` of its own (a component loop written inline) is that loop's.
    A one-line copy becomes a ``memcpy`` (no report): not counted. Lines in ``skip`` (the
    prelude's templates that this kernel does not instantiate: no code, no report) neither."""
    lines = source.splitlines()
    done = {int(n) for n in re.findall(r"\.cpp:(\d+):\d+: optimized: loop vectorized", report)}
    missing = []
    for p, line in enumerate(lines, 1):
        if "#pragma omp simd" not in line or p in skip:
            continue
        if re.fullmatch(r"\s*for \(.*\) \w+\[[^]]+\] = \w+\[[^]]+\];", lines[p]):
            continue
        head, end, depth = p + 1, p + 1, lines[p].count("{") - lines[p].count("}")
        while depth > 0:
            depth += lines[end].count("{") - lines[end].count("}")
            end += 1
        if not any(n in done for n in range(head, end + 1) if n == head or "for (" not in lines[n - 1]):
            missing.append(lines[p].strip())
    return missing


def _check_simd_loops(plan, tmp_path):
    """Compile ``plan``'s cpu kernel with GCC's vectoriser report: every simd loop is vectorised."""
    from jax_lazy import compilers
    from jax_lazy.backends import cpu

    compiler = compilers.find_compiler()
    if compiler is None or "clang" in compiler.identity.lower():
        pytest.skip("needs GCC's vectoriser report")
    src = tmp_path / "kernel.cpp"
    src.write_text(cpu.kernel_source(plan))
    flags = [f for f in compilers.default_flags() if f not in ("-shared", "-fPIC")]
    proc = subprocess.run([*compiler.argv, *flags, "-S", "-o", str(tmp_path / "kernel.s"), str(src),
                           "-fopt-info-vec-optimized"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = src.read_text()
    assert _unvectorised_simd_loops(text, proc.stderr, _uninstantiated(text)) == []


def _uninstantiated(source: str) -> frozenset:
    """Lines of the prelude's function templates whose name the generated code never
    uses (e.g. the ranges kernels' ``jl_lanes_min`` in a dense kernel)."""
    from jax_lazy.backends import cpu

    prelude = cpu._PRELUDE.read_text()
    start = source.index(prelude)
    first = source[:start].count("\n") + 1
    generated = source[start + len(prelude):]
    lines = prelude.splitlines()
    skip = set()
    for p, line in enumerate(lines):
        m = re.match(r"JL_INLINE \w+ (jl_\w+)\(", line)
        if not (m and p and lines[p - 1].startswith("template") and m.group(1) not in generated):
            continue
        end = p
        while lines[end] != "}":
            end += 1
        skip.update(range(first + p, first + end + 1))
    return frozenset(skip)


@pytest.mark.parametrize("name", sorted(LARGE_D))
def test_cpu_large_dim_loops_vectorise_over_lanes(name, tmp_path):
    """At D = 300 every ``#pragma omp simd`` loop of the cpu kernel is vectorised (GCC's
    report), i.e. over the lanes. The component loops used to sit inside the lane loop:
    GCC vectorised them over the components instead (strided loads of the j-variables)
    and left the lane loop scalar, ~10x slower per pair than unrolled statements."""
    _check_simd_loops(_plan(name, 300), tmp_path)  # past LOOP_MIN_DIM on main too


def test_cpu_ranges_min_kernel_vectorises(tmp_path):
    """A ranges Min_ArgMin kernel instantiates the prelude's ``jl_lanes_min`` (the lanes'
    end-of-row step): its simd loops are vectorised too."""
    from dataclasses import replace

    plan = replace(_plan("min_argmin", 300), ranges=True)
    _check_simd_loops(plan, tmp_path)


def _gauss_b(X, Y):
    return (-X.sqdist(Y) / 64.0).exp() * Y  # a vector root that reads a (row, lane) scalar


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the cpu backend runs in cpu computations")
def test_cpu_lane_reading_loops_scalarised_below_inner_loop_min_dim(x64):
    """exp(-|x - y|^2 / 64) y_j at D = 64: its component loop would read a (row, lane)
    value, so it could only run inside the lane loop (slow); below INNER_LOOP_MIN_DIM its
    nodes are scalarised instead (nothing looped); values vs NumPy float64."""
    from jax_lazy import Vi, Vj
    from jax_lazy import plan as plan_mod
    from jax_lazy.backends import cpu
    from jax_lazy.backends.codegen import INNER_LOOP_MIN_DIM, LOOP_MIN_DIM
    from jax_lazy.reductions import REDUCTIONS

    D = 64
    assert LOOP_MIN_DIM <= D < INNER_LOOP_MIN_DIM
    z = np.zeros((3, D), np.float32)
    nodes, (vars_, *_rest) = _gauss_b(Vi(z), Vj(z))._join()
    em = cpu._emitter(plan_mod.Plan(tuple(nodes), REDUCTIONS["Sum"], None, tuple(vars_), "float32", "cpu"))
    assert not em.looped and not em.loop_sums
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((9, D)), rng.standard_normal((40, D))
    want = (np.exp(-(_diff(x, y) ** 2).sum(-1, keepdims=True) / 64.0) * y[None]).sum(1)
    got = _gauss_b(Vi(x), Vj(y)).sum(axis=1, backend="cpu")
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)  # terms of size <= |y| ~ 1 cancel


# ---------------------------------------------------------------- large K on every backend


def test_kmin_at_the_cuda_state_limit(backend, x64):
    """K = N = 1024 in float64 (16 KiB of K-lists per thread: cuda's KMIN_STATE_BYTES) on
    every backend, against a stable NumPy argsort."""
    from jax_lazy import Vi, Vj

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((3, 1)), rng.standard_normal((1024, 1))
    vals, idx = (Vi(x) - Vj(y)).abs().Kmin_argKmin(1024, axis=1, backend=backend)
    d = np.abs(x - y.T)  # (M, N)
    order = np.argsort(d, axis=1, kind="stable")
    np.testing.assert_array_equal(np.asarray(idx), order)
    np.testing.assert_array_equal(np.asarray(vals), np.take_along_axis(d, order, axis=1))


def test_cuda_kmin_past_the_state_limit_is_refused():
    """One pair more than KMIN_STATE_BYTES of K-lists per thread: a BackendError that says
    what to do, raised while generating the source (no GPU needed)."""
    from jax_lazy import Vi, Vj
    from jax_lazy import plan as plan_mod
    from jax_lazy.backends import cuda
    from jax_lazy.errors import BackendError
    from jax_lazy.reductions import REDUCTIONS

    z = np.zeros((3, 1), np.float32)
    nodes, (vars_, *_rest) = (Vi(z) - Vj(z))._join()
    plan = lambda K: plan_mod.Plan(tuple(nodes), REDUCTIONS["ArgKMin"], K, tuple(vars_), "float32", "cuda")  # noqa: E731
    assert "jl_kmin_update<1, 2048>" in cuda.kernel_source(plan(2048))
    with pytest.raises(BackendError, match="KMIN_STATE_BYTES.*backend='cpu'"):
        cuda.kernel_source(plan(2049))

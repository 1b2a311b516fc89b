"""CPU benchmark suite of jax_lazy: symbolic reductions against pure JAX, pykeops and C++.

    python bench/run.py [--quick] [--rows NAME,...] [--out docs/benchmarks.md]
    python bench/run.py --list          # the row names
    python bench/run.py --sharded [...]  # 1 and 2 CPU devices: bench/sharded.py, its options
    python bench/run.py --numerics [...]  # cost of dtype_acc / sum_scheme: bench/numerics.py
    python bench/run.py --ranges [...]  # block-sparse ranges vs dense: bench/ranges.py
    python bench/run.py --krr [...]       # kernel ridge regression, CG vs Cholesky: bench/krr.py

Each row is one reduction over M = N points (Gaussian kernel matvec, its gradient w.r.t.
x, argKmin, logsumexp), computed by

  jax_lazy-cpu   the compiled backend (``backend="cpu"``: generated C++ through XLA FFI);
                 "n/a (reason)" while it cannot run (``BackendError`` or another failure);
  jax_lazy-jnp   the pure-JAX tiled backend (``backend="jnp"``), on the cheap rows only;
  pure JAX       the same computation written with jax.numpy under ``jax.jit``, best of
                 three forms: (a) dense, |x|^2 + |y|^2 - 2 x y^T then exp and a matmul;
                 (b) fused broadcast, ((x[:, None] - y[None]) ** 2).sum(-1); (c) chunked,
                 ``lax.map`` over blocks of 1000 rows of x, each block dense as in (a).
                 Only the chunked form runs beyond WHOLE_MAX_PAIRS pairs (at 1e5, a
                 1e5 x 1e5 float32 matrix is 37 GiB), and forms whose compiled temporaries
                 exceed MEM_LIMIT are skipped;
  pykeops        the pykeops numpy API on CPU (``LazyTensor``; the gradient via ``Genred``
                 with a ``Grad`` formula, as torch is not used here); optional: its
                 columns say "n/a" when pykeops cannot be imported (``pip install pykeops``);
  yardstick      bench/yardstick.cpp, a hand-written Gaussian sum (D = 3, float32 only),
                 built once into bench/_build/ and called through ctypes.

Timing: JAX functions are compiled ahead of time (``jit(f).lower(...).compile()``), so
the compile is excluded; then the first call is a warm-up and the time reported is the
best of up to ``--repeats`` further calls, stopping early once ``--budget`` seconds have
been spent (a method whose warm-up alone takes longer than the budget reports its
warm-up call, already compile-free for JAX). pykeops compiles a formula at its first
call: a call on 256 points does it, before the warm-up. "pairs/s" is M * N / time (for
the gradient too, although it makes two passes over the pairs: forward and backward).

Errors: every result is compared, on its first REF_ROWS rows, with a float64 NumPy
reference computed densely: for sums max |a - b| / max |b|; for argKmin the fraction of
rows whose K indices (in order) equal the reference's.

Compile times: the kernel caches of jax_lazy (JAX_LAZY_CACHE_DIR) and pykeops
(KEOPS_CACHE_FOLDER) point into bench/_build/ and are emptied at start (unless
``--keep-caches``), so the "first call" columns include building the kernels.

Caveats: the machine this was written on is shared (other jobs run concurrently) and has
2 cores, so timings are noisy: best-of-k hides part of the noise, the load average is
recorded at the start and the end and per row. Every method may use both cores (XLA's
thread pool, jax_lazy's FFI thread pool, OpenMP for pykeops, 2 std::threads for the
yardstick). float64 rows need
``jax_enable_x64``, so they run in a subprocess.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rows import (  # noqa: E402
    BENCH, BLOCK, BUILD, JNP_MAX_PAIRS, KEOPS_CACHE, KEOPS_WARMUP, K_NN, LAZY_CACHE, MEM_LIMIT, METHODS,
    REF_ROWS, ROWS, SIGMA, TITLES, WHOLE_MAX_PAIRS, YARDSTICK_FLAGS, Row, make_data,
)


# --------------------------------------------------------------------------- reference and errors

def sqdist64(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T, 0.0)


def reference(row: Row, x, y, b):
    """The exact result (float64) on the first REF_ROWS rows."""
    xs, s = x[:REF_ROWS].astype(np.float64), SIGMA[row.D]
    d2 = sqdist64(xs, y)
    if row.kind == "argkmin":
        return np.argsort(d2, axis=1, kind="stable")[:, :K_NN]
    if row.kind == "lse":
        f = -d2 / (2 * s * s)
        m = f.max(1)
        return m + np.log(np.exp(f - m[:, None]).sum(1))
    kb = np.exp(-d2 / (2 * s * s)) * b.astype(np.float64)[None, :]
    if row.kind == "gauss":
        return kb.sum(1)
    if row.kind in ("jvp", "hvp"):  # tangent v = y[:REF_ROWS] along x (see with_transform)
        v, y64 = y[:REF_ROWS].astype(np.float64), y.astype(np.float64)
        diff = y64[None, :, :] - xs[:, None, :]  # y_j - x_i
        a = (diff * v[:, None, :]).sum(-1) / (s * s)  # d/de of -|x_i + e v_i - y_j|^2 / (2 s^2)
        if row.kind == "jvp":
            return (kb * a).sum(1)
        return (((kb * a)[:, :, None] * diff).sum(1) - v * kb.sum(1)[:, None]) / (s * s)
    return (kb @ y.astype(np.float64) - xs * kb.sum(1)[:, None]) / (s * s)  # d/dx_i of sum_i out_i


def error(row: Row, result, ref) -> float:
    """Max relative error (sums) or the fraction of rows with the exact K indices (argKmin)."""
    got = np.asarray(result)[:REF_ROWS]
    if row.kind == "argkmin":
        return float(np.mean(np.all(got.astype(np.int64) == ref, axis=1)))
    return float(np.abs(got.astype(np.float64) - ref).max() / np.abs(ref).max())


# --------------------------------------------------------------------------- timing

def now() -> float:
    return time.perf_counter()


@dataclasses.dataclass
class Measure:
    best: float | None = None
    runs: int = 0
    compile: float | None = None  # ahead-of-time compile (JAX) or build (C++)
    first: float | None = None  # the warm-up call (pykeops: includes its compile)
    kernel_build: float | None = None  # jax_lazy: seconds spent compiling C++ kernels
    error: float | None = None
    note: str = ""  # the pure-JAX form, or why the method did not run
    failed: bool = False


def time_calls(call, repeats: int, budget: float, m: Measure):
    """Warm-up call, then up to ``repeats`` timed calls within ``budget`` seconds."""
    t = now()
    out = call()
    m.first = now() - t
    times, spent = [], 0.0
    while len(times) < repeats and spent + m.first < budget:
        t = now()
        call()
        times.append(now() - t)
        spent += times[-1]
    m.best, m.runs = (min(times), len(times)) if times else (m.first, 1)
    return out


def failure(e: BaseException) -> Measure:
    msg = " ".join(str(e).split()) or type(e).__name__
    return Measure(note=f"{type(e).__name__}: {msg[:160]}", failed=True)


# --------------------------------------------------------------------------- jax

def jax_call(fn, args, repeats, budget, m: Measure, check_memory=False):
    """Compile ``fn`` ahead of time, then time it; returns the result as NumPy."""
    import jax

    t = now()
    compiled = jax.jit(fn).lower(*args).compile()
    m.compile = now() - t
    if check_memory:
        temp = compiled.memory_analysis().temp_size_in_bytes
        if temp > MEM_LIMIT:
            raise MemoryError(f"needs {temp / 2**30:.0f} GiB of temporaries")
    out = time_calls(lambda: jax.block_until_ready(compiled(*args)), repeats, budget, m)
    return np.asarray(out)


def with_grad(row: Row, f):
    """``f`` itself, or for the derivative rows, with the tangent v = y (N(0, 1), the
    shape of x as M = N): x -> grad_x sum(f(x, y, b)) ("grad"), the jvp of f along v
    ("jvp"), or the Hessian-vector product of sum(f) along v, forward over reverse ("hvp")."""
    import jax

    grad = jax.grad(lambda x, y, b: f(x, y, b).sum())
    if row.kind == "grad":
        return grad
    if row.kind == "jvp":
        return lambda x, y, b: jax.jvp(lambda x: f(x, y, b), (x,), (y,))[1]
    if row.kind == "hvp":
        return lambda x, y, b: jax.jvp(lambda x: grad(x, y, b), (x,), (y,))[1]
    return f


def lazy_fn(row: Row, backend: str):
    from jax_lazy import Vi, Vj

    s = SIGMA[row.D]

    def f(x, y, b):
        d2 = Vi(x).sqdist(Vj(y))
        if row.kind == "argkmin":
            return d2.argKmin(K_NN, axis=1, backend=backend)
        if row.kind == "lse":
            return (-d2 / (2 * s * s)).logsumexp(axis=1, backend=backend)[:, 0]
        return ((-d2 / (2 * s * s)).exp() * Vj(b[:, None])).sum(axis=1, backend=backend)[:, 0]

    return with_grad(row, f)


def sqdist_dense(x, y):

    return (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * (x @ y.T)


def sqdist_fused(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def head(row: Row):
    """The part after the squared distances: (d2 block, b) -> output rows."""
    import jax
    import jax.numpy as jnp

    s = SIGMA[row.D]
    if row.kind == "argkmin":
        return lambda d2, b: jax.lax.top_k(-d2, K_NN)[1]
    if row.kind == "lse":
        return lambda d2, b: jax.nn.logsumexp(-d2 / (2 * s * s), axis=1)
    return lambda d2, b: jnp.exp(-d2 / (2 * s * s)) @ b


def chunked(h):
    """``lax.map`` over blocks of BLOCK rows of x, each block dense. The block function is
    rematerialised (``jax.checkpoint``) so that the gradient does not keep every block's
    matrix for the backward pass (40 GB at 1e5). ``prevent_cse=False``: fine inside a
    loop, and with jax 0.10.2 on CPU the default (an optimization barrier) gives *wrong*
    gradients under jit for exp(x y^T) @ b-like blocks (the error column catches it)."""
    import jax
    import jax.numpy as jnp

    def f(x, y, b):
        m = x.shape[0]
        nb = -(-m // BLOCK)
        xb = jnp.pad(x, ((0, nb * BLOCK - m), (0, 0))).reshape(nb, BLOCK, x.shape[1])
        out = jax.lax.map(jax.checkpoint(lambda blk: h(sqdist_dense(blk, y), b), prevent_cse=False), xb)
        return out.reshape((nb * BLOCK,) + out.shape[2:])[:m]

    return f


def jax_forms(row: Row) -> dict:
    h = head(row)
    forms = {"dense": lambda x, y, b: h(sqdist_dense(x, y), b),
             "fused": lambda x, y, b: h(sqdist_fused(x, y), b),
             "chunked": chunked(h)}
    return {name: with_grad(row, f) for name, f in forms.items()}


def run_pure_jax(row: Row, args, repeats, budget) -> tuple[Measure, object]:
    """Every form; keeps the fastest (its note names it, and the forms that failed)."""
    best, best_out, skipped = None, None, []
    for name, f in jax_forms(row).items():
        m = Measure(note=name)
        if name != "chunked" and row.pairs > WHOLE_MAX_PAIRS:
            skipped.append(f"{name}: too large")
            continue
        try:
            out = jax_call(f, args, repeats, budget, m, check_memory=True)
        except Exception as e:  # noqa: BLE001 - a form that cannot run is reported, not fatal
            skipped.append(f"{name}: {type(e).__name__}")
            log(f"    pure JAX {name}: skipped ({failure(e).note})")
            continue
        log(f"    pure JAX {name}: {fmt_time(m.best)}")
        if best is None or m.best < best.best:
            best, best_out = m, out
    if best is None:
        return Measure(note="; ".join(skipped), failed=True), None
    if skipped:
        best.note += f"; skipped {', '.join(skipped)}"
    return best, best_out


def run_lazy(row: Row, args, backend, repeats, budget) -> tuple[Measure, object]:
    try:
        from jax_lazy import compilers
    except ImportError:
        compilers = None
    before = sum(getattr(compilers, "build_times", {}).values()) if compilers else 0.0
    m = Measure()
    out = jax_call(lazy_fn(row, backend), args, repeats, budget, m)
    if compilers is not None:
        m.kernel_build = sum(getattr(compilers, "build_times", {}).values()) - before
    return m, out


# --------------------------------------------------------------------------- pykeops

def keops_available() -> str | None:
    try:
        import pykeops

        pykeops.set_verbose(False)
        return None
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return f"pykeops cannot be imported ({type(e).__name__}: {e}); pip install pykeops"


def keops_fn(row: Row, x, y, b):
    """A zero-argument callable computing the row with pykeops' numpy API."""
    from pykeops.numpy import Genred, LazyTensor

    s = SIGMA[row.D]
    if row.kind == "grad":
        routine = Genred("Grad(Exp(-SqDist(x,y)*g)*b, x, e)",
                         [f"x = Vi({row.D})", f"y = Vj({row.D})", "b = Vj(1)", "g = Pm(1)", "e = Vi(1)"],
                         reduction_op="Sum", axis=1)
        g = np.array([1 / (2 * s * s)], dtype=x.dtype)
        e = np.ones((x.shape[0], 1), dtype=x.dtype)
        return lambda: routine(x, y, b[:, None], g, e, backend="CPU")
    if row.kind == "hvp":  # no forward mode: reverse over reverse, Grad(Grad(F, x, e), x, v) = H v
        routine = Genred("Grad(Grad(Exp(-SqDist(x,y)*g)*b, x, e), x, v)",
                         [f"x = Vi({row.D})", f"y = Vj({row.D})", "b = Vj(1)", "g = Pm(1)", "e = Vi(1)",
                          f"v = Vi({row.D})"], reduction_op="Sum", axis=1)
        g = np.array([1 / (2 * s * s)], dtype=x.dtype)
        e = np.ones((x.shape[0], 1), dtype=x.dtype)
        return lambda: routine(x, y, b[:, None], g, e, y, backend="CPU")
    X, Y = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    d2 = ((X - Y) ** 2).sum(-1)
    if row.kind == "jvp":  # no forward mode: the directional derivative written out by hand
        V = LazyTensor(y[:, None, :])
        kernel = (-d2 / (2 * s * s)).exp() * LazyTensor(b[None, :, None])
        return lambda: (kernel * ((Y - X) * V).sum(-1) / (s * s)).sum(dim=1)[:, 0]
    if row.kind == "argkmin":
        return lambda: d2.argKmin(K_NN, dim=1)
    if row.kind == "lse":
        return lambda: (-d2 / (2 * s * s)).logsumexp(dim=1)[:, 0]
    kernel = (-d2 / (2 * s * s)).exp()
    return lambda: (kernel @ b[:, None])[:, 0]




def run_keops(row: Row, data, repeats, budget) -> tuple[Measure, object]:
    """A first call on KEOPS_WARMUP points builds the formula (pykeops caches it per formula
    and dtype, not per size): its time is reported as the compile time."""
    m = Measure()
    small = keops_fn(row, *(a[:KEOPS_WARMUP] for a in data))
    t = now()
    small()
    m.compile = now() - t
    out = time_calls(keops_fn(row, *data), repeats, budget, m)
    return m, out


# --------------------------------------------------------------------------- yardstick

def build_yardstick() -> tuple[Path, float]:
    """Compile bench/yardstick.cpp into bench/_build/ when the source or flags changed."""
    src, lib = BENCH / "yardstick.cpp", BUILD / "libyardstick.so"
    stamp = BUILD / "libyardstick.flags"
    flags = " ".join(YARDSTICK_FLAGS)
    fresh = lib.exists() and stamp.exists() and stamp.read_text() == flags
    if fresh and lib.stat().st_mtime > src.stat().st_mtime:
        return lib, 0.0
    BUILD.mkdir(parents=True, exist_ok=True)
    t = now()
    subprocess.run(["g++", *YARDSTICK_FLAGS, str(src), "-o", str(lib)], check=True, capture_output=True, text=True)
    stamp.write_text(flags)
    return lib, now() - t


def yardstick_fn(x, y, b):
    """A zero-argument callable running the yardstick (y transposed beforehand)."""
    lib, _ = build_yardstick()
    f = ctypes.CDLL(str(lib)).yardstick_gauss3
    p = ctypes.c_void_p
    f.argtypes = [p, p, p, p, ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_int]
    f.restype = None
    x, b = np.ascontiguousarray(x), np.ascontiguousarray(b)
    yt = np.ascontiguousarray(y.T)
    out = np.empty(x.shape[0], np.float32)
    s = SIGMA[x.shape[1]]

    def call():
        f(x.ctypes.data, yt.ctypes.data, b.ctypes.data, out.ctypes.data, x.shape[0], y.shape[0], s, 2)
        return out

    return call


def run_yardstick(row: Row, data, repeats, budget) -> tuple[Measure, object]:
    if row.kind != "gauss" or row.D != 3 or row.dtype != "float32":
        return Measure(note="-"), None
    m = Measure()
    _, m.compile = build_yardstick()
    out = time_calls(yardstick_fn(*data), repeats, budget, m)
    return m, out.copy()


# --------------------------------------------------------------------------- one row

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def method_runner(method: str, row: Row, data, jargs, opts):
    r, bud = opts.repeats, opts.budget
    if method == "cpu":
        return lambda: run_lazy(row, jargs, "cpu", r, bud)
    if method == "jnp":
        return lambda: run_lazy(row, jargs, "jnp", r, bud)
    if method == "jax":
        return lambda: run_pure_jax(row, jargs, r, bud)
    if method == "keops":
        return lambda: run_keops(row, data, r, bud)
    return lambda: run_yardstick(row, data, r, bud)


def skip_reason(method: str, row: Row, opts) -> str | None:
    if method == "jnp" and row.pairs > JNP_MAX_PAIRS:
        return "skipped (slow at this size)"
    if method == "keops" and opts.keops_problem:
        return opts.keops_problem
    return None


def run_row(row: Row, opts) -> dict:
    """All methods on one row: {method: Measure as dict}, plus the load average."""
    import jax.numpy as jnp

    log(f"== {row.name}: {row.title}, {row.size}")
    data = make_data(row)
    jargs = tuple(jnp.asarray(a) for a in data)
    ref = reference(row, *data)
    results = {}
    for method in METHODS:
        reason = skip_reason(method, row, opts)
        if reason:
            results[method] = dataclasses.asdict(Measure(note=reason, failed=True))
            continue
        try:
            m, out = method_runner(method, row, data, jargs, opts)()
        except Exception as e:  # noqa: BLE001 - the table says why a method did not run
            m, out = failure(e), None
        if out is not None:
            m.error = error(row, out, ref)
        err = "" if m.error is None else f"  {'match' if row.kind == 'argkmin' else 'err'} {m.error:.2g}"
        log(f"  {TITLES[method]}: {fmt_time(m.best) if m.best else m.note}{err}")
        results[method] = dataclasses.asdict(m)
    return {"row": row.name, "load": os.getloadavg()[0], "methods": results}


# --------------------------------------------------------------------------- float64 subprocess

def run_child(rows: list[Row], opts) -> list[dict]:
    """The float64 rows, in a subprocess with jax_enable_x64."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--rows", ",".join(r.name for r in rows),
               "--child-json", str(out), "--repeats", str(opts.repeats), "--budget", str(opts.budget),
               "--keep-caches"] + (["--no-keops"] if opts.no_keops else [])
        proc = subprocess.run(cmd)
        if proc.returncode != 0 or not out.exists():
            return [{"row": r.name, "load": os.getloadavg()[0], "methods": {
                m: dataclasses.asdict(Measure(note=f"float64 subprocess failed (rc {proc.returncode})", failed=True))
                for m in METHODS}} for r in rows]
        return json.loads(out.read_text())


from report import Notes, compile_table, fmt_time, report, results_table  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1e5 rows, 3 repeats")
    ap.add_argument("--rows", help="comma-separated row names (see --list)")
    ap.add_argument("--out", help="write the report (markdown) to this file, e.g. docs/benchmarks.md")
    ap.add_argument("--repeats", type=int, help="timed calls per method after the warm-up (default 5; 3 with --quick)")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed calls per method (default 20)")
    ap.add_argument("--no-keops", action="store_true", help="leave pykeops out")
    ap.add_argument("--keep-caches", action="store_true", help="keep the jax_lazy and pykeops kernel caches")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument("--sharded", action="store_true",
                    help="run bench/sharded.py instead (1 and 2 CPU devices; its options follow)")
    ap.add_argument("--child-json", help=argparse.SUPPRESS)  # internal: float64 subprocess
    opts = ap.parse_args(argv)
    if opts.repeats is None:
        opts.repeats = 3 if opts.quick else 5
    return opts


def select_rows(opts) -> list[Row]:
    if opts.rows:
        names = [n.strip() for n in opts.rows.split(",") if n.strip()]
        unknown = sorted(set(names) - {r.name for r in ROWS})
        if unknown:
            sys.exit(f"unknown rows {unknown}; known: {', '.join(r.name for r in ROWS)}")
        return [r for r in ROWS if r.name in names]
    return [r for r in ROWS if not (opts.quick and r.big)]


def reset_caches() -> None:
    for d in (LAZY_CACHE, KEOPS_CACHE):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)


def child_main(rows, opts) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    Path(opts.child_json).write_text(json.dumps([run_row(r, opts) for r in rows]))


def main(argv=None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    if "--sharded" in argv:  # another benchmark, with its own options
        import sharded

        rest = [a for a in argv if a != "--sharded"]
        return sharded.main(rest, "python bench/run.py --sharded " + " ".join(shlex.quote(a) for a in rest))
    if "--numerics" in argv:  # the cost of dtype_acc / sum_scheme on the cpu backend
        import numerics

        rest = [a for a in argv if a != "--numerics"]
        return numerics.main(rest, "python bench/run.py --numerics " + " ".join(shlex.quote(a) for a in rest))
    if "--ranges" in argv:  # block-sparse reductions (issue 13) against the dense ones
        import ranges

        rest = [a for a in argv if a != "--ranges"]
        return ranges.main(rest, "python bench/run.py --ranges " + " ".join(shlex.quote(a) for a in rest))
    if "--krr" in argv:  # kernel ridge regression: jax_lazy's CG against dense Cholesky (issue 13)
        import krr

        rest = [a for a in argv if a != "--krr"]
        return krr.main(rest, "python bench/run.py --krr " + " ".join(shlex.quote(a) for a in rest))
    opts = parse_args(argv)
    if opts.list:
        print("\n".join(f"{r.name:16s} {r.title}, {r.size}{'  (not with --quick)' if r.big else ''}" for r in ROWS))
        return ""
    rows = select_rows(opts)
    if not (opts.keep_caches or opts.child_json):
        reset_caches()  # before importing pykeops, which sets up its cache folder
    opts.keops_problem = "left out (--no-keops)" if opts.no_keops else keops_available()
    if opts.child_json:
        child_main(rows, opts)
        return ""
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    load_start, t0 = os.getloadavg(), now()
    single = [r for r in rows if r.dtype != "float64"]
    results = {r.name: run_row(r, opts) for r in single}
    doubles = [r for r in rows if r.dtype == "float64"]
    if doubles:
        results.update({d["row"]: d for d in run_child(doubles, opts)})
    notes = Notes()
    tables = (results_table(rows, results, notes), compile_table(rows, results))
    notes_md = notes.markdown()
    text = report(rows, results, notes_md, tables, load_start, os.getloadavg(), command.strip(), now() - t0)
    print(f"\n{tables[0]}\n\n{notes_md}\n\n{tables[1]}\n")
    if opts.out:
        import krr
        import ranges
        import sharded  # keep the sections that bench/sharded.py, ranges.py and krr.py wrote there

        old = Path(opts.out).read_text() if Path(opts.out).exists() else ""
        kept = "".join(sharded.split_section(old, s)[1] for s in (sharded.SECTION, ranges.SECTION, krr.SECTION))
        Path(opts.out).write_text(text + ("\n" + kept.rstrip("\n") + "\n" if kept else ""))
        log(f"wrote {opts.out}")
    return text


if __name__ == "__main__":
    main()

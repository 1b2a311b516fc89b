"""CPU benchmark suite of jax_lazy: symbolic reductions against pure JAX, pykeops and C++.

    python bench/run.py [--quick] [--rows NAME,...] [--out docs/benchmarks.md]
    python bench/run.py --list          # the row names

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
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / "_build"
KEOPS_CACHE = BUILD / "keops"
LAZY_CACHE = BUILD / "jax_lazy_cache"
os.environ["KEOPS_CACHE_FOLDER"] = str(KEOPS_CACHE)
os.environ["JAX_LAZY_CACHE_DIR"] = str(LAZY_CACHE)

REF_ROWS = 200  # rows of the float64 reference
K_NN = 10  # K of argKmin
BLOCK = 1000  # rows per block of the chunked pure-JAX form
MEM_LIMIT = 8 * 2**30  # skip pure-JAX forms whose compiled temporaries need more (bytes)
# The dense and fused pure-JAX forms only up to this many pairs: XLA's memory_analysis()
# misses the (M, N, D) temporaries of the fused form's gradient (it reports 0 bytes, the
# run takes 3 GiB at 1e4 and was OOM-killed at 1e5), so MEM_LIMIT alone is not a guard.
WHOLE_MAX_PAIRS = 1e8
JNP_MAX_PAIRS = 2e8  # jax_lazy-jnp only on rows with at most this many pairs
SIGMA = {3: 0.5, 64: 4.0}  # kernel width: exp(-|x - y|^2 / (2 s^2)) not negligible for N(0, 1) data
YARDSTICK_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-shared", "-fPIC",
                   "-std=c++17", "-pthread"]
METHODS = ("cpu", "jnp", "jax", "keops", "cxx")
TITLES = {"cpu": "jax_lazy-cpu", "jnp": "jax_lazy-jnp", "jax": "pure JAX jit (best form)",
          "keops": "pykeops CPU", "cxx": "yardstick C++"}


# --------------------------------------------------------------------------- rows

@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    kind: str  # gauss | grad | argkmin | lse
    D: int
    n: int
    dtype: str = "float32"
    big: bool = False  # skipped by --quick

    @property
    def title(self) -> str:
        what = {"gauss": "Gaussian matvec", "grad": "Gaussian matvec, grad x",
                "argkmin": f"argKmin K={K_NN}", "lse": "logsumexp"}[self.kind]
        return f"{what}, D={self.D}, {self.dtype}"

    @property
    def size(self) -> str:
        return f"M=N={self.n:.0e}".replace("e+0", "e")

    @property
    def pairs(self) -> float:
        return float(self.n) * self.n


ROWS = [
    Row("gauss3-1e4", "gauss", 3, 10_000),
    Row("gauss3-1e5", "gauss", 3, 100_000, big=True),
    Row("grad3-1e4", "grad", 3, 10_000),
    Row("grad3-1e5", "grad", 3, 100_000, big=True),
    Row("gauss64-1e4", "gauss", 64, 10_000),
    Row("argkmin3-1e4", "argkmin", 3, 10_000),
    Row("argkmin64-1e4", "argkmin", 64, 10_000),
    Row("lse3-1e4", "lse", 3, 10_000),
    Row("gauss3-f64-1e4", "gauss", 3, 10_000, dtype="float64"),
]


def make_data(row: Row, seed: int = 0):
    """x (n, D), y (n, D), b (n,) drawn from N(0, 1) as NumPy arrays of the row's dtype."""
    rng = np.random.default_rng(seed)
    x, y = (rng.standard_normal((row.n, row.D)).astype(row.dtype) for _ in range(2))
    b = rng.standard_normal(row.n).astype(row.dtype)
    return x, y, b


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
    """``f`` itself, or x -> grad_x sum(f(x, y, b)) for the gradient rows."""
    import jax

    return jax.grad(lambda x, y, b: f(x, y, b).sum()) if row.kind == "grad" else f


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
        from jax_lazy import cache
    except ImportError:
        cache = None
    before = sum(getattr(cache, "build_times", {}).values()) if cache else 0.0
    m = Measure()
    out = jax_call(lazy_fn(row, backend), args, repeats, budget, m)
    if cache is not None:
        m.kernel_build = sum(getattr(cache, "build_times", {}).values()) - before
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
    X, Y = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    d2 = ((X - Y) ** 2).sum(-1)
    if row.kind == "argkmin":
        return lambda: d2.argKmin(K_NN, dim=1)
    if row.kind == "lse":
        return lambda: (-d2 / (2 * s * s)).logsumexp(dim=1)[:, 0]
    kernel = (-d2 / (2 * s * s)).exp()
    return lambda: (kernel @ b[:, None])[:, 0]


KEOPS_WARMUP = 256  # points of the call that makes pykeops compile the formula


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

def compiler_version(cxx: str = "g++") -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


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


# --------------------------------------------------------------------------- formatting

def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


def fmt_rate(pairs: float, t: float) -> str:
    return f"{pairs / t / 1e9:.3g} G/s"


class Notes:
    """Numbered footnotes for the reasons of "n/a" cells (each distinct reason once)."""

    def __init__(self):
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"[{k}] {md(t)}  " for k, t in enumerate(self.items, 1))


def md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def cell(row: Row, m: dict, notes: Notes) -> str:
    if m["failed"] or m["best"] is None:
        return "—" if m["note"] == "-" else f"n/a {notes.ref(m['note'])}"
    text = f"{fmt_time(m['best'])} · {fmt_rate(row.pairs, m['best'])}"
    if m["note"]:  # the pure-JAX form
        form, _, rest = m["note"].partition("; ")
        text += f" ({form}{' ' + notes.ref(rest) if rest else ''})"
    return text


def speedup(ms: dict, other: str) -> str:
    a, b = ms["cpu"], ms[other]
    if a["failed"] or b["failed"] or not a["best"] or not b["best"]:
        return "n/a"
    return f"×{b['best'] / a['best']:.3g}"


def suspicious(row: Row, e: float) -> bool:
    """An error far beyond rounding: a wrong result rather than float noise."""
    if row.kind == "argkmin":
        return e < 0.99
    return e > (1e-3 if row.dtype == "float32" else 1e-9)


def fmt_error(row: Row, ms: dict) -> str:
    short = {"cpu": "cpu", "jnp": "jnp", "jax": "JAX", "keops": "keops", "cxx": "C++"}
    parts = []
    for k in METHODS:
        e = ms[k]["error"]
        if e is not None:
            text = f"{short[k]} {e:.0%}" if row.kind == "argkmin" else f"{short[k]} {e:.1e}"
            parts.append(text + (" ⚠ wrong" if suspicious(row, e) else ""))
    return " · ".join(parts) or "-"


def results_table(rows: list[Row], results: dict, notes: Notes) -> str:
    cols = ["benchmark", "size", *(TITLES[m] for m in METHODS), "speedup vs JAX", "speedup vs pykeops",
            "rel. error vs float64"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        ms = results[row.name]["methods"]
        cells = [row.title, row.size, *(cell(row, ms[m], notes) for m in METHODS),
                 speedup(ms, "jax"), speedup(ms, "keops"), fmt_error(row, ms)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_build(t: float | None) -> str:
    if t is None:
        return "n/a"
    return "0 (cached)" if t == 0 else fmt_time(t)


def compile_table(rows: list[Row], results: dict) -> str:
    cols = ["benchmark", "size", "jax_lazy-cpu compile (lower + compile)", "of which C++ kernel build",
            "jax_lazy-cpu first call", "pure JAX compile (best form)",
            f"pykeops first call ({KEOPS_WARMUP} points)", "load (1 min)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        r = results[row.name]
        cpu, jx, kp = (r["methods"][k] for k in ("cpu", "jax", "keops"))
        ok = not cpu["failed"]
        cells = [row.title, row.size,
                 fmt_time(cpu["compile"]) if ok else "n/a",
                 fmt_build(cpu["kernel_build"]) if ok else "n/a",
                 fmt_time(cpu["first"]) if ok else "n/a",
                 fmt_time(jx["compile"]) if not jx["failed"] else "n/a",
                 fmt_time(kp["compile"]) if not kp["failed"] else "n/a",
                 f"{r['load']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags)


def version(module: str) -> str:
    try:
        from importlib.metadata import version as v

        return v(module)
    except Exception:  # noqa: BLE001
        return "not installed"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def cpu_backend_status() -> str:
    try:
        from jax_lazy import backends

        reason = backends.get("cpu").available()
    except Exception as e:  # noqa: BLE001
        reason = f"{type(e).__name__}: {e}"
    return "available" if reason is None else f"unavailable ({' '.join(str(reason).split())})"


def machine(load_start, load_end) -> str:
    la = lambda t: ", ".join(f"{v:.2f}" for v in t)  # noqa: E731
    items = [
        ("CPU", f"{cpu_model()} ({cpu_flags()})"),
        ("cores", f"{os.cpu_count()} logical (os.cpu_count)"),
        ("load average (1, 5, 15 min)", f"start {la(load_start)}; end {la(load_end)}"),
        ("OS / Python", f"{platform.platform()} / Python {platform.python_version()}"),
        ("jax / jaxlib", f"{version('jax')} / {version('jaxlib')}"),
        ("jax_lazy", f"{version('jax_lazy')}, git {git_revision()}; cpu backend {cpu_backend_status()}"),
        ("pykeops / keopscore", f"{version('pykeops')} / {version('keopscore')}"),
        ("numpy", version("numpy")),
        ("compiler", compiler_version()),
        ("yardstick flags", " ".join(YARDSTICK_FLAGS)),
    ]
    return "\n".join(f"- **{k}**: {md(v)}" for k, v in items)


# --------------------------------------------------------------------------- report

INTRO = """# Benchmarks (CPU)

Generated by `bench/run.py` (see its docstring for the method); do not edit by hand.

    python bench/run.py [--quick] [--rows NAME,...] [--out docs/benchmarks.md]

pykeops is an optional benchmark dependency, not a dependency of jax_lazy:
`.venv/bin/python -m pip install pykeops` (it brings keopscore and pybind11; its CPU
backend compiles each formula with the system `g++` and OpenMP at first call, into
`bench/_build/keops`; keopscore compiles with `-O3 -fopenmp`, without `-march=native`
unless `CXXFLAGS` says so: the table uses its defaults). Without it the pykeops columns
say n/a.

**Method.** Each cell is the best of several calls after a warm-up call (compile
excluded: JAX functions are compiled ahead of time, pykeops compiles at a first call on a
few points), as `time · pairs/s` (G/s = 10⁹ kernel evaluations per second; M·N pairs
per call, also for the gradient, which makes a forward and a backward pass). *pure JAX*
is the fastest of three `jax.jit` forms: *dense* (`|x|² + |y|² − 2xyᵀ`, then the
reduction of the M×N matrix), *fused* (`((x[:, None] − y[None])**2).sum(−1)`), *chunked*
(`lax.map` over blocks of 1000 rows, each dense); the cell names the winner. The
yardstick is a hand-written C++ kernel (`bench/yardstick.cpp`: 2 threads, 4 rows per
block, `omp simd` over j, its own vectorised exp) for the float32 Gaussian sum at D = 3
only. Speedups are time(other) / time(jax_lazy-cpu). Errors are measured on the first
{ref_rows} rows against a float64 NumPy reference: max |a − b| / max |b| for sums, and for
argKmin (K = {k}) the fraction of rows whose K indices equal the reference's, in order.
Kernel widths: σ = {sigma3} at D = 3, σ = {sigma64} at D = 64 (x, y, b ~ N(0, 1)).

**Caveats.** The machine is shared and noisy (other jobs run concurrently on its 2 cores;
see the load averages: a load of 2 is this benchmark alone), so timings vary between runs,
up to 2× when the load doubles; best-of-k hides part of it. Every method may use both
cores. jax_lazy-jnp is only run on the 1e4 rows. A cell "n/a [k]" did not run; footnote
k says why.
"""


def report(rows, results, notes_md, tables, load_start, load_end, command, elapsed) -> str:
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    intro = INTRO.format(ref_rows=REF_ROWS, k=K_NN, sigma3=SIGMA[3], sigma64=SIGMA[64])
    return (f"{intro}\n## Machine\n\n{machine(load_start, load_end)}\n\n"
            f"Run on {date}, {elapsed / 60:.1f} min, with:\n\n    {command}\n\n"
            f"## Results\n\n{tables[0]}\n\n{notes_md}\n\n"
            f"## Compile times\n\nFirst calls with empty kernel caches (unless `--keep-caches`). "
            f"*jax_lazy-cpu compile* is `jit(f).lower(...).compile()` (tracing, C++ kernel build, "
            f"XLA compile); *first call* is the first execution after it. *pykeops first call* "
            f"builds the formula's module and runs it once on {KEOPS_WARMUP} points.\n\n{tables[1]}\n")


# --------------------------------------------------------------------------- main

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
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
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
        Path(opts.out).write_text(text)
        log(f"wrote {opts.out}")
    return text


if __name__ == "__main__":
    main()

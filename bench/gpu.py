"""GPU benchmarks of jax_lazy (issue 4): ``backend="cuda"`` against pure JAX and pykeops on one GPU.

    python bench/gpu.py [--quick] [--rows NAME,...] [--out docs/benchmarks_gpu.md]
    python bench/gpu.py --list                       # the row names and sizes
    python bench/gpu.py --device cpu --out /tmp/x.md # dry run: tiny sizes, no GPU needed

Setting up the GPU machine (Linux x86_64, NVIDIA driver installed; H100 / H200)::

    python3 -m venv .venv
    .venv/bin/pip install -U pip "jax[cuda12]"   # jax + CUDA 12 wheels, NVRTC among them
    make install                                 # jax_lazy, editable, built WITHOUT build
                                                 # isolation, so that the native module has
                                                 # the XLA FFI (and CUDA) handlers; or:
    # .venv/bin/pip install scikit-build-core nanobind && .venv/bin/pip install \\
    #     --no-build-isolation -C cmake.define.JAX_LAZY_REQUIRE_XLA_FFI=ON -e .
    .venv/bin/pip install pykeops                # optional; its GPU backend needs a system
                                                 # CUDA toolkit at run time (nvcc/nvrtc and
                                                 # headers, e.g. /usr/local/cuda; CUDA_PATH)
    .venv/bin/python -c "import jax; print(jax.devices())"          # must list a CudaDevice
    .venv/bin/python -c "from jax_lazy.backends import cuda; print(cuda.available())"  # None
    .venv/bin/python bench/gpu.py --out docs/benchmarks_gpu.md

``jax[cuda12]`` and ``jax[cuda13]`` both work: jax_lazy's NVRTC loader takes the
``nvidia-cuda-nvrtc-cu12`` or ``nvidia-cuda-nvrtc`` (13) wheel, the one of JAX's CUDA major
first, else a system toolkit (``$JAX_LAZY_NVRTC`` overrides).
A full run takes roughly 10-30 minutes; ``--quick`` leaves out the rows marked big.

What runs (each row one reduction over M = N points, x, y, b ~ N(0, 1), float32 unless
the row says otherwise):

  jax_lazy-cuda  ``backend="cuda"`` (generated CUDA, NVRTC, XLA FFI), via bench/run.py's
                 ``lazy_fn``; for the bfloat16 row the inputs are bfloat16;
  pure JAX       bench/run.py's three ``jax.jit`` forms, the fastest kept: dense
                 (|x|^2 + |y|^2 - 2 x y^T, then the reduction), fused broadcast, and chunked
                 (``lax.map`` over blocks of 1000 rows, each dense); argKmin is
                 ``lax.top_k`` on each block. The dense and fused forms are skipped when
                 their M x N matrix would exceed DENSE_FRACTION of the GPU memory (XLA's
                 ``bytes_limit``); an out-of-memory error of a form is caught. JAX's default
                 float32 matmul precision on H100 is TF32 (``--jax-precision highest`` for
                 full float32);
  pure JAX f32   bfloat16 row only: the same forms on float32 copies of the bf16 inputs;
  pykeops        ``pykeops.numpy`` (``LazyTensor``; the gradient as a ``Genred`` Grad
                 formula) with ``backend="GPU"``; host NumPy arrays, so every call includes
                 the host <-> device copies; optional ("n/a" when missing or without GPU).

Timing: as bench/run.py (``time_calls``): JAX functions compiled ahead of time
(``jit(f).lower(...).compile()``), a warm-up call, then the best of ``--repeats`` calls
within ``--budget`` seconds, each ending with ``block_until_ready()``. Errors: the first
REF_ROWS rows against a float64 NumPy reference on the host (bench/run.py's ``reference``).

Isolation: every (row, method) runs in a child process (``--child run``), so that an
out-of-memory error, a crash or a CUDA error that poisons the context costs one cell
("n/a [reason]"), never the run; the parent never initialises the GPU. The child writes
its measure and the first REF_ROWS rows of its result; ``--timeout`` bounds it.

Compile times: the kernel caches of jax_lazy and pykeops live in ``--cache-dir``
(emptied at start unless ``--keep-caches``). "new kernel" is jax_lazy's
``lower + compile`` (tracing, NVRTC, XLA) and its first call; "cached, fresh process" is a
child (``--child ready``) that imports jax_lazy, compiles the row's function (its kernel
already in the disk cache: the kernel is ready after import + compile) and calls it once
on the row's data (at the same size: a kernel may depend on it).

Dry run (``--device cpu`` or ``JAX_LAZY_BENCH_DEVICE=cpu``): every row at DRY_N points,
jax_lazy's ``backend="cpu"`` standing in for cuda (``jnp`` for dtypes the cpu backend
lacks), JAX and pykeops on the CPU, the memory guard judged for the row's real size on a
DRY_MEMORY GPU: the whole pipeline and report, none of the numbers meaningful.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from report import (
    Notes,
    cell,
    cpu_model,
    fmt_build,
    fmt_error,
    fmt_time,
    git_revision,
    md,
    speedup,
    version,
)
from rows import BUILD, K_NN, KEOPS_WARMUP, REF_ROWS, SIGMA, Row, make_data
from run import (
    Measure,
    error,
    failure,
    jax_call,
    jax_forms,
    lazy_fn,
    log,
    now,
    reference,
    run_lazy,
    time_calls,
)

ROWS = [
    Row("gauss3-1e4", "gauss", 3, 10_000),
    Row("gauss3-1e5", "gauss", 3, 100_000),
    Row("gauss3-1e6", "gauss", 3, 1_000_000, big=True),
    Row("grad3-1e5", "grad", 3, 100_000),
    Row("grad3-1e6", "grad", 3, 1_000_000, big=True),
    Row("gauss16-3e5", "gauss", 16, 300_000),
    Row("gauss64-2e5", "gauss", 64, 200_000),
    Row("gauss256-1e5", "gauss", 256, 100_000),
    Row("gauss1024-5e4", "gauss", 1024, 50_000, big=True),
    Row("argkmin3-1e6", "argkmin", 3, 1_000_000, big=True),
    Row("argkmin128-1e6", "argkmin", 128, 1_000_000, big=True),
    Row("lse3-1e5", "lse", 3, 100_000),
    Row("gauss3-bf16-1e6", "gauss", 3, 1_000_000, dtype="bfloat16"),
]
METHODS = ("lazy", "jax", "jax32", "keops")
TITLES = {"lazy": "jax_lazy-cuda", "jax": "pure JAX jit (best form)", "jax32": "pure JAX jit, float32 inputs",
          "keops": "pykeops GPU"}
SHORT = {"lazy": "lazy", "jax": "JAX", "jax32": "JAX f32", "keops": "keops"}
DENSE_FRACTION = 0.4  # skip dense / fused pure-JAX forms whose M x N matrix needs more of the GPU memory
DRY_N = 512  # points per row in the dry run
DRY_MEMORY = 60 * 2**30  # the GPU memory the dry run pretends to have (XLA's 75% of an 80 GB H100), and the
# fallback when the device gives no memory_stats
TIMEOUT = 900  # seconds per child process (one row and method)


@dataclasses.dataclass(frozen=True)
class Target:
    """An issue-4 target of one row: jax_lazy within ``seconds``, or ``factor`` times
    faster than method ``other``."""

    label: str
    other: str | None = None
    factor: float = 1.0
    seconds: float | None = None

    def check(self, ms: dict) -> str:
        lazy = ms["lazy"]["best"] if not ms["lazy"]["failed"] else None
        if self.seconds is not None:
            return "unknown (jax_lazy n/a)" if lazy is None else \
                f"{'met' if lazy <= self.seconds else 'not met'} ({fmt_time(lazy)})"
        theirs = ms[self.other]["best"] if not ms[self.other]["failed"] else None
        if lazy is None or theirs is None:
            return f"unknown ({'jax_lazy' if lazy is None else SHORT[self.other]} n/a)"
        ratio = theirs / lazy
        return f"{'met' if ratio >= self.factor else 'not met'} (×{ratio:.3g})"


TARGETS = {
    "gauss3-1e6": [Target("≤ 0.4 s", seconds=0.4), Target("≥ 1.5× pykeops", "keops", 1.5)],
    "gauss64-2e5": [Target("≥ 5× pykeops", "keops", 5.0)],
    "gauss256-1e5": [Target("≥ 5× pykeops", "keops", 5.0)],
    "argkmin3-1e6": [Target("faster than pykeops", "keops")],
    "argkmin128-1e6": [Target("faster than JAX matmul + top_k", "jax")],
}


def methods_of(row: Row) -> tuple[str, ...]:
    return tuple(m for m in METHODS if m != "jax32" or row.dtype == "bfloat16")


def sized(row: Row, opts) -> Row:
    """The row as run: DRY_N points in the dry run."""
    return dataclasses.replace(row, n=min(row.n, DRY_N)) if opts.dry else row


# --------------------------------------------------------------------------- child: one method

def memory_limit(opts) -> int:
    """Bytes XLA may allocate on the device (DRY_MEMORY in the dry run)."""
    import jax

    if opts.dry:
        return DRY_MEMORY
    stats = jax.devices()[0].memory_stats() or {}
    return int(stats.get("bytes_limit", DRY_MEMORY))


def dense_skip(full: Row, name: str, limit: int) -> str | None:
    """Why form ``name`` is not tried at the row's real size, or None."""
    need = full.pairs * np.dtype(full.dtype).itemsize
    if name != "chunked" and need > DENSE_FRACTION * limit:
        return f"{name}: M×N matrix {need / 2**30:.0f} GiB > {DENSE_FRACTION:.0%} of {limit / 2**30:.0f} GiB"
    return None


def run_pure_jax(row: Row, full: Row, args, opts) -> tuple[Measure, object]:
    """Every form of bench/run.py that fits; keeps the fastest (its note names it, and the
    forms skipped or failed)."""
    best, best_out, skipped = None, None, []
    limit = memory_limit(opts)
    for name, f in jax_forms(row).items():
        reason = dense_skip(full, name, limit)
        if reason:
            skipped.append(reason)
            continue
        m = Measure(note=name)
        try:
            out = jax_call(f, args, opts.repeats, opts.budget, m)
        except Exception as e:  # noqa: BLE001 - out of memory or another failure: this form is n/a
            skipped.append(f"{name}: {failure(e).note[:80]}")
            log(f"    pure JAX {name}: {skipped[-1]}")
            continue
        log(f"    pure JAX {name}: {fmt_time(m.best)}")
        if best is None or m.best < best.best:
            best, best_out = m, out
    if best is None:
        return Measure(note="; ".join(skipped), failed=True), None
    if skipped:
        best.note += f"; skipped {', '.join(skipped)}"
    return best, best_out


def keops_fn(row: Row, x, y, b, backend: str):
    """A zero-argument callable computing the row with pykeops' numpy API on ``backend``."""
    from pykeops.numpy import Genred, LazyTensor

    s = SIGMA[row.D]
    if row.kind == "grad":
        routine = Genred("Grad(Exp(-SqDist(x,y)*g)*b, x, e)",
                         [f"x = Vi({row.D})", f"y = Vj({row.D})", "b = Vj(1)", "g = Pm(1)", "e = Vi(1)"],
                         reduction_op="Sum", axis=1)
        g = np.array([1 / (2 * s * s)], dtype=x.dtype)
        e = np.ones((x.shape[0], 1), dtype=x.dtype)
        return lambda: routine(x, y, b[:, None], g, e, backend=backend)
    X, Y = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    d2 = ((X - Y) ** 2).sum(-1)
    if row.kind == "argkmin":
        return lambda: d2.argKmin(K_NN, dim=1, backend=backend)
    if row.kind == "lse":
        return lambda: (-d2 / (2 * s * s)).logsumexp(dim=1, backend=backend)[:, 0]
    kb = (-d2 / (2 * s * s)).exp() * LazyTensor(b[None, :, None])
    return lambda: kb.sum(dim=1, backend=backend)[:, 0]


def run_keops(row: Row, data, opts) -> tuple[Measure, object]:
    """The first call, on KEOPS_WARMUP points, builds the formula: the compile time."""
    backend = "CPU" if opts.dry else "GPU"
    m = Measure()
    t = now()
    keops_fn(row, *(a[:KEOPS_WARMUP] for a in data), backend)()
    m.compile = now() - t
    out = time_calls(keops_fn(row, *data, backend), opts.repeats, opts.budget, m)
    return m, out


def lazy_backend(row: Row, opts) -> str:
    if not opts.dry:
        return "cuda"
    return "cpu" if row.dtype in ("float32", "float64") else "jnp"


def measure(row: Row, method: str, opts) -> tuple[Measure, object]:
    full, row = row, sized(row, opts)
    data = make_data(row)
    if method == "keops":
        return run_keops(row, data, opts)
    import jax.numpy as jnp

    if method == "jax32":
        args = tuple(jnp.asarray(a.astype(np.float32)) for a in data)
        f32 = {"dtype": "float32"}
        return run_pure_jax(dataclasses.replace(row, **f32), dataclasses.replace(full, **f32), args, opts)
    args = tuple(jnp.asarray(a) for a in data)
    if method == "jax":
        return run_pure_jax(row, full, args, opts)
    backend = lazy_backend(row, opts)
    m, out = run_lazy(row, args, backend, opts.repeats, opts.budget)
    if backend not in ("cuda", "cpu"):
        m.note = f"dry: {backend}"
    return m, out


def child_run(row: Row, method: str, opts) -> None:
    """Writes ``measure.json`` (and ``out.npy``: the first REF_ROWS rows) into --child-out."""
    out_dir = Path(opts.child_out)
    try:
        m, out = measure(row, method, opts)
    except Exception as e:  # noqa: BLE001 - the table says why
        m, out = failure(e), None
    if out is not None:
        np.save(out_dir / "out.npy", np.asarray(out)[:REF_ROWS].astype(np.float64))
    (out_dir / "measure.json").write_text(json.dumps(dataclasses.asdict(m)))


# --------------------------------------------------------------------------- child: ready, info

def child_ready(row: Row, opts) -> None:
    """Fresh process, kernel in the disk cache: import jax_lazy, compile, first call."""
    import jax
    import jax.numpy as jnp

    args = jax.block_until_ready(tuple(jnp.asarray(a) for a in make_data(sized(row, opts))))  # initialises the device
    t = now()
    from jax_lazy import compilers

    res = {"import": now() - t}
    t = now()
    compiled = jax.jit(lazy_fn(row, lazy_backend(row, opts))).lower(*args).compile()
    res["compile"] = now() - t
    t = now()
    jax.block_until_ready(compiled(*args))
    res["first"] = now() - t
    res["build"] = sum(compilers.build_times.values())
    Path(opts.child_out, "ready.json").write_text(json.dumps(res))


def cuda_versions() -> dict:
    try:
        from jax._src.lib import cuda_versions as cv
    except ImportError:
        return {}
    out = {}
    for label, name in (("driver", "cuda_driver_get_version"), ("runtime", "cuda_runtime_get_version"),
                        ("built with", "cuda_runtime_build_version")):
        with contextlib.suppress(Exception):  # not in this jaxlib
            v = int(getattr(cv, name)())
            out[label] = f"{v // 1000}.{v % 1000 // 10}"
    return out


def keops_status(opts) -> str | None:
    """None when pykeops can run the benchmark here, else why not."""
    try:
        import pykeops
        import pykeops.config

        pykeops.set_verbose(False)
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return f"pykeops cannot be imported ({type(e).__name__}: {e}); pip install pykeops"
    if not opts.dry and not getattr(pykeops.config, "gpu_available", False):
        return "pykeops found no CUDA (it needs a system CUDA toolkit at run time)"
    return None


def child_info(opts) -> None:
    """The device, library versions and availability: ``info.json``."""
    import jax

    dev = jax.devices()[0]
    info = {"platform": dev.platform, "device_kind": dev.device_kind, "devices": len(jax.devices()),
            "memory_limit": memory_limit(opts), "compute_capability": getattr(dev, "compute_capability", None),
            "cores": getattr(dev, "core_count", None), "cuda": cuda_versions(),
            "matmul_precision": str(jax.config.jax_default_matmul_precision or "default")}
    try:
        from jax_lazy.backends import cuda, nvrtc

        info["nvrtc"] = f"{'.'.join(map(str, nvrtc.version()))} ({nvrtc.library_path()})"
        info["cuda_backend"] = cuda.available() or "available"
    except Exception as e:  # noqa: BLE001
        info.setdefault("nvrtc", f"n/a ({type(e).__name__}: {e})")
        info["cuda_backend"] = f"{type(e).__name__}: {e}"
    info["keops"] = "left out (--no-keops)" if opts.no_keops else keops_status(opts)
    Path(opts.child_out, "info.json").write_text(json.dumps(info))


# --------------------------------------------------------------------------- parent: children

def spawn(opts, mode: str, row: Row | None = None, method: str | None = None) -> tuple[dict | None, str]:
    """Run this script as ``--child mode``; (its JSON result, or None, and why it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--child-out", tmp,
               "--repeats", str(opts.repeats), "--budget", str(opts.budget), "--device", opts.device,
               "--cache-dir", opts.cache_dir]
        cmd += ["--rows", row.name] if row else []
        cmd += ["--child-method", method] if method else []
        cmd += ["--no-keops"] if opts.no_keops else []
        # its own process group, so that a timeout also ends what it started (compilers)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(opts),
                                start_new_session=True)
        killed = []
        timer = threading.Timer(opts.timeout, lambda: (killed.append(1), os.killpg(proc.pid, signal.SIGKILL)))
        timer.start()
        tail = collections.deque(maxlen=20)
        for line in proc.stdout:
            sys.stderr.write(line)
            if line.strip():
                tail.append(line.strip())
        rc = proc.wait()
        timer.cancel()
        name = {"run": "measure.json", "ready": "ready.json", "info": "info.json"}[mode]
        path = Path(tmp, name)
        if rc == 0 and path.exists():
            res = json.loads(path.read_text())
            if mode == "run" and Path(tmp, "out.npy").exists():
                res["out"] = np.load(Path(tmp, "out.npy"))
            return res, ""
    if killed:
        return None, f"timed out after {opts.timeout:g} s (--timeout)"
    how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
    last = next((ln for ln in reversed(tail) if "rror" in ln), tail[-1] if tail else "")
    return None, f"child process failed ({how}): {last[:160]}"


def use_caches(opts) -> None:
    """The kernel caches under --cache-dir (rows.py points them at the CPU suite's)."""
    cache = Path(opts.cache_dir)
    os.environ["JAX_LAZY_CACHE_DIR"], os.environ["KEOPS_CACHE_FOLDER"] = str(cache / "jax_lazy"), str(cache / "keops")


def child_env(opts) -> dict:
    env = dict(os.environ)
    if opts.dry:
        env["JAX_PLATFORMS"] = "cpu"
    if opts.jax_precision:
        env["JAX_DEFAULT_MATMUL_PRECISION"] = opts.jax_precision
    return env


def run_row(row: Row, opts) -> dict:
    """All methods of one row, each in a child; errors against the float64 reference."""
    run = sized(row, opts)
    log(f"== {row.name}: {run.title}, M=N={run.n}")
    ref = reference(run, *make_data(run))
    ms = {}
    for method in methods_of(row):
        if method == "keops" and (opts.keops_problem or row.dtype == "bfloat16"):
            # pykeops' numpy API has no bfloat16: "—"
            m = Measure(note="-") if row.dtype == "bfloat16" else Measure(note=opts.keops_problem, failed=True)
            ms[method] = dataclasses.asdict(m)
            continue
        res, why = spawn(opts, "run", row, method)
        res = res or dataclasses.asdict(Measure(note=why, failed=True))
        out = res.pop("out", None)
        if out is not None:
            res["error"] = error(run, out, ref)
        log(f"  {TITLES[method]}: {fmt_time(res['best']) if res['best'] else res['note']}"
            + ("" if res["error"] is None else f"  error {res['error']:.2g}"))
        ms[method] = res
    ready = None
    if not ms["lazy"]["failed"]:
        ready, why = spawn(opts, "ready", row)
        ready = ready or {"failed": why}
    size = f"M=N={run.n} (dry)" if opts.dry else run.size
    return {"row": row.name, "n": run.n, "size": size, "methods": ms, "ready": ready}


# --------------------------------------------------------------------------- report

def targets_cell(row: Row, ms: dict) -> str:
    return "; ".join(f"{t.label}: {t.check(ms)}" for t in TARGETS.get(row.name, [])) or "—"


def results_table(rows: list[Row], results: dict, notes: Notes) -> str:
    methods = [m for m in METHODS if any(m in methods_of(r) for r in rows)]
    cols = ["benchmark", "size", *(TITLES[m] for m in methods), "speedup vs JAX", "speedup vs pykeops",
            "issue-4 target", "rel. error vs float64"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        r = results[row.name]
        ms = {m: r["methods"].get(m, dataclasses.asdict(Measure(note="-"))) for m in METHODS}
        cells = [row.title, r["size"], *(cell(dataclasses.replace(row, n=r["n"]), ms[m], notes) for m in methods),
                 speedup(ms, "jax", "lazy"), speedup(ms, "keops", "lazy"), targets_cell(row, ms),
                 fmt_error(row, ms, methods, SHORT)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(rows: list[Row], results: dict) -> str:
    lines = ["| row | target | status |", "|---|---|---|"]
    for row in rows:
        for t in TARGETS.get(row.name, []):
            lines.append(f"| {row.title}, {results[row.name]['size']} | {t.label} | "
                         f"{t.check(results[row.name]['methods'])} |")
    return "\n".join(lines) if len(lines) > 2 else "(no row with a target was run)"


def fmt_ready(ready: dict | None) -> str:
    if ready is None:
        return "n/a"
    if "failed" in ready:
        return f"n/a ({md(ready['failed'][:100])})"
    built = "" if ready["build"] == 0 else f", NOT cached: built {fmt_time(ready['build'])}"
    return (f"{fmt_time(ready['import'] + ready['compile'])} ({fmt_time(ready['import'])} + "
            f"{fmt_time(ready['compile'])}{built}); {fmt_time(ready['first'])}")


def compile_table(rows: list[Row], results: dict) -> str:
    cols = ["benchmark", "size", "jax_lazy compile (lower + compile)", "of which kernel build (NVRTC)",
            "jax_lazy first call", "cached kernel, fresh process: ready (import + compile); first call",
            "pure JAX compile (best form)", f"pykeops first call ({KEOPS_WARMUP} points)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        r = results[row.name]
        lz, jx, kp = (r["methods"][k] for k in ("lazy", "jax", "keops"))
        ok = not lz["failed"]
        cells = [row.title, r["size"],
                 fmt_time(lz["compile"]) if ok else "n/a",
                 fmt_build(lz["kernel_build"]) if ok else "n/a",
                 fmt_time(lz["first"]) if ok else "n/a",
                 fmt_ready(r["ready"]) if ok else "n/a",
                 fmt_time(jx["compile"]) if not jx["failed"] else "n/a",
                 fmt_time(kp["compile"]) if not kp["failed"] and kp["compile"] is not None else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def nvidia_smi() -> str:
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                            "--format=csv,noheader"], check=False, capture_output=True, text=True, timeout=30)
        head = subprocess.run(["nvidia-smi"], check=False, capture_output=True, text=True, timeout=30).stdout
        cuda = next((ln.split("CUDA Version:")[1].strip(" |") for ln in head.splitlines() if "CUDA Version" in ln), "?")
        return f"{q.stdout.strip()}; driver's CUDA {cuda}" if q.returncode == 0 else "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a (no nvidia-smi)"


def machine(info: dict, opts) -> str:
    cuda = ", ".join(f"{k} {v}" for k, v in info.get("cuda", {}).items()) or "n/a"
    items = [
        ("device", (f"{info['device_kind']} ({info['platform']}, {info['devices']} visible, compute capability "
                    f"{info['compute_capability']}, {info['cores']} SMs / cores)")),
        ("device memory for XLA", f"{info['memory_limit'] / 2**30:.1f} GiB"
                                  + (" (pretended: dry run)" if opts.dry else " (memory_stats bytes_limit)")),
        ("nvidia-smi", nvidia_smi()),
        ("CUDA (jaxlib)", cuda),
        ("NVRTC (jax_lazy)", info["nvrtc"]),
        ("jax_lazy cuda backend", info["cuda_backend"]),
        ("host CPU", f"{cpu_model()}, {os.cpu_count()} logical cores"),
        ("jax / jaxlib", (f"{version('jax')} / {version('jaxlib')} (jax-cuda12-plugin "
                          f"{version('jax-cuda12-plugin')}, nvidia-cuda-nvrtc-cu12 {version('nvidia-cuda-nvrtc-cu12')}); "
                          f"matmul precision {info['matmul_precision']}")),
        ("jax_lazy", f"{version('jax_lazy')}, git {git_revision()}"),
        ("pykeops / keopscore", f"{version('pykeops')} / {version('keopscore')}"
                                + (f" ({info['keops']})" if info["keops"] else "")),
    ]
    return "\n".join(f"- **{k}**: {md(str(v))}" for k, v in items)


INTRO = """# Benchmarks (GPU)

Generated by `bench/gpu.py` (see its docstring for the setup and the method); do not edit
by hand.
{dry}
**Method.** jax_lazy `backend="cuda"`, pure JAX under `jax.jit` and pykeops (numpy API,
`backend="GPU"`) on the same GPU. Each cell is the best of several calls after a warm-up
call, as `time · pairs/s` (G/s = 10⁹ kernel evaluations per second; M·N pairs per call,
also for the gradient, which makes a forward and a backward pass); compile excluded (JAX:
ahead of time; pykeops: a first call on {warm} points). *pure JAX* is the fastest of
*dense* (`|x|² + |y|² − 2xyᵀ`, then the reduction), *fused* (`((x[:, None] − y[None])**2).sum(−1)`)
and *chunked* (`lax.map` over blocks of 1000 rows, each dense; argKmin with `lax.top_k`);
dense and fused are skipped when their M×N matrix exceeds {frac:.0%} of the GPU memory.
JAX's float32 matmuls use its default precision (TF32 on H100) unless the machine section
says otherwise, which shows in its errors at large D. pykeops is given host NumPy arrays,
so its times include the copies to and from the GPU. Speedups are time(other) /
time(jax_lazy-cuda). Errors are measured on the first {ref_rows} rows against a float64
NumPy reference: max |a − b| / max |b| for sums, for argKmin (K = {k}) the fraction of rows
whose K indices equal the reference's, in order; ⚠ marks errors far beyond rounding. A
cell "n/a [k]" did not run; footnote k says why. Every method runs in its own process.
"""

DRY = """
**DRY RUN** (`--device cpu`): every row at {n} points on the CPU, jax_lazy's `cpu`
backend standing in for `cuda` (`jnp` for bfloat16), the memory guard judged for the
rows' real sizes on a {mem:.0f} GiB GPU. It checks the script, not the performance: no
number below says anything about a GPU.
"""


def report(rows, results, info, opts, command, elapsed, tables, notes_md) -> str:
    import datetime

    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    dry = DRY.format(n=DRY_N, mem=DRY_MEMORY / 2**30) if opts.dry else ""
    intro = INTRO.format(dry=dry, warm=KEOPS_WARMUP, frac=DENSE_FRACTION, ref_rows=REF_ROWS, k=K_NN)
    sigmas = ", ".join(f"σ = {SIGMA[d]} at D = {d}" for d in sorted({r.D for r in rows}))
    return (f"{intro}\nKernel widths: {sigmas} (x, y, b ~ N(0, 1)).\n\n## Machine\n\n{machine(info, opts)}\n\n"
            f"Run on {date}, {elapsed / 60:.1f} min, with:\n\n    {command}\n\n"
            f"## Results\n\n{tables[0]}\n\n{notes_md}\n\n## Issue-4 targets\n\n{tables[2]}\n\n"
            f"## Compile times\n\n*jax_lazy compile* is `jit(f).lower(...).compile()` with empty caches "
            f"(unless `--keep-caches`): tracing, NVRTC and XLA; rows sharing a formula reuse its kernel "
            f"(\"0 (cached)\"). *cached kernel, fresh process* is a new process importing jax_lazy, compiling "
            f"and calling the row's function once, its kernel in the disk cache: the kernel is ready after "
            f"import + compile; the first call includes one run.\n\n{tables[1]}\n")


# --------------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the big rows, 3 repeats")
    ap.add_argument("--rows", help="comma-separated row names (see --list)")
    ap.add_argument("--out", help="write the report (markdown) to this file, e.g. docs/benchmarks_gpu.md")
    ap.add_argument("--repeats", type=int, help="timed calls per method after the warm-up (default 5; 3 with --quick)")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed calls per method (default 20)")
    ap.add_argument("--no-keops", action="store_true", help="leave pykeops out")
    ap.add_argument("--keep-caches", action="store_true", help="keep the jax_lazy and pykeops kernel caches")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument("--device", choices=("gpu", "cpu"), default=os.environ.get("JAX_LAZY_BENCH_DEVICE", "gpu"),
                    help="cpu: dry run at tiny sizes without a GPU (default gpu; env JAX_LAZY_BENCH_DEVICE)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per method and row (default {TIMEOUT})")
    ap.add_argument("--cache-dir", default=str(BUILD / "gpu"), help="kernel caches (default bench/_build/gpu)")
    ap.add_argument("--jax-precision", choices=("default", "high", "highest"),
                    help="JAX_DEFAULT_MATMUL_PRECISION for pure JAX (default: JAX's own)")
    ap.add_argument("--child", choices=("run", "ready", "info"), help=argparse.SUPPRESS)
    ap.add_argument("--child-method", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.repeats is None:
        opts.repeats = 3 if opts.quick else 5
    opts.dry = opts.device == "cpu"
    return opts


def select_rows(opts) -> list[Row]:
    if opts.rows:
        names = [n.strip() for n in opts.rows.split(",") if n.strip()]
        unknown = sorted(set(names) - {r.name for r in ROWS})
        if unknown:
            sys.exit(f"unknown rows {unknown}; known: {', '.join(r.name for r in ROWS)}")
        return [r for r in ROWS if r.name in names]
    return [r for r in ROWS if not (opts.quick and r.big)]


def child_main(opts) -> None:
    import ml_dtypes  # noqa: F401 - registers the "bfloat16" NumPy dtype of make_data

    if opts.child == "info":
        return child_info(opts)
    row = select_rows(opts)[0]
    if opts.child == "ready":
        return child_ready(row, opts)
    return child_run(row, opts.child_method, opts)


def main(argv=None) -> str:
    opts = parse_args(argv)
    use_caches(opts)
    if opts.child:
        child_main(opts)
        return ""
    if opts.list:
        print("\n".join(f"{r.name:16s} {r.title}, {r.size}{'  (not with --quick)' if r.big else ''}"
                        f"{'  target: ' + ', '.join(t.label for t in TARGETS[r.name]) if r.name in TARGETS else ''}"
                        for r in ROWS))
        return ""
    import ml_dtypes  # noqa: F401

    rows = select_rows(opts)
    if not opts.keep_caches:
        shutil.rmtree(opts.cache_dir, ignore_errors=True)
    Path(opts.cache_dir).mkdir(parents=True, exist_ok=True)
    command = "python bench/gpu.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    t0 = now()
    info, why = spawn(opts, "info")
    if info is None:
        sys.exit(f"cannot query the device: {why}")
    if not opts.dry and info["platform"] != "gpu":
        sys.exit(f"jax sees no GPU (platform {info['platform']}): install jax[cuda12] (see the docstring), "
                 "or use --device cpu for a dry run")
    opts.keops_problem = info["keops"]
    results = {r.name: run_row(r, opts) for r in rows}
    notes = Notes()
    tables = (results_table(rows, results, notes), compile_table(rows, results), targets_table(rows, results))
    notes_md = notes.markdown()
    text = report(rows, results, info, opts, command.strip(), now() - t0, tables, notes_md)
    print(f"\n{tables[0]}\n\n{notes_md}\n\n{tables[2]}\n\n{tables[1]}\n")
    if opts.out:
        Path(opts.out).write_text(text)
        log(f"wrote {opts.out}")
    return text


if __name__ == "__main__":
    main()

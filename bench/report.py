"""Formatting of bench/run.py's results: markdown tables, footnotes, the machine
description and the report written to docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

from rows import KEOPS_WARMUP, K_NN, METHODS, REF_ROWS, ROOT, SIGMA, TITLES, YARDSTICK_FLAGS, Row, compiler_version


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


def speedup(ms: dict, other: str, base: str = "cpu") -> str:
    """time(other) / time(base), or "n/a" when either did not run."""
    a, b = ms[base], ms[other]
    if a["failed"] or b["failed"] or not a["best"] or not b["best"]:
        return "n/a"
    return f"×{b['best'] / a['best']:.3g}"


def suspicious(row: Row, e: float) -> bool:
    """An error far beyond rounding: a wrong result rather than float noise."""
    if row.kind == "argkmin":
        return e < 0.99
    return e > {"float64": 1e-9, "bfloat16": 3e-2, "float16": 3e-3}.get(row.dtype, 1e-3)


SHORT = {"cpu": "cpu", "jnp": "jnp", "jax": "JAX", "keops": "keops", "cxx": "C++"}


def fmt_error(row: Row, ms: dict, methods=METHODS, short=SHORT) -> str:
    parts = []
    for k in methods:
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

        cpu = backends.get("cpu")
        reason = cpu.available() or cpu.limitation()  # benchmarks compile new kernels
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
    python bench/run.py --sharded [--out docs/benchmarks.md]   # 1 and 2 CPU devices: its own section

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

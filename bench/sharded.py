"""Sharded benchmark: jax_lazy's cpu backend on 1 and 2 CPU devices of one process.

    python bench/run.py --sharded [--quick] [--out docs/benchmarks.md]
    python bench/sharded.py [--quick] [--n 200000] [--configs 1x2,2x1:x,...] [--cap-mib 1024] [--out ...]

Rows: the float32 Gaussian kernel matvec and argKmin (K = 10) of bench/rows.py at D = 3,
M = N = --n, with ``backend="cpu"`` (the same functions, reference and error measure as
bench/run.py). Each configuration runs in its own subprocess, since the device count
(``XLA_FLAGS=--xla_force_host_platform_device_count``) is fixed when jax is imported and
the C++ thread pool size (``JAX_LAZY_NUM_THREADS``) when the first kernel runs:

  devices x threads  sharded by   the inputs are placed with ``jax.device_put`` on
  1 x 2, 1 x 1       -            ``jax.make_mesh((devices,), ("d",))`` (Auto axis):
  2 x 1 (2 x 2)      x or y       x's rows (P("d", None), the output axis) or y's and
                                  b's rows (the reduced axis); the rest replicated.

The thread pool (xla_ffi/thread_pool.cc) is one per process, shared by every device: a
custom call runs on the thread XLA gives its device, and the pool's n - 1 workers help
whichever call is running. So "2 x 1" is two devices computing side by side, one core
each, and "2 x 2" (not run by default: ``--configs 2x2:x,2x2:y``) has two callers and
one worker on this machine's 2 cores.

Timing as bench/run.py: compiled ahead of time (``jit(f).lower(...).compile()``), a
warm-up call, then the best of up to --repeats calls within --budget seconds (a call
longer than the budget reports the warm-up call alone). The process CPU time of the same
calls (every thread: ``time.process_time``) is the work done, which the load of a shared
machine does not change: replicated work doubles it. For each configuration, the
compiled HLO (``compiled.as_text()``) gives the collectives (all-gather, all-reduce,
collective-permute, all-to-all, reduce-scatter: operand shape -> result shape) and the
operand shapes of the jax_lazy custom calls: the shapes each device sees, so whether a
device got the whole problem or its shard.

Memory: the largest size of the sharded axis (the other axis MEM_OTHER points) for which
the Gaussian matvec runs in a process whose data segment is capped
(``RLIMIT_DATA``, set in the child before it starts: it counts every private writable
mapping, so XLA's buffers and the threads' stacks). Past it XLA raises RESOURCE_EXHAUSTED,
or aborts the process: on a ``std::bad_alloc``, or when a device waits in a collective for
one whose allocation failed (shortened by MEM_XLA_FLAGS); either way the child ends, and
one running past MEM_TIMEOUT would count as a failure too. The cap is for the whole
process: the devices of one host share its memory; C++ threads: 2. Search: doubling from
MEM_START, then --mem-steps bisection steps in log scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rows import REF_ROWS, Row, make_data

ROWS = (Row("gauss3-2e5", "gauss", 3, 200_000), Row("argkmin3-2e5", "argkmin", 3, 200_000))
MEM_OTHER = 256  # points of the unsharded axis in the memory search
MEM_START = 2**21  # first size of the memory search
MEM_ALIGN = 2**12  # sizes searched are multiples of this (divisible by the device count)
MEM_TIMEOUT = 300  # seconds: a memory child running longer counts as a failure ("hangs")
# When one device's allocation fails, the other waits at the next collective: XLA warns
# after 20 s, then aborts the process after this flag's seconds (default 40).
MEM_XLA_FLAGS = "--xla_cpu_collective_call_terminate_timeout_seconds=5"
SECTION = "## Sharded: 1 and 2 CPU devices"
COLLECTIVES = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")


@dataclasses.dataclass(frozen=True)
class Config:
    devices: int
    threads: int
    axis: str = "-"  # x: rows of x (output axis) sharded; y: rows of y and b (reduced axis)

    @classmethod
    def parse(cls, text: str) -> "Config":
        """ "2x1:y" -> Config(2, 1, "y")."""
        dims, _, axis = text.partition(":")
        devices, threads = (int(v) for v in dims.split("x"))
        return cls(devices, threads, axis or "-")

    @property
    def name(self) -> str:
        return f"{self.devices}x{self.threads}" + (f":{self.axis}" if self.axis != "-" else "")

    def env(self, flags: str = "") -> dict:
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={self.devices} {flags}"
        return {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_LAZY_NUM_THREADS": str(self.threads)}


CONFIGS = tuple(Config.parse(c) for c in ("1x2", "1x1", "2x1:x", "2x1:y"))  # 2x2:x etc. with --configs
MEM_CONFIGS = tuple(Config.parse(c) for c in ("1x2:x", "1x2:y", "2x2:x", "2x2:y"))


# --------------------------------------------------------------------------- compiled HLO

# One instruction of HLO text: `%name = shape opcode(operands), attributes`; a tuple shape
# is parenthesised. Operands are names whose shapes are found at their own definitions.
INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+) = (?P<shape>\([^=]*?\)|\S+) "
                   r"(?P<op>[\w\-]+)\((?P<args>[^)]*)\)(?P<attrs>.*)$")
TARGET = re.compile(r'custom_call_target="([^"]+)"')


def strip_layout(shape: str) -> str:
    return re.sub(r"\{[^}]*\}", "", shape)


def hlo_ops(text: str) -> list[dict]:
    """Every instruction: name, shape (no layout), opcode, operand shapes, custom-call target."""
    found = [m for m in map(INSTR.match, text.splitlines()) if m]
    shapes = {m["name"]: strip_layout(m["shape"]) for m in found}
    ops = []
    for m in found:
        names = [a.strip().lstrip("%") for a in m["args"].split(",") if a.strip().startswith("%")]
        target = TARGET.search(m["attrs"])
        ops.append({"name": m["name"], "shape": shapes[m["name"]], "op": m["op"],
                    "operands": [shapes.get(n, "?") for n in names], "target": target[1] if target else None})
    return ops


def collectives(ops: list[dict]) -> list[str]:
    """ "all-gather f32[100000,3] -> f32[200000,3]" for each collective (async ones once)."""
    out = []
    for o in ops:
        kind = o["op"].removesuffix("-start")
        if kind in COLLECTIVES:
            out.append(f"{kind} {', '.join(o['operands'])} -> {o['shape']}")
    return out


def lazy_calls(ops: list[dict]) -> list[str]:
    """ "f32[200000,3], f32[3,200000] -> (f32[200000,10], s32[200000,10])" per jax_lazy custom call."""
    return [f"{', '.join(o['operands'])} -> {o['shape']}" for o in ops
            if o["op"] == "custom-call" and (o["target"] or "").startswith("jax_lazy")]


# --------------------------------------------------------------------------- child: one configuration

def mesh_and_specs(config: Config):
    """The mesh and the PartitionSpecs of (x, y, b) for ``config``."""
    import jax
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((config.devices,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    rows, whole = P("d", None), P()
    if config.axis == "x":
        return mesh, (rows, whole, whole)
    if config.axis == "y":
        return mesh, (whole, rows, P("d"))
    return mesh, (whole, whole, whole)


def measure_row(row: Row, config: Config, n: int, repeats: int, budget: float) -> dict:
    """Time one row on this process's devices; the HLO's collectives and custom calls."""
    import jax
    from jax.sharding import NamedSharding

    from run import Measure, error, lazy_fn, reference, time_calls

    data = make_data(dataclasses.replace(row, n=n))
    mesh, specs = mesh_and_specs(config)
    args = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(data, specs)]
    m = Measure()
    t = time.perf_counter()
    compiled = jax.jit(lazy_fn(row, "cpu")).lower(*args).compile()
    m.compile = time.perf_counter() - t
    cpu = []  # process CPU seconds (every thread) of each call: the work, whatever the load

    def call():
        start = time.process_time()
        result = jax.block_until_ready(compiled(*args))
        cpu.append(time.process_time() - start)
        return result

    out = time_calls(call, repeats, budget, m)
    m.error = error(row, out, reference(row, *data))
    ops = hlo_ops(compiled.as_text())
    return {"measure": dataclasses.asdict(m), "cpu_s": min(cpu[1:] or cpu), "load": os.getloadavg()[0],
            "collectives": collectives(ops), "calls": lazy_calls(ops),
            "out_spec": str(out.sharding.spec), "devices": len(jax.devices())}


def fill(shape: tuple, k: int):
    """Values in [-1, 1] from one fused iota + sin: an input made on its devices with no
    temporaries beyond itself (random draws need 3x their size in threefry bits)."""
    import jax.numpy as jnp

    return jnp.sin(jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape) * (0.618 + k))


def memory_child(config: Config, size: int) -> dict:
    """The Gaussian matvec with the sharded axis of length ``size`` (the other MEM_OTHER),
    the inputs made on the devices (no host copy); the peak RSS of the process."""
    import jax
    from jax.sharding import NamedSharding

    from run import lazy_fn

    mesh, specs = mesh_and_specs(config)
    m, n = (size, MEM_OTHER) if config.axis == "x" else (MEM_OTHER, size)
    shapes = ((m, 3), (n, 3), (n,))
    args = [jax.jit(lambda s=s, k=k: fill(s, k), out_shardings=NamedSharding(mesh, p))()
            for k, (s, p) in enumerate(zip(shapes, specs))]
    out = jax.block_until_ready(jax.jit(lazy_fn(Row("mem", "gauss", 3, n), "cpu"))(*args))
    assert bool(jax.numpy.isfinite(out).all())
    return {"size": size, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_main(opts) -> None:
    config = Config.parse(opts.child)
    if opts.mem_size:
        result = memory_child(config, opts.mem_size)
    else:
        result = {r.name: measure_row(r, config, opts.n, opts.repeats, opts.budget) for r in ROWS}
    Path(opts.child_json).write_text(json.dumps(result))


# --------------------------------------------------------------------------- parent

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def failure_line(stderr: str) -> str:
    """The line of a child's stderr that says why it failed (XLA's error, or its abort)."""
    lines = [ln for ln in stderr.splitlines() if re.search(r"Error|Out of memory|Termination timeout|bad_alloc", ln)]
    if not lines:
        return ""
    line = re.sub(r"^[EFWI]\d{4} [\d:.]+\s+\d+ \S+\] (\[id=\d+\] )?", "", lines[-1])  # absl's prefix
    return re.sub(r" ?RendezvousKey\{[^}]*\}", "", line).strip()


def run_child(config: Config, opts, mem_size: int = 0, cap: int | None = None) -> tuple[dict | None, str]:
    """One child process; (its results or None, the last line of its stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", config.name, "--child-json", str(out),
               "--n", str(opts.n), "--repeats", str(opts.repeats), "--budget", str(opts.budget),
               "--mem-size", str(mem_size)]
        limit = (lambda: resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))) if cap else None
        try:
            proc = subprocess.run(cmd, env=config.env(MEM_XLA_FLAGS if cap else ""), preexec_fn=limit,
                                  capture_output=True, text=True, timeout=MEM_TIMEOUT if cap else None)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {MEM_TIMEOUT} s"
        last = failure_line(proc.stderr) or f"rc {proc.returncode}"
        if proc.returncode != 0 or not out.exists():
            if not cap:
                log(proc.stderr[-3000:])
            return None, f"rc {proc.returncode}: {last[:200]}"
        return json.loads(out.read_text()), last


def largest_size(config: Config, opts) -> dict:
    """Doubling from MEM_START until a failure, then bisection in log scale."""
    cap = opts.cap_mib * 2**20
    ok, bad, failure, peak = None, None, "", None
    size = MEM_START
    while bad is None and size <= 2**31:
        result, msg = run_child(config, opts, size, cap)
        log(f"  memory {config.name} size {size}: {'ok' if result else msg}")
        if result:
            ok, peak, size = size, result["peak_rss_mib"], size * 2
        else:
            bad, failure = size, msg
    for _ in range(opts.mem_steps if ok and bad else 0):
        size = round((ok * bad) ** 0.5 / MEM_ALIGN) * MEM_ALIGN
        if size in (ok, bad):
            break
        result, msg = run_child(config, opts, size, cap)
        log(f"  memory {config.name} size {size}: {'ok' if result else msg}")
        if result:
            ok, peak = size, result["peak_rss_mib"]
        else:
            bad, failure = size, msg
    return {"largest": ok, "smallest_failing": bad, "failure": failure, "peak_rss_mib": peak}


# --------------------------------------------------------------------------- tables

def speedup(base: dict | None, m: dict) -> str:
    if not base or base["best"] is None or m["best"] is None:
        return "n/a"
    return f"×{base['best'] / m['best']:.2f}"


def describe(config: Config) -> tuple[str, str]:
    threads = f"{config.threads} thread{'s' if config.threads > 1 else ''}"
    devices = f"{config.devices} device{'s' if config.devices > 1 else ''}"
    axis = {"x": "rows of x (output axis)", "y": "rows of y, b (reduced axis)", "-": "—"}[config.axis]
    return f"{devices} × {threads}", axis


def timing_table(results: dict, configs: list[Config], n: int) -> str:
    from report import fmt_rate, fmt_time

    cols = ["benchmark", "devices × C++ threads", "sharded by", "time · pairs/s", "speed-up vs 1 × 1",
            "speed-up vs 1 × 2", "CPU time per call", "load", "collectives in the compiled HLO",
            "jax_lazy custom call: operands -> result (per device)", "output spec", "error"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in ROWS:
        title = f"{row.title.split(',')[0]}, M=N={n:.0e}".replace("e+0", "e")
        base = {t: (results.get(Config(1, t).name) or {}).get(row.name, {}).get("measure") for t in (1, 2)}
        for c in configs:
            r = (results.get(c.name) or {}).get(row.name)
            if r is None:
                lines.append(f"| {title} | {' | '.join(describe(c))} | n/a (child failed) |" + " |" * 8)
                continue
            m = r["measure"]
            err = f"{m['error']:.0%} rows exact" if row.kind == "argkmin" else f"{m['error']:.1e}"
            cells = [title, *describe(c), f"{fmt_time(m['best'])} · {fmt_rate(float(n) * n, m['best'])}",
                     speedup(base[1], m), speedup(base[2], m), fmt_time(r["cpu_s"]), f"{r['load']:.1f}",
                     f"{len(r['collectives'])}: " + "; ".join(r["collectives"]) if r["collectives"] else "none",
                     "; ".join(r["calls"]), f"`{r['out_spec']}`", err]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(mem: dict, configs: list[Config]) -> str:
    cols = ["devices", "sharded axis (length searched)", "largest that ran", "smallest that failed",
            "peak RSS at the largest", "failure"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for c in configs:
        r = mem[c.name]
        axis = {"x": f"M (rows of x; N = {MEM_OTHER})", "y": f"N (rows of y, b; M = {MEM_OTHER})"}[c.axis]
        fmt = lambda v: f"{v:,}" if v else "—"  # noqa: E731
        peak = f"{r['peak_rss_mib']:.0f} MiB" if r["peak_rss_mib"] else "—"
        failure = r["failure"].replace("|", "\\|")[:200] or "—"
        lines.append(f"| {c.devices} | {axis} | {fmt(r['largest'])} | {fmt(r['smallest_failing'])} | {peak} "
                     f"| {failure} |")
    return "\n".join(lines)


def section(command: str, timing: str, memory: str, opts, load_start, load_end, elapsed) -> str:
    import datetime

    from report import machine

    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"{SECTION}\n\nGenerated by `bench/sharded.py` (see its docstring); do not edit by hand. "
            f"Run on {date}, {elapsed / 60:.1f} min, with:\n\n    {command}\n\n"
            f"{machine(load_start, load_end)}\n\n"
            f"float32, D = 3, `backend=\"cpu\"`; Gaussian matvec Σ_j exp(−|x_i − y_j|² / (2 · 0.5²)) b_j and "
            f"argKmin K = 10 of |x_i − y_j|², x, y, b ~ N(0, 1). Each configuration is one process with "
            f"`XLA_FLAGS=--xla_force_host_platform_device_count=<devices>` and "
            f"`JAX_LAZY_NUM_THREADS=<threads>` (the C++ pool is one per process, shared by its devices); "
            f"inputs placed with `jax.device_put(a, NamedSharding(mesh, P(\"d\", None)))` on "
            f"`jax.make_mesh((devices,), (\"d\",), axis_types=(AxisType.Auto,))`, the other inputs "
            f"replicated; `jax.jit` then `lower(...).compile()`. Time: best of up to {opts.repeats} calls "
            f"after a warm-up within {opts.budget:g} s (a call longer than that: the warm-up call alone), "
            f"compile excluded. Speed-ups are time(1 device × t threads) / time(this row). *CPU time*: the "
            f"process's CPU seconds (all threads, `time.process_time`), least over the timed calls: the work "
            f"done, whatever the load; *load*: the 1-minute load average after the row (2 = this "
            f"benchmark alone on the 2 cores). "
            f"Collectives and custom-call shapes are read from `compiled.as_text()` (layouts dropped). "
            f"Error: on the first {REF_ROWS} rows against float64 NumPy (max relative error; argKmin: "
            f"rows whose 10 indices equal the reference's, in order).\n\n{timing}\n\n"
            f"**Memory.** The largest length of the sharded axis for which the Gaussian matvec runs "
            f"(the other axis {MEM_OTHER} points, inputs drawn on the devices) in a process whose data "
            f"segment is capped at {opts.cap_mib} MiB (`resource.setrlimit(RLIMIT_DATA, cap)` in a "
            f"`preexec_fn`; the cap is for the whole process, whose devices share it; past it XLA raises "
            f"RESOURCE_EXHAUSTED, or, when one device fails while the other waits in a collective, aborts "
            f"after `{MEM_XLA_FLAGS}`). Search: doubling from {MEM_START:,}, then {opts.mem_steps} "
            f"bisection steps in log scale; C++ threads: 2.\n\n{memory}\n")


def split_section(text: str, section: str = SECTION) -> tuple[str, str, str]:
    """(before, ``section`` up to the next "## " heading, after) of a markdown text."""
    head, mark, tail = text.partition(section)
    rest = re.search(r"^## ", tail, flags=re.M)
    cut = rest.start() if rest else len(tail)
    return head, mark + tail[:cut], tail[cut:]


def splice(path: Path, text: str, section: str = SECTION) -> None:
    """Write ``text`` (a section starting with ``section``) into ``path``, replacing the old one."""
    head, _, after = split_section(path.read_text() if path.exists() else "", section)
    before = head.rstrip("\n") + "\n\n" if head.strip() else ""
    path.write_text(before + text.rstrip("\n") + "\n" + ("\n" + after if after else ""))


# --------------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="M = N = 2e4, 2 repeats, no bisection steps in the memory search")
    ap.add_argument("--n", type=int, help="M = N (default 200000)")
    ap.add_argument("--configs", help="comma-separated devices x threads[:axis] (default "
                    + ",".join(c.name for c in CONFIGS) + ")")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up (default 3)")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed calls per row (default 20)")
    ap.add_argument("--cap-mib", type=int, default=1024, help="RLIMIT_DATA of the memory runs (default 1024)")
    ap.add_argument("--mem-steps", type=int, default=3, help="bisection steps of the memory search (default 3)")
    ap.add_argument("--no-memory", action="store_true", help="leave the memory search out")
    ap.add_argument("--out", help="write the section into this markdown file, e.g. docs/benchmarks.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # internal: a configuration's subprocess
    ap.add_argument("--child-json", help=argparse.SUPPRESS)
    ap.add_argument("--mem-size", type=int, default=0, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.n is None:
        opts.n = 20_000 if opts.quick else 200_000
    if opts.quick:
        opts.repeats, opts.mem_steps = min(opts.repeats, 2), 0
    return opts


def main(argv=None, command: str | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    if opts.child:
        child_main(opts)
        return ""
    command = command or "python bench/sharded.py " + " ".join(shlex.quote(a) for a in argv)
    configs = [Config.parse(c) for c in opts.configs.split(",")] if opts.configs else list(CONFIGS)
    load_start, t0 = os.getloadavg(), time.perf_counter()
    results = {}
    for c in configs:
        log(f"== {c.name}")
        results[c.name], _ = run_child(c, opts)
        for name, r in (results[c.name] or {}).items():
            log(f"  {name}: {r['measure']['best']:.3g} s; {r['collectives']}; {r['calls']}")
    timing = timing_table(results, configs, opts.n)
    mem = {} if opts.no_memory else {c.name: largest_size(c, opts) for c in MEM_CONFIGS}
    memory = memory_table(mem, list(MEM_CONFIGS)) if mem else "(left out: --no-memory)"
    print(f"\n{timing}\n\n{memory}\n")
    text = section(command.strip(), timing, memory, opts, load_start, os.getloadavg(), time.perf_counter() - t0)
    if opts.out:
        splice(Path(opts.out), text)
        log(f"wrote {opts.out}")
    return text


if __name__ == "__main__":
    main()

"""The kernel cache when things go wrong: a cache directory that cannot be written, no
compiler (cached kernels are still used), a process killed or interrupted while it
compiles, and the message of a slow compile (jax_lazy/compilers.py, jax_lazy/store.py, _compile_guard.py).

Scenarios that change the environment (PATH, permissions) or kill processes run in
subprocesses, each with its own JAX_LAZY_CACHE_DIR under tmp_path. Values are checked
against NumPy float64.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from jax_lazy import compilers, store

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
import ffi_kernels as K  # noqa: E402
from conftest import set_env  # noqa: E402

pytestmark = pytest.mark.skipif(compilers.find_compiler() is None, reason=f"{compilers.compiler_problem()}")

# A child process: runs BODY, prints one JSON line. ``gauss(backend, scale)`` is the
# Gaussian kernel sum of fixed data (a new formula for each ``scale``, an integer: an exact
# constant of the formula; a float would be a runtime parameter, one kernel for all values)
# and its error vs NumPy; ``grad`` the same for its gradient in x.
PRELUDE = textwrap.dedent("""
    import json, os, sys, warnings
    import numpy as np
    import jax, jax.numpy as jnp
    from jax_lazy import Vi, Vj, BackendError, JaxLazyError, compilers, store
    warnings.simplefilter("always")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 2)).astype(np.float32)
    y = rng.normal(size=(7, 2)).astype(np.float32)
    b = rng.normal(size=(7, 1)).astype(np.float32)
    X, Y, B = (a.astype(np.float64) for a in (x, y, b))
    D2 = ((X[:, None] - Y[None]) ** 2).sum(-1)

    def gauss(backend, scale):
        out = ((-int(scale) * Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(axis=1, backend=backend)
        return float(np.abs(np.asarray(out, np.float64) - np.exp(-scale * D2) @ B).max())

    def grad(backend, scale):
        f = lambda x: ((-int(scale) * Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(axis=1, backend=backend).sum()
        K = np.exp(-scale * D2) * B[:, 0]
        ref = (-2 * scale * K[:, :, None] * (X[:, None] - Y[None])).sum(1)
        return float(np.abs(np.asarray(jax.grad(f)(x), np.float64) - ref).max())

    def caught(fn):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                value = fn()
            except Exception as e:
                value = f"{type(e).__name__}: {e}"
        return value, [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]
""")


def run(body: str, env: dict, *, unprivileged: bool = False, timeout: int = 600) -> dict:
    """Run PRELUDE + ``body`` in a fresh interpreter with ``env`` added (a value None
    removes the variable); the last stdout line is JSON. ``unprivileged``: without the
    capabilities that let root ignore file permissions (so a read-only directory is
    read-only for the child, as for any user)."""
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    cmd = [sys.executable, "-c", PRELUDE + textwrap.dedent(body)]
    if unprivileged and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    proc = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def needs_unprivileged():
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be made read-only")


def hidden_files(d: Path) -> list[Path]:
    """Temporary files (names starting with a dot) in the cache's shards."""
    return sorted(d.glob("*/.*")) if d.is_dir() else []


def writable_tree(d: Path, on: bool) -> None:
    for p in [d, *d.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | stat.S_IWUSR if on else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def read_only_cache(tmp_path):
    """A cache holding the kernels of ``gauss("cpu", 1.0)`` (and its gradient), then made
    read-only; writable again at teardown (so that tmp_path can be removed)."""
    needs_unprivileged()
    d = tmp_path / "ro-cache"
    report = run("""print(json.dumps({"err": gauss("cpu", 1.0), "gerr": grad("cpu", 1.0)}))""",
                 {"JAX_LAZY_CACHE_DIR": str(d)})
    assert report["err"] < 1e-4 and report["gerr"] < 1e-3
    writable_tree(d, False)
    yield d
    writable_tree(d, True)


# ------------------------------------------------------------------ unusable cache directory

@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_unusable_cache_dir_compiles_into_a_temporary_one(kind, tmp_path):
    """JAX_LAZY_CACHE_DIR naming a file, or a path below one: the reductions still run
    on the cpu backend ("auto" and "cpu"), with one warning that says what to set."""
    f = tmp_path / "not-a-dir"
    f.write_text("a file")
    d = f if kind == "a file" else f / "cache"
    report = run("""
        (auto, w1), (cpu, w2) = caught(lambda: gauss("auto", 1.0)), caught(lambda: gauss("cpu", 2.0))
        built = sorted(k.split("/")[0] for k in compilers.build_times)
        print(json.dumps({"auto": auto, "cpu": cpu, "warnings": w1 + w2, "built": built,
                          "tmp": [str(p) for p in getattr(store, "_temporary", {}).values()]}))
    """, {"JAX_LAZY_CACHE_DIR": str(d)})
    assert all(isinstance(report[k], float) and report[k] < 1e-4 for k in ("auto", "cpu")), report
    assert report["built"] == ["Sum", "Sum"]  # compiled by the cpu backend: no jnp fallback
    assert len(report["warnings"]) == 1, report["warnings"]
    assert str(d) in report["warnings"][0] and "JAX_LAZY_CACHE_DIR" in report["warnings"][0]
    assert f.read_text() == "a file"
    assert not Path(report["tmp"][0]).exists()  # the temporary cache is removed at exit


def test_read_only_cache_is_used_and_new_kernels_go_elsewhere(read_only_cache):
    """A read-only cache: its kernels are loaded (no compile, no warning); a new kernel
    is compiled into a temporary cache with one warning; clear_cache() raises a
    JaxLazyError instead of a raw PermissionError. Nothing is written into the cache."""
    before = sorted(p.name for p in read_only_cache.rglob("*"))
    report = run("""
        (cached, w1) = caught(lambda: (gauss("cpu", 1.0), grad("auto", 1.0)))
        built_cached = len(compilers.build_times)
        (new, w2) = caught(lambda: (gauss("auto", 3.0), gauss("cpu", 4.0)))
        import jax_lazy
        (cleared, w3) = caught(jax_lazy.clear_cache)
        print(json.dumps({"cached": cached, "w1": w1, "built_cached": built_cached, "new": new, "w2": w2,
                          "built": len(compilers.build_times), "cleared": cleared}))
    """, {"JAX_LAZY_CACHE_DIR": str(read_only_cache)}, unprivileged=True)
    assert max(report["cached"]) < 1e-3 and report["w1"] == [] and report["built_cached"] == 0, report
    assert max(report["new"]) < 1e-4 and report["built"] == 2, report
    assert len(report["w2"]) == 1 and "cannot be written" in report["w2"][0], report["w2"]
    assert "JAX_LAZY_CACHE_DIR" in report["w2"][0]
    assert report["cleared"].startswith("BackendError: clear_cache") and "cannot be deleted" in report["cleared"]
    assert sorted(p.name for p in read_only_cache.rglob("*")) == before


# ------------------------------------------------------------------ no compiler

def test_cached_kernels_are_used_without_a_compiler(read_only_cache, tmp_path):
    """No C++ compiler (an empty PATH; also JAX_LAZY_CXX pointing nowhere): the kernels in
    the cache run on the cpu backend, values and gradients. A kernel that is not cached
    falls back to jnp with one warning under "auto", and raises a BackendError naming
    the problem under backend="cpu"."""
    writable_tree(read_only_cache, True)  # the cache may be writable: nothing is compiled anyway
    body = """
        (cached, w1) = caught(lambda: (gauss("cpu", 1.0), gauss("auto", 1.0), grad("cpu", 1.0), grad("auto", 1.0)))
        (auto_new, w2) = caught(lambda: (gauss("auto", 5.0), grad("auto", 5.0), gauss("auto", 6.0)))
        (cpu_new, w3) = caught(lambda: gauss("cpu", 7.0))
        from jax_lazy import doctor
        print(json.dumps({"cached": cached, "w1": w1, "auto_new": auto_new, "w2": w2, "cpu_new": cpu_new,
                          "built": len(compilers.build_times), "compiler": compilers.compiler_problem(),
                          "doctor": doctor(verbose=False)["backends"]["cpu"]}))
    """
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    for env in ({"PATH": str(empty), "CXX": None, "JAX_LAZY_CXX": None},
                {"JAX_LAZY_CXX": "/nonexistent/c++"}):
        report = run(body, {"JAX_LAZY_CACHE_DIR": str(read_only_cache), "JAX_LAZY_DUMP": None, **env})
        assert report["compiler"] and report["built"] == 0, report
        assert max(report["cached"]) < 1e-3 and report["w1"] == [], report
        assert max(report["auto_new"]) < 1e-3, report  # on jnp
        assert len(report["w2"]) == 1 and "jnp" in report["w2"][0] and report["compiler"] in report["w2"][0]
        assert report["cpu_new"].startswith("BackendError") and report["compiler"] in report["cpu_new"], report
        assert "Sum_Reduction" in report["cpu_new"] and str(read_only_cache) in report["cpu_new"]
        assert report["doctor"].startswith("available (only kernels already in the cache")


def test_plans_use_the_cpu_backend_without_a_compiler(read_only_cache, tmp_path):
    """What ran where: with the kernel cached, "auto" runs the cpu backend's plan."""
    writable_tree(read_only_cache, True)
    report = run("""
        import contextlib, io
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            gauss("auto", 1.0)
            gauss("auto", 8.0)
        lines = err.getvalue().splitlines()
        print(json.dumps({"plans": [l.split(":")[0] for l in lines if l.startswith("[jax_lazy] plan")]}))
    """, {"JAX_LAZY_CACHE_DIR": str(read_only_cache), "JAX_LAZY_CXX": "/nonexistent/c++", "JAX_LAZY_DUMP": "1"})
    assert report["plans"] == ["[jax_lazy] plan cpu/float32", "[jax_lazy] plan jnp/float32"], report


# ------------------------------------------------------------------ killed compiles

SLOW_STATEMENTS = 20000  # ~15 s of cc1plus at -O3 on an idle core: long enough to be caught


def slow_source() -> str:
    body = "\n".join(f"  a = a * 1.0000{i % 97} + std::sin(a + {i}.5); if (a > {i}) a -= b;"
                     for i in range(SLOW_STATEMENTS))
    return f"// {uuid.uuid4()}\n#include <cmath>\nextern \"C\" double slow(double a, double b) {{\n{body}\n  return a;\n}}\n"


def processes_mentioning(text: str) -> dict[int, str]:
    """{pid: command line} of the live processes (not zombies) whose arguments contain
    ``text``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found[int(proc.name)] = cmdline[:200]
    return found


def wait_until(predicate, seconds: float, what):
    """Poll ``predicate`` until it holds; after ``seconds``, fail with ``what()``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the compile guard is Linux-only (prctl)")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_compile_leaves_no_compiler_and_no_temporary_file(how, tmp_path):
    """A process killed (SIGKILL) or interrupted (Ctrl-C) while g++ compiles: the whole
    compiler (driver, cc1plus) is gone within seconds and no temporary file remains."""
    d = tmp_path / "cache"
    src = tmp_path / "slow.cpp"
    src.write_text(slow_source())
    code = f"from jax_lazy import compilers; compilers.build('slow', open({str(src)!r}).read())"
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "JAX_LAZY_CACHE_DIR": str(d)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def compiling():
            return [c for c in processes_mentioning(str(d)).values() if "_compile_guard" not in c]

        wait_until(compiling, 120, lambda: "the compiler never started")
        time.sleep(1.0)  # cc1plus (g++) or clang's in-process cc1 at work
        child.send_signal(getattr(signal, how))
        child.wait(timeout=60)
        wait_until(lambda: not processes_mentioning(str(d)), 10,
                   lambda: f"compiler processes outlive the killed process: {processes_mentioning(str(d))}")
        assert hidden_files(d) == [], hidden_files(d)
        assert list(d.glob("*/*.so")) == []
    finally:
        child.kill()
        for pid in processes_mentioning(str(d)):  # on failure: do not leave its compiler running
            os.kill(pid, signal.SIGKILL)


def test_next_compile_removes_stale_temporary_files(tmp_path, monkeypatch):
    """Temporary files of a key left by a dead process (0-byte library, half-written
    source) are deleted by the next compile of that key, under its lock."""
    d = tmp_path / "cache"
    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=d)
    source = f"// {uuid.uuid4()}\n" + K.gauss_source(np.float64)
    key = compilers._key(source, compilers.find_compiler(), compilers.default_flags())
    shard = d / key[:2]
    shard.mkdir(parents=True)
    stale = [shard / f".{key}.999999.abcd.tmp.so", shard / f".{key}.cpp.efgh.tmp"]
    for p in stale:
        p.write_bytes(b"")
    other = shard / f".{'f' * 64}.1.x.tmp.so"  # another key's: not ours to judge
    other.write_bytes(b"")
    path = compilers.build("stale", source)
    assert path.exists() and not any(p.exists() for p in stale) and other.exists()


# ------------------------------------------------------------------ slow compiles say so

def test_slow_compile_logs_once_what_why_and_where(tmp_path, monkeypatch, caplog):
    """A compile longer than SLOW_COMPILE_S logs one warning naming the formula, that it
    is a new kernel, and its source file; a cached kernel logs nothing."""
    import jax_lazy.primitive
    from jax_lazy import Vi, Vj

    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=tmp_path / "cache")
    monkeypatch.setattr(compilers, "SLOW_COMPILE_S", 0.01)
    x = np.linspace(0, 1, 6, dtype=np.float32).reshape(3, 2)
    scale = float(uuid.uuid4().int % 1000) / 7 + 1.0  # a formula no cache holds
    with caplog.at_level(logging.WARNING, logger="jax_lazy"):
        (-scale * Vi(x).sqdist(Vj(x))).exp().sum(axis=1, backend="cpu")
    msgs = [r.getMessage() for r in caplog.records if r.name == "jax_lazy"]
    assert len(msgs) == 1, msgs
    assert "Sum_Reduction(" in msgs[0] and "Exp" in msgs[0] and "new kernel" in msgs[0], msgs[0]
    src = msgs[0].split("Source: ")[1].split(";")[0]
    assert Path(src).is_file() and Path(src).parent.parent == tmp_path / "cache"
    caplog.clear()
    jax_lazy.primitive._executable.cache_clear()
    store.forget("so")
    with caplog.at_level(logging.WARNING, logger="jax_lazy"):
        (-scale * Vi(x).sqdist(Vj(x))).exp().sum(axis=1, backend="cpu")
    assert [r for r in caplog.records if r.name == "jax_lazy"] == []


def test_slow_nvrtc_compile_logs_once(tmp_path, monkeypatch, caplog):
    from jax_lazy.backends import nvrtc

    if nvrtc.status():
        pytest.skip(f"NVRTC unavailable: {nvrtc.status()}")
    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=tmp_path / "cache")
    monkeypatch.setattr(compilers, "SLOW_COMPILE_S", 0.0)
    src = f'// {uuid.uuid4()}\nextern "C" __global__ void k(float* x) {{ x[threadIdx.x] += 1.0f; }}\n'
    arch = f"compute_{nvrtc.supported_archs()[-1]}"
    with caplog.at_level(logging.WARNING, logger="jax_lazy"):
        compilers.build_cubin("probe", src, arch, formula="a test formula")
    msgs = [r.getMessage() for r in caplog.records if r.name == "jax_lazy"]
    assert len(msgs) == 1 and "CUDA kernel probe" in msgs[0] and "a test formula" in msgs[0], msgs

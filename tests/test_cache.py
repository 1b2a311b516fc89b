"""The persistent kernel cache (jax_lazy/store.py, jax_lazy/compilers.py): keys, concurrency between processes,
corrupted entries, missing compiler, compile errors, clearing, load latency.

Every test uses its own JAX_LAZY_CACHE_DIR (tmp_path). Subprocesses run small scripts
(tests/ffi_kernels.py provides the kernels) so that what is measured or recovered is what a
fresh process sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from jax_lazy import clear_cache, compilers, options, store
from jax_lazy.errors import BackendError, CompileError

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
import ffi_kernels as K  # noqa: E402
from conftest import set_env  # noqa: E402

pytestmark = pytest.mark.skipif(compilers.find_compiler() is None, reason=f"{compilers.compiler_problem()}")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=d, JAX_LAZY_CXXFLAGS=None, JAX_LAZY_DUMP=None)
    return d


@pytest.fixture
def fresh_compiler():
    compilers.reset_compiler()
    yield
    compilers.reset_compiler()


def unique_source(dtype=np.float64) -> str:
    """A kernel source no cache has seen (fresh key => a real compile)."""
    return f"// {uuid.uuid4()}\n" + K.gauss_source(dtype)


def entries(d: Path, pattern: str) -> list[Path]:
    return sorted(d.glob(f"*/{pattern}")) if d.exists() else []


# Run in subprocesses: the result of the Gaussian kernel vs NumPy for some data.
CHECK = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax_lazy.backends import ffi
    import ffi_kernels as K

    def check(kid, seed):
        rng = np.random.default_rng(seed)
        x, y, b = rng.normal(size=(40, 1)), rng.normal(size=(30, 1)), rng.normal(size=(30, 1))
        out, = ffi.call(kid, (x, y, b), (0, 1, 1), [jax.ShapeDtypeStruct((40, 1), np.float64)], (), 40, 30)
        return float(np.abs(np.asarray(out) - K.gauss_ref(x, y, b)).max())
""")


def run_script(body: str, env_extra: dict, timeout=120) -> dict:
    env = dict(os.environ, **env_extra, PYTHONPATH=os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHECK + textwrap.dedent(body)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ basics

def test_cache_dir_from_env(cache_dir):
    assert not cache_dir.exists()
    assert store.cache_dir() == cache_dir and cache_dir.is_dir()


def test_build_layout_and_reuse(cache_dir, capfd, monkeypatch):
    src = unique_source()
    set_env(monkeypatch, JAX_LAZY_DUMP="1")
    path = compilers.build("layout", src)
    err = capfd.readouterr().err
    key = path.stem
    assert path == cache_dir / key[:2] / f"{key}.so" and len(key) == 64
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["key"] == key and manifest["size"] == path.stat().st_size
    assert path.with_suffix(".cpp").read_text() == src + compilers.key_stamp(key, "cpu")  # the kernel's own key
    assert str(path) in err and str(path.with_suffix(".cpp")) in err  # JAX_LAZY_DUMP
    assert any(k.startswith("layout/") and t > 0 for k, t in compilers.build_times.items())
    # Second lookup: same path, no compile (the file is untouched).
    mtime = path.stat().st_mtime_ns
    n_builds = len(compilers.build_times)
    assert compilers.build("layout", src) == path
    store.forget("so")  # disk lookup this time
    assert compilers.build("layout", src) == path
    assert path.stat().st_mtime_ns == mtime and len(compilers.build_times) == n_builds


def test_entries_written_before_the_store_are_read(cache_dir):
    """Library manifests of jax_lazy before jax_lazy/store.py named the library's size and
    hash ``so_size`` / ``so_sha256``: such an entry is still valid, found by its source
    (no compile) and by its key alone (modules exported then)."""
    src = unique_source()
    path = compilers.build("legacy", src)
    key = path.stem
    new = json.loads(path.with_suffix(".json").read_text())
    old = {"format": 1, "key": key, "name": "legacy", "compiler": new["compiler"], "flags": new["flags"],
           "so_size": new["size"], "so_sha256": new["sha256"], "compile_seconds": new["compile_seconds"]}
    path.with_suffix(".json").write_text(json.dumps(old, indent=1))
    store.forget()
    n_builds = len(compilers.build_times)
    assert compilers.build("legacy", src) == path and len(compilers.build_times) == n_builds
    assert store.find("cpu", key) == path
    old["so_size"] += 1  # and it is checked
    path.with_suffix(".json").write_text(json.dumps(old, indent=1))
    assert not store.valid(cache_dir, key, "so")


def test_key_covers_flags_and_compiler(cache_dir, monkeypatch, fresh_compiler):
    src = unique_source()
    base = compilers.build("k", src)
    set_env(monkeypatch, JAX_LAZY_CXXFLAGS="-DJAX_LAZY_TEST_FLAG=1")
    assert compilers.default_flags()[-1] == "-DJAX_LAZY_TEST_FLAG=1"
    assert compilers.default_flags()[:3] == ["-O3", "-march=native", "-std=c++17"]
    with_flag = compilers.build("k", src)
    assert with_flag != base
    # A compiler given with arguments (split with shlex) is another compiler.
    set_env(monkeypatch, JAX_LAZY_CXXFLAGS=None, CXX=f"{compilers.find_compiler().argv[0]} -DOTHER=1", JAX_LAZY_CXX=None)
    compilers.reset_compiler()
    comp = compilers.find_compiler()
    assert comp.argv[1:] == ("-DOTHER=1",) and "-DOTHER=1" in comp.identity
    assert compilers.build("k", src) not in (base, with_flag)


# ------------------------------------------------------------------ errors

def test_no_compiler(cache_dir, monkeypatch, fresh_compiler):
    set_env(monkeypatch, JAX_LAZY_CXX="/nonexistent/c++", CXX=None)
    compilers.reset_compiler()
    assert compilers.find_compiler() is None
    problem = compilers.compiler_problem()
    assert "/nonexistent/c++" in problem and "JAX_LAZY_CXX" in problem
    with pytest.raises(BackendError, match="nonexistent"):
        compilers.build("nocomp", unique_source())
    assert entries(cache_dir, "*.so") == []


def test_compile_error(cache_dir):
    good = compilers.build("good", unique_source())
    good_bytes = good.read_bytes()
    bad_src = unique_source() + "\nthis is not C++ at all;\n"
    with pytest.raises(CompileError) as info:
        compilers.build("broken", bad_src)
    err = info.value
    msg = str(err)
    assert isinstance(err, BackendError)
    assert "error" in err.log and err.log.strip() in msg  # the full compiler output
    assert "this is not C++" in msg or "does not name a type" in msg
    assert str(err.source_path) in msg and Path(err.source_path).read_text().startswith(bad_src)
    assert "-o" in msg and err.command[0] in msg
    # No partial entry: only the good one is there, untouched.
    assert entries(cache_dir, "*.so") == [good] and good.read_bytes() == good_bytes
    assert entries(cache_dir, "*.json") == [good.with_suffix(".json")]
    assert entries(cache_dir, ".*") == []  # no temporary leftovers


def test_clear_cache(cache_dir):
    import jax

    kid = compilers.build_and_load("tobeclear", unique_source())
    assert entries(cache_dir, "*.so")
    (cache_dir / "README.keep").write_text("not ours")
    clear_cache()
    assert entries(cache_dir, "*") == [] and (cache_dir / "README.keep").exists()
    assert all(k[0] != str(cache_dir) for k in store._memo)
    # The loaded library stays usable under its id.
    from jax_lazy.backends import ffi

    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(8, 1)
    with jax.enable_x64(True):
        out, = ffi.call(kid, (x.astype(np.float64),) * 3, (0, 1, 1),
                        [jax.ShapeDtypeStruct((8, 1), np.float64)], (), 8, 8)
        np.testing.assert_allclose(np.asarray(out), K.gauss_ref(x, x, x), rtol=1e-12)


# ------------------------------------------------------------------ processes

def test_concurrent_processes_build_once(cache_dir, tmp_path):
    """4 processes build the same new kernel at the same moment: one compiles, all get a
    working kernel, the cache holds exactly one library."""
    src = unique_source()
    (tmp_path / "src.cpp").write_text(src)
    go = tmp_path / "go"
    body = f"""
    import json, os, sys, time
    from pathlib import Path
    from jax_lazy import compilers, store
    Path(sys.argv[1]).touch()                       # ready
    while not os.path.exists({str(go)!r}):
        time.sleep(0.005)
    kid = compilers.build_and_load("race", Path({str(tmp_path / 'src.cpp')!r}).read_text())
    print(json.dumps({{"err": check(kid, int(sys.argv[2])), "compiled": len(compilers.build_times)}}))
    """
    env = dict(os.environ, JAX_LAZY_CACHE_DIR=str(cache_dir), PYTHONPATH=os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", CHECK + textwrap.dedent(body),
                               str(tmp_path / f"ready{i}"), str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-4000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["err"] < 1e-12 for r in results), results
    assert sum(r["compiled"] for r in results) == 1, results
    assert len(entries(cache_dir, "*.so")) == 1
    assert entries(cache_dir, ".*") == []


@pytest.fixture(scope="module")
def fresh_process_report(tmp_path_factory):
    """Prepare three cached kernels, damage two, and load all three in a fresh process:
    ``good`` (timed), ``truncated`` (the .so cut in half), ``garbage`` (the .so overwritten
    and its manifest forged to match, so only dlopen can notice)."""
    tmp_path = tmp_path_factory.mktemp("fresh_process")
    cache_dir = tmp_path / "cache"
    srcs = {name: unique_source() for name in ("good", "truncated", "garbage")}
    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, JAX_LAZY_CACHE_DIR=cache_dir)
        paths = {name: compilers.build(name, s) for name, s in srcs.items()}
    options.reset()
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    garbage = paths["garbage"]
    garbage.write_bytes(b"\x7fELF" + os.urandom(garbage.stat().st_size - 4))
    manifest = json.loads(garbage.with_suffix(".json").read_text())
    manifest.update(size=garbage.stat().st_size, sha256=store.sha256_file(garbage))
    garbage.with_suffix(".json").write_text(json.dumps(manifest))
    for name, s in srcs.items():
        (tmp_path / f"{name}.cpp").write_text(s)
    body = f"""
    import json, time, warnings
    from pathlib import Path
    from jax_lazy import compilers, store
    from jax_lazy.backends import ffi
    import jax_lazy._native  # imported by any jax_lazy computation anyway
    src = {{n: Path({str(tmp_path)!r}, n + ".cpp").read_text() for n in ("good", "truncated", "garbage")}}
    t0 = time.perf_counter()
    kid = compilers.build_and_load("good", src["good"])
    t1 = time.perf_counter()
    report = {{"load_ms": (t1 - t0) * 1e3, "good": check(kid, 0)}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("truncated", "garbage"):
            report[name] = check(compilers.build_and_load(name, src[name]), 1)
    report["warnings"] = [str(w.message) for w in caught]
    report["compiled"] = sorted(k.split("/")[0] for k in compilers.build_times)
    print(json.dumps(report))
    """
    return run_script(body, {"JAX_LAZY_CACHE_DIR": str(cache_dir)}), paths


def test_corrupted_entries_are_rebuilt(fresh_process_report):
    report, paths = fresh_process_report
    assert report["truncated"] < 1e-12 and report["garbage"] < 1e-12
    # Both were recompiled; the truncated one is caught by the manifest check, the forged
    # one only by dlopen (it warns).
    assert report["compiled"] == ["garbage", "truncated"]
    assert len(report["warnings"]) == 1 and "cannot be loaded" in report["warnings"][0]
    assert str(paths["garbage"]) in report["warnings"][0]
    for name in ("truncated", "garbage"):
        assert store.valid(paths[name].parent.parent, paths[name].stem, "so")


def test_cached_load_is_fast(fresh_process_report):
    report, _ = fresh_process_report
    assert report["good"] < 1e-12
    print(f"\ncached kernel lookup + dlopen + register in a fresh process: {report['load_ms']:.2f} ms")
    assert report["load_ms"] < 100  # target < 20 ms; generous for noisy CI machines


# ------------------------------------------------------------------ layering

def test_the_store_knows_no_producer():
    """jax_lazy/store.py files artefacts by key: it imports neither the compilers nor the
    backends (whose tuning records it keeps), so nothing cycles back into it."""
    import ast

    tree = ast.parse((Path(store.__file__)).read_text())
    imported = {(n.module or "") + ":" + ",".join(a.name for a in n.names)
                for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert imported == {":memo", "errors:BackendError", "options:options"}, imported

"""``jax.export`` of compiled-backend reductions: the custom call names its kernel by the
kernel's content hash (the cache key), so a module exported in one process runs the same
kernel in another, and a missing, unknown or forged kernel is refused with an error.

Every step runs in a fresh subprocess: the point is that kernels registered by one process
mean nothing in another, and a crash must fail the test rather than kill pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jax_lazy import compilers, store
from jax_lazy.backends import ffi

pytest.importorskip("flatbuffers", reason="jax.export needs flatbuffers (the test extra)")
pytestmark = pytest.mark.skipif(ffi.available() is not None or compilers.find_compiler() is None,
                                reason=f"FFI handler: {ffi.available()}; compiler: {compilers.compiler_problem()}")

M, N = 5, 7

# The exported formula (a Gaussian kernel sum) and another one, run first in the importing
# process so that its process-local state differs from the exporter's.
PRELUDE = textwrap.dedent(f"""
    import json, sys
    import numpy as np, jax, jax.numpy as jnp
    from jax import export
    import jax_lazy
    from jax_lazy import Vi, Vj
    rng = np.random.default_rng(0)
    x, y, b = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in (({M}, 3), ({N}, 3), ({N}, 1)))

    def gauss(x, y, b):
        return ((-Vi(x).sqdist(Vj(y)) / 2).exp() * Vj(b)).sum(axis=1, backend="cpu")

    def other(x, y):
        return (Vi(x) * Vj(y)).sum().sum(axis=1, backend="cpu")
""")

EXPORT = PRELUDE + textwrap.dedent("""
    checks = [export.DisabledSafetyCheck.custom_call("jax_lazy_cpu")]
    exp = export.export(jax.jit(gauss), disabled_checks=checks)(x, y, b)
    open(sys.argv[1], "wb").write(exp.serialize())
    print(exp.mlir_module())
""")

IMPORT = PRELUDE + textwrap.dedent("""
    if sys.argv[2] == "other-first":
        np.asarray(other(x, y))
    exp = export.deserialize(open(sys.argv[1], "rb").read())
    try:
        out = np.asarray(exp.call(x, y, b))
    except Exception as e:  # the handler's error, as a Python exception
        print("ERROR", type(e).__name__, str(e).replace("\\n", " "))
    else:
        print("VALUES", json.dumps(out.tolist()))
""")


def run(code, *args, cache_dir):
    env = {**os.environ, "JAX_LAZY_CACHE_DIR": str(cache_dir), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def oracle():
    rng = np.random.default_rng(0)
    x, y, b = (rng.normal(size=s).astype(np.float32).astype(np.float64) for s in ((M, 3), (N, 3), (N, 1)))
    return np.exp(-((x[:, None] - y[None]) ** 2).sum(-1) / 2) @ b


def kernel_key(mlir: str) -> str:
    """The kernel key that the exported custom call carries (its content hash)."""
    (key,) = set(re.findall(r'kernel_key = "([0-9a-f]{64})"', mlir))
    return key


@pytest.fixture
def exported(tmp_path):
    """(path of the serialized module, its MLIR text, the cache dir)."""
    kcache = tmp_path / "kcache"
    mlir = run(EXPORT, tmp_path / "gauss.bin", cache_dir=kcache)
    return tmp_path / "gauss.bin", mlir, kcache


@pytest.mark.parametrize("first", ["other-first", "fresh"])
def test_exported_module_runs_its_own_kernel_in_another_process(exported, first):
    path, _, kcache = exported
    out = run(IMPORT, path, first, cache_dir=kcache)
    assert "VALUES" in out, out
    values = np.array(json.loads(out.split("VALUES", 1)[1]))
    np.testing.assert_allclose(values, oracle(), rtol=1e-5, atol=1e-5)


def test_exported_module_without_its_kernel_is_refused(exported, tmp_path):
    path, mlir, _ = exported
    key = kernel_key(mlir)
    out = run(IMPORT, path, "other-first", cache_dir=tmp_path / "empty")
    assert "ERROR" in out and key in out and "not in the kernel cache" in out, out


def test_forged_cache_entry_is_refused(exported, tmp_path):
    """Another kernel's library under the exported key, with a manifest that matches it."""
    path, mlir, kcache = exported
    key = kernel_key(mlir)
    run(PRELUDE + "np.asarray(other(x, y))", cache_dir=tmp_path / "other")
    (other_so,) = (tmp_path / "other").glob("*/*.so")
    so = kcache / key[:2] / f"{key}.so"
    data = other_so.read_bytes()
    so.write_bytes(data)
    manifest_path = so.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest))
    out = run(IMPORT, path, "fresh", cache_dir=kcache)
    assert "ERROR" in out and key in out and other_so.stem in out, out


def test_load_kernel_refuses_a_library_with_another_key(tmp_path):
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        import ffi_kernels as K
        from jax_lazy import compilers, store
        from jax_lazy.backends import ffi
        key = compilers.build_and_load("gauss", K.gauss_source(np.float32))
        (path,) = store.cache_dir().glob(f"*/{key}.so")
        try:
            ffi.load_kernel(path, "f" * 64)
        except Exception as e:
            print("ERROR", type(e).__name__, e)
    """)
    out = run(code, Path(__file__).parent, cache_dir=tmp_path / "kcache")
    assert "ERROR BackendError" in out and "f" * 64 in out, out


def test_custom_call_with_an_unknown_key_is_refused(tmp_path):
    code = textwrap.dedent("""
        import jax, numpy as np
        from jax_lazy.backends import ffi
        x = np.ones((4, 1), np.float32)
        try:
            np.asarray(ffi.call("0" * 64, (x, x), (0, 1), [jax.ShapeDtypeStruct((4, 1), np.float32)], (), 4, 4)[0])
        except Exception as e:
            print("ERROR", type(e).__name__, e)
    """)
    out = run(code, cache_dir=tmp_path / "kcache")
    assert "ERROR" in out and "0" * 64 in out and "not in the kernel cache" in out, out

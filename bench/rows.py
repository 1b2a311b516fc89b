"""The rows of bench/run.py (what is measured, at which sizes) and the constants shared
by the runner and the report."""

from __future__ import annotations

import dataclasses
import os
import subprocess
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
# kernel width: exp(-|x - y|^2 / (2 s^2)) not negligible for N(0, 1) data (|x - y|^2 ~ 2 D);
# the D > 3 ones are sqrt(D) / 2 (16 to 1024: bench/gpu.py)
SIGMA = {3: 0.5, 16: 2.0, 64: 4.0, 128: 5.66, 256: 8.0, 1024: 16.0}
YARDSTICK_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-shared", "-fPIC",
                   "-std=c++17", "-pthread"]
KEOPS_WARMUP = 256  # points of the call that makes pykeops compile the formula
METHODS = ("cpu", "jnp", "jax", "keops", "cxx")
TITLES = {"cpu": "jax_lazy-cpu", "jnp": "jax_lazy-jnp", "jax": "pure JAX jit (best form)",
          "keops": "pykeops CPU", "cxx": "yardstick C++"}


# --------------------------------------------------------------------------- rows

@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    kind: str  # gauss | grad | jvp | hvp | argkmin | lse
    D: int
    n: int
    dtype: str = "float32"
    big: bool = False  # skipped by --quick

    @property
    def title(self) -> str:
        what = {"gauss": "Gaussian matvec", "grad": "Gaussian matvec, grad x",
                "jvp": "Gaussian matvec, jvp along x", "hvp": "Gaussian matvec, HVP x (fwd-over-rev)",
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
    Row("jvp3-1e4", "jvp", 3, 10_000),
    Row("jvp3-1e5", "jvp", 3, 100_000, big=True),
    Row("hvp3-1e4", "hvp", 3, 10_000),
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



def compiler_version(cxx: str = "g++") -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"

"""Memory stays linear in M + N: a Gaussian kernel sum with M = N = 1e5 under jit keeps the
process under 1 GiB of peak RSS (the dense matrix would need 37 GiB)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gaussian_sum_1e5_peak_memory_under_1gib():
    code = (
        "import sys, runpy; sys.argv = ['memory', '100000'];"
        "import importlib.util as u;"
        f"s = u.spec_from_file_location('m', {str(ROOT / 'bench' / 'memory.py')!r}); m = u.module_from_spec(s);"
        "s.loader.exec_module(m); r = m.main(['100000']); print('PEAK', r['peak_mib'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "JAX_ENABLE_X64": "0"})
    assert out.returncode == 0, out.stderr
    peak = float(out.stdout.split("PEAK")[-1])
    assert peak < 1024, out.stdout

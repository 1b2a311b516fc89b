"""bench/gpu.py's dry run (``--device cpu``): the whole GPU benchmark pipeline at tiny
sizes on the CPU, so that the script is checked on machines without a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # name -> title in the table
    "gauss3-1e4": "Gaussian matvec, D=3, float32",
    "argkmin128-1e6": "argKmin K=10, D=128, float32",
    "gauss3-bf16-1e6": "Gaussian matvec, D=3, bfloat16",
}


@pytest.mark.slow
def test_dry_run_reports_every_row(tmp_path):
    out = tmp_path / "gpu.md"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--rows", ",".join(ROWS),
           "--no-keops", "--repeats", "1", "--budget", "0.5", "--timeout", "120",
           "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    text = out.read_text()
    assert "DRY RUN" in text
    results = text.split("## Results")[1].split("## Issue-4 targets")[0]
    table = [ln for ln in results.splitlines() if ln.startswith("| ")][1:]
    assert [ln.split(" | ")[0][2:] for ln in table] == list(ROWS.values())
    for line in table:
        lazy, jax = line.split(" | ")[2:4]
        assert "G/s" in lazy and "G/s" in jax, line  # both ran (tiny sizes: no memory guard)
        assert "⚠" not in line.split(" | ")[-1].split(" · ")[0], line  # jax_lazy's error
    assert "n/a" in results and "left out (--no-keops)" in results  # the pykeops cells
    targets = text.split("## Issue-4 targets")[1]
    assert "faster than JAX matmul + top_k: met (×" in table[1] or "top_k: not met (×" in table[1]
    assert "| argKmin K=10, D=128, float32" in targets
    assert text.count("Gaussian matvec, D=3, bfloat16") == 2  # results and compile tables

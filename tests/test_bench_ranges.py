"""bench/ranges.py (``python bench/run.py --ranges``): a dry run at a tiny size on the jnp
backend (no kernel to compile), its section of a markdown file, and its numbers: the
ranges result equals the dense sum over the kept pairs, the multiscale Sinkhorn cost the
full-resolution one."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import ranges  # noqa: E402


@pytest.mark.slow
def test_dry_run_writes_its_section(tmp_path):
    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\n## Results\n\nkept\n")
    text = ranges.main(["--size", "3000", "--sinkhorn-size", "600", "--backend", "jnp", "--rounds", "1",
                        "--out", str(out)])
    doc = out.read_text()
    assert doc.startswith("# Benchmarks\n\n## Results\n\nkept\n") and ranges.SECTION in doc
    assert text in doc
    rows = [line for line in text.splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == 2
    kept_error = float(rows[0].split("|")[5])  # ranges vs the float64 sum over the kept pairs
    assert kept_error < 1e-5
    rel = float(re.search(r"\(([\d.e+-]+) rel\.\)", rows[1]).group(1))  # multiscale vs full Sinkhorn cost
    assert rel < 1e-2

"""bench/sharded.py: its reading of compiled HLO, its section of docs/benchmarks.md, and a
dry run on 1 and 2 forced CPU devices at a tiny size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import sharded  # noqa: E402

# The entry computation of jit(gauss) on 2 devices with y and b sharded by rows, as
# jaxlib 0.10.2 prints it (metadata cut): operands are names, their shapes are at their
# definitions; one result is a tuple.
HLO = """
ENTRY %main.0_spmd (param: f32[2000,3], param.1: f32[1000,3], param.2: f32[1000]) -> f32[2000] {
  %param = f32[2000,3]{1,0} parameter(0), sharding={replicated}, metadata={op_name="x"}
  %param.1 = f32[1000,3]{1,0} parameter(1), sharding={devices=[2,1]<=[2]}, metadata={op_name="y"}
  %param.2 = f32[1000]{0} parameter(2), sharding={devices=[2]<=[2]}, metadata={op_name="b"}
  %bitcast.2 = f32[3,1000]{0,1} bitcast(%param.1), metadata={op_name="jit(<lambda>)/transpose"}
  %bitcast = f32[1000,1]{1,0} bitcast(%param.2), metadata={op_name="b"}
  %all-gather = f32[3,2000]{0,1} all-gather(%bitcast.2), channel_id=1, replica_groups=mesh['axis_0'=1,'axis_1'=2] {'axis_1'}, dimensions={1}
  %all-reduce-start = f32[2000,1]{1,0} all-reduce-start(%bitcast), channel_id=2, to_apply=%add
  %all-reduce-done = f32[2000,1]{1,0} all-reduce-done(%all-reduce-start)
  %ffi_call.2 = f32[2000,1]{1,0} custom-call(%param, %all-gather, %all-reduce-done), custom_call_target="jax_lazy_cpu", operand_layout_constraints={f32[2000,3]{1,0}, f32[3,2000]{1,0}, f32[2000,1]{1,0}}
  %ffi_call.6 = (f32[2000,10]{1,0}, s32[2000,10]{1,0}) custom-call(%param, %all-gather), custom_call_target="jax_lazy_cpu"
  %other = f32[2000,1]{1,0} custom-call(%param), custom_call_target="SomethingElse"
  ROOT %bitcast.1 = f32[2000]{0} bitcast(%ffi_call.2)
}
"""


def test_collectives_and_custom_calls_read_from_hlo():
    ops = sharded.hlo_ops(HLO)
    assert sharded.collectives(ops) == ["all-gather f32[3,1000] -> f32[3,2000]",
                                        "all-reduce f32[1000,1] -> f32[2000,1]"]  # the async pair once
    assert sharded.lazy_calls(ops) == ["f32[2000,3], f32[3,2000], f32[2000,1] -> f32[2000,1]",
                                       "f32[2000,3], f32[3,2000] -> (f32[2000,10], s32[2000,10])"]


def test_section_replaced_in_place_and_kept_by_the_main_report(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\n## Results\n\nA\n")
    sharded.splice(doc, f"{sharded.SECTION}\n\nfirst\n")
    sharded.splice(doc, f"{sharded.SECTION}\n\nsecond\n")
    assert doc.read_text() == f"# Benchmarks\n\n## Results\n\nA\n\n{sharded.SECTION}\n\nsecond\n"
    doc.write_text(f"# B\n\n{sharded.SECTION}\n\nold\n\n## After\n\nz\n")
    sharded.splice(doc, f"{sharded.SECTION}\n\nnew\n")
    assert doc.read_text() == f"# B\n\n{sharded.SECTION}\n\nnew\n\n## After\n\nz\n"
    assert sharded.split_section(doc.read_text())[1] == f"{sharded.SECTION}\n\nnew\n\n"


def test_failure_line_names_the_cause():
    abort = ("E1204 16:48:06.523725   22192 rendezvous.cc:116] waiting\n"
             "F1204 16:48:46.524179   22192 rendezvous.cc:161] [id=0] Termination timeout for `all gather "
             "RendezvousKey{run_id=RunId: -1, op_id=1}` of 5 seconds exceeded.\n*** Check failure stack trace: ***\n"
             "    @     0x7ff3fd440634  absl::LogMessage::SendToLog()\n")
    assert sharded.failure_line(abort) == "Termination timeout for `all gather` of 5 seconds exceeded."
    oom = "Traceback\njax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating 10 bytes.\n"
    assert sharded.failure_line(oom) == "jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating 10 bytes."


@pytest.mark.slow
def test_dry_run_reports_every_configuration(tmp_path):
    out = tmp_path / "b.md"
    configs = ["1x1", "2x1:x", "2x1:y"]
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--sharded", "--n", "3000", "--repeats", "1",
           "--budget", "1", "--configs", ",".join(configs), "--no-memory", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    text = out.read_text()
    assert text.startswith(sharded.SECTION) and "python bench/run.py --sharded --n 3000" in text
    lines = [ln.strip("| ").split(" | ") for ln in text.splitlines() if ln.startswith("| ")]
    header = lines[0]
    table = [dict(zip(header, cells)) for cells in lines if cells[0].startswith(("Gaussian matvec", "argKmin"))]
    assert len(table) == len(sharded.ROWS) * len(configs)
    calls = "jax_lazy custom call: operands -> result (per device)"
    for row in table:
        assert "G/s" in row["time · pairs/s"], row  # it ran
        assert row["CPU time per call"].endswith("s"), row
        assert "f32[3000,3]" in row[calls] or "f32[1500,3]" in row[calls], row  # x: whole or its rows' shard
        if row["benchmark"].startswith("argKmin"):
            assert row["error"] == "100% rows exact", row
        else:
            assert float(row["error"]) < 1e-5, row
        collectives = row["collectives in the compiled HLO"]
        assert collectives == "none" or " -> " in collectives, row
        if row["sharded by"].startswith("rows of x"):  # each device its rows, nothing gathered
            assert "f32[1500,3]" in row[calls] and collectives == "none", row
        if row["sharded by"].startswith("rows of y"):  # each device its columns (y is transposed)
            assert "f32[3,1500]" in row[calls] and "f32[3,1500] -> f32[3,3000]" not in collectives, row

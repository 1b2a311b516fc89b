"""Reductions partitioned over several devices (issue 11): each case of
``tests/sharding_worker.py`` runs in one subprocess with 4 forced CPU devices and is
reported here as its own test.

Every case compares a sharded run under ``jax.jit`` with the same function on one device,
and inspects the compiled module: no all-gather of an operand whole where only one side
is sharded, custom calls fed per-device shards, outputs sharded along the output axis,
gradients sharded like their inputs. The fast suite runs :data:`sharding_worker.FAST`
(every family with the reduced axis split, on cpu, and every other kind of case); the slow
one runs the rest (both axes, both backends, every sharding).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sharding_worker as worker

SLOW = [c for c in worker.CASES if c not in worker.FAST]


def _run(names, timeout):
    out = subprocess.run([sys.executable, worker.__file__, *names], capture_output=True, text=True, timeout=timeout)
    found = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            found[r["case"]] = r
    return found, out.stderr[-3000:]


def _check(case, results):
    found, stderr = results
    assert case in found, f"the worker did not report {case}; its stderr:\n{stderr}"
    assert found[case]["ok"], found[case]["msg"]


@pytest.fixture(scope="module")
def fast_results():
    return _run(worker.FAST, timeout=900)


@pytest.fixture(scope="module")
def slow_results():
    return _run(SLOW, timeout=3600)


@pytest.mark.parametrize("case", worker.FAST)
def test_sharded_reduction(case, fast_results):
    _check(case, fast_results)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW)
def test_sharded_reduction_more(case, slow_results):
    _check(case, slow_results)

"""Launch configurations chosen by measurement (``backends/tuning.py``) and the cuda
backend's use of it: the fastest candidate is kept, measured once, remembered on disk,
re-measured when the entry is corrupt or the candidates change; failures are skipped.
The timings here are fakes (no GPU); that each candidate computes the right thing is
checked by ``test_cuda_host.py``, that it compiles by the cuda test below."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jax_lazy import Vi, Vj, store
from jax_lazy.backends import cuda, nvrtc, tuning
from jax_lazy.reductions import index_dtype

from conftest import set_env


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    set_env(monkeypatch, JAX_LAZY_CACHE_DIR=tmp_path)
    tuning.forget()
    yield
    tuning.forget()


LABELS = ["256 threads", "128 threads", "64 threads"]


def _timer(seconds):
    calls = []

    def measure(k):
        calls.append(k)
        if isinstance(seconds[k], Exception):
            raise seconds[k]
        return seconds[k]

    return measure, calls


def test_the_fastest_candidate_is_chosen_and_measured_once():
    measure, calls = _timer([3e-3, 1e-3, 2e-3])
    assert tuning.choose({"source": "k1"}, LABELS, measure) == 1
    assert calls == [0, 1, 2]
    assert tuning.choose({"source": "k1"}, LABELS, measure) == 1
    assert calls == [0, 1, 2], "remembered in this process"


def test_the_choice_is_remembered_on_disk():
    measure, calls = _timer([3e-3, 1e-3, 0.5e-3])
    assert tuning.choose({"source": "k2", "device": "A"}, LABELS, measure) == 2
    k = tuning.key({"source": "k2", "device": "A"}, LABELS)
    entry = json.loads(tuning.path(k).read_text())
    assert entry["choice"] == 2 and entry["seconds"] == [3e-3, 1e-3, 0.5e-3]
    assert entry["material"] == {"device": "A"}, "the source is not copied into the entry"
    tuning.forget()  # a new process: reads the entry, measures nothing
    again, calls2 = _timer([1.0, 1.0, 1.0])
    assert tuning.choose({"source": "k2", "device": "A"}, LABELS, again) == 2 and calls2 == []
    # another device, other candidates: measured anew
    assert tuning.choose({"source": "k2", "device": "B"}, LABELS, _timer([1e-3, 2e-3, 3e-3])[0]) == 0
    assert tuning.choose({"source": "k2", "device": "A"}, LABELS[:2], _timer([2e-3, 1e-3])[0]) == 1


@pytest.mark.parametrize("damage", ["garbage", "out_of_range", "other_labels", "empty"])
def test_a_damaged_entry_is_measured_again(damage):
    material = {"source": "k3"}
    tuning.choose(material, LABELS, _timer([1e-3, 2e-3, 3e-3])[0])
    p = tuning.path(tuning.key(material, LABELS))
    entry = json.loads(p.read_text())
    if damage == "garbage":
        p.write_bytes(b"\x00{not json")
    elif damage == "out_of_range":
        p.write_text(json.dumps({**entry, "choice": 7}))
    elif damage == "other_labels":
        p.write_text(json.dumps({**entry, "candidates": ["a", "b", "c"]}))
    else:
        p.write_text("")
    tuning.forget()
    measure, calls = _timer([3e-3, 2e-3, 1e-3])
    assert tuning.choose(material, LABELS, measure) == 2 and calls == [0, 1, 2]
    assert json.loads(p.read_text())["choice"] == 2, "rewritten"


def test_failing_candidates_are_skipped():
    measure, calls = _timer([RuntimeError("too many resources requested for launch"), 2e-3, 1e-3])
    assert tuning.choose({"source": "k4"}, LABELS, measure) == 2
    entry = json.loads(tuning.path(tuning.key({"source": "k4"}, LABELS)).read_text())
    assert entry["seconds"] == [None, 2e-3, 1e-3]


def test_nothing_measurable_gives_the_default_and_is_not_remembered():
    boom = RuntimeError("out of memory")
    assert tuning.choose({"source": "k5"}, LABELS, _timer([boom, boom, boom])[0]) == 0
    assert not tuning.path(tuning.key({"source": "k5"}, LABELS)).exists()
    measure, calls = _timer([3e-3, 1e-3, 2e-3])
    assert tuning.choose({"source": "k5"}, LABELS, measure) == 1 and calls == [0, 1, 2]


def test_one_candidate_is_not_measured():
    measure, calls = _timer([1.0])
    assert tuning.choose({"source": "k6"}, LABELS[:1], measure) == 0 and calls == []


def test_clear_cache_removes_the_entries():
    tuning.choose({"source": "k7"}, LABELS, _timer([1e-3, 2e-3, 3e-3])[0])
    p = tuning.path(tuning.key({"source": "k7"}, LABELS))
    assert p.exists()
    store.clear_cache()
    assert not p.exists()
    measure, calls = _timer([3e-3, 2e-3, 1e-3])
    assert tuning.choose({"source": "k7"}, LABELS, measure) == 2 and calls == [0, 1, 2]


def test_best_time_runs_eagerly_inside_a_trace():
    """Kernels are chosen while a custom call is lowered: the measurement must run, not be
    staged into the caller's trace (a staged call could not be waited for)."""
    seen, results = [], []
    double = jax.jit(lambda a: (a * 2).sum())

    def fn(a):
        results.append(double(a))
        return results[-1]

    def traced(x):
        seen.append(tuning.best_time(fn, [np.arange(4.0)], repeats=2))
        return x + 1

    assert float(jax.jit(traced)(1.0)) == 2.0
    assert isinstance(seen[0], float) and 0 < seen[0] < 10
    assert len(results) == 3 and not any(isinstance(r, jax.core.Tracer) for r in results)
    assert [float(r) for r in results] == [12.0] * 3


# ---------------------------------------------------------------- the cuda backend


needs_nvrtc = pytest.mark.skipif(nvrtc.status() is not None, reason=f"NVRTC unavailable: {nvrtc.status()}")


def _plan():
    from test_cuda_compile import make_plan

    x, y = np.ones((5, 3), np.float32), np.ones((7, 3), np.float32)
    return make_plan(((-Vi(x).sqdist(Vj(y))).exp(),), "Sum")


def _fake_gpu(monkeypatch, seconds):
    """A pretend device whose k-th candidate takes ``seconds[k]``; the measurements seen."""
    seen = []

    def measure(plan, cfg, arrays, geom):
        seen.append((cfg, [a.shape for a in arrays], geom))
        return seconds[cuda.candidates(plan).index(cfg)]

    set_env(monkeypatch, JAX_LAZY_CUDA_TUNE="1")
    monkeypatch.setattr(cuda, "device_arch", lambda device=None: "sm_90")
    monkeypatch.setattr(cuda, "_device_kind", lambda: "pretend GPU")
    monkeypatch.setattr(cuda, "_multiprocessors", lambda: 4)
    monkeypatch.setattr(cuda, "_measure", measure)
    cuda._choice.cache_clear()
    return seen


@needs_nvrtc
def test_cuda_launch_choice_measures_each_candidate_once(monkeypatch):
    plan = _plan()
    cands = cuda.candidates(plan)
    assert [c.block_threads for c in cands] == [256, 128, 64] and cands[0] == cuda.config(plan)
    seen = _fake_gpu(monkeypatch, [3e-3, 2e-3, 1e-3])
    assert cuda.launch_choice(plan) == cands[2]
    assert [s[0] for s in seen] == list(cands)
    shapes, geom = seen[0][1], seen[0][2]
    assert geom.M == 2 * 4 * 256 and 1024 <= geom.N <= 65536 and geom.N % 256 == 0
    assert shapes == [(geom.M, 3), (geom.N, 3)]
    for cfg in cands:  # every candidate was built (NVRTC): a cubin each
        assert cuda._build(plan, "sm_90", str(np.dtype(index_dtype())), *cuda._switches(), cfg)[:4] == b"\x7fELF"
    # a new process (no in-memory choice) reads it from the kernel cache
    cuda._choice.cache_clear()
    tuning.forget()
    seen.clear()
    assert cuda.launch_choice(plan) == cands[2] and seen == []
    # another device measures anew
    monkeypatch.setattr(cuda, "_device_kind", lambda: "another GPU")
    assert cuda.launch_choice(plan) == cands[2] and len(seen) == 3


def test_cuda_launch_choice_off(monkeypatch):
    seen = _fake_gpu(monkeypatch, [3e-3, 2e-3, 1e-3])
    set_env(monkeypatch, JAX_LAZY_CUDA_TUNE="0")
    plan = _plan()
    assert cuda.launch_choice(plan) == cuda.config(plan) and seen == []


@pytest.mark.skipif(cuda.available() is not None, reason=f"needs a GPU: {cuda.available()}")
def test_cuda_launch_choice_on_the_gpu(monkeypatch):
    """Real measurements: every candidate runs, the fastest is remembered with its timings."""
    set_env(monkeypatch, JAX_LAZY_CUDA_TUNE="1")
    cuda._choice.cache_clear()
    plan = _plan()
    chosen = cuda.launch_choice(plan)
    cands = cuda.candidates(plan)
    assert chosen in cands
    material = {"source": cuda.kernel_source(plan, cuda.device_arch(), cfg=cands[0], idx=str(np.dtype(index_dtype()))),
                "arch": cuda.device_arch(), "device": cuda._device_kind(), "nvrtc": nvrtc.identity()}
    entry = json.loads(tuning.path(tuning.key(material, [cuda._label(c) for c in cands])).read_text())
    assert all(s is not None and 0 < s < 1 for s in entry["seconds"]), entry
    assert cands[entry["choice"]] == chosen and entry["seconds"][entry["choice"]] == min(entry["seconds"])

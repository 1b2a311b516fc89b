"""Launch parameters chosen by measurement: once per kernel and device, then remembered.

A compiled backend offers a few launch configurations of one kernel (different block
sizes; each is a kernel of its own, all computing the same thing). :func:`choose` times
them on synthetic data of a representative size and keeps the fastest. The choice is
remembered in this process and in the kernel cache (:mod:`jax_lazy.store`, a record
``<key[:2]>/<key>.tune.json``), where ``key`` is the sha256 of what the caller says
identifies the kernel and the device, the candidates' labels and the jax_lazy version:
a later process (or a later version, a new device, a new compiler) reads it back without
measuring, or measures again. The entries go with :func:`jax_lazy.clear_cache`.

Measurements run eagerly even when :func:`choose` is called while a function is being
traced (kernels are chosen when a custom call is lowered), inside
``jax.ensure_compile_time_eval()``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from typing import Callable, Sequence

import jax

from .. import store
from ..options import options

FORMAT = 1
REPEATS = 5  # timed runs per candidate, after one untimed run (loading, warming up)
RECORD = "tune.json"  # the extension of the records in the store


def key(material: dict, labels: Sequence[str]) -> str:
    """The entry's key: sha256 of ``material``, the ``labels`` and the jax_lazy version."""
    from .. import __version__

    blob = json.dumps({"material": material, "candidates": list(labels), "version": __version__,
                       "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def path(k: str):
    """Where the entry of key ``k`` lives."""
    return store.path(store.cache_dir(), k, RECORD)


def choose(material: dict, labels: Sequence[str], measure: Callable[[int], float], name: str = "kernel") -> int:
    """The index of the fastest candidate.

    Args:
      material: JSON-serialisable description of the kernel and the device (e.g. the
        source of its default configuration, the target architecture, the device's name).
      labels: one short, stable description per candidate; candidate 0 is the default.
      measure: ``measure(k)`` -> seconds of one run of candidate ``k`` (called once per
        candidate, in order, when there is no remembered choice). An exception means the
        candidate cannot run (compile or launch failure, out of memory): it is skipped.
      name: for ``JAX_LAZY_DUMP`` (which prints every measured choice to stderr).

    Returns:
      An index into ``labels``: the remembered choice, else the fastest measured one.
      When no candidate could be measured, 0, and nothing is remembered (the real call
      then runs the default and raises its own error, if any).
    """
    if len(labels) == 1:
        return 0
    k = key(material, labels)
    with store.key_lock(store.slot(k)):
        found = _read(k, labels)
        if found is None:
            seconds = []
            for c in range(len(labels)):
                try:
                    seconds.append(float(measure(c)))
                except Exception as e:  # noqa: BLE001 - any failure rules the candidate out
                    seconds.append(None)
                    if options().dump:
                        print(f"jax_lazy: {name}: candidate {labels[c]} failed: {e}", file=sys.stderr, flush=True)
            timed = [(s, c) for c, s in enumerate(seconds) if s is not None]
            if not timed:
                return 0
            found = min(timed)[1]
            store.write_record(k, RECORD, {"format": FORMAT, "key": k, "candidates": list(labels), "seconds": seconds,
                                           "choice": found,
                                           "material": {m: v for m, v in material.items() if m != "source"}})
            if options().dump:
                table = ", ".join(f"{lab}: {'failed' if s is None else f'{s * 1e3:.3f} ms'}"
                                  for lab, s in zip(labels, seconds))
                print(f"jax_lazy: {name}: chose {labels[found]} ({table})", file=sys.stderr, flush=True)
        return found


def _read(k: str, labels: Sequence[str]) -> int | None:
    """The remembered choice (this process's, else the cache's), or None when the entry
    is missing or not valid."""
    entry = store.read_record(k, RECORD)
    ok = (entry is not None and entry.get("format") == FORMAT and entry.get("key") == k
          and entry.get("candidates") == list(labels) and isinstance(entry.get("choice"), int)
          and 0 <= entry["choice"] < len(labels))
    return entry["choice"] if ok else None


def best_time(fn: Callable, args: Sequence, repeats: int = REPEATS) -> float:
    """Seconds of the fastest of ``repeats`` runs of ``fn(*args)`` (after one untimed run),
    each waited for with ``block_until_ready``; eager even inside a trace."""
    with jax.ensure_compile_time_eval():
        jax.block_until_ready(fn(*args))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best = min(best, time.perf_counter() - start)
    return best


def forget() -> None:
    """Forget this process's choices (the entries on disk stay)."""
    store.forget(RECORD)

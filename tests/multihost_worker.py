"""One process of the multi-host test (``tests/test_multihost.py`` starts two of them).

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT BACKEND[,BACKEND...]

Each process has 2 CPU devices; together they form one mesh of ``2 * NUM_PROCESSES``
devices (CPU collectives over TCP with gloo, coordinator on 127.0.0.1:PORT). Every process
builds the same global arrays from the same seeded NumPy data, sharded (a) by rows of x
(the output axis i) and (b) by rows of y and b (the reduced axis j), and runs under
``jax.jit`` a Gaussian kernel matvec (Sum), a LogSumExp, Min_ArgMin, ArgKMin (K = 5) and
``jax.grad`` of the Sum w.r.t. x, on each backend named. The results, gathered from every
process, are compared with a dense float64 NumPy oracle: indices exactly, values to
``RTOL``; and the compiled module must not all-gather a split operand whole (each device
reduces its own rows or columns; ``jax_lazy/sharding.py``). Prints ``OK <process_id> <number of checks>`` and exits 0, or prints each
mismatch and exits 1.
"""

from __future__ import annotations

import os
import re
import sys

# Before jax is imported: the number of CPU devices is fixed when its CPU client starts.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from jax_lazy import Vi, Vj  # noqa: E402

M, N, D, K = 96, 160, 3, 5
SIGMA = 0.7
RTOL, ATOL = 1e-5, 1e-6  # float32 against float64; ATOL for the gradient's cancelling terms


def data():
    """The same x (M, D), y (N, D), b (N, 1) float32 in every process."""
    rng = np.random.default_rng(11)
    return (rng.standard_normal((M, D)).astype(np.float32), rng.standard_normal((N, D)).astype(np.float32),
            rng.standard_normal((N, 1)).astype(np.float32))


def reductions(backend):
    """name -> f(x, y, b), each one jax_lazy reduction over j (or the gradient of one)."""
    def gauss(x, y, b):
        k = (-Vi(x).sqdist(Vj(y)) / (2 * SIGMA**2)).exp()
        return (k * Vj(b)).sum(axis=1, backend=backend)

    def grad_x(x, y, b):
        return jax.grad(lambda x: gauss(x, y, b).sum())(x)

    return {
        "sum": gauss,
        "logsumexp": lambda x, y, b: (-Vi(x).sqdist(Vj(y))).logsumexp(axis=1, backend=backend),
        "min_argmin": lambda x, y, b: Vi(x).sqdist(Vj(y)).min_argmin(axis=1, backend=backend),
        "argKmin": lambda x, y, b: Vi(x).sqdist(Vj(y)).argKmin(K, axis=1, backend=backend),
        "grad_x": grad_x,
    }


def oracle(x, y, b):
    """The same quantities, dense, in float64: name -> array or tuple of arrays."""
    x, y, b = (a.astype(np.float64) for a in (x, y, b))
    diff = x[:, None, :] - y[None, :, :]  # (M, N, D)
    d2 = (diff**2).sum(-1)  # (M, N)
    k = np.exp(-d2 / (2 * SIGMA**2))
    f = -d2
    fmax = f.max(1, keepdims=True)
    order = np.argsort(d2, axis=1, kind="stable")
    return {
        "sum": k @ b,
        "logsumexp": fmax + np.log(np.exp(f - fmax).sum(1, keepdims=True)),
        "min_argmin": (d2.min(1, keepdims=True), d2.argmin(1)[:, None]),
        "argKmin": order[:, :K],
        # d/dx_i sum_j k_ij b_j = sum_j k_ij b_j (y_j - x_i) / sigma^2
        "grad_x": -(k[:, :, None] * b[None, :, :] * diff).sum(1) / SIGMA**2,
    }


def global_arrays(mesh, arrays, specs):
    """Global jax.Arrays with the given PartitionSpecs, each process filling its own shards."""
    out = []
    for a, spec in zip(arrays, specs):
        sharding = NamedSharding(mesh, spec)
        out.append(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]))
    return out


def gathered_whole(hlo: str, shapes) -> list:
    """The all-gathers of a compiled module whose result has one of ``shapes`` (a split
    operand gathered back whole: what the sharding rule must avoid)."""
    found = [tuple(int(d) for d in dims.split(",") if d)
             for dims in re.findall(r"= \w+\[([\d,]*)\]\S* all-gather(?:-start)?\(", hlo)]
    return [s for s in found if s in shapes]


def mismatches(name, got, want):
    """Messages for each output of ``name`` that differs from the oracle (empty when equal)."""
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    errors = []
    for g, w in zip(got, want):
        g = np.asarray(g)
        if g.shape != w.shape:
            errors.append(f"{name}: shape {g.shape}, expected {w.shape}")
        elif np.issubdtype(g.dtype, np.integer) and not np.array_equal(g, w):
            errors.append(f"{name}: indices differ at rows {np.flatnonzero((g != w).any(-1))[:10]}")
        elif not np.issubdtype(g.dtype, np.integer) and not np.allclose(g, w, rtol=RTOL, atol=ATOL):
            errors.append(f"{name}: max |error| {np.abs(g - w).max():.3g}, max |value| {np.abs(w).max():.3g}")
    return errors


def main(process_id, num_processes, port, backends):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                               process_id=process_id, initialization_timeout=60, shutdown_timeout_seconds=30)
    n_dev = jax.device_count()
    assert n_dev == 2 * num_processes and jax.local_device_count() == 2, (n_dev, jax.local_devices())
    mesh = jax.make_mesh((n_dev,), ("p",), axis_types=(jax.sharding.AxisType.Auto,))
    host = data()
    want = oracle(*host)
    layouts = {"i-rows": (P("p"), P(), P()), "j-rows": (P(), P("p"), P("p"))}
    errors, checks = [], 0
    for layout, specs in layouts.items():
        args = global_arrays(mesh, host, specs)
        split = {a.shape for a, spec in zip(host, specs) if spec != P()}
        for backend in backends:
            for name, f in reductions(backend).items():
                print(f"checking {layout} {backend} {name}", file=sys.stderr, flush=True)  # where a hang was
                compiled = jax.jit(f).lower(*args).compile()
                got = multihost_utils.process_allgather(compiled(*args), tiled=True)
                errors += mismatches(f"{layout} {backend} {name}", got, want[name])
                errors += [f"{layout} {backend} {name}: a split operand all-gathered whole, {s}"
                           for s in gathered_whole(compiled.as_text(), split)]
                checks += 1
    for e in errors:
        print(f"process {process_id}: {e}", flush=True)
    if not errors:
        print(f"OK {process_id} {checks}", flush=True)
    jax.distributed.shutdown()
    return 1 if errors else 0


if __name__ == "__main__":
    pid, nproc, port, names = sys.argv[1:5]
    sys.exit(main(int(pid), int(nproc), int(port), names.split(",")))

"""The ``cuda`` backend: one generated CUDA kernel per plan, compiled by NVRTC, launched
by the CUDA XLA FFI handler (:mod:`cuda_ffi`).

Parallel scheme (the ABI, launch geometry and batch addressing are fixed by
``kernels/cuda_abi.h``)::

    grid  = (ceil(M / R), min(nbatch, 65535))      block = R threads   (R = block_threads)

- **One thread per output row i.** Block x handles rows ``[x R, x R + R)``; a thread
  past M computes row M - 1 (so that it helps to load the tiles and reaches every
  ``__syncthreads``) and writes nothing. Blocks loop over batch elements with stride
  ``gridDim.y``; input k of batch element b is found from ``a.in_bstride[k]``.
- **Per thread, once per batch element:** the parameters and the row's i-variables are
  loaded (float16 / bfloat16 converted to float32) and everything that depends only on
  them is computed (``codegen`` levels "p" and "i").
- **j in tiles of** ``tile`` **columns:** the block copies the tile's j-variables (row-major
  ``(N, D)``, so the copy is coalesced) into shared memory, converted to the compute type;
  then every thread runs over the tile's columns, reading them from shared memory (all
  the threads of a warp read the same address: a broadcast), computes the j- and
  (i, j)-level statements of the formula (j-level ones are recomputed by every thread)
  and updates its reduction state, which lives in registers (local memory for the
  K-lists of KMin). When the j-variables of one column are too wide for 32 columns per
  48 KiB of shared memory, they are read straight from global memory instead (the same
  address across a warp, cached in L1).
- **Reduction state and update** (the semantics of :mod:`jax_lazy.reductions` and of the
  cpu kernels; the update functions are in ``kernels/prelude_cuda.h``):

  Sum           ``acc += F``, folded into the accumulator once per tile (block summation:
                the float32 rounding error grows like N / tile + tile, not N);
  LogSumExp     online max-shift: running max m and sums s_e = sum_j exp(F_j - m) W_je,
                rescaled when m grows (one exp per pair); out = m + log s; NaN, +inf
                and -inf as jax.nn.logsumexp;
  SumSoftMax    the same with weights (1, W): out0 = s_W / s_1 (NaN where a column is
                +inf, as jax.nn.softmax), out1 = m + log s_1;
  Min family    (value, index) per component, strict ``<`` so ties keep the smaller
                index (columns are visited in increasing order), NaN wins and stays;
                Max runs on -F and negates the values;
  KMin family   a sorted list of K (value, index) per component, in the order of a
                stable argsort (NaN last, ties to the smaller index), insertion only when
                a value goes before the K-th; unfilled slots keep index -1 (as the cpu
                kernels), and there are none once K <= N columns are seen.
                The lists live in local memory: at most ``KMIN_STATE_BYTES`` (16 KiB)
                per thread, BackendError beyond (K > 2048 at D = 1 in float32).

- **Outputs** (per batch element, row-major, exactly :func:`common.out_types`): Sum (M, E),
  LSE (M, Dw), softmax (M, Dw) and (M, 1), Min (M, D) values and indices, KMin (M, K*D)
  with element (q, e) at ``q*D + e``. Indices are int32, or int64 under x64.

**Launch configuration** (:func:`launch_choice`): ``R`` (and the tile width, which
follows from it and shared memory) is baked into the kernel. :func:`candidates` lists
the configurations a plan may use (R = 256, 128, 64; with a stage 128, 64), the default
first; on first use on a device all are compiled and timed (:mod:`tuning`), and the
fastest is remembered in the kernel cache; ``JAX_LAZY_CUDA_TUNE=0`` keeps the default.

**Few rows** (:func:`reduce`): when the grid has fewer than ``BLOCKS_PER_SM`` blocks per
multiprocessor, the j axis is cut into parts that become one more batch axis of the same
launch, and the parts' finalized outputs are merged with :func:`common.merge`.

**Block-sparse ranges** (``plan.ranges``, issue 13; :func:`_ranges_body`,
:func:`cuda_ranges.table`). Before the launch, in JAX (O(R + S + chunks) per batch element of
the ranges), every user index is clamped (rows to [0, M], columns to [0, N], slices to
[0, S], an end before its start is empty) and each row block that keeps a column is cut
into *chunks* of at most R (= block_threads) rows; the table (int32, the input after the
variables, a "parameter" of shape ``(*rb, length)`` so that the handler's batch strides
and broadcasting apply) holds the chunk count, then per chunk (row start, row end, first
and last interval), then the clamped column intervals. Their number has the static bound
R_blocks + ceil(M / R) (disjoint blocks); grid.x is about that bound (``rows_per_block``
= M // chunks, so ceil(M / rows_per_block) >= chunks) and the blocks loop over the chunks
with stride gridDim.x, those past the count doing nothing. A block takes one chunk: its
threads are the chunk's rows (threads past it load its last row and write nothing), and
it runs the dense kernel's tile loop over each column interval of the chunk's block in
turn (same staging, inner-product stage on the chunk's rows, reduction updates, block
summation per tile): the work is the kept blocks' pairs plus at most one partial tile per
interval. Rows the kernel does not write (in no block, or in a block without a kept
column) get the family's empty values from one ``where`` after the call
(:func:`cuda_ranges.fill_empty`); KMin slots beyond a row's kept columns are written (+inf, -1).
Plans without ranges generate the same source as before. The launch configuration is the
dense plan's (:func:`launch_choice`); ranges calls are never split along j.

**Inner-product stage** (at large D x_i would take D registers per thread and spill past
D ~ 100, and scalar FMAs leave the tensor cores idle). The inner products ``x_i | y_j``
and ``sqdist(x_i, y_j)`` of an i- and a j-variable of dim >= ``common.STAGE_MIN_DIM`` (16),
found by :func:`common.inner_products`, are computed per tile *before* the per-column loop,
for the whole block: R = 128 rows (64 where shared memory is short) x ``STAGE_TJ`` = 32
columns, the D components staged through shared memory in chunks (16 for float32
compute, 8 for float64), so no thread holds D values; the R x 32 results go to shared
memory and the per-column loop reads them in place of the node (``Emitter(external=)``:
x and y are then neither loaded per thread nor staged per column, unless the rest of
the formula uses them). Two implementations (``prelude_cuda.h``), chosen per inner
product by :func:`_mma_split`:

  (a) register tiles: each thread accumulates 8 rows x 4 columns with FMAs (float32 or
      float64), as the micro-kernel of an SGEMM. sqdist is computed as written,
      sum (x - y)^2, so close points keep their accuracy (as in the cpu backend);
  (b) tensor cores (sm_80+, dot products of float32 / float16 / bfloat16 data): each
      warp computes 32 rows x 32 columns with ``mma.sync.m16n8k8`` tf32 (f32
      accumulation). float32 uses 3xTF32 (x = hi + lo, hi*hi + hi*lo + lo*hi: float32
      accuracy); float16 / bfloat16 values are exact in tf32, so one mma per step is
      exact in its products (the m16n8k16 f16/bf16 mma would double the rate but needs
      16-bit chunks: not done).

Switches (:mod:`jax_lazy.options`, part of the kernel key):
``JAX_LAZY_CUDA_INNER`` = ``mma`` (default: (b) where it applies, else (a)), ``fma``
((a) only) or ``off`` (no stage: the per-thread loop above, as before the stage);
``JAX_LAZY_CUDA_TF32=1``: plain TF32 for float32 dot products (one mma instead of three;
relative error up to ~1e-3 per inner product, so nearest neighbours may swap).
``JAX_LAZY_CUDA_SQDIST`` = ``fma`` (default: sqdist on register tiles, as written) or
``mma`` (opt-in, where (b) applies: ``|x|^2 + |y|^2 - 2<x, y>`` with the dot product from
the tensor cores, 3xTF32 for float32 whatever ``JAX_LAZY_CUDA_TF32`` says, and the norms
summed in float32 from the staged chunks; the expansion cancels for close points, exactly
the ones KMin and Gaussian kernels care about, so entries with d < n / 16, n = |x|^2 +
|y|^2, or not finite are recomputed as sum (x - y)^2 from global memory: relative error
of the others <= (2 D + 18) 2^-24 16, see ``jl_store_sqdist`` in ``prelude_cuda.h``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import jax
import numpy as np

from ..errors import BackendError
from .. import memo, numerics
from ..options import options
from ..ir import I, J, P
from ..reductions import FAMILIES, KMIN, LSE, MIN, SOFTMAX, SUM, index_dtype
from . import common
from .codegen import Emitter
from .common import inner_products, out_types

SYMBOL = "jax_lazy_kernel"
MAX_INPUTS = 32  # JL_MAX_INPUTS of cuda_abi.h
BLOCK_THREADS = 256  # threads (= rows) per block; 128 when the per-thread state is large
BLOCK_SIZES = (256, 128, 64)  # block sizes measured without a stage (the default first)
BLOCKED_SUM_MAX = 16  # float32 Sums of at most this many components are summed per tile
SMEM_BUDGET = 48 * 1024  # shared memory of one block without the opt-in attribute
_KERNELS = Path(__file__).with_name("kernels")
STAGE_TJ = 32  # columns per tile with a stage (JL_TJ of prelude_cuda.h)
STAGE_ROWS = (128, 64)  # rows (threads) per block with a stage: the first that fits in shared memory
# dtype -> (compute type, JL_STORAGE code, bytes of the compute type)
_TYPES = {"float32": ("float", 32, 4), "float64": ("double", 64, 8),
          "float16": ("float", 16, 4), "bfloat16": ("float", -16, 4)}


def supports(dtype: str) -> str | None:
    """None for float16, bfloat16 (float32 compute), float32 and float64, else why not."""
    if dtype not in _TYPES:
        return f"the cuda backend computes in float16, bfloat16, float32 or float64, not {dtype}"
    return None


def available() -> str | None:
    """None when kernels can be compiled (NVRTC) and run (the CUDA FFI handler, a driver
    and a device, jax with CUDA), else why not."""
    from . import cuda_ffi, nvrtc

    return nvrtc.status() or cuda_ffi.available()


# ---------------------------------------------------------------- launch geometry


@dataclass(frozen=True)
class Config:
    """``block_threads`` threads = rows per block; j-variables staged ``tile`` columns at a
    time through shared memory (``staged`` False: read from global); ``shared_bytes`` in
    all. With an inner-product stage: its ``inners`` (:class:`common.Inner`) and the
    components per ``chunk``."""

    block_threads: int
    tile: int
    staged: bool
    shared_bytes: int
    inners: tuple = ()
    chunk: int = 0

    def stage_offsets(self, width: int) -> tuple[int, int, list[int]]:
        """Offsets (elements of T) of the x chunk, the y chunk and each inner product's
        (rows x tile) results, after ``width`` elements per column of staged j-variables."""
        R, TJ, KC = self.block_threads, self.tile, self.chunk
        xs = TJ * width if self.staged else 0
        yc = xs + KC * (R + 8)
        s0 = yc + KC * (TJ + 8)
        return xs, yc, [s0 + k * R * (TJ + 1) for k in range(len(self.inners))]


def config(plan) -> Config:
    """The default launch configuration of ``plan``'s kernel (the first of
    :func:`candidates`)."""
    return candidates(plan)[0]


def candidates(plan) -> tuple[Config, ...]:
    """The launch configurations that ``plan``'s kernel may be built with, the default
    (a heuristic) first; on a GPU the fastest is measured once (:func:`launch_choice`)."""
    return _scheme(plan, options().cuda_inner)[1]


def _emitter(plan) -> Emitter:
    """The scalarised formulas of ``plan``, less the inner products of the stage."""
    return _scheme(plan, options().cuda_inner)[0]


@memo.lru(memo.KERNELS)
def _scheme(plan, inner: str) -> tuple[Emitter, tuple[Config, ...]]:
    roots = plan.red.roots(plan.formulas)
    size = _TYPES[plan.dtype][2]
    inners = tuple(inner_products(plan, roots)) if inner != "off" else ()
    if inners:
        em = Emitter(roots, _var_name, external=frozenset(p.node for p in inners))
        width = sum(v.dim for v in _used_vars(plan, J, em))  # elements per column, besides the stage
        chunk = 16 if size == 4 else 8
        found = []
        for R in STAGE_ROWS:  # per R, staged j-variables if they fit, else read from global memory
            for staged in ((True, False) if width else (False,)):
                cfg = Config(R, STAGE_TJ, staged, 0, inners, chunk)
                need = cfg.stage_offsets(width)[2][-1] + R * (STAGE_TJ + 1)
                if need * size <= SMEM_BUDGET:
                    found.append(replace(cfg, shared_bytes=need * size))
                    break
        if found:
            return em, tuple(found)
    em = Emitter(roots, _var_name)
    default = BLOCK_THREADS if EMIT[plan.red.family].state(plan) <= 32 else BLOCK_THREADS // 2
    width = sum(v.dim for v in _used_vars(plan, J, em)) * size  # bytes per column
    found = []
    for threads in sorted(BLOCK_SIZES, key=lambda t: t != default):
        tile = threads
        if width * tile > SMEM_BUDGET:
            tile = SMEM_BUDGET // width // 32 * 32
        if tile < 32:  # too wide to stage: read from global memory, fold sums every `threads` columns
            found.append(Config(threads, threads, False, 0))
        else:
            found.append(Config(threads, tile, width > 0, width * tile))
    return em, tuple(found)


def launch_config(plan, geom=None, cfg: Config | None = None) -> tuple[int, int, int]:
    """``(rows_per_block, block_threads, shared_bytes)`` of ``plan``'s kernel built with
    ``cfg`` (default :func:`config`): the attributes of its custom call (they do not
    depend on the sizes ``geom``)."""
    c = cfg or config(plan)
    return c.block_threads, c.block_threads, c.shared_bytes


# ---------------------------------------------------------------- code generation


def _used_vars(plan, cat, em) -> list:
    """The variables of category ``cat`` whose values ``em``'s statements read."""
    used = {n for n in em.order if n.op == "Var"}
    return [v for v in plan.variables if v.attr[1] == cat and v in used]


def _var_name(v, c, row):
    k, cat = v.attr
    return {I: f"x{k}_{c}", J: f"y{k}_{c}", P: f"p{k}_{c}"}[cat]


def prelude(plan, arch: str = "sm_90", idx: str | None = None) -> str:
    """The hand-written part of the source: target, types, ABI, math, reduction updates
    (indices of type ``idx``, "int32" or "int64"; default: :func:`index_dtype`)."""
    ctype, storage, _ = _TYPES[plan.dtype]
    idx = {"int32": "int", "int64": "long long"}[idx or str(np.dtype(index_dtype()))]
    return "\n".join([
        f"// jax_lazy CUDA kernel for {arch}, {plan.dtype} ({ctype} compute)",
        f"#define JL_T {ctype}",
        f"#define JL_STORAGE {storage}",
        *([] if _default_acc(plan) else [f"#define JL_A {_TYPES[plan.dtype_acc][0]}"]),
        f"#define JL_IDX {idx}",
        (_KERNELS / "cuda_abi.h").read_text(),
        (_KERNELS / "prelude_cuda.h").read_text(),
    ])


def kernel_source(plan, arch: str = "sm_90", name: str = SYMBOL, cfg: Config | None = None,
                  idx: str | None = None) -> str:
    """The complete CUDA source of ``plan``'s kernel (canonical j-reduction) with launch
    configuration ``cfg`` (one of :func:`candidates`, default :func:`config`), compiled
    for ``arch`` with no include path; the kernel is ``extern "C"`` ``name``."""
    return prelude(plan, arch, idx) + "\n" + kernel_body(plan, name, arch, cfg)


def kernel_body(plan, name: str = SYMBOL, arch: str = "sm_90", cfg: Config | None = None) -> str:
    """The generated part of the source: the ``__global__`` function ``name`` (with
    ``plan.ranges``, the block-sparse variant: :func:`_ranges_body`)."""
    if len(plan.variables) + plan.ranges > MAX_INPUTS:
        raise BackendError(f"the cuda backend takes at most {MAX_INPUTS - plan.ranges} variables per reduction "
                           f"(JL_MAX_INPUTS{', less the ranges table' if plan.ranges else ''}), "
                           f"this one has {len(plan.variables)}", plan.describe())
    roots = plan.red.roots(plan.formulas)
    em, cfg = _emitter(plan), cfg or config(plan)
    fam = EMIT[plan.red.family].pieces(plan, em, roots)
    outputs = ["IDX" if plan.red.is_index(p) else "S" for p in range(plan.red.family.outputs)]
    R = cfg.block_threads
    head = [
        f"// {plan.describe()}",
        f'extern "C" __global__ void __launch_bounds__({R}) {name}(const jl_cuda_args a) {{',
        *(["  extern __shared__ __align__(16) unsigned char jl_smem[];"
           + (f"  // {cfg.tile} columns of the j-variables" if cfg.staged else "")] if cfg.shared_bytes else []),
        *(["  T* const ys = (T*)jl_smem;"] if cfg.staged else []),
        *_stage_pointers(plan, em, cfg),
    ]
    if plan.ranges:
        return "\n".join(head + _ranges_body(plan, em, cfg, fam, outputs, arch)) + "\n"
    lines = [
        *head,
        f"  const long long i = (long long)blockIdx.x * {R} + threadIdx.x;",
        *(["  const long long row = i < a.M ? i : a.M - 1;  // threads past M help with the tiles, write nothing"]
          if _used_vars(plan, I, em) else []),
        "  for (long long b = blockIdx.y; b < a.nbatch; b += gridDim.y) {",
        *_indent(_pointers(plan, em, outputs), 4),
        *_indent(em.statements("p"), 4),
        *_indent(_loads(plan, em, I, "row"), 4),
        *_indent(em.statements("i", 0), 4),
        *_indent(fam.init, 4),
        *_indent(_tile_loop(plan, em, cfg, fam, arch, _Span.dense(R)), 4),
        "    if (i < a.M) {",
        *_indent(fam.write, 6),
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Span:
    """What one block of a kernel computes, as C++ expressions: rows ``[row0, row_end)``
    (the threads past ``row_end`` load row ``row_end - 1`` and write nothing) reduced over
    the columns ``[j0, j1)``."""

    row0: str
    row_end: str
    j0: str
    j1: str

    @staticmethod
    def dense(R: int) -> "_Span":
        return _Span(f"(long long)blockIdx.x * {R}", "a.M", "0", "a.N")


# ---------------------------------------------------------------- block-sparse ranges (issue 13)


def _ranges_body(plan, em, cfg, fam, outputs, arch) -> list[str]:
    """The block-sparse kernel after its shared-memory pointers: per batch element, the
    blocks take the row chunks of the ranges table (:func:`cuda_ranges.table`, the input after
    the variables) in turn; a chunk's rows reduce over the column intervals of their row
    block only, tile by tile as the dense kernel does. The table is built (and every
    index clamped) in JAX by :func:`cuda_ranges.table`, so the kernel reads it unchecked."""
    t = len(plan.variables)
    span = _Span("jl_r0", "jl_r1", "jl_j0", "jl_j1")
    return [
        "  for (long long b = blockIdx.y; b < a.nbatch; b += gridDim.y) {",
        *_indent(_pointers(plan, em, outputs), 4),
        f"    const int* __restrict__ jl_tab = (const int*)a.in[{t}] + jl_boffset(a, {t}, b);  // cuda_ranges.table",
        "    const int* const jl_chunk = jl_tab + 4;  // (row start, row end, first interval, last + 1)",
        "    const int* const jl_span = jl_chunk + 4 * jl_tab[1];  // the column intervals [j0, j1)",
        *_indent(em.statements("p"), 4),
        "    for (long long jl_c = blockIdx.x; jl_c < jl_tab[0]; jl_c += gridDim.x) {  // one chunk of rows",
        "      const long long jl_r0 = jl_chunk[4 * jl_c], jl_r1 = jl_chunk[4 * jl_c + 1];",
        "      const long long i = jl_r0 + threadIdx.x;",
        *(["      const long long row = i < jl_r1 ? i : jl_r1 - 1;  // threads past the chunk help with the tiles"]
          if _used_vars(plan, I, em) else []),
        *_indent(_loads(plan, em, I, "row"), 6),
        *_indent(em.statements("i", 0), 6),
        *_indent(fam.init, 6),
        "      for (int jl_q = jl_chunk[4 * jl_c + 2]; jl_q < jl_chunk[4 * jl_c + 3]; ++jl_q) {",
        "        const long long jl_j0 = jl_span[2 * jl_q], jl_j1 = jl_span[2 * jl_q + 1];",
        *_indent(_tile_loop(plan, em, cfg, fam, arch, span), 8),
        "      }",
        "      if (i < jl_r1) {",
        *_indent(fam.write, 8),
        "      }",
        "    }",
        "  }",
        "}",
    ]


def _indent(lines, n):
    return [" " * n + s for s in lines]


def _pointers(plan, em, outputs) -> list[str]:
    """This batch element's inputs and outputs, then the parameters' values."""
    lines = []
    for v in plan.variables:
        k = v.attr[0]
        lines.append(f"const S* __restrict__ in{k} = (const S*)a.in[{k}] + jl_boffset(a, {k}, b);")
    for k, ctype in enumerate(outputs):
        lines.append(f"{ctype}* __restrict__ out{k} = ({ctype}*)a.out[{k}] + b * a.out_bstride[{k}];")
    return lines + _loads(plan, em, P, None)


def _loads(plan, em, cat, row) -> list[str]:
    """Parameters (``row`` None) or the i-variables of ``row``, in the compute type."""
    out = []
    for v in _used_vars(plan, cat, em):
        k = v.attr[0]
        at = [str(c) if row is None else f"{row} * {v.dim}" + (f" + {c}" if c else "") for c in range(v.dim)]
        out += [f"const T {_var_name(v, c, 0)} = jl_ld(in{k}, {at[c]});" for c in range(v.dim)]
    return out


def _tile_loop(plan, em, cfg, fam, arch, span: _Span) -> list[str]:
    """The columns ``[span.j0, span.j1)`` in tiles of ``cfg.tile``: stage, then per column
    the formula and the family's update."""
    jvars = _used_vars(plan, J, em)
    stage, column, offset = [], [], 0
    for v in jvars:
        k, d = v.attr[0], v.dim
        if cfg.staged:
            stage.append(f"for (int q = threadIdx.x; q < nt * {d}; q += {cfg.block_threads}) "
                         f"ys[{_plus(offset, 'q')}] = jl_ld(in{k}, jt * {d} + q);")
            column += [f"const T y{k}_{c} = ys[{_plus(offset, f't * {d} + {c}' if c else f't * {d}')}];" for c in range(d)]
            offset += cfg.tile * d
        else:
            column += [f"const T y{k}_{c} = jl_ld(in{k}, j * {d}{f' + {c}' if c else ''});" for c in range(d)]
    if stage:
        stage = ["__syncthreads();  // the previous tile is consumed", *stage]
    inner = [s for k in range(len(cfg.inners)) for s in _inner_stage(plan, cfg, k, arch, span)]
    if stage or inner:
        stage += [*inner, "__syncthreads();  // the tile is loaded"]
    column = [f"const T {em.comps(p.node, 0)[0]} = s{k}[threadIdx.x * {cfg.tile + 1} + t];"
              for k, p in enumerate(cfg.inners)] + column
    return [
        f"for (long long jt = {span.j0}; jt < {span.j1}; jt += {cfg.tile}) {{",
        f"  const int nt = {span.j1} - jt < {cfg.tile} ? (int)({span.j1} - jt) : {cfg.tile};",
        *_indent(stage + fam.tile_begin, 2),
        "  for (int t = 0; t < nt; ++t) {",
        *(["    const long long j = jt + t;"] if fam.uses_j or (jvars and not cfg.staged) else []),
        *_indent(column + em.statements("j") + em.statements("ij", 0) + fam.pair, 4),
        "  }",
        *_indent(fam.tile_end, 2),
        "}",
    ]


# ---------------------------------------------------------------- inner-product stage


def _stage_pointers(plan, em, cfg) -> list[str]:
    """The stage's shared buffers: x and y chunks, then one (rows x tile) result per inner product."""
    if not cfg.inners:
        return []
    xs, yc, ss = cfg.stage_offsets(sum(v.dim for v in _used_vars(plan, J, em)))
    return [f"  T* const xs = (T*)jl_smem + {xs};  // x chunk: {cfg.chunk} x ({cfg.block_threads} + 8)",
            f"  T* const yc = (T*)jl_smem + {yc};  // y chunk: {cfg.chunk} x ({cfg.tile} + 8)",
            *[f"  T* const s{k} = (T*)jl_smem + {o};  // {cfg.block_threads} x ({cfg.tile} + 1): "
              f"{p.kind}(x{p.x.attr[0]}, y{p.y.attr[0]})" for k, (p, o) in enumerate(zip(cfg.inners, ss))]]


def _mma_split(plan, p, arch) -> int:
    """0: inner product ``p`` goes through register tiles (path a); 1 or 3: tensor cores
    with 1xTF32 or 3xTF32 (path b). Tensor cores take the dot products of float32 (3xTF32
    unless ``cuda_tf32``), float16 and bfloat16 (1xTF32: their values are tf32 values, the
    products are exact) on sm_80+. sqdist stays on register tiles: computed as written,
    sum (x - y)^2, it keeps its accuracy for close points, where |x|^2 + |y|^2 - 2<x, y>
    would cancel (the nearest neighbours of KMin, the peaks of a Gaussian kernel), as the
    cpu backend's stage does; unless ``cuda_sqdist`` is "mma": then the expansion with a
    cancellation guard (``jl_store_sqdist``), its dot product always 3xTF32 for float32."""
    cc = int(re.search(r"\d+", arch).group(0))
    opts = options()
    sqdist_off = p.kind == "sqdist" and opts.cuda_sqdist != "mma"
    if opts.cuda_inner != "mma" or plan.dtype == "float64" or cc < 80 or sqdist_off:
        return 0
    half = plan.dtype in ("float16", "bfloat16")
    return 1 if half or (opts.cuda_tf32 and p.kind == "dot") else 3


def _inner_stage(plan, cfg, k, arch, span: _Span) -> list[str]:
    """Inner product ``k`` of the block's rows (``span``) with this tile's columns into
    ``s{k}``: chunks of the components through shared memory, accumulated per thread in
    registers (prelude_cuda.h: ``jl_tile_fma`` / ``jl_tile_mma``)."""
    p, R, KC = cfg.inners[k], cfg.block_threads, cfg.chunk
    D, xk, yk = p.x.dim, p.x.attr[0], p.y.attr[0]
    split = _mma_split(plan, p, arch)
    if split and p.kind == "sqdist":  # the expansion, guarded (prelude_cuda.h: jl_store_sqdist)
        how = f"tensor cores, {split}xTF32, |x|^2 + |y|^2 - 2<x, y> with a cancellation guard"
        acc = [f"float acc[2][{cfg.tile // 8}][4] = {{}};",
               f"float xn = 0.0f, yn = 0.0f;  // |x_row|^2; |y_(jt + threadIdx.x)|^2 in threads < {cfg.tile}"]
        tile = [f"jl_tile_mma<{R}, {KC}, {split}>(acc, xs, yc);", f"jl_stage_norms<{R}, {KC}>(xn, yn, xs, yc);"]
        store = [f"jl_store_mma(s{k}, acc);  // <x, y>",
                 "__syncthreads();  // the last chunk is consumed",
                 f"if (threadIdx.x < {cfg.tile}) yc[threadIdx.x] = yn;  // the column norms, for every thread",
                 "__syncthreads();  // the column norms and s are complete",
                 f"jl_store_sqdist<{R}>(s{k}, yc, xn, in{xk}, in{yk}, {span.row0}, {span.row_end}, jt, nt, {D});"]
    elif split:
        how, acc = f"tensor cores, {split}xTF32", [f"float acc[2][{cfg.tile // 8}][4] = {{}};"]
        tile, store = [f"jl_tile_mma<{R}, {KC}, {split}>(acc, xs, yc);"], [f"jl_store_mma(s{k}, acc);"]
    else:
        how, acc = "register tiles", [f"T acc[8][{cfg.tile // 8}] = {{}};"]
        tile = [f"jl_tile_fma<{R}, {KC}, {'true' if p.kind == 'sqdist' else 'false'}>(acc, xs, yc);"]
        store = [f"jl_store_fma<{R}>(s{k}, acc);"]
    return [
        f"{{  // s{k} = {p.kind}(x{xk}_i, y{yk}_j) over {D} components: {how}",
        *_indent(acc, 2),
        f"  for (int c0 = 0; c0 < {D}; c0 += {KC}) {{",
        "    __syncthreads();  // the previous chunk (or tile) is consumed",
        f"    jl_stage_rows<{R}, {KC}>(xs, in{xk}, {span.row0}, {span.row_end}, {D}, c0);",
        f"    jl_stage_cols<{R}, {KC}>(yc, in{yk}, jt, nt, {D}, c0);",
        "    __syncthreads();  // the chunk is loaded",
        *_indent(tile, 4),
        "  }",
        *_indent(store, 2),
        "}",
    ]


def _plus(offset: int, expr: str) -> str:
    return f"{offset} + {expr}" if offset else expr


@dataclass
class _Pieces:
    """What a reduction family adds to the kernel: state declarations, per-tile and
    per-pair updates, and the writes of row i (outputs: S values, IDX indices)."""

    init: list
    pair: list
    write: list
    tile_begin: list = ()
    tile_end: list = ()
    uses_j: bool = False  # the update needs the column index j

    def __post_init__(self):
        self.tile_begin, self.tile_end = list(self.tile_begin), list(self.tile_end)


_UNROLL = "#pragma unroll"  # constant indices keep the state arrays in registers


def _array(name, comps, ctype="T"):
    return f"const {ctype} {name}[{len(comps)}] = {{{', '.join(comps)}}};"


def _sum(plan, em, roots):
    """The Sum's accumulators (:mod:`jax_lazy.numerics`): kahan_scheme, a compensated
    running sum per component (acc, acc_k: no blocks needed); block_sum of float32 (E <=
    BLOCKED_SUM_MAX), a partial sum per tile added to acc; else (float64 or a float64
    accumulator, direct_sum, wide E) acc += F per pair, in A."""
    (F,) = roots
    E = F.dim
    t = "T" if _default_acc(plan) else "A"
    write = [_UNROLL, f"for (int e = 0; e < {E}; ++e) jl_st(out0, i * {E} + e, {_cast(t)}acc[e]);"]
    if plan.sum_scheme == "kahan_scheme":
        return _Pieces(
            init=[f"A acc[{E}] = {{}}; A acc_k[{E}] = {{}};  // compensated sums and their errors"],
            pair=[f"jl_kadd(acc[{e}], acc_k[{e}], (A)({c}));" for e, c in enumerate(em.comps(F, 0))],
            write=[_UNROLL, f"for (int e = 0; e < {E}; ++e) jl_st(out0, i * {E} + e, (T)jl_total(acc[e], acc_k[e]));"],
        )
    if t == "A" or plan.dtype == "float64" or E > BLOCKED_SUM_MAX or plan.sum_scheme == "direct_sum":  # plain accumulation
        return _Pieces(
            init=[f"{t} acc[{E}] = {{}};"],
            pair=[f"acc[{e}] += {_cast(t)}{_paren(t, c)};" for e, c in enumerate(em.comps(F, 0))],
            write=write,
        )
    return _Pieces(
        init=[f"T acc[{E}] = {{}};"],
        tile_begin=[f"T part[{E}] = {{}};  // this tile's partial sums (block summation)"],
        pair=[f"part[{e}] += {c};" for e, c in enumerate(em.comps(F, 0))],
        tile_end=[_UNROLL, f"for (int e = 0; e < {E}; ++e) acc[e] += part[e];"],
        write=write,
    )


def _default_acc(plan) -> bool:
    """Whether ``plan`` accumulates in the compute type T (else in A: ``JL_A``)."""
    return plan.dtype_acc == numerics.compute_dtype(plan.dtype)


def _cast(t) -> str:
    return "(T)" if t == "A" else ""


def _paren(t, c) -> str:
    return f"({c})" if t == "A" else c


def _lse(plan, em, roots, write):
    """LogSumExp and SumSoftMaxWeight: the state (m, s), s in A, with its error s_k under
    kahan_scheme (prelude: ``jl_lse_update_acc``); ``write(Dw, value)``: the family's
    outputs from it (``value(e)``: the sum s_e)."""
    F, W = roots
    Dw = W.dim
    f = em.comps(F, 0)[0]
    if _default_acc(plan) and plan.sum_scheme != "kahan_scheme":
        return _Pieces(
            init=["T m = -jl_inf();", f"T s[{Dw}] = {{}};"],
            pair=[_array("w", em.comps(W, 0)), f"jl_lse_update<{Dw}>(m, s, {f}, w);"],
            write=write(Dw, lambda e: f"s[{e}]"),
        )
    kahan = plan.sum_scheme == "kahan_scheme"
    return _Pieces(
        init=["T m = -jl_inf();", f"A s[{Dw}] = {{}};" + (f" A s_k[{Dw}] = {{}};" if kahan else "")],
        pair=[_array("w", em.comps(W, 0)),
              f"jl_lse_update_acc<{Dw}, {'true' if kahan else 'false'}>(m, s, {'s_k' if kahan else 's'}, {f}, w);"],
        write=write(Dw, (lambda e: f"jl_total(s[{e}], s_k[{e}])") if kahan else (lambda e: f"s[{e}]")),
    )


def _lse_write(Dw, value):
    return [_UNROLL, f"for (int e = 0; e < {Dw}; ++e) jl_st(out0, i * {Dw} + e, m + jl_log({value('e')}));"]


def _softmax_write(Dw, value):
    """Weights (1, W): the softmax average and the log-sum-exp."""
    return [_UNROLL, f"for (int e = 1; e < {Dw}; ++e) jl_st(out0, i * {Dw - 1} + e - 1, "
            f"m == jl_inf() ? jl_nan() : {value('e')} / {value(0)});  // a +inf column: NaN, as jax.nn.softmax",
            f"jl_st(out1, i, m + jl_log({value(0)}));"]


def _min(plan, em, roots):
    (F,) = roots
    D, sign = F.dim, common.value_sign(plan)
    return _Pieces(
        init=[f"T mv[{D}]; IDX mk[{D}];", _UNROLL, f"for (int e = 0; e < {D}; ++e) {{ mv[e] = jl_inf(); mk[e] = -1; }}"],
        pair=[_array("f", em.comps(F, 0)), f"jl_min_update<{D}>(mv, mk, f, (IDX)j);"],
        uses_j=True,
        write=[_UNROLL, f"for (int e = 0; e < {D}; ++e) {{ jl_st(out0, i * {D} + e, {sign}mv[e]); out1[i * {D} + e] = mk[e]; }}"],
    )


KMIN_STATE_BYTES = 16 * 1024  # most bytes of K-lists per thread (local memory), see _kmin


def _kmin(plan, em, roots):
    """Each thread keeps D sorted lists of K (value, index) in local memory, and the driver
    reserves a thread's local memory for every thread the GPU can hold (~270,000 on an
    H100: 16 KiB each is 4.3 GB; the limit per thread is 512 KiB). Past
    :data:`KMIN_STATE_BYTES` (e.g. K > 2048 at D = 1 in float32): BackendError."""
    (F,) = roots
    D, K, sign = F.dim, plan.k, common.value_sign(plan)
    state = D * K * (_TYPES[plan.dtype][2] + np.dtype(index_dtype()).itemsize)
    if state > KMIN_STATE_BYTES:
        raise BackendError(
            f"the cuda kernel of {plan.red.name} keeps K * D = {K} * {D} (value, index) pairs per thread: "
            f"{state} bytes of local memory, more than cuda.KMIN_STATE_BYTES = {KMIN_STATE_BYTES}; "
            "use a smaller K (or D), or backend='cpu' or 'jnp'", plan.describe())
    value = f"kv[e * {K} + q]"
    if plan.ranges:  # a row of fewer than K kept columns ends in (+inf, -1): Family.empty
        value = f"(kk[e * {K} + q] < 0 ? jl_inf() : {value})"
    return _Pieces(
        init=[f"T kv[{D * K}]; IDX kk[{D * K}];  // component e: entries [e*K, e*K + K), sorted",
              f"for (int q = 0; q < {D * K}; ++q) {{ kv[q] = jl_nan(); kk[q] = -1; }}"],
        pair=[_array("f", em.comps(F, 0)), f"jl_kmin_update<{D}, {K}>(kv, kk, f, (IDX)j);"],
        uses_j=True,
        write=[f"for (int q = 0; q < {K}; ++q) for (int e = 0; e < {D}; ++e) {{",
               f"  jl_st(out0, (i * {K} + q) * {D} + e, {sign}{value});",
               f"  out1[(i * {K} + q) * {D} + e] = kk[e * {K} + q];",
               "}"],
    )


@dataclass(frozen=True)
class _Emit:
    """A family in the cuda backend: its kernel pieces ``(plan, emitter, roots) ->
    _Pieces``, and ``state(plan)``, the registers of its per-thread state (the default
    block size halves past 32)."""

    pieces: object
    state: object


EMIT = {
    SUM: _Emit(_sum, lambda plan: plan.formulas[0].dim),
    LSE: _Emit(partial(_lse, write=_lse_write), lambda plan: plan.formulas[1].dim + 2),
    SOFTMAX: _Emit(partial(_lse, write=_softmax_write), lambda plan: plan.formulas[1].dim + 2),
    MIN: _Emit(_min, lambda plan: 2 * plan.formulas[0].dim),
    KMIN: _Emit(_kmin, lambda plan: 2 * plan.formulas[0].dim * plan.k),
}
assert set(EMIT) == set(FAMILIES), "a reduction family has no cuda kernel pieces"


# ---------------------------------------------------------------- building


def build(plan, arch: str = "sm_90", cfg: Config | None = None) -> bytes:
    """The cubin (``sm_XX``) or PTX (``compute_XX``) of ``plan``'s kernel with launch
    configuration ``cfg`` (default :func:`config`), from the persistent cache or compiled
    by NVRTC. Raises BackendError (no NVRTC, unknown arch) or CompileError (with NVRTC's
    log and the path of the saved source)."""
    return _build(plan, arch, str(np.dtype(index_dtype())), *_switches(), cfg or config(plan))


def _switches() -> tuple[str, bool, str]:
    """The options that change the source (the memo tables below are keyed by them)."""
    opts = options()
    return opts.cuda_inner, opts.cuda_tf32, opts.cuda_sqdist


@memo.lru(memo.KERNELS)
def _build(plan, arch, idx, inner, tf32, sqdist, cfg):  # all of these change the source (idx: the x64 flag)
    from .. import compilers

    source = kernel_source(plan, arch, cfg=cfg, idx=idx)
    return compilers.build_cubin(plan.red.name, source, arch, formula=plan.describe())


# ---------------------------------------------------------------- running


def device_arch(device=None) -> str:
    """What to compile for on ``device`` (default: the first CUDA device): ``sm_XY`` when
    this NVRTC knows compute capability X.Y, else PTX for the newest architecture it
    knows (``compute_ZW``), which the driver compiles for the device."""
    from . import nvrtc

    device = device or jax.devices("cuda")[0]
    major, minor = (int(c) for c in str(device.compute_capability).split("."))
    cc = 10 * major + minor
    known = nvrtc.supported_archs()
    if cc in known:
        return f"sm_{cc}"
    older = [a for a in known if a <= cc]
    if not older:
        raise BackendError(f"NVRTC {nvrtc.version()} cannot compile for compute capability {major}.{minor}")
    return f"compute_{max(older)}"


def kernel_key(plan, arch: str | None = None, cfg: Config | None = None) -> str:
    """Build (or fetch) ``plan``'s kernel with launch configuration ``cfg`` (default
    :func:`config`) for ``arch`` (default :func:`device_arch`) and register it with the
    CUDA FFI handler; returns its key (the cache key, which the custom call carries)."""
    return _kernel_key(plan, arch or device_arch(), str(np.dtype(index_dtype())), *_switches(), cfg or config(plan))


@memo.lru(memo.KERNELS)
def _kernel_key(plan, arch, idx, inner, tf32, sqdist, cfg):
    from .. import compilers
    from . import cuda_ffi

    image, key = compilers.build_cubin_keyed(plan.red.name, kernel_source(plan, arch, cfg=cfg, idx=idx), arch,
                                         formula=plan.describe())
    return cuda_ffi.load_kernel(image, key)


# ---------------------------------------------------------------- launch configuration by measurement


def launch_choice(plan) -> Config:
    """The launch configuration ``plan``'s kernel runs with: the fastest of
    :func:`candidates` on this device, measured once per kernel and device and remembered
    in the kernel cache (:mod:`tuning`); the default (:func:`config`) when
    ``JAX_LAZY_CUDA_TUNE=0`` or when there is only one candidate."""
    if plan.ranges:  # the same formula and configurations: the dense kernel's measurement
        return launch_choice(replace(plan, ranges=False))
    cands = candidates(plan)
    if not options().cuda_tune or len(cands) == 1:
        return cands[0]
    return _choice(plan, device_arch(), _device_kind(), str(np.dtype(index_dtype())), *_switches())


def _device_kind() -> str:
    """The name of the first CUDA device ("NVIDIA H100 80GB HBM3")."""
    return jax.devices("cuda")[0].device_kind


def _label(cfg: Config) -> str:
    return f"{cfg.block_threads} threads, {cfg.tile}-column tiles" + (", staged" if cfg.staged else "")


@memo.lru(memo.KERNELS)
def _choice(plan, arch, device, idx, inner, tf32, sqdist) -> Config:
    from concurrent.futures import ThreadPoolExecutor

    from . import nvrtc, tuning

    cands = _scheme(plan, inner)[1]
    material = {"source": kernel_source(plan, arch, cfg=cands[0], idx=idx), "arch": arch, "device": device,
                "nvrtc": nvrtc.identity()}
    state = {}

    def measure(c):
        if not state:  # compile every candidate at once (NVRTC runs outside the GIL), then the inputs
            with ThreadPoolExecutor(len(cands)) as pool:
                state["built"] = list(pool.map(
                    lambda cfg: _catch(_build, plan, arch, idx, inner, tf32, sqdist, cfg), cands))
            state["inputs"] = _tuning_inputs(plan, cands)
        if isinstance(state["built"][c], Exception):
            raise state["built"][c]
        return _measure(plan, cands[c], *state["inputs"])

    found = tuning.choose(material, [_label(c) for c in cands], measure, name=plan.describe())
    return cands[found]


def _catch(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - reported by the candidate's measurement
        return e


TUNE_WORK = 2 ** 34  # statements per measurement: about 1 to 10 ms on an H100


def _tuning_inputs(plan, cands):
    """A geometry that fills the GPU twice over with the largest candidate block, with N
    chosen so that one run takes ~``TUNE_WORK`` statements, and random inputs for it."""
    import jax.numpy as jnp

    em = _emitter(plan)
    cost = 1 + len(em.statements("j")) + len(em.statements("ij", 0)) + sum(p.x.dim for p in cands[0].inners)
    rows = max(c.block_threads for c in cands)
    M = 2 * _multiprocessors() * rows
    N = int(np.clip(TUNE_WORK // (M * cost), 1024, 65536)) // 256 * 256
    dtype = jnp.dtype(plan.dtype)
    with jax.ensure_compile_time_eval():
        keys = jax.random.split(jax.random.key(0), len(plan.variables))
        sizes = {I: (M,), J: (N,), P: ()}
        arrays = [jax.random.normal(k, sizes[v.attr[1]] + (v.dim,), dtype) for k, v in zip(keys, plan.variables)]
    from ..plan import Geometry

    return arrays, Geometry((), M, N, dtype)


def _measure(plan, cfg, arrays, geom) -> float:
    """Seconds of one launch of ``plan``'s kernel built with ``cfg`` over ``geom``."""
    from . import tuning

    return tuning.best_time(jax.jit(lambda *a: _call(plan, a, geom, cfg)), arrays)


RANGES = True  # block-sparse reductions (tests/test_ranges_backends.py): see _ranges_body


def reduce(plan, arrays, geom, ranges=None):
    """Run ``plan`` through its CUDA kernel; same contract as :func:`jnp.reduce`.

    When the grid has too few blocks to fill the GPU (M small, e.g. one query), the j axis
    is cut into parts that become an extra batch axis of the same launch, and the parts'
    finalized outputs are merged with :func:`common.merge`. With ``plan.ranges``,
    ``ranges`` is the plan's triplet ``(ranges_i, slices_i, redranges_j)`` (int32,
    ``(*rb, R, 2)``, ``(*rb, R)``, ``(*rb, S, 2)``; contract: ``tests/test_ranges_backends.py``)
    and one launch of the block-sparse kernel computes the kept blocks only.
    """
    return common.reduce(plan, arrays, geom, supports=supports, split_count=_split_count, call=_call,
                         ranges=ranges)


SPLIT_COLUMNS = 2048  # fewest columns per part of a split j axis
BLOCKS_PER_SM = 4  # blocks per multiprocessor that a launch should provide


def _multiprocessors() -> int:
    """Streaming multiprocessors of the first CUDA device (132 on an H100 SXM)."""
    return getattr(jax.devices("cuda")[0], "core_count", None) or 100


def _split_count(plan, geom) -> int:
    sms = _multiprocessors()
    rows_per_block = launch_choice(plan).block_threads
    blocks = int(np.prod(geom.batch, dtype=np.int64)) * -(-geom.M // rows_per_block)
    if blocks >= BLOCKS_PER_SM * sms:
        return 1
    return int(min(geom.N // max(SPLIT_COLUMNS, plan.k or 0), -(-BLOCKS_PER_SM * sms // max(blocks, 1))))


def _call(plan, arrays, geom, cfg: Config | None = None, ranges=None):
    """One launch of ``plan``'s kernel over ``geom``, built with ``cfg`` (default
    :func:`launch_choice`); with ``ranges`` (the plan's triplet), the block-sparse kernel
    over the ranges table, then the rows it does not compute filled with the family's
    empty values."""
    from . import cuda_ffi, cuda_ranges

    cfg = cfg or launch_choice(plan)
    rows, threads, shared = launch_config(plan, geom, cfg)
    cats = [v.attr[1] for v in plan.variables]
    if ranges is not None:
        table, covered, chunks = cuda_ranges.table(ranges, geom.M, geom.N, threads)
        arrays, cats = [*arrays, table], [*cats, P]  # the table: an int32 "parameter" (*rb, length)
        rows = max(1, geom.M // max(chunks, 1))  # grid.x = ceil(M / rows) >= chunks (when M >= chunks)
    outs = cuda_ffi.call(kernel_key(plan, cfg=cfg), arrays, cats, out_types(plan, geom), geom.batch, geom.M, geom.N,
                         rows_per_block=rows, block_threads=threads, shared_bytes=shared)
    outs = common.finalized(plan, geom, outs)
    return outs if ranges is None else cuda_ranges.fill_empty(plan, geom, outs, covered)

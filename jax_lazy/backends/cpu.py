"""The ``cpu`` backend: generated C++ kernels run as XLA FFI custom calls.

Each plan becomes one C++ function (``jax_lazy_kernel``, the ABI of
``xla_ffi/cpu_handler.cc``) that computes output rows ``[i0, i1)`` of one batch element.
The native FFI handler spreads (batch, row-chunk) work units over a thread pool; the
kernel itself processes ``R`` rows at a time (each loaded j value is reused R times),
runs the loop over j with ``#pragma omp simd`` (the formula is scalarised by
:mod:`codegen`, so each lane is one j) and keeps the reduction state in registers:

  Sum           fused: ``acc += F`` in the simd loop, folded every block of up to
                1024 columns (block summation: the float32 rounding error grows like
                N / block + block / lanes instead of N / lanes);
  others        F of ``LANES`` columns goes to a small buffer (L1), then the reduction
                updates its state: LogSumExp/SoftMax rescale once per chunk (one exp
                per pair), Min/ArgMin keep one (value, index) per lane, KMin keeps a
                sorted list per row (insertion only when a value goes before the K-th).
                Special values: those of :mod:`jax_lazy.reductions`.

j-variables are passed transposed, ``(*b, D, N)``, so that lanes load contiguously.

Two stages keep wide formulas fast (:class:`_Staging`). The *j-stage* computes, once per
block of columns, the j-level values the rows read (j-variables included) into an
L1-sized buffer, so the row loop reads one buffer at constant offsets instead of
recomputing them per row block. The *inner-product stage* computes the products
``x_i | y_j`` and distances ``sqdist(x_i, y_j)`` of dim >= common.STAGE_MIN_DIM in register
tiles (STAGE_ROWS rows x two vectors of columns, accumulated over the components, as
in the micro-kernel of a matrix product) before the rest of the formula; they are
computed exactly as written (no |x|^2 + |y|^2 - 2<x, y> expansion), so the results
do not lose accuracy for close points. Component loops of large-D nodes that read no
lane-level scalar (:attr:`codegen.Emitter.outer`) run before the lane loop with the
lanes innermost (:func:`_outer_loop`).

Block-sparse plans (``plan.ranges``, issue 13) run the same body for each row block of
the ranges, over its column intervals only (:mod:`cpu_ranges`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .. import memo, numerics
from ..errors import BackendError
from ..ir import I, J, P
from ..reductions import FAMILIES, KMIN, LSE, MIN, SOFTMAX, SUM, index_dtype
from . import common
from . import cpu_ranges
from .codegen import INNER_LOOP_MIN_DIM, LOOP_MIN_DIM, Emitter, elem_vars
from .cpu_acc import Acc
from .common import inner_products, out_types


LANES = 64  # columns per chunk of the buffered reductions
RANGES = True  # block-sparse reductions (Plan.ranges): tests/test_ranges_backends.py
_PRELUDE = Path(__file__).with_name("kernels") / "prelude_cpu.h"
_CTYPES = {"float32": "float", "float64": "double"}


def available():
    """None when the native module and its FFI handler are there, else why not. Kernels
    also need a C++ compiler, or to be in the kernel cache already: see :func:`missing`."""
    from .._native_loader import load_native, native_error

    native = load_native()
    if native is None:
        return f"the native module jax_lazy._native is missing ({native_error()}); reinstall jax_lazy"
    if not hasattr(native, "cpu_handler"):
        return "the native module was built without the XLA FFI CPU handler; reinstall jax_lazy"
    return None


def missing(plan) -> str | None:
    """None when ``plan``'s kernel can be had: a C++ compiler is there, or the kernel is in
    the cache already (then it is loaded now); else why not (memoised per plan)."""
    from .. import compilers

    if compilers.find_compiler() is not None:
        return None
    return _not_cached(_compute_plan(plan), str(np.dtype(index_dtype())))


@memo.lru(memo.KERNELS)
def _not_cached(plan, index_type: str) -> str | None:
    try:
        _kernel_key(plan, index_type)
    except BackendError as e:
        return e.message
    return None


def limitation() -> str | None:
    """What this machine lacks to compile new kernels (for :func:`jax_lazy.doctor`)."""
    from .. import compilers

    problem = compilers.compiler_problem()
    return problem and f"only kernels already in the cache: {problem}"


def supports(dtype: str) -> str | None:
    """None for float16, bfloat16 (float32 compute), float32 and float64, else why not."""
    if numerics.compute_dtype(dtype) not in _CTYPES:
        return f"the cpu backend computes in float16, bfloat16, float32 or float64, not {dtype}"
    return None


def _compute_plan(plan):
    """The plan whose kernel runs ``plan``: itself, or for float16 / bfloat16 data the same
    plan in float32 (one kernel for the three dtypes; :func:`reduce` converts)."""
    compute = numerics.compute_dtype(plan.dtype)
    return plan if compute == plan.dtype else replace(plan, dtype=compute)


# ---------------------------------------------------------------- code generation


def _emitter(plan) -> Emitter:
    """The scalarised formulas of ``plan``, less the inner products of the stage."""
    rts = plan.red.roots(plan.formulas)
    return Emitter(rts, _var_name, external=frozenset(p.node for p in inner_products(plan, rts)),
                   loop_min_dim=LOOP_MIN_DIM, inner_loop_min_dim=INNER_LOOP_MIN_DIM, var_elem=_var_elem)


STAGE_ROWS = 4  # rows of one register tile of the inner-product stage


def _rows_per_block(em: Emitter) -> int:
    """Rows processed together: more rows reuse each loaded j value more, but need more
    registers. The cost proxy is the number of scalars computed per (row, lane)."""
    cost = sum(_cost(em, n) for n in em.order if em.levels[n] == "ij")
    return 8 if cost <= 12 else 4 if cost <= 48 else 2 if cost <= 160 else 1


def _cost(em, n) -> int:
    """Scalars of ``n`` live at once per (row, lane): one for a node computed component by
    component in a loop, except a looped root (its state and buffers hold every component)."""
    return 1 if (n in em.looped and n not in em.roots) or n in em.loop_sums else n.dim


def _var_name(v, c, row):
    k, cat = v.attr
    return {I: f"x{k}_r{row}_{c}", J: f"y{k}_{c}", P: f"p{k}_{c}"}[cat]


def _var_elem(v, idx, row):
    """Component ``idx`` (a C++ expression) of a variable, read in a loop (j-variables are
    transposed: ``(D, N)``; ``j`` is the column)."""
    k, cat = v.attr
    return {I: f"in{k}[row{row} * {v.dim} + {idx}]", J: f"in{k}[{idx} * N + j]", P: f"in{k}[{idx}]"}[cat]


def _prologue(plan, em, outputs) -> list[str]:
    lines = []
    for v in plan.variables:
        lines.append(f"const T* __restrict in{v.attr[0]} = (const T*)in_[{v.attr[0]}];")
    for k, ctype in enumerate(outputs):
        lines.append(f"{ctype}* __restrict out{k} = ({ctype}*)out_[{k}];")
    for v in plan.variables:
        if v.attr[1] == P and v not in em.loop_vars:
            lines += [f"const T p{v.attr[0]}_{c} = in{v.attr[0]}[{c}];" for c in range(v.dim)]
    return lines + em.statements("p")


def _row_setup(plan, em, R) -> list[str]:
    lines = []
    for r in range(R):
        lines.append(f"const int64_t row{r} = jl_min64(ib + {r}, i1 - 1);")
        for v in plan.variables:
            if v.attr[1] == I and v in em.ids and v not in em.loop_vars:  # read by loops or the stage only: not loaded
                k = v.attr[0]
                lines += [f"const T x{k}_r{r}_{c} = in{k}[row{r} * {v.dim} + {c}];" for c in range(v.dim)]
        lines += em.statements("i", r)
    return lines


def _lane_body(plan, em, R, sink) -> list[str]:
    """Loads of column ``j``, then the formula for each row; ``sink(r)`` consumes it."""
    lines = []
    for v in plan.variables:
        if v.attr[1] == J and v not in em.loop_vars:
            k = v.attr[0]
            lines += [f"const T y{k}_{c} = in{k}[{c} * N + j];" for c in range(v.dim)]
    return lines + em.statements("j") + _rows_interleaved(em, R, [sink(r) for r in range(R)])


def _indent(lines, n):
    return [" " * n + s for s in lines]


def kernel_source(plan) -> str:
    """The complete C++ source of ``plan``'s kernel (canonical j-reduction)."""
    roots = plan.red.roots(plan.formulas)
    em = _emitter(plan)
    R = _rows_per_block(em)
    idx_ctype = {np.dtype("int32"): "int32_t", np.dtype("int64"): "int64_t"}[np.dtype(index_dtype())]
    outputs = ["IDX" if plan.red.is_index(p) else "T" for p in range(plan.red.family.outputs)]
    decl, body = EMIT[plan.red.family](plan, em, roots, R)
    inner = [*_prologue(plan, em, outputs), *decl, *(cpu_ranges.blocks(plan, body) if plan.ranges else body)]
    lines = [
        f"// jax_lazy kernel: {plan.describe()}{' (block-sparse ranges)' if plan.ranges else ''}",
        f"#define JL_T {_CTYPES[plan.dtype]}",
        *([f"#define JL_A {_CTYPES[plan.dtype_acc]}"] if plan.dtype_acc != numerics.compute_dtype(plan.dtype) else []),
        f"#define JL_IDX {idx_ctype}",
        _PRELUDE.read_text(),
        *(_two_pass(inner) if any(n.op in ("Sin", "Cos", "SinXDivX") for n in em.order) else _one_pass(inner)),
    ]
    return "\n".join(lines) + "\n"


_SIGNATURE = "(const void* const* in_, void* const* out_, int64_t M, int64_t N, int64_t i0, int64_t i1)"


def _one_pass(inner) -> list[str]:
    return ['extern "C" void jax_lazy_kernel(const void* const* in_, void* const* out_,',
            "                                int64_t M, int64_t N, int64_t i0, int64_t i1) {",
            "  (void)M;", *_indent(inner, 2), "}"]


def _two_pass(inner) -> list[str]:
    """A kernel with sin or cos: the body runs with the fast range reduction, every simd
    loop or-ing into ``jl_big`` whether an argument was past its range, and again with
    the exact reduction (slower) only then (prelude_cpu.h: jl_sin_k)."""
    inner = [s.replace("#pragma omp simd", "#pragma omp simd reduction(|: jl_big)") for s in inner]
    return [
        "#define jl_sin(x) jl_sin_k<JL_EXACT>((x), jl_big)",
        "#define jl_cos(x) jl_cos_k<JL_EXACT>((x), jl_big)",
        "template <bool JL_EXACT>",
        f"static int jl_kernel{_SIGNATURE} {{",
        "  (void)M;",
        "  int jl_big = 0;",
        *_indent(inner, 2),
        "  return jl_big;",
        "}",
        f'extern "C" void jax_lazy_kernel{_SIGNATURE} {{',
        "  if (jl_kernel<false>(in_, out_, M, N, i0, i1)) jl_kernel<true>(in_, out_, M, N, i0, i1);",
        "}",
    ]


def _row_loop(plan, em, R, inner) -> list[str]:
    return [f"for (int64_t ib = i0; ib < i1; ib += {R}) {{", *_indent(_row_setup(plan, em, R) + inner, 2), "}"]


@dataclass
class _Staging:
    """What the lane loop of a kernel reads from buffers rather than computes: the
    j-stage values (``jbuf``, see :func:`_jstage`), the inner products of the stage
    (``sbuf``, see :func:`_stage`) and the component-loop Sums (``lbuf``, see
    :meth:`sum_loops`), for blocks of ``jblock`` columns."""

    plan: object
    em: Emitter
    R: int
    jblock: int
    inners: list
    slots: list
    sums: list

    @classmethod
    def make(cls, plan, em, roots, R, jblock=None):
        inners = inner_products(plan, roots)
        slots = list(dict.fromkeys([c for p in inners for c in em.comps(p.y, None)] + _slots(em, roots)))
        sums = [n for n in em.order if n in em.outer and n in em.loop_sums]
        return cls(plan, em, R, jblock or _jstage_block(len(slots), plan.dtype), inners, slots, sums)

    def buffers(self) -> list[str]:
        sizes = {"jbuf": len(self.slots), "sbuf": len(self.inners) * self.R}
        if self.sums:
            sizes["lbuf"] = len(self.sums) * self.R
        return [
            "jl_buffer " + ", ".join(f"{name}_({max(1, n) * self.jblock})" for name, n in sizes.items()) + ";",
            *[f"T* __restrict {name} = {name}_.p;" for name in sizes],
        ]

    def sum_loops(self) -> list[str]:
        """The Sums over components that read no lane-level scalar, for the rows of the
        block: ``lbuf[(k * R + r) * jblock + w]``, the components outermost and the lanes
        innermost (one vectorised sweep per component: see :func:`_outer_loop`)."""
        lines = []
        for k, n in enumerate(self.sums):
            at = lambda r, k=k: f"lbuf[{(k * self.R + r) * self.jblock} + w]"  # noqa: E731
            lines += [f"for (int w = 0; w < nw; ++w) {{ {' '.join(f'{at(r)} = T(0);' for r in range(self.R))} }}",
                      *_outer_loop(self.em, n, self.R, lambda r, e, at=at: f"{at(r)} += {e};")]
        return lines

    def jstage(self, lo="0", hi="nw") -> list[str]:
        return _jstage(self.plan, self.em, self.slots, self.jblock, lo, hi)

    def stage(self) -> list[str]:
        return _stage(self.inners, self.R, self.slots, self.jblock)

    def lanes(self, sinks) -> list[str]:
        """Body of the loop over ``w < nw``: loads from the buffers, then the rows."""
        loads = {name: f"jbuf[{k * self.jblock} + w]" for k, name in enumerate(self.slots)}
        for k, n in enumerate(self.sums):
            loads.update({self.em.comps(n, r)[0]: f"lbuf[{(k * self.R + r) * self.jblock} + w]" for r in range(self.R)})
        for k, p in enumerate(self.inners):
            loads.update({self.em.comps(p.node, r)[0]: f"sbuf[{(k * self.R + r) * self.jblock} + w]"
                          for r in range(self.R)})
        column = ["const int64_t j = jb + w;"] if any(v.attr[1] == J for v in elem_vars(self.em)) else []
        return column + _with_loads(_rows_interleaved(self.em, self.R, sinks), loads)


def _sum_kernel(plan, em, roots, R):
    """Fused Sum. The j axis is cut in blocks; for each block a *j-stage* computes the
    j-level values the (row, lane) part reads (see :func:`_jstage`) into a small buffer,
    once for all rows; then every row block of [i0, i1) sweeps the block (inner products
    first, see :func:`_stage`), and each block's partial sums are added to the output
    rows (block summation)."""
    (F,) = roots
    E = F.dim
    ac = Acc.of(plan, E)
    st = _Staging.make(plan, em, roots, R)
    if _outer_root(em, F):  # per component: a simd sweep over the lanes, its sum added to the output
        decl = []
        sums = [f"s{r}" for r in range(R)]
        inner = _outer_loop(em, F, R, lambda r, e: ac.add(f"s{r}", e),
                            pre=[ac.decl(sums)],
                            post=[f"if (ib + {r} < i1) {ac.fold(ac.out(f'(ib + {r}) * {E} + c'), f's{r}')}"
                                  for r in range(R)],
                            clause=f" reduction(+: {', '.join(ac.names(sums))})")
    elif F in em.looped:  # E partial sums per row in arrays, the lanes in turn (no simd reduction over E names)
        parts = [f"part{r}" for r in range(R)]
        decl = _scratch(plan, [(ac.type(), n, E) for n in ac.names(parts)])
        sinks = [_store(em, F, r, lambda e, r=r: f"part{r}[{e}]", stmt=ac.add) for r in range(R)]
        inner = [
            *st.stage(),
            *[f"for (int c = 0; c < {E}; ++c) {n}[c] = {ac.type()}(0);" for n in ac.names(parts)],
            "for (int w = 0; w < nw; ++w) {",
            *_indent(st.lanes(sinks), 2),
            "}",
            *[f"if (ib + {r} < i1) for (int c = 0; c < {E}; ++c) "
              f"{ac.fold(ac.out(f'(ib + {r}) * {E} + c'), f'part{r}[c]')}" for r in range(R)],
        ]
    else:
        decl = []
        parts = [f"part{r}_{e}" for r in range(R) for e in range(E)]
        sinks = [[ac.add(f"part{r}_{e}", c) for e, c in enumerate(em.comps(F, r))] for r in range(R)]
        inner = [
            *st.stage(),
            *st.sum_loops(),
            ac.decl(parts),
            f"#pragma omp simd reduction(+: {', '.join(ac.names(parts))})",
            "for (int w = 0; w < nw; ++w) {",
            *_indent(st.lanes(sinks), 2),
            "}",
            *[f"if (ib + {r} < i1) {{ {' '.join(ac.fold(ac.out(f'(ib + {r}) * {E} + {e}'), f'part{r}_{e}') for e in range(E))} }}"
              for r in range(R)],
        ]
    if plan.ranges and _packable(em, roots, st):
        return [*decl, *st.buffers()], [*ac.setup(), *cpu_ranges.packed(st, _row_loop(plan, em, R, inner)), *ac.finish()]
    return [*decl, *st.buffers()], [
        *ac.setup(),
        *cpu_ranges.columns(plan, st.jblock),
        *_indent(st.jstage(), 2),
        *_indent(_row_loop(plan, em, R, inner), 2),
        "}",
        *ac.finish(),
    ]


def _packable(em, roots, st) -> bool:
    """Whether the lane loop of a kernel can read its columns from the j-stage buffer
    only (no j-variable read by pointer at column jb + w, no loop run before the lanes):
    then :func:`cpu_ranges.packed` may put unrelated columns side by side in that buffer."""
    outer = any(_outer_root(em, f) for f in roots)
    return not (outer or st.sums or any(v.attr[1] == J for v in elem_vars(em)))


JSTAGE_BYTES = 32 * 1024  # the j-stage buffer of a block: about the size of L1


def _jstage_block(nslots: int, dtype: str) -> int:
    """Columns per j block: a power of two in [64, 1024] whose j-stage buffer fits
    :data:`JSTAGE_BYTES` where possible."""
    size = np.dtype(dtype).itemsize
    cols = JSTAGE_BYTES // max(1, nslots * size)
    return int(min(1024, max(64, 1 << max(0, cols.bit_length() - 1))))


def _slots(em, roots) -> list[str]:
    """Names of the j-level scalars that the (row, lane) part reads: components of the
    j-level arguments of (i, j)-level nodes, and of j-level roots."""
    nodes = [a for n in em.order if em.levels[n] == "ij" and n not in em.looped for a in em.reads(n)
             if em.levels[a] == "j"]
    for f in roots:  # a looped root: the sink's loop reads its frontier
        nodes += [a for a in em.frontier(f) if em.levels[a] == "j"] if f in em.looped else [f] * (em.levels[f] == "j")
    return list(dict.fromkeys(c for n in dict.fromkeys(nodes) for c in em.comps(n, None)))


def _jstage(plan, em, slots, jblock, lo="0", hi="nw") -> list[str]:
    """The j-stage of a block: the j-level statements once per column (not once per
    row block and column), their results stored as ``jbuf[slot * jblock + w]``, so that
    the row loop reads one buffer at constant offsets (column jb + w for w in [lo, hi)). j-variables that are slots
    themselves are copied by a loop over their components (no code per component: at
    D = 1000 that keeps the kernel small and its compile short)."""
    where = {name: k for k, name in enumerate(slots)}
    copied = [v for v in plan.variables if v.attr[1] == J and em.comps(v, None)[0] in where]
    computed = [n for n in em.order if em.levels[n] == "j" and n.op != "Var" and n not in em.looped]
    loaded = [v for v in plan.variables if v.attr[1] == J and any(v in em.reads(n) for n in computed)]
    copies = {c for v in copied for c in em.comps(v, None)}
    stores = [(where[name], name) for name in slots if name not in copies]
    lines = []
    for v in copied:
        k, base = v.attr[0], where[em.comps(v, None)[0]]
        lines += [
            f"for (int c = 0; c < {v.dim}; ++c) {{",
            "  #pragma omp simd",
            f"  for (int w = {lo}; w < {hi}; ++w) jbuf[({base} + c) * {jblock} + w] = in{k}[c * N + jb + w];",
            "}",
        ]
    if stores:
        loads = [f"const T y{v.attr[0]}_{c} = in{v.attr[0]}[{c} * N + j];" for v in loaded for c in range(v.dim)]
        lines += [
            "#pragma omp simd",
            f"for (int w = {lo}; w < {hi}; ++w) {{",
            "  const int64_t j = jb + w;",
            *_indent(loads + em.statements("j"), 2),
            *[f"  jbuf[{k * jblock} + w] = {name};" for k, name in stores],
            "}",
        ]
    return lines


def _rows_interleaved(em, R, sinks) -> list[str]:
    """The (row, lane) statements of R rows, the k-th statement of every row in turn
    (the rows' programs have the same shape): each j-level value is used R times
    in a row while it is in a register, as in the micro-kernel of a matrix product."""
    per_row = [em.statements("ij", r) + sinks[r] for r in range(R)]
    return [s for group in zip(*per_row) for s in group]


_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")


def _with_loads(stmts, loads: dict) -> list[str]:
    """``stmts`` with each value of ``loads`` (name -> expression) loaded just before
    its first use."""
    out, loaded = [], set()
    for s in stmts:
        for name in _IDENT.findall(s):
            if name in loads and name not in loaded:
                loaded.add(name)
                out.append(f"const T {name} = {loads[name]};")
        out.append(s)
    return out


def _stage(inners, R, slots, jblock) -> list[str]:
    """The inner-product stage of a row block: ``sbuf[(k * R + r) * jblock + w]`` = inner
    product k of row r and column jb + w. A register tile of STAGE_ROWS rows and two
    vectors of columns is accumulated over the components (each loaded y vector is used
    by every row of the tile, each x component by both vectors), as in the micro-kernel
    of a matrix product; the rest of the formula then reads the results."""
    lines = []
    for k, p in enumerate(inners):
        D, xk, base = p.x.dim, p.x.attr[0], slots.index(f"y{p.y.attr[0]}_0")
        for r0 in range(0, R, STAGE_ROWS):
            rows = range(r0, min(R, r0 + STAGE_ROWS))
            if p.kind == "dot":
                update = lambda r: f"a{r}_0 += xv * y0; a{r}_1 += xv * y1;"  # noqa: E731
            else:
                update = lambda r: f"const jl_vec d0 = xv - y0, d1 = xv - y1; a{r}_0 += d0 * d0; a{r}_1 += d1 * d1;"  # noqa: E731
            lines += [
                "for (int w0 = 0; w0 < nw; w0 += 2 * JL_VW) {",
                "  jl_vec " + ", ".join(f"a{r}_{h} = jl_vzero()" for r in rows for h in (0, 1)) + ";",
                f"  for (int c = 0; c < {D}; ++c) {{",
                f"    const T* yc = jbuf + ({base} + c) * {jblock} + w0;",
                "    const jl_vec y0 = jl_vload(yc), y1 = jl_vload(yc + JL_VW);",
                *[f"    {{ const T xv = in{xk}[row{r} * {D} + c]; {update(r)} }}" for r in rows],
                "  }",
                *[f"  jl_vstore(sbuf + {(k * R + r) * jblock} + w0, a{r}_0); "
                  f"jl_vstore(sbuf + {(k * R + r) * jblock} + w0 + JL_VW, a{r}_1);" for r in rows],
                "}",
            ]
    return lines


STACK_BYTES = 64 * 1024  # scratch arrays of a kernel call up to this size live on the stack
MAX_SCRATCH_BYTES = 1 << 30  # larger per-thread scratch (KMin with a huge K * D): BackendError


def _scratch(plan, arrays) -> list[str]:
    """Declarations of the per-call arrays ``(ctype, name, size)`` ("T" or "IDX"): on the
    stack when they total at most :data:`STACK_BYTES`, else on the heap (``jl_array``):
    a worker thread's stack is a few MiB (8 at most), less than KMin's R * D * K
    (value, index) pairs or Min's buffers at large D. Past :data:`MAX_SCRATCH_BYTES`
    per thread, BackendError (no kernel that might fail to allocate is built)."""
    size = {"T": np.dtype(plan.dtype).itemsize, "A": np.dtype(plan.dtype_acc).itemsize,
            "IDX": np.dtype(index_dtype()).itemsize}
    total = sum(n * size[ctype] for ctype, _, n in arrays)
    if total > MAX_SCRATCH_BYTES:
        raise BackendError(
            f"the cpu kernel of this {plan.red.name} reduction needs {total / 2**30:.1f} GiB of scratch "
            f"per thread ({', '.join(f'{name}[{n}]' for _, name, n in arrays)}), more than the "
            f"{MAX_SCRATCH_BYTES // 2**30} GiB limit (cpu.MAX_SCRATCH_BYTES); use a smaller K or D",
            plan.describe())
    if total <= STACK_BYTES:
        return [f"alignas(64) {ctype} {name}[{n}];" for ctype, name, n in arrays]
    return [f"jl_array<{ctype}> {name}_({n}); {ctype}* __restrict {name} = {name}_.p;" for ctype, name, n in arrays]


def _buffered(plan, em, roots, R, update, state=()) -> list[str]:
    """Chunks of LANES columns: the formula values go to fb[r][e][w] (weights to wb), then
    ``update(col)`` (``col``: the column of lane w, a C++ expression) updates the state;
    ``state``: the reduction's own arrays ``(ctype, name, size)`` (see :func:`_scratch`).
    A ranges kernel packs the pieces of narrow column intervals in one chunk where it can
    (:func:`cpu_ranges.packed`)."""
    F = roots[0]
    dims = [f.dim for f in roots]
    arrays = [("T", "fb", R * dims[0] * LANES)]
    if len(roots) > 1:
        arrays.append(("T", "wb", R * dims[1] * LANES))
    decl = _scratch(plan, arrays + list(state))

    stores = [(f, _lane_slot(buf, f.dim)) for f, buf in zip(roots, ("fb", "wb"))]

    def sink(r):
        return [s for f, at in stores if not _outer_root(em, f) for s in _store(em, f, r, at(r))]

    st = _Staging.make(plan, em, roots, R, jblock=LANES)
    if plan.ranges and _packable(em, roots, st):
        decl += [*st.buffers(), f"alignas(64) IDX jl_col[{LANES}];"]
        lanes = [*st.stage(), "#pragma omp simd", "for (int w = 0; w < nw; ++w) {",
                 *_indent(st.lanes([sink(r) for r in range(R)]), 2), "}"]
        return decl, cpu_ranges.packed(st, lanes + update("jl_col[w]"), indices=True)
    if st.inners or st.sums:  # j-stage, inner products and Sum loops per chunk, then the rest of the formula
        decl += st.buffers()
        lanes = [*st.jstage(), *st.stage(), *st.sum_loops(), "#pragma omp simd", "for (int w = 0; w < nw; ++w) {",
                 *_indent(st.lanes([sink(r) for r in range(R)]), 2), "}"]
    elif not all(_outer_root(em, f) for f in roots):
        lanes = ["#pragma omp simd", "for (int w = 0; w < nw; ++w) {", "  const int64_t j = jb + w;",
                 *_indent(_lane_body(plan, em, R, sink), 2), "}"]
    else:
        lanes = []
    for f, at in stores:  # roots looped over their components: lanes innermost
        if _outer_root(em, f):
            lanes += _outer_loop(em, f, R, lambda r, e, at=at: f"{at(r)('c')} = {e};")
    chunk = [
        *cpu_ranges.columns(plan, LANES),
        *_indent(lanes, 2),
        *_indent(update("jb + w"), 2),
        "}",
    ]
    return decl, chunk


def _lane_slot(buf, dim):
    """``at(r)(e)``: where component e (an int, or a C++ index expression) of row r's value
    of dim ``dim`` goes in ``buf``, for lane w."""
    def at(r):
        return lambda e: slot(r * dim, e)

    def slot(base, e):
        if isinstance(e, int):
            return f"{buf}[{(base + e) * LANES} + w]"
        return f"{buf}[({base} + {e}) * {LANES} + w]"
    return at


def _outer_root(em, f) -> bool:
    """Whether root ``f`` is a vector computed by :func:`_outer_loop` (not by the lane loop)."""
    return f in em.outer and f in em.looped


def _outer_loop(em, node, R, sink, pre=(), post=(), clause="") -> list[str]:
    """A node of :attr:`Emitter.outer` for the R rows of a block, the components
    outermost: for each component c, one ``#pragma omp simd`` sweep over the lanes
    w < nw (column j = jb + w: the j-variables are (D, N), so the loads are contiguous)
    gives ``sink(r, expr)`` each row's value. (The other nesting, a component loop inside
    the lane loop, is vectorised by GCC over the components, with strided loads: ~10x
    slower per pair than unrolled statements.) ``pre``/``post``: statements around
    the sweep, per component; ``clause``: more of the simd pragma (a reduction)."""
    rows = []
    for r in range(R):
        body, expr = em.element(node, r)
        rows.append("{ " + " ".join(body + [sink(r, expr)]) + " }")
    dim = node.args[0].dim if node in em.loop_sums else node.dim
    return [
        f"for (int c = 0; c < {dim}; ++c) {{",
        *_indent(pre, 2),
        f"  #pragma omp simd{clause}",
        "  for (int w = 0; w < nw; ++w) {",
        "    const int64_t j = jb + w;",
        *_indent(rows, 4),
        "  }",
        *_indent(post, 2),
        "}",
    ]


def _store(em, f, r, at, op="=", stmt=None) -> list[str]:
    """Statements ``at(e) op F_e`` (or ``stmt(at(e), F_e)``) for each component e of root
    ``f`` (row ``r``): one per component, or a loop over them when ``f`` is looped."""
    stmt = stmt or (lambda target, expr: f"{target} {op} {expr};")
    if f in em.looped:
        body, expr = em.loop(f, r)
        return [f"for (int c = 0; c < {f.dim}; ++c) {{ {' '.join(body)} {stmt(at('c'), expr)} }}"]
    return [stmt(at(e), c) for e, c in enumerate(em.comps(f, r))]


def _lse_kernel(plan, em, roots, R, write):
    """LogSumExp and SumSoftMaxWeight: the state (m, s) per row, rescaled once per chunk
    (with its error twin under kahan, :class:`~jax_lazy.backends.cpu_acc.Acc`); ``write(R, Dw, value)``: the
    family's outputs from it (``value(r, e)``: the sum s_e of row r)."""
    Dw = roots[1].dim
    ac = Acc.of(plan)
    sums = [[f"s{r}_{e}" for e in range(Dw)] for r in range(R)]
    init = [f"T m{r} = -jl_inf();" for r in range(R)]
    init += [ac.decl(sums[r]) for r in range(R)]
    update = []
    for r in range(R):
        f0, w0 = r * LANES, r * Dw * LANES
        parts = [f"q{e}" for e in range(Dw)]
        update += [
            "{",
            "  T cmax = -jl_inf();",
            "  #pragma omp simd reduction(max: cmax)",
            f"  for (int w = 0; w < nw; ++w) cmax = fb[{f0} + w] > cmax ? fb[{f0} + w] : cmax;",
            f"  if (cmax > m{r}) {{ const T sc = jl_exp(m{r} - cmax); "
            + " ".join(f"{n} *= sc;" for n in ac.names(sums[r])) + f" m{r} = cmax; }}",
            # every chunk adds its terms: a NaN (which the max skips) makes s NaN for good
            "  " + ac.decl(parts),
            f"  #pragma omp simd reduction(+: {', '.join(ac.names(parts))})",
            "  for (int w = 0; w < nw; ++w) {",
            f"    const T ex = jl_exp_shift(fb[{f0} + w], m{r});",
            *[f"    {ac.add(f'q{e}', f'ex * wb[{w0 + e * LANES} + w]')}" for e in range(Dw)],
            "  }",
            "  " + " ".join(ac.fold(f"s{r}_{e}", f"q{e}") for e in range(Dw)),
            "}",
        ]
    decl, chunk = _buffered(plan, em, roots, R, lambda col: update)
    return decl, _row_loop(plan, em, R, init + chunk + write(R, Dw, lambda r, e: ac.value(f"s{r}_{e}")))


def _lse_write(R, Dw, value):
    return [f"if (ib + {r} < i1) {{ " + " ".join(
        f"out0[(ib + {r}) * {Dw} + {e}] = m{r} + jl_log({value(r, e)});" for e in range(Dw)) + " }" for r in range(R)]


def _softmax_write(R, Dw, value):
    """Weights (1, W): out0 = s_W / s_1, out1 = m + log s_1."""
    return [f"if (ib + {r} < i1) {{ " + " ".join(
        f"out0[(ib + {r}) * {Dw - 1} + {e - 1}] = m{r} == jl_inf() ? jl_nan() : {value(r, e)} / {value(r, 0)};"
        for e in range(1, Dw))
        + f" out1[ib + {r}] = m{r} + jl_log({value(r, 0)}); }}" for r in range(R)]


def _min_kernel(plan, em, roots, R):
    D = roots[0].dim
    size = R * D * LANES
    init = [f"for (int q = 0; q < {size}; ++q) {{ mv[q] = jl_inf(); mk[q] = (IDX)-1; }}"]
    update = lambda col: [  # noqa: E731
        f"for (int re = 0; re < {R * D}; ++re) {{",
        "  #pragma omp simd",
        "  for (int w = 0; w < nw; ++w) {",
        f"    const T f = fb[re * {LANES} + w]; const int q = re * {LANES} + w;",
        "    // NaN wins (it propagates); on ties the earlier column, already in the lane, stays",
        "    const bool take = mk[q] < 0 || (f != f ? mv[q] == mv[q] : f < mv[q]);",
        "    mv[q] = take ? f : mv[q];",
        f"    mk[q] = take ? (IDX)({col}) : mk[q];",
        "  }",
        "}",
    ]
    sign = common.value_sign(plan)
    lanes = f"(r * {D} + e) * {LANES}"
    if plan.ranges:  # few columns per row: this reduction of the lanes runs as often as the updates
        pick = ["T bv; IDX bk;", f"jl_lanes_min<{LANES}>(mv + {lanes}, mk + {lanes}, (IDX)N, bv, bk);"]
    else:
        pick = [
            "T bv = jl_inf(); IDX bk = (IDX)-1;",
            f"for (int w = 0; w < {LANES}; ++w) {{",
            f"  const int q = {lanes} + w;",
            "  if (mk[q] < 0) continue;",
            "  const bool nq = mv[q] != mv[q], nb = bv != bv;",
            "  if (bk < 0 || (nq || nb ? nq && (!nb || mk[q] < bk) : mv[q] < bv || (mv[q] == bv && mk[q] < bk))) {",
            "    bv = mv[q]; bk = mk[q];",
            "  }",
            "}",
        ]
    write = [
        f"for (int r = 0; r < {R}; ++r) {{",
        "  if (ib + r >= i1) break;",
        f"  for (int e = 0; e < {D}; ++e) {{",
        *_indent(pick, 4),
        f"    out0[(ib + r) * {D} + e] = {sign}bv; out1[(ib + r) * {D} + e] = bk;",
        "  }",
        "}",
    ]
    decl, chunk = _buffered(plan, em, roots, R, update, state=[("T", "mv", size), ("IDX", "mk", size)])
    return decl, _row_loop(plan, em, R, init + chunk + write)


def _kmin_kernel(plan, em, roots, R):
    D, K = roots[0].dim, plan.k
    size = R * D * K
    init = [f"for (int q = 0; q < {size}; ++q) {{ kv[q] = jl_nan(); kk[q] = (IDX)-1; }}"]
    # The order of a stable argsort (prelude: jl_kbefore): a candidate enters when it goes
    # before the K-th entry, and after equal values (columns come in increasing order).
    update = lambda col: [  # noqa: E731
        f"for (int re = 0; re < {R * D}; ++re) {{",
        f"  T* v = kv + re * {K}; IDX* k = kk + re * {K};",
        "  for (int w = 0; w < nw; ++w) {",
        f"    const T f = fb[re * {LANES} + w];",
        f"    if (!jl_kbefore(f, v[{K - 1}], k[{K - 1}])) continue;",
        f"    int p = {K - 1};",
        "    while (p > 0 && jl_kbefore(f, v[p - 1], k[p - 1])) { v[p] = v[p - 1]; k[p] = k[p - 1]; --p; }",
        f"    v[p] = f; k[p] = (IDX)({col});",
        "  }",
        "}",
    ]
    sign = common.value_sign(plan)
    value = f"kv[(r * {D} + e) * {K} + q]"
    if plan.ranges:  # a row may have fewer than K columns: its unfilled slots (index -1) are +inf
        value = f"(kk[(r * {D} + e) * {K} + q] < 0 ? jl_inf() : {value})"
    write = [
        f"for (int r = 0; r < {R}; ++r) {{",
        "  if (ib + r >= i1) break;",
        f"  for (int e = 0; e < {D}; ++e) for (int q = 0; q < {K}; ++q) {{",
        f"    out0[((ib + r) * {K} + q) * {D} + e] = {sign}{value};",
        f"    out1[((ib + r) * {K} + q) * {D} + e] = kk[(r * {D} + e) * {K} + q];",
        "  }",
        "}",
    ]
    decl, chunk = _buffered(plan, em, roots, R, update, state=[("T", "kv", size), ("IDX", "kk", size)])
    return decl, _row_loop(plan, em, R, init + chunk + write)


# The kernel body of each family: (plan, emitter, roots, rows per block) -> C++ lines
# (declarations: the per-call scratch; body: the rows [i0, i1) over the columns of
# :func:`_columns`), after the prologue, which declares the outputs: T values, IDX indices.
EMIT = {
    SUM: _sum_kernel,
    LSE: partial(_lse_kernel, write=_lse_write),
    SOFTMAX: partial(_lse_kernel, write=_softmax_write),
    MIN: _min_kernel,
    KMIN: _kmin_kernel,
}
assert set(EMIT) == set(FAMILIES), "a reduction family has no cpu kernel emitter"


# ---------------------------------------------------------------- running


def kernel_key(plan) -> tuple[str, int]:
    """Build (or fetch from the cache) and load ``plan``'s kernel: (its key, which the
    custom call carries, rows per block). The source also depends on the index type
    (int32, or int64 under x64)."""
    return _kernel_key(plan, str(np.dtype(index_dtype())))


@memo.lru(memo.KERNELS)
def _kernel_key(plan, index_type: str) -> tuple[str, int]:
    from .. import compilers

    source = kernel_source(plan)
    R = _rows_per_block(_emitter(plan))
    return compilers.build_and_load(plan.red.name, source, formula=plan.describe()), R


def reduce(plan, arrays, geom, ranges=None):
    """Run ``plan`` through its compiled kernel; same contract as :func:`jnp.reduce`.

    When there are too few output rows to keep every thread busy (e.g. M = 1), the j
    axis is cut into parts that become an extra batch axis (one launch, threads over the
    parts) and the parts' finalized outputs are merged (:func:`common.merge`).
    ``ranges``: with ``plan.ranges``, the block-sparse triplet ``(ranges_i, slices_i,
    redranges_j)`` (int32 ``(*rb, R, 2)``, ``(*rb, R)``, ``(*rb, S, 2)``; contract:
    ``tests/test_ranges_backends.py``), run in one launch of the ranges kernel.
    """
    compute = _compute_plan(plan)
    if compute is plan:
        return common.reduce(plan, arrays, geom, supports=supports, split_count=_split_count, call=_call,
                             ranges=ranges)
    # float16 / bfloat16: read in, computed, accumulated and merged in float32, stored in
    # the data's dtype (as the cuda kernels' jl_ld / jl_st). The conversions are XLA's,
    # fused around the custom call: O((M + N) D) against the kernel's O(M N).
    f32 = [a.astype(compute.dtype) for a in arrays]
    outs = common.reduce(compute, f32, replace(geom, dtype=jnp.dtype(compute.dtype)), supports=supports,
                         split_count=_split_count, call=_call, ranges=ranges)
    return tuple(o if plan.red.is_index(p) else o.astype(plan.dtype) for p, o in enumerate(outs))


SPLIT_COLUMNS = 4096  # fewest columns per part of a split j axis


def _split_count(plan, geom) -> int:
    from .._native_loader import load_native

    threads = load_native().num_threads()
    rows = int(np.prod(geom.batch, dtype=np.int64)) * geom.M
    blocks = -(-rows // kernel_key(plan)[1])  # the kernel is needed anyway: R comes with it
    if threads < 2 or blocks >= 4 * threads:
        return 1
    return int(min(geom.N // max(SPLIT_COLUMNS, plan.k or 0), -(-4 * threads // max(blocks, 1))))


def _call(plan, arrays, geom, ranges=None):
    """One launch of ``plan``'s kernel over ``geom`` (with ``ranges``: see :func:`reduce`)."""
    from . import ffi

    key, R = kernel_key(plan)
    # j-variables go transposed, (*b, D, N): the lanes of the simd loop load contiguously.
    ins = [jnp.swapaxes(a, -1, -2) if v.attr[1] == J and v.dim > 1 else a for v, a in zip(plan.variables, arrays)]
    cats = [v.attr[1] for v in plan.variables]
    if plan.ranges:
        packed = cpu_ranges.packed_input(plan, ranges)
        geom = replace(geom, batch=tuple(np.broadcast_shapes(geom.batch, packed.shape[:-1])))
        ins.append(packed)
        cats.append(P)  # one int32 vector per batch element: the handler slices it as a parameter
    outs = ffi.call(key, ins, cats, out_types(plan, geom), geom.batch, geom.M, geom.N, row_block=R)
    return common.finalized(plan, geom, outs)

"""Random formulas, data and reductions for the fuzz gate (``test_fuzz.py``), with their
independent float64 NumPy oracle and dense ``jax.numpy`` gradient reference.

A *tree* is a nested tuple: ``("leaf", k)`` (k = 0: the i-variable ``a``, 1: the
j-variable ``b``, 2: the parameter ``c``), ``("un", name, child)`` or
``("bin", name, left, right)``. The same tree is built twice: as a LazyArray formula
(``build``) and as a dense array expression over ``(..., M, N, d)`` operands
(``dense``), with ``numpy`` (values) or ``jax.numpy`` (gradients). Every op below keeps
values of moderate size (|v| ~ 10 at most for the drawn inputs), so float32 and float64
agree to rounding. A test that fails prints the case (``Case.__repr__``): paste it into a
named regression test in ``test_fuzz.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import oracle as o

# ---------------------------------------------------------------- ops
# name -> (lazy builder, dense reference (xp, *x), differentiable everywhere it is sampled)


def _relu(xp, x):
    return xp.where(x > 0, x, xp.where(x != x, x, 0.0))  # NaN stays NaN, relu(-0) = +0, relu(-inf) = 0


def _step(xp, x):
    return o.as01(xp, x >= 0)  # step(NaN) = 0, as (x >= 0).astype(float)


UNARY = {
    "neg": (lambda x: -x, lambda xp, x: -x),
    "abs": (abs, lambda xp, x: xp.abs(x)),
    "sin": (lambda x: x.sin(), lambda xp, x: xp.sin(x)),
    "cos": (lambda x: x.cos(), lambda xp, x: xp.cos(x)),
    "gauss": (lambda x: (-x.square()).exp(), lambda xp, x: xp.exp(-x * x)),
    "exp_sin": (lambda x: x.sin().exp(), lambda xp, x: xp.exp(xp.sin(x))),
    "square": (lambda x: x.square(), lambda xp, x: x * x),
    "relu": (lambda x: x.relu(), _relu),
    "log1p_sq": (lambda x: (x.square() + 1).log(), lambda xp, x: xp.log(x * x + 1)),
    "sqrt1": (lambda x: (abs(x) + 1).sqrt(), lambda xp, x: xp.sqrt(xp.abs(x) + 1)),
    "rational": (lambda x: x / (x.square() + 1), lambda xp, x: x / (x * x + 1)),
    "clamp": (lambda x: x.clamp(-0.5, 0.5), lambda xp, x: xp.clip(x, -0.5, 0.5)),
    "sign": (lambda x: x.sign(), lambda xp, x: xp.sign(x)),
    "step": (lambda x: x.step(), _step),
    "vsum": (lambda x: x.sum(-1), lambda xp, x: o.vsum(xp, x)),
    "sqnorm": (lambda x: x.sqnorm2(), lambda xp, x: o.sqnorm2(xp, x)),
    "elem0": (lambda x: x.elem(0), lambda xp, x: x[..., 0:1]),
}
VECTOR_OUT_1 = {"vsum", "sqnorm", "elem0"}  # ops whose output has dim 1

BINARY = {
    "add": (lambda a, b: a + b, lambda xp, a, b: a + b),
    "sub": (lambda a, b: a - b, lambda xp, a, b: a - b),
    "mul": (lambda a, b: a * b, lambda xp, a, b: a * b),
    "div1": (lambda a, b: a / (b.square() + 1), lambda xp, a, b: a / (b * b + 1)),
    "dot": (lambda a, b: a | b, lambda xp, a, b: o.dot(xp, a, b)),
    "sqdist": (lambda a, b: a.sqdist(b), lambda xp, a, b: o.sqnorm2(xp, a - b)),
    "lt": (lambda a, b: a < b, lambda xp, a, b: o.as01(xp, a < b)),
}
SAME_DIM = {"dot", "sqdist"}  # binary ops that need equal dims (others: equal or one is 1)


def dim_of(tree, dims) -> int:
    kind = tree[0]
    if kind == "leaf":
        return dims[tree[1]]
    if kind == "un":
        return 1 if tree[1] in VECTOR_OUT_1 else dim_of(tree[2], dims)
    name, l, r = tree[1:]
    if name in SAME_DIM:
        return 1
    return max(dim_of(l, dims), dim_of(r, dims))


def leaves(tree) -> set:
    if tree[0] == "leaf":
        return {tree[1]}
    return set().union(*(leaves(t) for t in tree[2:]))


def fix_dims(tree, dims):
    """The tree with ``vsum`` inserted where a binary op's operand dims do not match."""
    if tree[0] == "leaf":
        return tree
    if tree[0] == "un":
        return ("un", tree[1], fix_dims(tree[2], dims))
    name, l, r = tree[1], fix_dims(tree[2], dims), fix_dims(tree[3], dims)
    dl, dr = dim_of(l, dims), dim_of(r, dims)
    if dl != dr and (name in SAME_DIM or 1 not in (dl, dr)):
        l, r = (l if dl == 1 else ("un", "vsum", l)), (r if dr == 1 else ("un", "vsum", r))
    return ("bin", name, l, r)


def build(tree, operands):
    kind = tree[0]
    if kind == "leaf":
        return operands[tree[1]]
    if kind == "un":
        return UNARY[tree[1]][0](build(tree[2], operands))
    return BINARY[tree[1]][0](build(tree[2], operands), build(tree[3], operands))


def dense(tree, xp, operands):
    kind = tree[0]
    if kind == "leaf":
        return operands[tree[1]]
    if kind == "un":
        return UNARY[tree[1]][1](xp, dense(tree[2], xp, operands))
    return BINARY[tree[1]][1](xp, dense(tree[2], xp, operands), dense(tree[3], xp, operands))


# ---------------------------------------------------------------- reductions
# name -> (method, scalar formula needed, outputs: "v" values / "i" indices, K-list,
#          differentiable)

REDUCTIONS = {
    "sum": ("sum", False, "v", False, True),
    "logsumexp": ("logsumexp", True, "v", False, True),
    "logsumexp_w": ("logsumexp", True, "v", False, True),
    "sumsoftmaxweight": ("sumsoftmaxweight", True, "v", False, True),
    "min": ("min", False, "v", False, True),
    "max": ("max", False, "v", False, True),
    "argmin": ("argmin", False, "i", False, False),
    "argmax": ("argmax", False, "i", False, False),
    "min_argmin": ("min_argmin", False, "vi", False, True),
    "max_argmax": ("max_argmax", False, "vi", False, True),
    "Kmin": ("Kmin", False, "v", True, True),
    "argKmin": ("argKmin", False, "i", True, False),
    "Kmin_argKmin": ("Kmin_argKmin", False, "vi", True, True),
}

BATCH = {  # operand category -> batch shape
    "plain": ((), (), ()),
    "bcast": ((2, 1), (1, 3), (3,)),
    "bcast_p": ((), (2, 1), (1, 3)),
}

EMPTY = True  # empty axes: nothing to reduce, or no output rows (issue 9 item 11)
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0])


@dataclasses.dataclass(frozen=True)
class Case:
    tree: tuple
    dims: tuple  # vector dims of a, b, c
    reduction: str
    axis: int  # 0: over i, 1: over j
    K: int
    M: int
    N: int
    batch: str
    dtype: str
    domain: str  # "normal", "int" (exact ties) or "special" (NaN, +-inf, +-0 mixed in)
    seed: int
    grad: bool

    def formula_tree(self):
        """The tree as reduced: scalar (a vector sum on top) where the reduction needs it."""
        tree = fix_dims(self.tree, self.dims)
        if REDUCTIONS[self.reduction][1] and dim_of(tree, self.dims) != 1:
            tree = ("un", "vsum", tree)
        return tree


def sample(case: Case):
    """float64 operands (a, b, c) and a positive weight w (indexed by the reduced axis),
    already rounded to the case's dtype."""
    rng = np.random.default_rng(case.seed)
    bi, bj, bp = BATCH[case.batch]
    shapes = [bi + (case.M, case.dims[0]), bj + (case.N, case.dims[1]), bp + (case.dims[2],)]
    if case.domain == "int":
        arrays = [rng.integers(-1, 2, s).astype(np.float64) for s in shapes]
    else:
        arrays = [rng.normal(0.0, 0.8, s) for s in shapes]
    if case.domain == "special":
        for a in arrays:
            hit = rng.random(a.shape) < 0.2
            a[hit] = rng.choice(SPECIALS, int(hit.sum()))
    wshape = (bj + (case.N, 2)) if case.axis == 1 else (bi + (case.M, 2))
    w = rng.uniform(0.5, 2.0, wshape)
    return [a.astype(case.dtype).astype(np.float64) for a in arrays + [w]]


# ---------------------------------------------------------------- the oracle (NumPy float64)
# F: dense (..., M, N, E); ``ax`` = -3 (over i) or -2 (over j). Special values follow
# jax.numpy: NaN wins in sums, logsumexp, min and max (and argmin/argmax point at the
# first NaN); K-lists sort NaN last (np.sort / a stable np.argsort); ties go to the
# smallest index.


def _lse(F, ax, W=None):
    m = np.max(F, axis=ax, keepdims=True)  # NaN if any NaN
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(all="ignore"):
        e = np.exp(F - shift)
        s = np.sum(e if W is None else e * W, axis=ax)
        out = np.log(s) + np.squeeze(shift, ax)
    m = np.squeeze(m, ax)
    return np.where(np.isfinite(m), out, m)  # +inf, -inf (all -inf) or NaN as the maximum


def _softmax(F, ax, W):
    m = np.max(F, axis=ax, keepdims=True)
    with np.errstate(all="ignore"):
        e = np.exp(F - m)  # NaN where the maximum is not finite, as jax.nn.softmax
        return np.sum(e * W, axis=ax) / np.sum(e, axis=ax)


def _first(idx, ax):
    return np.moveaxis(idx, ax, -2)


def _empty(case: Case, F, W, ax):
    """Nothing to reduce: the identities (sum 0, logsumexp -inf, softmax-weighted sum 0,
    min +inf, max -inf) and index -1."""
    E = W.shape[-1] if case.reduction in ("logsumexp_w", "sumsoftmaxweight") else F.shape[-1]
    lead = list(F.shape[:-1])
    del lead[ax + 1]  # the reduced axis: -2 (i) or -1 (j) of the leading shape
    shape = tuple(lead) + (E,)
    value = {"sum": 0.0, "logsumexp": -np.inf, "logsumexp_w": -np.inf, "sumsoftmaxweight": 0.0}.get(
        case.reduction, -np.inf if "max" in case.reduction else np.inf)
    val, idx = np.full(shape, value), np.full(shape, -1, np.int64)
    kinds = REDUCTIONS[case.reduction][2]
    return tuple(val if k == "v" else idx for k in kinds)


def oracle(case: Case, F, W):
    """The reduction's outputs: a tuple of arrays, values float64, indices int64, laid
    out as the library's (K-lists: (..., K, E), squeezed to (..., K) when E = 1)."""
    ax = (-3, -2)[case.axis]
    name = case.reduction
    if F.shape[ax] == 0:
        return _empty(case, F, W, ax)
    if name == "sum":
        return (F.sum(axis=ax),)
    if name in ("logsumexp", "logsumexp_w"):
        return (_lse(F, ax, W if name == "logsumexp_w" else None),)
    if name == "sumsoftmaxweight":
        return (_softmax(F, ax, W),)
    if name.startswith(("min", "argmin", "max", "argmax")):
        sgn = -1.0 if "max" in name else 1.0
        idx = np.argmin(sgn * F, axis=ax)  # NumPy: the first NaN, else the first minimum
        val = np.squeeze(np.take_along_axis(F, np.expand_dims(idx, ax), ax), ax)
        return {"min": (val,), "max": (val,), "argmin": (idx,), "argmax": (idx,),
                "min_argmin": (val, idx), "max_argmax": (val, idx)}[name]
    order = _first(np.argsort(F, axis=ax, kind="stable"), ax)[..., : case.K, :]
    val = np.take_along_axis(_first(F, ax), order, -2)
    out = {"Kmin": (val,), "argKmin": (order,), "Kmin_argKmin": (val, order)}[name]
    return tuple(a[..., 0] if F.shape[-1] == 1 else a for a in out)


def dense_reduce_jnp(case: Case, F, W, idx):
    """The differentiable outputs of the reduction, written densely with jax.numpy (F and
    W float64 jax arrays); ``idx``: the oracle's selected indices (min/max/K-lists)."""
    import jax
    import jax.numpy as jnp

    ax = (-3, -2)[case.axis]
    name = case.reduction
    if name == "sum":
        return jnp.sum(F, axis=ax)
    if name == "logsumexp":
        return jax.nn.logsumexp(F, axis=ax)
    if name == "logsumexp_w":
        return jax.nn.logsumexp(F + jnp.log(W), axis=ax)
    if name == "sumsoftmaxweight":
        return jnp.sum(jax.nn.softmax(F, axis=ax) * W, axis=ax)
    if name in ("min", "max", "min_argmin", "max_argmax"):
        return jnp.squeeze(jnp.take_along_axis(F, jnp.expand_dims(idx, ax), ax), ax)
    Fm = jnp.moveaxis(F, ax, -2)
    if F.shape[-1] == 1:
        idx = idx[..., None]
    val = jnp.take_along_axis(Fm, idx, -2)
    return val[..., 0] if F.shape[-1] == 1 else val


# ---------------------------------------------------------------- drawing a case


def random_tree(rng, depth=3, exclude=frozenset()):
    if depth == 0 or rng.random() < 0.25:
        return ("leaf", int(rng.integers(0, 3)))
    if rng.random() < 0.5:
        return ("un", str(rng.choice(sorted(set(UNARY) - exclude))), random_tree(rng, depth - 1, exclude))
    return ("bin", str(rng.choice(sorted(set(BINARY) - exclude))), random_tree(rng, depth - 1, exclude),
            random_tree(rng, depth - 1, exclude))


def random_case(seed: int, domains=("normal", "normal", "int", "special")) -> Case:
    """A case drawn uniformly from ``seed``: a tree of depth <= 3 over a, b and c (each
    appears), any reduction, axis, K in {1, the reduced size, between}, M and N in 1..8,
    a batch pattern, a dtype and a domain; gradients on half of the differentiable ones."""
    rng = np.random.default_rng(seed)
    domain = str(rng.choice(domains))
    # No comparison among special values: XLA's simplifier, which the jnp backend goes
    # through, rewrites (a < b) * x as a select (0 * NaN -> 0) and abs(x) >= 0 as true
    # (step(|NaN|) -> 1); the compiled backends follow IEEE (docs/api.md, Special values).
    tree = random_tree(rng, exclude=frozenset({"lt", "step"} if domain == "special" else ()))
    for k in (0, 1, 2):  # the formula depends on every operand (their batch shapes broadcast)
        if k not in leaves(tree):
            tree = ("bin", str(rng.choice(["add", "mul"])), tree, ("leaf", k))
    reduction = str(rng.choice(sorted(REDUCTIONS)))
    M, N, axis = int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(0, 2))
    if EMPTY and rng.random() < 0.08:  # an empty axis: nothing to reduce, or no output rows
        M, N = (0, N) if rng.random() < 0.5 else (M, 0)
    reduced = (M, N)[axis]
    if reduced == 0 and REDUCTIONS[reduction][3]:  # K-lists need 1 <= K <= the reduced size
        M, N = max(M, 1), max(N, 1)
        reduced = (M, N)[axis]
    K = int(rng.choice([1, reduced, rng.integers(1, max(reduced, 1) + 1)])) if reduced else 1
    grad = domain == "normal" and REDUCTIONS[reduction][4] and M * N > 0 and rng.random() < 0.5
    return Case(tree=tree, dims=tuple(int(d) for d in rng.integers(1, 4, 3)), reduction=reduction, axis=axis,
                K=K, M=M, N=N, batch=str(rng.choice(sorted(BATCH))),
                dtype=str(rng.choice(["float32", "float64"])), domain=domain, seed=int(rng.integers(2**31)),
                grad=bool(grad))

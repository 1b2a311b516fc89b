"""How the cpu backend's sum-type kernels accumulate, under the numerics options
(:mod:`jax_lazy.numerics`: ``dtype_acc``, ``sum_scheme``): the C++ declarations, additions,
folds and final stores of their running sums, for :mod:`jax_lazy.backends.cpu`'s Sum and
LogSumExp / SumSoftMaxWeight kernels."""

from __future__ import annotations

from dataclasses import dataclass

from .. import numerics


@dataclass(frozen=True)
class Acc:
    """How a sum-type kernel accumulates (:mod:`jax_lazy.numerics`). ``default``: partial
    sums of T per block of columns, added to the output (block summation; direct_sum is
    the same code). Otherwise partial sums of A (``JL_A``: double for dtype_acc="float64")
    whose rows are folded into a per-call array ``acc`` of A, written to the output once
    at the end; with ``kahan``, every sum has its error in a twin (name + ``_k``) and the
    additions are Neumaier's (prelude: ``jl_kadd``). The simd lanes' own partial sums are
    added by OpenMP's reduction (a handful of terms: a few ulps of the block's sum)."""

    default: bool
    kahan: bool
    E: int = 0  # components per output row (the Sum's output array)

    @classmethod
    def of(cls, plan, E=0):
        return cls(numerics.is_default(plan), plan.sum_scheme == "kahan_scheme", E)

    def type(self) -> str:
        return "T" if self.default else "A"

    def names(self, names) -> list[str]:
        """The variables of partial sums ``names``, and their error twins with kahan."""
        return list(names) + [_twin(n) for n in names] * self.kahan

    def decl(self, names) -> str:
        t = self.type()
        return f"{t} " + ", ".join(f"{n} = {t}(0)" for n in self.names(names)) + ";"

    def add(self, name, expr) -> str:
        if self.default:
            return f"{name} += {expr};"
        return f"jl_kadd({name}, {_twin(name)}, (A)({expr}));" if self.kahan else f"{name} += (A)({expr});"

    def fold(self, target, name) -> str:
        """Add partial sum ``name`` to ``target`` (a running sum, its twin alongside)."""
        if not self.kahan:
            return f"{target} += {name};"
        return f"{{ jl_kadd({target}, {_twin(target)}, {name}); {_twin(target)} += {_twin(name)}; }}"

    def out(self, q) -> str:
        """The running sum of output element ``q`` (a C++ index)."""
        return f"out0[{q}]" if self.default else f"acc[{q} - i0 * {self.E}]"

    def value(self, name) -> str:
        """The value of running sum ``name`` (with its error, under kahan)."""
        return f"jl_total({name}, {_twin(name)})" if self.kahan else name

    def setup(self) -> list[str]:
        E, q = self.E, f"for (int64_t q = i0 * {self.E}; q < i1 * {self.E}; ++q)"
        if self.default:
            return [f"{q} out0[q] = T(0);"]
        return [f"jl_array<A> {n}_((i1 - i0) * {E}); A* __restrict {n} = {n}_.p;" for n in self.names(["acc"])] + [
            f"for (int64_t q = 0; q < (i1 - i0) * {E}; ++q) {{ {' '.join(f'{n}[q] = A(0);' for n in self.names(['acc']))} }}"]

    def finish(self) -> list[str]:
        if self.default:
            return []
        return [f"for (int64_t q = i0 * {self.E}; q < i1 * {self.E}; ++q) out0[q] = (T){self.value(self.out('q'))};"]


def _twin(name: str) -> str:
    """The error twin of a sum's variable: ``s0`` -> ``s0_k``, ``acc[q]`` -> ``acc_k[q]``."""
    base, bracket, rest = name.partition("[")
    return f"{base}_k{bracket}{rest}"

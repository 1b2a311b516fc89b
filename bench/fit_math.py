"""Regenerate the polynomial coefficients of the CPU kernels' asin, atan and erf
(``jl_asin_poly``, ``jl_atan_poly``, ``jl_erf_small``, ``jl_erfc_scaled`` in
``jax_lazy/backends/kernels/prelude_cpu.h``).

Each is a weighted minimax polynomial found by the Remez exchange algorithm in 50-digit
mpmath (``pip install mpmath``), then rounded to float / double and printed as C++ hex
literals, highest degree first (the order of the Horner loops there):

  asin s = s + s^3 P(z),            z = s^2 in [0, 1/4]          relative error of asin
  atan u = u + u^3 P(z),            z = u^2 in [0, tan(pi/8)^2]  relative error of atan
  erf x  = x P(z),                  z = x^2 in [0, 1]            relative error of erf
  erfc a = exp(-a^2) / a * Q(v),    v = (2/a - 1/amax - 1) / (1 - 1/amax) in [-1, 1],
           a in [1, amax] (amax = 4 in float, 6 in double: past it erf rounds to 1)
                                                                 absolute error of erf

Run: ``python bench/fit_math.py`` (about a minute); it prints the error bound of each fit
(before rounding to T; the header of prelude_cpu.h gives the measured error of the
functions, tests/test_cpu_math.py checks it).
"""

import re
import struct

import mpmath as mp

mp.mp.dps = 50


def remez(f, w, lo, hi, deg, iters=25, grid=3000):
    """Coefficients (low to high) of the degree-``deg`` polynomial p minimising
    max |w(z) (f(z) - p(z))| on [lo, hi], and that maximum (on a Chebyshev grid)."""
    n = deg + 2
    lo, hi = mp.mpf(lo), mp.mpf(hi)
    cheb = lambda k, m: lo + (hi - lo) * (1 - mp.cos(mp.pi * k / m)) / 2  # noqa: E731
    xs = [cheb(k, n - 1) for k in range(n)]
    G = [cheb(k, grid) for k in range(grid + 1)]
    FG, WG = [f(z) for z in G], [w(z) for z in G]
    best = None
    for _ in range(iters):
        A, b = mp.matrix(n, n), mp.matrix(n, 1)
        for i, x in enumerate(xs):  # p(x_i) + (-1)^i E / w(x_i) = f(x_i)
            for k in range(deg + 1):
                A[i, k] = x**k
            A[i, deg + 1] = (-1) ** i / w(x)
            b[i] = f(x)
        sol = mp.lu_solve(A, b)
        c = [sol[k] for k in range(deg + 1)]
        err = [WG[i] * (FG[i] - mp.polyval(c[::-1], G[i])) for i in range(len(G))]
        emax = max(abs(e) for e in err)
        if best is None or emax < best[1]:
            best = (c, emax)
        ext = []  # the alternating extrema of the error: the next reference
        for i in range(len(G)):
            left = abs(err[i - 1]) if i else -1
            right = abs(err[i + 1]) if i + 1 < len(G) else -1
            if abs(err[i]) >= left and abs(err[i]) >= right:
                if ext and mp.sign(err[ext[-1]]) == mp.sign(err[i]):
                    if abs(err[i]) > abs(err[ext[-1]]):
                        ext[-1] = i
                else:
                    ext.append(i)
        while len(ext) > n:
            ext.pop(0 if abs(err[ext[0]]) < abs(err[ext[-1]]) else -1)
        if len(ext) < n:
            break
        xs = [G[i] for i in ext]
    return best


def _ratio(g, at0):
    return lambda z: at0 if z == 0 else g(z)


def asin_p(z):
    s = mp.sqrt(z)
    return (mp.asin(s) - s) / (z * s)


def atan_p(z):
    s = mp.sqrt(z)
    return (mp.atan(s) - s) / (z * s)


def erf_p(z):
    s = mp.sqrt(z)
    return mp.erf(s) / s


def erfc_q(amax):
    a_of = lambda v: 2 / (v * (1 - 1 / mp.mpf(amax)) + 1 / mp.mpf(amax) + 1)  # noqa: E731
    f = lambda v: mp.erfc(a_of(v)) * mp.exp(a_of(v) ** 2) * a_of(v)  # noqa: E731
    w = lambda v: mp.exp(-a_of(v) ** 2) / a_of(v)  # noqa: E731
    return f, w


FITS = {  # name: (function, weight, interval, degree in float, degree in double)
    "asin": (_ratio(asin_p, mp.mpf(1) / 6), lambda z: 1 + 0 * z, (0, 0.25), 5, 12),
    "atan": (_ratio(atan_p, -mp.mpf(1) / 3), lambda z: 1 + 0 * z, (0, mp.tan(mp.pi / 8) ** 2), 4, 10),
    "erf_small": (_ratio(erf_p, 2 / mp.sqrt(mp.pi)), lambda z: 1, (0, 1), 6, 11),
}


def hexlit(x, double):
    """``x`` rounded to double (or float) as an exact C++ hex literal."""
    v = float(x) if double else struct.unpack("f", struct.pack("f", float(x)))[0]
    return re.sub(r"\.?0*p", "p", v.hex()) + ("" if double else "f")


def main():
    for name, (f, w, (lo, hi), df, dd) in FITS.items():
        for double, deg in ((False, df), (True, dd)):
            c, e = remez(f, lambda z: w(z) / abs(f(z)), lo, hi, deg)
            print(f"{name} {'double' if double else 'float'} degree {deg}: relative error {mp.nstr(e, 3)}")
            print("  " + ", ".join(hexlit(x, double) for x in reversed(c)))
    for double, amax, deg in ((False, 4, 8), (True, 6, 20)):
        f, w = erfc_q(amax)
        c, e = remez(f, w, -1, 1, deg)
        print(f"erfc {'double' if double else 'float'} amax {amax} degree {deg}: absolute error {mp.nstr(e, 3)}")
        print("  " + ", ".join(hexlit(x, double) for x in reversed(c)))


if __name__ == "__main__":
    main()

// jax_lazy CPU kernel prelude: the scalar type T, the index type IDX and the math
// functions the formula printer calls (jl_*). Pasted at the top of every generated
// kernel, after `#define JL_T float|double` and `#define JL_IDX int32_t|int64_t`.
//
// jl_exp is our own so that loops over j vectorise (glibc's vector math needs
// -ffast-math): exp(x) = 2^n exp(r) with n = nearbyint(x / ln 2), |r| <= ln2 / 2
// (Cody-Waite split of ln 2), exp(r) by its Taylor polynomial (degree 7 in float,
// 13 in double: truncation error below 5e-9 resp. 5e-18, under half an ulp), and 2^n
// applied as two exact powers of two, so that overflow gives inf, underflow gives
// denormals (0 where the thread flushes them, as XLA's CPU runtime does) then 0, and NaN
// stays NaN. Checked within 2 ulps of float64 exp by tests/test_cpu_math.py.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

typedef JL_T T;
typedef JL_IDX IDX;

#define JL_INLINE static inline __attribute__((always_inline))

JL_INLINE float jl_bits_to_float(int32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
JL_INLINE double jl_bits_to_double(int64_t b) { double f; std::memcpy(&f, &b, 8); return f; }

// c ? a : b with bit masks: GCC turns such ternaries (the clamps, the quadrant's choice) into
// branches that block vectorisation where there are no AVX-512 mask registers.
JL_INLINE float jl_select(bool c, float a, float b) {
  uint32_t ba, bb;
  std::memcpy(&ba, &a, 4);
  std::memcpy(&bb, &b, 4);
  return jl_bits_to_float((int32_t)(bb ^ ((ba ^ bb) & (0u - c))));
}

JL_INLINE double jl_select(bool c, double a, double b) {
  uint64_t ba, bb;
  std::memcpy(&ba, &a, 8);
  std::memcpy(&bb, &b, 8);
  return jl_bits_to_double((int64_t)(bb ^ ((ba ^ bb) & (0ull - c))));
}

JL_INLINE float jl_exp(float x) {
  x = jl_select(x < -110.0f, -110.0f, x);  // NaN-preserving clamps: results are 0 / inf there
  x = jl_select(x > 100.0f, 100.0f, x);
  const float n = __builtin_nearbyintf(x * 1.44269504088896341f);
  float r = __builtin_fmaf(n, -0.693145751953125f, x);  // n * ln2_hi is exact
  r = __builtin_fmaf(n, -1.42860682030941723212e-6f, r);
  float p = 1.0f / 5040.0f;
  p = __builtin_fmaf(p, r, 1.0f / 720.0f);
  p = __builtin_fmaf(p, r, 1.0f / 120.0f);
  p = __builtin_fmaf(p, r, 1.0f / 24.0f);
  p = __builtin_fmaf(p, r, 1.0f / 6.0f);
  p = __builtin_fmaf(p, r, 0.5f);
  p = __builtin_fmaf(p, r, 1.0f);
  p = __builtin_fmaf(p, r, 1.0f);
  const int32_t k = (int32_t)n, k1 = k >> 1, k2 = k - k1;  // 2^n = 2^k1 * 2^k2, both normal
  return p * jl_bits_to_float((k1 + 127) << 23) * jl_bits_to_float((k2 + 127) << 23);
}

// 2^n for an integer-valued n in [-1022, 1023], as bits.
JL_INLINE double jl_pow2i(double n) {
  uint64_t b;
  const double t = n + (1023.0 + 6755399441055744.0);
  std::memcpy(&b, &t, 8);
  return jl_bits_to_double((int64_t)(b << 52));
}

JL_INLINE double jl_exp(double x) {
  x = jl_select(x < -760.0, -760.0, x);
  x = jl_select(x > 720.0, 720.0, x);
  const double n = __builtin_nearbyint(x * 1.4426950408889634074);
  double r = __builtin_fma(n, -0x1.62e42fee00000p-1, x);  // ln2_hi: 32 bits, n * hi exact
  r = __builtin_fma(n, -0x1.a39ef35793c76p-33, r);
  // Horner, written out: a loop here stops GCC from vectorising the caller's simd loop.
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = __builtin_fma(p, r, 1.0 / 479001600.0);
  p = __builtin_fma(p, r, 1.0 / 39916800.0);
  p = __builtin_fma(p, r, 1.0 / 3628800.0);
  p = __builtin_fma(p, r, 1.0 / 362880.0);
  p = __builtin_fma(p, r, 1.0 / 40320.0);
  p = __builtin_fma(p, r, 1.0 / 5040.0);
  p = __builtin_fma(p, r, 1.0 / 720.0);
  p = __builtin_fma(p, r, 1.0 / 120.0);
  p = __builtin_fma(p, r, 1.0 / 24.0);
  p = __builtin_fma(p, r, 1.0 / 6.0);
  p = __builtin_fma(p, r, 0.5);
  p = __builtin_fma(p, r, 1.0);
  p = __builtin_fma(p, r, 1.0);
  // 2^n = 2^n1 * 2^n2, n1 = round(n / 2): each exponent field is made by adding 1023 + 1.5 * 2^52
  // (integer n_i + 1023 lands in the low mantissa bits) and shifting it into place; no int64
  // <-> double conversion, which AVX2 has no vector instruction for.
  const double n1 = __builtin_nearbyint(0.5 * n), n2 = n - n1;
  return p * jl_pow2i(n1) * jl_pow2i(n2);
}

// jl_log, vectorisable like jl_exp: x = 2^e m with m in [sqrt(1/2), sqrt(2)), and
// log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1), |s| <= 0.1716
// (series to s^9 in float, s^21 in double: truncation below 1e-9 resp. 1e-17 of log m).
JL_INLINE float jl_log(float x) {
  const bool tiny = x < 1.17549435e-38f;  // denormal (or <= 0): scale into the normal range
  const float xs = jl_select(tiny, x * 8388608.0f, x);
  int32_t b;
  std::memcpy(&b, &xs, 4);
  int32_t e = ((b >> 23) & 0xff) - 127 - 23 * (int32_t)tiny;
  float m = jl_bits_to_float((b & 0x007fffff) | 0x3f800000);  // in [1, 2)
  const bool high = m > 1.41421356f;
  m = jl_select(high, 0.5f * m, m);
  e += (int32_t)high;
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  float p = 2.0f / 9.0f;
  p = __builtin_fmaf(p, s2, 2.0f / 7.0f);
  p = __builtin_fmaf(p, s2, 2.0f / 5.0f);
  p = __builtin_fmaf(p, s2, 2.0f / 3.0f);
  p = __builtin_fmaf(p, s2, 2.0f);
  const float fe = (float)e;
  float r = __builtin_fmaf(fe, 0.693145751953125f, __builtin_fmaf(fe, 1.42860682030941723212e-6f, s * p));
  r = jl_select(x == 0.0f, -__builtin_inff(), r);
  r = jl_select(x < 0.0f, __builtin_nanf(""), r);
  r = jl_select(x == __builtin_inff(), x, r);
  return jl_select(x != x, x, r);
}

JL_INLINE double jl_log(double x) {
  const bool tiny = x < 2.2250738585072014e-308;
  const double xs = jl_select(tiny, x * 4503599627370496.0, x);  // 2^52
  int64_t b;
  std::memcpy(&b, &xs, 8);
  int64_t e = (int64_t)(((uint64_t)b >> 52) & 0x7ff) - 1023 - 52 * (int64_t)tiny;
  double m = jl_bits_to_double((b & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
  const bool high = m > 1.4142135623730951;
  m = jl_select(high, 0.5 * m, m);
  e += (int64_t)high;
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double p = 2.0 / 21.0;
  p = __builtin_fma(p, s2, 2.0 / 19.0);
  p = __builtin_fma(p, s2, 2.0 / 17.0);
  p = __builtin_fma(p, s2, 2.0 / 15.0);
  p = __builtin_fma(p, s2, 2.0 / 13.0);
  p = __builtin_fma(p, s2, 2.0 / 11.0);
  p = __builtin_fma(p, s2, 2.0 / 9.0);
  p = __builtin_fma(p, s2, 2.0 / 7.0);
  p = __builtin_fma(p, s2, 2.0 / 5.0);
  p = __builtin_fma(p, s2, 2.0 / 3.0);
  p = __builtin_fma(p, s2, 2.0);
  const double fe = jl_bits_to_double(0x4338000000000000LL + e) - 6755399441055744.0;  // (double)e
  double r = __builtin_fma(fe, 0x1.62e42fee00000p-1, __builtin_fma(fe, 0x1.a39ef35793c76p-33, s * p));
  r = jl_select(x == 0.0, -__builtin_inf(), r);
  r = jl_select(x < 0.0, __builtin_nan(""), r);
  r = jl_select(x == __builtin_inf(), x, r);
  return jl_select(x != x, x, r);
}

// jl_sin / jl_cos, vectorisable like jl_exp (no libm call, no branch).
// Range reduction |x| = k pi/2 + r: k = |x| 2/pi rounded to an integer by one fma that adds
// 1.5 * 2^23 (2^52 in double), whose low mantissa bits then hold k mod 4, the quadrant; then
// r = |x| - k C1 - k C2 - k C3 by fmas, C1 + C2 + C3 = pi/2 within 2^-76 (float) resp. 2^-163
// (double) (Cody-Waite). The first fma is exact (|x| - k C1 is a multiple of ulp(C1) below 1,
// or Sterbenz for |x| < 1) and the other two round relative to r, so r keeps about 1 ulp of
// relative error even next to a zero of sin or cos. For |x| <= 1e5 in float (k < 2^16) resp.
// 1e9 in double (k < 2^30), |r| <= 0.7895 resp. 0.7854 and
//   sin r = r + r^3 P(r^2), cos r = 1 - r^2/2 + r^4 Q(r^2),
// P, Q minimax for relative error on |r| <= 0.8 (float: degrees 3 and 2, errors 2^-32.5 and
// 2^-32.6) resp. |r| <= 0.786 (double: degrees 5 and 5, errors 2^-57.9 and 2^-63.9), fitted
// by Remez in 60-digit mpmath, each coefficient rounded to T in turn and the later ones refit.
// sin x = +-sin r or +-cos r by the quadrant, then the sign of x (sin(-0) = -0); cos x is
// sin(|x| + pi/2). Error for |x| <= 1e5 resp. 1e9: at most 1.5 ulp of the result, zeros
// included (float: every float, against float64 sin/cos, max 1.49; double: dense samples and
// the doubles nearest k pi/2, against 128-bit sinq/cosq, max 1.46; tests/test_cpu_math.py
// checks 2 ulp against NumPy). Past 2^16 (float) resp. 2^29 (double) the error of 2/pi in T
// would grow with |x| (junk past 2^22 resp. 2^51): those lanes take r and the quadrant from
// an exact reduction instead (Payne-Hanek, jl_reduce_pio2_big, computed for every lane and
// selected: no branch), up to the largest finite value: max 1.45 ulp measured (float:
// 600k samples to 3.4e38; double: 400k samples to 1.8e308 and the double closest to a
// multiple of pi/2, 6381956970095103 2^797). Inf and NaN give NaN (r = inf - inf, or NaN).

// v with its sign bit flipped where s has it set.
JL_INLINE float jl_flip_sign(float v, uint32_t s) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return jl_bits_to_float((int32_t)(b ^ s));
}

JL_INLINE double jl_flip_sign(double v, uint64_t s) {
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return jl_bits_to_double((int64_t)(b ^ s));
}

struct jl_quadrant_f { float r; uint32_t q; };   // |x| = k pi/2 + r, q = k mod 4
struct jl_quadrant_d { double r; uint64_t q; };

// Past these the fast reduction (Cody-Waite) loses bits: the exact one takes over.
// Inf and NaN are not: the fast path makes them NaN.
JL_INLINE int jl_trig_big(float ax) { return (ax >= 65536.0f) & (ax < __builtin_inff()); }
JL_INLINE int jl_trig_big(double ax) { return (ax >= 0x1p29) & (ax < __builtin_inf()); }

JL_INLINE jl_quadrant_f jl_reduce_pio2_fast(float ax) {  // ax = |x| < 2^16
  const float t = __builtin_fmaf(ax, 0x1.45f306p-1f, 0x1.8p23f);  // 2^23 (1.5 + k 2^-23)
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  const float k = t - 0x1.8p23f;
  float r = __builtin_fmaf(k, -0x1.921fb6p+0f, ax);
  r = __builtin_fmaf(k, 0x1.777a5cp-25f, r);
  r = __builtin_fmaf(k, 0x1.ee59dap-50f, r);
  r = jl_select(r < -0.8f, -0.8f, r);  // only beyond the range; NaN stays NaN
  r = jl_select(r > 0.8f, 0.8f, r);
  return {r, tb & 3};
}


// Large arguments, 2^16 <= |x| < inf (Payne-Hanek, in double): x = m 2^e with an integer
// m < 2^24, and x 2/pi = m sum_k b_k 2^(e - k) for the bits b_k of 2/pi. The bits k <= e - 2
// add multiples of 4 (the quadrant is x 2/pi mod 4): dropped. Row e of JL_2OPI_F32 holds
// the next 96 bits as C_i = I_i 2^-(22 + 24 i), I_i the 24-bit integer of bits
// e - 1 + 24 i .. e + 22 + 24 i (exact in float), so each m C_i is exact in double (48 bits),
// m C_0 mod 4 + m C_1 is exact (a multiple of 2^-46 below 8), its nearest integer k gives
// the quadrant and f = that - k + m C_2 + m C_3 (rounded twice, relative 2^-52) misses
// 2^-70 at most: |f| >= 2^-30 for every float (the closest a float comes to a multiple of
// pi/2), so r = f pi/2 is accurate to ~2^-40, then rounded to float. The table is
// generated, and checked, by tests/test_cpu_math.py (2/pi from Machin's formula in Python
// integers): row eb - 143 for the biased exponent eb.
static const float JL_2OPI_F32[112][4] = {
  {0x1.45fp-8f, 0x1.836e4ep-23f, 0x1.1054ap-49f, 0x1.fc2756p-71f},
  {0x1.45f2p-7f, 0x1.06dc9cp-23f, 0x1.1054a4p-48f, 0x1.f84eaep-71f},
  {0x1.45f3p-6f, 0x1.b727p-28f, 0x1.1054a6p-47f, 0x1.f09d5ep-71f},
  {0x1.45f3p-5f, 0x1.b7272p-27f, 0x1.054a7p-50f, 0x1.e13abep-71f},
  {0x1.45f3p-4f, 0x1.b7272p-26f, 0x1.054a78p-49f, 0x1.c2757cp-71f},
  {0x1.45f3p-3f, 0x1.b7272p-25f, 0x1.054a7cp-48f, 0x1.84eafap-71f},
  {0x1.45f3p-2f, 0x1.b7272p-24f, 0x1.054a7ep-47f, 0x1.09d5f4p-71f},
  {0x1.45f3p-1f, 0x1.b72722p-23f, 0x1.529fcp-52f, 0x1.3abe8p-75f},
  {0x1.45f304p+0f, 0x1.6e4e44p-23f, 0x1.529fcp-51f, 0x1.3abe8p-74f},
  {0x1.45f306p+1f, 0x1.b9391p-24f, 0x1.529fcp-50f, 0x1.3abe88p-73f},
  {0x1.17cc18p+0f, 0x1.b9391p-23f, 0x1.529fcp-49f, 0x1.3abe8cp-72f},
  {0x1.17cc1ap+1f, 0x1.72722p-23f, 0x1.529fcp-48f, 0x1.3abe8ep-71f},
  {0x1.7cc1bp-2f, 0x1.c9c88p-24f, 0x1.529fc2p-47f, 0x1.d5f478p-73f},
  {0x1.7cc1bp-1f, 0x1.c9c882p-23f, 0x1.4a7f08p-48f, 0x1.d5f47cp-72f},
  {0x1.7cc1b4p+0f, 0x1.939104p-23f, 0x1.4a7f08p-47f, 0x1.d5f47cp-71f},
  {0x1.7cc1b6p+1f, 0x1.27220ap-23f, 0x1.29fc24p-48f, 0x1.abe8fap-71f},
  {0x1.f306dcp+0f, 0x1.39105p-25f, 0x1.29fc26p-47f, 0x1.57d1f4p-71f},
  {0x1.f306dcp+1f, 0x1.391054p-24f, 0x1.4fe138p-49f, 0x1.5f47d4p-72f},
  {0x1.e60db8p+1f, 0x1.391054p-23f, 0x1.4fe138p-48f, 0x1.5f47d4p-71f},
  {0x1.cc1b72p+1f, 0x1.c882ap-25f, 0x1.4fe13ap-47f, 0x1.7d1f5p-72f},
  {0x1.9836e4p+1f, 0x1.c882a4p-24f, 0x1.3f84e8p-48f, 0x1.7d1f52p-71f},
  {0x1.306dc8p+1f, 0x1.c882a4p-23f, 0x1.3f84eap-47f, 0x1.f47d4cp-72f},
  {0x1.836e48p-1f, 0x1.91054ap-23f, 0x1.fc275p-49f, 0x1.f47d4cp-71f},
  {0x1.836e4cp+0f, 0x1.220a94p-23f, 0x1.fc2754p-48f, 0x1.e8fa9ap-71f},
  {0x1.836e4ep+1f, 0x1.1054ap-25f, 0x1.fc2756p-47f, 0x1.d1f534p-71f},
  {0x1.06dc9cp+1f, 0x1.1054a4p-24f, 0x1.f84eaep-47f, 0x1.a3ea68p-71f},
  {0x1.b727p-4f, 0x1.1054a6p-23f, 0x1.f09d5ep-47f, 0x1.47d4d2p-71f},
  {0x1.b7272p-3f, 0x1.054a7p-26f, 0x1.e13abep-47f, 0x1.1f534cp-72f},
  {0x1.b7272p-2f, 0x1.054a78p-25f, 0x1.c2757cp-47f, 0x1.1f534cp-71f},
  {0x1.b7272p-1f, 0x1.054a7cp-24f, 0x1.84eafap-47f, 0x1.f534dp-74f},
  {0x1.b7272p+0f, 0x1.054a7ep-23f, 0x1.09d5f4p-47f, 0x1.f534d8p-73f},
  {0x1.b72722p+1f, 0x1.529fcp-28f, 0x1.3abe8p-51f, 0x1.f534dcp-72f},
  {0x1.6e4e44p+1f, 0x1.529fcp-27f, 0x1.3abe8p-50f, 0x1.f534dcp-71f},
  {0x1.b9391p+0f, 0x1.529fcp-26f, 0x1.3abe88p-49f, 0x1.ea69bap-71f},
  {0x1.b9391p+1f, 0x1.529fcp-25f, 0x1.3abe8cp-48f, 0x1.d4d376p-71f},
  {0x1.72722p+1f, 0x1.529fcp-24f, 0x1.3abe8ep-47f, 0x1.a9a6eep-71f},
  {0x1.c9c88p+0f, 0x1.529fc2p-23f, 0x1.d5f478p-49f, 0x1.534ddcp-71f},
  {0x1.c9c882p+1f, 0x1.4a7f08p-24f, 0x1.d5f47cp-48f, 0x1.4d377p-72f},
  {0x1.939104p+1f, 0x1.4a7f08p-23f, 0x1.d5f47cp-47f, 0x1.4d377p-71f},
  {0x1.27220ap+1f, 0x1.29fc24p-24f, 0x1.abe8fap-47f, 0x1.34ddcp-72f},
  {0x1.39105p-1f, 0x1.29fc26p-23f, 0x1.57d1f4p-47f, 0x1.34ddcp-71f},
  {0x1.391054p+0f, 0x1.4fe138p-25f, 0x1.5f47d4p-48f, 0x1.a6eep-73f},
  {0x1.391054p+1f, 0x1.4fe138p-24f, 0x1.5f47d4p-47f, 0x1.a6ee04p-72f},
  {0x1.c882ap-1f, 0x1.4fe13ap-23f, 0x1.7d1f5p-48f, 0x1.a6ee06p-71f},
  {0x1.c882a4p+0f, 0x1.3f84e8p-24f, 0x1.7d1f52p-47f, 0x1.4ddc0cp-71f},
  {0x1.c882a4p+1f, 0x1.3f84eap-23f, 0x1.f47d4cp-48f, 0x1.377034p-72f},
  {0x1.91054ap+1f, 0x1.fc275p-25f, 0x1.f47d4cp-47f, 0x1.377036p-71f},
  {0x1.220a94p+1f, 0x1.fc2754p-24f, 0x1.e8fa9ap-47f, 0x1.bb81bp-73f},
  {0x1.1054ap-1f, 0x1.fc2756p-23f, 0x1.d1f534p-47f, 0x1.bb81b4p-72f},
  {0x1.1054a4p+0f, 0x1.f84eaep-23f, 0x1.a3ea68p-47f, 0x1.bb81b6p-71f},
  {0x1.1054a6p+1f, 0x1.f09d5ep-23f, 0x1.47d4d2p-47f, 0x1.77036cp-71f},
  {0x1.054a7p-2f, 0x1.e13abep-23f, 0x1.1f534cp-48f, 0x1.dc0db4p-72f},
  {0x1.054a78p-1f, 0x1.c2757cp-23f, 0x1.1f534cp-47f, 0x1.dc0db6p-71f},
  {0x1.054a7cp+0f, 0x1.84eafap-23f, 0x1.f534dp-50f, 0x1.b81b6cp-71f},
  {0x1.054a7ep+1f, 0x1.09d5f4p-23f, 0x1.f534d8p-49f, 0x1.7036d8p-71f},
  {0x1.529fcp-4f, 0x1.3abe8p-27f, 0x1.f534dcp-48f, 0x1.c0db6p-72f},
  {0x1.529fcp-3f, 0x1.3abe8p-26f, 0x1.f534dcp-47f, 0x1.c0db62p-71f},
  {0x1.529fcp-2f, 0x1.3abe88p-25f, 0x1.ea69bap-47f, 0x1.81b6c4p-71f},
  {0x1.529fcp-1f, 0x1.3abe8cp-24f, 0x1.d4d376p-47f, 0x1.036d8ap-71f},
  {0x1.529fcp+0f, 0x1.3abe8ep-23f, 0x1.a9a6eep-47f, 0x1.b6c5p-77f},
  {0x1.529fc2p+1f, 0x1.d5f478p-25f, 0x1.534ddcp-47f, 0x1.b6c5p-76f},
  {0x1.4a7f08p+0f, 0x1.d5f47cp-24f, 0x1.4d377p-48f, 0x1.b6c52p-75f},
  {0x1.4a7f08p+1f, 0x1.d5f47cp-23f, 0x1.4d377p-47f, 0x1.b6c52p-74f},
  {0x1.29fc24p+0f, 0x1.abe8fap-23f, 0x1.34ddcp-48f, 0x1.b6c528p-73f},
  {0x1.29fc26p+1f, 0x1.57d1f4p-23f, 0x1.34ddcp-47f, 0x1.b6c528p-72f},
  {0x1.4fe138p-1f, 0x1.5f47d4p-24f, 0x1.a6eep-49f, 0x1.b6c52ap-71f},
  {0x1.4fe138p+0f, 0x1.5f47d4p-23f, 0x1.a6ee04p-48f, 0x1.6d8a56p-71f},
  {0x1.4fe13ap+1f, 0x1.7d1f5p-24f, 0x1.a6ee06p-47f, 0x1.b62958p-72f},
  {0x1.3f84e8p+0f, 0x1.7d1f52p-23f, 0x1.4ddc0cp-47f, 0x1.b62958p-71f},
  {0x1.3f84eap+1f, 0x1.f47d4cp-24f, 0x1.377034p-48f, 0x1.6c52b2p-71f},
  {0x1.fc275p-1f, 0x1.f47d4cp-23f, 0x1.377036p-47f, 0x1.b14accp-72f},
  {0x1.fc2754p+0f, 0x1.e8fa9ap-23f, 0x1.bb81bp-49f, 0x1.b14accp-71f},
  {0x1.fc2756p+1f, 0x1.d1f534p-23f, 0x1.bb81b4p-48f, 0x1.629598p-71f},
  {0x1.f84eaep+1f, 0x1.a3ea68p-23f, 0x1.bb81b6p-47f, 0x1.8a5664p-72f},
  {0x1.f09d5ep+1f, 0x1.47d4d2p-23f, 0x1.77036cp-47f, 0x1.8a5664p-71f},
  {0x1.e13abep+1f, 0x1.1f534cp-24f, 0x1.dc0db4p-48f, 0x1.14acc8p-71f},
  {0x1.c2757cp+1f, 0x1.1f534cp-23f, 0x1.dc0db6p-47f, 0x1.4acc9p-74f},
  {0x1.84eafap+1f, 0x1.f534dp-26f, 0x1.b81b6cp-47f, 0x1.4acc98p-73f},
  {0x1.09d5f4p+1f, 0x1.f534d8p-25f, 0x1.7036d8p-47f, 0x1.4acc9cp-72f},
  {0x1.3abe8p-3f, 0x1.f534dcp-24f, 0x1.c0db6p-48f, 0x1.4acc9ep-71f},
  {0x1.3abe8p-2f, 0x1.f534dcp-23f, 0x1.c0db62p-47f, 0x1.2b3278p-72f},
  {0x1.3abe88p-1f, 0x1.ea69bap-23f, 0x1.81b6c4p-47f, 0x1.2b3278p-71f},
  {0x1.3abe8cp+0f, 0x1.d4d376p-23f, 0x1.036d8ap-47f, 0x1.5993cp-73f},
  {0x1.3abe8ep+1f, 0x1.a9a6eep-23f, 0x1.b6c5p-53f, 0x1.5993c4p-72f},
  {0x1.d5f478p-1f, 0x1.534ddcp-23f, 0x1.b6c5p-52f, 0x1.5993c4p-71f},
  {0x1.d5f47cp+0f, 0x1.4d377p-24f, 0x1.b6c52p-51f, 0x1.664f1p-72f},
  {0x1.d5f47cp+1f, 0x1.4d377p-23f, 0x1.b6c52p-50f, 0x1.664f1p-71f},
  {0x1.abe8fap+1f, 0x1.34ddcp-24f, 0x1.b6c528p-49f, 0x1.993c4p-72f},
  {0x1.57d1f4p+1f, 0x1.34ddcp-23f, 0x1.b6c528p-48f, 0x1.993c42p-71f},
  {0x1.5f47d4p+0f, 0x1.a6eep-25f, 0x1.b6c52ap-47f, 0x1.327886p-71f},
  {0x1.5f47d4p+1f, 0x1.a6ee04p-24f, 0x1.6d8a56p-47f, 0x1.93c438p-73f},
  {0x1.7d1f5p+0f, 0x1.a6ee06p-23f, 0x1.b62958p-48f, 0x1.93c438p-72f},
  {0x1.7d1f52p+1f, 0x1.4ddc0cp-23f, 0x1.b62958p-47f, 0x1.93c438p-71f},
  {0x1.f47d4cp+0f, 0x1.377034p-24f, 0x1.6c52b2p-47f, 0x1.278872p-71f},
  {0x1.f47d4cp+1f, 0x1.377036p-23f, 0x1.b14accp-48f, 0x1.3c439p-73f},
  {0x1.e8fa9ap+1f, 0x1.bb81bp-25f, 0x1.b14accp-47f, 0x1.3c439p-72f},
  {0x1.d1f534p+1f, 0x1.bb81b4p-24f, 0x1.629598p-47f, 0x1.3c439p-71f},
  {0x1.a3ea68p+1f, 0x1.bb81b6p-23f, 0x1.8a5664p-48f, 0x1.e21c8p-73f},
  {0x1.47d4d2p+1f, 0x1.77036cp-23f, 0x1.8a5664p-47f, 0x1.e21c8p-72f},
  {0x1.1f534cp+0f, 0x1.dc0db4p-24f, 0x1.14acc8p-47f, 0x1.e21c82p-71f},
  {0x1.1f534cp+1f, 0x1.dc0db6p-23f, 0x1.4acc9p-50f, 0x1.c43904p-71f},
  {0x1.f534dp-2f, 0x1.b81b6cp-23f, 0x1.4acc98p-49f, 0x1.887208p-71f},
  {0x1.f534d8p-1f, 0x1.7036d8p-23f, 0x1.4acc9cp-48f, 0x1.10e41p-71f},
  {0x1.f534dcp+0f, 0x1.c0db6p-24f, 0x1.4acc9ep-47f, 0x1.0e41p-74f},
  {0x1.f534dcp+1f, 0x1.c0db62p-23f, 0x1.2b3278p-48f, 0x1.0e41p-73f},
  {0x1.ea69bap+1f, 0x1.81b6c4p-23f, 0x1.2b3278p-47f, 0x1.0e4104p-72f},
  {0x1.d4d376p+1f, 0x1.036d8ap-23f, 0x1.5993cp-49f, 0x1.0e4106p-71f},
  {0x1.a9a6eep+1f, 0x1.b6c5p-29f, 0x1.5993c4p-48f, 0x1.c820ep-75f},
  {0x1.534ddcp+1f, 0x1.b6c5p-28f, 0x1.5993c4p-47f, 0x1.c820fp-74f},
  {0x1.4d377p+0f, 0x1.b6c52p-27f, 0x1.664f1p-48f, 0x1.c820f8p-73f},
  {0x1.4d377p+1f, 0x1.b6c52p-26f, 0x1.664f1p-47f, 0x1.c820fcp-72f},
  {0x1.34ddcp+0f, 0x1.b6c528p-25f, 0x1.993c4p-48f, 0x1.c820fep-71f},
};

JL_INLINE jl_quadrant_f jl_reduce_pio2(float ax) {  // ax = |x|
  const jl_quadrant_f lo = jl_reduce_pio2_fast(ax);
  uint32_t b;
  std::memcpy(&b, &ax, 4);
  int32_t row = (int32_t)(b >> 23) - 143;
  row = row < 0 ? 0 : row > 111 ? 111 : row;  // lanes of the fast path or inf: any row
  const double m = (double)(int32_t)((b & 0x7fffff) | 0x800000);
  const double a = m * (double)JL_2OPI_F32[row][0];  // mod 4: minus its nearest multiple of 4
  const double a4 = a + 0x1.8p54 - 0x1.8p54;          // (no floor: it does not vectorise here)
  const double s = (a - a4) + m * (double)JL_2OPI_F32[row][1];  // in [-2, 6)
  const double t = s + 0x1.8p52;  // 2^52 (1.5 + k 2^-52): k = nearest integer of s
  uint64_t tb;
  std::memcpy(&tb, &t, 8);
  const double f = (s - (t - 0x1.8p52) + m * (double)JL_2OPI_F32[row][2]) + m * (double)JL_2OPI_F32[row][3];
  const bool big = jl_trig_big(ax);
  const uint32_t qb = (uint32_t)tb & 3;
  return {jl_select(big, (float)(f * 0x1.921fb54442d18p+0), lo.r), lo.q ^ ((lo.q ^ qb) & (0u - big))};
}

JL_INLINE jl_quadrant_d jl_reduce_pio2_fast(double ax) {  // ax = |x| < 2^29
  const double t = __builtin_fma(ax, 0x1.45f306dc9c883p-1, 0x1.8p52);
  uint64_t tb;
  std::memcpy(&tb, &t, 8);
  const double k = t - 0x1.8p52;
  double r = __builtin_fma(k, -0x1.921fb54442d18p+0, ax);
  r = __builtin_fma(k, -0x1.1a62633145c07p-54, r);
  r = __builtin_fma(k, 0x1.f1976b7ed8fbcp-110, r);
  r = jl_select(r < -0.786, -0.786, r);
  r = jl_select(r > 0.786, 0.786, r);
  return {r, tb & 3};
}


// Large arguments, 2^29 <= |x| < inf (Payne-Hanek in double-double): x = m 2^e with an
// integer m = m0 + m1 2^24 + m2 2^48 (m0, m1 < 2^24, m2 < 2^5), 2/pi = sum_n T_n 2^-24(n+1)
// with 24-bit integers T_n (JL_2OPI_F64[n + 2]). With n1 = ceil((e - 1) / 24) and
// w = e - 24 n1 in [-22, 1], the terms of x 2/pi that are not multiples of 4 are
//   V_L = S_L 2^(w - 24 L),  S_L = m0 T_(n1-1+L) + m1 T_(n1+L) + m2 T_(n1+1+L),  L >= 0,
// each S_L an exact integer below 2^50, V_L below 2^(51 - 24 L). V_0, V_1, V_2 are reduced
// mod 4 exactly, their integer parts go to the quadrant, and the fraction is summed in
// double-double down to V_7 (truncation below 2^-140): the doubles closest to a multiple
// of pi/2 are 2^-61 away, so r keeps about 2^-55 relative accuracy.
static const double JL_2OPI_F64[52] = {
  0.0, 0.0, 10680707.0, 7228996.0, 1387004.0, 2578385.0, 16069853.0, 12639074.0,
  9804092.0, 4427841.0, 16666979.0, 11263675.0, 12935607.0, 2387514.0, 4345298.0, 14681673.0,
  3074569.0, 13734428.0, 16653803.0, 1880361.0, 10960616.0, 8533493.0, 3062596.0, 8710556.0,
  7349940.0, 6258241.0, 3772886.0, 3769171.0, 3798172.0, 8675211.0, 12450088.0, 3874808.0,
  9961438.0, 366607.0, 15675153.0, 9132554.0, 7151469.0, 3571407.0, 2607881.0, 12013382.0,
  4155038.0, 6285869.0, 7677882.0, 13102053.0, 15825725.0, 473591.0, 9065106.0, 15363067.0,
  6271263.0, 9264392.0, 5636912.0, 4652155.0,
};

JL_INLINE double jl_u2d(uint64_t u) {  // (double)u for u < 2^52, without int64 conversions
  return jl_bits_to_double((int64_t)(0x4330000000000000ull | u)) - 0x1p52;
}

JL_INLINE double jl_mod4(double v) { return v - 4.0 * __builtin_nearbyint(0.25 * v); }  // in [-2, 2], exact

// (h, l) += v, double-double: h + l exact up to 2^-105 |h|.
JL_INLINE void jl_dd_add(double& h, double& l, double v) {
  const double s = h + v, bv = s - h, e = (h - (s - bv)) + (v - bv);  // s + e = h + v exactly
  const double t = l + e;
  h = s + t;
  l = t - (h - s);
}

JL_INLINE jl_quadrant_d jl_reduce_pio2_big(double ax) {
  uint64_t b;
  std::memcpy(&b, &ax, 8);
  const uint64_t mant = (b & 0x000fffffffffffffull) | 0x0010000000000000ull;
  const double m0 = jl_u2d(mant & 0xffffff), m1 = jl_u2d((mant >> 24) & 0xffffff), m2 = jl_u2d(mant >> 48);
  // n1 = ceil((e - 1) / 24): (e - 1) / 24 is a multiple of 1/24 (no ceil: it does not vectorise)
  const double e = jl_u2d(b >> 52) - 1075.0, n1 = __builtin_nearbyint((e - 1.0) / 24.0 + 23.0 / 48.0);
  const double w = e - 24.0 * n1;
  double fi = n1 + 1.0;  // T_(n1 - 1 + L) is JL_2OPI_F64[i + L]
  fi = jl_select(fi < 0.0, 0.0, jl_select(fi > 42.0, 42.0, fi));  // fast-path lanes, inf, NaN: any i
  uint64_t ib;
  const double ft = fi + 0x1.8p52;
  std::memcpy(&ib, &ft, 8);
  const uint64_t i = ib & 63;
#define JL_T(L) JL_2OPI_F64[i + (L)]
#define JL_V(L) ((m0 * JL_T(L) + m1 * JL_T(L + 1) + m2 * JL_T(L + 2)) * jl_pow2i(w - 24.0 * L))
  double h = jl_mod4(JL_V(0)) + jl_mod4(JL_V(1));  // exact: |h| <= 4, a multiple of 2^-46
  const double k1 = __builtin_nearbyint(h), v2 = jl_mod4(JL_V(2)), k2 = __builtin_nearbyint(v2);
  h -= k1;
  double l = 0.0;
  jl_dd_add(h, l, v2 - k2);  // exact
  const double k3 = __builtin_nearbyint(h);
  h -= k3;
  jl_dd_add(h, l, JL_V(3));
  jl_dd_add(h, l, JL_V(4));
  jl_dd_add(h, l, JL_V(5));
  l += JL_V(6) + JL_V(7);
#undef JL_V
#undef JL_T
  const double t = (k1 + k2 + k3) + 0x1.8p52;  // the quadrant in the low bits
  uint64_t tb;
  std::memcpy(&tb, &t, 8);
  const double r = __builtin_fma(h, 0x1.921fb54442d18p+0, __builtin_fma(h, 0x1.1a62633145c07p-54, l * 0x1.921fb54442d18p+0));
  return {r, tb & 3};
}

JL_INLINE jl_quadrant_d jl_reduce_pio2(double ax) {  // ax = |x|
  const jl_quadrant_d lo = jl_reduce_pio2_fast(ax), hi = jl_reduce_pio2_big(ax);
  const bool big = jl_trig_big(ax);
  return {jl_select(big, hi.r, lo.r), lo.q ^ ((lo.q ^ hi.q) & (0ull - big))};
}

JL_INLINE float jl_sin_poly(float r, float z) {  // sin r, z = r^2
  float p = 0x1.7a8aa6p-19f;
  p = __builtin_fmaf(p, z, -0x1.a053fap-13f);
  p = __builtin_fmaf(p, z, 0x1.111170p-7f);
  p = __builtin_fmaf(p, z, -0x1.555556p-3f);
  return __builtin_fmaf(r * z, p, r);
}

JL_INLINE float jl_cos_poly(float z) {  // cos r, z = r^2
  float p = 0x1.99911cp-16f;
  p = __builtin_fmaf(p, z, -0x1.6c0af4p-10f);
  p = __builtin_fmaf(p, z, 0x1.555548p-5f);
  p = __builtin_fmaf(p, z, -0.5f);
  return __builtin_fmaf(p, z, 1.0f);
}

JL_INLINE double jl_sin_poly(double r, double z) {
  double p = 0x1.5d8b558560ca8p-33;
  p = __builtin_fma(p, z, -0x1.ae5e4b83beadap-26);
  p = __builtin_fma(p, z, 0x1.71de35552b345p-19);
  p = __builtin_fma(p, z, -0x1.a01a019be9216p-13);
  p = __builtin_fma(p, z, 0x1.111111110f730p-7);
  p = __builtin_fma(p, z, -0x1.5555555555548p-3);
  return __builtin_fma(r * z, p, r);
}

JL_INLINE double jl_cos_poly(double z) {
  double p = -0x1.8fa59db198826p-37;
  p = __builtin_fma(p, z, 0x1.1ee9da45af779p-29);
  p = __builtin_fma(p, z, -0x1.27e4f7efab97fp-22);
  p = __builtin_fma(p, z, 0x1.a01a019c8d25bp-16);
  p = __builtin_fma(p, z, -0x1.6c16c16c15009p-10);
  p = __builtin_fma(p, z, 0x1.555555555554bp-5);
  p = __builtin_fma(p, z, -0.5);
  return __builtin_fma(p, z, 1.0);
}

// Quadrant q: sin x = sin r, cos r, -sin r, -cos r; bit 1 of q goes to the sign bit.
JL_INLINE float jl_sin_q(float x, jl_quadrant_f a) {  // a: the reduction of |x|
  const float z = a.r * a.r, v = jl_select(a.q & 1, jl_cos_poly(z), jl_sin_poly(a.r, z));
  uint32_t sx;
  std::memcpy(&sx, &x, 4);
  return jl_flip_sign(v, ((a.q & 2) << 30) ^ (sx & 0x80000000u));
}

JL_INLINE double jl_sin_q(double x, jl_quadrant_d a) {
  const double z = a.r * a.r, v = jl_select(a.q & 1, jl_cos_poly(z), jl_sin_poly(a.r, z));
  uint64_t sx;
  std::memcpy(&sx, &x, 8);
  return jl_flip_sign(v, ((a.q & 2) << 62) ^ (sx & 0x8000000000000000ull));
}

// cos x = sin(|x| + pi/2): quadrant q + 1.
JL_INLINE float jl_cos_q(jl_quadrant_f a) {
  const float z = a.r * a.r, v = jl_select(a.q & 1, jl_sin_poly(a.r, z), jl_cos_poly(z));
  return jl_flip_sign(v, ((a.q + 1) & 2) << 30);
}

JL_INLINE double jl_cos_q(jl_quadrant_d a) {
  const double z = a.r * a.r, v = jl_select(a.q & 1, jl_sin_poly(a.r, z), jl_cos_poly(z));
  return jl_flip_sign(v, ((a.q + 1) & 2) << 62);
}

JL_INLINE float jl_sin(float x) { return jl_sin_q(x, jl_reduce_pio2(__builtin_fabsf(x))); }
JL_INLINE double jl_sin(double x) { return jl_sin_q(x, jl_reduce_pio2(__builtin_fabs(x))); }
JL_INLINE float jl_cos(float x) { return jl_cos_q(jl_reduce_pio2(__builtin_fabsf(x))); }
JL_INLINE double jl_cos(double x) { return jl_cos_q(jl_reduce_pio2(__builtin_fabs(x))); }

JL_INLINE float jl_sqrt(float x) { return __builtin_sqrtf(x); }
JL_INLINE double jl_sqrt(double x) { return __builtin_sqrt(x); }
JL_INLINE float jl_round(float x) { return __builtin_nearbyintf(x); }  // half to even
JL_INLINE double jl_round(double x) { return __builtin_nearbyint(x); }
JL_INLINE float jl_abs(float x) { return __builtin_fabsf(x); }
JL_INLINE double jl_abs(double x) { return __builtin_fabs(x); }

// The kernels of formulas with sin or cos run twice when needed (cpu.py, kernel_source):
// first with the fast reduction only (JL_EXACT false), |= into `big` whether some argument
// was past its range (2^16 in float, 2^29 in double; a simd reduction), then, only if so,
// again with jl_sin / jl_cos (JL_EXACT true), which compute the exact reduction of every
// lane too (a kernel of sin alone: about 8x slower in float, 20x in double).

template <bool EXACT>
JL_INLINE T jl_sin_k(T x, int& big) {
  if (EXACT) return jl_sin(x);
  big |= jl_trig_big(jl_abs(x));
  return jl_sin_q(x, jl_reduce_pio2_fast(jl_abs(x)));
}

template <bool EXACT>
JL_INLINE T jl_cos_k(T x, int& big) {
  if (EXACT) return jl_cos(x);
  big |= jl_trig_big(jl_abs(x));
  return jl_cos_q(jl_reduce_pio2_fast(jl_abs(x)));
}

JL_INLINE T jl_rsqrt(T x) { return jl_select(x == T(0), T(0), T(1) / jl_sqrt(x)); }  // Rsqrt(0) = 0
JL_INLINE T jl_inf() { return __builtin_inf(); }
JL_INLINE T jl_nan() { return __builtin_nan(""); }
JL_INLINE int64_t jl_min64(int64_t a, int64_t b) { return a < b ? a : b; }
JL_INLINE bool jl_signbit(float x) { uint32_t b; std::memcpy(&b, &x, 4); return b >> 31; }
JL_INLINE bool jl_signbit(double x) { uint64_t b; std::memcpy(&b, &x, 8); return b >> 63; }

// Special values as jax.numpy: NaN propagates through sign, relu and clamp (a NaN bound
// too); sign(+-0) = +-0; max and min of zeros as IEEE 754-2019 maximum / minimum (XLA's):
// max(-0, +0) = +0, min(-0, +0) = -0, so relu(-0) = +0.
JL_INLINE T jl_sign(T x) { return jl_select(x > T(0), T(1), jl_select(x < T(0), T(-1), x)); }
JL_INLINE T jl_relu(T x) { return jl_select((x > T(0)) | (x != x), x, T(0)); }
JL_INLINE T jl_clamp(T x, T lo, T hi) {  // min(max(x, lo), hi), NaN if any is NaN
  x = jl_select((x < lo) | (lo != lo) | ((x == lo) & jl_signbit(x)), lo, x);
  return jl_select((x > hi) | (hi != hi) | ((x == hi) & jl_signbit(hi)), hi, x);
}

// exp(f - m) for f <= m, the running max of a log-sum-exp: 1 where f = m = +inf (inf - inf
// would be NaN), 0 where f = -inf (also when m = -inf), NaN where f is NaN.
JL_INLINE T jl_exp_shift(T f, T m) {
  return jl_select(f == jl_inf(), T(1), jl_exp(f - jl_select(m == -jl_inf(), T(0), m)));
}

// Whether value f goes before the K-list entry (v, k) in the order of a stable argsort:
// smaller, or a number where v is NaN (NaN last); an unfilled entry (k < 0) comes last.
// Equal values (+0 and -0 included) keep the earlier column.
JL_INLINE bool jl_kbefore(T f, T v, IDX k) { return k < 0 || f < v || (v != v && f == f); }

// x^y = exp(y log |x|) with pow's special cases: x^0 = 1^y = (-1)^(+-inf) = 1 (NaN
// included), a negative finite x with a non-integer y gives NaN, an odd integer y keeps
// the sign of x (-0 and -inf included).
JL_INLINE T jl_powf(T x, T y) {
  const T a = jl_abs(x), h = T(0.5) * y;
  const bool yint = jl_round(y) == y, yodd = yint & (jl_round(h) != h);  // +-inf: even
  T r = jl_exp(y * jl_log(a));
  r = jl_select((y == T(0)) | (x == T(1)) | ((a == T(1)) & (jl_abs(y) == jl_inf())), T(1), r);
  r = jl_select((x < T(0)) & (x > -jl_inf()) & !yint, jl_nan(), r);
  return jl_select(jl_signbit(x) & yodd, -r, r);
}

// ---------------------------------------------------------------- element-wise math (issue 12)
// Vectorisable like jl_exp (no libm call, no branch: both sides of a range split are
// computed and chosen by jl_select). Polynomials: weighted minimax (Remez) fits by
// bench/fit_math.py (which regenerates the coefficients), rounded to T, highest degree
// first. Largest errors measured, in ulps, float / double, over ~240k samples each against
// float64 / long double references (tests/test_cpu_math.py checks 2.5 / 2.5 for asin, 1.5
// for acos, 2.5 / 2 for atan, 2.5 for atan2, 3 for tanh and sigmoid, 2.5 / 2 for erf,
// 3.5 / 4 for xlogx, 2.5 for sinxdivx; floor exact):
//   asin 2.25 / 2.05, acos 1.02 / 1.09, atan 1.98 / 1.74, atan2 2.28 / 2.29, tanh 2.66 / 2.52,
//   sigmoid 2.27 / 2.33, erf 2.25 / 1.0 (against float64 erf), xlogx 3.08 / 3.48,
//   sinxdivx 1.92 / 1.96.
//   asin  |x| <= 1/2: x + x^3 P(x^2); else pi/2 - 2 asin(s), s = sqrt((1 - |x|) / 2) <= 1/2
//         (1 - |x| is exact there), P of degree 5 (float) / 12 (double), both on [0, 1/4].
//   acos  pi/2 - asin x for |x| <= 1/2, 2 asin(s) for x > 1/2, pi - 2 asin(s) for x < -1/2
//         (no cancellation next to 1: the small results come from s).
//   atan  |x| = a: u = a (a <= tan(pi/8)), (a - 1) / (a + 1) (a <= tan(3pi/8)), else -1 / a;
//         atan a = 0, pi/4 or pi/2 + atan u, |u| <= tan(pi/8); atan u = u + u^3 P(u^2),
//         P of degree 4 / 10. pi/4 and pi/2 as hi + lo pairs.
//   atan2 atan(min / max) of |x|, |y| (an exact 0 or 1 for 0/0 and inf/inf), then
//         pi/2 - . if |y| > |x|, pi - . if x has its sign bit, the sign of y: the special
//         values of C's atan2 (atan2(+-0, -0) = +-pi, atan2(+-inf, -inf) = +-3pi/4, ...).
//   tanh  sign(x) e / (e + 2), e = expm1(2 |x|) (jl_expm1_pos: exp's reduction, expm1 of the
//         reduced argument by its Taylor polynomial: no cancellation near 0); |x| clamped
//         to 10 (float) / 20 (double), where tanh rounds to 1.
//   sigmoid  1 / (1 + e) for x >= 0, e / (1 + e) below, e = exp(-|x|): never overflows,
//         relative accuracy for large negative x.
//   erf   |x| < 1: x P(x^2), P of degree 6 / 11; else 1 - exp(-x^2) / |x| Q(v), v linear in
//         1 / |x| over [1, 4] (float) / [1, 6] (double), past which erf rounds to 1; Q of
//         degree 8 / 20 fitted for the absolute error of erf.
//   xlogx x log x (jl_log), 0 at 0.  sinxdivx  sin(x) / x, 1 at 0.
//   floor nearbyint(x) - (1 where that is above x): exact, -0 stays -0.

JL_INLINE float jl_fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
JL_INLINE double jl_fma(double a, double b, double c) { return __builtin_fma(a, b, c); }

// Horner's rule, coefficients highest degree first (a recursion the compiler unrolls: a
// loop here would stop GCC from vectorising the caller's simd loop).
template <class U>
JL_INLINE U jl_horner(U p, U) { return p; }
template <class U, class... C>
JL_INLINE U jl_horner(U p, U z, U c, C... cs) { return jl_horner(jl_fma(p, z, c), z, cs...); }

// |v| with the sign bit of s.
JL_INLINE float jl_copysign(float v, float s) {
  return jl_flip_sign(__builtin_fabsf(v), (uint32_t)jl_signbit(s) << 31);
}
JL_INLINE double jl_copysign(double v, double s) {
  return jl_flip_sign(__builtin_fabs(v), (uint64_t)jl_signbit(s) << 63);
}

// pi/2 and pi/4 as hi + lo (hi rounded to T, lo the rest).
template <class U> struct jl_pi;
template <> struct jl_pi<float> {
  static constexpr float pio2_hi = 0x1.921fb6p+0f, pio2_lo = -0x1.777a5cp-25f;
  static constexpr float pio4_hi = 0x1.921fb6p-1f, pio4_lo = -0x1.777a5cp-26f;
};
template <> struct jl_pi<double> {
  static constexpr double pio2_hi = 0x1.921fb54442d18p+0, pio2_lo = 0x1.1a62633145c07p-54;
  static constexpr double pio4_hi = 0x1.921fb54442d18p-1, pio4_lo = 0x1.1a62633145c07p-55;
};

JL_INLINE float jl_asin_poly(float s, float z) {  // asin s, z = s^2 <= 1/4
  return jl_fma(s * z, jl_horner(0x1.14e326p-5f, z, 0x1.17dda2p-6f, 0x1.fdcb1ep-6f, 0x1.6d5902p-5f,
                                 0x1.33343cp-4f, 0x1.555554p-3f), s);
}
JL_INLINE double jl_asin_poly(double s, double z) {
  return jl_fma(s * z, jl_horner(0x1.d93907203017fp-6, z, -0x1.eccf9fcf63a14p-7, 0x1.1f1b0fd5c6684p-6,
                                 0x1.62a4ac6e6c8c4p-8, 0x1.529e1899a8e2cp-7, 0x1.7817d8c7723e3p-7,
                                 0x1.c9d08bc73a001p-7, 0x1.1c4d286b7ac66p-6, 0x1.6e8bb25ddfc4bp-6,
                                 0x1.f1c71c19d545p-6, 0x1.6db6db6e38803p-5, 0x1.3333333332e84p-4,
                                 0x1.5555555555556p-3), s);
}

// For a = |x|: asin(a) if not big (a <= 1/2), else asin(sqrt((1 - a) / 2)), from which
// asin a = pi/2 - 2 that; NaN for a > 1. (A struct holding the flag too would stay in
// memory: GCC then leaves the caller's loop scalar.)
template <class U>
JL_INLINE U jl_asin_reduced(U a, bool big) {
  const U z = jl_select(big, (U(1) - a) * U(0.5), a * a);
  return jl_asin_poly(jl_select(big, jl_sqrt(z), a), z);
}

template <class U>
JL_INLINE U jl_asin(U x) {
  typedef jl_pi<U> C;
  const U a = jl_abs(x);
  const bool big = a > U(0.5);
  const U p = jl_asin_reduced(a, big);
  return jl_copysign(jl_select(big, C::pio2_hi - (U(2) * p - C::pio2_lo), p), x);
}

template <class U>
JL_INLINE U jl_acos(U x) {
  typedef jl_pi<U> C;
  const U a = jl_abs(x);
  const bool big = a > U(0.5);
  const U p = jl_asin_reduced(a, big), two_p = U(2) * p;
  const U far = jl_select(x < U(0), U(2) * C::pio2_hi - (two_p - U(2) * C::pio2_lo), two_p);
  return jl_select(big, far, C::pio2_hi - (jl_copysign(p, x) - C::pio2_lo));
}

JL_INLINE float jl_atan_poly(float u) {  // atan u, |u| <= tan(pi/8)
  const float z = u * u;
  return jl_fma(u * z, jl_horner(-0x1.087426p-4f, z, 0x1.b82056p-4f, -0x1.242114p-3f, 0x1.999738p-3f, -0x1.555554p-2f), u);
}
JL_INLINE double jl_atan_poly(double u) {
  const double z = u * u;
  return jl_fma(u * z, jl_horner(-0x1.3a7b9628caba3p-6, z, 0x1.418284f223203p-5, -0x1.a0a53947f006p-5, 0x1.dfe8a357970c7p-5, -0x1.10fa9c85d7f84p-4, 0x1.3b1265d0cc175p-4, -0x1.745d0b49a33bp-4, 0x1.c71c71861d87ep-4, -0x1.2492492437a2dp-3, 0x1.999999999936cp-3, -0x1.5555555555555p-2), u);
}

template <class U>
JL_INLINE U jl_atan(U x) {
  typedef jl_pi<U> C;
  const U a = jl_abs(x);
  const bool mid = a > U(0.41421356237309503), far = a > U(2.4142135623730949);  // tan(pi/8), tan(3pi/8)
  const U num = jl_select(far, U(-1), jl_select(mid, a - U(1), a));
  const U den = jl_select(far, a, jl_select(mid, a + U(1), U(1)));
  const U hi = jl_select(far, C::pio2_hi, jl_select(mid, C::pio4_hi, U(0)));
  const U lo = jl_select(far, C::pio2_lo, jl_select(mid, C::pio4_lo, U(0)));
  return jl_copysign(hi + (jl_atan_poly(num / den) + lo), x);
}

template <class U>
JL_INLINE U jl_atan2(U y, U x) {
  typedef jl_pi<U> C;
  const U ax = jl_abs(x), ay = jl_abs(y);
  const bool swap = ay > ax;
  const U num = jl_select(swap, ax, ay), den = jl_select(swap, ay, ax);  // num <= den
  U t = jl_select(den == U(0), U(0), num / den);  // atan2(+-0, +-0): angle 0 or pi
  t = jl_select(num == jl_inf(), U(1), t);        // both infinite: pi/4 or 3pi/4
  U r = jl_atan(t);
  r = jl_select(swap, C::pio2_hi - (r - C::pio2_lo), r);
  r = jl_select(jl_signbit(x), U(2) * C::pio2_hi - (r - U(2) * C::pio2_lo), r);
  return jl_select((x != x) | (y != y), x + y, jl_copysign(r, y));
}

// expm1(x) for 0 <= x <= 40 (tanh's range): 2^n (q + 1) - 1 = 2^n q + (2^n - 1),
// q = expm1(r) = r (1 + r/2 + r^2/6 + ...), the reduction of jl_exp.
JL_INLINE float jl_expm1_pos(float x) {
  const float n = __builtin_nearbyintf(x * 1.44269504088896341f);
  float r = __builtin_fmaf(n, -0.693145751953125f, x);
  r = __builtin_fmaf(n, -1.42860682030941723212e-6f, r);
  const float q = r * jl_horner(1.0f / 5040.0f, r, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f);
  const float p2 = jl_bits_to_float(((int32_t)n + 127) << 23);
  return __builtin_fmaf(p2, q, p2 - 1.0f);
}

JL_INLINE double jl_expm1_pos(double x) {
  const double n = __builtin_nearbyint(x * 1.4426950408889634074);
  double r = __builtin_fma(n, -0x1.62e42fee00000p-1, x);
  r = __builtin_fma(n, -0x1.a39ef35793c76p-33, r);
  const double q = r * jl_horner(1.0 / 6227020800.0, r, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0,
                                 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0);
  const double p2 = jl_pow2i(n);
  return __builtin_fma(p2, q, p2 - 1.0);
}

template <class U>
JL_INLINE U jl_tanh(U x) {
  U a = jl_abs(x);
  a = jl_select(a > U(sizeof(U) == 4 ? 10 : 20), U(sizeof(U) == 4 ? 10 : 20), a);  // NaN stays NaN
  const U e = jl_expm1_pos(U(2) * a);
  return jl_copysign(e / (e + U(2)), x);
}

template <class U>
JL_INLINE U jl_sigmoid(U x) {
  const U e = jl_exp(-jl_abs(x));
  return jl_select(x < U(0), e, U(1)) / (U(1) + e);
}

JL_INLINE float jl_erf_small(float x) {  // erf x, |x| <= 1
  return x * jl_horner(0x1.496a3p-14f, x * x, -0x1.a3f7p-11f, 0x1.5405b2p-8f, -0x1.b7f90cp-6f, 0x1.ce2cf8p-4f,
                       -0x1.81273ep-2f, 0x1.20dd74p+0f);
}
JL_INLINE double jl_erf_small(double x) {
  return x * jl_horner(-0x1.abae46e6a8916p-31, x * x, 0x1.d71b0e5764b27p-27, -0x1.5c0726d2fea38p-23, 0x1.b97fd3d497dap-20, -0x1.f4ca4d6eb7177p-17, 0x1.f9a2baa8f59c2p-14, -0x1.c02db03dd6b44p-11, 0x1.565bccf92b2cap-8, -0x1.b82ce311fa93cp-6, 0x1.ce2f21a040d16p-4, -0x1.812746b0379bdp-2, 0x1.20dd750429b6dp+0);
}

// exp(a^2) a erfc(a) for 1 <= a <= 4 (float) / 6 (double), as a polynomial in v in [-1, 1].
JL_INLINE float jl_erfc_scaled(float a) {
  const float v = __builtin_fmaf(2.0f / (1.0f - 0.25f), 1.0f / a, -(1.0f + 0.25f) / (1.0f - 0.25f));
  return jl_horner(0x1.f2b3b2p-17f, v, -0x1.3f2f58p-15f, -0x1.4974a2p-16f, 0x1.88cac2p-12f, -0x1.95e3a2p-10f,
                   0x1.f238cep-9f, -0x1.7be97cp-13f, -0x1.078e32p-4f, 0x1.f545fap-2f);
}
JL_INLINE double jl_erfc_scaled(double a) {
  const double v = __builtin_fma(2.0 / (1.0 - 1.0 / 6.0), 1.0 / a, -(1.0 + 1.0 / 6.0) / (1.0 - 1.0 / 6.0));
  return jl_horner(0x1.2e744eade5942p-29, v, -0x1.90f1cb3519d26p-27, 0x1.95d6369801f79p-26,
                   -0x1.13295c468de5dp-26, -0x1.25883802b7673p-25, 0x1.59f627bd9ec01p-23,
                   -0x1.dab92ecfbbda5p-22, 0x1.ed6e8d47beab8p-21, -0x1.5a0bf6d28e0a2p-20,
                   0x1.cebdaef56d49ap-23, 0x1.8bea5e58dce4ep-18, -0x1.903cdb896c237p-16, 0x1.f3429873b0939p-15,
                   -0x1.8637328d701bcp-14, -0x1.475cbefb9ada7p-19, 0x1.4fffd01b13d2ap-11,
                   -0x1.5de04a08ed427p-9, 0x1.979d8ba10ec2ep-8, -0x1.fbbe5ba09d754p-10, -0x1.23f983d74654ap-4,
                   0x1.fc96239a8a6bfp-2);
}

template <class U>
JL_INLINE U jl_erf(U x) {
  const U a = jl_abs(x), amax = U(sizeof(U) == 4 ? 4 : 6);
  const U b = jl_select(a < U(1), U(1), jl_select(a > amax, amax, a));  // NaN stays NaN
  const U big = U(1) - jl_exp(-b * b) / b * jl_erfc_scaled(b);
  return jl_select(a < U(1), jl_erf_small(x), jl_copysign(big, x));
}

JL_INLINE T jl_xlogx(T x) { return jl_select(x == T(0), T(0), x * jl_log(x)); }
JL_INLINE T jl_sinxdivx(T x, T sin_x) { return jl_select(x == T(0), T(1), sin_x / x); }
JL_INLINE T jl_floor(T x) {
  const T r = jl_round(x);
  return r - jl_select(r > x, T(1), T(0));
}
// Round(x, d) with f = 10^d: x where f overflowed T (as jnp.round past the largest power).
JL_INLINE T jl_round_dec(T x, T f) { return jl_select(f == jl_inf(), x, jl_round(x * f) / f); }
JL_INLINE T jl_mod(T x, T m, T off) { return x - m * jl_floor((x - off) / m); }

// One vector register of T (GCC/Clang vector extension; split by the compiler where
// registers are narrower), for the register tiles of the inner-product stage.
typedef T jl_vec __attribute__((vector_size(64)));
#define JL_VW ((int)(64 / sizeof(T)))
JL_INLINE jl_vec jl_vzero() { return jl_vec{}; }
JL_INLINE jl_vec jl_vload(const T* p) { jl_vec v; std::memcpy(&v, p, sizeof v); return v; }
JL_INLINE void jl_vstore(T* p, jl_vec v) { std::memcpy(p, &v, sizeof v); }

// A 64-byte aligned scratch array of n values of U on the heap, freed at scope exit (the
// kernels' large state lives here: a worker thread's stack is a few MiB at most).
template <class U>
struct jl_array {
  U* p;
  explicit jl_array(size_t n) : p((U*)std::aligned_alloc(64, (n * sizeof(U) + 63) / 64 * 64)) {}
  ~jl_array() { std::free(p); }
  jl_array(const jl_array&) = delete;
  jl_array& operator=(const jl_array&) = delete;
};
typedef jl_array<T> jl_buffer;

// ---------------------------------------------------------------- accumulation (jax_lazy.numerics)
// A, the accumulator type of the sum-type reductions: T, or double for float data with
// dtype_acc="float64" (`#define JL_A double` before this prelude).
#ifndef JL_A
#define JL_A T  // (JL_T is #undef-ined above)
#endif
typedef JL_A A;

// Neumaier's compensated addition (sum_scheme="kahan_scheme"): s + c is the running sum,
// c the rounding errors of the additions so far (exact: the larger operand's low part is
// what the addition dropped). Branch-free, so that simd loops vectorise it.
JL_INLINE void jl_kadd(A& s, A& c, A x) {
  const A t = s + x;
  c += jl_select((s < A(0) ? -s : s) >= (x < A(0) ? -x : x), (s - t) + x, (x - t) + s);
  s = t;
}

// The value of a compensated sum: s where it is not finite (an inf or NaN term makes c NaN).
JL_INLINE A jl_total(A s, A c) { return s - s == A(0) ? s + c : s; }

// ---------------------------------------------------------------- vector Min, ArgMin (issue 12)
// Over the components of one vector (the printer folds them pairwise, earlier components
// on the left), as jnp.min / jnp.argmin: NaN wins (ArgMin: the first NaN), min(-0, +0) = -0,
// ties keep the first index.
JL_INLINE T jl_vmin(T a, T b) { return jl_select((b < a) | (b != b) | ((b == a) & jl_signbit(b)), b, a); }

struct jl_argmin_t { T v; T k; };  // a value and its index (as a T, as KeOps' ArgMin)
JL_INLINE jl_argmin_t jl_argmin_join(jl_argmin_t l, jl_argmin_t r) {
  const bool take = (r.v < l.v) | ((r.v != r.v) & (l.v == l.v));
  return {jl_select(take, r.v, l.v), jl_select(take, r.k, l.k)};
}

// ---------------------------------------------------------------- block-sparse ranges (issue 13)
// A ranges kernel's extra input (cpu._packed_ranges), one per batch element, int32:
// [R, S, ranges_i (R x 2), slices_i (R), redranges_j (S x 2)]. Row block k = ranges_i[k]
// reduces over the column intervals redranges_j[slices_i[k-1]:slices_i[k]] (slices_i[-1]
// = 0). The values are unchecked (traced under jit): every one is clamped, so that
// nothing is read out of bounds whatever they are (rows to [0, M), columns to [0, N),
// slices to [0, S]; an interval whose end is before its start is empty).
JL_INLINE int64_t jl_clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

struct jl_ranges {
  const int32_t* ri;   // ranges_i
  const int32_t* sl;   // slices_i
  const int32_t* red;  // redranges_j
  int64_t nr, ns;      // R, S (from the arrays' shapes, not user values)

  explicit jl_ranges(const void* p) {
    const int32_t* h = static_cast<const int32_t*>(p);
    nr = h[0] < 0 ? 0 : h[0];
    ns = h[1] < 0 ? 0 : h[1];
    ri = h + 2;
    sl = ri + 2 * nr;
    red = sl + nr;
  }

  // The next non-empty interval [ja, jz) of rows [s, s1) of redranges_j, clamped to
  // [0, N) and merged with the ones after it that start inside it (their union: fewer,
  // longer column loops); s moves past them. False when none is left.
  bool next(int64_t& s, int64_t s1, int64_t N, int64_t& ja, int64_t& jz) const {
    for (; s < s1; ++s) {
      ja = jl_clamp64(red[2 * s], 0, N);
      jz = jl_clamp64(red[2 * s + 1], 0, N);
      if (ja < jz) break;
    }
    if (s >= s1) return false;
    for (++s; s < s1; ++s) {
      const int64_t a = jl_clamp64(red[2 * s], 0, N), b = jl_clamp64(red[2 * s + 1], 0, N);
      if (a >= b) continue;            // empty: skipped
      if (a < ja || a > jz) break;     // not contiguous with [ja, jz): the next interval
      jz = b > jz ? b : jz;
    }
    return true;
  }

  // Row block k cut to the rows [i0, i1) of the work unit: its rows [a, b) and its
  // intervals' rows [s0, s1) of redranges_j; false when it has no row there or no
  // column at all (its rows keep the empty values).
  // (Clamping to [i0, i1), inside [0, M), clamps to the matrix too.)
  bool block(int64_t k, int64_t N, int64_t i0, int64_t i1,
             int64_t& a, int64_t& b, int64_t& s0, int64_t& s1) const {
    a = jl_clamp64(ri[2 * k], i0, i1);
    b = jl_clamp64(ri[2 * k + 1], i0, i1);
    if (a >= b) return false;
    s0 = k == 0 ? 0 : jl_clamp64(sl[k - 1], 0, ns);
    s1 = jl_clamp64(sl[k], 0, ns);
    int64_t s = s0, ja, jz;
    return next(s, s1, N, ja, jz);
  }
};

// A walk through the column intervals of one row block that hands out pieces of at most
// `cap` columns (the Sum kernel packs the pieces of several narrow intervals side by side
// in its j-stage buffer, so that its lane loops run as long as a dense kernel's).
struct jl_columns {
  const jl_ranges& rg;
  int64_t s, s1, N, jc = 0, jz = 0;  // intervals s.. of s1; the current one's rest [jc, jz)

  jl_columns(const jl_ranges& r, int64_t s0, int64_t s_end, int64_t n) : rg(r), s(s0), s1(s_end), N(n) {}

  // The next piece [first, first + width) of at most cap columns; width 0 at the end.
  int take(int64_t cap, int64_t& first) {
    if (cap <= 0) return 0;
    if (jc >= jz) {
      int64_t ja;
      if (!rg.next(s, s1, N, ja, jz)) return 0;
      jc = ja;
    }
    const int64_t n = jz - jc < cap ? jz - jc : cap;
    first = jc;
    jc += n;
    return static_cast<int>(n);
  }
};

// The (value, index) of the L lanes of Min's state for one (row, component), as the dense
// kernel's write (cpu._min_kernel) finds it: NaN wins (the NaN of the smallest column),
// else the smallest value, ties to the smallest column; lanes with no column (index -1)
// are skipped; none: (+inf, -1). Vectorised (three simd reductions), for the ranges
// kernels: a row of a few blocks has few columns, so this write costs as much as the
// updates. Lanes hold distinct columns, so the value of the chosen one is read exactly
// by or-ing its bits (-0 stays -0). `none` is no column (N).
template <int L>
JL_INLINE void jl_lanes_min(const T* __restrict v, const IDX* __restrict k, IDX none, T& bv, IDX& bk) {
  typedef typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type U;
  int nan = 0;
  T m = jl_inf();
#pragma omp simd reduction(| : nan) reduction(min : m)
  for (int w = 0; w < L; ++w) {
    const bool ok = k[w] >= 0;
    nan |= ok & (v[w] != v[w]);
    m = ok & (v[w] < m) ? v[w] : m;
  }
  IDX best = none;
#pragma omp simd reduction(min : best)
  for (int w = 0; w < L; ++w) {
    const bool hit = (k[w] >= 0) & (((nan != 0) & (v[w] != v[w])) | ((nan == 0) & (v[w] == m)));  // no branch: simd
    best = hit & (k[w] < best) ? k[w] : best;
  }
  U bits = 0;
#pragma omp simd reduction(| : bits)
  for (int w = 0; w < L; ++w) {
    U b;
    std::memcpy(&b, v + w, sizeof b);
    bits |= k[w] == best ? b : U(0);
  }
  std::memcpy(&bv, &bits, sizeof bits);
  bv = best == none ? jl_inf() : bv;
  bk = best == none ? (IDX)-1 : best;
}

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
#include <cstring>

typedef JL_T T;
typedef JL_IDX IDX;

#define JL_INLINE static inline __attribute__((always_inline))

JL_INLINE float jl_bits_to_float(int32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
JL_INLINE double jl_bits_to_double(int64_t b) { double f; std::memcpy(&f, &b, 8); return f; }

JL_INLINE float jl_exp(float x) {
  x = x < -110.0f ? -110.0f : x;  // NaN-preserving clamps: results are 0 / inf there
  x = x > 100.0f ? 100.0f : x;
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

JL_INLINE double jl_exp(double x) {
  x = x < -760.0 ? -760.0 : x;
  x = x > 720.0 ? 720.0 : x;
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
  const int64_t k = (int64_t)n, k1 = k >> 1, k2 = k - k1;
  return p * jl_bits_to_double((k1 + 1023) << 52) * jl_bits_to_double((k2 + 1023) << 52);
}

JL_INLINE float jl_log(float x) { return __builtin_logf(x); }
JL_INLINE double jl_log(double x) { return __builtin_log(x); }
JL_INLINE float jl_sin(float x) { return __builtin_sinf(x); }
JL_INLINE double jl_sin(double x) { return __builtin_sin(x); }
JL_INLINE float jl_cos(float x) { return __builtin_cosf(x); }
JL_INLINE double jl_cos(double x) { return __builtin_cos(x); }
JL_INLINE float jl_sqrt(float x) { return __builtin_sqrtf(x); }
JL_INLINE double jl_sqrt(double x) { return __builtin_sqrt(x); }
JL_INLINE float jl_round(float x) { return __builtin_nearbyintf(x); }  // half to even
JL_INLINE double jl_round(double x) { return __builtin_nearbyint(x); }
JL_INLINE float jl_abs(float x) { return __builtin_fabsf(x); }
JL_INLINE double jl_abs(double x) { return __builtin_fabs(x); }
JL_INLINE T jl_rsqrt(T x) { return x == T(0) ? T(0) : T(1) / jl_sqrt(x); }  // Rsqrt(0) = 0
JL_INLINE T jl_clamp(T x, T lo, T hi) { x = x < lo ? lo : x; return x > hi ? hi : x; }
JL_INLINE T jl_inf() { return __builtin_inf(); }
JL_INLINE int64_t jl_min64(int64_t a, int64_t b) { return a < b ? a : b; }

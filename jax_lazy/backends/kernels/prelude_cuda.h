// jax_lazy CUDA kernel prelude: the compute type T, the storage type S, the index type
// IDX, loads/stores between S and T, and the math functions the formula printer calls
// (jl_*). Pasted by jax_lazy/backends/cuda.py after the text of cuda_abi.h and after
//
//   #define JL_T float|double                       compute (and accumulation) type
//   #define JL_STORAGE 32|64|16|-16                 float32, float64, float16, bfloat16
//   #define JL_IDX int|long long                    int32 / int64 index outputs
//
// NVRTC compiles it with no include path: no standard headers, no cuda_fp16.h (the
// NVRTC of the pip wheel has no builtin copy), only the CUDA math library, which NVRTC
// declares implicitly. float16 / bfloat16 values are raw 16-bit patterns converted here.
//
// Accuracy: the math functions are the CUDA math library's accurate ones (expf, logf,
// sinf, ... : at most 1-2 ulp, full range), not the __expf-style intrinsics; the kernels
// are compiled without --use_fast_math, so sqrt and division are correctly rounded and
// denormals are kept. These are also the functions XLA:GPU's jnp reference uses.

typedef JL_T T;
typedef JL_IDX IDX;

#define JL_DEV __device__ __forceinline__

// codegen.literal spells inf and NaN as GCC builtins, which NVRTC does not know.
#define __builtin_inf() __int_as_float(0x7f800000)
#define __builtin_nan(s) __int_as_float(0x7fc00000)

// ---------------------------------------------------------------- storage <-> compute
#if JL_STORAGE == 16  // IEEE half, through PTX's conversion instructions (round to nearest even)
typedef unsigned short S;
#ifdef __CUDA_ARCH__  // else: a host build of the kernel (tests/cuda_host.py) brings its own
JL_DEV float jl_h2f(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
JL_DEV unsigned short jl_f2h(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
#endif
JL_DEV T jl_ld(const S* p, long long k) { return T(jl_h2f(p[k])); }
JL_DEV void jl_st(S* p, long long k, T x) { p[k] = jl_f2h(float(x)); }
#elif JL_STORAGE == -16  // bfloat16: the upper half of a float32
typedef unsigned short S;
JL_DEV T jl_ld(const S* p, long long k) { return T(__uint_as_float((unsigned)p[k] << 16)); }
JL_DEV void jl_st(S* p, long long k, T x) {
  const unsigned u = __float_as_uint(float(x));
  // round to nearest even on the 16 dropped bits; NaN stays a (quiet) NaN
  const unsigned r = (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  p[k] = (unsigned short)r;
}
#else  // float32 / float64: stored as computed
typedef T S;
JL_DEV T jl_ld(const S* p, long long k) { return p[k]; }
JL_DEV void jl_st(S* p, long long k, T x) { p[k] = x; }
#endif

// ---------------------------------------------------------------- math (float, double)
JL_DEV float jl_exp(float x) { return expf(x); }
JL_DEV double jl_exp(double x) { return exp(x); }
JL_DEV float jl_log(float x) { return logf(x); }
JL_DEV double jl_log(double x) { return log(x); }
JL_DEV float jl_sin(float x) { return sinf(x); }
JL_DEV double jl_sin(double x) { return sin(x); }
JL_DEV float jl_cos(float x) { return cosf(x); }
JL_DEV double jl_cos(double x) { return cos(x); }
JL_DEV float jl_sqrt(float x) { return sqrtf(x); }
JL_DEV double jl_sqrt(double x) { return sqrt(x); }
JL_DEV float jl_round(float x) { return rintf(x); }  // half to even
JL_DEV double jl_round(double x) { return rint(x); }
JL_DEV float jl_abs(float x) { return fabsf(x); }
JL_DEV double jl_abs(double x) { return fabs(x); }
JL_DEV T jl_rsqrt(T x) { return x == T(0) ? T(0) : T(1) / jl_sqrt(x); }  // Rsqrt(0) = 0
JL_DEV T jl_clamp(T x, T lo, T hi) { x = x < lo ? lo : x; return x > hi ? hi : x; }
JL_DEV T jl_inf() { return T(__int_as_float(0x7f800000)); }

// ---------------------------------------------------------------- batch offsets
// Offset (in elements) of input k for batch element b: b unravelled over a.bdims
// (row-major), dotted with the input's batch strides (0 where it broadcasts).
JL_DEV long long jl_boffset(const jl_cuda_args& a, int k, long long b) {
  long long off = 0;
  for (int d = a.nb - 1; d >= 0; --d) {
    const long long q = b % a.bdims[d];
    b /= a.bdims[d];
    off += q * a.in_bstride[k][d];
  }
  return off;
}

// ---------------------------------------------------------------- reduction updates
// One column j of one row: the state lives in the caller's arrays (registers when the
// indices are compile-time constants, i.e. after unrolling). Semantics: see
// jax_lazy/reductions.py and the cpu kernels.

// LogSumExp with weights w (Dw components): running max m, s[e] = sum exp(f - m) w[e].
template <int Dw>
JL_DEV void jl_lse_update(T& m, T* s, const T f, const T* w) {
  const bool up = f > m;                      // a new running max: rescale the sums
  const T ex = jl_exp(up ? m - f : f - m);    // exp(-|f - m|), NaN if f is NaN
  const bool none = f == -jl_inf();           // adds 0 (and skips exp(-inf + inf) = NaN)
#pragma unroll
  for (int e = 0; e < Dw; ++e) s[e] = up ? s[e] * ex + w[e] : none ? s[e] : s[e] + ex * w[e];
  m = up ? f : m;
}

// Min with index, per component: NaN wins (and the first NaN stays); among equal values
// the earlier column (columns come in increasing order) stays: strict <.
template <int D>
JL_DEV void jl_min_update(T* v, IDX* k, const T* f, const IDX j) {
#pragma unroll
  for (int e = 0; e < D; ++e) {
    const bool take = k[e] < 0 || (f[e] != f[e] ? v[e] == v[e] : f[e] < v[e]);
    v[e] = take ? f[e] : v[e];
    k[e] = take ? j : k[e];
  }
}

// The K smallest (value, index) per component, sorted, unfilled slots (index -1) last:
// a value enters when it beats the K-th (NaN never does) and goes after equal values.
template <int D, int K>
JL_DEV void jl_kmin_update(T* v, IDX* k, const T* f, const IDX j) {
#pragma unroll
  for (int e = 0; e < D; ++e) {
    T* ve = v + e * K;
    IDX* ke = k + e * K;
    const T x = f[e];
    if (!(x < ve[K - 1] || (ke[K - 1] < 0 && x == x))) continue;
    int p = K - 1;
    while (p > 0 && (ke[p - 1] < 0 || ve[p - 1] > x)) {
      ve[p] = ve[p - 1];
      ke[p] = ke[p - 1];
      --p;
    }
    ve[p] = x;
    ke[p] = j;
  }
}

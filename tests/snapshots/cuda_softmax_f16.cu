// SumSoftMaxWeight_Reduction(Minus(Sum(Square(Var(0,3,0) - Var(1,3,1)))), Var(2,2,1))
extern "C" __global__ void __launch_bounds__(256) jax_lazy_kernel(const jl_cuda_args a) {
  extern __shared__ __align__(16) unsigned char jl_smem[];  // 256 columns of the j-variables
  T* const ys = (T*)jl_smem;
  const long long i = (long long)blockIdx.x * 256 + threadIdx.x;
  const long long row = i < a.M ? i : a.M - 1;  // threads past M help with the tiles, write nothing
  for (long long b = blockIdx.y; b < a.nbatch; b += gridDim.y) {
    const S* __restrict__ in0 = (const S*)a.in[0] + jl_boffset(a, 0, b);
    const S* __restrict__ in1 = (const S*)a.in[1] + jl_boffset(a, 1, b);
    const S* __restrict__ in2 = (const S*)a.in[2] + jl_boffset(a, 2, b);
    S* __restrict__ out0 = (S*)a.out[0] + b * a.out_bstride[0];
    S* __restrict__ out1 = (S*)a.out[1] + b * a.out_bstride[1];
    const T x0_0 = jl_ld(in0, row * 3);
    const T x0_1 = jl_ld(in0, row * 3 + 1);
    const T x0_2 = jl_ld(in0, row * 3 + 2);
    T m = -jl_inf();
    T s[3] = {};
    for (long long jt = 0; jt < a.N; jt += 256) {
      const int nt = a.N - jt < 256 ? (int)(a.N - jt) : 256;
      __syncthreads();  // the previous tile is consumed
      for (int q = threadIdx.x; q < nt * 3; q += 256) ys[q] = jl_ld(in1, jt * 3 + q);
      for (int q = threadIdx.x; q < nt * 2; q += 256) ys[768 + q] = jl_ld(in2, jt * 2 + q);
      __syncthreads();  // the tile is loaded
      for (int t = 0; t < nt; ++t) {
        const T y1_0 = ys[t * 3];
        const T y1_1 = ys[t * 3 + 1];
        const T y1_2 = ys[t * 3 + 2];
        const T y2_0 = ys[768 + t * 2];
        const T y2_1 = ys[768 + t * 2 + 1];
        const T v8_0 = T(1);
        const T v8_1 = y2_0;
        const T v8_2 = y2_1;
        const T v2_r0_0 = (x0_0 - y1_0);
        const T v3_r0_0 = (v2_r0_0 * v2_r0_0);
        const T v2_r0_1 = (x0_1 - y1_1);
        const T v3_r0_1 = (v2_r0_1 * v2_r0_1);
        const T v2_r0_2 = (x0_2 - y1_2);
        const T v3_r0_2 = (v2_r0_2 * v2_r0_2);
        const T v4_r0_0 = ((v3_r0_0 + v3_r0_1) + v3_r0_2);
        const T v5_r0_0 = (-v4_r0_0);
        const T w[3] = {v8_0, v8_1, v8_2};
        jl_lse_update<3>(m, s, v5_r0_0, w);
      }
    }
    if (i < a.M) {
      #pragma unroll
      for (int e = 1; e < 3; ++e) jl_st(out0, i * 2 + e - 1, m == jl_inf() ? jl_nan() : s[e] / s[0]);  // a +inf column: NaN, as jax.nn.softmax
      jl_st(out1, i, m + jl_log(s[0]));
    }
  }
}

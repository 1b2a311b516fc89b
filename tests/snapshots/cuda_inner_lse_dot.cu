// LogSumExp_Reduction(Sum(Var(0,32,0) * Var(1,32,1)) * Var(2,1,2), Var(3,2,1))
extern "C" __global__ void __launch_bounds__(128) jax_lazy_kernel(const jl_cuda_args a) {
  extern __shared__ __align__(16) unsigned char jl_smem[];  // 32 columns of the j-variables
  T* const ys = (T*)jl_smem;
  T* const xs = (T*)jl_smem + 64;  // x chunk: 16 x (128 + 8)
  T* const yc = (T*)jl_smem + 2240;  // y chunk: 16 x (32 + 8)
  T* const s0 = (T*)jl_smem + 2880;  // 128 x (32 + 1): dot(x0, y1)
  const long long i = (long long)blockIdx.x * 128 + threadIdx.x;
  for (long long b = blockIdx.y; b < a.nbatch; b += gridDim.y) {
    const S* __restrict__ in0 = (const S*)a.in[0] + jl_boffset(a, 0, b);
    const S* __restrict__ in1 = (const S*)a.in[1] + jl_boffset(a, 1, b);
    const S* __restrict__ in2 = (const S*)a.in[2] + jl_boffset(a, 2, b);
    const S* __restrict__ in3 = (const S*)a.in[3] + jl_boffset(a, 3, b);
    S* __restrict__ out0 = (S*)a.out[0] + b * a.out_bstride[0];
    const T p2_0 = jl_ld(in2, 0);
    T m = -jl_inf();
    T s[2] = {};
    for (long long jt = 0; jt < a.N; jt += 32) {
      const int nt = a.N - jt < 32 ? (int)(a.N - jt) : 32;
      __syncthreads();  // the previous tile is consumed
      for (int q = threadIdx.x; q < nt * 2; q += 128) ys[q] = jl_ld(in3, jt * 2 + q);
      {  // s0 = dot(x0_i, y1_j) over 32 components: tensor cores, 3xTF32
        float acc[2][4][4] = {};
        for (int c0 = 0; c0 < 32; c0 += 16) {
          __syncthreads();  // the previous chunk (or tile) is consumed
          jl_stage_rows<128, 16>(xs, in0, (long long)blockIdx.x * 128, a.M, 32, c0);
          jl_stage_cols<128, 16>(yc, in1, jt, nt, 32, c0);
          __syncthreads();  // the chunk is loaded
          jl_tile_mma<128, 16, 3>(acc, xs, yc);
        }
        jl_store_mma(s0, acc);
      }
      __syncthreads();  // the tile is loaded
      for (int t = 0; t < nt; ++t) {
        const T v0_r0_0 = s0[threadIdx.x * 33 + t];
        const T y3_0 = ys[t * 2];
        const T y3_1 = ys[t * 2 + 1];
        const T v2_r0_0 = (v0_r0_0 * p2_0);
        const T w[2] = {y3_0, y3_1};
        jl_lse_update<2>(m, s, v2_r0_0, w);
      }
    }
    if (i < a.M) {
      #pragma unroll
      for (int e = 0; e < 2; ++e) jl_st(out0, i * 2 + e, m + jl_log(s[e]));
    }
  }
}

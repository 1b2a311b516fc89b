// KMin_ArgKMin_Reduction(Sum(Square(Var(0,32,0) - Var(1,32,1))), K=4)
extern "C" __global__ void __launch_bounds__(128) jax_lazy_kernel(const jl_cuda_args a) {
  extern __shared__ __align__(16) unsigned char jl_smem[];
  T* const xs = (T*)jl_smem + 0;  // x chunk: 16 x (128 + 8)
  T* const yc = (T*)jl_smem + 2176;  // y chunk: 16 x (32 + 8)
  T* const s0 = (T*)jl_smem + 2816;  // 128 x (32 + 1): sqdist(x0, y1)
  const long long i = (long long)blockIdx.x * 128 + threadIdx.x;
  for (long long b = blockIdx.y; b < a.nbatch; b += gridDim.y) {
    const S* __restrict__ in0 = (const S*)a.in[0] + jl_boffset(a, 0, b);
    const S* __restrict__ in1 = (const S*)a.in[1] + jl_boffset(a, 1, b);
    S* __restrict__ out0 = (S*)a.out[0] + b * a.out_bstride[0];
    IDX* __restrict__ out1 = (IDX*)a.out[1] + b * a.out_bstride[1];
    T kv[4]; IDX kk[4];  // component e: entries [e*K, e*K + K), sorted
    for (int q = 0; q < 4; ++q) { kv[q] = jl_nan(); kk[q] = -1; }
    for (long long jt = 0; jt < a.N; jt += 32) {
      const int nt = a.N - jt < 32 ? (int)(a.N - jt) : 32;
      {  // s0 = sqdist(x0_i, y1_j) over 32 components: tensor cores, 3xTF32, |x|^2 + |y|^2 - 2<x, y> with a cancellation guard
        float acc[2][4][4] = {};
        float xn = 0.0f, yn = 0.0f;  // |x_row|^2; |y_(jt + threadIdx.x)|^2 in threads < 32
        for (int c0 = 0; c0 < 32; c0 += 16) {
          __syncthreads();  // the previous chunk (or tile) is consumed
          jl_stage_rows<128, 16>(xs, in0, (long long)blockIdx.x * 128, a.M, 32, c0);
          jl_stage_cols<128, 16>(yc, in1, jt, nt, 32, c0);
          __syncthreads();  // the chunk is loaded
          jl_tile_mma<128, 16, 3>(acc, xs, yc);
          jl_stage_norms<128, 16>(xn, yn, xs, yc);
        }
        jl_store_mma(s0, acc);  // <x, y>
        __syncthreads();  // the last chunk is consumed
        if (threadIdx.x < 32) yc[threadIdx.x] = yn;  // the column norms, for every thread
        __syncthreads();  // the column norms and s are complete
        jl_store_sqdist<128>(s0, yc, xn, in0, in1, (long long)blockIdx.x * 128, a.M, jt, nt, 32);
      }
      __syncthreads();  // the tile is loaded
      for (int t = 0; t < nt; ++t) {
        const long long j = jt + t;
        const T v0_r0_0 = s0[threadIdx.x * 33 + t];
        const T f[1] = {v0_r0_0};
        jl_kmin_update<1, 4>(kv, kk, f, (IDX)j);
      }
    }
    if (i < a.M) {
      for (int q = 0; q < 4; ++q) for (int e = 0; e < 1; ++e) {
        jl_st(out0, (i * 4 + q) * 1 + e, kv[e * 4 + q]);
        out1[(i * 4 + q) * 1 + e] = kk[e * 4 + q];
      }
    }
  }
}

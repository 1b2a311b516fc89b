// KMin_ArgKMin_Reduction(Sum(Square(Var(0,32,0) - Var(1,32,1))), K=4)
extern "C" __global__ void __launch_bounds__(128) jax_lazy_kernel(const jl_cuda_args a) {
  extern __shared__ __align__(16) unsigned char jl_smem[];
  T* const xs = (T*)jl_smem + 0;  // x chunk: 8 x (128 + 8)
  T* const yc = (T*)jl_smem + 1088;  // y chunk: 8 x (32 + 8)
  T* const s0 = (T*)jl_smem + 1408;  // 128 x (32 + 1): sqdist(x0, y1)
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
      {  // s0 = sqdist(x0_i, y1_j) over 32 components: register tiles
        T acc[8][4] = {};
        for (int c0 = 0; c0 < 32; c0 += 8) {
          __syncthreads();  // the previous chunk (or tile) is consumed
          jl_stage_rows<128, 8>(xs, in0, (long long)blockIdx.x * 128, a.M, 32, c0);
          jl_stage_cols<128, 8>(yc, in1, jt, nt, 32, c0);
          __syncthreads();  // the chunk is loaded
          jl_tile_fma<128, 8, true>(acc, xs, yc);
        }
        jl_store_fma<128>(s0, acc);
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

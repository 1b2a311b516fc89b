extern "C" void jax_lazy_kernel(const void* const* in_, void* const* out_,
                                int64_t M, int64_t N, int64_t i0, int64_t i1) {
  (void)M;
  const T* __restrict in0 = (const T*)in_[0];
  const T* __restrict in1 = (const T*)in_[1];
  T* __restrict out0 = (T*)out_[0];
  IDX* __restrict out1 = (IDX*)out_[1];
  alignas(64) T fb[512];
  alignas(64) T kv[40];
  alignas(64) IDX kk[40];
  jl_buffer jbuf_(192), sbuf_(64);
  T* __restrict jbuf = jbuf_.p;
  T* __restrict sbuf = sbuf_.p;
  alignas(64) IDX jl_col[64];
  const jl_ranges jl_rg(in_[2]);
  for (int64_t q = i0 * 5; q < i1 * 5; ++q) out0[q] = jl_inf();
  for (int64_t q = i0 * 5; q < i1 * 5; ++q) out1[q] = (IDX)-1;
  const int64_t jl_i0 = i0, jl_i1 = i1;
  for (int64_t jl_k = 0; jl_k < jl_rg.nr; ++jl_k) {
    int64_t i0, i1, jl_s0, jl_s1;
    if (!jl_rg.block(jl_k, N, jl_i0, jl_i1, i0, i1, jl_s0, jl_s1)) continue;
    for (int64_t ib = i0; ib < i1; ib += 8) {
      const int64_t row0 = jl_min64(ib + 0, i1 - 1);
      const T x0_r0_0 = in0[row0 * 3 + 0];
      const T x0_r0_1 = in0[row0 * 3 + 1];
      const T x0_r0_2 = in0[row0 * 3 + 2];
      const int64_t row1 = jl_min64(ib + 1, i1 - 1);
      const T x0_r1_0 = in0[row1 * 3 + 0];
      const T x0_r1_1 = in0[row1 * 3 + 1];
      const T x0_r1_2 = in0[row1 * 3 + 2];
      const int64_t row2 = jl_min64(ib + 2, i1 - 1);
      const T x0_r2_0 = in0[row2 * 3 + 0];
      const T x0_r2_1 = in0[row2 * 3 + 1];
      const T x0_r2_2 = in0[row2 * 3 + 2];
      const int64_t row3 = jl_min64(ib + 3, i1 - 1);
      const T x0_r3_0 = in0[row3 * 3 + 0];
      const T x0_r3_1 = in0[row3 * 3 + 1];
      const T x0_r3_2 = in0[row3 * 3 + 2];
      const int64_t row4 = jl_min64(ib + 4, i1 - 1);
      const T x0_r4_0 = in0[row4 * 3 + 0];
      const T x0_r4_1 = in0[row4 * 3 + 1];
      const T x0_r4_2 = in0[row4 * 3 + 2];
      const int64_t row5 = jl_min64(ib + 5, i1 - 1);
      const T x0_r5_0 = in0[row5 * 3 + 0];
      const T x0_r5_1 = in0[row5 * 3 + 1];
      const T x0_r5_2 = in0[row5 * 3 + 2];
      const int64_t row6 = jl_min64(ib + 6, i1 - 1);
      const T x0_r6_0 = in0[row6 * 3 + 0];
      const T x0_r6_1 = in0[row6 * 3 + 1];
      const T x0_r6_2 = in0[row6 * 3 + 2];
      const int64_t row7 = jl_min64(ib + 7, i1 - 1);
      const T x0_r7_0 = in0[row7 * 3 + 0];
      const T x0_r7_1 = in0[row7 * 3 + 1];
      const T x0_r7_2 = in0[row7 * 3 + 2];
      for (int q = 0; q < 40; ++q) { kv[q] = jl_nan(); kk[q] = (IDX)-1; }
      jl_columns jl_c(jl_rg, jl_s0, jl_s1, N);
      for (;;) {
        int nw = 0;
        for (int64_t jl_a = 0; const int jl_n = jl_c.take(64 - nw, jl_a); nw += jl_n) {
          const int64_t jb = jl_a - nw;
          #pragma omp simd
          for (int w = nw; w < nw + jl_n; ++w) jl_col[w] = (IDX)(jb + w);
          for (int c = 0; c < 3; ++c) {
            #pragma omp simd
            for (int w = nw; w < nw + jl_n; ++w) jbuf[(0 + c) * 64 + w] = in1[c * N + jb + w];
          }
        }
        if (nw == 0) break;
        #pragma omp simd
        for (int w = 0; w < nw; ++w) {
          const T y1_0 = jbuf[0 + w];
          const T v2_r0_0 = (x0_r0_0 - y1_0);
          const T v2_r1_0 = (x0_r1_0 - y1_0);
          const T v2_r2_0 = (x0_r2_0 - y1_0);
          const T v2_r3_0 = (x0_r3_0 - y1_0);
          const T v2_r4_0 = (x0_r4_0 - y1_0);
          const T v2_r5_0 = (x0_r5_0 - y1_0);
          const T v2_r6_0 = (x0_r6_0 - y1_0);
          const T v2_r7_0 = (x0_r7_0 - y1_0);
          const T v3_r0_0 = (v2_r0_0 * v2_r0_0);
          const T v3_r1_0 = (v2_r1_0 * v2_r1_0);
          const T v3_r2_0 = (v2_r2_0 * v2_r2_0);
          const T v3_r3_0 = (v2_r3_0 * v2_r3_0);
          const T v3_r4_0 = (v2_r4_0 * v2_r4_0);
          const T v3_r5_0 = (v2_r5_0 * v2_r5_0);
          const T v3_r6_0 = (v2_r6_0 * v2_r6_0);
          const T v3_r7_0 = (v2_r7_0 * v2_r7_0);
          const T y1_1 = jbuf[64 + w];
          const T v2_r0_1 = (x0_r0_1 - y1_1);
          const T v2_r1_1 = (x0_r1_1 - y1_1);
          const T v2_r2_1 = (x0_r2_1 - y1_1);
          const T v2_r3_1 = (x0_r3_1 - y1_1);
          const T v2_r4_1 = (x0_r4_1 - y1_1);
          const T v2_r5_1 = (x0_r5_1 - y1_1);
          const T v2_r6_1 = (x0_r6_1 - y1_1);
          const T v2_r7_1 = (x0_r7_1 - y1_1);
          const T v3_r0_1 = (v2_r0_1 * v2_r0_1);
          const T v3_r1_1 = (v2_r1_1 * v2_r1_1);
          const T v3_r2_1 = (v2_r2_1 * v2_r2_1);
          const T v3_r3_1 = (v2_r3_1 * v2_r3_1);
          const T v3_r4_1 = (v2_r4_1 * v2_r4_1);
          const T v3_r5_1 = (v2_r5_1 * v2_r5_1);
          const T v3_r6_1 = (v2_r6_1 * v2_r6_1);
          const T v3_r7_1 = (v2_r7_1 * v2_r7_1);
          const T y1_2 = jbuf[128 + w];
          const T v2_r0_2 = (x0_r0_2 - y1_2);
          const T v2_r1_2 = (x0_r1_2 - y1_2);
          const T v2_r2_2 = (x0_r2_2 - y1_2);
          const T v2_r3_2 = (x0_r3_2 - y1_2);
          const T v2_r4_2 = (x0_r4_2 - y1_2);
          const T v2_r5_2 = (x0_r5_2 - y1_2);
          const T v2_r6_2 = (x0_r6_2 - y1_2);
          const T v2_r7_2 = (x0_r7_2 - y1_2);
          const T v3_r0_2 = (v2_r0_2 * v2_r0_2);
          const T v3_r1_2 = (v2_r1_2 * v2_r1_2);
          const T v3_r2_2 = (v2_r2_2 * v2_r2_2);
          const T v3_r3_2 = (v2_r3_2 * v2_r3_2);
          const T v3_r4_2 = (v2_r4_2 * v2_r4_2);
          const T v3_r5_2 = (v2_r5_2 * v2_r5_2);
          const T v3_r6_2 = (v2_r6_2 * v2_r6_2);
          const T v3_r7_2 = (v2_r7_2 * v2_r7_2);
          const T v4_r0_0 = ((v3_r0_0 + v3_r0_1) + v3_r0_2);
          const T v4_r1_0 = ((v3_r1_0 + v3_r1_1) + v3_r1_2);
          const T v4_r2_0 = ((v3_r2_0 + v3_r2_1) + v3_r2_2);
          const T v4_r3_0 = ((v3_r3_0 + v3_r3_1) + v3_r3_2);
          const T v4_r4_0 = ((v3_r4_0 + v3_r4_1) + v3_r4_2);
          const T v4_r5_0 = ((v3_r5_0 + v3_r5_1) + v3_r5_2);
          const T v4_r6_0 = ((v3_r6_0 + v3_r6_1) + v3_r6_2);
          const T v4_r7_0 = ((v3_r7_0 + v3_r7_1) + v3_r7_2);
          fb[0 + w] = v4_r0_0;
          fb[64 + w] = v4_r1_0;
          fb[128 + w] = v4_r2_0;
          fb[192 + w] = v4_r3_0;
          fb[256 + w] = v4_r4_0;
          fb[320 + w] = v4_r5_0;
          fb[384 + w] = v4_r6_0;
          fb[448 + w] = v4_r7_0;
        }
        for (int re = 0; re < 8; ++re) {
          T* v = kv + re * 5; IDX* k = kk + re * 5;
          for (int w = 0; w < nw; ++w) {
            const T f = fb[re * 64 + w];
            if (!jl_kbefore(f, v[4], k[4])) continue;
            int p = 4;
            while (p > 0 && jl_kbefore(f, v[p - 1], k[p - 1])) { v[p] = v[p - 1]; k[p] = k[p - 1]; --p; }
            v[p] = f; k[p] = (IDX)(jl_col[w]);
          }
        }
      }
      for (int r = 0; r < 8; ++r) {
        if (ib + r >= i1) break;
        for (int e = 0; e < 1; ++e) for (int q = 0; q < 5; ++q) {
          out0[((ib + r) * 5 + q) * 1 + e] = (kk[(r * 1 + e) * 5 + q] < 0 ? jl_inf() : kv[(r * 1 + e) * 5 + q]);
          out1[((ib + r) * 5 + q) * 1 + e] = kk[(r * 1 + e) * 5 + q];
        }
      }
    }
  }
}

extern "C" void jax_lazy_kernel(const void* const* in_, void* const* out_,
                                int64_t M, int64_t N, int64_t i0, int64_t i1) {
  (void)M;
  const T* __restrict in0 = (const T*)in_[0];
  const T* __restrict in1 = (const T*)in_[1];
  const T* __restrict in2 = (const T*)in_[2];
  const T* __restrict in3 = (const T*)in_[3];
  T* __restrict out0 = (T*)out_[0];
  const T p2_0 = in2[0];
  jl_buffer jbuf_(5120), sbuf_(1024);
  T* __restrict jbuf = jbuf_.p;
  T* __restrict sbuf = sbuf_.p;
  const jl_ranges jl_rg(in_[4]);
  for (int64_t q = i0 * 2; q < i1 * 2; ++q) out0[q] = T(0.0);
  const int64_t jl_i0 = i0, jl_i1 = i1;
  for (int64_t jl_k = 0; jl_k < jl_rg.nr; ++jl_k) {
    int64_t i0, i1, jl_s0, jl_s1;
    if (!jl_rg.block(jl_k, N, jl_i0, jl_i1, i0, i1, jl_s0, jl_s1)) continue;
    for (int64_t q = i0 * 2; q < i1 * 2; ++q) out0[q] = T(0);
    jl_columns jl_c(jl_rg, jl_s0, jl_s1, N);
    for (;;) {
      int nw = 0;
      for (int64_t jl_a = 0; const int jl_n = jl_c.take(1024 - nw, jl_a); nw += jl_n) {
        const int64_t jb = jl_a - nw;
        for (int c = 0; c < 3; ++c) {
          #pragma omp simd
          for (int w = nw; w < nw + jl_n; ++w) jbuf[(0 + c) * 1024 + w] = in1[c * N + jb + w];
        }
        for (int c = 0; c < 2; ++c) {
          #pragma omp simd
          for (int w = nw; w < nw + jl_n; ++w) jbuf[(3 + c) * 1024 + w] = in3[c * N + jb + w];
        }
      }
      if (nw == 0) break;
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
        T part0_0 = T(0), part0_1 = T(0), part1_0 = T(0), part1_1 = T(0), part2_0 = T(0), part2_1 = T(0), part3_0 = T(0), part3_1 = T(0), part4_0 = T(0), part4_1 = T(0), part5_0 = T(0), part5_1 = T(0), part6_0 = T(0), part6_1 = T(0), part7_0 = T(0), part7_1 = T(0);
        #pragma omp simd reduction(+: part0_0, part0_1, part1_0, part1_1, part2_0, part2_1, part3_0, part3_1, part4_0, part4_1, part5_0, part5_1, part6_0, part6_1, part7_0, part7_1)
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
          const T y1_1 = jbuf[1024 + w];
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
          const T y1_2 = jbuf[2048 + w];
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
          const T v5_r0_0 = (-v4_r0_0);
          const T v5_r1_0 = (-v4_r1_0);
          const T v5_r2_0 = (-v4_r2_0);
          const T v5_r3_0 = (-v4_r3_0);
          const T v5_r4_0 = (-v4_r4_0);
          const T v5_r5_0 = (-v4_r5_0);
          const T v5_r6_0 = (-v4_r6_0);
          const T v5_r7_0 = (-v4_r7_0);
          const T v7_r0_0 = (v5_r0_0 / p2_0);
          const T v7_r1_0 = (v5_r1_0 / p2_0);
          const T v7_r2_0 = (v5_r2_0 / p2_0);
          const T v7_r3_0 = (v5_r3_0 / p2_0);
          const T v7_r4_0 = (v5_r4_0 / p2_0);
          const T v7_r5_0 = (v5_r5_0 / p2_0);
          const T v7_r6_0 = (v5_r6_0 / p2_0);
          const T v7_r7_0 = (v5_r7_0 / p2_0);
          const T v8_r0_0 = jl_exp(v7_r0_0);
          const T v8_r1_0 = jl_exp(v7_r1_0);
          const T v8_r2_0 = jl_exp(v7_r2_0);
          const T v8_r3_0 = jl_exp(v7_r3_0);
          const T v8_r4_0 = jl_exp(v7_r4_0);
          const T v8_r5_0 = jl_exp(v7_r5_0);
          const T v8_r6_0 = jl_exp(v7_r6_0);
          const T v8_r7_0 = jl_exp(v7_r7_0);
          const T y3_0 = jbuf[3072 + w];
          const T v10_r0_0 = (v8_r0_0 * y3_0);
          const T v10_r1_0 = (v8_r1_0 * y3_0);
          const T v10_r2_0 = (v8_r2_0 * y3_0);
          const T v10_r3_0 = (v8_r3_0 * y3_0);
          const T v10_r4_0 = (v8_r4_0 * y3_0);
          const T v10_r5_0 = (v8_r5_0 * y3_0);
          const T v10_r6_0 = (v8_r6_0 * y3_0);
          const T v10_r7_0 = (v8_r7_0 * y3_0);
          const T y3_1 = jbuf[4096 + w];
          const T v10_r0_1 = (v8_r0_0 * y3_1);
          const T v10_r1_1 = (v8_r1_0 * y3_1);
          const T v10_r2_1 = (v8_r2_0 * y3_1);
          const T v10_r3_1 = (v8_r3_0 * y3_1);
          const T v10_r4_1 = (v8_r4_0 * y3_1);
          const T v10_r5_1 = (v8_r5_0 * y3_1);
          const T v10_r6_1 = (v8_r6_0 * y3_1);
          const T v10_r7_1 = (v8_r7_0 * y3_1);
          part0_0 += v10_r0_0;
          part1_0 += v10_r1_0;
          part2_0 += v10_r2_0;
          part3_0 += v10_r3_0;
          part4_0 += v10_r4_0;
          part5_0 += v10_r5_0;
          part6_0 += v10_r6_0;
          part7_0 += v10_r7_0;
          part0_1 += v10_r0_1;
          part1_1 += v10_r1_1;
          part2_1 += v10_r2_1;
          part3_1 += v10_r3_1;
          part4_1 += v10_r4_1;
          part5_1 += v10_r5_1;
          part6_1 += v10_r6_1;
          part7_1 += v10_r7_1;
        }
        if (ib + 0 < i1) { out0[(ib + 0) * 2 + 0] += part0_0; out0[(ib + 0) * 2 + 1] += part0_1; }
        if (ib + 1 < i1) { out0[(ib + 1) * 2 + 0] += part1_0; out0[(ib + 1) * 2 + 1] += part1_1; }
        if (ib + 2 < i1) { out0[(ib + 2) * 2 + 0] += part2_0; out0[(ib + 2) * 2 + 1] += part2_1; }
        if (ib + 3 < i1) { out0[(ib + 3) * 2 + 0] += part3_0; out0[(ib + 3) * 2 + 1] += part3_1; }
        if (ib + 4 < i1) { out0[(ib + 4) * 2 + 0] += part4_0; out0[(ib + 4) * 2 + 1] += part4_1; }
        if (ib + 5 < i1) { out0[(ib + 5) * 2 + 0] += part5_0; out0[(ib + 5) * 2 + 1] += part5_1; }
        if (ib + 6 < i1) { out0[(ib + 6) * 2 + 0] += part6_0; out0[(ib + 6) * 2 + 1] += part6_1; }
        if (ib + 7 < i1) { out0[(ib + 7) * 2 + 0] += part7_0; out0[(ib + 7) * 2 + 1] += part7_1; }
      }
    }
  }
}

extern "C" void jax_lazy_kernel(const void* const* in_, void* const* out_,
                                int64_t M, int64_t N, int64_t i0, int64_t i1) {
  (void)M;
  const T* __restrict in0 = (const T*)in_[0];
  const T* __restrict in1 = (const T*)in_[1];
  const T* __restrict in2 = (const T*)in_[2];
  T* __restrict out0 = (T*)out_[0];
  alignas(64) T fb[512];
  alignas(64) T wb[1024];
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
    T m0 = -jl_inf();
    T m1 = -jl_inf();
    T m2 = -jl_inf();
    T m3 = -jl_inf();
    T m4 = -jl_inf();
    T m5 = -jl_inf();
    T m6 = -jl_inf();
    T m7 = -jl_inf();
    T s0_0 = T(0), s0_1 = T(0);
    T s1_0 = T(0), s1_1 = T(0);
    T s2_0 = T(0), s2_1 = T(0);
    T s3_0 = T(0), s3_1 = T(0);
    T s4_0 = T(0), s4_1 = T(0);
    T s5_0 = T(0), s5_1 = T(0);
    T s6_0 = T(0), s6_1 = T(0);
    T s7_0 = T(0), s7_1 = T(0);
    for (int64_t jb = 0; jb < N; jb += 64) {
      const int nw = (int)jl_min64(64, N - jb);
      #pragma omp simd
      for (int w = 0; w < nw; ++w) {
        const int64_t j = jb + w;
        const T y1_0 = in1[0 * N + j];
        const T y1_1 = in1[1 * N + j];
        const T y1_2 = in1[2 * N + j];
        const T y2_0 = in2[0 * N + j];
        const T y2_1 = in2[1 * N + j];
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
        fb[0 + w] = v5_r0_0;
        fb[64 + w] = v5_r1_0;
        fb[128 + w] = v5_r2_0;
        fb[192 + w] = v5_r3_0;
        fb[256 + w] = v5_r4_0;
        fb[320 + w] = v5_r5_0;
        fb[384 + w] = v5_r6_0;
        fb[448 + w] = v5_r7_0;
        wb[0 + w] = y2_0;
        wb[128 + w] = y2_0;
        wb[256 + w] = y2_0;
        wb[384 + w] = y2_0;
        wb[512 + w] = y2_0;
        wb[640 + w] = y2_0;
        wb[768 + w] = y2_0;
        wb[896 + w] = y2_0;
        wb[64 + w] = y2_1;
        wb[192 + w] = y2_1;
        wb[320 + w] = y2_1;
        wb[448 + w] = y2_1;
        wb[576 + w] = y2_1;
        wb[704 + w] = y2_1;
        wb[832 + w] = y2_1;
        wb[960 + w] = y2_1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[0 + w] > cmax ? fb[0 + w] : cmax;
        if (cmax > m0) { const T sc = jl_exp(m0 - cmax); s0_0 *= sc; s0_1 *= sc; m0 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[0 + w], m0);
          q0 += ex * wb[0 + w];
          q1 += ex * wb[64 + w];
        }
        s0_0 += q0; s0_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[64 + w] > cmax ? fb[64 + w] : cmax;
        if (cmax > m1) { const T sc = jl_exp(m1 - cmax); s1_0 *= sc; s1_1 *= sc; m1 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[64 + w], m1);
          q0 += ex * wb[128 + w];
          q1 += ex * wb[192 + w];
        }
        s1_0 += q0; s1_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[128 + w] > cmax ? fb[128 + w] : cmax;
        if (cmax > m2) { const T sc = jl_exp(m2 - cmax); s2_0 *= sc; s2_1 *= sc; m2 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[128 + w], m2);
          q0 += ex * wb[256 + w];
          q1 += ex * wb[320 + w];
        }
        s2_0 += q0; s2_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[192 + w] > cmax ? fb[192 + w] : cmax;
        if (cmax > m3) { const T sc = jl_exp(m3 - cmax); s3_0 *= sc; s3_1 *= sc; m3 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[192 + w], m3);
          q0 += ex * wb[384 + w];
          q1 += ex * wb[448 + w];
        }
        s3_0 += q0; s3_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[256 + w] > cmax ? fb[256 + w] : cmax;
        if (cmax > m4) { const T sc = jl_exp(m4 - cmax); s4_0 *= sc; s4_1 *= sc; m4 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[256 + w], m4);
          q0 += ex * wb[512 + w];
          q1 += ex * wb[576 + w];
        }
        s4_0 += q0; s4_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[320 + w] > cmax ? fb[320 + w] : cmax;
        if (cmax > m5) { const T sc = jl_exp(m5 - cmax); s5_0 *= sc; s5_1 *= sc; m5 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[320 + w], m5);
          q0 += ex * wb[640 + w];
          q1 += ex * wb[704 + w];
        }
        s5_0 += q0; s5_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[384 + w] > cmax ? fb[384 + w] : cmax;
        if (cmax > m6) { const T sc = jl_exp(m6 - cmax); s6_0 *= sc; s6_1 *= sc; m6 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[384 + w], m6);
          q0 += ex * wb[768 + w];
          q1 += ex * wb[832 + w];
        }
        s6_0 += q0; s6_1 += q1;
      }
      {
        T cmax = -jl_inf();
        #pragma omp simd reduction(max: cmax)
        for (int w = 0; w < nw; ++w) cmax = fb[448 + w] > cmax ? fb[448 + w] : cmax;
        if (cmax > m7) { const T sc = jl_exp(m7 - cmax); s7_0 *= sc; s7_1 *= sc; m7 = cmax; }
        T q0 = T(0), q1 = T(0);
        #pragma omp simd reduction(+: q0, q1)
        for (int w = 0; w < nw; ++w) {
          const T ex = jl_exp_shift(fb[448 + w], m7);
          q0 += ex * wb[896 + w];
          q1 += ex * wb[960 + w];
        }
        s7_0 += q0; s7_1 += q1;
      }
    }
    if (ib + 0 < i1) { out0[(ib + 0) * 2 + 0] = m0 + jl_log(s0_0); out0[(ib + 0) * 2 + 1] = m0 + jl_log(s0_1); }
    if (ib + 1 < i1) { out0[(ib + 1) * 2 + 0] = m1 + jl_log(s1_0); out0[(ib + 1) * 2 + 1] = m1 + jl_log(s1_1); }
    if (ib + 2 < i1) { out0[(ib + 2) * 2 + 0] = m2 + jl_log(s2_0); out0[(ib + 2) * 2 + 1] = m2 + jl_log(s2_1); }
    if (ib + 3 < i1) { out0[(ib + 3) * 2 + 0] = m3 + jl_log(s3_0); out0[(ib + 3) * 2 + 1] = m3 + jl_log(s3_1); }
    if (ib + 4 < i1) { out0[(ib + 4) * 2 + 0] = m4 + jl_log(s4_0); out0[(ib + 4) * 2 + 1] = m4 + jl_log(s4_1); }
    if (ib + 5 < i1) { out0[(ib + 5) * 2 + 0] = m5 + jl_log(s5_0); out0[(ib + 5) * 2 + 1] = m5 + jl_log(s5_1); }
    if (ib + 6 < i1) { out0[(ib + 6) * 2 + 0] = m6 + jl_log(s6_0); out0[(ib + 6) * 2 + 1] = m6 + jl_log(s6_1); }
    if (ib + 7 < i1) { out0[(ib + 7) * 2 + 0] = m7 + jl_log(s7_0); out0[(ib + 7) * 2 + 1] = m7 + jl_log(s7_1); }
  }
}

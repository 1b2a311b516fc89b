// Hand-written Gaussian kernel sum: the yardstick of bench/run.py.
//
//   out[i] = sum_j exp(-|x_i - y_j|^2 / (2 sigma^2)) * b[j],   D = 3, float32
//
// Layout: x is (M, 3) row-major, y is passed transposed (3, N) so that the simd
// loop over j loads each coordinate contiguously, b is (N,).
//
// Work split: the rows are cut into two contiguous halves, one std::thread each.
// Inside a thread, the columns are processed in blocks of JB (the block of y and b
// stays in L1) and, for each block, R rows at a time: each loaded y_j is reused R
// times and the R partial sums live in vector registers (`omp simd reduction`).
// Each block's float partial sum is added to a double accumulator per row, so the
// float32 rounding error grows with JB / lanes instead of N / lanes.
//
// exp is our own vectorisable version (Cody-Waite range reduction + degree-6
// polynomial), valid for the arguments met here (t <= 0); see fast_exp below.
//
// Build: g++ -O3 -march=native -fno-math-errno -fopenmp-simd -shared -fPIC
//        -std=c++17 -pthread yardstick.cpp -o libyardstick.so

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int64_t JB = 2048;  // columns per block: 4 * 2048 * 4 bytes = 32 KiB of y and b
constexpr int R = 4;          // rows per register block

template <class To, class From>
inline To bit_cast(From v) {
  return __builtin_bit_cast(To, v);
}

// exp(t) for t <= 0 (t > 88 would overflow; not needed for a Gaussian kernel).
//   t = n ln2 + r, |r| <= ln2 / 2. n = round(t / ln2) by the "magic number" trick: adding
//   1.5 * 2^23 rounds to an integer held in the low mantissa bits (branch-free, and
//   vectorisable where floorf and float->int conversions are not, with GCC 12 + AVX-512).
//   ln2 is split in a high part (n * ln2_hi exact for |n| < 2^9) and a low part
//   (Cody-Waite), so r is accurate to ~1 ulp; e^r by its Taylor polynomial of degree 6
//   (remainder < 1.2e-7 relative), Horner form; 2^n is written into the exponent bits.
//   Below t = -87 (e^t < 1.7e-38) the result is flushed to 0.
inline float fast_exp(float t) {
  const float log2e = 1.44269504088896341f;
  const float ln2_hi = 0.693359375f;
  const float ln2_lo = -2.12194440e-4f;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float tc = t > -87.0f ? t : -87.0f;
  const float k = tc * log2e + magic;
  const float n = k - magic;
  const float r = (tc - n * ln2_hi) - n * ln2_lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (bit_cast<int32_t>(k) - bit_cast<int32_t>(magic) + 127) << 23;
  return t < -87.0f ? 0.0f : p * bit_cast<float>(bits);
}

// Partial sums of rows [i, i + R) over columns [j0, j1).
inline void block_sum(const float* x, const float* y0, const float* y1, const float* y2, const float* b,
                      int64_t i, int64_t j0, int64_t j1, float c, float* part) {
  float xs[R][3];
  for (int r = 0; r < R; ++r)
    for (int d = 0; d < 3; ++d) xs[r][d] = x[(i + r) * 3 + d];
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (int64_t j = j0; j < j1; ++j) {
    const float u = y0[j], v = y1[j], w = y2[j], bj = b[j];
    float s[R];
    for (int r = 0; r < R; ++r) {
      const float du = xs[r][0] - u, dv = xs[r][1] - v, dw = xs[r][2] - w;
      s[r] = fast_exp(c * (du * du + dv * dv + dw * dw)) * bj;
    }
    a0 += s[0];
    a1 += s[1];
    a2 += s[2];
    a3 += s[3];
  }
  part[0] = a0;
  part[1] = a1;
  part[2] = a2;
  part[3] = a3;
}

// Rows [i0, i1) of the output; x_pad holds the rows padded to a multiple of R.
void rows(const float* x_pad, const float* yt, const float* b, int64_t N, float c, int64_t i0, int64_t i1,
          float* out) {
  const float *y0 = yt, *y1 = yt + N, *y2 = yt + 2 * N;
  std::vector<double> acc(static_cast<size_t>(i1 - i0), 0.0);
  float part[R];
  for (int64_t j0 = 0; j0 < N; j0 += JB) {
    const int64_t j1 = std::min(N, j0 + JB);
    for (int64_t i = i0; i < i1; i += R) {
      block_sum(x_pad, y0, y1, y2, b, i, j0, j1, c, part);
      for (int r = 0; r < R && i + r < i1; ++r) acc[i + r - i0] += part[r];
    }
  }
  for (int64_t i = i0; i < i1; ++i) out[i] = static_cast<float>(acc[i - i0]);
}

}  // namespace

extern "C" {

// out (M,) = sum_j exp(-|x_i - y_j|^2 / (2 sigma^2)) b_j; x (M, 3), yt (3, N), b (N,).
// nthreads <= 0 means std::thread::hardware_concurrency().
void yardstick_gauss3(const float* x, const float* yt, const float* b, float* out, int64_t M, int64_t N,
                      float sigma, int nthreads) {
  if (nthreads <= 0) nthreads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const float c = -1.0f / (2.0f * sigma * sigma);
  // Pad x to a multiple of R rows (repeating the last row) so blocks never read past it.
  const int64_t Mp = (M + R - 1) / R * R;
  std::vector<float> x_pad(static_cast<size_t>(Mp) * 3);
  std::memcpy(x_pad.data(), x, sizeof(float) * M * 3);
  for (int64_t i = M; i < Mp; ++i) std::memcpy(&x_pad[i * 3], &x[(M - 1) * 3], 3 * sizeof(float));
  // Contiguous row ranges, each a multiple of R long (except the last).
  const int64_t per = (M + nthreads - 1) / nthreads;
  const int64_t step = (per + R - 1) / R * R;
  std::vector<std::thread> pool;
  for (int t = 0; t < nthreads; ++t) {
    const int64_t i0 = t * step, i1 = std::min(M, i0 + step);
    if (i0 >= i1) break;
    pool.emplace_back(rows, x_pad.data(), yt, b, N, c, i0, i1, out);
  }
  for (auto& th : pool) th.join();
}

}  // extern "C"

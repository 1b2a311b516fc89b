// XLA FFI handler "jax_lazy_cpu": runs a generated kernel (see registry.h for
// its ABI) over every batch element and row chunk of one reduction call.
//
// Operands: any number of buffers (RemainingArgs); results: any number of
// buffers (RemainingRets). Attributes:
//   kernel_key string    the kernel's key (registry.h); a key this process has not
//                        registered is looked up in the kernel cache (resolver.h)
//   M, N       int64     rows (i) and columns (j) of the symbolic matrix
//   batch      int64[nb] output batch shape (may be empty)
//   in_batch   int64[nin * nb] batch shape of each input, left-padded with 1s;
//                        an entry is 1 (broadcast) or equal to batch[d]
//   row_block  int64 >= 1: rows per work unit are a multiple of it
//
// Buffers: input k is (*in_batch[k], <slice>) and output k is
// (*batch, M, width_k), both row-major. Under jax.vmap with
// vmap_method="broadcast_all" every operand and result gets the same extra
// leading axes, which are not described by the attributes: they are inferred
// from the rank of the results (rank(out) - nb - 2) and treated as extra
// (non-broadcast) batch axes.
//
// Work units are (batch element, chunk of rows); small calls (M*N*B < 2^16)
// run in the calling thread, larger ones on the persistent pool
// (thread_pool.h). Inconsistent attributes/buffers give kInvalidArgument, a
// kernel that is neither registered nor in the cache kNotFound: never a crash.

#if !JAX_LAZY_HAVE_XLA_FFI
#error "cpu_handler.cc needs the XLA FFI headers (jaxlib's include dir); see CMakeLists.txt"
#endif

#include "cpu_handler.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ffi_common.h"
#include "registry.h"
#include "resolver.h"
#include "thread_pool.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jax_lazy {
namespace {

// Below this many (i, j) pairs a call runs single-threaded in the caller.
constexpr double kParallelThreshold = 65536.0;
// Work units per thread aimed at (load balance vs per-unit overhead).
constexpr int64_t kUnitsPerThread = 4;

// Everything a work unit needs, shared read-only by all threads of a call.
struct CallPlan {
  KernelFn kernel = nullptr;
  int64_t M = 0, N = 0;
  int64_t nin = 0, nout = 0;
  int64_t naxes = 0;        // batch axes: extra (vmap) axes + nb
  int64_t chunk = 0;        // rows per unit
  int64_t chunks_per_b = 1;
  const int64_t* dims = nullptr;        // [naxes] full batch shape
  const char* const* in_base = nullptr;   // [nin]
  const int64_t* in_stride = nullptr;     // [nin * naxes] bytes per coordinate step
  char* const* out_base = nullptr;        // [nout]
  const int64_t* out_slice = nullptr;     // [nout] bytes per batch element
};

// Fills the pointers of batch element b.
inline void SlicePointers(const CallPlan& p, int64_t b, const void** in,
                          void** out, int64_t* coord) {
  int64_t rest = b;
  for (int64_t d = p.naxes - 1; d >= 0; --d) {
    coord[d] = rest % p.dims[d];
    rest /= p.dims[d];
  }
  for (int64_t k = 0; k < p.nin; ++k) {
    int64_t offset = 0;
    const int64_t* stride = p.in_stride + k * p.naxes;
    for (int64_t d = 0; d < p.naxes; ++d) offset += coord[d] * stride[d];
    in[k] = p.in_base[k] + offset;
  }
  for (int64_t k = 0; k < p.nout; ++k) out[k] = p.out_base[k] + b * p.out_slice[k];
}

void RunUnit(void* ctx, int64_t unit) {
  const CallPlan& p = *static_cast<const CallPlan*>(ctx);
  const int64_t b = unit / p.chunks_per_b;
  const int64_t i0 = (unit % p.chunks_per_b) * p.chunk;
  const int64_t i1 = std::min(p.M, i0 + p.chunk);
  SmallVec<const void*, 16> in(p.nin);
  SmallVec<void*, 8> out(p.nout);
  SmallVec<int64_t, 8> coord(p.naxes);
  SlicePointers(p, b, in.data(), out.data(), coord.data());
  p.kernel(in.data(), out.data(), p.M, p.N, i0, i1);
}

ffi::Error Invalid(std::string message) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                    "jax_lazy_cpu: " + std::move(message));
}

// The kernel registered under `key`, loading it from the kernel cache if needed
// (a module exported by another process); nullptr and `why` when there is none.
KernelFn FindKernel(std::string_view key, std::string& why) {
  if (KernelFn kernel = LookupKernel(key)) return kernel;
  why = ResolveKernel("cpu", key);
  KernelFn kernel = LookupKernel(key);
  if (kernel == nullptr && why.empty()) why = "the resolver registered nothing";
  return kernel;
}

ffi::Error CpuImpl(ffi::RemainingArgs args, ffi::RemainingRets rets,
                   std::string_view kernel_key, int64_t M, int64_t N,
                   ffi::Span<const int64_t> batch,
                   ffi::Span<const int64_t> in_batch, int64_t row_block) {
  std::string why;
  const KernelFn kernel = FindKernel(kernel_key, why);
  if (kernel == nullptr) {
    return ffi::Error(ffi::ErrorCode::kNotFound,
                      "jax_lazy_cpu: kernel " + std::string(kernel_key) + " is not loaded: " + why);
  }
  const int64_t nin = static_cast<int64_t>(args.size());
  const int64_t nout = static_cast<int64_t>(rets.size());
  if (M < 0 || N < 0) {
    return Invalid("M and N must be >= 0, got M=" + std::to_string(M) +
                   ", N=" + std::to_string(N));
  }
  if (row_block < 1) {
    return Invalid("row_block must be >= 1, got " + std::to_string(row_block));
  }
  BatchLayout layout;
  if (ffi::Error e = MakeBatchLayout("jax_lazy_cpu", args, rets, nout, M, batch, in_batch, layout);
      e.failure()) {
    return e;
  }
  const int64_t naxes = layout.naxes;
  const int64_t B = layout.count;

  // The layout counts elements; the kernels get byte pointers.
  SmallVec<char*, 8> out_base(nout);
  SmallVec<int64_t, 8> out_slice(nout);
  for (int64_t k = 0; k < nout; ++k) {
    ffi::AnyBuffer buf = **rets.get<ffi::AnyBuffer>(k);
    const std::size_t width = ffi::ByteWidth(buf.element_type());
    if (width == 0) return Invalid("output " + std::to_string(k) + " has no byte width");
    out_base[k] = static_cast<char*>(buf.untyped_data());
    out_slice[k] = static_cast<int64_t>(width) * layout.out_row[k];
  }
  SmallVec<const char*, 16> in_base(nin);
  SmallVec<int64_t, 32> in_stride(nin * naxes);
  for (int64_t k = 0; k < nin; ++k) {
    const ffi::AnyBuffer buf = *args.get<ffi::AnyBuffer>(k);
    const std::size_t width = ffi::ByteWidth(buf.element_type());
    if (width == 0) return Invalid("input " + std::to_string(k) + " has no byte width");
    for (int64_t d = 0; d < naxes; ++d) {
      in_stride[k * naxes + d] = static_cast<int64_t>(width) * layout.in_step[k * naxes + d];
    }
    in_base[k] = static_cast<const char*>(buf.untyped_data());
  }
  if (B == 0 || M == 0) return ffi::Error::Success();

  CallPlan plan;
  plan.kernel = kernel;
  plan.M = M;
  plan.N = N;
  plan.nin = nin;
  plan.nout = nout;
  plan.naxes = naxes;
  plan.dims = layout.dims.data();
  plan.in_base = in_base.data();
  plan.in_stride = in_stride.data();
  plan.out_base = out_base.data();
  plan.out_slice = out_slice.data();

  const double pairs = static_cast<double>(M) * static_cast<double>(std::max<int64_t>(N, 1)) *
                       static_cast<double>(B);
  const int threads = pairs < kParallelThreshold ? 1 : NumThreads();
  if (threads <= 1) {
    // Serial: no pool interaction at all.
    SmallVec<const void*, 16> in(nin);
    SmallVec<void*, 8> out(nout);
    SmallVec<int64_t, 8> coord(naxes);
    for (int64_t b = 0; b < B; ++b) {
      SlicePointers(plan, b, in.data(), out.data(), coord.data());
      kernel(in.data(), out.data(), M, N, 0, M);
    }
    return ffi::Error::Success();
  }

  // Rows per unit: about B*M / (threads * kUnitsPerThread), a multiple of
  // row_block, at most M (a unit never spans two batch elements).
  const int64_t target_units = static_cast<int64_t>(threads) * kUnitsPerThread;
  int64_t chunk = (B * M + target_units - 1) / target_units;
  chunk = ((chunk + row_block - 1) / row_block) * row_block;
  if (chunk >= M) chunk = M;
  plan.chunk = chunk;
  plan.chunks_per_b = (M + chunk - 1) / chunk;
  ParallelFor(B * plan.chunks_per_b, &RunUnit, &plan);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jax_lazy

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxLazyCpuHandler, jax_lazy::CpuImpl,
                              ffi::Ffi::Bind()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<std::string_view>("kernel_key")
                                  .Attr<int64_t>("M")
                                  .Attr<int64_t>("N")
                                  .Attr<ffi::Span<const int64_t>>("batch")
                                  .Attr<ffi::Span<const int64_t>>("in_batch")
                                  .Attr<int64_t>("row_block"));

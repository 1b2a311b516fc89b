// XLA FFI handler "jax_lazy_cuda": launches one generated CUDA kernel (ABI:
// jax_lazy/backends/kernels/cuda_abi.h) per reduction call, on XLA's stream.
//
// Operands: up to JL_MAX_INPUTS buffers (RemainingArgs); results: 1 to
// JL_MAX_OUTPUTS buffers (RemainingRets). Attributes, all int64:
//   kernel_key      string: the kernel's key in the CUDA kernel registry
//                   (cuda_registry.h); a key this process has not registered is
//                   looked up in the kernel cache (resolver.h)
//   M, N            rows (i) and columns (j) of the symbolic matrix, >= 0
//   batch           int64[nb] output batch shape (may be empty)
//   in_batch        int64[nin * nb] batch shape of each input, left-padded with 1s;
//                   an entry is 1 (broadcast) or equal to batch[d]
//   rows_per_block  >= 1: output rows per thread block
//   block_threads   1..1024: threads per block
//   shared_bytes    >= 0: dynamic shared memory per block (> 48 KiB is opted into)
//
// Buffers, as for the CPU handler: input k is (*in_batch[k], <slice>) and output k
// is (*batch, M, width_k), row-major. Under jax.vmap with
// vmap_method="broadcast_all" every operand and result gets the same extra leading
// axes, inferred from the rank of the results (rank(out) - nb - 2) and passed to
// the kernel as leading, non-broadcast batch axes (extra + nb <= JL_MAX_BATCH).
//
// Launch: grid = (ceil(M / rows_per_block), min(nbatch, JL_MAX_GRID_Y)),
// block = (block_threads), the jl_cuda_args struct by value as the only parameter.
// Asynchronous: the handler never synchronises with the host. M == 0 or an empty
// batch launches nothing.
//
// Errors (never a crash): kInvalidArgument for attributes or buffers that do not
// fit together, kNotFound for a kernel neither registered nor cached, kFailedPrecondition when the
// driver is unusable, kInternal for module load / launch failures (with the
// driver's error name and text).

#if !JAX_LAZY_HAVE_XLA_FFI
#error "cuda_handler.cc needs the XLA FFI headers (jaxlib's include dir); see CMakeLists.txt"
#endif

#include "cuda_handler.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "cuda_abi.h"
#include "cuda_driver.h"
#include "cuda_registry.h"
#include "ffi_common.h"
#include "resolver.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// Kernel parameters are limited to 4 KiB on every architecture we target.
static_assert(sizeof(jl_cuda_args) <= 4096, "jl_cuda_args exceeds the kernel parameter limit");

namespace jax_lazy {
namespace {

constexpr int64_t kMaxBlockThreads = 1024;
constexpr int64_t kMaxGridX = INT32_MAX;  // 2^31 - 1

ffi::Error Fail(ffi::ErrorCode code, std::string message) {
  return ffi::Error(code, "jax_lazy_cuda: " + std::move(message));
}

ffi::Error Invalid(std::string message) {
  return Fail(ffi::ErrorCode::kInvalidArgument, std::move(message));
}

std::string Str(int64_t v) { return std::to_string(v); }

ffi::Error CheckLaunchAttrs(int64_t M, int64_t N, int64_t rows_per_block,
                            int64_t block_threads, int64_t shared_bytes) {
  if (M < 0 || N < 0) return Invalid("M and N must be >= 0, got M=" + Str(M) + ", N=" + Str(N));
  if (rows_per_block < 1) return Invalid("rows_per_block must be >= 1, got " + Str(rows_per_block));
  if (block_threads < 1 || block_threads > kMaxBlockThreads) {
    return Invalid("block_threads must be in [1, 1024], got " + Str(block_threads));
  }
  if (shared_bytes < 0 || shared_bytes > INT_MAX) {
    return Invalid("shared_bytes must be in [0, 2^31), got " + Str(shared_bytes));
  }
  if ((M + rows_per_block - 1) / rows_per_block > kMaxGridX) {
    return Invalid("ceil(M / rows_per_block) = ceil(" + Str(M) + " / " + Str(rows_per_block) +
                   ") exceeds the grid's x limit 2^31 - 1");
  }
  return ffi::Error::Success();
}

// Outputs 0..nout-1 and the inputs: checks them (ffi_common.h: MakeBatchLayout)
// and fills a.in, a.out and the batch axes of `a` (the extra vmapped axes, then
// `batch`; elements per step of each axis in each input's own batch shape, 0 on
// broadcast axes).
ffi::Error FillBuffers(ffi::RemainingArgs args, ffi::RemainingRets rets, int64_t nout, int64_t M,
                       ffi::Span<const int64_t> batch, ffi::Span<const int64_t> in_batch,
                       jl_cuda_args& a) {
  const int64_t nin = static_cast<int64_t>(args.size());
  if (nout < 1 || nout > JL_MAX_OUTPUTS) {
    return Invalid("the call has " + Str(nout) + " outputs, expected 1 to " + Str(JL_MAX_OUTPUTS));
  }
  if (nin > JL_MAX_INPUTS) {
    return Invalid("the call has " + Str(nin) + " inputs, at most " + Str(JL_MAX_INPUTS) +
                   " are supported");
  }
  BatchLayout layout;
  if (ffi::Error e = MakeBatchLayout("jax_lazy_cuda", args, rets, nout, M, batch, in_batch, layout);
      e.failure()) {
    return e;
  }
  const int64_t naxes = layout.naxes;
  if (naxes > JL_MAX_BATCH) {
    return Invalid(Str(naxes) + " batch axes (" + Str(layout.extra) + " vmapped + " +
                   Str(naxes - layout.extra) + ") exceed JL_MAX_BATCH = " + Str(JL_MAX_BATCH));
  }
  a.nb = static_cast<int>(naxes);
  for (int64_t d = 0; d < naxes; ++d) a.bdims[d] = layout.dims[d];
  a.nbatch = layout.count;
  for (int64_t k = 0; k < nout; ++k) {
    a.out[k] = (**rets.get<ffi::AnyBuffer>(k)).untyped_data();
    a.out_bstride[k] = layout.out_row[k];
  }
  a.nin = static_cast<int>(nin);
  for (int64_t k = 0; k < nin; ++k) {
    a.in[k] = (*args.get<ffi::AnyBuffer>(k)).untyped_data();
    for (int64_t d = 0; d < naxes; ++d) a.in_bstride[k][d] = layout.in_step[k * naxes + d];
  }
  return ffi::Error::Success();
}

// Makes `ctx` current for the guard's lifetime (only used when XLA left no
// context current on this thread; it normally does).
class PushedContext {
 public:
  PushedContext(const CudaDriverApi& d, CUcontext ctx) : d_(d) {
    pushed_ = d_.cuCtxPushCurrent(ctx) == kCudaSuccess;
  }
  ~PushedContext() {
    CUcontext ignored;
    if (pushed_) d_.cuCtxPopCurrent(&ignored);
  }
  bool ok() const { return pushed_; }

 private:
  const CudaDriverApi& d_;
  bool pushed_ = false;
};

ffi::Error Launch(const CudaDriverApi& d, CUstream stream, CUcontext ctx, std::string_view kernel_key,
                  int64_t rows_per_block, int64_t block_threads, int64_t shared_bytes,
                  jl_cuda_args& a) {
  CudaLookup fn = CudaFunctionFor(d, kernel_key, ctx, shared_bytes);
  if (fn.code == CudaLookupCode::kNotFound) {  // e.g. a module exported by another process
    const std::string why = ResolveKernel("cuda", kernel_key);
    fn = CudaFunctionFor(d, kernel_key, ctx, shared_bytes);
    if (fn.code == CudaLookupCode::kNotFound) {
      return Fail(ffi::ErrorCode::kNotFound, "kernel " + std::string(kernel_key) +
                                                 " is not loaded: " + (why.empty() ? fn.error : why));
    }
  }
  switch (fn.code) {
    case CudaLookupCode::kOk: break;
    case CudaLookupCode::kNotFound: return Fail(ffi::ErrorCode::kNotFound, fn.error);
    case CudaLookupCode::kShared: return Invalid(fn.error);
    case CudaLookupCode::kLoadFailed: return Fail(ffi::ErrorCode::kInternal, fn.error);
  }
  const int64_t grid_x = (a.M + rows_per_block - 1) / rows_per_block;
  const int64_t grid_y = std::min<int64_t>(a.nbatch, JL_MAX_GRID_Y);
  void* params[] = {&a};  // copied by the driver when the launch is enqueued
  const CuResult rc = d.cuLaunchKernel(
      fn.function, static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y), 1,
      static_cast<unsigned>(block_threads), 1, 1, static_cast<unsigned>(shared_bytes), stream,
      params, nullptr);
  if (rc != kCudaSuccess) {
    return Fail(ffi::ErrorCode::kInternal,
                "cuLaunchKernel(grid=(" + Str(grid_x) + ", " + Str(grid_y) + "), block=" +
                    Str(block_threads) + ", shared=" + Str(shared_bytes) + ") failed for " +
                    "kernel " + std::string(kernel_key) + ": " + CudaErrorText(rc));
  }
  return ffi::Error::Success();
}

// Checks the attributes and buffers (outputs 0..nout-1) and packs them into `a`.
ffi::Error Pack(ffi::RemainingArgs args, ffi::RemainingRets rets, int64_t nout, int64_t M,
                int64_t N, ffi::Span<const int64_t> batch, ffi::Span<const int64_t> in_batch,
                int64_t rows_per_block, int64_t block_threads, int64_t shared_bytes,
                jl_cuda_args& a) {
  if (ffi::Error e = CheckLaunchAttrs(M, N, rows_per_block, block_threads, shared_bytes);
      e.failure()) {
    return e;
  }
  a.M = M;
  a.N = N;
  return FillBuffers(args, rets, nout, M, batch, in_batch, a);
}

ffi::Error CudaImpl(CUstream stream, ffi::RemainingArgs args, ffi::RemainingRets rets,
                    std::string_view kernel_key, int64_t M, int64_t N, ffi::Span<const int64_t> batch,
                    ffi::Span<const int64_t> in_batch, int64_t rows_per_block,
                    int64_t block_threads, int64_t shared_bytes) {
  jl_cuda_args a{};
  if (ffi::Error e = Pack(args, rets, static_cast<int64_t>(rets.size()), M, N, batch, in_batch,
                          rows_per_block, block_threads, shared_bytes, a);
      e.failure()) {
    return e;
  }
  if (M == 0 || a.nbatch == 0) return ffi::Error::Success();

  const CudaDriverApi* d = CudaDriver();
  if (d == nullptr) {
    return Fail(ffi::ErrorCode::kFailedPrecondition,
                "the CUDA driver is unusable: " + CudaDriverStatus());
  }
  CUcontext ctx = nullptr;
  CuResult rc = d->cuCtxGetCurrent(&ctx);
  if (rc == kCudaSuccess && ctx != nullptr) {
    return Launch(*d, stream, ctx, kernel_key, rows_per_block, block_threads, shared_bytes, a);
  }
  if (rc == kCudaSuccess) rc = d->cuStreamGetCtx(stream, &ctx);
  if (rc != kCudaSuccess || ctx == nullptr) {
    return Fail(ffi::ErrorCode::kFailedPrecondition,
                "no CUDA context is current and the stream's cannot be found: " +
                    (rc == kCudaSuccess ? std::string("null context") : CudaErrorText(rc)));
  }
  PushedContext pushed(*d, ctx);
  if (!pushed.ok()) {
    return Fail(ffi::ErrorCode::kFailedPrecondition, "cannot make the stream's context current");
  }
  return Launch(*d, stream, ctx, kernel_key, rows_per_block, block_threads, shared_bytes, a);
}

// The dry run: same operands and attributes plus one last result, uint8
// [*extra, sizeof(jl_cuda_args)] (extra: vmapped axes, if any), into every
// sizeof(jl_cuda_args) slot of which the packed struct is copied instead of
// launching. Needs no stream or GPU; host memory only (jax_lazy.backends.cuda_ffi
// registers it for the CPU platform). kernel_key is not looked up.
ffi::Error DryRunImpl(ffi::RemainingArgs args, ffi::RemainingRets rets, std::string_view /*kernel_key*/,
                      int64_t M, int64_t N, ffi::Span<const int64_t> batch,
                      ffi::Span<const int64_t> in_batch, int64_t rows_per_block,
                      int64_t block_threads, int64_t shared_bytes) {
  const std::string wanted = "dry run: the last result must be uint8[*extra, " +
                             Str(sizeof(jl_cuda_args)) + "]";
  const int64_t nout = static_cast<int64_t>(rets.size()) - 1;
  if (nout < 0) return Invalid(wanted);
  auto dump = rets.get<ffi::AnyBuffer>(nout);
  if (!dump.has_value() || (**dump).element_type() != ffi::DataType::U8 ||
      (**dump).element_count() % sizeof(jl_cuda_args) != 0) {
    return Invalid(wanted);
  }
  jl_cuda_args a{};
  if (ffi::Error e = Pack(args, rets, nout, M, N, batch, in_batch, rows_per_block,
                          block_threads, shared_bytes, a);
      e.failure()) {
    return e;
  }
  char* slot = static_cast<char*>((**dump).untyped_data());
  for (std::size_t n = (**dump).element_count() / sizeof a; n > 0; --n, slot += sizeof a) {
    std::memcpy(slot, &a, sizeof a);
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jax_lazy

std::size_t JaxLazyCudaArgsSize() { return sizeof(jl_cuda_args); }

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxLazyCudaHandler, jax_lazy::CudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<std::string_view>("kernel_key")
                                  .Attr<int64_t>("M")
                                  .Attr<int64_t>("N")
                                  .Attr<ffi::Span<const int64_t>>("batch")
                                  .Attr<ffi::Span<const int64_t>>("in_batch")
                                  .Attr<int64_t>("rows_per_block")
                                  .Attr<int64_t>("block_threads")
                                  .Attr<int64_t>("shared_bytes"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxLazyCudaDryRunHandler, jax_lazy::DryRunImpl,
                              ffi::Ffi::Bind()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<std::string_view>("kernel_key")
                                  .Attr<int64_t>("M")
                                  .Attr<int64_t>("N")
                                  .Attr<ffi::Span<const int64_t>>("batch")
                                  .Attr<ffi::Span<const int64_t>>("in_batch")
                                  .Attr<int64_t>("rows_per_block")
                                  .Attr<int64_t>("block_threads")
                                  .Attr<int64_t>("shared_bytes"));

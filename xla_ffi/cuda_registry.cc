// Thread-safe CUDA kernel registry with per-context lazy loading; see cuda_registry.h.
#include "cuda_registry.h"

#include <climits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

namespace jax_lazy {
namespace {

struct Loaded {
  CUfunction function = nullptr;
  int64_t shared_granted = kDefaultSharedBytes;  // dynamic shared bytes allowed
};

struct Kernel {
  std::string image;  // std::string keeps a NUL after the bytes, as PTX text needs
  std::string name;
  std::shared_mutex mu;  // guards `loaded`
  std::unordered_map<CUcontext, Loaded> loaded;
};

struct Registry {
  std::shared_mutex mu;
  std::unordered_map<int64_t, std::shared_ptr<Kernel>> kernels;
  int64_t next_id = 1;
};

// Deliberately leaked: XLA threads may still run handlers while static destructors
// execute at interpreter shutdown.
Registry& GetRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

std::shared_ptr<Kernel> Find(int64_t id) {
  Registry& r = GetRegistry();
  std::shared_lock<std::shared_mutex> lock(r.mu);
  auto it = r.kernels.find(id);
  return it == r.kernels.end() ? nullptr : it->second;
}

std::string Describe(int64_t id, const Kernel& k) {
  return "CUDA kernel " + std::to_string(id) + " (entry '" + k.name + "')";
}

// Loads k's module into the current context. Caller holds k.mu exclusively.
CudaLookup Load(const CudaDriverApi& d, int64_t id, const Kernel& k, Loaded* out) {
  CudaLookup r;
  CUmodule module = nullptr;
  CuResult rc = d.cuModuleLoadData(&module, k.image.data());
  if (rc != kCudaSuccess) {
    r.code = CudaLookupCode::kLoadFailed;
    r.error = "cuModuleLoadData failed for " + Describe(id, k) + ": " + CudaErrorText(rc);
    return r;
  }
  rc = d.cuModuleGetFunction(&out->function, module, k.name.c_str());
  if (rc != kCudaSuccess) {
    d.cuModuleUnload(module);
    r.code = CudaLookupCode::kLoadFailed;
    r.error = "cuModuleGetFunction failed for " + Describe(id, k) + ": " + CudaErrorText(rc);
  }
  return r;
}

// Lets `l.function` use `bytes` of dynamic shared memory. Caller holds k.mu exclusively.
CudaLookup Grant(const CudaDriverApi& d, int64_t id, const Kernel& k, Loaded* l,
                 int64_t bytes) {
  CudaLookup r;
  r.code = CudaLookupCode::kShared;
  CuDevice device = 0;
  int optin = 0;
  if (d.cuCtxGetDevice(&device) == kCudaSuccess &&
      d.cuDeviceGetAttribute(&optin, kDevAttrMaxSharedPerBlockOptin, device) == kCudaSuccess &&
      bytes > optin) {
    r.error = Describe(id, k) + " asks for " + std::to_string(bytes) +
              " bytes of dynamic shared memory; device " + std::to_string(device) +
              " allows at most " + std::to_string(optin) + " per block";
    return r;
  }
  const CuResult rc =
      d.cuFuncSetAttribute(l->function, kFuncAttrMaxDynamicSharedBytes, static_cast<int>(bytes));
  if (rc != kCudaSuccess) {
    r.error = "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, " + std::to_string(bytes) +
              ") failed for " + Describe(id, k) + ": " + CudaErrorText(rc);
    return r;
  }
  l->shared_granted = bytes;
  r.code = CudaLookupCode::kOk;
  return r;
}

}  // namespace

int64_t RegisterCudaKernel(std::string image, std::string name) {
  auto kernel = std::make_shared<Kernel>();
  kernel->image = std::move(image);
  kernel->name = std::move(name);
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  const int64_t id = r.next_id++;
  r.kernels.emplace(id, std::move(kernel));
  return id;
}

bool UnregisterCudaKernel(int64_t id) {
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.erase(id) > 0;
}

std::size_t RegisteredCudaKernelCount() {
  Registry& r = GetRegistry();
  std::shared_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.size();
}

CudaLookup CudaFunctionFor(const CudaDriverApi& driver, int64_t id, CUcontext ctx,
                           int64_t shared_bytes) {
  CudaLookup result;
  const std::shared_ptr<Kernel> kernel = Find(id);
  if (kernel == nullptr) {
    result.code = CudaLookupCode::kNotFound;
    result.error = "no CUDA kernel registered with id " + std::to_string(id) +
                   " (ids come from jax_lazy.backends.cuda_ffi.load_kernel in this process)";
    return result;
  }
  if (shared_bytes > INT_MAX) {
    result.code = CudaLookupCode::kShared;
    result.error = Describe(id, *kernel) + ": shared_bytes " + std::to_string(shared_bytes) +
                   " is out of range";
    return result;
  }
  {  // Fast path: loaded in this context with enough shared memory granted.
    std::shared_lock<std::shared_mutex> lock(kernel->mu);
    auto it = kernel->loaded.find(ctx);
    if (it != kernel->loaded.end() && shared_bytes <= it->second.shared_granted) {
      result.function = it->second.function;
      return result;
    }
  }
  std::unique_lock<std::shared_mutex> lock(kernel->mu);
  auto it = kernel->loaded.find(ctx);
  if (it == kernel->loaded.end()) {
    Loaded fresh;
    CudaLookup loaded = Load(driver, id, *kernel, &fresh);
    if (loaded.code != CudaLookupCode::kOk) return loaded;
    it = kernel->loaded.emplace(ctx, fresh).first;
  }
  if (shared_bytes > it->second.shared_granted) {
    CudaLookup granted = Grant(driver, id, *kernel, &it->second, shared_bytes);
    if (granted.code != CudaLookupCode::kOk) return granted;
  }
  result.function = it->second.function;
  return result;
}

}  // namespace jax_lazy

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
  std::string key;
  std::string image;  // std::string keeps a NUL after the bytes, as PTX text needs
  std::string name;
  std::shared_mutex mu;  // guards `loaded`
  std::unordered_map<CUcontext, Loaded> loaded;
};

struct Registry {
  std::shared_mutex mu;
  std::unordered_map<std::string, std::shared_ptr<Kernel>> kernels;
};

// Deliberately leaked: XLA threads may still run handlers while static destructors
// execute at interpreter shutdown.
Registry& GetRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

std::shared_ptr<Kernel> Find(std::string_view key) {
  Registry& r = GetRegistry();
  const std::string k(key);
  std::shared_lock<std::shared_mutex> lock(r.mu);
  auto it = r.kernels.find(k);
  return it == r.kernels.end() ? nullptr : it->second;
}

std::string Describe(const Kernel& k) {
  return "CUDA kernel " + k.key + " (entry '" + k.name + "')";
}

// The __device__ string `jax_lazy_kernel_key` of a loaded module ("" with `error`
// set when it cannot be read). A synchronous copy, once per module and context.
std::string ModuleKey(const CudaDriverApi& d, CUmodule module, std::string& error) {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
  CuResult rc = d.cuModuleGetGlobal(&ptr, &bytes, module, "jax_lazy_kernel_key");
  if (rc != kCudaSuccess) {
    error = "the image has no jax_lazy_kernel_key (" + CudaErrorText(rc) + ")";
    return "";
  }
  std::string text(bytes, '\0');
  rc = d.cuMemcpyDtoH(text.data(), ptr, bytes);
  if (rc != kCudaSuccess) {
    error = "reading its jax_lazy_kernel_key failed: " + CudaErrorText(rc);
    return "";
  }
  return std::string(text.c_str());  // up to the NUL
}

// Loads k's module into the current context and checks that the image carries k's
// key. Caller holds k.mu exclusively.
CudaLookup Load(const CudaDriverApi& d, const Kernel& k, Loaded* out) {
  CudaLookup r;
  CUmodule module = nullptr;
  CuResult rc = d.cuModuleLoadData(&module, k.image.data());
  if (rc != kCudaSuccess) {
    r.code = CudaLookupCode::kLoadFailed;
    r.error = "cuModuleLoadData failed for " + Describe(k) + ": " + CudaErrorText(rc);
    return r;
  }
  std::string error;
  const std::string own = ModuleKey(d, module, error);
  if (own != k.key) {
    d.cuModuleUnload(module);
    r.code = CudaLookupCode::kLoadFailed;
    r.error = Describe(k) + " refused: " +
              (error.empty() ? "the image reports kernel key " + own +
                                   ": it is not the kernel it is filed as (a forged or stale "
                                   "cache entry)"
                             : error);
    return r;
  }
  rc = d.cuModuleGetFunction(&out->function, module, k.name.c_str());
  if (rc != kCudaSuccess) {
    d.cuModuleUnload(module);
    r.code = CudaLookupCode::kLoadFailed;
    r.error = "cuModuleGetFunction failed for " + Describe(k) + ": " + CudaErrorText(rc);
  }
  return r;
}

// Lets `l.function` use `bytes` of dynamic shared memory. Caller holds k.mu exclusively.
CudaLookup Grant(const CudaDriverApi& d, const Kernel& k, Loaded* l,
                 int64_t bytes) {
  CudaLookup r;
  r.code = CudaLookupCode::kShared;
  CuDevice device = 0;
  int optin = 0;
  if (d.cuCtxGetDevice(&device) == kCudaSuccess &&
      d.cuDeviceGetAttribute(&optin, kDevAttrMaxSharedPerBlockOptin, device) == kCudaSuccess &&
      bytes > optin) {
    r.error = Describe(k) + " asks for " + std::to_string(bytes) +
              " bytes of dynamic shared memory; device " + std::to_string(device) +
              " allows at most " + std::to_string(optin) + " per block";
    return r;
  }
  const CuResult rc =
      d.cuFuncSetAttribute(l->function, kFuncAttrMaxDynamicSharedBytes, static_cast<int>(bytes));
  if (rc != kCudaSuccess) {
    r.error = "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, " + std::to_string(bytes) +
              ") failed for " + Describe(k) + ": " + CudaErrorText(rc);
    return r;
  }
  l->shared_granted = bytes;
  r.code = CudaLookupCode::kOk;
  return r;
}

}  // namespace

void RegisterCudaKernel(std::string image, std::string key, std::string name) {
  auto kernel = std::make_shared<Kernel>();
  kernel->key = key;
  kernel->image = std::move(image);
  kernel->name = std::move(name);
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  r.kernels.emplace(std::move(key), std::move(kernel));
}

bool UnregisterCudaKernel(std::string_view key) {
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.erase(std::string(key)) > 0;
}

std::size_t RegisteredCudaKernelCount() {
  Registry& r = GetRegistry();
  std::shared_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.size();
}

CudaLookup CudaFunctionFor(const CudaDriverApi& driver, std::string_view key, CUcontext ctx,
                           int64_t shared_bytes) {
  CudaLookup result;
  const std::shared_ptr<Kernel> kernel = Find(key);
  if (kernel == nullptr) {
    result.code = CudaLookupCode::kNotFound;
    result.error = "no CUDA kernel registered with key " + std::string(key);
    return result;
  }
  if (shared_bytes > INT_MAX) {
    result.code = CudaLookupCode::kShared;
    result.error = Describe(*kernel) + ": shared_bytes " + std::to_string(shared_bytes) +
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
    CudaLookup loaded = Load(driver, *kernel, &fresh);
    if (loaded.code != CudaLookupCode::kOk) return loaded;
    it = kernel->loaded.emplace(ctx, fresh).first;
  }
  if (shared_bytes > it->second.shared_granted) {
    CudaLookup granted = Grant(driver, *kernel, &it->second, shared_bytes);
    if (granted.code != CudaLookupCode::kOk) return granted;
  }
  result.function = it->second.function;
  return result;
}

}  // namespace jax_lazy

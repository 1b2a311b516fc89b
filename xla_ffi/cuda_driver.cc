// Lazy loading of the CUDA driver; see cuda_driver.h.
#include "cuda_driver.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

namespace jax_lazy {
namespace {

constexpr const char* kLibrary = "libcuda.so.1";

struct DriverState {
  CudaDriverApi api{};
  bool resolved = false;  // every entry point was found
  bool usable = false;    // resolved and cuInit(0) succeeded
  std::string status;    // "" when usable and a device is present
  int device_count = 0;
  int version = 0;
};

// Resolves `symbol` into `*fn`; false (with `status` set) when it is missing.
template <typename Fn>
bool Resolve(void* library, const char* symbol, Fn* fn, std::string* status) {
  *fn = reinterpret_cast<Fn>(dlsym(library, symbol));
  if (*fn == nullptr) {
    *status = std::string(kLibrary) + " lacks " + symbol + " (driver too old?)";
    return false;
  }
  return true;
}

bool ResolveAll(void* lib, CudaDriverApi* api, std::string* status) {
  return Resolve(lib, "cuInit", &api->cuInit, status) &&
         Resolve(lib, "cuDriverGetVersion", &api->cuDriverGetVersion, status) &&
         Resolve(lib, "cuGetErrorName", &api->cuGetErrorName, status) &&
         Resolve(lib, "cuGetErrorString", &api->cuGetErrorString, status) &&
         Resolve(lib, "cuDeviceGetCount", &api->cuDeviceGetCount, status) &&
         Resolve(lib, "cuDeviceGetAttribute", &api->cuDeviceGetAttribute, status) &&
         Resolve(lib, "cuCtxGetCurrent", &api->cuCtxGetCurrent, status) &&
         Resolve(lib, "cuCtxGetDevice", &api->cuCtxGetDevice, status) &&
         Resolve(lib, "cuStreamGetCtx", &api->cuStreamGetCtx, status) &&
         Resolve(lib, "cuCtxPushCurrent_v2", &api->cuCtxPushCurrent, status) &&
         Resolve(lib, "cuCtxPopCurrent_v2", &api->cuCtxPopCurrent, status) &&
         Resolve(lib, "cuModuleLoadData", &api->cuModuleLoadData, status) &&
         Resolve(lib, "cuModuleGetFunction", &api->cuModuleGetFunction, status) &&
         Resolve(lib, "cuModuleUnload", &api->cuModuleUnload, status) &&
         Resolve(lib, "cuModuleGetGlobal_v2", &api->cuModuleGetGlobal, status) &&
         Resolve(lib, "cuMemcpyDtoH_v2", &api->cuMemcpyDtoH, status) &&
         Resolve(lib, "cuFuncSetAttribute", &api->cuFuncSetAttribute, status) &&
         Resolve(lib, "cuLaunchKernel", &api->cuLaunchKernel, status);
}

std::string ErrorText(const DriverState& s, CuResult result) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (s.resolved) {
    s.api.cuGetErrorName(result, &name);
    s.api.cuGetErrorString(result, &text);
  }
  return (name ? std::string(name) : "CUDA error " + std::to_string(result)) +
         (text ? std::string(": ") + text : std::string());
}

void Load(DriverState* s) {
  // RTLD_LOCAL: our lookups go through dlsym only. The library is never closed
  // (XLA has usually loaded it already; closing would only drop a reference).
  void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    s->status = std::string(kLibrary) + " not found: " + (why ? why : "dlopen failed") +
                " (no NVIDIA driver on this machine?)";
    return;
  }
  if (!ResolveAll(lib, &s->api, &s->status)) return;
  s->resolved = true;
  s->api.cuDriverGetVersion(&s->version);
  const CuResult init = s->api.cuInit(0);
  if (init != kCudaSuccess) {
    s->status = "cuInit failed: " + ErrorText(*s, init);
    return;
  }
  s->usable = true;
  const CuResult count = s->api.cuDeviceGetCount(&s->device_count);
  if (count != kCudaSuccess) {
    s->device_count = 0;
    s->status = "cuDeviceGetCount failed: " + ErrorText(*s, count);
  } else if (s->device_count == 0) {
    s->status = "the CUDA driver sees no device";
  }
}

// Deliberately leaked: handlers may run on XLA threads during interpreter shutdown.
const DriverState& State() {
  static std::once_flag once;
  static DriverState* state = new DriverState();
  std::call_once(once, [] { Load(state); });
  return *state;
}

}  // namespace

const CudaDriverApi* CudaDriver() {
  const DriverState& s = State();
  return s.usable ? &s.api : nullptr;
}

const std::string& CudaDriverStatus() { return State().status; }

int CudaDeviceCount() { return State().device_count; }

int CudaDriverVersion() { return State().version; }

std::string CudaErrorText(CuResult result) { return ErrorText(State(), result); }

}  // namespace jax_lazy

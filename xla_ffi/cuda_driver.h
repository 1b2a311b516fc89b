// The CUDA driver API, loaded at run time with dlopen("libcuda.so.1").
//
// jax_lazy is built without CUDA headers or libraries and its native module must
// import on machines without a GPU, so the few driver types it needs are declared
// here (opaque handles, int results, the enum values used) and the entry points
// are resolved on first use. Nothing is loaded until CudaDriver() or
// CudaDriverStatus() is first called; the outcome is then fixed for the process.
//
// Entry points are resolved by their exported names; cuda.h renames the 3.2-era
// memory and context calls to _v2 exports, and those are the ones resolved (marked
// below).
#ifndef JAX_LAZY_XLA_FFI_CUDA_DRIVER_H_
#define JAX_LAZY_XLA_FFI_CUDA_DRIVER_H_

#include <cstddef>
#include <string>

// The driver's opaque handles. Same spelling as cuda.h, so that a translation unit
// that also sees cuda.h gets compatible typedefs.
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;
typedef unsigned long long CUdeviceptr;

namespace jax_lazy {

using CuResult = int;  // CUresult: 0 is CUDA_SUCCESS
using CuDevice = int;  // CUdevice: an ordinal

constexpr CuResult kCudaSuccess = 0;
constexpr int kFuncAttrMaxDynamicSharedBytes = 8;   // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
constexpr int kDevAttrComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kDevAttrComputeCapabilityMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
constexpr int kDevAttrMaxSharedPerBlockOptin = 97;  // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN

// Shared memory a kernel may use without opting in (cuFuncSetAttribute).
constexpr long long kDefaultSharedBytes = 48 * 1024;

// The resolved entry points (signatures as in the CUDA driver API reference).
struct CudaDriverApi {
  CuResult (*cuInit)(unsigned flags);
  CuResult (*cuDriverGetVersion)(int* version);
  CuResult (*cuGetErrorName)(CuResult error, const char** name);
  CuResult (*cuGetErrorString)(CuResult error, const char** text);
  CuResult (*cuDeviceGetCount)(int* count);
  CuResult (*cuDeviceGetAttribute)(int* value, int attribute, CuDevice device);
  CuResult (*cuCtxGetCurrent)(CUcontext* ctx);
  CuResult (*cuCtxGetDevice)(CuDevice* device);
  CuResult (*cuStreamGetCtx)(CUstream stream, CUcontext* ctx);
  CuResult (*cuCtxPushCurrent)(CUcontext ctx);   // exported as cuCtxPushCurrent_v2
  CuResult (*cuCtxPopCurrent)(CUcontext* ctx);   // exported as cuCtxPopCurrent_v2
  CuResult (*cuModuleLoadData)(CUmodule* module, const void* image);
  CuResult (*cuModuleGetFunction)(CUfunction* fn, CUmodule module, const char* name);
  CuResult (*cuModuleUnload)(CUmodule module);
  CuResult (*cuModuleGetGlobal)(CUdeviceptr* ptr, size_t* bytes, CUmodule module,
                                const char* name);            // exported as cuModuleGetGlobal_v2
  CuResult (*cuMemcpyDtoH)(void* dst, CUdeviceptr src, size_t bytes);  // cuMemcpyDtoH_v2
  CuResult (*cuFuncSetAttribute)(CUfunction fn, int attribute, int value);
  CuResult (*cuLaunchKernel)(CUfunction fn, unsigned grid_x, unsigned grid_y,
                             unsigned grid_z, unsigned block_x, unsigned block_y,
                             unsigned block_z, unsigned shared_bytes, CUstream stream,
                             void** params, void** extra);
};

// The driver, loaded and initialised (cuInit) on first call; nullptr when it is not
// usable, and then CudaDriverStatus() says why. Thread-safe.
const CudaDriverApi* CudaDriver();

// "" when the driver is loaded, initialised and sees at least one device; else a
// human-readable reason, e.g. "libcuda.so.1 not found: <dlerror text>".
const std::string& CudaDriverStatus();

// Number of CUDA devices the driver sees (0 when it is not usable).
int CudaDeviceCount();

// Driver version as reported by cuDriverGetVersion (e.g. 12040), or 0.
int CudaDriverVersion();

// "CUDA_ERROR_NAME: description" for a driver result.
std::string CudaErrorText(CuResult result);

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_CUDA_DRIVER_H_

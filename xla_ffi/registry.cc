// Thread-safe kernel registry; see registry.h.
#include "registry.h"

#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace jax_lazy {
namespace {

struct Registry {
  std::shared_mutex mu;
  std::unordered_map<int64_t, KernelFn> kernels;
};

// Deliberately leaked: XLA threads may still run handlers while static
// destructors execute at interpreter shutdown.
Registry& GetRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

}  // namespace

bool RegisterKernel(int64_t id, KernelFn fn) {
  if (fn == nullptr) return false;
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.emplace(id, fn).second;
}

bool UnregisterKernel(int64_t id) {
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.erase(id) > 0;
}

KernelFn LookupKernel(int64_t id) {
  Registry& r = GetRegistry();
  std::shared_lock<std::shared_mutex> lock(r.mu);
  auto it = r.kernels.find(id);
  return it == r.kernels.end() ? nullptr : it->second;
}

std::size_t RegisteredKernelCount() {
  Registry& r = GetRegistry();
  std::shared_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.size();
}

}  // namespace jax_lazy

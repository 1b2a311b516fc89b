// Thread-safe kernel registry; see registry.h.
#include "registry.h"

#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace jax_lazy {
namespace {

struct Registry {
  std::shared_mutex mu;
  std::unordered_map<std::string, KernelFn> kernels;
};

// Deliberately leaked: XLA threads may still run handlers while static
// destructors execute at interpreter shutdown.
Registry& GetRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

}  // namespace

std::string RegisterKernel(std::string_view key, KernelFn fn, KernelKeyFn key_fn) {
  if (key.empty()) return "empty kernel key";
  if (fn == nullptr || key_fn == nullptr) return "null kernel or key function address";
  const char* own = key_fn();
  if (own == nullptr || key != own) {
    return "the library reports kernel key " + std::string(own ? own : "(null)") +
           ", not " + std::string(key) +
           ": it is not the kernel it is filed as (a forged or stale cache entry)";
  }
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  r.kernels.emplace(std::string(key), fn);
  return "";
}

bool UnregisterKernel(std::string_view key) {
  Registry& r = GetRegistry();
  std::unique_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.erase(std::string(key)) > 0;
}

KernelFn LookupKernel(std::string_view key) {
  Registry& r = GetRegistry();
  const std::string k(key);  // C++17 maps have no heterogeneous lookup
  std::shared_lock<std::shared_mutex> lock(r.mu);
  auto it = r.kernels.find(k);
  return it == r.kernels.end() ? nullptr : it->second;
}

std::size_t RegisteredKernelCount() {
  Registry& r = GetRegistry();
  std::shared_lock<std::shared_mutex> lock(r.mu);
  return r.kernels.size();
}

}  // namespace jax_lazy

// Persistent thread pool shared by every call of the jax_lazy CPU handler.
//
// ParallelFor(units, fn, ctx) runs fn(ctx, u) for every u in [0, units) and
// returns when all have finished. The calling thread takes part, so a pool of
// size n has n - 1 worker threads. Several threads may call ParallelFor at
// once (XLA runs independent custom calls concurrently): each call is a job in
// a FIFO queue whose units are claimed with an atomic counter, and every caller
// works on its own job, so progress never depends on a free worker. Threads
// are created once (lazily, on the first parallel call) and only re-created by
// SetNumThreads or in a child process after fork().
#ifndef JAX_LAZY_XLA_FFI_THREAD_POOL_H_
#define JAX_LAZY_XLA_FFI_THREAD_POOL_H_

#include <cstdint>

namespace jax_lazy {

using TaskFn = void (*)(void* ctx, int64_t unit);

// Runs fn(ctx, 0) ... fn(ctx, units - 1), possibly concurrently; blocks until
// all are done. fn must not throw.
void ParallelFor(int64_t units, TaskFn fn, void* ctx);

// Total number of threads used by ParallelFor (workers + the caller), >= 1.
// Initially $JAX_LAZY_NUM_THREADS if it is a positive integer, else
// std::thread::hardware_concurrency() (1 if unknown).
int NumThreads();

// Sets the pool size; n <= 0 restores the default above. The old workers
// finish the jobs already queued and exit; calls in flight are unaffected.
void SetNumThreads(int n);

// The default size: $JAX_LAZY_NUM_THREADS or hardware_concurrency().
int DefaultNumThreads();

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_THREAD_POOL_H_

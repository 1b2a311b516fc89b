// Persistent thread pool; see thread_pool.h.
#include "thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace jax_lazy {
namespace {

// One ParallelFor call. Shared (shared_ptr) between the caller and the workers
// that picked it, so that it outlives the last worker touching it.
struct Job {
  Job(int64_t units, TaskFn fn, void* ctx) : units(units), fn(fn), ctx(ctx) {}
  const int64_t units;
  const TaskFn fn;
  void* const ctx;
  std::atomic<int64_t> next{0};  // next unit to claim
  std::atomic<int64_t> done{0};  // units finished
  std::mutex mu;                 // guards the wake-up of the caller
  std::condition_variable cv;
};

// Claims and runs units of `job` until none is left.
void Drain(Job& job) {
  for (;;) {
    const int64_t u = job.next.fetch_add(1, std::memory_order_relaxed);
    if (u >= job.units) return;
    job.fn(job.ctx, u);
    // acq_rel: the caller's acquire load of `done` sees every output written.
    if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.units) {
      std::lock_guard<std::mutex> lock(job.mu);
      job.cv.notify_all();
    }
  }
}

class Pool {
 public:
  explicit Pool(int num_threads) : num_threads_(std::max(1, num_threads)) {
    threads_.reserve(num_threads_ - 1);
    for (int t = 0; t + 1 < num_threads_; ++t) {
      threads_.emplace_back([this] { WorkerLoop(); });
    }
  }

  // Stops the workers once the queue is empty and joins them.
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int num_threads() const { return num_threads_; }

  void Run(int64_t units, TaskFn fn, void* ctx) {
    const int64_t helpers =
        std::min<int64_t>(static_cast<int64_t>(threads_.size()), units - 1);
    if (helpers <= 0) {
      for (int64_t u = 0; u < units; ++u) fn(ctx, u);
      return;
    }
    auto job = std::make_shared<Job>(units, fn, ctx);
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(job);
    }
    for (int64_t h = 0; h < helpers; ++h) cv_.notify_one();
    Drain(*job);
    {
      // Every unit is claimed: take the job out of the queue if no worker did.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = std::find(queue_.begin(), queue_.end(), job);
      if (it != queue_.end()) queue_.erase(it);
    }
    std::unique_lock<std::mutex> lock(job->mu);
    job->cv.wait(lock, [&] {
      return job->done.load(std::memory_order_acquire) == job->units;
    });
  }

 private:
  void WorkerLoop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and nothing left to do
        job = queue_.front();
        if (job->next.load(std::memory_order_relaxed) >= job->units) {
          queue_.pop_front();  // exhausted: its caller is finishing it
          continue;
        }
      }
      Drain(*job);
      std::lock_guard<std::mutex> lock(mu_);
      if (!queue_.empty() && queue_.front() == job) queue_.pop_front();
    }
  }

  const int num_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Global state. Leaked on purpose: joining threads from static destructors at
// process exit can deadlock, and XLA may still be running.
struct State {
  std::mutex mu;
  int num_threads = 0;          // 0: not initialised yet
  std::shared_ptr<Pool> pool;   // created lazily
};

State* g_state = nullptr;
std::once_flag g_init;

void ForkPrepare() { g_state->mu.lock(); }
void ForkParent() { g_state->mu.unlock(); }
// The child has only the forking thread: forget (leak) the parent's pool and
// let the next parallel call start a fresh one.
void ForkChild() {
  new std::shared_ptr<Pool>(std::move(g_state->pool));  // leak, never joined
  g_state->pool = nullptr;
  g_state->mu.unlock();
}

State& GetState() {
  std::call_once(g_init, [] {
    g_state = new State();
    pthread_atfork(ForkPrepare, ForkParent, ForkChild);
  });
  return *g_state;
}

int EnsureNumThreadsLocked(State& s) {
  if (s.num_threads <= 0) s.num_threads = DefaultNumThreads();
  return s.num_threads;
}

}  // namespace

int DefaultNumThreads() {
  if (const char* env = std::getenv("JAX_LAZY_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0) {
      return static_cast<int>(std::min<long>(n, 1 << 16));
    }
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

int NumThreads() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  return EnsureNumThreadsLocked(s);
}

void SetNumThreads(int n) {
  State& s = GetState();
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.num_threads = n > 0 ? n : DefaultNumThreads();
    old = std::move(s.pool);  // the next parallel call builds a new one
  }
  // `old` is joined here, outside the lock, unless a call in flight still
  // holds it (then by that call, once its job is done).
}

void ParallelFor(int64_t units, TaskFn fn, void* ctx) {
  if (units <= 0) return;
  std::shared_ptr<Pool> pool;
  {
    State& s = GetState();
    std::lock_guard<std::mutex> lock(s.mu);
    const int n = EnsureNumThreadsLocked(s);
    if (n > 1 && units > 1) {
      if (!s.pool) s.pool = std::make_shared<Pool>(n);
      pool = s.pool;
    }
  }
  if (!pool) {
    for (int64_t u = 0; u < units; ++u) fn(ctx, u);
    return;
  }
  pool->Run(units, fn, ctx);
}

}  // namespace jax_lazy

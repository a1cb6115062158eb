// The "threads" scheduler (the default): a persistent pool of worker threads, the calling
// thread being worker 0.
//
// Each worker keeps a min-heap of the tasks its own completions made ready (data it just
// produced is hot in its cache), and all workers share the graph's roots, sorted by static
// priority, behind one atomic cursor. A worker takes whichever of its heap top and the
// next root has the better priority, so execution follows the static order; when its heap
// and the roots are exhausted it steals the best task of another worker. After running a
// task, a worker continues directly with the best dependent that task made ready when
// nothing queued is more urgent, so chains run without touching a queue. Idle workers spin
// briefly and then sleep on a futex; pushing work wakes one sleeper.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "core/thread_name.hpp"
#include "local/execute_internal.hpp"
#include "local/plan_internal.hpp"
#include "local/schedulers_internal.hpp"
#include "tessera/core/callbacks.hpp"
#include "tessera/core/error.hpp"

namespace tessera::local {

namespace {

// ---- the pool -------------------------------------------------------------------------

class ThreadPool;
thread_local ThreadPool* tl_pool = nullptr;  // the pool whose job this thread is running

class ThreadPool {
 public:
  explicit ThreadPool(int n) : n_(n) {
    try {
      for (int i = 1; i < n; ++i)
        threads_.emplace_back([this, i] {
          tessera::detail::name_this_thread("tsr-threads");
          loop(i);
        });
    } catch (...) {
      shut_down();  // the threads already started must not outlive a failed constructor
      throw;
    }
  }
  ~ThreadPool() { shut_down(); }
  int size() const noexcept { return n_; }
  std::mutex& busy() noexcept { return busy_; }

  // Runs body(0..n-1), worker 0 on the calling thread; returns when all have returned,
  // even when one of them throws (the first exception is rethrown then).
  void run(const std::function<void(int)>& body) {
    {
      std::lock_guard lock(mutex_);
      body_ = &body;
      pending_ = n_ - 1;
      thrown_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    ThreadPool* outer = tl_pool;
    tl_pool = this;
    std::exception_ptr own;
    try {
      body(0);
    } catch (...) {
      own = std::current_exception();
    }
    tl_pool = outer;
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    body_ = nullptr;
    if (!own) own = std::exchange(thrown_, nullptr);
    if (own) std::rethrow_exception(own);
  }

 private:
  void shut_down() noexcept {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void loop(int i) {
    tl_pool = this;
    uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const auto* body = body_;
      lock.unlock();
      std::exception_ptr e;
      try {
        (*body)(i);
      } catch (...) {
        e = std::current_exception();
      }
      lock.lock();
      if (e && !thrown_) thrown_ = std::move(e);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const int n_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  const std::function<void(int)>* body_ = nullptr;
  std::exception_ptr thrown_;  // the first exception a pool thread's body let out
  std::mutex busy_;            // held by the computation using the pool
};

// One pool per worker count, created on first use and kept for the life of the process.
class PoolCache {
 public:
  // A pool of n workers for exclusive use, or nullptr if the cached one is busy.
  ThreadPool* try_acquire(int n, std::unique_lock<std::mutex>& hold) {
    ThreadPool* pool;
    {
      std::lock_guard lock(mutex_);
      auto& slot = pools_[n];
      if (!slot) slot = std::make_unique<ThreadPool>(n);
      pool = slot.get();
    }
    hold = std::unique_lock(pool->busy(), std::try_to_lock);
    return hold.owns_lock() ? pool : nullptr;
  }

 private:
  std::mutex mutex_;
  std::map<int, std::unique_ptr<ThreadPool>> pools_;
};

PoolCache& pool_cache() {
  static PoolCache cache;
  return cache;
}

// ---- one computation --------------------------------------------------------------------

constexpr uint32_t kNone = UINT32_MAX;

struct alignas(64) WorkerQueue {
  std::mutex mutex;
  std::vector<uint64_t> heap;  // (priority << 32 | task), min-heap
  std::atomic<uint32_t> size{0};
};

class Run {
 public:
  Run(const Plan& p, const CallbackSet& callbacks, int workers, uint32_t retries)
      : p_(p),
        callbacks_(callbacks),
        n_workers_(workers),
        retries_(retries),
        results_(p.size()),
        waiting_(new std::atomic<int32_t>[p.size()]),
        refcount_(new std::atomic<int32_t>[p.size()]),
        queues_(new WorkerQueue[static_cast<size_t>(workers)]),
        remaining_(p.size()) {
    for (size_t i = 0; i < p.size(); ++i) {
      waiting_[i].store(p.waiting[i], std::memory_order_relaxed);
      refcount_[i].store(p.refcount[i], std::memory_order_relaxed);
    }
  }

  void work(int w) {
    while (!stop_.load(std::memory_order_acquire)) {
      const uint32_t t = take(w);
      if (t != kNone) {
        execute_chain(w, t);
        continue;
      }
      if (remaining_.load(std::memory_order_acquire) == 0) break;
      idle();
    }
  }

  // The TaskError of the first task that failed, or null.
  std::exception_ptr error() const {
    if (!error_) return nullptr;
    const Graph::Entry& entry = (*p_.graph)[failed_];
    return task_failure(entry.key, *entry.task, error_);
  }
  std::vector<Value>& results() { return results_; }

 private:
  uint64_t packed(uint32_t v) const { return static_cast<uint64_t>(p_.priority[v]) << 32 | v; }

  // Priority of the next root, or max when none is left.
  uint64_t next_root() const {
    const uint32_t c = root_cursor_.load(std::memory_order_relaxed);
    return c < p_.roots.size() ? packed(p_.roots[c]) : UINT64_MAX;
  }

  uint64_t local_top(int w) {
    WorkerQueue& q = queues_[w];
    if (q.size.load(std::memory_order_relaxed) == 0) return UINT64_MAX;
    std::lock_guard lock(q.mutex);
    return q.heap.empty() ? UINT64_MAX : q.heap.front();
  }

  uint32_t pop(WorkerQueue& q) {
    if (q.heap.empty()) return kNone;
    std::pop_heap(q.heap.begin(), q.heap.end(), std::greater<>());
    const auto v = static_cast<uint32_t>(q.heap.back());
    q.heap.pop_back();
    q.size.fetch_sub(1, std::memory_order_relaxed);
    return v;
  }

  void push(int w, uint32_t v) {
    WorkerQueue& q = queues_[w];
    {
      std::lock_guard lock(q.mutex);
      q.heap.push_back(packed(v));
      std::push_heap(q.heap.begin(), q.heap.end(), std::greater<>());
      q.size.fetch_add(1, std::memory_order_seq_cst);
    }
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      epoch_.fetch_add(1, std::memory_order_seq_cst);
      epoch_.notify_one();
    }
  }

  uint32_t take_root() {
    // Look before taking: workers ask again and again once the roots are gone, and the
    // cursor must never wrap around to hand a root out twice.
    if (root_cursor_.load(std::memory_order_relaxed) >= p_.roots.size()) return kNone;
    const uint32_t c = root_cursor_.fetch_add(1, std::memory_order_relaxed);
    return c < p_.roots.size() ? p_.roots[c] : kNone;
  }

  uint32_t take(int w) {
    WorkerQueue& q = queues_[w];
    if (q.size.load(std::memory_order_relaxed) > 0) {
      std::unique_lock lock(q.mutex);
      if (!q.heap.empty() && q.heap.front() < next_root()) return pop(q);
      lock.unlock();
      if (uint32_t r = take_root(); r != kNone) return r;
      lock.lock();
      if (uint32_t v = pop(q); v != kNone) return v;
    } else if (uint32_t r = take_root(); r != kNone) {
      return r;
    }
    // Steal the most urgent task of another worker.
    for (int i = 1; i < n_workers_; ++i) {
      WorkerQueue& victim = queues_[(w + i) % n_workers_];
      if (victim.size.load(std::memory_order_relaxed) == 0) continue;
      std::unique_lock lock(victim.mutex, std::try_to_lock);
      if (!lock.owns_lock()) lock.lock();
      if (uint32_t v = pop(victim); v != kNone) return v;
    }
    return kNone;
  }

  bool has_work() const {
    if (root_cursor_.load(std::memory_order_seq_cst) < p_.roots.size()) return true;
    for (int i = 0; i < n_workers_; ++i) {
      if (queues_[i].size.load(std::memory_order_seq_cst) > 0) return true;
    }
    return false;
  }

  void idle() {
    for (int spin = 0; spin < 2000; ++spin) {
      if (has_work() || stop_.load(std::memory_order_relaxed)) return;
      if (spin > 64) std::this_thread::yield();
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    const uint32_t e = epoch_.load(std::memory_order_seq_cst);
    if (!has_work() && !stop_.load(std::memory_order_seq_cst))
      epoch_.wait(e, std::memory_order_seq_cst);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void finish_all() {
    stop_.store(true, std::memory_order_seq_cst);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    epoch_.notify_all();
  }

  // Records the first failure (formatted later, on the caller's thread, where an
  // exception from formatting can reach the caller) and stops the computation.
  void fail(uint32_t v, std::exception_ptr e) noexcept {
    {
      std::lock_guard lock(error_mutex_);
      if (!error_) {
        error_ = std::move(e);
        failed_ = v;
      }
    }
    finish_all();
  }

  void execute_chain(int w, uint32_t t) {
    const Graph& g = *p_.graph;
    const GraphStructure& s = p_.s;
    while (t != kNone) {
      if (stop_.load(std::memory_order_relaxed)) return;
      const Graph::Entry& e = g[t];
      try {
        if (!callbacks_.empty()) callbacks_.pretask(TaskEvent{e.key, *e.task, t, w});
        results_[t] = execute_task(*e.task, s.refs_of(t), results_.data(), retries_, &stop_);
        if (!callbacks_.empty()) callbacks_.posttask(TaskEvent{e.key, *e.task, t, w}, results_[t]);
      } catch (...) {
        fail(t, std::current_exception());
        return;
      }
      // Release what no one will read any more.
      for (uint32_t d : s.deps_of(t)) {
        if (refcount_[d].fetch_sub(1, std::memory_order_acq_rel) == 1) results_[d].reset();
      }
      uint32_t next = kNone;
      for (uint32_t d : s.dependents_of(t)) {
        if (waiting_[d].fetch_sub(1, std::memory_order_acq_rel) != 1) continue;
        if (next == kNone) {
          next = d;
        } else if (p_.priority[d] < p_.priority[next]) {
          push(w, next);
          next = d;
        } else {
          push(w, d);
        }
      }
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        finish_all();
        return;
      }
      if (next != kNone && (packed(next) > local_top(w) || packed(next) > next_root())) {
        push(w, next);
        next = kNone;
      }
      t = next;
    }
  }

  const Plan& p_;
  const CallbackSet& callbacks_;
  const int n_workers_;
  const uint32_t retries_;  // runs of a throwing task beyond the first
  std::vector<Value> results_;
  std::unique_ptr<std::atomic<int32_t>[]> waiting_;
  std::unique_ptr<std::atomic<int32_t>[]> refcount_;
  std::unique_ptr<WorkerQueue[]> queues_;
  alignas(64) std::atomic<uint32_t> root_cursor_{0};
  alignas(64) std::atomic<size_t> remaining_;
  alignas(64) std::atomic<uint32_t> epoch_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
  uint32_t failed_ = kNone;
};

class ThreadedScheduler final : public Scheduler {
 public:
  std::string_view name() const noexcept override { return "threads"; }

  std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                         const ComputeOptions& options) override {
    if (outputs.empty()) return {};
    const int workers = options.num_workers > 0 ? options.num_workers : default_num_workers();
    Plan p = make_plan(graph, outputs);
    CallbackSet callbacks(options.callbacks);
    const RunInfo info{p.graph, outputs, p.size(), name(), workers};
    callbacks.start(info);

    Run run(p, callbacks, workers, options.retries);
    const std::function<void(int)> body = [&run](int w) { run.work(w); };
    // A computation started from inside a task (or while another one holds the shared pool)
    // gets a pool of its own, so it can never wait on the threads it runs on.
    std::unique_lock<std::mutex> hold;
    ThreadPool* pool = tl_pool ? nullptr : pool_cache().try_acquire(workers, hold);
    if (pool) {
      pool->run(body);
    } else {
      ThreadPool own(workers);
      own.run(body);
    }
    if (std::exception_ptr error = run.error()) {
      callbacks.finish(info, true);
      std::rethrow_exception(error);
    }
    std::vector<Value> out;
    out.reserve(p.outputs.size());
    for (uint32_t o : p.outputs) out.push_back(run.results()[o]);
    callbacks.finish(info, false);
    return out;
  }
};

}  // namespace

std::shared_ptr<Scheduler> make_threaded_scheduler() {
  return std::make_shared<ThreadedScheduler>();
}

}  // namespace tessera::local

// The "sync" scheduler: every task in the calling thread, in static order. For debugging
// and profiling; also the reference the other schedulers are tested against.
#include <algorithm>
#include <functional>

#include "local/execute_internal.hpp"
#include "local/plan_internal.hpp"
#include "local/schedulers_internal.hpp"
#include "tessera/core/callbacks.hpp"

namespace tessera::local {

namespace {

class SyncScheduler final : public Scheduler {
 public:
  std::string_view name() const noexcept override { return "sync"; }

  std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                         const ComputeOptions& options) override {
    if (outputs.empty()) return {};
    Plan p = make_plan(graph, outputs);
    CallbackSet callbacks(options.callbacks);
    const RunInfo info{p.graph, outputs, p.size(), name(), 1};
    callbacks.start(info);

    const size_t n = p.size();
    std::vector<Value> results(n);
    std::vector<int32_t>& refcount = p.refcount;
    std::vector<int32_t>& waiting = p.waiting;
    // Ready tasks: the roots in priority order, plus a min-heap of tasks made ready.
    std::vector<uint64_t> heap;
    size_t next_root = 0;
    auto prio = [&](uint32_t v) { return static_cast<uint64_t>(p.priority[v]) << 32 | v; };

    for (size_t done = 0; done < n; ++done) {
      uint32_t v;
      if (!heap.empty() &&
          (next_root == p.roots.size() || heap.front() < prio(p.roots[next_root]))) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<>());
        v = static_cast<uint32_t>(heap.back());
        heap.pop_back();
      } else {
        v = p.roots[next_root++];
      }
      const Graph::Entry& e = (*p.graph)[v];
      try {
        if (!callbacks.empty()) callbacks.pretask(TaskEvent{e.key, *e.task, v, 0});
        results[v] = execute_task(*e.task, p.s.refs_of(v), results.data(), options.retries);
        if (!callbacks.empty()) callbacks.posttask(TaskEvent{e.key, *e.task, v, 0}, results[v]);
      } catch (...) {
        callbacks.finish(info, true);
        std::rethrow_exception(task_failure(e.key, *e.task, std::current_exception()));
      }
      for (uint32_t d : p.s.deps_of(v)) {
        if (--refcount[d] == 0) results[d].reset();
      }
      for (uint32_t w : p.s.dependents_of(v)) {
        if (--waiting[w] == 0) {
          heap.push_back(prio(w));
          std::push_heap(heap.begin(), heap.end(), std::greater<>());
        }
      }
    }
    std::vector<Value> out;
    out.reserve(p.outputs.size());
    for (uint32_t o : p.outputs) out.push_back(results[o]);
    callbacks.finish(info, false);
    return out;
  }
};

}  // namespace

std::shared_ptr<Scheduler> make_sync_scheduler() {
  return std::make_shared<SyncScheduler>();
}

}  // namespace tessera::local

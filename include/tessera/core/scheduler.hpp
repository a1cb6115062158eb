// File: tessera/core/scheduler.hpp
//
// Schedulers execute graphs. Each registers itself under a name ("sync", "threads", …);
// ComputeOptions picks one per computation, like dask's `scheduler=` keyword.
//
//   std::vector<tessera::Value> r =
//       tessera::get(graph, {tessera::Key("b")}, {.scheduler = "sync"});
//
// The default scheduler is "threads", or the TESSERA_SCHEDULER environment variable, or
// what set_default_scheduler() chose.
#pragma once

#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera {

class Callback;

// How to run one computation.
struct ComputeOptions {
  // Scheduler name: "sync", "threads", …; empty means the default.
  std::string scheduler = {};
  // Worker threads; 0 means the scheduler's default (TESSERA_NUM_WORKERS or the number of
  // hardware threads).
  int num_workers = 0;
  // Run the collections' graph optimizations (fusion, inlining) before scheduling.
  bool optimize_graph = true;
  // Callbacks for this computation only (besides the active ones).
  std::vector<Callback*> callbacks = {};
  // A task that throws is run again up to this many times before the computation fails
  // with its last error (Dask's compute(retries=); every scheduler; at most 1000 on a
  // client).
  uint32_t retries = 0;
  // On a client: this computation's ready tasks run before those of lower priorities, on
  // the scheduler's queue and on workers, whatever graph they came in (Dask's
  // compute(priority=)). The local schedulers run one graph at a time and ignore it.
  int32_t priority = 0;
};

// Runs graphs.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual std::string_view name() const noexcept = 0;
  // Computes `outputs` (and only what they need) and returns their values in order.
  virtual std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                                 const ComputeOptions& options) = 0;
};

// Makes a scheduler available under `name` (replacing any previous one).
void register_scheduler(std::string name, std::shared_ptr<Scheduler> scheduler);
// The scheduler named `name`; SchedulerError listing the known names otherwise.
std::shared_ptr<Scheduler> get_scheduler(std::string_view name);
std::vector<std::string> scheduler_names();
// Name used when ComputeOptions::scheduler is empty.
std::string default_scheduler();
void set_default_scheduler(std::string name);
// Worker count used when ComputeOptions::num_workers is 0.
int default_num_workers();

// Computes `outputs` of `graph` with the scheduler `options` name (no optimization).
std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                       const ComputeOptions& options = {});
inline std::vector<Value> get(const Graph& graph, std::initializer_list<Key> outputs,
                              const ComputeOptions& options = {}) {
  return get(graph, std::span<const Key>(outputs.begin(), outputs.size()), options);
}

}  // namespace tessera

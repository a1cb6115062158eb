#include "tessera/core/scheduler.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "tessera/core/collection.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

namespace {

struct SchedulerRegistry {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<Scheduler>, std::less<>> by_name;
  std::string default_name;
  int default_workers = 0;
  bool env_read = false;

  void read_env() {
    if (env_read) return;
    env_read = true;
    if (const char* s = std::getenv("TESSERA_SCHEDULER"); s && *s) default_name = s;
    if (const char* w = std::getenv("TESSERA_NUM_WORKERS"); w && *w) {
      char* end = nullptr;
      const long n = std::strtol(w, &end, 10);
      if (*end != '\0' || n < 1 || n > 4096) {
        throw ValueError(
            fmt::format("TESSERA_NUM_WORKERS must be a positive integer, got '{}'", w));
      }
      default_workers = static_cast<int>(n);
    }
  }
};

SchedulerRegistry& scheduler_registry() {
  static SchedulerRegistry* r = new SchedulerRegistry();
  return *r;
}

}  // namespace

void register_scheduler(std::string name, std::shared_ptr<Scheduler> scheduler) {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  r.by_name[std::move(name)] = std::move(scheduler);
}

std::shared_ptr<Scheduler> get_scheduler(std::string_view name) {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_name.find(name);
  if (it == r.by_name.end()) {
    std::vector<std::string> names;
    for (const auto& [n, s] : r.by_name) names.push_back(n);
    std::string hint;
    if (name == "distributed") {
      hint = "; connect a tessera::Client first (the newest client is the 'distributed' scheduler)";
    }
    throw SchedulerError(fmt::format("unknown scheduler '{}' (available: {}){}", name,
                                     fmt::join(names, ", "), hint));
  }
  return it->second;
}

std::vector<std::string> scheduler_names() {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [n, s] : r.by_name) names.push_back(n);
  return names;
}

std::string default_scheduler() {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  r.read_env();
  return r.default_name.empty() ? std::string("threads") : r.default_name;
}

void set_default_scheduler(std::string name) {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  r.read_env();
  r.default_name = std::move(name);
}

int default_num_workers() {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  r.read_env();
  if (r.default_workers > 0) return r.default_workers;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

namespace detail {
void set_default_num_workers(int n) {
  SchedulerRegistry& r = scheduler_registry();
  std::lock_guard lock(r.mutex);
  r.read_env();
  r.default_workers = n;
}
}  // namespace detail

std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                       const ComputeOptions& options) {
  if (options.num_workers < 0) {
    throw ValueError(
        fmt::format("num_workers must be 0 (default) or positive, got {}", options.num_workers));
  }
  const std::string name = options.scheduler.empty() ? default_scheduler() : options.scheduler;
  return get_scheduler(name)->get(graph, outputs, options);
}

namespace detail {

std::vector<Value> compute_keys(const HighLevelGraph& hlg, std::span<const Key> keys,
                                std::span<const OptimizeFn> optimizers,
                                const ComputeOptions& options) {
  Graph graph = hlg.materialize(keys);
  if (options.optimize_graph) {
    for (OptimizeFn f : optimizers) f(graph, keys, options);
  }
  return get(graph, keys, options);
}

}  // namespace detail

}  // namespace tessera

// The "processes" scheduler: a LocalCluster started on first use (one single-threaded
// worker process per ComputeOptions::num_workers, default: the machine's cores) and a
// client of it, kept for later computations, as modern Dask recommends over a separate
// multiprocessing scheduler: there is one process runtime.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "tessera/core/scheduler.hpp"
#include "tessera/distributed/client.hpp"
#include "tessera/distributed/local_cluster.hpp"

namespace tessera::distributed {

namespace {

class ProcessesScheduler final : public Scheduler {
 public:
  std::string_view name() const noexcept override { return "processes"; }

  std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                         const ComputeOptions& options) override {
    const int n = options.num_workers > 0 ? options.num_workers : default_num_workers();
    std::shared_ptr<Scheduler> target;
    {
      std::lock_guard lock(mu_);
      auto& c = clusters_[n];
      if (!c.client) {
        if (!exit_hook_) {
          // The registry outlives main(): stop the worker processes when the program exits.
          // spdlog's registry is made first, so that it is destroyed after the hook runs
          // (exit handlers run in reverse order): the scheduler logs as the cluster stops.
          (void)spdlog::default_logger();
          std::atexit([] { instance().shutdown(); });
          exit_hook_ = true;
        }
        c.cluster = std::make_unique<LocalCluster>(
            LocalCluster::Options{.n_workers = n, .threads_per_worker = 1});
        c.client = std::make_unique<Client>(*c.cluster, ClientOptions{.set_as_default = false});
      }
      target = get_scheduler(c.client->scheduler_name());
    }
    return target->get(graph, outputs, options);
  }

  // Stops every cluster started so far.
  void shutdown() {
    std::lock_guard lock(mu_);
    clusters_.clear();
  }

  static ProcessesScheduler& instance() {
    static auto* s = new ProcessesScheduler();
    return *s;
  }

 private:
  bool exit_hook_ = false;
  struct Cluster {
    std::unique_ptr<LocalCluster> cluster;
    std::unique_ptr<Client> client;  // declared after the cluster: closed first
  };
  std::mutex mu_;
  std::map<int, Cluster> clusters_;
};

[[maybe_unused]] const bool kRegistered =
    (register_scheduler("processes", std::shared_ptr<Scheduler>(std::shared_ptr<Scheduler>(),
                                                                &ProcessesScheduler::instance())),
     true);

}  // namespace

}  // namespace tessera::distributed

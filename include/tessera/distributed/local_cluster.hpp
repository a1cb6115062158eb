// File: tessera/distributed/local_cluster.hpp
//
// A cluster on this machine: a scheduler (serving on a thread of this process, on
// loopback) and worker processes, like dask.distributed.LocalCluster.
//
//   int main(int argc, char** argv) {
//     tessera::init(argc, argv);   // a worker started from this program serves here
//     tessera::LocalCluster cluster({.n_workers = 2, .threads_per_worker = 1});
//     tessera::Client client(cluster);
//     …
//   }
//
// Which program the workers run: Options::worker_program if set, else this program itself
// when main() called tessera::init (so every op it registers runs on the workers), else
// the tessera-worker program (found next to this program, in tessera's install prefix, or
// on PATH). Workers load Options::preload libraries either way. The destructor stops the
// workers (SIGTERM, then SIGKILL) and the scheduler.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/distributed/security.hpp"

namespace tessera {

class LocalCluster {
 public:
  struct Options {
    int n_workers = 2;
    int threads_per_worker = 1;
    // The scheduler's address; port 0 picks a free one.
    std::string scheduler_address = "tcp://127.0.0.1:0";
    // See the file comment; "" chooses.
    std::string worker_program = {};
    // Libraries each worker loads first (they register ops).
    std::vector<std::string> preload = {};
    // Bytes of memory per worker (0: no limit): results past 60% are spilled to disk, and
    // a worker past 80% takes no new tasks until it is below again.
    uint64_t memory_limit = 0;
    // How long to wait for every worker to connect.
    std::chrono::milliseconds start_timeout{30000};
    // A worker silent this long is considered dead (its work is redone elsewhere); default:
    // the configuration's scheduler.worker-timeout (tessera/core/config.hpp), else 10 s.
    std::chrono::milliseconds worker_timeout = config::get_seconds("scheduler.worker-timeout", 10);
    // Workers exit when the scheduler has been silent this long (worker.death-timeout).
    std::chrono::milliseconds death_timeout = config::get_seconds("worker.death-timeout", 60);
    // Runs each worker under a nanny process that starts it again if it dies or passes
    // 95% of memory_limit (its tasks are then recomputed; one that kills 3 workers fails
    // with KilledWorker). worker_pids() are then the nannies'.
    bool nanny = false;
    // Secures the cluster with this CURVE key pair (Security::generate() for a fresh one);
    // a Client made from the cluster uses it.
    Security security = {};
  };

  // Starts the scheduler and the workers and waits until every worker has connected
  // (SchedulerError with the worker's exit status and its log's last lines otherwise).
  explicit LocalCluster(Options options);
  LocalCluster() : LocalCluster(Options{}) {}
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // The scheduler's address ("tcp://127.0.0.1:41234").
  const std::string& scheduler_address() const;
  // The scheduler's in-process address ("inproc://tessera-server-..."), valid in this
  // process only: a Client made from the cluster talks to the scheduler through it, without
  // the network stack or ZeroMQ's I/O threads.
  const std::string& scheduler_local_address() const;
  // The cluster's key pair (none if it is not secured).
  const Security& security() const;
  // The workers connected now.
  size_t worker_count() const;
  // Process ids of the workers started (for tests that kill one).
  std::vector<int> worker_pids() const;
  // Starts one more worker (after one died, say); waits for it to connect.
  void add_worker();
  // Stops the workers and the scheduler (the destructor does this too).
  void close();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera

// File: tessera/local.hpp
//
// Schedulers on one machine, registered by name:
//   "sync"     every task in the calling thread, in static order (also "synchronous",
//              "single-threaded") — for debugging and profiling
//   "threads"  the default: a persistent work-stealing pool (also "threading"); tasks follow
//              the static order, results are released as soon as their last reader is done
//   "processes" worker processes: a LocalCluster started on first use and kept (see
//              tessera/distributed/local_cluster.hpp); ops must be registered, and main()
//              must call tessera::init for the program's own ops to run there
//   "distributed" the newest tessera::Client (while it lives)
//
//   auto r = tessera::get(graph, {key}, {.scheduler = "threads", .num_workers = 4});
//   auto s = tessera::local::sync_scheduler()->get(graph, {key}, {});
#pragma once

#include <memory>

#include "tessera/core/scheduler.hpp"

namespace tessera::local {

// The "sync" scheduler.
std::shared_ptr<Scheduler> sync_scheduler();
// The "threads" scheduler.
std::shared_ptr<Scheduler> threaded_scheduler();

}  // namespace tessera::local

// Running a worker process: what tessera-worker does after parsing its options, and what
// tessera::init does when a program is started as a worker (--tessera-worker=ADDRESS or
// TESSERA_RUN_WORKER=ADDRESS, with the other settings from TESSERA_WORKER_* variables).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distributed/worker_server.hpp"

namespace tessera::distributed {

// Loads the `preload` libraries, serves until SIGINT or SIGTERM (returns 0) or until the
// scheduler is silent past the death timeout (returns 3) or removes this worker for
// silence (returns 4: a nanny starts a new one); 1 with the error logged if it
// cannot start. Logs to the spdlog logger "worker".
int run_worker(const WorkerServer::Options& options, const std::vector<std::string>& preload);

// A memory limit as people write it: bytes ("4000000000"), with a unit ("4GiB", "500MB",
// "512 MiB"), a fraction of this machine's memory ("0.5"), or "0" for none. ValueError
// naming the text otherwise.
uint64_t parse_memory_limit(std::string_view text);

// Seconds as the microseconds WorkerServer::Options keeps (0.002 -> 2000 µs), and back: the
// programs and LocalCluster take their defaults from WorkerServer::Options.
std::chrono::microseconds seconds_to_micros(double seconds);
double micros_to_seconds(std::chrono::microseconds micros);

// run_worker with the options of the environment: TESSERA_WORKER_NTHREADS, _NAME, _LISTEN,
// _DEATH_TIMEOUT and _CONNECT_TIMEOUT (seconds), _PRELOAD (':'-separated), _MEMORY_LIMIT,
// _LOCAL_DIRECTORY, _MEMORY_TARGET, _SPILL, _PAUSE and _TERMINATE (fractions), _QUEUE_TIME
// and _INLINE_TIME (seconds), _VALIDATE (true/false),
// TESSERA_CURVE_KEY_FILE (the cluster's key), and `scheduler`. With TESSERA_WORKER_NANNY=1
// this process becomes a nanny (nanny.hpp) of TESSERA_WORKER_NWORKERS workers, each this
// program run again.
int run_worker_from_environment(const std::string& scheduler);

}  // namespace tessera::distributed

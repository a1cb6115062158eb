// The nanny (Dask's Nanny): a small process that starts worker processes, watches them,
// and restarts one that dies or whose memory passes the terminate threshold (95% of its
// limit by default), so a task that outgrows its worker costs that worker, not the machine.
// The scheduler sees the killed worker leave and recomputes what it held; a task that kills
// three workers fails with KilledWorker.
//
// tessera-worker runs one by default (--nanny; --no-nanny runs the worker in its own
// process), and --nworkers N makes it start N workers. A program serving as its own worker
// (tessera::init) does the same with TESSERA_WORKER_NANNY=1 and TESSERA_WORKER_NWORKERS.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::distributed {

struct NannyOptions {
  int nworkers = 1;
  // The workers are called NAME-0, NAME-1, ... (NAME alone when there is one); "": each
  // worker names itself (after its data address).
  std::string name{};
  // Bytes of memory per worker (0: none); past `terminate` × limit the worker is killed and
  // started again.
  uint64_t memory_limit = 0;
  double terminate = 0.95;
  // How often the workers' memory and exits are looked at.
  std::chrono::milliseconds interval{100};
  // Starts worker `index` called `name` ("" to let it choose) and returns its pid (see
  // spawn_child).
  std::function<pid_t(int index, const std::string& name)> spawn;
};

// Starts the workers and watches them until SIGINT or SIGTERM (it stops them, returns 0),
// a worker exits with 3 (its scheduler went silent: the others are stopped, returns 3) or
// with 1 (it cannot start: returns 1). A worker killed by a signal or exiting otherwise is
// started again. Logs to the spdlog logger "nanny".
int run_nanny(const NannyOptions& options);

// Starts `program` with `args` (argv[0] first) and `env` as a child process that is sent
// SIGTERM if this process dies. IOError naming the program if it cannot.
pid_t spawn_child(const std::string& program, const std::vector<std::string>& args,
                  const std::vector<std::string>& env);

// Adds to a worker process's environment what Dask's nanny adds: OMP_NUM_THREADS,
// OPENBLAS_NUM_THREADS and MKL_NUM_THREADS set to the configuration's worker.blas-threads
// (1; 0 adds nothing), each unless `env` sets it already. A worker's parallelism is its
// own threads: BLAS threads besides would oversubscribe the cores, and OpenBLAS's spin for
// a while after start-up and after each call. ValueError naming the key if it is not a
// whole number from 0 to 1024.
void add_blas_thread_limits(std::vector<std::string>& env);

// The environment of a worker process started from this one: this process's variables but
// those starting with one of `dropped` (the caller sets its own), then the BLAS limits of
// add_blas_thread_limits (ValueError as there).
std::vector<std::string> worker_environment(std::initializer_list<std::string_view> dropped = {});

// Sends SIGTERM to each child in `pids` (entries <= 0 are skipped), waits up to `grace` for
// them to exit, SIGKILLs those still there, and reaps them all.
void stop_children(const std::vector<pid_t>& pids, std::chrono::milliseconds grace);

// A process's resident set size in bytes (0 if it is gone).
uint64_t resident_bytes(pid_t pid);

// This program's path (/proc/self/exe) and its command line (/proc/self/cmdline).
std::string self_executable();
std::vector<std::string> self_command_line();

}  // namespace tessera::distributed

// tessera::mpi: rank 0 the scheduler, rank 1 the client, ranks 2+ workers. The address (and
// the key, across machines) travel by MPI_Bcast; the end travels as a barrier that the
// serving ranks wait on without spinning (MPI_Ibarrier polled every 20 ms, so that the ranks
// sharing cores with the workers do not burn them).
#include "tessera/distributed/mpi.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "distributed/addresses.hpp"
#include "distributed/logging.hpp"
#include "distributed/scheduler_server.hpp"
#include "distributed/worker_server.hpp"
#include "tessera/core/error.hpp"

namespace tessera::mpi {

namespace {

struct State {
  bool initialized = false;
  bool finished = false;
  std::string address;
  Security security;
  std::string key_file;  // the generated key, for clients made on rank 1
};

State& state() {
  static State s;
  return s;
}

// A string from `root` to every rank.
std::string broadcast(const std::string& value, int root, int rank) {
  int size = rank == root ? static_cast<int>(value.size()) : 0;
  MPI_Bcast(&size, 1, MPI_INT, root, MPI_COMM_WORLD);
  std::string out = rank == root ? value : std::string(static_cast<size_t>(size), '\0');
  MPI_Bcast(out.data(), size, MPI_CHAR, root, MPI_COMM_WORLD);
  return out;
}

// Whether every rank runs on this machine (their processor names agree).
bool all_on_one_machine() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<char> all(static_cast<size_t>(size) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME,
                MPI_CHAR, MPI_COMM_WORLD);
  for (int r = 0; r < size; ++r) {
    if (std::strncmp(name, &all[static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME],
                     MPI_MAX_PROCESSOR_NAME) != 0)
      return false;
  }
  return true;
}

// Waits until rank 1 enters the closing barrier, sleeping between looks.
void wait_for_the_end() {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  int done = 0;
  while (!done) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

[[noreturn]] void fail(int rank, const std::string& what) {
  distributed::logger(rank == 0 ? "scheduler" : "worker")
      ->critical("tessera::mpi: rank {}: {}", rank, what);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void shutdown_at_exit() {
  shutdown();
}

}  // namespace

void initialize(const Options& options) {
  auto& s = state();
  if (s.initialized) throw ValueError("tessera::mpi::initialize was called twice");
  int ready = 0;
  MPI_Initialized(&ready);
  if (!ready) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 3) {
    if (rank == 0) {
      auto log = distributed::logger("scheduler");
      log->critical(
          "tessera::mpi::initialize needs at least 3 ranks (scheduler, client, "
          "workers), got {}: mpirun -np 3 or more",
          size);
      log->flush();
    }
    // Every rank waits for the message: another rank's abort would otherwise kill rank 0
    // before it is written.
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const bool local = all_on_one_machine();
  // Where this rank's server listens: the address given, the interface's, loopback on one
  // machine; across machines, this machine's outward address for the scheduler, and for a
  // worker the default (its address towards the scheduler).
  std::string host = options.address;
  try {
    if (host.empty() && !options.interface.empty() && rank != 1)  // the client binds nothing
      host = distributed::interface_ip(options.interface);
    if (host.empty() && local) host = "127.0.0.1";
    if (host.empty() && rank == 0) host = distributed::this_machine_ip();
  } catch (const std::exception& e) {
    fail(rank, e.what());
  }

  // The key: the caller's, the environment's, or (across machines) a fresh one from rank 0.
  Security security = options.security;
  bool generated = false;
  try {
    if (!security.enabled()) security = Security::from_environment();
  } catch (const std::exception& e) {
    fail(rank, e.what());
  }
  int want_key = (!security.enabled() && !local) ? 1 : 0;
  MPI_Bcast(&want_key, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (want_key) {
    const Security fresh = rank == 0 ? Security::generate() : Security{};
    security.public_key = broadcast(fresh.public_key, 0, rank);
    security.secret_key = broadcast(fresh.secret_key, 0, rank);
    generated = true;
  }

  // Rank 0: the scheduler; its address goes to everyone.
  std::unique_ptr<distributed::SchedulerServer> scheduler;
  std::string address;
  if (rank == 0) {
    try {
      distributed::SchedulerServer::Options so;
      so.address = fmt::format("tcp://{}:{}", host, options.port);
      so.security = security;
      so.state = distributed::state_options_from_config();
      scheduler = std::make_unique<distributed::SchedulerServer>(so);
      scheduler->start();
      address = scheduler->address();
      distributed::logger("scheduler")->info("tessera::mpi: scheduler at {} for {} workers",
                                             address, size - 2);
    } catch (const std::exception& e) {
      fail(rank, e.what());
    }
  }
  address = broadcast(address, 0, rank);

  if (rank == 1) {
    s.initialized = true;
    s.address = address;
    s.security = security;
    if (generated) {
      // A Client made on this rank finds the key through the environment.
      s.key_file = (std::filesystem::temp_directory_path() /
                    fmt::format("tessera-mpi-{}.key", ::getpid()))
                       .string();
      security.write(s.key_file, /*overwrite=*/true);
      ::setenv("TESSERA_CURVE_KEY_FILE", s.key_file.c_str(), 1);
    }
    std::atexit(shutdown_at_exit);
    return;
  }

  std::unique_ptr<distributed::WorkerServer> worker;
  if (rank >= 2) {
    try {
      worker = std::make_unique<distributed::WorkerServer>(distributed::WorkerServer::Options{
          .scheduler = address,
          .listen = host.empty() ? std::string() : fmt::format("tcp://{}:0", host),
          .name = fmt::format("mpi-rank-{}", rank),
          .nthreads = options.nthreads,
          .memory_limit = options.memory_limit,
          .local_directory = options.local_directory,
          .security = security});
      worker->start();
    } catch (const std::exception& e) {
      fail(rank, e.what());
    }
  }
  wait_for_the_end();
  if (worker) worker->stop();
  MPI_Barrier(MPI_COMM_WORLD);  // the workers are gone before the scheduler goes
  if (scheduler) scheduler->stop();
  MPI_Finalize();
  std::exit(0);
}

const std::string& scheduler_address() {
  const auto& s = state();
  if (!s.initialized) {
    throw ValueError(
        "tessera::mpi::scheduler_address: call tessera::mpi::initialize() first (on the "
        "client's rank, 1)");
  }
  return s.address;
}

const Security& security() {
  return state().security;
}

void shutdown() {
  auto& s = state();
  if (!s.initialized || s.finished) return;
  s.finished = true;
  // Meets the serving ranks' Ibarrier (a blocking collective would not match it).
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  MPI_Wait(&request, MPI_STATUS_IGNORE);
  MPI_Barrier(MPI_COMM_WORLD);  // the workers have stopped
  if (!s.key_file.empty()) std::filesystem::remove(s.key_file);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace tessera::mpi

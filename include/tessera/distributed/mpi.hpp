// File: tessera/distributed/mpi.hpp — a cluster launched by MPI (as dask-mpi does).
//
// A program run under mpirun that calls tessera::mpi::initialize() becomes a whole cluster:
// rank 0 runs the scheduler, ranks 2 and up run workers (with this program's registered
// ops), and rank 1 returns from initialize() and goes on as the client. When the client's
// program ends (main returns or exit() is called), or it calls shutdown(), the workers and
// the scheduler stop and every rank leaves MPI and exits with 0.
//
//   int main() {
//     tessera::mpi::initialize({.nthreads = 2});
//     tessera::Client client(tessera::mpi::scheduler_address());
//     ... submit, map, compute(client) ...
//   }
//
//   $ mpirun -np 6 ./my_program          # 1 scheduler, 1 client, 4 workers
//
// Link with tessera::mpi (libtessera_mpi, built when CMake finds MPI). With every rank on
// one machine the cluster binds to loopback; across machines it binds to this machine's
// address (or Options::address) and, unless given a key, secures itself with a fresh CURVE
// key that rank 0 makes and sends to the others through MPI.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/distributed/security.hpp"

namespace tessera::mpi {

struct Options {
  // Threads per worker rank.
  int nthreads = 1;
  // Bytes of memory per worker rank (0: no limit); see LocalCluster::Options::memory_limit.
  uint64_t memory_limit = 0;
  // Where workers spill (default: the temporary directory).
  std::string local_directory = {};
  // The IP address or host name every rank's server binds ("": loopback if every rank is
  // on this machine; else `interface`'s address, or by default this machine's outward
  // address for the scheduler and, for a worker, its address towards the scheduler).
  std::string address = {};
  // The network interface the scheduler and workers serve on ("ib0", "eth0"; each rank's
  // own, even on one machine), when machines have several and the default route's is not
  // the one the ranks share.
  std::string interface = {};
  // The scheduler's port on rank 0 (0: any free one).
  int port = 0;
  // The cluster's key (none: TESSERA_CURVE_KEY_FILE's, else a fresh one when the ranks
  // span machines).
  Security security = {};
};

// Initializes MPI if the program has not (MPI_THREAD_FUNNELED), then: rank 0 and ranks 2+
// serve until the client is done and exit(0) without returning; rank 1 returns. SchedulerError
// if there are fewer than 3 ranks or a rank's server cannot start (that rank aborts the job).
void initialize(const Options& options = {});

// On the client's rank: the scheduler's address ("tcp://127.0.0.1:41234"). ValueError
// before initialize().
const std::string& scheduler_address();
// The key the cluster uses (none on loopback unless given one); a Client on rank 1 made
// with scheduler_address() uses it.
const Security& security();

// On the client's rank: stops the workers and the scheduler now and finalizes MPI (done at
// exit otherwise). Idempotent.
void shutdown();

}  // namespace tessera::mpi

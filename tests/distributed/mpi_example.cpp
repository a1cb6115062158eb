// tessera::mpi under mpirun (ctest runs it with -np 4): rank 0 the scheduler, rank 1 this
// client, ranks 2 and 3 workers running this program's ops. Checks the values, that both
// worker ranks ran tasks (and not the client's process), and, by mpirun's exit status, that
// every rank exits cleanly when main returns.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "example_support.hpp"
#include "tessera/delayed.hpp"
#include "tessera/distributed.hpp"
#include "tessera/distributed/mpi.hpp"

int64_t inc(int64_t x) { return x + 1; }
TESSERA_REGISTER(inc);

int main() {
  try {
    (void)tessera::mpi::scheduler_address();
    return 1;
  } catch (const tessera::ValueError& e) {
    CHECK(std::string(e.what()) ==
          "tessera::mpi::scheduler_address: call tessera::mpi::initialize() first (on the "
          "client's rank, 1)");
  }
  tessera::mpi::initialize({.nthreads = 1});
  // Only rank 1 gets here.
  tessera::Client client(tessera::mpi::scheduler_address());
  auto f = client.submit(inc, 1);
  CHECK(client.submit(add, f, 10).result() == 12);
  std::vector<int64_t> xs(100);
  for (int64_t i = 0; i < 100; ++i) xs[static_cast<size_t>(i)] = i;
  int64_t want = 0;
  for (auto x : xs) want += x + 1;
  auto incs = client.map(inc, xs);
  int64_t total = 0;
  for (auto v : client.gather(incs)) total += v;
  CHECK(total == want);
  CHECK(tessera::delayed(add)(tessera::delayed(inc)(1), 2).compute(client) == 4);
  std::set<int64_t> pids;
  for (auto p : client.gather(client.map(where, std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8})))
    pids.insert(p);
  // Every worker rank ran some (Open MPI tells each rank the world's size).
  const char* world = std::getenv("OMPI_COMM_WORLD_SIZE");
  CHECK(world != nullptr && pids.size() == static_cast<size_t>(std::atoi(world) - 2));
  CHECK(pids.count(::getpid()) == 0);
  // No key unless the environment names one (the secured variant of the test) or the ranks
  // span machines (rank 1 then names the generated one there).
  CHECK(tessera::mpi::security().enabled() == (std::getenv("TESSERA_CURVE_KEY_FILE") != nullptr));
  // Secured, the cluster refuses a client without its key.
  if (tessera::mpi::security().enabled()) {
    const std::string key_file = std::getenv("TESSERA_CURVE_KEY_FILE");
    ::unsetenv("TESSERA_CURVE_KEY_FILE");
    bool refused = false;
    try {
      tessera::Client stranger(
          tessera::mpi::scheduler_address(),
          {.connect_timeout = std::chrono::seconds(5), .set_as_default = false});
    } catch (const tessera::SchedulerError& e) {
      refused = std::string(e.what()).find("refused this client") != std::string::npos;
      if (!refused) std::fprintf(stderr, "%s\n", e.what());
    }
    ::setenv("TESSERA_CURVE_KEY_FILE", key_file.c_str(), 1);
    CHECK(refused);
  }
  std::printf("tessera::mpi: %zu worker ranks, results exact, %s: ok\n", pids.size(),
              tessera::mpi::security().enabled() ? "secured" : "not secured");
  return 0;
}

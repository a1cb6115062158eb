// A client and its workers on different machines (run by tests/distributed/machines_test.sh,
// which makes each "machine" a network namespace with its own address):
//
//   tessera_machines_example --tessera-worker=tcp://10.x.y.1:8786   a worker (this program)
//   tessera_machines_example tcp://10.x.y.1:8786 N                   the client, N workers
//
// The client waits for the N workers, spreads slow tasks over them, sums their results in a
// tree (so that workers fetch each other's data), gathers from every worker, and checks the
// values and that the workers report addresses other than loopback's.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <tessera/tessera.hpp>

#include "example_support.hpp"

int64_t slow_inc(int64_t x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return x + 1;
}
TESSERA_REGISTER(slow_inc);

int main(int argc, char** argv) {
  tessera::init(argc, argv);  // returns only if this process is not a worker
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SCHEDULER_ADDRESS N_WORKERS\n", argv[0]);
    return 2;
  }
  const size_t n_workers = static_cast<size_t>(std::atoi(argv[2]));
  tessera::Client client(argv[1]);
  client.wait_for_workers(n_workers, std::chrono::seconds(30));
  const auto info = client.scheduler_info();
  CHECK(info.workers.size() == n_workers);
  for (const auto& w : info.workers) {
    std::printf("worker %s at %s, %d thread(s)\n", w.name.c_str(), w.address.c_str(), w.nthreads);
    CHECK(w.address.find("127.0.0.1") == std::string::npos);
    CHECK(w.address.find("0.0.0.0") == std::string::npos);
  }

  std::set<int64_t> pids;
  std::vector<int64_t> ids(8 * n_workers);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  for (auto p : client.gather(client.map(where, ids))) pids.insert(p);
  CHECK(pids.size() == n_workers);

  std::vector<int64_t> xs(64);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<int64_t>(i);
  auto level = client.map(slow_inc, xs);
  while (level.size() > 1) {  // pairwise sums: each pair's halves may sit on two machines
    std::vector<tessera::Future<int64_t>> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(client.submit(add, level[i], level[i + 1]));
    level = std::move(next);
  }
  CHECK(level[0].result() == 64 * 65 / 2);
  std::vector<int64_t> incs = client.gather(client.map(slow_inc, xs));
  for (size_t i = 0; i < xs.size(); ++i) CHECK(incs[i] == xs[i] + 1);
  std::printf("%zu workers on other machines, results exact: ok\n", pids.size());
  return 0;
}

// The distributed runtime end to end, on a LocalCluster of 2 worker processes with 1 thread
// each (this program serves as its own worker: tessera::init hands worker processes to the
// worker loop). Workloads of the distributed issue:
//
//   tessera-bench-distributed --bench map --n 20000        client.map(inc) + gather: tasks/s
//   tessera-bench-distributed --bench roundtrip --n 200    submit + result: µs per round trip
//   tessera-bench-distributed --bench graph --n 100000     N incs + a tree sum as one graph:
//                                                          tasks/s
//   tessera-bench-distributed --bench chain --n 2000       a chain of N adds: µs per task
//   tessera-bench-distributed --bench transport --n 2000   the floor under the round trip: a
//       message to another process and back over tessera's ZeroMQ connection (no scheduler),
//       and one byte through a pipe and back (the operating system's wake-up cost): µs each
//
// Each checks its result and exits 1 if it is wrong. One JSON line per result.
#include <tessera/tessera.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "comm/message.hpp"
#include "comm/transport.hpp"

#include <sys/wait.h>
#include <unistd.h>

namespace {

int64_t bench_inc(int64_t x) {
  return x + 1;
}
TESSERA_REGISTER(bench_inc);

int64_t bench_add(int64_t x, int64_t y) {
  return x + y;
}
TESSERA_REGISTER(bench_add);

[[noreturn]] void wrong(const char* what, long long got, long long want) {
  std::fprintf(stderr, "%s: got %lld, expected %lld\n", what, got, want);
  std::exit(1);
}

std::string params(const std::string& bench, long n) {
  return "{\"n\": " + std::to_string(n) +
         ", \"n_workers\": 2, \"threads_per_worker\": 1, \"bench\": \"" + bench + "\"}";
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Round trips to a child process that echoes: over tessera's transport (a comm::Connection
// to a comm::Server, as a client talks to the scheduler), then over a pair of pipes. Forked
// before any ZeroMQ context exists in this process.
void transport_floor(long n) {
  namespace comm = tessera::comm;
  int address_pipe[2], ping[2], pong[2];
  if (pipe(address_pipe) != 0 || pipe(ping) != 0 || pipe(pong) != 0) std::exit(2);
  const pid_t child = fork();
  if (child == 0) {
    {
      comm::Server server("tcp://127.0.0.1:0");
      const std::string& a = server.address();
      if (write(address_pipe[1], a.data(), a.size()) != static_cast<ssize_t>(a.size())) _exit(2);
      close(address_pipe[1]);
      for (long i = 0; i < n + 1; ++i) {
        auto in = server.receive(std::chrono::milliseconds(10000));
        if (!in) _exit(2);
        server.send(in->peer, in->message);
      }
    }
    char c;
    for (long i = 0; i < n; ++i) {
      if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1) _exit(2);
    }
    _exit(0);
  }
  close(address_pipe[1]);
  char buf[256];
  const ssize_t k = read(address_pipe[0], buf, sizeof buf);
  if (k <= 0) std::exit(2);
  std::vector<double> zmq_us, pipe_us;
  {
    comm::Connection conn(std::string(buf, static_cast<size_t>(k)));
    const comm::Envelope hello = comm::pack(comm::Handshake{.role = "client", .name = "bench"});
    for (long i = 0; i < n + 1; ++i) {  // the first one connects
      const double t0 = bench::now();
      conn.send(hello);
      if (!conn.receive(std::chrono::milliseconds(10000))) wrong("transport echo", 0, 1);
      if (i > 0) zmq_us.push_back((bench::now() - t0) * 1e6);
    }
  }
  char c = 'x';
  for (long i = 0; i < n; ++i) {
    const double t0 = bench::now();
    if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) wrong("pipe echo", 0, 1);
    pipe_us.push_back((bench::now() - t0) * 1e6);
  }
  int status = 0;
  waitpid(child, &status, 0);
  const std::string p = "{\"n\": " + std::to_string(n) + ", \"processes\": 2}";
  bench::emit("distributed.transport_rtt", "tessera", p, median(zmq_us), "us");
  bench::emit("distributed.pipe_rtt", "os", p, median(pipe_us), "us");
}

}  // namespace

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  std::string which = "map";
  long n = 20000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--bench") {
      which = argv[i + 1];
    } else if (a == "--n") {
      n = std::atol(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (which == "transport") {
    transport_floor(n);
    return 0;
  }
  tessera::LocalCluster cluster({.n_workers = 2, .threads_per_worker = 1});
  tessera::Client client(cluster, {.set_as_default = false});
  // Warm up: connections to both workers, the first task on each.
  {
    auto warm = client.map(bench_inc, std::vector<int64_t>{-1, -2, -3, -4});
    (void)client.gather(warm);
  }
  if (which == "map") {
    std::vector<int64_t> xs(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) xs[static_cast<size_t>(i)] = i;
    const double t0 = bench::now();
    auto fs = client.map(bench_inc, xs);
    std::vector<int64_t> out = client.gather(fs);
    const double dt = bench::now() - t0;
    for (long i = 0; i < n; ++i) {
      if (out[static_cast<size_t>(i)] != i + 1) wrong("map", out[static_cast<size_t>(i)], i + 1);
    }
    bench::emit("distributed.map", "tessera", params("map", n), static_cast<double>(n) / dt,
                "tasks/s");
  } else if (which == "roundtrip") {
    std::vector<double> us;
    for (long i = 0; i < n; ++i) {
      const double t0 = bench::now();
      const int64_t r = client.submit(bench_inc, int64_t{1000000} + i).result();
      us.push_back((bench::now() - t0) * 1e6);
      if (r != 1000001 + i) wrong("roundtrip", r, 1000001 + i);
    }
    std::nth_element(us.begin(), us.begin() + static_cast<long>(us.size() / 2), us.end());
    bench::emit("distributed.roundtrip", "tessera", params("roundtrip", n), us[us.size() / 2],
                "us");
  } else if (which == "graph" || which == "chain") {
    tessera::Graph g;
    const tessera::Op& inc = tessera::get_op("bench_inc");
    const tessera::Op& add = tessera::get_op("bench_add");
    tessera::Key out;
    long long want = 0;
    long tasks = 0;
    if (which == "chain") {
      tessera::Key prev("chain", {0});
      g.add(prev, tessera::Task::call(inc, {tessera::Arg(tessera::Value::of(int64_t{0}))}));
      for (long i = 1; i < n; ++i) {
        tessera::Key k("chain", {i});
        g.add(k, tessera::Task::call(
                     add, {tessera::Arg::ref(prev), tessera::Arg(tessera::Value::of(int64_t{1}))}));
        prev = k;
      }
      out = prev;
      want = n;
      tasks = n;
    } else {
      std::vector<tessera::Key> level;
      for (long i = 0; i < n; ++i) {
        tessera::Key k("inc", {i});
        g.add(k, tessera::Task::call(inc, {tessera::Arg(tessera::Value::of(int64_t{i}))}));
        level.push_back(k);
      }
      tasks = n;
      for (int depth = 0; level.size() > 1; ++depth) {
        std::vector<tessera::Key> next;
        for (size_t j = 0; j < level.size(); j += 2) {
          if (j + 1 == level.size()) {
            next.push_back(level[j]);
            continue;
          }
          tessera::Key k("add-" + std::to_string(depth), {static_cast<long>(j / 2)});
          g.add(k, tessera::Task::call(
                       add, {tessera::Arg::ref(level[j]), tessera::Arg::ref(level[j + 1])}));
          next.push_back(k);
          ++tasks;
        }
        level = std::move(next);
      }
      out = level[0];
      want = static_cast<long long>(n) * (n + 1) / 2;
    }
    const double t0 = bench::now();
    auto fs = client.submit_graph(g, std::span<const tessera::Key>(&out, 1));
    const int64_t r = fs[0].value().as<int64_t>();
    const double dt = bench::now() - t0;
    if (r != want) wrong(which.c_str(), r, want);
    if (which == "chain") {
      bench::emit("distributed.chain", "tessera", params("chain", n),
                  dt / static_cast<double>(tasks) * 1e6, "us/task");
    } else {
      bench::emit("distributed.graph", "tessera", params("graph", n),
                  static_cast<double>(tasks) / dt, "tasks/s");
    }
  } else {
    std::fprintf(stderr, "unknown --bench %s (map, roundtrip, graph, chain, transport)\n",
                 which.c_str());
    return 2;
  }
  return 0;
}

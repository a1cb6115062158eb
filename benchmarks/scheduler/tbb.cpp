// The same shapes on oneTBB's flow graph: a native task runtime without keys, values or
// release bookkeeping, the floor tessera is measured against.
//   tessera-bench-scheduler-tbb --shape independent|chain --n N [--workers W]
#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

using namespace oneapi::tbb;

int main(int argc, char** argv) {
  std::string shape = "independent";
  long long n = 1000000;
  int workers = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--shape")
      shape = value;
    else if (flag == "--n")
      n = std::stoll(value);
    else if (flag == "--workers")
      workers = std::stoi(value);
  }
  global_control limit(global_control::max_allowed_parallelism, static_cast<size_t>(workers));
  const long long rss0 = bench::rss_bytes();
  bench::reset_peak_rss();

  using Node = flow::continue_node<flow::continue_msg>;
  double t0 = bench::now();
  flow::graph g;
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<long long> values;
  std::vector<Node*> roots;
  if (shape == "chain") {
    values.assign(static_cast<size_t>(n), 0);
    nodes.reserve(static_cast<size_t>(n));
    for (long long i = 0; i < n; ++i) {
      nodes.push_back(std::make_unique<Node>(g, [&values, i](const flow::continue_msg&) {
        values[static_cast<size_t>(i)] = (i == 0 ? 0 : values[static_cast<size_t>(i - 1)]) + 1;
      }));
      if (i > 0) flow::make_edge(*nodes[static_cast<size_t>(i - 1)], *nodes.back());
    }
    roots.push_back(nodes[0].get());
  } else {
    values.assign(static_cast<size_t>(2 * n), 0);
    nodes.reserve(static_cast<size_t>(2 * n));
    std::vector<size_t> level;
    for (long long i = 0; i < n; ++i) {
      nodes.push_back(std::make_unique<Node>(
          g, [&values, i](const flow::continue_msg&) { values[static_cast<size_t>(i)] = i + 1; }));
      roots.push_back(nodes.back().get());
      level.push_back(static_cast<size_t>(i));
    }
    while (level.size() > 1) {
      std::vector<size_t> next;
      for (size_t j = 0; j + 1 < level.size(); j += 2) {
        const size_t a = level[j], b = level[j + 1], me = nodes.size();
        nodes.push_back(std::make_unique<Node>(g, [&values, a, b, me](const flow::continue_msg&) {
          values[me] = values[a] + values[b];
        }));
        flow::make_edge(*nodes[a], *nodes.back());
        flow::make_edge(*nodes[b], *nodes.back());
        next.push_back(me);
      }
      if (level.size() % 2) next.push_back(level.back());
      level = std::move(next);
    }
  }
  const double t_build = bench::now() - t0;
  t0 = bench::now();
  for (Node* r : roots) r->try_put(flow::continue_msg());
  g.wait_for_all();
  const double t_run = bench::now() - t0;
  const long long peak = bench::peak_rss_bytes();
  const long long want = shape == "chain" ? n : n * (n + 1) / 2;
  const long long got = values[nodes.size() - 1];
  if (got != want) {
    std::fprintf(stderr, "wrong result %lld, expected %lld\n", got, want);
    return 1;
  }
  const double tasks = static_cast<double>(nodes.size());
  char params[256];
  std::snprintf(params, sizeof params,
                "{\"shape\": \"%s\", \"n\": %lld, \"tasks\": %zu, \"scheduler\": \"threads\", "
                "\"workers\": %d}",
                shape.c_str(), n, nodes.size(), workers);
  bench::emit("scheduler." + shape + ".run", "tbb", params, t_run / tasks * 1e6, "us/task");
  bench::emit("scheduler." + shape + ".build", "tbb", params, t_build / tasks * 1e9, "ns/task");
  bench::emit("scheduler." + shape + ".peak_rss", "tbb", params,
              static_cast<double>(peak - rss0) / tasks, "bytes/task");
  return 0;
}

// Scheduler overhead: trivial tasks, so what is measured is tessera's own cost per task.
//   tessera-bench-scheduler --shape independent|chain --n N --scheduler sync|threads
//                           [--build graph|delayed] [--workers W]
// independent: N inc(i) tasks, then a pairwise tree of adds (2N - 1 tasks in all);
// chain: N tasks, each adding 1 to the previous. One configuration per process, so the
// peak resident memory belongs to it. Prints JSON lines (see benchmarks/run).
#include <tessera/tessera.hpp>

#include <cstring>
#include <string>

#include "bench_common.hpp"

namespace sched {
int64_t inc(int64_t x) {
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
}  // namespace sched
TESSERA_REGISTER(sched::inc);
TESSERA_REGISTER(sched::add);

namespace {

struct Built {
  tessera::Graph graph;
  tessera::Delayed<int64_t> delayed = tessera::Delayed<int64_t>(nullptr);
  tessera::Key out;
  size_t tasks = 0;
};

Built build_graph(const std::string& shape, int64_t n) {
  using tessera::Arg, tessera::Key, tessera::Task, tessera::Value;
  Built b;
  const tessera::Op& inc = tessera::get_op("sched::inc");
  const tessera::Op& add = tessera::get_op("sched::add");
  b.graph.reserve(static_cast<size_t>(2 * n));
  // References reuse the Key objects of the tasks they name, as a builder naturally does
  // (a Key is a shared handle: the copy costs no allocation).
  if (shape == "chain") {
    Key prev("chain", {0});
    b.graph.append(prev, Task::call(inc, {Arg(Value::of(int64_t{0}))}));
    for (int64_t i = 1; i < n; ++i) {
      Key cur("chain", {i});
      b.graph.append(cur, Task::call(add, {Arg::ref(prev), Arg(Value::of(int64_t{1}))}));
      prev = std::move(cur);
    }
    b.out = prev;
  } else {
    std::vector<Key> level;
    level.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      level.emplace_back("inc", std::initializer_list<int64_t>{i});
      b.graph.append(level.back(), Task::call(inc, {Arg(Value::of(i))}));
    }
    for (int64_t depth = 0; level.size() > 1; ++depth) {
      const std::string name = "add-" + std::to_string(depth);
      std::vector<Key> next;
      next.reserve(level.size() / 2 + 1);
      for (size_t j = 0; j < level.size(); j += 2) {
        Key k(name, {static_cast<int64_t>(j / 2)});
        if (j + 1 < level.size()) {
          b.graph.append(k, Task::call(add, {Arg::ref(level[j]), Arg::ref(level[j + 1])}));
        } else {
          b.graph.append(k, Task::alias(level[j]));
        }
        next.push_back(std::move(k));
      }
      level = std::move(next);
    }
    b.out = level[0];
  }
  b.tasks = b.graph.size();
  return b;
}

Built build_delayed(const std::string& shape, int64_t n) {
  Built b;
  auto inc = tessera::delayed(sched::inc);
  auto add = tessera::delayed(sched::add);
  if (shape == "chain") {
    auto x = inc(0);
    for (int64_t i = 1; i < n; ++i) x = add(x, 1);
    b.delayed = x;
  } else {
    std::vector<tessera::Delayed<int64_t>> level;
    level.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) level.push_back(inc(i));
    while (level.size() > 1) {
      std::vector<tessera::Delayed<int64_t>> next;
      next.reserve(level.size() / 2 + 1);
      for (size_t i = 0; i + 1 < level.size(); i += 2) next.push_back(add(level[i], level[i + 1]));
      if (level.size() % 2) next.push_back(level.back());
      level = std::move(next);
    }
    b.delayed = level[0];
  }
  b.out = b.delayed.key();
  b.tasks = static_cast<size_t>(shape == "chain" ? n : 2 * n - 1);
  return b;
}

int64_t expected(const std::string& shape, int64_t n) {
  return shape == "chain" ? n : n * (n + 1) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  std::string shape = "independent", scheduler = "threads", build = "graph";
  int64_t n = 1000000;
  int workers = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--shape")
      shape = value;
    else if (flag == "--n")
      n = std::stoll(value);
    else if (flag == "--scheduler")
      scheduler = value;
    else if (flag == "--build")
      build = value;
    else if (flag == "--workers")
      workers = std::stoi(value);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (workers == 0) workers = tessera::default_num_workers();
  if (scheduler == "sync") workers = 1;

  const long long rss0 = bench::rss_bytes();
  bench::reset_peak_rss();
  double t0 = bench::now();
  Built b = build == "delayed" ? build_delayed(shape, n) : build_graph(shape, n);
  const double t_build = bench::now() - t0;

  t0 = bench::now();
  int64_t result;
  const tessera::ComputeOptions options{.scheduler = scheduler, .num_workers = workers};
  if (build == "delayed") {
    result = b.delayed.compute(options);
  } else {
    const tessera::Key outs[] = {b.out};
    result = tessera::get(b.graph, outs, options)[0].get<int64_t>();
  }
  const double t_run = bench::now() - t0;
  const long long peak = bench::peak_rss_bytes();
  if (result != expected(shape, n)) {
    std::fprintf(stderr, "wrong result %lld, expected %lld\n", static_cast<long long>(result),
                 static_cast<long long>(expected(shape, n)));
    return 1;
  }
  const double tasks = static_cast<double>(b.tasks);
  char params[256];
  std::snprintf(params, sizeof params,
                "{\"shape\": \"%s\", \"n\": %lld, \"tasks\": %zu, \"scheduler\": \"%s\", "
                "\"workers\": %d, \"build\": \"%s\"}",
                shape.c_str(), static_cast<long long>(n), b.tasks, scheduler.c_str(), workers,
                build.c_str());
  bench::emit("scheduler." + shape + ".run", "tessera", params, t_run / tasks * 1e6, "us/task");
  bench::emit("scheduler." + shape + ".build", "tessera", params, t_build / tasks * 1e9, "ns/task");
  bench::emit("scheduler." + shape + ".peak_rss", "tessera", params,
              static_cast<double>(peak - rss0) / tasks, "bytes/task");
  return 0;
}

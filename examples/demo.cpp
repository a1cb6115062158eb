// tessera's showcase (`make demo`): a map-reduce over 1,024 synthetic partitions as a
// delayed graph of about 4,000 tasks, computed on the sync and threads schedulers with a
// progress bar and on a LocalCluster of 2 worker processes through a Client, checked against a
// direct loop, with a picture of the graph and the task stream of the threaded run written to
// out/demo/.
#include <sys/resource.h>
#include <tessera/array.hpp>
#include <tessera/tessera.hpp>

#include <iostream>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>

namespace demo {

// One partition of measurements: deterministic pseudo-random data, as if read from a file.
std::vector<double> load(int64_t partition, int64_t rows) {
  std::mt19937_64 rng(static_cast<uint64_t>(partition) * 7919 + 17);
  std::normal_distribution<double> normal(10.0, 3.0);
  std::vector<double> v(static_cast<size_t>(rows));
  for (double& x : v) x = normal(rng);
  return v;
}

// Drops outliers and takes the log, as a cleaning step would.
std::vector<double> clean(const std::vector<double>& v) {
  std::vector<double> out;
  out.reserve(v.size());
  for (double x : v) {
    if (x > 0.5 && x < 30.0) out.push_back(std::log(x));
  }
  return out;
}

// Count, sum and sum of squares: what a mean and a standard deviation need.
std::vector<double> moments(const std::vector<double>& v) {
  double s = 0, ss = 0;
  for (double x : v) {
    s += x;
    ss += x * x;
  }
  return {static_cast<double>(v.size()), s, ss};
}

std::vector<double> combine(const std::vector<double>& a, const std::vector<double>& b) {
  return {a[0] + b[0], a[1] + b[1], a[2] + b[2]};
}

}  // namespace demo

TESSERA_REGISTER(demo::load);
TESSERA_REGISTER(demo::clean);
TESSERA_REGISTER(demo::moments);
TESSERA_REGISTER(demo::combine);

namespace {

using tessera::Delayed;
using Moments = std::vector<double>;

// load → clean → moments per partition, then a pairwise tree of combines.
Delayed<Moments> pipeline(int64_t partitions, int64_t rows) {
  std::vector<Delayed<Moments>> level;
  for (int64_t p = 0; p < partitions; ++p) {
    auto raw = tessera::delayed(demo::load)(p, rows);
    level.push_back(tessera::delayed(demo::moments)(tessera::delayed(demo::clean)(raw)));
  }
  while (level.size() > 1) {
    std::vector<Delayed<Moments>> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(tessera::delayed(demo::combine)(level[i], level[i + 1]));
    if (level.size() % 2) next.push_back(level.back());
    level = std::move(next);
  }
  return level[0];
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// The arrays part: the array issue's examples with their printed forms, a graph picture, and
// an out-of-core sum over 8 GB of random numbers that never exist all at once.
bool array_showcase(const std::filesystem::path& out_dir) {
  namespace ta = tessera::array;
  std::printf("\n---- arrays (tessera::array, NumPy's names) ----\n\n");
  auto y = ta::ones({15}, {5});
  std::cout << "auto y = ta::ones({15}, {5});\n  " << y << "\n";
  auto s = y.sum();
  std::cout << "auto s = y.sum();\n  " << s << "\n";
  const double v = s.compute().item<double>();
  std::cout << "s.compute().item<double>()\n  " << v << "\n";
  auto X = ta::random::uniform({10, 10}, {3, 3}, /*seed=*/42);
  auto Z = ta::matmul(X.T(), X) + X.T();
  std::cout << "auto Z = ta::matmul(X.T(), X) + X.T();   // X = ta::random::uniform({10, 10}, {3, "
               "3}, 42)\n  "
            << Z << "\n";
  const ta::NDArray z = Z.compute();
  std::cout << "Z.compute()[:2, :4]\n  " << z.slice(0, 0, 2).slice(1, 0, 4).repr() << "\n";
  const auto z_npy = out_dir / "z.npy", z_svg = out_dir / "z.svg";
  ta::to_npy(Z, z_npy.string());
  Z.visualize(z_svg.string());
  const bool same_file = ta::read_npy(z_npy.string()) == z;
  std::printf("to_npy(Z) -> %s (numpy.load reads it; read back %s)\n", z_npy.c_str(),
              same_file ? "identical" : "DIFFERENT");
  std::printf("Z.visualize() -> %s (%zu tasks)\n\n", z_svg.c_str(), Z.materialize().size());

  // Out of core: 100,000 x 10,000 float64 = 8 GB, generated and summed block by block.
  auto big = ta::random::random({100000, 10000}, {10000, 1000}, /*seed=*/0);
  std::cout << "auto big = ta::random::random({100000, 10000}, {10000, 1000});   // 8 GB\n  " << big
            << "\n";
  const auto t0 = std::chrono::steady_clock::now();
  double total;
  {
    tessera::ProgressBar bar({.force = true, .out = stdout});
    total = big.sum().compute().item<double>();
  }
  const double secs = seconds_since(t0);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double expected = 1e9 * 0.5;
  const bool plausible = std::abs(total - expected) < 1e-3 * expected;
  std::printf("big.sum() = %.6g (expected about %.6g: %s) in %.2f s, %.2f GB/s of generated data\n",
              total, expected, plausible ? "ok" : "WRONG", secs, 8.0 / secs);
  std::printf("peak resident memory of this whole program: %.0f MiB (the array is 8192 MiB)\n",
              static_cast<double>(ru.ru_maxrss) / 1024.0);
  return v == 15 && same_file && plausible;
}

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  const int64_t partitions = 1024, rows = 20000;
  const std::filesystem::path out_dir = std::filesystem::absolute("out/demo");
  std::filesystem::create_directories(out_dir);

  std::printf(
      "tessera demo: mean and standard deviation of log(measurements) over %lld partitions x %lld "
      "rows\n\n",
      static_cast<long long>(partitions), static_cast<long long>(rows));

  auto t0 = std::chrono::steady_clock::now();
  Delayed<Moments> result = pipeline(partitions, rows);
  const double build = seconds_since(t0);
  const size_t tasks = result.graph().size();
  std::printf(
      "graph: %zu tasks (load -> clean -> moments per partition, then a tree of combines), built "
      "in %.1f ms\n",
      tasks, build * 1e3);
  std::printf("key of the result: %s\n\n", result.key().str().c_str());

  // The same graph on both schedulers, each with a progress bar.
  Moments sync_m, threads_m;
  double t_sync, t_threads;
  {
    std::printf("sync scheduler (one thread):\n");
    tessera::ProgressBar bar({.force = true, .out = stdout});
    t0 = std::chrono::steady_clock::now();
    sync_m = result.compute({.scheduler = "sync"});
    t_sync = seconds_since(t0);
  }
  tessera::Profiler profiler;
  {
    std::printf("threads scheduler (%d workers):\n", tessera::default_num_workers());
    tessera::ProgressBar bar({.force = true, .out = stdout});
    t0 = std::chrono::steady_clock::now();
    threads_m = result.compute();
    t_threads = seconds_since(t0);
  }
  profiler.deactivate();

  // The same graph on a cluster: a scheduler and 2 worker processes on loopback (the workers
  // are this program: main() called tessera::init, so they have its registered functions).
  Moments cluster_m;
  double t_cluster = 0, t_start = 0;
  {
    t0 = std::chrono::steady_clock::now();
    tessera::LocalCluster cluster({.n_workers = 2, .threads_per_worker = 1});
    tessera::Client client(cluster, {.set_as_default = false});
    t_start = seconds_since(t0);
    std::printf("a LocalCluster of 2 worker processes (started in %.2f s), through a Client:\n",
                t_start);
    t0 = std::chrono::steady_clock::now();
    cluster_m = result.compute(client);
    t_cluster = seconds_since(t0);
  }

  // An independent check: the same arithmetic as a plain loop.
  Moments direct{0, 0, 0};
  for (int64_t p = 0; p < partitions; ++p)
    direct = demo::combine(direct, demo::moments(demo::clean(demo::load(p, rows))));
  const double n = threads_m[0], mean = threads_m[1] / n, var = threads_m[2] / n - mean * mean;
  const bool same = sync_m == threads_m && cluster_m == threads_m &&
                    std::abs(threads_m[1] - direct[1]) <= 1e-9 * std::abs(direct[1]) &&
                    threads_m[0] == direct[0];

  std::printf("\nresult: n = %.0f, mean = %.6f, std = %.6f  (%s the direct loop)\n", n, mean,
              std::sqrt(var), same ? "matches" : "DOES NOT MATCH");
  std::printf("time:   sync %.3f s, threads %.3f s (%.2fx), %.1f us per task on threads\n", t_sync,
              t_threads, t_sync / t_threads, t_threads / static_cast<double>(tasks) * 1e6);
  std::printf("        2 worker processes %.3f s (%.2fx sync), the same result to the last bit\n",
              t_cluster, t_sync / t_cluster);

  // Pictures: a small version of the graph (4,000 nodes would be unreadable), and the task
  // stream of the threaded run.
  const auto graph_svg = out_dir / "graph.svg";
  const auto stream_html = out_dir / "task-stream.html";
  const auto trace_json = out_dir / "trace.json";
  pipeline(8, rows).visualize(graph_svg.string(), {.color = "order"});
  profiler.write_html(stream_html.string(), "tessera demo: threads scheduler");
  profiler.write_chrome_trace(trace_json.string());
  std::printf(
      "\nwrote:\n  %s   the graph for 8 partitions, colored by static order\n"
      "  %s   the task stream of the threaded run (open in a browser)\n"
      "  %s   the same as a Chrome trace (open in https://ui.perfetto.dev)\n",
      graph_svg.c_str(), stream_html.c_str(), trace_json.c_str());
  const bool arrays_ok = array_showcase(out_dir);
  return same && arrays_ok ? 0 : 1;
}

// Chunked arrays: the workloads of the arrays issue on tessera's array layer, plus the machine
// references their targets are measured against (one in-memory DGEMM, a STREAM triad).
//   tessera-bench-array --workload W [--n N] [--chunk C] [--rows R] [--threads T] [--reps K]
//                       [--prefault-mb M] [--inner I]
// W is one of
//   sum_ones    ones((n, n), chunks=c).sum()                      (n 20000, c 2000)
//   matmul      ((X.T @ X) + X.T).sum(), X = random((n, n), c)    (n 8000, c 1000)
//   mean        x.mean(axis=0), x = random((n, n), c), persisted  (n 10000, c 1000)
//   std         x.std(), the same x
//   rechunk     x (blocks (c, n)), persisted, .rechunk((n, c)).persist()
//   random_sum  random((rows, n), chunks=(rows / 10, c)).sum()    (rows 100000, n 10000)
//   dgemm       one n×n cblas_dgemm on T BLAS threads, best of K  (n 4000, T 2)
//   stream      STREAM triad a = b + q c on T threads, n doubles  (n 2^26, T 2)
// One workload per process, so peak memory belongs to it. Only the named operation is timed
// (graph construction included; persisted inputs are built before), after touching M MiB of
// fresh memory (see prefault()); sum_ones, mean and std report the median of I runs. Prints JSON
// lines (see benchmarks/run); a wrong result exits with status 1.
#include <cblas.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <tessera/array.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace ta = tessera::array;

namespace {

struct Options {
  std::string workload;
  int64_t n = 0, chunk = 0, rows = 0;
  int threads = 2, reps = 0;
  int64_t prefault_mb = 0;
  int inner = 1;
};

// Runs `f` `inner` times and returns the median duration in seconds (and f's last result):
// one short computation (tens of ms) is at the mercy of the VM's noise, so the short
// workloads run several times in their process, as dask_peer.py does.
template <class F>
double median_time(int inner, F&& f, decltype(f())& result) {
  std::vector<double> ts;
  for (int i = 0; i < std::max(1, inner); ++i) {
    const double t0 = bench::now();
    result = f();
    ts.push_back(bench::now() - t0);
  }
  std::sort(ts.begin(), ts.end());
  const size_t m = ts.size();
  return m % 2 ? ts[m / 2] : (ts[m / 2 - 1] + ts[m / 2]) / 2;
}

// Touches and frees `mb` MiB just before a timed region that needs fresh memory. On a VM
// that hands freed guest memory back to its host (free page reporting, as on this
// benchmark machine), the first touch of memory not used lately costs host page faults:
// 0.3 to 7 GB/s from one run to the next. Memory touched just now is backed again, so the
// timed region pays only the kernel's own zeroing. dask_peer.py does the same.
void prefault(int64_t mb) {
  if (mb <= 0) return;
  const size_t bytes = static_cast<size_t>(mb) << 20;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  madvise(p, bytes, MADV_HUGEPAGE);
  std::memset(p, 1, bytes);
  munmap(p, bytes);
}

// Peak resident set size of this process (getrusage; Linux reports KiB), in bytes.
double max_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The parameters every line carries: what ran, on which BLAS kernel and how many threads.
std::string common_params(const Options& o) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "\"workers\": %d, \"blas_core\": \"%s\", \"coretype_env\": \"%s\", "
                "\"blas_threads_per_task\": \"%s\", \"prefault_mb\": %lld, \"inner\": %d",
                tessera::default_num_workers(), ta::blas_core().c_str(),
                env_or("OPENBLAS_CORETYPE", "unset (auto-detected)").c_str(),
                env_or("TESSERA_BLAS_THREADS", "1").c_str(), static_cast<long long>(o.prefault_mb),
                o.inner);
  return buf;
}

[[noreturn]] void wrong(const std::string& what, double got, double want) {
  std::fprintf(stderr, "%s: wrong result %.17g, expected about %.17g\n", what.c_str(), got, want);
  std::exit(1);
}

void check_close(const std::string& what, double got, double want, double rel) {
  if (!(std::fabs(got - want) <= rel * std::fabs(want))) wrong(what, got, want);
}

std::string shape_params(const char* key, int64_t a, int64_t b) {
  return "\"" + std::string(key) + "\": [" + std::to_string(a) + ", " + std::to_string(b) + "]";
}

int sum_ones(const Options& o) {
  prefault(o.prefault_mb);
  double v = 0;
  const double t = median_time(
      o.inner,
      [&] {
        return ta::ones({o.n, o.n}, o.chunk).sum().compute().item<double>();
      },
      v);
  if (v != static_cast<double>(o.n) * static_cast<double>(o.n)) wrong("sum_ones", v, o.n * o.n);
  const std::string p = "{" + shape_params("shape", o.n, o.n) + ", " +
                        shape_params("chunks", o.chunk, o.chunk) + ", " + common_params(o) + "}";
  bench::emit("array.sum_ones.time", "tessera", p, t, "s");
  return 0;
}

int matmul(const Options& o) {
  prefault(o.prefault_mb);
  const double t0 = bench::now();
  const auto X = ta::random::random({o.n, o.n}, o.chunk, /*seed=*/1);
  const double v = ((ta::matmul(X.T(), X) + X.T()).sum()).compute().item<double>();
  const double t = bench::now() - t0;
  // sum(X^T X) = sum over k of (row sum k)^2, each of mean n^2/4 + n/12; sum(X) about n^2/2.
  const double n = static_cast<double>(o.n);
  check_close("matmul", v, n * (n * n / 4 + n / 12) + n * n / 2, 0.01);
  const std::string p = "{" + shape_params("shape", o.n, o.n) + ", " +
                        shape_params("chunks", o.chunk, o.chunk) +
                        ", \"flops\": \"2 n^3 (the matmul)\", \"timed\": \"random X included\", " +
                        common_params(o) + "}";
  bench::emit("array.matmul.time", "tessera", p, t, "s");
  bench::emit("array.matmul.gflops", "tessera", p, 2 * n * n * n / t / 1e9, "GFLOP/s");
  return 0;
}

// x.mean(axis=0) or x.std() of an in-memory random array.
int moments(const Options& o) {
  const bool mean = o.workload == "mean";
  const ta::Array x = ta::random::random({o.n, o.n}, o.chunk, /*seed=*/2).persist();
  prefault(o.prefault_mb);
  ta::NDArray r;
  const double t = median_time(
      o.inner, [&] { return mean ? x.mean(0).compute() : x.std().compute(); }, r);
  if (mean) {
    const std::vector<double> m = r.to_vector<double>();
    if (static_cast<int64_t>(m.size()) != o.n) wrong("mean: length", m.size(), o.n);
    for (double e : m) check_close("mean", e, 0.5, 0.1);
  } else {
    check_close("std", r.item<double>(), std::sqrt(1.0 / 12), 0.01);
  }
  const double bytes = 8.0 * static_cast<double>(o.n) * static_cast<double>(o.n);
  const std::string name = mean ? "array.mean_axis0" : "array.std";
  const std::string p =
      "{" + shape_params("shape", o.n, o.n) + ", " + shape_params("chunks", o.chunk, o.chunk) +
      ", \"timed\": \"the reduction of a persisted array\", " + common_params(o) + "}";
  bench::emit(name + ".time", "tessera", p, t, "s");
  bench::emit(name + ".bandwidth", "tessera", p, bytes / t / 1e9, "GB/s");
  return 0;
}

int rechunk(const Options& o) {
  const ta::Array x = ta::random::random({o.n, o.n}, {o.chunk, o.n}, /*seed=*/3).persist();
  prefault(o.prefault_mb);
  const double t0 = bench::now();
  const ta::Array y = x.rechunk({o.n, o.chunk}).persist();
  const double t = bench::now() - t0;
  if (y.chunksize() != ta::Shape{o.n, o.chunk})
    wrong("rechunk: block width", y.chunksize()[1], o.chunk);
  // Row sums cross every new block boundary: they must match the input's exactly as a whole.
  const std::vector<double> a = x.sum(1).compute().to_vector<double>();
  const std::vector<double> b = y.sum(1).compute().to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) check_close("rechunk: row sum", b[i], a[i], 1e-12);
  const std::string p =
      "{" + shape_params("shape", o.n, o.n) + ", " + shape_params("from_chunks", o.chunk, o.n) +
      ", " + shape_params("to_chunks", o.n, o.chunk) +
      ", \"timed\": \"rechunk(...).persist() of a persisted array\", " + common_params(o) + "}";
  bench::emit("array.rechunk.time", "tessera", p, t, "s");
  return 0;
}

int random_sum(const Options& o) {
  const int64_t chunk_rows = std::max<int64_t>(1, o.rows / 10);
  prefault(o.prefault_mb);  // counts in the peak: benchmarks/run passes 0 here
  const double t0 = bench::now();
  const double v = ta::random::random({o.rows, o.n}, {chunk_rows, o.chunk}, /*seed=*/4)
                       .sum()
                       .compute()
                       .item<double>();
  const double t = bench::now() - t0;
  const double peak = max_rss_bytes();
  const double count = static_cast<double>(o.rows) * static_cast<double>(o.n);
  check_close("random_sum", v, count / 2, 0.001);
  const std::string p = "{" + shape_params("shape", o.rows, o.n) + ", " +
                        shape_params("chunks", chunk_rows, o.chunk) +
                        ", \"array_gb\": " + std::to_string(count * 8 / 1e9) +
                        ", \"peak\": \"getrusage ru_maxrss of the whole process\", " +
                        common_params(o) + "}";
  bench::emit("array.random_sum.time", "tessera", p, t, "s");
  bench::emit("array.random_sum.peak_rss", "tessera", p, peak / 1e6, "MB");
  return 0;
}

// The reference for matmul: one large in-memory DGEMM on the same OpenBLAS kernel.
int dgemm(const Options& o) {
  const auto n = static_cast<size_t>(o.n);
  std::vector<double> a(n * n), b(n * n), c(n * n, 0.0);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  for (double& e : a) e = u(rng);
  for (double& e : b) e = u(rng);
  openblas_set_num_threads(o.threads);
  const int ni = static_cast<int>(o.n);
  auto run = [&] {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0, a.data(), ni, b.data(),
                ni, 0.0, c.data(), ni);
  };
  run();  // warm-up: BLAS threads started, pages touched
  double best = 1e300;
  for (int r = 0; r < o.reps; ++r) {
    const double t0 = bench::now();
    run();
    best = std::min(best, bench::now() - t0);
  }
  double want = 0;
  for (size_t k = 0; k < n; ++k) want += a[k] * b[k * n];
  check_close("dgemm: c[0][0]", c[0], want, 1e-9);
  const double nd = static_cast<double>(o.n);
  char p[512];
  std::snprintf(p, sizeof p,
                "{\"n\": %lld, \"blas_threads\": %d, \"best_of\": %d, \"blas_core\": \"%s\", "
                "\"coretype_env\": \"%s\"}",
                static_cast<long long>(o.n), openblas_get_num_threads(), o.reps,
                ta::blas_core().c_str(),
                env_or("OPENBLAS_CORETYPE", "unset (auto-detected)").c_str());
  bench::emit("array.reference.dgemm", "openblas", p, 2 * nd * nd * nd / best / 1e9, "GFLOP/s");
  return 0;
}

// The reference for the reductions: McCalpin's STREAM triad, a[i] = b[i] + q c[i], each
// thread on its own contiguous slice (touched first by that thread).
int stream(const Options& o) {
  const auto n = static_cast<size_t>(o.n);
  const int T = std::max(1, o.threads);
  // Uninitialized storage, so each thread's first touch places its own pages.
  std::unique_ptr<double[]> a(new double[n]), b(new double[n]), c(new double[n]);
  const double q = 3.0;
  auto parallel = [&](auto&& body) {
    std::vector<std::thread> ts;
    for (int t = 0; t < T; ++t) {
      ts.emplace_back([&, t] { body(n * t / T, n * (t + 1) / T); });
    }
    for (auto& th : ts) th.join();
  };
  parallel([&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) {
      a[i] = 0;
      b[i] = 1;
      c[i] = 2;
    }
  });
  double* pa = a.get();
  const double* pb = b.get();
  const double* pc = c.get();
  double best = 1e300;
  for (int r = 0; r < o.reps + 1; ++r) {  // the first pass is a warm-up
    const double t0 = bench::now();
    parallel([&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) pa[i] = pb[i] + q * pc[i];
    });
    const double t = bench::now() - t0;
    if (r > 0) best = std::min(best, t);
  }
  if (pa[n / 2] != 7.0) wrong("stream triad", pa[n / 2], 7.0);
  char p[256];
  std::snprintf(p, sizeof p,
                "{\"n\": %lld, \"threads\": %d, \"best_of\": %d, \"bytes\": \"3 * 8 * n\"}",
                static_cast<long long>(o.n), T, o.reps);
  bench::emit("array.reference.stream_triad", "stream", p,
              3.0 * 8.0 * static_cast<double>(n) / best / 1e9, "GB/s");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--workload")
      o.workload = value;
    else if (flag == "--n")
      o.n = std::stoll(value);
    else if (flag == "--chunk")
      o.chunk = std::stoll(value);
    else if (flag == "--rows")
      o.rows = std::stoll(value);
    else if (flag == "--threads")
      o.threads = std::stoi(value);
    else if (flag == "--reps")
      o.reps = std::stoi(value);
    else if (flag == "--inner")
      o.inner = std::stoi(value);
    else if (flag == "--prefault-mb")
      o.prefault_mb = std::stoll(value);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const std::string& w = o.workload;
  auto dflt = [](int64_t& v, int64_t d) {
    if (v == 0) v = d;
  };
  if (w == "sum_ones") {
    dflt(o.n, 20000), dflt(o.chunk, 2000);
    return sum_ones(o);
  }
  if (w == "matmul") {
    dflt(o.n, 8000), dflt(o.chunk, 1000);
    return matmul(o);
  }
  if (w == "mean" || w == "std") {
    dflt(o.n, 10000), dflt(o.chunk, 1000);
    return moments(o);
  }
  if (w == "rechunk") {
    dflt(o.n, 10000), dflt(o.chunk, 1000);
    return rechunk(o);
  }
  if (w == "random_sum") {
    dflt(o.rows, 100000), dflt(o.n, 10000), dflt(o.chunk, 1000);
    return random_sum(o);
  }
  if (w == "dgemm") {
    dflt(o.n, 4000);
    if (o.reps == 0) o.reps = 3;
    return dgemm(o);
  }
  if (w == "stream") {
    dflt(o.n, int64_t{1} << 26);
    if (o.reps == 0) o.reps = 10;
    return stream(o);
  }
  std::fprintf(stderr,
               "--workload must be one of sum_ones, matmul, mean, std, rechunk, random_sum, dgemm, "
               "stream (got '%s')\n",
               w.c_str());
  return 2;
}

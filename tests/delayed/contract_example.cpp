// The example of the foundation issue, exactly as written there, plus checks of what it
// computed. Runs as its own program (ctest: contract_example).
#include <tessera/tessera.hpp>

#include <cstdio>
#include <filesystem>
// The example, verbatim: not reformatted.
// clang-format off
    int64_t inc(int64_t x) { return x + 1; }
    int64_t add(int64_t x, int64_t y) { return x + y; }
    TESSERA_REGISTER(inc);
    TESSERA_REGISTER(add);

    int main(int argc, char** argv) {
      tessera::init(argc, argv);
      auto a = tessera::delayed(inc)(1);
      auto b = tessera::delayed(add)(a, 10);
      int64_t r = b.compute();                           // threads, the default
      int64_t s = b.compute({.scheduler = "sync"});
      auto [x, y] = tessera::compute(a, b);              // the shared task `a` runs once
      b.visualize("b.svg");                              // graphviz picture
      { tessera::ProgressBar progress; b.compute(); }    // a progress bar while in scope
      std::string k = b.key();                           // deterministic key

  // Also: persist(), compute over a vector, delayed of a plain value, num_workers.
  auto p = b.persist();
  std::vector<tessera::Delayed<int64_t>> many{a, b, p};
  std::vector<int64_t> all = tessera::compute(many);
  auto v = tessera::delayed(std::vector<double>{1, 2, 3});
  int64_t w = b.compute({.num_workers = 2});

  bool ok = r == 12 && s == 12 && x == 2 && y == 12 && std::filesystem::file_size("b.svg") > 100 &&
            k == std::string(tessera::delayed(add)(tessera::delayed(inc)(1), 10).key()) && k.rfind("add-", 0) == 0 &&
            all == std::vector<int64_t>{2, 12, 12} && v.compute() == std::vector<double>{1, 2, 3} && w == 12;
  std::printf("%s: r=%lld s=%lld x=%lld y=%lld key=%s\n", ok ? "ok" : "FAILED", static_cast<long long>(r),
              static_cast<long long>(s), static_cast<long long>(x), static_cast<long long>(y), k.c_str());
  return ok ? 0 : 1;
    }
// clang-format on

// The distributed issue's example (section 2), verbatim, as a program: it must compile and
// give the right values. main() calls tessera::init, so the LocalCluster's workers are this
// program itself and run its registered ops.
#include <tessera/tessera.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

int64_t inc(int64_t x) {
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
TESSERA_REGISTER(inc);
TESSERA_REGISTER(add);

double total(const std::vector<double>& xs) {
  return std::accumulate(xs.begin(), xs.end(), 0.0);
}
TESSERA_REGISTER(total);

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                       \
    }                                                                 \
  } while (0)

int main(int argc, char** argv) {
  tessera::init(argc, argv);
  // clang-format off
  tessera::LocalCluster cluster({.n_workers = 2, .threads_per_worker = 1});
  tessera::Client client(cluster);              // or tessera::Client client("tcp://host:8786");
  auto f = client.submit(inc, 1);               // Future<int64_t>
  auto g = client.submit(add, f, 10);           // futures as arguments are dependencies
  int64_t v = g.result();                       // 12; rethrows a remote error with its key
  auto fs = client.map(inc, std::vector<int64_t>{1, 2, 3});
  std::vector<int64_t> vs = client.gather(fs);
  auto d = tessera::delayed(add)(tessera::delayed(inc)(1), 2);
  int64_t w = d.compute(client);                // any collection computes on a client
  auto p = client.persist(d);                   // stays on the workers
  auto sc = client.scatter(std::vector<double>(1 << 20, 1.0));
  // clang-format on

  CHECK(v == 12);
  CHECK((vs == std::vector<int64_t>{2, 3, 4}));
  CHECK(w == 4);
  CHECK(tessera::delayed(inc)(p).compute(client) == 5);
  CHECK(client.submit(total, sc).result() == double(1 << 20));
  // The same program as the workers of a secured cluster, each under a nanny.
  {
    tessera::LocalCluster guarded(
        {.n_workers = 1, .nanny = true, .security = tessera::Security::generate()});
    tessera::Client secured(guarded, {.set_as_default = false});
    CHECK(secured.submit(add, secured.submit(inc, 40), 1).result() == 42);
  }
  std::printf("v = %lld, vs = {%lld, %lld, %lld}, w = %lld: ok\n", static_cast<long long>(v),
              static_cast<long long>(vs[0]), static_cast<long long>(vs[1]),
              static_cast<long long>(vs[2]), static_cast<long long>(w));
  return 0;
}

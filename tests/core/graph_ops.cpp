#include "core/graph_ops.hpp"

#include "tessera/core/op.hpp"

namespace coretest {
int64_t inc(int64_t x) {
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
int64_t sum(const std::vector<int64_t>& xs) {
  int64_t s = 0;
  for (int64_t x : xs) s += x;
  return s;
}
int64_t neg(int64_t x) {
  return -x;
}
}  // namespace coretest

TESSERA_REGISTER(coretest::inc);
TESSERA_REGISTER(coretest::add);
TESSERA_REGISTER(coretest::sum);
TESSERA_REGISTER_AS("coretest::neg", coretest::neg, {.cheap = true});

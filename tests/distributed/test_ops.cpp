// Ops for the multi-process tests: linked into the test program (the client) and loaded by
// the worker processes with --preload.
#include <chrono>
#include <cstdint>
#include <thread>

#include "tessera/core/op.hpp"

namespace {

// x + 1, after `sleep_ms` (so that a worker can be killed while tasks run).
int64_t ptest_slow_inc(int64_t x, int64_t sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  return x + 1;
}
TESSERA_REGISTER(ptest_slow_inc);

int64_t ptest_add(int64_t x, int64_t y) {
  return x + y;
}
TESSERA_REGISTER(ptest_add);

}  // namespace

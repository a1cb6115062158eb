#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "tessera/core.hpp"

namespace localtest {

// Counts live instances, to check that results are released early.
struct Tracked {
  static std::atomic<int64_t> live, peak;
  static void reset();
  explicit Tracked(int64_t v);
  Tracked(const Tracked& o);
  ~Tracked();
  static void note(int64_t now);
  int64_t value;
};

extern std::atomic<int64_t> calls;
// Throws std::runtime_error("flaky: call N of X") on its first `failures` calls for each x
// (counted in flaky_calls, which a test clears), then returns x.
int64_t flaky(int64_t x, int64_t failures);
void flaky_reset();
int64_t inc(int64_t x);

}  // namespace localtest

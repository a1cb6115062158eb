// Ops used by the core tests.
#pragma once

#include <cstdint>
#include <vector>

namespace coretest {
int64_t inc(int64_t x);
int64_t add(int64_t x, int64_t y);
int64_t sum(const std::vector<int64_t>& xs);
int64_t neg(int64_t x);
}  // namespace coretest

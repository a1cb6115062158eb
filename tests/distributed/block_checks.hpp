// Checks shared by the distributed tests that fill workers with ptest_block results.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "tessera/distributed.hpp"
#include "test_ops.hpp"

namespace tessera::testing {

// Every block (ptest_block(seeds[i], n)) is exact where it is held: its total, computed on
// the cluster, is n·seed + n(n−1)/2.
inline void expect_block_totals(Client& client,
                                const std::vector<Future<std::vector<double>>>& blocks,
                                const std::vector<int64_t>& seeds, int64_t n,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto totals = client.map(ptest_total, blocks);
  const auto got = client.gather(totals, timeout);
  ASSERT_EQ(got.size(), seeds.size());
  for (size_t i = 0; i < seeds.size(); ++i) {
    const double s = static_cast<double>(seeds[i]);
    EXPECT_EQ(got[i], static_cast<double>(n) * s + static_cast<double>(n) * (n - 1) / 2.0) << i;
  }
}

}  // namespace tessera::testing

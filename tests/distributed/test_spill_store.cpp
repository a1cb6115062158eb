// The worker's store on its own: values in memory up to a target, the least recently used
// written out (zstd) beyond it, read back on demand; byte accounts and files checked against
// what the test put in.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "distributed/spill_store.hpp"

namespace td = tessera::distributed;
using tessera::Key;
using tessera::Value;

namespace {

// A scratch directory of its own per test (the store makes and removes it).
std::filesystem::path scratch(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("tessera-spill-test-" + name + "-" + std::to_string(::getpid()));
}

Value block(size_t n, double first) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), first);
  return Value::of(std::move(v));
}

std::vector<double> as_vector(const std::optional<Value>& v) {
  EXPECT_TRUE(v.has_value());
  return v ? v->get<std::vector<double>>() : std::vector<double>{};
}

size_t files_in(const std::filesystem::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& f : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST(SpillStore, SpillsTheLeastRecentlyUsedAndReadsItBack) {
  const auto dir = scratch("lru");
  const uint64_t one = block(1000, 0).nbytes();
  td::SpillStore store({.directory = dir, .target_bytes = one * 5 / 2});  // room for two
  store.put(Key("a"), block(1000, 0));
  store.put(Key("b"), block(1000, 1000));
  EXPECT_EQ(store.memory_bytes(), 2 * one);
  EXPECT_EQ(store.spilled_count(), 0U);
  EXPECT_EQ(as_vector(store.get(Key("a")))[5], 5.0);  // a is now the most recently used
  store.put(Key("c"), block(1000, 2000));             // over the target: b goes to disk
  EXPECT_EQ(store.spilled_count(), 1U);
  EXPECT_EQ(store.memory_bytes(), 2 * one);
  EXPECT_GT(store.disk_bytes(), 0U);
  EXPECT_EQ(files_in(dir), 1U);
  EXPECT_EQ(store.size(), 3U);
  // b read back is exact; a, now the least recently used, goes out in its place.
  const auto b = as_vector(store.get(Key("b")));
  ASSERT_EQ(b.size(), 1000U);
  for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], 1000.0 + static_cast<double>(i));
  EXPECT_EQ(store.spilled_count(), 2U);
  EXPECT_EQ(store.memory_bytes(), 2 * one);
  EXPECT_EQ(files_in(dir), 1U);
  EXPECT_EQ(as_vector(store.get(Key("a")))[999], 999.0);
  EXPECT_EQ(as_vector(store.get(Key("c")))[0], 2000.0);
  EXPECT_FALSE(store.get(Key("absent")).has_value());
}

TEST(SpillStore, ReplacingOrErasingAKeyKeepsItsAccountsAndFiles) {
  const auto dir = scratch("replace");
  td::SpillStore store({.directory = dir, .target_bytes = 0});  // 0: never spills on its own
  store.put(Key("x"), block(10, 0));
  store.put(Key("x"), block(500, 7));  // replaced in memory
  EXPECT_EQ(store.size(), 1U);
  EXPECT_EQ(store.memory_bytes(), block(500, 7).nbytes());
  EXPECT_EQ(as_vector(store.get(Key("x")))[0], 7.0);
  store.spill_to(0);  // on disk now
  EXPECT_EQ(store.memory_bytes(), 0U);
  EXPECT_GT(store.disk_bytes(), 0U);
  EXPECT_EQ(files_in(dir), 1U);
  store.put(Key("x"), block(20, 3));  // replacing a spilled value removes its file
  EXPECT_EQ(store.disk_bytes(), 0U);
  EXPECT_EQ(files_in(dir), 0U);
  EXPECT_EQ(store.memory_bytes(), block(20, 3).nbytes());
  EXPECT_EQ(as_vector(store.get(Key("x"))), as_vector(block(20, 3)));
  // Erased in memory, and erased while on disk.
  store.put(Key("y"), block(30, 0));
  (void)store.get(Key("x"));              // x the most recently used:
  store.spill_to(block(20, 3).nbytes());  // y goes to disk, x stays
  EXPECT_EQ(files_in(dir), 1U);
  EXPECT_EQ(store.memory_bytes(), block(20, 3).nbytes());
  EXPECT_TRUE(store.contains(Key("y")));
  store.erase(Key("y"));
  store.erase(Key("x"));
  store.erase(Key("never-there"));
  EXPECT_EQ(store.size(), 0U);
  EXPECT_EQ(store.memory_bytes(), 0U);
  EXPECT_EQ(store.disk_bytes(), 0U);
  EXPECT_EQ(files_in(dir), 0U);
}

TEST(SpillStore, ValuesWithoutACodecStayInMemory) {
  struct Opaque {
    int x;
  };
  const auto dir = scratch("codecless");
  td::SpillStore store({.directory = dir, .target_bytes = 1});
  store.put(Key("o"), Value::of(Opaque{42}));
  store.put(Key("v"), block(100, 0));  // spillable: goes to disk; the opaque one stays
  EXPECT_EQ(store.spilled_count(), 1U);
  EXPECT_EQ(store.get(Key("o"))->get<Opaque>().x, 42);
  EXPECT_EQ(store.memory_bytes(), Value::of(Opaque{42}).nbytes());
  EXPECT_EQ(as_vector(store.get(Key("v")))[99], 99.0);
}

TEST(SpillStore, RemovesItsDirectory) {
  const auto dir = scratch("cleanup");
  {
    td::SpillStore store({.directory = dir, .target_bytes = 1});
    store.put(Key("a"), block(100, 0));
    EXPECT_TRUE(std::filesystem::exists(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

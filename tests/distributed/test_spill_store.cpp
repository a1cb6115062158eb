// The worker's store on its own: values in memory up to a target, the least recently used
// written out (lz4, zstd or uncompressed) beyond it, read back on demand; byte accounts and files
// checked against what the test put in.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "distributed/spill_store.hpp"
#include "tessera/core/error.hpp"
#include "test_support.hpp"

namespace td = tessera::distributed;
using tessera::Key;
using tessera::Value;
using tessera::testing::error_of;

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

std::vector<std::filesystem::path> files_of(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(dir)) files.push_back(f.path());
  return files;
}

std::string contents(const std::filesystem::path& file) {
  std::ifstream f(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
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

// Each compression writes a file that says which one it used, compresses what compresses
// (a constant block; a megabyte of zeros, far past lz4's 255× bound, for zstd) and reads
// back exact.
TEST(SpillStore, CompressesWithLz4ZstdOrNotAtAll) {
  using td::SpillCompression;
  for (const auto c : {SpillCompression::Lz4, SpillCompression::Zstd, SpillCompression::None}) {
    SCOPED_TRACE(td::spill_compression_name(c));
    const auto dir = scratch(std::string("codec-") + td::spill_compression_name(c));
    td::SpillStore store({.directory = dir, .target_bytes = 0, .compression = c});
    const Value ones = Value::of(std::vector<double>(1 << 17, 1.0));  // 1 MiB
    const Value counting = block(1 << 17, 0.5);
    store.put(Key("ones"), ones);
    store.spill_to(0);
    const auto files = files_of(dir);
    ASSERT_EQ(files.size(), 1U);
    const std::string file = contents(files[0]);
    ASSERT_GE(file.size(), 16U);
    EXPECT_EQ(file.substr(0, 4), "TSPL");
    EXPECT_EQ(static_cast<int>(file[4]), static_cast<int>(c));
    uint64_t raw = 0;
    std::memcpy(&raw, file.data() + 8, 8);
    EXPECT_GE(raw, ones.nbytes());  // the encoded value: the doubles and their header
    EXPECT_LT(raw, ones.nbytes() + 256);
    EXPECT_EQ(store.disk_bytes(), file.size());
    if (c == SpillCompression::None) {
      EXPECT_EQ(file.size(), 16 + raw);
    } else {
      EXPECT_LT(file.size(), raw / 100) << "a constant block compresses";
    }
    const auto back = as_vector(store.get(Key("ones")));
    ASSERT_EQ(back.size(), size_t{1} << 17);
    EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](double x) { return x == 1.0; }));
    store.put(Key("counting"), counting);
    store.spill_to(0);
    const auto n = as_vector(store.get(Key("counting")));
    for (size_t i = 0; i < n.size(); ++i) ASSERT_EQ(n[i], 0.5 + static_cast<double>(i)) << i;
    if (c == SpillCompression::Zstd) {
      store.erase(Key("counting"));
      store.put(Key("zeros"), Value::of(std::vector<double>(1 << 17, 0.0)));
      store.spill_to(0);
      EXPECT_LT(store.disk_bytes(), (size_t{1} << 20) / 255);
      EXPECT_EQ(as_vector(store.get(Key("zeros")))[12345], 0.0);
    }
  }
  EXPECT_EQ(td::parse_spill_compression("lz4"), SpillCompression::Lz4);
  EXPECT_EQ(td::parse_spill_compression("zstd"), SpillCompression::Zstd);
  EXPECT_EQ(td::parse_spill_compression("none"), SpillCompression::None);
  EXPECT_EQ(error_of<tessera::ValueError>([] { (void)td::parse_spill_compression("gzip"); }),
            "spill compression 'gzip' is not one of lz4, zstd and none");
}

// A spill file that is gone, cut short, overwritten or corrupt is an IOError naming the key
// and the file, never a wrong value.
TEST(SpillStore, ADamagedSpillFileIsAnErrorNamingIt) {
  const auto dir = scratch("damaged");
  auto spilled = [&](td::SpillCompression c, const std::string& key) {
    td::SpillStore::Options o{.directory = dir, .target_bytes = 0, .compression = c};
    auto store = std::make_unique<td::SpillStore>(o);
    store->put(Key(key), block(1000, 3));
    store->spill_to(0);
    return store;
  };
  auto damage = [&](td::SpillStore& store, const std::string& key,
                    const std::function<void(std::string&)>& how) {
    const auto files = files_of(dir);
    EXPECT_EQ(files.size(), 1U);
    std::string file = contents(files[0]);
    how(file);
    std::ofstream(files[0], std::ios::binary | std::ios::trunc) << file;
    return error_of<tessera::IOError>([&] { (void)store.get(Key(key)); });
  };
  auto path_of = [&] { return files_of(dir).at(0).string(); };
  for (const auto c :
       {td::SpillCompression::Lz4, td::SpillCompression::Zstd, td::SpillCompression::None}) {
    SCOPED_TRACE(td::spill_compression_name(c));
    {
      auto s = spilled(c, "cut");
      const std::string p = path_of();
      EXPECT_EQ(damage(*s, "cut", [](std::string& f) { f.resize(f.size() - 7); }),
                "spilled 'cut' in " + p + " does not decompress (truncated or corrupt)");
    }
    {
      auto s = spilled(c, "header");
      const std::string p = path_of();
      EXPECT_EQ(damage(*s, "header", [](std::string& f) { f.resize(10); }),
                "spilled 'header' in " + p + " is truncated (no header)");
    }
    {
      auto s = spilled(c, "magic");
      const std::string p = path_of();
      EXPECT_EQ(damage(*s, "magic", [](std::string& f) { f[0] = 'X'; }),
                "spilled 'magic' in " + p + " is not a tessera spill file");
    }
    {
      auto s = spilled(c, "huge");  // a size no file this small can hold
      const std::string p = path_of();
      EXPECT_EQ(damage(*s, "huge", [](std::string& f) { std::memset(f.data() + 8, 0x7f, 8); }),
                "spilled 'huge' in " + p + " is corrupt");
    }
    {
      auto s = spilled(c, "codec");
      const std::string p = path_of();
      EXPECT_EQ(damage(*s, "codec", [](std::string& f) { f[4] = 9; }),
                "spilled 'codec' in " + p + " names an unknown compression (9)");
    }
    {
      auto s = spilled(c, "gone");
      const std::string p = path_of();
      std::filesystem::remove(p);
      EXPECT_EQ(error_of<tessera::IOError>([&] { (void)s->get(Key("gone")); }),
                "cannot read spilled 'gone' from " + p);
    }
  }
}

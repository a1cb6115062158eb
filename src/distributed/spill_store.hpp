// A worker's results: in memory up to a target number of bytes, the least recently used
// beyond that written to its local directory (encoded with the value codecs, compressed
// with lz4, zstd or not at all) and read back when asked for — Dask's spill to disk. Values stay
// shared while in memory; a spilled value that is still referenced elsewhere (a running task) is
// freed when that reference goes.
//
//   SpillStore s({.directory = "/tmp/w1", .target_bytes = 600 << 20});
//   s.put(key, value);              // may spill others
//   std::optional<Value> v = s.get(key);   // reads it back if spilled
#pragma once

#include <cstdint>
#include <filesystem>
#include <list>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "tessera/core/key.hpp"
#include "tessera/core/value.hpp"

namespace tessera::distributed {

// How spilled values are compressed: lz4 (fast, Dask's default), zstd (level 1: smaller
// files, slower), or not at all.
enum class SpillCompression : uint8_t { None = 0, Lz4 = 1, Zstd = 2 };
// "none", "lz4", "zstd"; ValueError naming the choices for anything else.
SpillCompression parse_spill_compression(std::string_view name);
const char* spill_compression_name(SpillCompression c);

class SpillStore {
 public:
  struct Options {
    std::filesystem::path directory{};  // its own: made, and removed with it; empty: never spill
    uint64_t target_bytes = 0;          // 0: never spill
    SpillCompression compression = SpillCompression::Lz4;
  };

  explicit SpillStore(Options options);
  ~SpillStore();  // removes its directory
  SpillStore(const SpillStore&) = delete;
  SpillStore& operator=(const SpillStore&) = delete;

  // Stores (or replaces) a value, then spills the least recently used while memory is over
  // the target. A value that cannot be encoded stays in memory.
  void put(const Key& key, Value value);
  // The value (read back from disk and kept in memory if it was spilled); nullopt if absent.
  // IOError naming the key and the file if a spilled value cannot be read back (missing,
  // truncated, not a spill file, corrupt).
  std::optional<Value> get(const Key& key);
  bool contains(const Key& key) const { return entries_.count(key) != 0; }
  void erase(const Key& key);

  size_t size() const { return entries_.size(); }
  uint64_t memory_bytes() const { return memory_bytes_; }
  uint64_t disk_bytes() const { return disk_bytes_; }  // compressed, on disk
  uint64_t spilled_count() const { return spilled_; }  // values written out so far

  // Spills until memory is at most `bytes` (the worker calls it under memory pressure).
  void spill_to(uint64_t bytes);

 private:
  struct Entry {
    std::optional<Value> value;    // nullopt: on disk
    uint64_t nbytes = 0;           // in memory
    uint64_t file_bytes = 0;       // on disk
    uint64_t file_id = 0;          // its file, while on disk
    std::list<Key>::iterator lru;  // in lru_ while in memory
    bool unspillable = false;
  };
  std::filesystem::path file_of(const Entry& e) const;
  // Makes an in-memory entry the most recently used.
  void touch(Entry& e);
  // Lets go of an entry's value or file (and its place in lru_), keeping the entry.
  void drop(Entry& e);
  bool spill_one();

  Options options_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
  std::list<Key> lru_;  // front: most recently used
  uint64_t memory_bytes_ = 0, disk_bytes_ = 0, spilled_ = 0, next_file_ = 0;
};

}  // namespace tessera::distributed

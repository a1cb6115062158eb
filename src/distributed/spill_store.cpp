#include "distributed/spill_store.hpp"

#include <fmt/format.h>
#include <zstd.h>

#include <fstream>

#include "tessera/core/error.hpp"
#include "tessera/core/serialize.hpp"

namespace tessera::distributed {

SpillStore::SpillStore(Options options) : options_(std::move(options)) {
  if (!options_.directory.empty()) std::filesystem::create_directories(options_.directory);
}

SpillStore::~SpillStore() {
  std::error_code ec;
  if (!options_.directory.empty()) std::filesystem::remove_all(options_.directory, ec);
}

std::filesystem::path SpillStore::file_of(const Entry& e) const {
  return options_.directory / fmt::format("{}.spill", e.file_id);
}

void SpillStore::touch(Entry& e) {
  lru_.splice(lru_.begin(), lru_, e.lru);  // moves the node: no allocation
}

void SpillStore::drop(Entry& e) {
  if (e.value) {
    lru_.erase(e.lru);
    memory_bytes_ -= e.nbytes;
  } else {
    std::error_code ec;
    std::filesystem::remove(file_of(e), ec);
    disk_bytes_ -= e.file_bytes;
  }
}

void SpillStore::put(const Key& key, Value value) {
  auto [it, fresh] = entries_.try_emplace(key);  // one lookup, for a new key and a replaced one
  Entry& e = it->second;
  if (!fresh) {
    drop(e);
    e = Entry{};
  }
  e.nbytes = value.nbytes();
  e.value = std::move(value);
  lru_.push_front(key);
  e.lru = lru_.begin();
  memory_bytes_ += e.nbytes;
  if (options_.target_bytes > 0) spill_to(options_.target_bytes);
}

std::optional<Value> SpillStore::get(const Key& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  Entry& e = it->second;
  if (e.value) {
    touch(e);
    return e.value;
  }
  // Read it back.
  const auto path = file_of(e);
  std::ifstream f(path, std::ios::binary);
  std::vector<char> packed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (!f.good() && !f.eof())
    throw IOError(fmt::format("cannot read spilled '{}' from {}", key.str(), path.string()));
  const unsigned long long size = ZSTD_getFrameContentSize(packed.data(), packed.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    throw IOError(fmt::format("spilled '{}' in {} is not a zstd frame", key.str(), path.string()));
  auto bytes = std::make_shared<std::vector<std::byte>>(size);
  const size_t got = ZSTD_decompress(bytes->data(), bytes->size(), packed.data(), packed.size());
  if (ZSTD_isError(got) || got != size)
    throw IOError(fmt::format("spilled '{}' in {} does not decompress", key.str(), path.string()));
  Value v = decode_value(from_bytes(std::shared_ptr<const std::vector<std::byte>>(bytes)));
  std::error_code ec;
  std::filesystem::remove(path, ec);
  disk_bytes_ -= e.file_bytes;
  e.file_bytes = 0;
  e.nbytes = v.nbytes();
  e.value = v;
  lru_.push_front(key);
  e.lru = lru_.begin();
  memory_bytes_ += e.nbytes;
  if (options_.target_bytes > 0) spill_to(options_.target_bytes);
  return v;
}

void SpillStore::erase(const Key& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  drop(it->second);
  entries_.erase(it);
}

void SpillStore::spill_to(uint64_t bytes) {
  if (options_.directory.empty()) return;
  while (memory_bytes_ > bytes && spill_one()) {
  }
}

// Writes out the least recently used value that can be encoded; false if none can.
bool SpillStore::spill_one() {
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    const Key key = *it;  // copied: the list node goes below
    Entry& e = entries_.at(key);
    if (e.unspillable) continue;
    std::vector<std::byte> raw;
    try {
      raw = to_bytes(encode_value(*e.value));
    } catch (const SerializationError&) {
      e.unspillable = true;  // no codec: it stays in memory
      continue;
    }
    std::vector<char> packed(ZSTD_compressBound(raw.size()));
    const size_t n = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), 1);
    if (ZSTD_isError(n)) throw IOError(fmt::format("cannot compress '{}' to spill it", key.str()));
    e.file_id = ++next_file_;
    const auto path = file_of(e);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(packed.data(), static_cast<std::streamsize>(n));
    f.close();
    if (!f) throw IOError(fmt::format("cannot spill '{}' to {}", key.str(), path.string()));
    lru_.erase(e.lru);
    memory_bytes_ -= e.nbytes;
    e.value.reset();
    e.file_bytes = n;
    disk_bytes_ += n;
    ++spilled_;
    return true;
  }
  return false;
}

}  // namespace tessera::distributed

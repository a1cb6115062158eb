#include "distributed/spill_store.hpp"

#include <fmt/format.h>
#include <lz4.h>
#include <zstd.h>

#include <cstring>
#include <fstream>
#include <limits>

#include "tessera/core/error.hpp"
#include "tessera/core/serialize.hpp"

namespace tessera::distributed {

namespace {

// A spill file: this header, then the encoded value, compressed as the header says.
struct FileHeader {
  char magic[4] = {'T', 'S', 'P', 'L'};
  uint8_t compression = 0;  // SpillCompression
  uint8_t reserved[3] = {};
  uint64_t raw_bytes = 0;  // the encoded value's size
};
static_assert(sizeof(FileHeader) == 16);

// Compresses `raw` after a header into one buffer (the file's contents).
std::vector<char> pack(SpillCompression c, const std::vector<std::byte>& raw, const Key& key) {
  FileHeader h;
  h.compression = static_cast<uint8_t>(c);
  h.raw_bytes = raw.size();
  std::vector<char> out(sizeof h);
  size_t n = 0;
  switch (c) {
    case SpillCompression::None:
      out.resize(sizeof h + raw.size());
      std::memcpy(out.data() + sizeof h, raw.data(), raw.size());
      n = raw.size();
      break;
    case SpillCompression::Lz4: {
      if (raw.size() > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) {  // about 2 GiB: zstd then
        return pack(SpillCompression::Zstd, raw, key);
      }
      out.resize(sizeof h + static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
      const int k = LZ4_compress_default(reinterpret_cast<const char*>(raw.data()),
                                         out.data() + sizeof h, static_cast<int>(raw.size()),
                                         static_cast<int>(out.size() - sizeof h));
      if (k <= 0) throw IOError(fmt::format("cannot compress '{}' to spill it", key.str()));
      n = static_cast<size_t>(k);
      break;
    }
    case SpillCompression::Zstd: {
      out.resize(sizeof h + ZSTD_compressBound(raw.size()));
      n = ZSTD_compress(out.data() + sizeof h, out.size() - sizeof h, raw.data(), raw.size(), 1);
      if (ZSTD_isError(n))
        throw IOError(fmt::format("cannot compress '{}' to spill it", key.str()));
      break;
    }
  }
  std::memcpy(out.data(), &h, sizeof h);
  out.resize(sizeof h + n);
  return out;
}

// The encoded value in a spill file's contents; IOError naming the key and the file.
std::shared_ptr<std::vector<std::byte>> unpack(const std::vector<char>& file, const Key& key,
                                               const std::filesystem::path& path) {
  auto fail = [&](const char* why) {
    return IOError(fmt::format("spilled '{}' in {} {}", key.str(), path.string(), why));
  };
  FileHeader h;
  if (file.size() < sizeof h) throw fail("is truncated (no header)");
  std::memcpy(&h, file.data(), sizeof h);
  if (std::memcmp(h.magic, FileHeader{}.magic, sizeof h.magic) != 0)
    throw fail("is not a tessera spill file");
  const char* body = file.data() + sizeof h;
  const size_t body_bytes = file.size() - sizeof h;
  // Every check of the header comes before the allocation: a corrupt size must not make
  // us allocate without bound. lz4 expands at most 255×, an uncompressed body is its own
  // size, and a zstd frame says its size too (tessera always writes it).
  const auto c = static_cast<SpillCompression>(h.compression);
  if (c != SpillCompression::None && c != SpillCompression::Lz4 && c != SpillCompression::Zstd)
    throw fail(fmt::format("names an unknown compression ({})", h.compression).c_str());
  if (c == SpillCompression::Zstd) {
    const unsigned long long size = ZSTD_getFrameContentSize(body, body_bytes);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size != h.raw_bytes)
      throw fail("is corrupt");
  } else if (h.raw_bytes > uint64_t{body_bytes} * 255 + 64 ||
             (c == SpillCompression::Lz4 &&
              (h.raw_bytes > static_cast<uint64_t>(std::numeric_limits<int>::max()) ||
               body_bytes > static_cast<size_t>(std::numeric_limits<int>::max())))) {
    throw fail("is corrupt");
  }
  if (c == SpillCompression::None && body_bytes != h.raw_bytes)
    throw fail("does not decompress (truncated or corrupt)");
  auto raw = std::make_shared<std::vector<std::byte>>(h.raw_bytes);
  bool ok = false;
  switch (c) {
    case SpillCompression::None:
      std::memcpy(raw->data(), body, body_bytes);
      ok = true;
      break;
    case SpillCompression::Lz4:
      ok = LZ4_decompress_safe(body, reinterpret_cast<char*>(raw->data()),
                               static_cast<int>(body_bytes),
                               static_cast<int>(h.raw_bytes)) == static_cast<int>(h.raw_bytes);
      break;
    case SpillCompression::Zstd: {
      const size_t got = ZSTD_decompress(raw->data(), raw->size(), body, body_bytes);
      ok = !ZSTD_isError(got) && got == h.raw_bytes;
      break;
    }
  }
  if (!ok) throw fail("does not decompress (truncated or corrupt)");
  return raw;
}

}  // namespace

SpillCompression parse_spill_compression(std::string_view name) {
  if (name == "lz4") return SpillCompression::Lz4;
  if (name == "zstd") return SpillCompression::Zstd;
  if (name == "none") return SpillCompression::None;
  throw ValueError(fmt::format("spill compression '{}' is not one of lz4, zstd and none", name));
}

const char* spill_compression_name(SpillCompression c) {
  switch (c) {
    case SpillCompression::Lz4:
      return "lz4";
    case SpillCompression::Zstd:
      return "zstd";
    case SpillCompression::None:
      break;
  }
  return "none";
}

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
  if (!f) throw IOError(fmt::format("cannot read spilled '{}' from {}", key.str(), path.string()));
  std::vector<char> packed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (!f.good() && !f.eof())
    throw IOError(fmt::format("cannot read spilled '{}' from {}", key.str(), path.string()));
  auto bytes = unpack(packed, key, path);
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
    const std::vector<char> packed = pack(options_.compression, raw, key);
    e.file_id = ++next_file_;
    const auto path = file_of(e);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(packed.data(), static_cast<std::streamsize>(packed.size()));
    f.close();
    if (!f) throw IOError(fmt::format("cannot spill '{}' to {}", key.str(), path.string()));
    lru_.erase(e.lru);
    memory_bytes_ -= e.nbytes;
    e.value.reset();
    e.file_bytes = packed.size();
    disk_bytes_ += packed.size();
    ++spilled_;
    return true;
  }
  return false;
}

}  // namespace tessera::distributed

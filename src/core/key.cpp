#include "tessera/core/key.hpp"

#include <fmt/format.h>
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <new>
#include <ostream>

namespace tessera {

// One allocation per key: header, block index, then the name's characters.
struct Key::Rep {
  std::atomic<uint32_t> refs;
  uint32_t name_len;
  uint32_t ndim;
  uint64_t hash;
  int64_t* index() noexcept { return reinterpret_cast<int64_t*>(this + 1); }
  char* name() noexcept { return reinterpret_cast<char*>(index() + ndim); }
};

Key::Key(std::string_view name) : Key(name, std::span<const int64_t>{}) {}
Key::Key(std::string_view name, std::initializer_list<int64_t> index)
    : Key(name, std::span<const int64_t>(index.begin(), index.size())) {}

Key::Key(std::string_view name, std::span<const int64_t> index) {
  const size_t bytes = sizeof(Rep) + index.size() * sizeof(int64_t) + name.size();
  void* mem = ::operator new(bytes);
  rep_ = new (mem)
      Rep{{1}, static_cast<uint32_t>(name.size()), static_cast<uint32_t>(index.size()), 0};
  if (!index.empty()) std::memcpy(rep_->index(), index.data(), index.size() * sizeof(int64_t));
  if (!name.empty()) std::memcpy(rep_->name(), name.data(), name.size());
  // Index and name are contiguous in the block: one hash call covers both. The length of
  // the index is mixed in so that ("a", {}) and a name that happens to spell an index differ.
  rep_->hash = XXH3_64bits_withSeed(rep_->index(), index.size() * sizeof(int64_t) + name.size(),
                                    index.size());
}

Key::Key(const Key& other) noexcept : rep_(other.rep_) {
  if (rep_) rep_->refs.fetch_add(1, std::memory_order_relaxed);
}

Key& Key::operator=(const Key& other) noexcept {
  Key tmp(other);
  std::swap(rep_, tmp.rep_);
  return *this;
}

Key& Key::operator=(Key&& other) noexcept {
  std::swap(rep_, other.rep_);
  return *this;
}

Key::~Key() {
  if (rep_ && rep_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    rep_->~Rep();
    ::operator delete(rep_);
  }
}

std::string_view Key::name() const noexcept {
  return rep_ ? std::string_view(rep_->name(), rep_->name_len) : std::string_view();
}

std::span<const int64_t> Key::index() const noexcept {
  return rep_ ? std::span<const int64_t>(rep_->index(), rep_->ndim) : std::span<const int64_t>();
}

uint64_t Key::hash() const noexcept {
  return rep_ ? rep_->hash : 0;
}

std::string Key::str() const {
  if (!rep_) return "<empty key>";
  if (rep_->ndim == 0) return std::string(name());
  std::string out = fmt::format("('{}'", name());
  for (int64_t i : index()) fmt::format_to(std::back_inserter(out), ", {}", i);
  out += ')';
  return out;
}

bool operator==(const Key& a, const Key& b) noexcept {
  if (a.rep_ == b.rep_) return true;
  if (!a.rep_ || !b.rep_ || a.rep_->hash != b.rep_->hash) return false;
  if (a.rep_->ndim != b.rep_->ndim || a.rep_->name_len != b.rep_->name_len) return false;
  return std::memcmp(a.rep_->index(), b.rep_->index(), a.rep_->ndim * sizeof(int64_t)) == 0 &&
         std::memcmp(a.rep_->name(), b.rep_->name(), a.rep_->name_len) == 0;
}

bool operator<(const Key& a, const Key& b) noexcept {
  const auto an = a.name(), bn = b.name();
  if (an != bn) return an < bn;
  const auto ai = a.index(), bi = b.index();
  return std::lexicographical_compare(ai.begin(), ai.end(), bi.begin(), bi.end());
}

std::ostream& operator<<(std::ostream& os, const Key& key) {
  return os << key.str();
}

}  // namespace tessera

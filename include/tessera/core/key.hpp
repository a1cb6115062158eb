// File: tessera/core/key.hpp
//
// A Key names one task's result: a name plus an optional block index, like Dask's
// `"inc-1f2e…"` or `("ones-9ab…", 0, 3)`. Keys are immutable, cheap to copy (one pointer,
// shared), and hash once at construction.
//
//   tessera::Key a("inc-5f1c");            // a delayed value
//   tessera::Key b("ones-77aa", {0, 3});   // block (0, 3) of an array
//   b.str();                               // "('ones-77aa', 0, 3)"
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>

namespace tessera {

// The name of a task's result: name + block index. Copies share one immutable block.
class Key {
 public:
  // An empty key (no name); only useful as a placeholder.
  Key() noexcept = default;
  // A key without a block index.
  explicit Key(std::string_view name);
  // A key with a block index, e.g. Key("x", {0, 2}).
  Key(std::string_view name, std::initializer_list<int64_t> index);
  // A key with a block index given as a span.
  Key(std::string_view name, std::span<const int64_t> index);

  Key(const Key& other) noexcept;
  Key(Key&& other) noexcept : rep_(other.rep_) { other.rep_ = nullptr; }
  Key& operator=(const Key& other) noexcept;
  Key& operator=(Key&& other) noexcept;
  ~Key();

  // The name part ("inc-5f1c").
  std::string_view name() const noexcept;
  // The block index (empty for a plain key).
  std::span<const int64_t> index() const noexcept;
  // The hash, computed once at construction (xxHash of name and index).
  uint64_t hash() const noexcept;
  // True for a default-constructed key.
  bool empty() const noexcept { return rep_ == nullptr; }
  // Text form: the name for a plain key, "('name', 0, 3)" for an indexed one (as Dask prints).
  std::string str() const;
  // Same as str(), so that `std::string k = d.key();` reads naturally.
  operator std::string() const { return str(); }  // NOLINT(google-explicit-constructor)

  friend bool operator==(const Key& a, const Key& b) noexcept;
  // Deterministic total order: by name, then by index.
  friend bool operator<(const Key& a, const Key& b) noexcept;

 private:
  friend class Graph;  // prefetches key blocks in batched lookups
  struct Rep;
  Rep* rep_ = nullptr;
};

std::ostream& operator<<(std::ostream& os, const Key& key);

// Hash functor for unordered containers. Deliberately not noexcept: libstdc++ then stores
// each element's hash in its node, so a lookup compares stored hashes and a rehash reuses
// them, instead of following every candidate key's pointer to its block (a cache miss
// each; in tables of 10^5 keys those misses were most of a lookup's time).
struct KeyHash {
  size_t operator()(const Key& k) const { return static_cast<size_t>(k.hash()); }
};

}  // namespace tessera

template <>
struct std::hash<tessera::Key> {  // not noexcept, as KeyHash
  size_t operator()(const tessera::Key& k) const { return static_cast<size_t>(k.hash()); }
};

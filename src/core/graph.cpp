#include "tessera/core/graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/huge_buffer_internal.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

namespace detail {
SlotTable::SlotTable(size_t n)
    : data_(static_cast<uint64_t*>(allocate_zeroed(n * sizeof(uint64_t)))), n_(n) {}
SlotTable::SlotTable(const SlotTable& o) : SlotTable(o.n_) {
  if (n_) std::memcpy(data_, o.data_, n_ * sizeof(uint64_t));
}
SlotTable::~SlotTable() {
  free_zeroed(data_);
}
}  // namespace detail

namespace {

constexpr uint64_t kPosMask = 0xffffffffull;

inline uint64_t tag_of(uint64_t hash) {
  return hash & ~kPosMask;
}

}  // namespace

Graph::Graph(const Graph& other) {
  other.sync();
  entries_ = other.entries_;
  slots_ = other.slots_;
  indexed_ = other.indexed_;
}

Graph::Graph(Graph&& other) noexcept
    : entries_(std::move(other.entries_)),
      slots_(std::move(other.slots_)),
      indexed_(std::exchange(other.indexed_, 0)),
      pending_(other.pending_.exchange(false)) {}

Graph& Graph::operator=(Graph other) noexcept {
  entries_.swap(other.entries_);
  std::swap(slots_, other.slots_);
  std::swap(indexed_, other.indexed_);
  const bool p = pending_.load();
  pending_.store(other.pending_.load());
  other.pending_.store(p);
  return *this;
}

Graph::~Graph() = default;

void Graph::reserve(size_t n) {
  sync();
  entries_.reserve(n);
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  if (cap > slots_.size()) rebuild_index(cap);
}

void Graph::rebuild_index(size_t capacity) const {
  slots_ = detail::SlotTable(capacity);
  indexed_ = 0;
  const std::vector<size_t> dups = insert_range(0, entries_.size());
  TESSERA_ASSERT(dups.empty(), "duplicate keys among indexed entries");
  indexed_ = entries_.size();
}

size_t Graph::probe(const Key& key, uint64_t hash, bool& found) const {
  const uint64_t tag = tag_of(hash);
  const size_t mask = slots_.size() - 1;
  for (size_t s = static_cast<size_t>(hash) & mask;; s = (s + 1) & mask) {
    const uint64_t slot = slots_[s];
    if (slot == 0 || ((slot & ~kPosMask) == tag && entries_[(slot & kPosMask) - 1].key == key)) {
      found = slot != 0;
      return s;
    }
  }
}

std::vector<size_t> Graph::insert_range(size_t from, size_t to) const {
  // Pipelined: the slot of entry j+D is fetched while entry j is inserted (see index_of).
  constexpr size_t D = 8;
  std::vector<size_t> dups;
  const size_t mask = slots_.size() - 1;
  const uint64_t* slots = slots_.data();
  for (size_t j = from; j < to; ++j) {
    if (j + D < to) __builtin_prefetch(slots + (entries_[j + D].key.hash() & mask));
    const Key& key = entries_[j].key;
    const uint64_t h = key.hash();
    bool found;
    const size_t s = probe(key, h, found);
    if (found) {
      dups.push_back(j);
    } else {
      slots_[s] = tag_of(h) | (static_cast<uint64_t>(j) + 1);
    }
  }
  return dups;
}

void Graph::index_pending() const {
  std::lock_guard lock(*mutex_);
  if (!pending_.load(std::memory_order_relaxed)) return;
  const size_t n = entries_.size();
  if (n * 2 > slots_.size()) {
    size_t cap = slots_.empty() ? 16 : slots_.size();
    while (cap < 2 * n) cap <<= 1;
    // Entries not yet indexed may hold duplicates: index what is clean, then the rest.
    const size_t clean = indexed_;
    slots_ = detail::SlotTable(cap);
    indexed_ = 0;
    insert_range(0, clean);
    indexed_ = clean;
  }
  std::vector<size_t> dups = insert_range(indexed_, n);
  if (!dups.empty()) {
    // Drop the later copies of repeated keys, keeping order; positions change, so reindex.
    size_t out = indexed_, d = 0;
    for (size_t j = indexed_; j < n; ++j) {
      if (d < dups.size() && dups[d] == j) {
        ++d;
        continue;
      }
      if (out != j) entries_[out] = std::move(entries_[j]);
      ++out;
    }
    entries_.resize(out);
    rebuild_index(slots_.size());
  }
  indexed_ = entries_.size();
  pending_.store(false, std::memory_order_release);
}

int64_t Graph::lookup(const Key& key) const {
  if (slots_.empty()) return -1;
  bool found;
  const size_t s = probe(key, key.hash(), found);
  return found ? static_cast<int64_t>((slots_[s] & kPosMask) - 1) : -1;
}

int64_t Graph::index_of(const Key& key) const {
  sync();
  return lookup(key);
}

void Graph::index_of(std::span<const Key* const> keys, std::span<int64_t> out) const {
  TESSERA_ASSERT(keys.size() == out.size(), "index_of: sizes differ");
  sync();
  const size_t m = keys.size();
  if (slots_.empty()) {
    std::fill(out.begin(), out.end(), -1);
    return;
  }
  // Random lookups in a large table each cost a cache miss (~150-230 ns on the machines we
  // measured). Overlap them: with every hash known up front, fetch lookup j+3D's slot, then
  // at j+2D the entry it names, then at j+D both keys' blocks; lookup j then finds all in
  // cache. Only the first slot of each probe sequence is fetched ahead.
  std::vector<uint64_t> hashes(m);
  for (size_t j = 0; j < m; ++j) hashes[j] = keys[j]->hash();
  constexpr size_t D = 8;
  const size_t mask = slots_.size() - 1;
  const uint64_t* slots = slots_.data();
  for (size_t j = 0; j < m; ++j) {
    if (j + 3 * D < m) __builtin_prefetch(slots + (hashes[j + 3 * D] & mask));
    if (j + 2 * D < m) {
      const uint64_t slot = slots[hashes[j + 2 * D] & mask];
      if (slot != 0) __builtin_prefetch(&entries_[(slot & kPosMask) - 1]);
    }
    if (j + D < m) {
      const uint64_t slot = slots[hashes[j + D] & mask];
      if (slot != 0 && (slot & ~kPosMask) == tag_of(hashes[j + D])) {
        __builtin_prefetch(entries_[(slot & kPosMask) - 1].key.rep_);
      }
      __builtin_prefetch(keys[j + D]->rep_);
    }
    bool found;
    const size_t s = probe(*keys[j], hashes[j], found);
    out[j] = found ? static_cast<int64_t>((slots[s] & kPosMask) - 1) : -1;
  }
}

bool Graph::add(Key key, Task task) {
  if (key.empty()) throw ValueError("Graph::add: empty key");
  if (index_of(key) >= 0) return false;  // no task is allocated for a duplicate
  return add(std::move(key), std::make_shared<const Task>(std::move(task)));
}

bool Graph::add(Key key, TaskPtr task) {
  if (key.empty()) throw ValueError("Graph::add: empty key");
  if (!task) throw ValueError(fmt::format("Graph::add: null task for key '{}'", key.str()));
  sync();
  if (entries_.size() >= kPosMask - 1) throw ValueError("Graph::add: more than 4 billion tasks");
  if ((entries_.size() + 1) * 2 > slots_.size())
    rebuild_index(slots_.empty() ? 16 : slots_.size() * 2);
  const uint64_t h = key.hash();
  bool found;
  const size_t s = probe(key, h, found);
  if (found) return false;
  slots_[s] = tag_of(h) | (static_cast<uint64_t>(entries_.size()) + 1);
  entries_.push_back(Entry{std::move(key), std::move(task)});
  indexed_ = entries_.size();
  return true;
}

void Graph::append(Key key, TaskPtr task) {
  if (key.empty()) throw ValueError("Graph::append: empty key");
  if (!task) throw ValueError(fmt::format("Graph::append: null task for key '{}'", key.str()));
  if (entries_.size() >= kPosMask - 1) throw ValueError("Graph::append: more than 4 billion tasks");
  entries_.push_back(Entry{std::move(key), std::move(task)});
  pending_.store(true, std::memory_order_relaxed);
}

void Graph::set(Key key, TaskPtr task) {
  const int64_t i = index_of(key);
  if (i < 0) {
    add(std::move(key), std::move(task));
  } else {
    if (!task) throw ValueError(fmt::format("Graph::set: null task for key '{}'", key.str()));
    entries_[static_cast<size_t>(i)].task = std::move(task);
  }
}

void Graph::merge(const Graph& other) {
  if (&other == this) return;
  reserve(size() + other.size());
  for (const Entry& e : other.entries()) append(e.key, e.task);
  sync();
}

const Task* Graph::find(const Key& key) const {
  const int64_t i = index_of(key);
  return i < 0 ? nullptr : entries_[static_cast<size_t>(i)].task.get();
}

const Task& Graph::at(const Key& key) const {
  const Task* t = find(key);
  if (!t) throw KeyError(fmt::format("key '{}' is not in the graph ({} tasks)", key.str(), size()));
  return *t;
}

std::vector<Key> Graph::dependencies(const Key& key) const {
  return at(key).dependencies();
}

std::vector<Key> Graph::dependents(const Key& key) const {
  at(key);
  std::vector<Key> out;
  std::vector<Key> refs;
  for (const Entry& e : entries()) {
    refs.clear();
    e.task->collect_refs(refs);
    if (std::find(refs.begin(), refs.end(), key) != refs.end()) out.push_back(e.key);
  }
  return out;
}

namespace {

// Appends pointers to every key referenced by `args`, in argument order.
void collect_refs(std::span<const Arg> args, std::vector<const Key*>& out) {
  for (const Arg& a : args) {
    switch (a.kind()) {
      case Arg::Kind::kValue:
        break;
      case Arg::Kind::kRef:
        out.push_back(&a.ref());
        break;
      case Arg::Kind::kList:
        collect_refs(a.list(), out);
        break;
      case Arg::Kind::kTask:
        collect_refs(a.task().args(), out);
        break;
    }
  }
}

}  // namespace

GraphStructure analyze(const Graph& graph) {
  const size_t n = graph.size();
  GraphStructure s;
  // References are gathered and looked up in chunks of tasks: each chunk's lookups run in
  // one pipelined batch (see index_of), and the temporaries stay bounded.
  constexpr size_t kChunkRefs = size_t{1} << 16;
  std::vector<const Key*> ref_keys;
  std::vector<int64_t> positions;
  s.ref_offsets.reserve(n + 1);
  s.ref_offsets.push_back(0);
  s.refs.reserve(n * 2);
  for (size_t begin = 0; begin < n;) {
    ref_keys.clear();
    size_t end = begin;
    while (end < n && (end == begin || ref_keys.size() < kChunkRefs)) {
      collect_refs(graph[end].task->args(), ref_keys);
      s.ref_offsets.push_back(static_cast<uint32_t>(s.refs.size() + ref_keys.size()));
      ++end;
    }
    positions.resize(ref_keys.size());
    graph.index_of(ref_keys, positions);
    const size_t base = s.refs.size();
    for (size_t i = begin; i < end; ++i) {
      for (uint32_t r = s.ref_offsets[i]; r < s.ref_offsets[i + 1]; ++r) {
        const int64_t p = positions[r - base];
        if (p < 0) {
          throw GraphError(fmt::format("task '{}' depends on '{}', which is not in the graph",
                                       graph[i].key.str(), ref_keys[r - base]->str()));
        }
        s.refs.push_back(static_cast<uint32_t>(p));
      }
    }
    begin = end;
  }
  ref_keys = {};
  positions = {};

  // Distinct dependencies in order of first appearance (a stamp per task marks the seen).
  s.dep_offsets.reserve(n + 1);
  s.deps.reserve(s.refs.size());
  s.dep_offsets.push_back(0);
  std::vector<uint32_t> stamp(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const auto mark = static_cast<uint32_t>(i + 1);
    for (uint32_t r = s.ref_offsets[i]; r < s.ref_offsets[i + 1]; ++r) {
      const uint32_t d = s.refs[r];
      if (stamp[d] != mark) {
        stamp[d] = mark;
        s.deps.push_back(d);
      }
    }
    s.dep_offsets.push_back(static_cast<uint32_t>(s.deps.size()));
  }
  // Dependents by counting sort over the dependency lists.
  s.dependent_offsets.assign(n + 1, 0);
  for (uint32_t d : s.deps) ++s.dependent_offsets[d + 1];
  for (size_t i = 0; i < n; ++i) s.dependent_offsets[i + 1] += s.dependent_offsets[i];
  s.dependents.resize(s.deps.size());
  std::vector<uint32_t> fill(s.dependent_offsets.begin(), s.dependent_offsets.end() - 1);
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t d : s.deps_of(i)) s.dependents[fill[d]++] = static_cast<uint32_t>(i);
  }
  return s;
}

}  // namespace tessera

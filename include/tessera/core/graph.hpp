// File: tessera/core/graph.hpp
//
// Graph: key → task, in insertion order, with dependencies found from the tasks'
// references. Tasks are shared (TaskPtr), so copying, merging and culling graphs never
// copies a task. GraphStructure is the integer form schedulers and optimizations work on.
//
//   tessera::Graph g;
//   g.add(tessera::Key("a"), tessera::Task::literal(tessera::Value::of(int64_t{1})));
//   g.add(tessera::Key("b"), tessera::Task::call("inc", {tessera::Arg::ref(tessera::Key("a"))}));
//   g.dependencies(tessera::Key("b"));      // {a}
//   auto s = tessera::analyze(g);           // CSR arrays of dependencies and dependents
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "tessera/core/key.hpp"
#include "tessera/core/task.hpp"

namespace tessera {

namespace detail {
// A zeroed table of 64-bit hash slots; large tables use huge pages (graph.cpp).
class SlotTable {
 public:
  SlotTable() = default;
  explicit SlotTable(size_t n);
  SlotTable(const SlotTable& o);
  SlotTable(SlotTable&& o) noexcept : data_(o.data_), n_(o.n_) {
    o.data_ = nullptr;
    o.n_ = 0;
  }
  SlotTable& operator=(SlotTable o) noexcept {
    std::swap(data_, o.data_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~SlotTable();
  size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  uint64_t& operator[](size_t i) noexcept { return data_[i]; }
  uint64_t operator[](size_t i) const noexcept { return data_[i]; }
  const uint64_t* data() const noexcept { return data_; }

 private:
  uint64_t* data_ = nullptr;
  size_t n_ = 0;
};
}  // namespace detail

// A set of tasks by key. Adding a key that is already present keeps the first task: equal
// keys mean equal work (deterministic keys), which is what makes merging graphs share work.
// Const member functions may be called from several threads at once.
class Graph {
 public:
  struct Entry {
    Key key;
    TaskPtr task;
  };

  Graph() = default;
  Graph(const Graph& other);
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph other) noexcept;
  ~Graph();

  // Adds `task` under `key` unless the key is present; true if it was added.
  bool add(Key key, Task task);
  bool add(Key key, TaskPtr task);
  // Adds `task` under `key` without looking the key up now: the keys appended since the
  // last read are indexed together when the graph is next read (overlapping their memory
  // accesses), and a key already present is then dropped, the first task winning as with
  // add(). The fast way to build a large graph.
  void append(Key key, TaskPtr task);
  void append(Key key, Task task) {
    append(std::move(key), std::make_shared<const Task>(std::move(task)));
  }
  // Adds or replaces the task under `key`.
  void set(Key key, TaskPtr task);
  // Adds every task of `other` whose key is not here yet.
  void merge(const Graph& other);
  void reserve(size_t n);

  size_t size() const {
    sync();
    return entries_.size();
  }
  bool empty() const { return size() == 0; }
  bool contains(const Key& key) const { return index_of(key) >= 0; }
  // Position of `key` in entries(), or -1.
  int64_t index_of(const Key& key) const;
  // Positions of many keys (-1 where absent): faster than index_of in a loop, because the
  // memory accesses of consecutive lookups are overlapped.
  void index_of(std::span<const Key* const> keys, std::span<int64_t> out) const;
  // The task under `key`, or nullptr.
  const Task* find(const Key& key) const;
  // The task under `key`; KeyError naming the key otherwise.
  const Task& at(const Key& key) const;
  std::span<const Entry> entries() const {
    sync();
    return entries_;
  }
  const Entry& operator[](size_t i) const {
    sync();
    return entries_[i];
  }

  // The distinct keys `key`'s task references, in order of first appearance.
  std::vector<Key> dependencies(const Key& key) const;
  // The keys whose tasks reference `key` (a scan; use analyze() for many queries).
  std::vector<Key> dependents(const Key& key) const;

 private:
  // Indexes appended entries (and drops duplicates) if there are any.
  void sync() const {
    if (pending_.load(std::memory_order_acquire)) index_pending();
  }
  void index_pending() const;
  void rebuild_index(size_t capacity) const;
  // Inserts entries [from, to) into the index; returns positions that were duplicates.
  std::vector<size_t> insert_range(size_t from, size_t to) const;
  // The slot holding `key`, or the empty slot where it would go; sets `found`.
  size_t probe(const Key& key, uint64_t hash, bool& found) const;
  int64_t lookup(const Key& key) const;

  // Entries and index are completed lazily by const readers (under mutex_) after append().
  mutable std::vector<Entry> entries_;
  // Open addressing: (entry position + 1, upper hash bits) per slot; 0 marks an empty slot.
  mutable detail::SlotTable slots_;
  mutable size_t indexed_ = 0;  // entries_[0, indexed_) are in the index
  mutable std::atomic<bool> pending_{false};
  mutable std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
};

// The integer form of a graph: for task i, its references (every key reference in argument
// order, as task positions), its distinct dependencies, and its dependents, as CSR arrays.
struct GraphStructure {
  std::vector<uint32_t> ref_offsets, refs;
  std::vector<uint32_t> dep_offsets, deps;
  std::vector<uint32_t> dependent_offsets, dependents;

  size_t size() const noexcept { return dep_offsets.empty() ? 0 : dep_offsets.size() - 1; }
  std::span<const uint32_t> refs_of(size_t i) const {
    return {refs.data() + ref_offsets[i], refs.data() + ref_offsets[i + 1]};
  }
  std::span<const uint32_t> deps_of(size_t i) const {
    return {deps.data() + dep_offsets[i], deps.data() + dep_offsets[i + 1]};
  }
  std::span<const uint32_t> dependents_of(size_t i) const {
    return {dependents.data() + dependent_offsets[i], dependents.data() + dependent_offsets[i + 1]};
  }
};

// Resolves every reference of `graph`; GraphError naming the task and the missing key if a
// reference points outside the graph.
GraphStructure analyze(const Graph& graph);

}  // namespace tessera

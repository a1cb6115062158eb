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

#include <cstdint>
#include <span>
#include <vector>

#include "tessera/core/key.hpp"
#include "tessera/core/task.hpp"

namespace tessera {

// A set of tasks by key. Adding a key that is already present keeps the first task: equal
// keys mean equal work (deterministic keys), which is what makes merging graphs share work.
class Graph {
 public:
  struct Entry {
    Key key;
    TaskPtr task;
  };

  Graph() = default;

  // Adds `task` under `key` unless the key is present; true if it was added.
  bool add(Key key, Task task);
  bool add(Key key, TaskPtr task);
  // Adds or replaces the task under `key`.
  void set(Key key, TaskPtr task);
  // Adds every task of `other` whose key is not here yet.
  void merge(const Graph& other);
  void reserve(size_t n);

  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  bool contains(const Key& key) const { return index_of(key) >= 0; }
  // Position of `key` in entries(), or -1.
  int64_t index_of(const Key& key) const;
  // The task under `key`, or nullptr.
  const Task* find(const Key& key) const;
  // The task under `key`; KeyError naming the key otherwise.
  const Task& at(const Key& key) const;
  std::span<const Entry> entries() const noexcept { return entries_; }
  const Entry& operator[](size_t i) const noexcept { return entries_[i]; }

  // The distinct keys `key`'s task references, in order of first appearance.
  std::vector<Key> dependencies(const Key& key) const;
  // The keys whose tasks reference `key` (a scan; use analyze() for many queries).
  std::vector<Key> dependents(const Key& key) const;

 private:
  void grow_index();
  void index_insert(uint32_t pos, uint64_t hash);

  std::vector<Entry> entries_;
  // Open addressing: (entry position + 1, upper hash bits) per slot; 0 marks an empty slot.
  std::vector<uint64_t> slots_;
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

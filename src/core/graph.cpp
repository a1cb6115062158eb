#include "tessera/core/graph.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "tessera/core/error.hpp"

namespace tessera {

namespace {

constexpr uint64_t kPosMask = 0xffffffffull;

inline uint64_t tag_of(uint64_t hash) { return hash & ~kPosMask; }

}  // namespace

void Graph::reserve(size_t n) {
  entries_.reserve(n);
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  if (cap > slots_.size()) {
    slots_.assign(cap, 0);
    for (size_t i = 0; i < entries_.size(); ++i) index_insert(static_cast<uint32_t>(i), entries_[i].key.hash());
  }
}

void Graph::grow_index() {
  const size_t cap = slots_.empty() ? 16 : slots_.size() * 2;
  slots_.assign(cap, 0);
  for (size_t i = 0; i < entries_.size(); ++i) index_insert(static_cast<uint32_t>(i), entries_[i].key.hash());
}

void Graph::index_insert(uint32_t pos, uint64_t hash) {
  const size_t mask = slots_.size() - 1;
  size_t s = static_cast<size_t>(hash) & mask;
  while (slots_[s] != 0) s = (s + 1) & mask;
  slots_[s] = tag_of(hash) | (static_cast<uint64_t>(pos) + 1);
}

int64_t Graph::index_of(const Key& key) const {
  if (slots_.empty()) return -1;
  const uint64_t h = key.hash();
  const uint64_t tag = tag_of(h);
  const size_t mask = slots_.size() - 1;
  for (size_t s = static_cast<size_t>(h) & mask;; s = (s + 1) & mask) {
    const uint64_t slot = slots_[s];
    if (slot == 0) return -1;
    if ((slot & ~kPosMask) == tag) {
      const size_t pos = (slot & kPosMask) - 1;
      if (entries_[pos].key == key) return static_cast<int64_t>(pos);
    }
  }
}

bool Graph::add(Key key, Task task) {
  if (contains(key)) return false;
  return add(std::move(key), std::make_shared<const Task>(std::move(task)));
}

bool Graph::add(Key key, TaskPtr task) {
  if (key.empty()) throw ValueError("Graph::add: empty key");
  if (!task) throw ValueError(fmt::format("Graph::add: null task for key '{}'", key.str()));
  if (entries_.size() >= kPosMask - 1) throw ValueError("Graph::add: more than 4 billion tasks");
  if ((entries_.size() + 1) * 2 > slots_.size()) grow_index();
  const uint64_t h = key.hash();
  const uint64_t tag = tag_of(h);
  const size_t mask = slots_.size() - 1;
  size_t s = static_cast<size_t>(h) & mask;
  for (; slots_[s] != 0; s = (s + 1) & mask) {
    if ((slots_[s] & ~kPosMask) == tag && entries_[(slots_[s] & kPosMask) - 1].key == key) return false;
  }
  slots_[s] = tag | (static_cast<uint64_t>(entries_.size()) + 1);
  entries_.push_back(Entry{std::move(key), std::move(task)});
  return true;
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
  reserve(size() + other.size());
  for (const Entry& e : other.entries_) add(e.key, e.task);
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

std::vector<Key> Graph::dependencies(const Key& key) const { return at(key).dependencies(); }

std::vector<Key> Graph::dependents(const Key& key) const {
  at(key);
  std::vector<Key> out;
  std::vector<Key> refs;
  for (const Entry& e : entries_) {
    refs.clear();
    e.task->collect_refs(refs);
    if (std::find(refs.begin(), refs.end(), key) != refs.end()) out.push_back(e.key);
  }
  return out;
}

namespace {

void resolve(const Graph& g, const Key& owner, std::span<const Arg> args, std::vector<uint32_t>& refs) {
  for (const Arg& a : args) {
    switch (a.kind()) {
      case Arg::Kind::kValue: break;
      case Arg::Kind::kRef: {
        const int64_t i = g.index_of(a.ref());
        if (i < 0) {
          throw GraphError(fmt::format("task '{}' depends on '{}', which is not in the graph", owner.str(),
                                       a.ref().str()));
        }
        refs.push_back(static_cast<uint32_t>(i));
        break;
      }
      case Arg::Kind::kList: resolve(g, owner, a.list(), refs); break;
      case Arg::Kind::kTask: resolve(g, owner, a.task().args(), refs); break;
    }
  }
}

}  // namespace

GraphStructure analyze(const Graph& graph) {
  const size_t n = graph.size();
  GraphStructure s;
  s.ref_offsets.reserve(n + 1);
  s.refs.reserve(n * 2);
  s.dep_offsets.reserve(n + 1);
  s.deps.reserve(n * 2);
  s.ref_offsets.push_back(0);
  s.dep_offsets.push_back(0);
  std::vector<uint32_t> stamp(n, 0);
  for (const Graph::Entry& e : graph.entries()) {
    const size_t begin = s.refs.size();
    resolve(graph, e.key, e.task->args(), s.refs);
    s.ref_offsets.push_back(static_cast<uint32_t>(s.refs.size()));
    // Distinct dependencies in order of first appearance (a stamp per task marks the seen).
    const uint32_t mark = static_cast<uint32_t>(s.dep_offsets.size());
    for (size_t i = begin; i < s.refs.size(); ++i) {
      const uint32_t d = s.refs[i];
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

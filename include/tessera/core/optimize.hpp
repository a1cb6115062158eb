// File: tessera/core/optimize.hpp
//
// Low-level graph optimizations, applied after layers have been materialized:
//   merge         — union of graphs; tasks with the same key are stored once
//   cull          — only the tasks the requested keys need
//   fuse_linear   — a chain a → b → c where each link has one dependent becomes one task
//                   (nested tasks), under the last key
//   inline_cheap  — literal, alias and cheap-op tasks are evaluated inside their dependents
//
//   auto g2 = tessera::cull(g, {out});
//   auto g3 = tessera::fuse_linear(g2, {out});
#pragma once

#include <cstddef>
#include <initializer_list>
#include <span>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera {

// Union of `graphs`; the first task seen for a key wins.
Graph merge(std::span<const Graph* const> graphs);
Graph merge(const Graph& a, const Graph& b);

// The tasks `keys` need, in their original relative order. KeyError if a key is missing.
Graph cull(const Graph& graph, std::span<const Key> keys);
inline Graph cull(const Graph& graph, std::initializer_list<Key> keys) {
  return cull(graph, std::span<const Key>(keys.begin(), keys.size()));
}

struct FuseOptions {
  // Longest chain fused into one task (bounds nesting depth and lost parallelism).
  size_t max_chain = 32;
};

// Fuses linear chains: a task whose only dependent has it as only dependency is nested
// into that dependent. Keys in `keep` are never fused away.
Graph fuse_linear(const Graph& graph, std::span<const Key> keep, FuseOptions options = {});
inline Graph fuse_linear(const Graph& graph, std::initializer_list<Key> keep,
                         FuseOptions options = {}) {
  return fuse_linear(graph, std::span<const Key>(keep.begin(), keep.size()), options);
}

// Inlines literal and alias tasks, and tasks whose op is marked cheap, into every task that
// references them. Keys in `keep` stay in the graph.
Graph inline_cheap(const Graph& graph, std::span<const Key> keep);
inline Graph inline_cheap(const Graph& graph, std::initializer_list<Key> keep) {
  return inline_cheap(graph, std::span<const Key>(keep.begin(), keep.size()));
}

}  // namespace tessera

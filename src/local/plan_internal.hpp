// What a local scheduler runs: the needed part of a graph in integer form, with its static
// order, the dependency counters to start from and the roots in priority order.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera::local {

struct Plan {
  const Graph* graph = nullptr;   // what runs (the input, or `culled`)
  std::unique_ptr<Graph> culled;  // only the needed tasks, when the input had more (a heap
                                  // object, so `graph` stays valid when the plan moves)
  GraphStructure s;
  std::vector<uint32_t> priority;  // by position; lower runs first
  std::vector<uint32_t> outputs;   // positions, in the order requested
  std::vector<int32_t> refcount;   // readers left: dependents + times requested
  std::vector<int32_t> waiting;    // dependencies not yet computed
  std::vector<uint32_t> roots;     // tasks without dependencies, by priority

  size_t size() const noexcept { return s.size(); }
};

// Culls `graph` to what `outputs` need, orders it, and counts. Raises GraphError (cycle,
// missing dependency) or KeyError (missing output) naming the key.
Plan make_plan(const Graph& graph, std::span<const Key> outputs);

}  // namespace tessera::local

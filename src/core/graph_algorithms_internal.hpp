// Graph algorithms shared by the optimizations, the order and the schedulers.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera::detail {

// Positions of `graph` in an order where every task follows its dependencies (Kahn).
// GraphError naming a cycle if there is one.
std::vector<uint32_t> topological_order(const Graph& graph, const GraphStructure& s);

// Throws GraphError describing a cycle through the tasks not yet ordered (`done[i]` false).
[[noreturn]] void throw_cycle(const Graph& graph, const GraphStructure& s,
                              const std::vector<char>& done);

// Marks (1) the tasks `roots` need, following dependencies.
std::vector<char> reachable(const GraphStructure& s, std::span<const uint32_t> roots);

// Positions of `keys` in `graph`; KeyError naming the first missing key.
std::vector<uint32_t> positions_of(const Graph& graph, std::span<const Key> keys);

// A copy of `task` whose references are replaced where `replace(position)` gives an Arg;
// `positions` are the task's references in argument order (GraphStructure::refs_of).
Task substitute(const Task& task, std::span<const uint32_t> positions,
                const std::function<const Arg*(uint32_t)>& replace);

}  // namespace tessera::detail

// File: tessera/core/order.hpp
//
// Static ordering, in the spirit of dask.order: a priority for every task (0 runs first)
// that finishes what it starts and frees intermediates early. It is a depth-first
// post-order from the requested outputs; at each task, the dependency with the deeper
// sub-graph is computed first (Sethi & Ullman, "The generation of optimal code for
// arithmetic expressions", JACM 1970), and a task whose dependencies are all computed is
// ordered right away when that lets one of its inputs be released (it is the input's last
// reader) or when it is a sink (held to the end anyway). Linear time.
//
//   auto prio = tessera::order(graph, {out});   // prio[i] for graph.entries()[i]
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera {

// Priority of each task of `graph` (by position). Tasks reachable from `outputs` come
// first, in output order; the rest of the graph follows. GraphError on a cycle, naming it.
std::vector<uint32_t> order(const Graph& graph, std::span<const Key> outputs = {});
inline std::vector<uint32_t> order(const Graph& graph, std::initializer_list<Key> outputs) {
  return order(graph, std::span<const Key>(outputs.begin(), outputs.size()));
}
// The same on an analyzed graph, with outputs given by position.
std::vector<uint32_t> order(const Graph& graph, const GraphStructure& structure,
                            std::span<const uint32_t> outputs);

}  // namespace tessera

#include "local/plan_internal.hpp"

#include "core/graph_algorithms_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/optimize.hpp"
#include "tessera/core/order.hpp"

namespace tessera::local {

Plan make_plan(const Graph& graph, std::span<const Key> outputs) {
  Plan p;
  p.graph = &graph;
  std::vector<uint32_t> outs = detail::positions_of(graph, outputs);
  bool whole = true;
  try {
    p.s = analyze(graph);
    const std::vector<char> needed = detail::reachable(p.s, outs);
    for (char c : needed) whole &= c != 0;
  } catch (const GraphError&) {
    whole = false;  // a broken part may be unneeded: cull, and analyze what remains
  }
  if (!whole) {
    p.culled = std::make_unique<Graph>(cull(graph, outputs));
    p.graph = p.culled.get();
    p.s = analyze(*p.graph);
    outs = detail::positions_of(*p.graph, outputs);
  }
  p.outputs = outs;
  p.priority = order(*p.graph, p.s, outs);

  const size_t n = p.size();
  p.refcount.resize(n);
  p.waiting.resize(n);
  for (size_t i = 0; i < n; ++i) {
    p.refcount[i] = static_cast<int32_t>(p.s.dependents_of(i).size());
    p.waiting[i] = static_cast<int32_t>(p.s.deps_of(i).size());
  }
  for (uint32_t o : outs) ++p.refcount[o];
  // Roots in priority order: priorities are a permutation of 0..n-1, so place and compact.
  std::vector<uint32_t> by_priority(n, UINT32_MAX);
  for (size_t i = 0; i < n; ++i) {
    if (p.waiting[i] == 0) by_priority[p.priority[i]] = static_cast<uint32_t>(i);
  }
  for (uint32_t v : by_priority) {
    if (v != UINT32_MAX) p.roots.push_back(v);
  }
  return p;
}

}  // namespace tessera::local

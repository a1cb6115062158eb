#include "tessera/core/order.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/graph_algorithms_internal.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

namespace detail {

std::vector<uint32_t> topological_order(const Graph& graph, const GraphStructure& s) {
  const size_t n = s.size();
  std::vector<uint32_t> missing(n);
  std::vector<uint32_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    missing[i] = static_cast<uint32_t>(s.deps_of(i).size());
    if (missing[i] == 0) out.push_back(static_cast<uint32_t>(i));
  }
  for (size_t head = 0; head < out.size(); ++head) {
    for (uint32_t w : s.dependents_of(out[head])) {
      if (--missing[w] == 0) out.push_back(w);
    }
  }
  if (out.size() != n) {
    std::vector<char> done(n, 0);
    for (uint32_t v : out) done[v] = 1;
    throw_cycle(graph, s, done);
  }
  return out;
}

void throw_cycle(const Graph& graph, const GraphStructure& s, const std::vector<char>& done) {
  // Every task left has a dependency that is also left: walking them must revisit one.
  size_t start = 0;
  while (start < done.size() && done[start]) ++start;
  std::vector<int64_t> seen_at(done.size(), -1);
  std::vector<uint32_t> path;
  uint32_t v = static_cast<uint32_t>(start);
  while (seen_at[v] < 0) {
    seen_at[v] = static_cast<int64_t>(path.size());
    path.push_back(v);
    for (uint32_t d : s.deps_of(v)) {
      if (!done[d]) {
        v = d;
        break;
      }
    }
  }
  std::vector<std::string> names;
  for (size_t i = static_cast<size_t>(seen_at[v]); i < path.size(); ++i)
    names.push_back(graph[path[i]].key.str());
  std::reverse(names.begin(), names.end());
  names.push_back(names.front());
  if (names.size() > 12) {
    names.erase(names.begin() + 5, names.end() - 5);
    names.insert(names.begin() + 5, "...");
  }
  throw GraphError(fmt::format("the graph has a cycle: {}", fmt::join(names, " -> ")));
}

}  // namespace detail

std::vector<uint32_t> order(const Graph& graph, std::span<const Key> outputs) {
  const GraphStructure s = analyze(graph);
  return order(graph, s, detail::positions_of(graph, outputs));
}

std::vector<uint32_t> order(const Graph& graph, const GraphStructure& s,
                            std::span<const uint32_t> outputs) {
  const size_t n = s.size();
  constexpr uint32_t kUnset = UINT32_MAX;
  const std::vector<uint32_t> topo = detail::topological_order(graph, s);

  // Height: length of the longest dependency chain below a task.
  std::vector<uint32_t> height(n, 1);
  for (uint32_t v : topo) {
    uint32_t h = 0;
    for (uint32_t d : s.deps_of(v)) h = std::max(h, height[d]);
    height[v] = h + 1;
  }

  std::vector<uint32_t> prio(n, kUnset);
  std::vector<uint32_t> deps_left(n);        // dependencies not yet ordered
  std::vector<uint32_t> dependents_left(n);  // dependents not yet ordered
  for (size_t i = 0; i < n; ++i) {
    deps_left[i] = static_cast<uint32_t>(s.deps_of(i).size());
    dependents_left[i] = static_cast<uint32_t>(s.dependents_of(i).size());
  }
  uint32_t next = 0;
  std::vector<uint32_t> eager;

  // Orders v, then any dependent that became ready and whose running lets one of its
  // dependencies be released (it is that dependency's last unordered dependent), or that
  // is a sink.
  auto assign = [&](uint32_t v) {
    eager.push_back(v);
    while (!eager.empty()) {
      const uint32_t x = eager.back();
      eager.pop_back();
      if (prio[x] != kUnset) continue;
      prio[x] = next++;
      for (uint32_t d : s.deps_of(x)) --dependents_left[d];
      for (uint32_t w : s.dependents_of(x)) {
        if (--deps_left[w] != 0 || prio[w] != kUnset) continue;
        // A sink is held to the end anyway: running it early costs nothing and lets its
        // inputs go sooner.
        bool frees = s.dependents_of(w).empty();
        for (uint32_t d : s.deps_of(w)) frees |= dependents_left[d] == 1;
        if (frees) eager.push_back(w);
      }
    }
  };

  // Depth-first post-order; children sorted deepest first, then by argument position.
  struct Frame {
    uint32_t node, begin, end, pos;
  };
  std::vector<Frame> stack;
  std::vector<uint32_t> children;
  auto push = [&](uint32_t v) {
    const auto deps = s.deps_of(v);
    const auto begin = static_cast<uint32_t>(children.size());
    children.insert(children.end(), deps.begin(), deps.end());
    std::stable_sort(children.begin() + begin, children.end(),
                     [&](uint32_t a, uint32_t b) { return height[a] > height[b]; });
    stack.push_back({v, begin, static_cast<uint32_t>(children.size()), begin});
  };
  auto visit = [&](uint32_t root) {
    if (prio[root] != kUnset) return;
    push(root);
    while (!stack.empty()) {
      Frame& f = stack.back();
      while (f.pos < f.end && prio[children[f.pos]] != kUnset) ++f.pos;
      if (prio[f.node] == kUnset && f.pos < f.end) {
        const uint32_t c = children[f.pos++];
        push(c);
        continue;
      }
      const uint32_t v = f.node;
      children.resize(f.begin);
      stack.pop_back();
      if (prio[v] == kUnset) assign(v);
    }
  };

  for (uint32_t o : outputs) visit(o);
  for (size_t i = 0; i < n; ++i) {
    if (s.dependents_of(i).empty()) visit(static_cast<uint32_t>(i));
  }
  TESSERA_ASSERT(next == n, "order left tasks unordered");
  return prio;
}

}  // namespace tessera

#include "tessera/core/optimize.hpp"

#include <fmt/format.h>

#include "core/graph_algorithms_internal.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

namespace detail {

std::vector<uint32_t> positions_of(const Graph& graph, std::span<const Key> keys) {
  std::vector<uint32_t> out;
  out.reserve(keys.size());
  for (const Key& k : keys) {
    const int64_t i = graph.index_of(k);
    if (i < 0)
      throw KeyError(fmt::format("key '{}' is not in the graph ({} tasks)", k.str(), graph.size()));
    out.push_back(static_cast<uint32_t>(i));
  }
  return out;
}

std::vector<char> reachable(const GraphStructure& s, std::span<const uint32_t> roots) {
  std::vector<char> seen(s.size(), 0);
  std::vector<uint32_t> stack(roots.begin(), roots.end());
  for (uint32_t r : roots) seen[r] = 1;
  while (!stack.empty()) {
    const uint32_t v = stack.back();
    stack.pop_back();
    for (uint32_t d : s.deps_of(v)) {
      if (!seen[d]) {
        seen[d] = 1;
        stack.push_back(d);
      }
    }
  }
  return seen;
}

namespace {

std::vector<Arg> substitute_args(std::span<const Arg> args, std::span<const uint32_t> positions,
                                 size_t& cursor,
                                 const std::function<const Arg*(uint32_t)>& replace) {
  std::vector<Arg> out;
  out.reserve(args.size());
  for (const Arg& a : args) {
    switch (a.kind()) {
      case Arg::Kind::kValue:
        out.push_back(a);
        break;
      case Arg::Kind::kRef: {
        const Arg* r = replace(positions[cursor++]);
        out.push_back(r ? *r : a);
        break;
      }
      case Arg::Kind::kList:
        out.push_back(Arg::list(substitute_args(a.list(), positions, cursor, replace)));
        break;
      case Arg::Kind::kTask: {
        const Task& t = a.task();
        out.push_back(
            Arg::task(t.with_args(substitute_args(t.args(), positions, cursor, replace))));
        break;
      }
    }
  }
  return out;
}

}  // namespace

Task substitute(const Task& task, std::span<const uint32_t> positions,
                const std::function<const Arg*(uint32_t)>& replace) {
  size_t cursor = 0;
  Task out = task.with_args(substitute_args(task.args(), positions, cursor, replace));
  TESSERA_ASSERT(cursor == positions.size(), "reference count mismatch in substitute");
  return out;
}

}  // namespace detail

Graph merge(std::span<const Graph* const> graphs) {
  Graph out;
  size_t n = 0;
  for (const Graph* g : graphs) n += g->size();
  out.reserve(n);
  for (const Graph* g : graphs) out.merge(*g);
  return out;
}

Graph merge(const Graph& a, const Graph& b) {
  const Graph* gs[] = {&a, &b};
  return merge(gs);
}

Graph cull(const Graph& graph, std::span<const Key> keys) {
  // Walk references on demand, so that a broken part of the graph nobody needs is no error.
  std::vector<char> seen(graph.size(), 0);
  std::vector<uint32_t> stack = detail::positions_of(graph, keys);
  for (uint32_t r : stack) seen[r] = 1;
  std::vector<Key> refs;
  while (!stack.empty()) {
    const uint32_t v = stack.back();
    stack.pop_back();
    refs.clear();
    graph[v].task->collect_refs(refs);
    for (const Key& k : refs) {
      const int64_t d = graph.index_of(k);
      if (d < 0) {
        throw GraphError(fmt::format("task '{}' depends on '{}', which is not in the graph",
                                     graph[v].key.str(), k.str()));
      }
      if (!seen[static_cast<size_t>(d)]) {
        seen[static_cast<size_t>(d)] = 1;
        stack.push_back(static_cast<uint32_t>(d));
      }
    }
  }
  Graph out;
  size_t n = 0;
  for (char c : seen) n += c;
  out.reserve(n);
  for (size_t i = 0; i < graph.size(); ++i) {
    if (seen[i]) out.append(graph[i].key, graph[i].task);
  }
  return out;
}

Graph fuse_linear(const Graph& graph, std::span<const Key> keep, FuseOptions options) {
  const GraphStructure s = analyze(graph);
  const size_t n = graph.size();
  std::vector<char> kept(n, 0);
  for (uint32_t k : detail::positions_of(graph, keep)) kept[k] = 1;
  const std::vector<uint32_t> topo = detail::topological_order(graph, s);

  // fused_into[u] = v when u's task is nested into its single dependent v.
  constexpr uint32_t kNone = UINT32_MAX;
  std::vector<uint32_t> chain(n, 1);
  std::vector<char> removed(n, 0);
  std::vector<uint32_t> absorbed(n, kNone);  // v -> the u nested into it
  for (uint32_t v : topo) {
    const auto deps = s.deps_of(v);
    if (deps.size() != 1 || s.refs_of(v).size() != 1) continue;
    const uint32_t u = deps[0];
    if (kept[u] || s.dependents_of(u).size() != 1) continue;
    if (chain[u] + 1 > options.max_chain) continue;
    chain[v] = chain[u] + 1;
    removed[u] = 1;
    absorbed[v] = u;
  }

  std::vector<TaskPtr> tasks(n);
  for (uint32_t v : topo) {
    if (absorbed[v] == kNone) {
      tasks[v] = graph[v].task;
      continue;
    }
    const Arg nested = Arg::task(tasks[absorbed[v]]);
    const uint32_t u = absorbed[v];
    tasks[v] = std::make_shared<const Task>(
        detail::substitute(*graph[v].task, s.refs_of(v),
                           [&](uint32_t p) -> const Arg* { return p == u ? &nested : nullptr; }));
  }
  Graph out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!removed[i]) out.append(graph[i].key, tasks[i]);
  }
  return out;
}

Graph inline_cheap(const Graph& graph, std::span<const Key> keep) {
  const GraphStructure s = analyze(graph);
  const size_t n = graph.size();
  std::vector<char> kept(n, 0);
  for (uint32_t k : detail::positions_of(graph, keep)) kept[k] = 1;
  const std::vector<uint32_t> topo = detail::topological_order(graph, s);

  std::vector<char> inlined(n, 0);
  for (size_t u = 0; u < n; ++u) {
    if (kept[u] || s.dependents_of(u).empty()) continue;
    const Task& t = *graph[u].task;
    inlined[u] = !t.is_call() || t.op()->cheap;
  }
  std::vector<TaskPtr> tasks(n);
  std::vector<Arg> replacement;
  replacement.reserve(n);
  std::vector<int64_t> replacement_of(n, -1);
  for (uint32_t v : topo) {
    bool touches = false;
    for (uint32_t d : s.deps_of(v)) touches |= inlined[d] != 0;
    tasks[v] = touches ? std::make_shared<const Task>(detail::substitute(
                             *graph[v].task, s.refs_of(v),
                             [&](uint32_t p) -> const Arg* {
                               return replacement_of[p] < 0
                                          ? nullptr
                                          : &replacement[static_cast<size_t>(replacement_of[p])];
                             }))
                       : graph[v].task;
    if (inlined[v]) {
      const Task& t = *tasks[v];
      // A literal becomes the value itself; anything else a nested task.
      const bool literal =
          !t.is_call() && t.args().size() == 1 && t.args()[0].kind() == Arg::Kind::kValue;
      replacement_of[v] = static_cast<int64_t>(replacement.size());
      replacement.push_back(literal ? t.args()[0] : Arg::task(tasks[v]));
    }
  }
  Graph out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!inlined[i]) out.append(graph[i].key, tasks[i]);
  }
  return out;
}

}  // namespace tessera

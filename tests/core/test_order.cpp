#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "tessera/core.hpp"
#include "test_support.hpp"

namespace tessera {
namespace {

using testing::error_of;

Task lit(int64_t v) {
  return Task::literal(Value::of(v));
}
Task add(const Key& a, const Key& b) {
  return Task::call("coretest::add", {Arg::ref(a), Arg::ref(b)});
}
Task inc(const Key& a) {
  return Task::call("coretest::inc", {Arg::ref(a)});
}

// Peak number of results held when tasks run in priority order, each released after its
// last reader (outputs are held to the end).
size_t peak_memory(const Graph& g, const std::vector<uint32_t>& prio,
                   std::span<const Key> outputs) {
  const GraphStructure s = analyze(g);
  std::vector<uint32_t> order(g.size());
  for (uint32_t i = 0; i < g.size(); ++i) order[prio[i]] = i;
  std::vector<size_t> readers(g.size());
  for (size_t i = 0; i < g.size(); ++i) readers[i] = s.dependents_of(i).size();
  for (const Key& k : outputs) ++readers[static_cast<size_t>(g.index_of(k))];
  size_t live = 0, peak = 0;
  std::vector<char> done(g.size(), 0);
  for (uint32_t v : order) {
    for (uint32_t d : s.deps_of(v))
      EXPECT_TRUE(done[d]) << "dependency ordered after its dependent";
    done[v] = 1;
    peak = std::max(peak, ++live);
    for (uint32_t d : s.deps_of(v)) {
      if (--readers[d] == 0) --live;
    }
  }
  return peak;
}

// Tree sum over n leaves: inc(i) then pairwise adds. Returns the root key.
Key tree(Graph& g, int64_t n, const std::string& name = "t") {
  std::vector<Key> level;
  for (int64_t i = 0; i < n; ++i) {
    Key leaf(name + "-leaf", {i});
    g.add(leaf, lit(i));
    level.push_back(leaf);
  }
  for (int64_t depth = 0; level.size() > 1; ++depth) {
    std::vector<Key> next;
    for (size_t i = 0; i < level.size(); i += 2) {
      if (i + 1 == level.size()) {
        next.push_back(level[i]);
        continue;
      }
      Key k(name + "-add", {depth, static_cast<int64_t>(i)});
      g.add(k, add(level[i], level[i + 1]));
      next.push_back(k);
    }
    level = next;
  }
  return level[0];
}

TEST(Order, IsAPermutationAndTopological) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const auto dag = testing::random_dag(seed, 500, 4);
    const auto prio = order(dag.graph, dag.sinks);
    std::vector<uint32_t> sorted = prio;
    std::sort(sorted.begin(), sorted.end());
    for (uint32_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], i);
    const GraphStructure s = analyze(dag.graph);
    for (size_t v = 0; v < s.size(); ++v) {
      for (uint32_t d : s.deps_of(v)) ASSERT_LT(prio[d], prio[v]);
    }
  }
}

TEST(Order, TreeReductionFinishesSubtreesFirst) {
  Graph g;
  const Key root = tree(g, 8);
  const auto prio = order(g, std::vector<Key>{root});
  std::vector<std::string> seq(g.size());
  for (size_t i = 0; i < g.size(); ++i) seq[prio[i]] = g[i].key.str();
  EXPECT_EQ(seq[0], "('t-leaf', 0)");
  EXPECT_EQ(seq[1], "('t-leaf', 1)");
  EXPECT_EQ(seq[2], "('t-add', 0, 0)");  // add(0, 1) before leaf 2 is even loaded
  EXPECT_EQ(seq[3], "('t-leaf', 2)");
  EXPECT_EQ(seq.back(), root.str());
}

TEST(Order, TreeReductionMemoryIsLogarithmic) {
  Graph g;
  const Key root = tree(g, 1024);
  const std::vector<Key> outs{root};
  const size_t peak = peak_memory(g, order(g, outs), outs);
  EXPECT_LE(peak, 12u);  // log2(1024) + 2
  // Positional order (all leaves first) would hold every leaf.
  std::vector<uint32_t> naive(g.size());
  std::iota(naive.begin(), naive.end(), 0u);
  EXPECT_GE(peak_memory(g, naive, outs), 1024u);
}

TEST(Order, DeeperDependencyFirst) {
  Graph g;
  g.add(Key("small"), lit(1));
  Key deep = tree(g, 16, "deep");
  g.add(Key("out"), add(Key("small"), deep));
  const auto prio = order(g, std::vector<Key>{Key("out")});
  // `small` is loaded right before `out`, not held while the deep side runs.
  EXPECT_EQ(prio[g.index_of(Key("small"))] + 1, prio[g.index_of(Key("out"))]);
}

TEST(Order, SinksReadingSharedInputsRunEagerly) {
  // x_i feeds output a_i and a tree sum: each a_i should run as soon as x_i exists.
  Graph g;
  const int64_t n = 64;
  std::vector<Key> outs;
  std::vector<Key> level;
  for (int64_t i = 0; i < n; ++i) {
    g.add(Key("x", {i}), lit(i));
    g.add(Key("a", {i}), inc(Key("x", {i})));
    level.push_back(Key("x", {i}));
  }
  for (int64_t d = 0; level.size() > 1; ++d) {
    std::vector<Key> next;
    for (size_t i = 0; i < level.size(); i += 2) {
      Key k("s", {d, static_cast<int64_t>(i)});
      g.add(k, add(level[i], level[i + 1]));
      next.push_back(k);
    }
    level = next;
  }
  outs.push_back(level[0]);
  for (int64_t i = 0; i < n; ++i) outs.push_back(Key("a", {i}));
  const size_t peak = peak_memory(g, order(g, outs), outs);
  EXPECT_LE(peak,
            n + 10u);  // the 64 outputs are held anyway; only a few x_i / partial sums besides
}

TEST(Order, OutputsInTheOrderRequested) {
  Graph g;
  const Key a = tree(g, 4, "A");
  const Key b = tree(g, 4, "B");
  const auto prio = order(g, std::vector<Key>{b, a});
  EXPECT_LT(prio[g.index_of(b)], prio[g.index_of(Key("A-leaf", {0}))]);
}

TEST(Order, LongChainsDoNotRecurse) {
  Graph g;
  g.add(Key("c", {0}), lit(0));
  for (int64_t i = 1; i < 300000; ++i) g.add(Key("c", {i}), inc(Key("c", {i - 1})));
  const auto prio = order(g, std::vector<Key>{Key("c", {299999})});
  for (uint32_t i = 0; i < prio.size(); ++i) ASSERT_EQ(prio[i], i);
}

TEST(Order, CycleIsNamed) {
  Graph g;
  g.add(Key("a"), inc(Key("c")));
  g.add(Key("b"), inc(Key("a")));
  g.add(Key("c"), inc(Key("b")));
  g.add(Key("free"), lit(1));
  const std::string msg = error_of<GraphError>([&] { order(g); });
  EXPECT_TRUE(msg == "the graph has a cycle: a -> b -> c -> a" ||
              msg == "the graph has a cycle: b -> c -> a -> b" ||
              msg == "the graph has a cycle: c -> a -> b -> c")
      << msg;
  Graph self;
  self.add(Key("s"), inc(Key("s")));
  EXPECT_EQ(error_of<GraphError>([&] { order(self); }), "the graph has a cycle: s -> s");
}

}  // namespace
}  // namespace tessera

#include <gtest/gtest.h>

#include "tessera/core.hpp"
#include "test_support.hpp"

namespace tessera {
namespace {

using testing::error_of;

Task lit(int64_t v) {
  return Task::literal(Value::of(v));
}
Task inc(const Key& a) {
  return Task::call("coretest::inc", {Arg::ref(a)});
}
Task add(const Key& a, const Key& b) {
  return Task::call("coretest::add", {Arg::ref(a), Arg::ref(b)});
}

int64_t run(const Graph& g, const Key& k) {
  return get(g, std::vector<Key>{k}, {.scheduler = "sync"})[0].get<int64_t>();
}

Graph chain(int64_t n) {
  Graph g;
  g.add(Key("c", {0}), lit(0));
  for (int64_t i = 1; i < n; ++i) g.add(Key("c", {i}), inc(Key("c", {i - 1})));
  return g;
}

TEST(Cull, KeepsOnlyWhatOutputsNeed) {
  Graph g;
  g.add(Key("a"), lit(1));
  g.add(Key("b"), inc(Key("a")));
  g.add(Key("unused"), inc(Key("b")));
  g.add(Key("broken"), inc(Key("missing")));  // not needed: no error
  const Graph c = cull(g, std::vector<Key>{Key("b")});
  EXPECT_EQ(c.size(), 2u);
  EXPECT_TRUE(c.contains(Key("a")));
  EXPECT_FALSE(c.contains(Key("unused")));
  EXPECT_EQ(c.at(Key("b")).args().data(), g.at(Key("b")).args().data());  // shared task
  EXPECT_EQ(error_of<KeyError>([&] { cull(g, std::vector<Key>{Key("nope")}); }),
            "key 'nope' is not in the graph (4 tasks)");
  EXPECT_EQ(error_of<GraphError>([&] { cull(g, std::vector<Key>{Key("broken")}); }),
            "task 'broken' depends on 'missing', which is not in the graph");
}

TEST(FuseLinear, ChainBecomesOneNestedTask) {
  const Graph g = chain(10);
  const Key last("c", {9});
  const Graph f = fuse_linear(g, std::vector<Key>{last});
  EXPECT_EQ(f.size(), 1u);
  EXPECT_TRUE(f.contains(last));
  EXPECT_EQ(f.at(last).args()[0].kind(), Arg::Kind::kTask);
  EXPECT_TRUE(f.at(last).dependencies().empty());
  EXPECT_EQ(run(f, last), 9);
}

TEST(FuseLinear, RespectsKeepMaxChainAndBranches) {
  const Graph g = chain(10);
  const Key last("c", {9});
  const Graph kept = fuse_linear(g, std::vector<Key>{last, Key("c", {4})});
  EXPECT_EQ(kept.size(), 2u);
  EXPECT_TRUE(kept.contains(Key("c", {4})));
  EXPECT_EQ(run(kept, last), 9);

  const Graph short_chains = fuse_linear(g, std::vector<Key>{last}, {.max_chain = 3});
  EXPECT_EQ(short_chains.size(), 4u);  // 10 tasks in chains of at most 3
  EXPECT_EQ(run(short_chains, last), 9);

  Graph diamond;
  diamond.add(Key("a"), lit(1));
  diamond.add(Key("b"), inc(Key("a")));
  diamond.add(Key("c"), inc(Key("a")));
  diamond.add(Key("d"), add(Key("b"), Key("c")));
  diamond.add(Key("e"), inc(Key("d")));
  const Graph fd = fuse_linear(diamond, std::vector<Key>{Key("e")});
  // b and c fuse into nothing (d has two dependencies), d fuses into e; a has two readers.
  EXPECT_EQ(fd.size(), 4u);
  EXPECT_FALSE(fd.contains(Key("d")));
  EXPECT_EQ(run(fd, Key("e")), 5);
}

TEST(InlineCheap, LiteralsAndCheapOpsMoveIntoReaders) {
  Graph g;
  g.add(Key("x"), lit(5));
  g.add(Key("n"), Task::call("coretest::neg", {Arg::ref(Key("x"))}));  // registered as cheap
  g.add(Key("p"), inc(Key("n")));
  g.add(Key("q"), add(Key("n"), Key("x")));
  g.add(Key("r"), add(Key("p"), Key("q")));
  const Graph i = inline_cheap(g, std::vector<Key>{Key("r")});
  EXPECT_EQ(i.size(), 3u);
  EXPECT_FALSE(i.contains(Key("x")));
  EXPECT_FALSE(i.contains(Key("n")));
  EXPECT_EQ(i.at(Key("q")).args()[1].kind(), Arg::Kind::kValue);  // the literal itself
  EXPECT_EQ(i.at(Key("q")).args()[0].kind(), Arg::Kind::kTask);   // neg(5), evaluated in place
  EXPECT_EQ(run(i, Key("r")), run(g, Key("r")));
  EXPECT_EQ(run(i, Key("r")), (-5 + 1) + (-5 + 5));
  const Graph kept = inline_cheap(g, std::vector<Key>{Key("r"), Key("n")});
  EXPECT_TRUE(kept.contains(Key("n")));
  EXPECT_EQ(run(kept, Key("r")), -4);
}

TEST(Optimizations, PreserveRandomDagResults) {
  for (uint64_t seed = 100; seed < 110; ++seed) {
    const auto dag = testing::random_dag(seed, 300, 3, 0.3);
    const auto expected = testing::random_dag_expected(dag);
    const Graph fused = fuse_linear(dag.graph, dag.sinks);
    const Graph inlined = inline_cheap(fused, dag.sinks);
    const auto r = get(inlined, dag.sinks, {.scheduler = "sync"});
    ASSERT_LE(inlined.size(), dag.graph.size());
    for (size_t i = 0; i < dag.sinks.size(); ++i) {
      ASSERT_EQ(r[i].get<int64_t>(), expected[static_cast<size_t>(dag.sinks[i].index()[0])]);
    }
  }
}

}  // namespace
}  // namespace tessera

#include <gtest/gtest.h>

#include "tessera/core.hpp"
#include "test_support.hpp"

namespace tessera {
namespace {

using testing::error_of;

Task lit(int64_t v) {
  return Task::literal(Value::of(v));
}
Task inc(const Key& k) {
  return Task::call("coretest::inc", {Arg::ref(k)});
}

TEST(Graph, AddFindAndDeduplicate) {
  Graph g;
  EXPECT_TRUE(g.add(Key("a"), lit(1)));
  EXPECT_FALSE(g.add(Key("a"), lit(2)));  // same key: the first task stays
  EXPECT_TRUE(g.add(Key("b"), inc(Key("a"))));
  EXPECT_EQ(g.size(), 2u);
  EXPECT_EQ(g.at(Key("a")).args()[0].value().get<int64_t>(), 1);
  EXPECT_EQ(g.index_of(Key("b")), 1);
  EXPECT_EQ(g.index_of(Key("zz")), -1);
  EXPECT_EQ(g.find(Key("zz")), nullptr);
  EXPECT_EQ(error_of<KeyError>([&] { g.at(Key("zz")); }), "key 'zz' is not in the graph (2 tasks)");
  g.set(Key("a"), std::make_shared<const Task>(lit(5)));
  EXPECT_EQ(g.at(Key("a")).args()[0].value().get<int64_t>(), 5);
  EXPECT_EQ(error_of<ValueError>([&] { g.add(Key(), lit(1)); }), "Graph::add: empty key");
}

TEST(Graph, DependenciesAndDependents) {
  Graph g;
  g.add(Key("a"), lit(1));
  g.add(Key("b"), lit(2));
  g.add(Key("c"), Task::call("coretest::add", {Arg::ref(Key("a")), Arg::ref(Key("a"))}));
  g.add(Key("d"),
        Task::call("coretest::sum",
                   {Arg::list({Arg::ref(Key("b")), Arg::ref(Key("c")), Arg::ref(Key("b"))})}));
  EXPECT_EQ(g.dependencies(Key("c")), std::vector<Key>{Key("a")});
  EXPECT_EQ(g.dependencies(Key("d")), (std::vector<Key>{Key("b"), Key("c")}));
  EXPECT_EQ(g.dependents(Key("b")), std::vector<Key>{Key("d")});
  EXPECT_EQ(g.dependents(Key("a")), std::vector<Key>{Key("c")});

  const GraphStructure s = analyze(g);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(std::vector<uint32_t>(s.refs_of(2).begin(), s.refs_of(2).end()),
            (std::vector<uint32_t>{0, 0}));
  EXPECT_EQ(std::vector<uint32_t>(s.deps_of(2).begin(), s.deps_of(2).end()),
            (std::vector<uint32_t>{0}));
  EXPECT_EQ(std::vector<uint32_t>(s.refs_of(3).begin(), s.refs_of(3).end()),
            (std::vector<uint32_t>{1, 2, 1}));
  EXPECT_EQ(std::vector<uint32_t>(s.deps_of(3).begin(), s.deps_of(3).end()),
            (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(std::vector<uint32_t>(s.dependents_of(1).begin(), s.dependents_of(1).end()),
            (std::vector<uint32_t>{3}));
  EXPECT_TRUE(s.dependents_of(3).empty());
}

TEST(Graph, MissingDependencyNamesBothKeys) {
  Graph g;
  g.add(Key("x", {0, 1}), inc(Key("gone")));
  EXPECT_EQ(error_of<GraphError>([&] { analyze(g); }),
            "task '('x', 0, 1)' depends on 'gone', which is not in the graph");
}

TEST(Graph, GrowsAndMerges) {
  Graph g;
  for (int64_t i = 0; i < 100000; ++i) g.add(Key("n", {i}), lit(i));
  EXPECT_EQ(g.size(), 100000u);
  for (int64_t i = 0; i < 100000; i += 997) EXPECT_EQ(g.index_of(Key("n", {i})), i);
  Graph h;
  h.add(Key("n", {5}), lit(-1));
  h.add(Key("extra"), lit(7));
  h.merge(g);
  EXPECT_EQ(h.size(), 100001u);
  EXPECT_EQ(h.at(Key("n", {5})).args()[0].value().get<int64_t>(), -1);
  const Graph m = merge(g, h);
  EXPECT_EQ(m.size(), 100001u);
  EXPECT_EQ(m.at(Key("n", {5})).args()[0].value().get<int64_t>(), 5);  // first graph wins
  EXPECT_EQ(m.at(Key("n", {5})).args().data(),
            g.at(Key("n", {5})).args().data());  // shared, not copied
}

TEST(Task, LabelsAndDependencies) {
  EXPECT_EQ(lit(1).label(), "literal");
  EXPECT_EQ(Task::alias(Key("a")).label(), "alias");
  EXPECT_EQ(Task::of_arg(Arg::list({})).label(), "list");
  EXPECT_EQ(Task().label(), "none");
  EXPECT_EQ(inc(Key("a")).label(), "coretest::inc");
  const Task nested =
      Task::call("coretest::add", {Arg::task(inc(Key("p"))), Arg::list({Arg::ref(Key("q"))})});
  EXPECT_EQ(nested.dependencies(), (std::vector<Key>{Key("p"), Key("q")}));
  EXPECT_NE(error_of<OpError>([] {
              Task::call("coretest::nope", {});
            }).find("unknown op 'coretest::nope'"),
            std::string::npos);
}

TEST(Task, WithArgsKeepsTheOpAndChecksTheArity) {
  const Task t = inc(Key("a")).with_args({Arg::ref(Key("b"))});
  EXPECT_EQ(t.label(), "coretest::inc");
  EXPECT_EQ(t.dependencies(), (std::vector<Key>{Key("b")}));
  const Task alias = Task::alias(Key("a")).with_args({Arg::ref(Key("c"))});
  EXPECT_EQ(alias.dependencies(), (std::vector<Key>{Key("c")}));
  EXPECT_EQ(error_of<ValueError>([] { Task::alias(Key("a")).with_args({}); }),
            "a task without an op evaluates one argument, not 0");
}

}  // namespace
}  // namespace tessera

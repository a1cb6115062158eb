#include <gtest/gtest.h>

#include "tessera/core.hpp"
#include "test_support.hpp"

namespace layertest {
int64_t block_sum(const tessera::Value& nested) {
  int64_t s = 0;
  const tessera::TypeInfo& t = nested.type();
  if (t.kind == tessera::TypeKind::List) {
    for (size_t i = 0; i < t.length(nested); ++i) s += block_sum(t.element(nested, i));
  } else {
    s += nested.as<int64_t>();
  }
  return s;
}
int64_t scaled(int64_t x, int64_t f) {
  return x * f;
}
int64_t dot_k(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  int64_t s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
}  // namespace layertest
TESSERA_REGISTER(layertest::block_sum);
TESSERA_REGISTER(layertest::scaled);
TESSERA_REGISTER(layertest::dot_k);

namespace tessera {
namespace {

using testing::error_of;

// A layer of literal blocks "x" (value = 10*i + j).
std::shared_ptr<MaterializedLayer> grid(const std::string& name, int64_t ni, int64_t nj) {
  Graph g;
  for (int64_t i = 0; i < ni; ++i) {
    for (int64_t j = 0; j < nj; ++j) g.add(Key(name, {i, j}), Task::literal(Value::of(10 * i + j)));
  }
  return std::make_shared<MaterializedLayer>(name, std::move(g));
}

TEST(BlockwiseLayer, ElementwiseMaterializesOnlyWhatIsAsked) {
  HighLevelGraph hlg(grid("x", 3, 4));
  auto y = std::make_shared<BlockwiseLayer>(
      "y", "ij", std::vector<int64_t>{3, 4}, get_op("layertest::scaled"),
      std::vector{BlockwiseArg::blocks("x", "ij", {3, 4}),
                  BlockwiseArg::value(Value::of(int64_t{2}))});
  hlg.add_layer(y);
  EXPECT_EQ(y->size(), 12u);
  EXPECT_EQ(y->keys().size(), 12u);
  EXPECT_TRUE(y->has_key(Key("y", {2, 3})));
  EXPECT_FALSE(y->has_key(Key("y", {3, 0})));
  EXPECT_FALSE(y->has_key(Key("y", {0})));
  EXPECT_EQ(y->dependencies(), std::vector<std::string>{"x"});
  const Key want("y", {1, 2});
  const Graph g = hlg.materialize(std::vector<Key>{want});
  EXPECT_EQ(g.size(), 2u);  // y(1,2) and x(1,2)
  EXPECT_EQ(get(g, std::vector<Key>{want}, {.scheduler = "sync"})[0].get<int64_t>(), 24);
  EXPECT_EQ(hlg.materialize_all().size(), 24u);
}

TEST(BlockwiseLayer, BroadcastsSingleBlockDimensions) {
  HighLevelGraph hlg(grid("row", 1, 4));
  hlg.add_layer(std::make_shared<BlockwiseLayer>(
      "b", "ij", std::vector<int64_t>{3, 4}, get_op("layertest::scaled"),
      std::vector{BlockwiseArg::blocks("row", "ij", {1, 4}),
                  BlockwiseArg::value(Value::of(int64_t{3}))}));
  const Key k("b", {2, 3});
  const Graph g = hlg.materialize(std::vector<Key>{k});
  EXPECT_TRUE(g.contains(Key("row", {0, 3})));
  EXPECT_EQ(get(g, std::vector<Key>{k}, {.scheduler = "sync"})[0].get<int64_t>(), 9);
}

TEST(BlockwiseLayer, ContractedIndexGivesListsOfBlocks) {
  // "ik,kj->ij" with 1x1 blocks: out(i, j) = dot(row i of a, column j of b).
  HighLevelGraph hlg(grid("a", 2, 3));
  hlg.add_layer(grid("bm", 3, 2));
  hlg.add_layer(std::make_shared<BlockwiseLayer>(
      "c", "ij", std::vector<int64_t>{2, 2}, get_op("layertest::dot_k"),
      std::vector{BlockwiseArg::blocks("a", "ik", {2, 3}),
                  BlockwiseArg::blocks("bm", "kj", {3, 2})}));
  const std::vector<Key> keys{Key("c", {0, 0}), Key("c", {1, 1})};
  const auto r = get(hlg.materialize(keys), keys, {.scheduler = "sync"});
  // a = [[0,1,2],[10,11,12]], bm = [[0,1],[10,11],[20,21]]
  EXPECT_EQ(r[0].get<int64_t>(), 0 * 0 + 1 * 10 + 2 * 20);
  EXPECT_EQ(r[1].get<int64_t>(), 10 * 1 + 11 * 11 + 12 * 21);
}

TEST(BlockwiseLayer, RejectsInconsistentShapes) {
  const Op& op = get_op("layertest::scaled");
  auto make = [&](std::string out, std::vector<int64_t> nb, std::vector<BlockwiseArg> args) {
    return [=, &op] { BlockwiseLayer("z", out, nb, op, args); };
  };
  const auto lit = BlockwiseArg::value(Value::of(int64_t{1}));
  EXPECT_EQ(
      error_of<ValueError>(make("ij", {2, 3}, {BlockwiseArg::blocks("x", "ij", {2, 4}), lit})),
      "blockwise layer 'z': input 'x' has 4 blocks along 'j' but the output has 3");
  EXPECT_EQ(error_of<ValueError>(make("ij", {2}, {BlockwiseArg::blocks("x", "ij", {2, 1}), lit})),
            "blockwise layer 'z': output index 'ij' has 2 letters but 1 block counts were given");
  EXPECT_EQ(error_of<ValueError>(make("ii", {2, 2}, {BlockwiseArg::blocks("x", "i", {2}), lit})),
            "blockwise layer 'z': index 'ii' repeats the letter 'i'");
  EXPECT_EQ(error_of<ValueError>(make("i", {2}, {BlockwiseArg::blocks("x", "i", {2})})),
            "blockwise layer 'z': op 'layertest::scaled' takes 2 arguments but 1 were given");
  EXPECT_EQ(error_of<ValueError>(make("i", {2},
                                      {BlockwiseArg::blocks("x", "ik", {2, 3}),
                                       BlockwiseArg::blocks("w", "ik", {2, 4})})),
            "blockwise layer 'z': inputs disagree on the number of blocks along contracted index "
            "'k' (3 and 4)");
}

TEST(BlockwiseLayer, MillionBlocksCostNothingUntilComputed) {
  HighLevelGraph hlg;
  Graph src;
  src.add(Key("src", {123456}), Task::literal(Value::of(int64_t{7})));
  hlg.add_layer(std::make_shared<MaterializedLayer>("src", std::move(src)));
  hlg.add_layer(std::make_shared<BlockwiseLayer>(
      "big", "i", std::vector<int64_t>{1000000}, get_op("layertest::scaled"),
      std::vector{BlockwiseArg::blocks("src", "i", {1000000}),
                  BlockwiseArg::value(Value::of(int64_t{6}))}));
  EXPECT_EQ(hlg.size(), 1000001u);
  const Key k("big", {123456});
  const Graph g = hlg.materialize(std::vector<Key>{k});
  EXPECT_EQ(g.size(), 2u);
  EXPECT_EQ(get(g, std::vector<Key>{k})[0].get<int64_t>(), 42);
}

TEST(TreeReductionLayer, ReducesWithSplitEvery) {
  HighLevelGraph hlg(grid("x", 10, 3));
  TreeReductionLayer::Spec spec;
  spec.input = "x";
  spec.numblocks = {10, 3};
  spec.axes = {0};
  spec.split_every = {4};
  spec.combine =
      std::shared_ptr<const Op>(std::shared_ptr<const Op>(), &get_op("layertest::block_sum"));
  spec.aggregate = spec.combine;
  auto red = std::make_shared<TreeReductionLayer>("s", spec);
  hlg.add_layer(red);
  EXPECT_EQ(red->depth(), 2);  // 10 -> 3 -> 1
  EXPECT_EQ(red->size(), 3u);
  EXPECT_EQ(red->keys(), (std::vector<Key>{Key("s", {0}), Key("s", {1}), Key("s", {2})}));
  EXPECT_TRUE(red->has_key(Key("s-partial-1", {2, 1})));
  EXPECT_FALSE(red->has_key(Key("s-partial-1", {3, 1})));
  const Key k("s", {1});
  const Graph g = hlg.materialize(std::vector<Key>{k});
  EXPECT_EQ(g.size(), 10u + 3u + 1u);  // column 1's inputs, partials, final
  int64_t expect = 0;
  for (int64_t i = 0; i < 10; ++i) expect += 10 * i + 1;
  EXPECT_EQ(get(g, std::vector<Key>{k})[0].get<int64_t>(), expect);
}

TEST(TreeReductionLayer, AllAxesKeepdimsAndValidation) {
  HighLevelGraph hlg(grid("x", 5, 6));
  TreeReductionLayer::Spec spec;
  spec.input = "x";
  spec.numblocks = {5, 6};
  spec.axes = {0, 1};
  spec.split_every = {2, 3};
  spec.keepdims = true;
  spec.combine =
      std::shared_ptr<const Op>(std::shared_ptr<const Op>(), &get_op("layertest::block_sum"));
  spec.aggregate = spec.combine;
  auto red = std::make_shared<TreeReductionLayer>("t", spec);
  hlg.add_layer(red);
  EXPECT_EQ(red->keys(), std::vector<Key>{Key("t", {0, 0})});
  int64_t expect = 0;
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 6; ++j) expect += 10 * i + j;
  }
  EXPECT_EQ(get(hlg.materialize(red->keys()), red->keys())[0].get<int64_t>(), expect);

  auto bad = spec;
  bad.split_every = {1, 3};
  EXPECT_EQ(error_of<ValueError>([&] { TreeReductionLayer("u", bad); }),
            "tree reduction 'u': split_every must be at least 2, got 1 for axis 0");
  bad = spec;
  bad.axes = {0, 2};
  EXPECT_EQ(error_of<ValueError>([&] { TreeReductionLayer("u", bad); }),
            "tree reduction 'u': axis 2 is out of range for 2 dimensions");
}

TEST(HighLevelGraph, UnknownKeysAndLayerDedup) {
  HighLevelGraph hlg(grid("x", 1, 1));
  hlg.add_layer(grid("x", 5, 5));  // same name: kept once
  EXPECT_EQ(hlg.layers().size(), 1u);
  EXPECT_EQ(hlg.size(), 1u);
  EXPECT_EQ(error_of<KeyError>([&] { hlg.materialize(std::vector<Key>{Key("y", {0})}); }),
            "key '('y', 0)' is not produced by any layer of the graph (layers: x)");
}

}  // namespace
}  // namespace tessera

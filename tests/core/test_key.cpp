#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <unordered_set>

#include "tessera/core/key.hpp"

namespace tessera {
namespace {

TEST(Key, NameIndexAndText) {
  Key a("inc-5f1c");
  EXPECT_EQ(a.name(), "inc-5f1c");
  EXPECT_TRUE(a.index().empty());
  EXPECT_EQ(a.str(), "inc-5f1c");
  Key b("ones-77aa", {0, 3});
  EXPECT_EQ(b.name(), "ones-77aa");
  ASSERT_EQ(b.index().size(), 2u);
  EXPECT_EQ(b.index()[1], 3);
  EXPECT_EQ(b.str(), "('ones-77aa', 0, 3)");  // Dask's tuple keys print this way
  std::string s = b;
  EXPECT_EQ(s, b.str());
  std::ostringstream os;
  os << b;
  EXPECT_EQ(os.str(), b.str());
}

TEST(Key, EqualityHashAndOrder) {
  EXPECT_EQ(Key("x", {1, 2}), Key("x", {1, 2}));
  EXPECT_NE(Key("x", {1, 2}), Key("x", {2, 1}));
  EXPECT_NE(Key("x", {1}), Key("x", {1, 0}));
  EXPECT_NE(Key("x"), Key("y"));
  EXPECT_NE(Key("x"), Key("x", {0}));
  EXPECT_EQ(Key("x", {1, 2}).hash(), Key("x", {1, 2}).hash());
  EXPECT_NE(Key("x", {1, 2}).hash(), Key("x", {2, 1}).hash());
  EXPECT_LT(Key("a", {5}), Key("b", {0}));
  EXPECT_LT(Key("a", {1, 9}), Key("a", {2, 0}));
  EXPECT_FALSE(Key("a") < Key("a"));

  std::unordered_set<Key> set;
  for (int64_t i = 0; i < 1000; ++i) set.insert(Key("k", {i % 100}));
  EXPECT_EQ(set.size(), 100u);
}

TEST(Key, CopiesShareAndMovesEmpty) {
  Key a("shared-name", {7});
  Key b = a;
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.name().data(), b.name().data());  // one block, not a copy of the characters
  Key c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): moved-from keys are empty
  EXPECT_EQ(c, a);
  c = a;
  a = Key("other");
  EXPECT_EQ(c.name(), "shared-name");
  Key e;
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.str(), "<empty key>");
  EXPECT_EQ(e, Key());
}

TEST(Key, EmptyNameAndNegativeIndex) {
  Key k("", {-1});
  EXPECT_EQ(k.name(), "");
  EXPECT_EQ(k.index()[0], -1);
  EXPECT_EQ(k.str(), "('', -1)");
}

}  // namespace
}  // namespace tessera

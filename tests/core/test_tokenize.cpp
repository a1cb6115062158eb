#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "tessera/core/op.hpp"
#include "tessera/core/tokenize.hpp"
#include "test_support.hpp"

namespace probe {
int64_t inc(int64_t x) {
  return x + 1;
}
}  // namespace probe
TESSERA_REGISTER(probe::inc);

namespace {
struct NoCodec {
  int x = 0;
};
}  // namespace

namespace tessera {
namespace {

std::string run_probe() {
  std::string out;
  FILE* p = popen(TESSERA_TOKENIZE_PROBE, "r");
  if (!p) return out;
  char buf[256];
  while (fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  return out;
}

std::string in_process() {
  return tokenize(Value::of(int64_t{1})) + "\n" +
         tokenize(Value::of(std::vector<double>{1, 2, 3})) + "\n" + tokenize(Value::of("hello")) +
         "\n" + key_for(get_op("probe::inc"), std::vector<Arg>{Arg(Value::of(int64_t{1}))}) + "\n" +
         tokenize(Task::call("probe::inc", {Arg::ref(Key("x", {0, 1}))})) + "\n";
}

TEST(Tokenize, SameInTwoProcessesAndThisOne) {
  const std::string a = run_probe(), b = run_probe();
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, in_process());
}

TEST(Tokenize, StableAcrossVersions) {
  // Golden tokens: a change here changes every key users have persisted or logged.
  EXPECT_EQ(tokenize(Value::of(int64_t{1})), "2c46d748b292939888c9763943668039");
  EXPECT_EQ(key_for(get_op("probe::inc"), std::vector<Arg>{Arg(Value::of(int64_t{1}))}),
            "inc-8e10b2b51dc5884cdd84087b66d562b4");
}

TEST(Tokenize, DistinguishesValuesTypesAndStructure) {
  std::set<std::string> tokens = {
      tokenize(Value::of(int64_t{1})),
      tokenize(Value::of(int32_t{1})),
      tokenize(Value::of(1.0)),
      tokenize(Value::of(int64_t{2})),
      tokenize(Value::of("1")),
      tokenize(Value::of(std::vector<int64_t>{1})),
      tokenize(Value::list({Value::of(int64_t{1})})),
      tokenize(Value()),
  };
  EXPECT_EQ(tokens.size(), 8u);
  const Op& op = get_op("probe::inc");
  const std::string by_value = key_for(op, std::vector<Arg>{Arg(Value::of(int64_t{1}))});
  const std::string by_ref = key_for(op, std::vector<Arg>{Arg::ref(Key("1"))});
  const std::string by_list =
      key_for(op, std::vector<Arg>{Arg::list({Arg(Value::of(int64_t{1}))})});
  EXPECT_NE(by_value, by_ref);
  EXPECT_NE(by_value, by_list);
  EXPECT_EQ(by_value.size(), 4 + 32u);
  EXPECT_EQ(by_value.substr(0, 4), "inc-");
  // Equal work, equal token; the same string twice in a vector differs from it once.
  EXPECT_EQ(tokenize(Value::of(std::vector<std::string>{"a", "b"})),
            tokenize(Value::of(std::vector<std::string>{"a", "b"})));
  EXPECT_NE(tokenize(Value::of(std::vector<std::string>{"ab"})),
            tokenize(Value::of(std::vector<std::string>{"a", "b"})));
}

TEST(Tokenize, ClosuresAndUncomparableValuesNeverCollide) {
  auto f = make_closure_op("f", [](int64_t x) { return x; });
  auto g = make_closure_op("f", [](int64_t x) { return x; });
  const std::vector<Arg> args{Arg(Value::of(int64_t{1}))};
  EXPECT_EQ(key_for(*f, args), key_for(*f, args));  // same closure object: same work
  EXPECT_NE(key_for(*f, args), key_for(*g, args));  // a different closure may capture anything
  EXPECT_NE(tokenize(Value::of(NoCodec{1})), tokenize(Value::of(NoCodec{1})));
  EXPECT_NE(random_token(), random_token());
  EXPECT_EQ(random_token().size(), 32u);
}

}  // namespace
}  // namespace tessera

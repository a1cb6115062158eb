#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <numeric>

#include "tessera/tessera.hpp"
#include "test_support.hpp"

namespace dtest {
std::atomic<int> inc_calls{0};
int64_t inc(int64_t x) {
  ++inc_calls;
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
double total(const std::vector<double>& xs) {
  return std::accumulate(xs.begin(), xs.end(), 0.0);
}
int64_t sum_all(const std::vector<int64_t>& xs) {
  return std::accumulate(xs.begin(), xs.end(), int64_t{0});
}
std::string describe(const std::string& name, int64_t n) {
  return name + "=" + std::to_string(n);
}
std::atomic<int> side_effects{0};
void record(int64_t) {
  ++side_effects;
}
int64_t explode(int64_t x) {
  if (x > 0) throw std::invalid_argument("cannot take " + std::to_string(x));
  return x;
}
tessera::Value first_of(std::span<const tessera::Value> args) {
  return args.empty() ? tessera::Value() : args[0];
}
int64_t not_registered(int64_t x) {
  return 3 * x;
}
}  // namespace dtest

TESSERA_REGISTER(dtest::inc);
TESSERA_REGISTER(dtest::add);
TESSERA_REGISTER(dtest::total);
TESSERA_REGISTER(dtest::sum_all);
TESSERA_REGISTER(dtest::describe);
TESSERA_REGISTER(dtest::record);
TESSERA_REGISTER(dtest::explode);
TESSERA_REGISTER(dtest::first_of);

namespace tessera {
namespace {

using testing::error_of;

TEST(Delayed, BuildsLazilyAndComputesOnEveryScheduler) {
  dtest::inc_calls = 0;
  auto a = delayed(dtest::inc)(1);
  auto b = delayed(dtest::add)(a, 10);
  EXPECT_EQ(dtest::inc_calls.load(), 0);  // nothing runs until compute
  EXPECT_EQ(b.compute(), 12);
  EXPECT_EQ(b.compute({.scheduler = "sync"}), 12);
  EXPECT_EQ(b.compute({.scheduler = "threads", .num_workers = 3}), 12);
  static_assert(std::is_same_v<decltype(b), Delayed<int64_t>>);
}

TEST(Delayed, KeysAreDeterministicAndNamedAfterTheFunction) {
  auto a1 = delayed(dtest::inc)(1);
  auto a2 = delayed(dtest::inc)(1);
  auto a3 = delayed(dtest::inc)(2);
  EXPECT_EQ(a1.key(), a2.key());
  EXPECT_NE(a1.key(), a3.key());
  const std::string k = a1.key();
  // "inc-" and 32 lowercase hex digits.
  EXPECT_TRUE(k.size() == 36 && k.starts_with("inc-") &&
              std::all_of(k.begin() + 4, k.end(),
                          [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
      << k;
  // The literal 1 converts to the int64 parameter, so these are the same work.
  EXPECT_EQ(delayed(dtest::inc)(int64_t{1}).key(), a1.key());
  EXPECT_EQ(delayed(dtest::inc)(static_cast<short>(1)).key(), a1.key());
  EXPECT_NE(delayed(dtest::add)(a1, 1).key(), delayed(dtest::add)(1, a1).key());
}

TEST(Delayed, SharedWorkRunsOnceInOneCompute) {
  dtest::inc_calls = 0;
  auto a = delayed(dtest::inc)(1);
  auto b = delayed(dtest::add)(a, 10);
  auto c = delayed(dtest::add)(a, delayed(dtest::inc)(1));  // an equal call merges with `a`
  auto [x, y, z] = compute(a, b, c);
  EXPECT_EQ(x, 2);
  EXPECT_EQ(y, 12);
  EXPECT_EQ(z, 4);
  EXPECT_EQ(dtest::inc_calls.load(), 1);
  auto [s] = compute(b, ComputeOptions{.scheduler = "sync"});
  EXPECT_EQ(s, 12);
}

TEST(Delayed, ComputeAVectorOfDelayed) {
  std::vector<Delayed<int64_t>> parts;
  for (int64_t i = 0; i < 100; ++i) parts.push_back(delayed(dtest::inc)(i));
  const std::vector<int64_t> r = compute(parts);
  ASSERT_EQ(r.size(), 100u);
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(r[static_cast<size_t>(i)], i + 1);
  EXPECT_EQ(delayed(dtest::sum_all)(parts).compute(), 5050);  // a list of dependencies
  EXPECT_TRUE(compute(std::vector<Delayed<int64_t>>{}).empty());
}

TEST(Delayed, ValuesAsLeaves) {
  auto v = delayed(std::vector<double>{1, 2, 3});
  static_assert(std::is_same_v<decltype(v), Delayed<std::vector<double>>>);
  EXPECT_EQ(v.compute(), (std::vector<double>{1, 2, 3}));
  EXPECT_DOUBLE_EQ(delayed(dtest::total)(v).compute(), 6.0);
  EXPECT_EQ(v.key().name().substr(0, 5), "list-");
  EXPECT_EQ(delayed(std::vector<double>{1, 2, 3}).key(), v.key());
  auto s = delayed(std::string("abc"), {.name = "my-string"});
  EXPECT_EQ(s.key(), Key("my-string"));
  EXPECT_EQ(delayed(dtest::describe)(s, 3).compute(), "abc=3");
  EXPECT_EQ(delayed(dtest::describe)("lit", 4).compute(), "lit=4");
  auto same = delayed(v);
  EXPECT_EQ(same.key(), v.key());
}

TEST(Delayed, PersistKeepsTheResultUnderTheSameKey) {
  dtest::inc_calls = 0;
  auto a = delayed(dtest::inc)(41);
  auto p = a.persist();
  EXPECT_EQ(dtest::inc_calls.load(), 1);
  EXPECT_EQ(p.key(), a.key());
  EXPECT_EQ(p.graph().size(), 1u);
  EXPECT_FALSE(p.graph()[0].task->is_call());
  EXPECT_EQ(delayed(dtest::add)(p, 1).compute(), 43);
  EXPECT_EQ(dtest::inc_calls.load(), 1);  // not recomputed
  auto [pa, pb] = persist(a, delayed(dtest::add)(a, 1), ComputeOptions{.scheduler = "sync"});
  EXPECT_EQ(pb.compute(), 43);
}

TEST(Delayed, LambdasAndUnregisteredFunctionsRunLocally) {
  int64_t offset = 5;
  auto f = delayed([offset](int64_t x) { return x + offset; });
  auto r = f(delayed(dtest::inc)(1));
  EXPECT_EQ(r.compute(), 7);
  EXPECT_EQ(r.key().name().substr(0, 7), "lambda-");
  EXPECT_EQ(f(1).key(), f(1).key());  // same closure object: deterministic
  auto named = delayed([](int64_t x) { return x * 2; }, {.name = "double_it"});
  EXPECT_EQ(named(4).key().name().substr(0, 10), "double_it-");
  EXPECT_EQ(named(4).compute(), 8);
  auto plain = delayed(dtest::not_registered);
  EXPECT_EQ(plain(2).compute(), 6);
  EXPECT_FALSE(plain.op().registered);
  // A graph with closures can run here but cannot be shipped.
  const std::string msg = error_of<SerializationError>([&] { encode_graph(r.graph()); });
  EXPECT_NE(msg.find("a closure that cannot be sent to another process"), std::string::npos) << msg;
}

TEST(Delayed, ImpureCallsGetFreshKeys) {
  dtest::side_effects = 0;
  auto r1 = delayed(dtest::record, {.pure = false})(1);
  auto r2 = delayed(dtest::record, {.pure = false})(1);
  EXPECT_NE(r1.key(), r2.key());
  static_assert(std::is_same_v<decltype(r1), Delayed<void>>);
  r1.compute();
  compute(r1, r2);
  EXPECT_EQ(dtest::side_effects.load(), 3);
}

TEST(Delayed, VariadicOpsTakeAnything) {
  auto v = delayed(dtest::first_of)(std::string("x"), 2, delayed(dtest::inc)(1));
  static_assert(std::is_same_v<decltype(v), Delayed<Value>>);
  EXPECT_EQ(v.compute().get<std::string>(), "x");
}

TEST(Delayed, ErrorsNameTheKey) {
  auto bad = delayed(dtest::explode)(delayed(dtest::inc)(1));
  try {
    bad.compute();
    FAIL();
  } catch (const TaskError& e) {
    EXPECT_EQ(e.key(), bad.key().str());
    EXPECT_EQ(std::string(e.what()),
              "task '" + bad.key().str() +
                  "' (op 'dtest::explode') raised std::invalid_argument: cannot take 2");
    EXPECT_THROW(e.rethrow_original(), std::invalid_argument);
  }
  auto as_value = delayed(dtest::first_of)(std::string("text"));
  EXPECT_EQ(as_value.compute().get<std::string>(), "text");
  EXPECT_EQ(
      error_of<TypeError>([&] { Delayed<int64_t>(as_value.node()).compute(); }),
      "result of '" + as_value.key().str() + "': cannot read a value of type 'string' as 'int64'");
}

TEST(Delayed, LongChainsAndWideGraphs) {
  auto x = delayed(int64_t{0});
  for (int i = 0; i < 100000; ++i) x = delayed(dtest::add)(x, 1);
  EXPECT_EQ(x.compute(), 100000);
  EXPECT_EQ(x.compute({.scheduler = "sync"}), 100000);
  EXPECT_EQ(x.graph().size(), 100001u);

  std::vector<Delayed<int64_t>> level;
  for (int64_t i = 0; i < 20000; ++i) level.push_back(delayed(dtest::inc)(i));
  while (level.size() > 1) {
    std::vector<Delayed<int64_t>> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(delayed(dtest::add)(level[i], level[i + 1]));
    if (level.size() % 2) next.push_back(level.back());
    level = next;
  }
  EXPECT_EQ(level[0].compute(), int64_t{20000} * 20001 / 2);
}

TEST(Delayed, VisualizeAndGraph) {
  auto b = delayed(dtest::add)(delayed(dtest::inc)(1), 10);
  const Graph g = b.graph();
  EXPECT_EQ(g.size(), 2u);
  testing::TempDir dir;
  b.visualize(dir.file("b.svg"));
  b.visualize(dir.file("b.dot"), {.rankdir = "LR", .color = "order"});
  std::ifstream svg(dir.file("b.svg"));
  std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("dtest::add"), std::string::npos);
}

TEST(Delayed, ProgressBarAndProfilerWatchDelayed) {
  auto b = delayed(dtest::add)(delayed(dtest::inc)(1), 10);
  testing::TempDir dir;
  FILE* out = std::fopen(dir.file("p.txt").c_str(), "w");
  Profiler prof;
  {
    ProgressBar progress({.force = true, .out = out});
    EXPECT_EQ(b.compute(), 12);
    EXPECT_NE(progress.last_line().find("100% Completed"), std::string::npos);
  }
  std::fclose(out);
  EXPECT_EQ(prof.results().size(), 2u);
}

TEST(Init, ReadsAndRemovesTesseraFlags) {
  const std::string before = default_scheduler();
  const int workers_before = default_num_workers();
  std::vector<std::string> args = {"prog", "--tessera-scheduler=sync", "keep",
                                   "--tessera-num-workers=3", "--other"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(args.size());
  init(argc, argv.data());
  EXPECT_EQ(argc, 3);
  EXPECT_STREQ(argv[1], "keep");
  EXPECT_STREQ(argv[2], "--other");
  EXPECT_EQ(default_scheduler(), "sync");
  EXPECT_EQ(default_num_workers(), 3);
  set_default_scheduler(before);
  std::string restore = "--tessera-num-workers=" + std::to_string(workers_before);
  std::vector<char*> rargv{args[0].data(), restore.data(), nullptr};
  int rargc = 2;
  init(rargc, rargv.data());
  EXPECT_EQ(default_num_workers(), workers_before);

  std::vector<std::string> bad = {"prog", "--tessera-colour=red"};
  std::vector<char*> bargv{bad[0].data(), bad[1].data(), nullptr};
  int bargc = 2;
  EXPECT_EQ(
      error_of<ValueError>([&] { init(bargc, bargv.data()); }),
      "unknown or incomplete tessera flag '--tessera-colour=red' (known: --tessera-scheduler=NAME, "
      "--tessera-num-workers=N, --tessera-worker=ADDRESS)");
  std::vector<std::string> bad2 = {"prog", "--tessera-num-workers=zero"};
  std::vector<char*> b2{bad2[0].data(), bad2[1].data(), nullptr};
  EXPECT_EQ(error_of<ValueError>([&] { init(bargc, b2.data()); }),
            "--tessera-num-workers must be a positive integer, got 'zero'");
}

}  // namespace
}  // namespace tessera

namespace readme {
int64_t inc(int64_t x) {
  return x + 1;
}
}  // namespace readme
TESSERA_REGISTER_AS("inc", readme::inc);

namespace tessera {
namespace {

// The graph example of README.md, as written there.
TEST(Readme, GraphExampleCompilesAndRuns) {
  using namespace tessera;
  Graph g;
  g.add(Key("x"), Task::literal(Value::of(int64_t{41})));
  g.add(Key("y"), Task::call("inc", {Arg::ref(Key("x"))}));
  std::vector<Value> r = get(g, {Key("y")}, {.scheduler = "threads"});  // r[0].get<int64_t>() == 42
  Graph shipped = decode_graph(from_bytes(to_bytes(encode_graph(g))));  // msgpack + raw frames
  EXPECT_EQ(r[0].get<int64_t>(), 42);
  EXPECT_EQ(get(shipped, {Key("y")})[0].get<int64_t>(), 42);
  EXPECT_EQ(cull(g, {Key("x")}).size(), 1u);
  EXPECT_EQ(order(g, {Key("y")}), (std::vector<uint32_t>{0, 1}));
}

}  // namespace
}  // namespace tessera

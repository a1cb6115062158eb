// The examples of docs/guide.md, as written there (keep the two in step).
#include <gtest/gtest.h>

#include <numeric>

#include "tessera/tessera.hpp"
#include "test_support.hpp"

namespace guide {
int64_t inc(int64_t x) {
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
int64_t sum(const std::vector<int64_t>& xs) {
  return std::accumulate(xs.begin(), xs.end(), int64_t{0});
}
int recorded = 0;
void record(int64_t) {
  ++recorded;
}
double getitem(const std::vector<double>& v, int64_t i) {
  return v.at(static_cast<size_t>(i));
}
namespace mylib {
double normalize(double x) {
  return x / 10;
}
}  // namespace mylib
struct Point {
  double x, y;
};
}  // namespace guide

TESSERA_REGISTER_AS("guide::inc", guide::inc);
TESSERA_REGISTER_AS("guide::add", guide::add);
TESSERA_REGISTER(guide::sum);
TESSERA_REGISTER(guide::record);
TESSERA_REGISTER(guide::mylib::normalize);
TESSERA_REGISTER_AS("getitem", guide::getitem, {.cheap = true});

template <>
struct tessera::Codec<guide::Point> {
  static constexpr std::string_view name() { return "geo.Point"; }
  static void encode(const guide::Point& p, tessera::Encoder& e) {
    e.write_double(p.x);
    e.write_double(p.y);
  }
  static guide::Point decode(tessera::Decoder& d) {
    guide::Point p;
    p.x = d.read_double();
    p.y = d.read_double();
    return p;
  }
  static size_t nbytes(const guide::Point&) { return sizeof(guide::Point); }
};
TESSERA_REGISTER_TYPE(guide::Point);

namespace tessera {
namespace {

using guide::add;
using guide::inc;
using guide::record;
using guide::sum;

TEST(Guide, RegisteringFunctionsAndTypes) {
  EXPECT_EQ(get_op("guide::mylib::normalize").key_prefix, "normalize");
  EXPECT_TRUE(get_op("getitem").cheap);
  const Value p = decode_value(encode_value(Value::of(guide::Point{1, 2})));
  EXPECT_EQ(p.type().name, "geo.Point");
  EXPECT_EQ(p.get<guide::Point>().y, 2);
  EXPECT_EQ(p.nbytes(), sizeof(guide::Point));
}

TEST(Guide, Delayed) {
  auto a = delayed(inc)(1);                        // Delayed<int64_t>
  auto b = delayed(add)(a, 10);                    // `a` is a dependency
  auto v = delayed(std::vector<double>{1, 2, 3});  // a value as a graph leaf, key "list-…"
  auto s = delayed(sum)(std::vector{a, b});        // a vector of Delayed is a list argument
  auto f = delayed([k = 2](int64_t x) { return k * x; }, {.name = "scale"});  // a local closure
  auto r = delayed(record, {.pure = false})(1);  // side effects: a fresh key per call

  EXPECT_EQ(s.compute(), 14);
  EXPECT_EQ(v.compute().size(), 3u);
  EXPECT_EQ(f(a).compute(), 4);
  guide::recorded = 0;
  r.compute();
  EXPECT_EQ(guide::recorded, 1);
  auto [x, y] = compute(a, b, ComputeOptions{.scheduler = "sync"});
  EXPECT_EQ(x + y, 14);
}

TEST(Guide, GraphsByHand) {
  Graph g;
  g.add(Key("x"), Task::literal(Value::of(int64_t{41})));
  g.add(Key("y"), Task::call("guide::inc", {Arg::ref(Key("x"))}));
  g.add(Key("z", {0, 1}),
        Task::call("guide::add", {Arg::ref(Key("y")),
                                  Arg::task(Task::call("guide::inc", {Arg::ref(Key("x"))}))}));
  std::vector<Value> r = get(g, {Key("z", {0, 1})});
  EXPECT_EQ(r[0].get<int64_t>(), 84);
}

TEST(Guide, Diagnostics) {
  auto x = delayed(add)(delayed(inc)(1), 1);
  testing::TempDir dir;
  {
    ProgressBar bar;
    x.compute();
  }  // stderr, when it is a terminal
  FILE* out = std::fopen(dir.file("bar.txt").c_str(), "w");
  {
    ProgressBar bar({.minimum = 1.0, .force = true, .out = out});
    x.compute();
  }
  std::fclose(out);
  Profiler prof;  // records while it exists
  x.compute();
  EXPECT_EQ(prof.results().size(), 2u);  // key, op, start, end, worker per task
  prof.write_chrome_trace(dir.file("trace.json"));
  prof.write_html(dir.file("stream.html"));
}

}  // namespace
}  // namespace tessera

#include <gtest/gtest.h>

#include <random>

#include "tessera/core.hpp"
#include "test_support.hpp"

namespace tessera {
namespace {

using testing::error_of;

Value round_trip(const Value& v) {
  return decode_value(from_bytes(to_bytes(encode_value(v))));
}

TEST(Serialize, BuiltinValuesRoundTrip) {
  EXPECT_TRUE(round_trip(Value()).is_none());
  EXPECT_EQ(round_trip(Value::of(int64_t{-5})).get<int64_t>(), -5);
  EXPECT_EQ(round_trip(Value::of(uint64_t{1} << 63)).get<uint64_t>(), uint64_t{1} << 63);
  EXPECT_EQ(round_trip(Value::of(int8_t{-128})).get<int8_t>(), -128);
  EXPECT_EQ(round_trip(Value::of(true)).get<bool>(), true);
  EXPECT_FLOAT_EQ(round_trip(Value::of(1.25f)).get<float>(), 1.25f);
  EXPECT_DOUBLE_EQ(round_trip(Value::of(-0.1)).get<double>(), -0.1);
  EXPECT_EQ(round_trip(Value::of("héllo")).get<std::string>(), "héllo");
  EXPECT_EQ(
      round_trip(Value::of(std::vector<std::string>{"a", "", "c"})).get<std::vector<std::string>>(),
      (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(round_trip(Value::of(std::vector<bool>{true, false})).get<std::vector<bool>>(),
            (std::vector<bool>{true, false}));
  const Value list = Value::list({Value::of(int64_t{1}), Value::list({Value::of("x"), Value()}),
                                  Value::of(std::vector<double>{1.5})});
  const Value back = round_trip(list);
  EXPECT_EQ(back.repr(), list.repr());
  EXPECT_EQ(back.get<std::vector<Value>>()[2].get<std::vector<double>>(), std::vector<double>{1.5});
}

TEST(Serialize, LargeVectorsTravelAsFramesWithoutCopies) {
  std::vector<double> big(1 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  const Value v = Value::of(std::move(big));
  const Message m = encode_value(v);
  ASSERT_EQ(m.frames.size(), 1u);
  EXPECT_LT(m.header.size(), 64u);  // the data is not in the header
  EXPECT_EQ(m.frames[0].bytes.data(),
            reinterpret_cast<const std::byte*>(v.get<std::vector<double>>().data()));
  const std::vector<std::byte> bytes = to_bytes(m);
  const Message parsed = from_bytes(bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(parsed.frames[0].bytes.data()) % 8,
            0u);  // aligned for zero-copy views
  EXPECT_EQ(decode_value(parsed).get<std::vector<double>>(), v.get<std::vector<double>>());
}

TEST(Serialize, GraphsRoundTripAndCompute) {
  Graph g;
  g.add(Key("a"), Task::literal(Value::of(int64_t{1})));
  g.add(Key("v", {0, 1}), Task::literal(Value::of(std::vector<int64_t>{4, 5})));
  g.add(Key("b"), Task::call("coretest::add",
                             {Arg::ref(Key("a")),
                              Arg::task(Task::call("coretest::inc", {Arg::ref(Key("a"))}))}));
  g.add(Key("c"),
        Task::call("coretest::sum", {Arg::list({Arg::ref(Key("b")), Arg(Value::of(int64_t{10})),
                                                Arg::ref(Key("a"))})}));
  g.add(Key("d"), Task::call("coretest::sum", {Arg::ref(Key("v", {0, 1}))}));
  g.add(Key("e"), Task::alias(Key("c")));
  const Graph h = decode_graph(from_bytes(to_bytes(encode_graph(g))));
  ASSERT_EQ(h.size(), g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_EQ(h[i].key, g[i].key);
    EXPECT_EQ(tokenize(*h[i].task), tokenize(*g[i].task));  // same op, same arguments
  }
  const std::vector<Key> outs{Key("e"), Key("d")};
  const auto r = get(h, outs, {.scheduler = "sync"});
  EXPECT_EQ(r[0].get<int64_t>(), (1 + 2) + 10 + 1);
  EXPECT_EQ(r[1].get<int64_t>(), 9);
}

TEST(Serialize, ClosuresAndCodeclessValuesAreRefusedByName) {
  Graph g;
  g.add(Key("f-1"), Task::call(make_closure_op("my_lambda", [](int64_t x) { return x; }),
                               {Arg(Value::of(int64_t{1}))}));
  EXPECT_EQ(error_of<SerializationError>([&] { encode_graph(g); }),
            "task 'f-1' calls 'my_lambda', a closure that cannot be sent to another process: "
            "register the function "
            "with TESSERA_REGISTER and call it by name");
  struct Local {
    int x;
  };
  Graph h;
  h.add(Key("h"), Task::literal(Value::of(Local{1})));
  const std::string msg = error_of<SerializationError>([&] { encode_graph(h); });
  EXPECT_NE(msg.find("task 'h': values of type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("have no codec"), std::string::npos) << msg;
}

TEST(Serialize, UnknownOpsAndTypesAreNamed) {
  Encoder e;  // a graph message naming an op nobody registered
  e.write_string("tessera-graph");
  e.write_uint(1);
  e.write_uint(1);
  e.begin_array(2);
  e.write_string("k");
  e.begin_array(0);
  e.begin_array(2);
  e.write_string("not_registered_anywhere");
  e.begin_array(0);
  Message m{e.finish_header(), {}};
  const std::string msg = error_of<OpError>([&] { decode_graph(m); });
  EXPECT_NE(msg.find("task 'k': unknown op 'not_registered_anywhere'"), std::string::npos) << msg;

  Encoder v;
  v.begin_array(2);
  v.write_string("mystery.Type");
  v.write_bytes({});
  EXPECT_EQ(
      error_of<SerializationError>([&] {
        decode_value(Message{v.finish_header(), {}});
      }),
      "unknown value type 'mystery.Type': register it in this process with TESSERA_REGISTER_TYPE");
}

TEST(Serialize, MalformedBytesNeverCrash) {
  Graph g;
  for (int64_t i = 0; i < 20; ++i) {
    g.add(
        Key("x", {i}),
        Task::call("coretest::sum",
                   {Arg::list({Arg(Value::of(std::vector<int64_t>{i, i})), Arg(Value::of("s"))})}));
  }
  const std::vector<std::byte> good = to_bytes(encode_graph(g));
  std::mt19937_64 rng(7);
  size_t must_reject = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::byte> bad = good;
    switch (trial % 3) {
      case 0:  // flip bytes: may still decode (a changed character), must never crash
        for (int k = 0; k < 1 + trial % 5; ++k)
          bad[rng() % bad.size()] = static_cast<std::byte>(rng());
        break;
      case 1:  // truncate: the sizes no longer add up
        bad.resize(rng() % bad.size());
        ++must_reject;
        break;
      case 2:  // garbage: no magic
        for (auto& b : bad) b = static_cast<std::byte>(rng());
        ++must_reject;
        break;
    }
    try {
      decode_graph(from_bytes(bad));
    } catch (const Error&) {
      if (trial % 3 != 0) ++rejected;  // SerializationError, or OpError/TypeError for nonsense
    }
  }
  EXPECT_EQ(rejected, must_reject);
  EXPECT_EQ(error_of<SerializationError>([] { from_bytes(std::vector<std::byte>(3)); }),
            "malformed message (3 bytes): bad magic");
}

TEST(Serialize, HostileLengthsAreBounded) {
  // A header announcing a 4-billion-element array in a few bytes must not allocate it.
  const std::vector<std::byte> header = {std::byte{0x91}, std::byte{0xdd}, std::byte{0xff},
                                         std::byte{0xff}, std::byte{0xff}, std::byte{0xff}};
  EXPECT_NE(
      error_of<SerializationError>([&] { Decoder d(header, {}); }).find("malformed message header"),
      std::string::npos);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

TEST(Serialize, ElementCountsThatOverflowAreRejected) {
  // A vector<float64> header claiming 2^61 + 1 elements: times 8 bytes that wraps to 8, the
  // size of the frame actually sent. It must be refused, not allocated.
  Encoder payload;
  payload.write_uint((uint64_t{1} << 61) + 1);
  const double one = 1.0;
  payload.write_frame(std::as_bytes(std::span<const double>(&one, 1)));
  std::vector<std::byte> inner = payload.finish_header();
  std::vector<Frame> frames = payload.frames();
  Encoder outer;
  outer.begin_array(2);
  outer.write_string("vector<float64>");
  outer.write_bytes(inner);
  Message m{outer.finish_header(), frames};
  EXPECT_EQ(testing::error_of<SerializationError>([&] { decode_value(m); }),
            "frame holds 8 bytes, but 2305843009213693953 elements of 8 bytes were announced");
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

TEST(Serialize, FusedChainsRoundTripAndDepthIsBounded) {
  Graph g;
  g.add(Key("c", {0}), Task::literal(Value::of(int64_t{0})));
  for (int64_t i = 1; i < 40; ++i)
    g.add(Key("c", {i}), Task::call("coretest::inc", {Arg::ref(Key("c", {i - 1}))}));
  const Graph fused =
      fuse_linear(g, {Key("c", {39})}, {.max_chain = 32});  // 32 tasks nested in one
  const Graph back = decode_graph(from_bytes(to_bytes(encode_graph(fused))));
  EXPECT_EQ(get(back, {Key("c", {39})})[0].get<int64_t>(), 39);
  // Nesting beyond the limit is refused with a message, not a stack overflow.
  const std::string msg = testing::error_of<SerializationError>(
      [&] { decode_graph(encode_graph(fused), {.max_depth = 8}); });
  EXPECT_NE(msg.find("malformed message header"), std::string::npos) << msg;
}

}  // namespace
}  // namespace tessera

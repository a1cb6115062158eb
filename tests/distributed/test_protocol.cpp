// The distributed runtime's messages: every type round-trips (payloads as frames, values
// through their codecs), refuses malformed fields with a ProtocolError, and survives random
// mutations of its bytes without escaping as anything else.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "comm/message.hpp"
#include "distributed/protocol.hpp"
#include "tessera/core/graph.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/order.hpp"
#include "tessera/core/value.hpp"
#include "test_support.hpp"

namespace comm = tessera::comm;
namespace pr = tessera::distributed::protocol;
using tessera::Key;
using tessera::testing::error_of;

namespace {

std::vector<std::vector<std::byte>> wire(const comm::Envelope& env) {
  std::vector<std::vector<std::byte>> parts{comm::encode_head(env)};
  for (const auto& f : env.body.frames) parts.emplace_back(f.bytes.begin(), f.bytes.end());
  return parts;
}

// The frames of the result point into the parts, which it keeps alive (as the transport's
// received buffers are).
comm::Envelope reread(std::vector<std::vector<std::byte>> parts) {
  auto owner = std::make_shared<std::vector<std::vector<std::byte>>>(std::move(parts));
  std::vector<std::span<const std::byte>> spans(owner->begin(), owner->end());
  return comm::decode_parts(spans, owner,
                            {.max_header_bytes = 1 << 20, .max_frame_bytes = 1 << 20});
}

template <class M>
M through_wire(const M& m) {
  return comm::unpack<M>(reread(wire(comm::pack(m))));
}

pr::Payload payload_of(std::string s) {
  auto owner = std::make_shared<std::string>(std::move(s));
  return {owner, std::as_bytes(std::span(owner->data(), owner->size()))};
}

std::string text(const pr::Payload& p) {
  return std::string(reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size());
}

// Decodes an envelope as the type its op names (what a server's dispatch does).
void unpack_any(const comm::Envelope& env) {
  const std::string& op = env.op;
  if (op == pr::UpdateGraph::kOp)
    (void)comm::unpack<pr::UpdateGraph>(env);
  else if (op == pr::ComputeTask::kOp)
    (void)comm::unpack<pr::ComputeTask>(env);
  else if (op == pr::KeyInMemory::kOp)
    (void)comm::unpack<pr::KeyInMemory>(env);
  else if (op == pr::KeyErred::kOp)
    (void)comm::unpack<pr::KeyErred>(env);
  else if (op == pr::Data::kOp)
    (void)comm::unpack<pr::Data>(env);
  else if (op == pr::MissingData::kOp)
    (void)comm::unpack<pr::MissingData>(env);
  else if (op == pr::TaskFinished::kOp)
    (void)comm::unpack<pr::TaskFinished>(env);
  else if (op == pr::SchedulerInfo::kOp)
    (void)comm::unpack<pr::SchedulerInfo>(env);
  else if (op == pr::Identity::kOp)
    (void)comm::unpack<pr::Identity>(env);
  else if (op == pr::Unregister::kOp)
    (void)comm::unpack<pr::Unregister>(env);
  else
    throw comm::ProtocolError("unknown op '" + op + "'");
}

}  // namespace

TEST(Protocol, EveryMessageRoundTrips) {
  const pr::UpdateGraph g{{{Key("a"), {}, 3, payload_of("task a")},
                           {Key("b", {1, 2}), {Key("a")}, 4, payload_of("task b")}},
                          {Key("b", {1, 2})}};
  const auto g2 = through_wire(g);
  ASSERT_EQ(g2.tasks.size(), 2U);
  EXPECT_EQ(g2.tasks[1].key, Key("b", {1, 2}));
  EXPECT_EQ(g2.tasks[1].dependencies, std::vector<Key>{Key("a")});
  EXPECT_EQ(g2.tasks[1].priority, 4U);
  EXPECT_EQ(text(g2.tasks[0].payload), "task a");
  EXPECT_EQ(g2.wanted, std::vector<Key>{Key("b", {1, 2})});
  // The payloads travel as one frame (a frame per task would hit the frame limit).
  EXPECT_EQ(comm::pack(g).body.frames.size(), 1U);
  EXPECT_EQ(text(g2.tasks[1].payload), "task b");
  EXPECT_EQ(g2.user_priority, 0);
  EXPECT_EQ(g2.retries, 0U);
  pr::UpdateGraph urgent = g;
  urgent.user_priority = -7;
  urgent.retries = 3;
  EXPECT_EQ(through_wire(urgent).user_priority, -7);
  EXPECT_EQ(through_wire(urgent).retries, 3U);

  const pr::ComputeTask c{
      Key("x"), 9, payload_of("run x"), {{Key("a"), {"tcp://h:1", "tcp://h:2"}}}, {4096}};
  const auto c2 = through_wire(c);
  EXPECT_EQ(c2.nbytes, std::vector<uint64_t>{4096});
  // Without sizes, each dependency's is 0.
  EXPECT_EQ(through_wire(pr::ComputeTask{Key("x"), 9, payload_of("r"), {{Key("a"), {"tcp://h:1"}}}})
                .nbytes,
            std::vector<uint64_t>{0});
  EXPECT_EQ(c2.key, Key("x"));
  EXPECT_EQ(text(c2.payload), "run x");
  ASSERT_EQ(c2.who_has.size(), 1U);
  EXPECT_EQ(c2.who_has[0].second, (std::vector<std::string>{"tcp://h:1", "tcp://h:2"}));
  // A small payload rides in the header; a large one is a frame of its own, not copied.
  EXPECT_EQ(comm::pack(c).body.frames.size(), 0U);
  std::string large(5000, 'p');
  large[4999] = 'q';
  const pr::ComputeTask large_task{Key("y"), 1, payload_of(large), {}};
  const comm::Envelope big_env = comm::pack(large_task);
  ASSERT_EQ(big_env.body.frames.size(), 1U);
  EXPECT_EQ(big_env.body.frames[0].bytes.data(), large_task.payload.bytes.data());
  EXPECT_EQ(text(through_wire(large_task).payload), large);
  EXPECT_EQ(text(through_wire(pr::ComputeTask{Key("z"), 1, payload_of(""), {}}).payload), "");

  EXPECT_EQ(through_wire(pr::KeyInMemory{Key("k"), 8, {"tcp://w:1"}}).holders[0], "tcp://w:1");
  const auto e = through_wire(pr::KeyErred{Key("k"), "ValueError: x", Key("j")});
  EXPECT_EQ(e.exception, "ValueError: x");
  EXPECT_EQ(e.blamed, Key("j"));
  EXPECT_EQ(through_wire(pr::KeyLost{Key("k")}).key, Key("k"));
  const auto refused = through_wire(pr::GraphRefused{"cycle", {Key("a"), Key("b", {1})}});
  EXPECT_EQ(refused.message, "cycle");
  EXPECT_EQ(refused.keys, (std::vector<Key>{Key("a"), Key("b", {1})}));
  EXPECT_EQ(through_wire(pr::FireAndForget{{Key("f")}}).keys, std::vector<Key>{Key("f")});
  (void)through_wire(pr::CloseClient{});
  EXPECT_EQ(through_wire(pr::FreeKeys{{Key("a"), Key("b")}}).keys.size(), 2U);
  EXPECT_EQ(through_wire(pr::ReleaseKeys{{Key("a")}}).keys[0], Key("a"));
  const auto f = through_wire(pr::TaskFinished{Key("t"), 64, 0.25});
  EXPECT_EQ(f.nbytes, 64U);
  EXPECT_EQ(f.duration, 0.25);
  EXPECT_FALSE(f.value.has_value());
  // Small results travel inline, with task-finished and on to the client.
  const auto fv = through_wire(pr::TaskFinished{Key("t"), 8, 0.5, tessera::Value::of(int64_t{7})});
  ASSERT_TRUE(fv.value.has_value());
  EXPECT_EQ(fv.value->get<int64_t>(), 7);
  const auto kv =
      through_wire(pr::KeyInMemory{Key("k"), 8, {"tcp://w:1"}, tessera::Value::of(int64_t{9})});
  ASSERT_TRUE(kv.value.has_value());
  EXPECT_EQ(kv.value->get<int64_t>(), 9);
  EXPECT_EQ(through_wire(pr::TaskErred{Key("t"), "boom"}).exception, "boom");
  EXPECT_EQ(through_wire(pr::StealRequest{Key("s", {3})}).key, Key("s", {3}));
  EXPECT_EQ(through_wire(pr::StealRequest{Key("s"), 12}).request, 12U);
  EXPECT_EQ(through_wire(pr::StealResponse{Key("s"), true, 13}).request, 13U);
  EXPECT_EQ(through_wire(pr::WorkerRemoved{"silent for 3000 ms"}).reason, "silent for 3000 ms");
  const auto sr = through_wire(pr::StealResponse{Key("s"), true});
  EXPECT_EQ(sr.key, Key("s"));
  EXPECT_TRUE(sr.stolen);
  EXPECT_FALSE(through_wire(pr::StealResponse{Key("s"), false}).stolen);
  const auto m = through_wire(pr::MissingData{Key("t"), Key("d"), "tcp://w:3"});
  EXPECT_EQ(m.missing, Key("d"));
  EXPECT_EQ(m.holder, "tcp://w:3");
  EXPECT_EQ(through_wire(pr::Heartbeat{123}).managed_bytes, 123U);
  EXPECT_EQ(through_wire(pr::GetData{{Key("a")}}).keys[0], Key("a"));
  EXPECT_EQ(through_wire(pr::Identity{77}).request, 77U);
  EXPECT_EQ(through_wire(pr::Unregister{"stopped"}).reason, "stopped");
  const auto retry = through_wire(pr::Retry{9, {Key("r"), Key("s", {1})}});
  EXPECT_EQ(retry.request, 9U);
  EXPECT_EQ(retry.keys, (std::vector<Key>{Key("r"), Key("s", {1})}));
  EXPECT_EQ(through_wire(pr::Retried{10}).request, 10U);
  EXPECT_EQ(through_wire(pr::KeyRetried{Key("r")}).key, Key("r"));
  const auto info = through_wire(pr::SchedulerInfo{
      78, "tcp://s:8786", {{"tcp://w:1", "alpha", 2, 1 << 30, 512, true}, {"tcp://w:2", "", 1}}});
  EXPECT_EQ(info.request, 78U);
  EXPECT_EQ(info.address, "tcp://s:8786");
  ASSERT_EQ(info.workers.size(), 2U);
  EXPECT_EQ(info.workers[0].address, "tcp://w:1");
  EXPECT_EQ(info.workers[0].name, "alpha");
  EXPECT_EQ(info.workers[0].nthreads, 2);
  EXPECT_EQ(info.workers[0].memory_limit, uint64_t{1} << 30);
  EXPECT_EQ(info.workers[0].managed_bytes, 512U);
  EXPECT_TRUE(info.workers[0].paused);
  EXPECT_EQ(info.workers[1].nthreads, 1);
  EXPECT_FALSE(info.workers[1].paused);
  // Values through their codecs, large buffers as frames.
  std::vector<double> big(100000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) / 3;
  const pr::Data data{
      {{Key("v"), tessera::Value::of(big)}, {Key("n"), tessera::Value::of(int64_t{42})}},
      {Key("gone")}};
  const comm::Envelope env = comm::pack(data);
  EXPECT_GE(env.body.frames.size(), 1U);
  const auto d2 = comm::unpack<pr::Data>(reread(wire(env)));
  ASSERT_EQ(d2.values.size(), 2U);
  EXPECT_EQ(d2.values[0].second.get<std::vector<double>>(), big);
  EXPECT_EQ(d2.values[1].second.get<int64_t>(), 42);
  EXPECT_EQ(d2.missing, std::vector<Key>{Key("gone")});
}

// A graph's static order (tessera::order) is what the scheduler gets as each task's
// priority.
TEST(Protocol, TasksCarryTheGraphsStaticOrder) {
  tessera::Graph g;
  const tessera::Op& inc = tessera::get_op("ptest_inc");
  const tessera::Op& add = tessera::get_op("ptest_add");
  std::vector<Key> leaves;
  for (int64_t i = 0; i < 8; ++i) {
    leaves.emplace_back("leaf", std::vector<int64_t>{i});
    g.add(leaves.back(), tessera::Task::call(inc, {tessera::Arg(tessera::Value::of(i))}));
  }
  for (int64_t i = 0; i < 4; ++i) {
    g.add(Key("pair", {i}), tessera::Task::call(add, {tessera::Arg::ref(leaves[2 * i]),
                                                      tessera::Arg::ref(leaves[2 * i + 1])}));
  }
  const std::vector<Key> wanted{Key("pair", {0}), Key("pair", {1}), Key("pair", {2}),
                                Key("pair", {3})};
  const std::vector<uint32_t> want = tessera::order(g, wanted);
  const pr::UpdateGraph u = through_wire(pr::to_update_graph(g, wanted));
  ASSERT_EQ(u.tasks.size(), g.size());
  std::set<uint64_t> distinct;
  for (const auto& t : u.tasks) {
    const auto at = static_cast<size_t>(g.index_of(t.key));
    EXPECT_EQ(t.priority, want.at(at)) << t.key.str();
    distinct.insert(t.priority);
  }
  EXPECT_EQ(distinct.size(), g.size());  // a total order
}

TEST(Protocol, MalformedFieldsAreRefused) {
  // A compute-task whose who_has entry is not [key, holders, nbytes].
  tessera::Encoder e;
  comm::write_key(e, Key("x"));
  e.write_uint(1);
  e.write_uint(1);  // the payload as a frame
  e.write_frame({}, nullptr);
  e.begin_array(1);
  e.begin_array(2);
  comm::write_key(e, Key("a"));
  e.begin_array(0);
  comm::Envelope env{"compute-task", {}};
  env.body.header = e.finish_header();
  env.body.frames = std::move(e.frames());
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::ComputeTask>(env); }),
            "who_has entries are [key, holders, nbytes]");
  // An update-graph whose priority is not an int32, or with too many retries.
  auto update = [](int64_t priority, uint64_t retries) {
    tessera::Encoder u;
    u.begin_array(0);
    u.write_frame({}, nullptr);
    u.begin_array(0);
    u.begin_array(0);
    u.write_int(priority);
    u.write_uint(retries);
    comm::Envelope env{"update-graph", {}};
    env.body.header = u.finish_header();
    env.body.frames = std::move(u.frames());
    return env;
  };
  EXPECT_EQ(comm::unpack<pr::UpdateGraph>(update(-5, 1000)).retries, 1000U);
  EXPECT_EQ(error_of<comm::ProtocolError>(
                [&] { comm::unpack<pr::UpdateGraph>(update(int64_t{1} << 40, 0)); }),
            "update-graph: priority 1099511627776 is out of range");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::UpdateGraph>(update(0, 1001)); }),
            "update-graph: 1001 retries, more than 1000");
  // A payload neither inline (0) nor a frame (1).
  tessera::Encoder p;
  comm::write_key(p, Key("x"));
  p.write_uint(1);
  p.write_uint(7);
  p.write_bytes({});
  p.begin_array(0);
  comm::Envelope bad_payload{"compute-task", {}};
  bad_payload.body.header = p.finish_header();
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::ComputeTask>(bad_payload); }),
            "a payload is 0 and its bytes, or 1 and a frame");
  // A key with an empty name.
  tessera::Encoder k;
  k.begin_array(2);
  k.write_string("");
  k.begin_array(0);
  comm::Envelope lost{"key-lost", {}};
  lost.body.header = k.finish_header();
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::KeyLost>(lost); }),
            "a key has an empty name");
  // A value of a type this process does not know is refused, not built.
  tessera::Encoder v;
  v.begin_array(1);
  v.begin_array(2);
  comm::write_key(v, Key("k"));
  v.write_string("no-such-type");
  comm::Envelope data{"data", {}};
  data.body.header = v.finish_header();
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::unpack<pr::Data>(data);
            }).rfind("malformed 'data' message: ", 0),
            0U);

  // An inline result that holds two values.
  tessera::Encoder two;
  comm::write_key(two, Key("t"));
  two.write_uint(8);
  two.write_double(0.5);
  two.begin_array(2);
  two.write_value(tessera::Value::of(int64_t{1}));
  two.write_value(tessera::Value::of(int64_t{2}));
  comm::Envelope finished{"task-finished", {}};
  finished.body.header = two.finish_header();
  finished.body.frames = std::move(two.frames());
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::TaskFinished>(finished); }),
            "an optional value holds 2 values, not 0 or 1");

  // A scheduler-info whose worker has no threads, or too few fields.
  auto info = [](int64_t nthreads, size_t fields) {
    tessera::Encoder i;
    i.write_uint(1);
    i.write_string("tcp://s:1");
    i.begin_array(1);
    i.begin_array(fields);
    i.write_string("tcp://w:1");
    i.write_string("w");
    i.write_int(nthreads);
    i.write_uint(0);
    i.write_uint(0);
    i.write_bool(false);
    comm::Envelope env{"scheduler-info", {}};
    env.body.header = i.finish_header();
    return env;
  };
  EXPECT_EQ(comm::unpack<pr::SchedulerInfo>(info(3, 6)).workers[0].nthreads, 3);
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::SchedulerInfo>(info(0, 6)); }),
            "worker nthreads 0 out of range");
  EXPECT_EQ(comm::unpack<pr::SchedulerInfo>(info(65536, 6)).workers[0].nthreads, 65536);
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::SchedulerInfo>(info(65537, 6)); }),
            "worker nthreads 65537 out of range");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::SchedulerInfo>(info(2, 5)); }),
            "scheduler-info workers have 6 fields");

  // Payload lengths that do not add up to the payload frame.
  auto graph = comm::pack(pr::UpdateGraph{{{Key("a"), {}, 1, payload_of("abc")}}, {Key("a")}});
  auto shorter = graph;
  shorter.body.frames[0].bytes = shorter.body.frames[0].bytes.first(2);
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::UpdateGraph>(shorter); }),
            "the tasks' payload lengths exceed the payload frame");
  (void)comm::unpack<pr::UpdateGraph>(graph);  // the original is fine
  auto extra = graph;
  auto bigger = std::make_shared<std::vector<std::byte>>(10);
  extra.body.frames[0] = tessera::Frame{*bigger, bigger};
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<pr::UpdateGraph>(extra); }),
            "the payload frame is longer than the tasks' payloads");
}

TEST(Protocol, RandomMutationsNeverEscape) {
  std::mt19937_64 rng(7);
  const std::vector<std::vector<std::vector<std::byte>>> seeds = {
      wire(comm::pack(pr::UpdateGraph{
          {{Key("a"), {}, 1, payload_of("p")}, {Key("b"), {Key("a")}, 2, payload_of("q")}},
          {Key("b")}})),
      wire(
          comm::pack(pr::ComputeTask{Key("x"), 9, payload_of("run"), {{Key("a"), {"tcp://h:1"}}}})),
      wire(
          comm::pack(pr::Data{{{Key("v"), tessera::Value::of(std::vector<double>{1, 2, 3})}}, {}})),
      wire(comm::pack(pr::KeyErred{Key("k"), "err", Key("j")})),
      wire(comm::pack(pr::MissingData{Key("t"), Key("d"), "tcp://w:3"})),
      wire(comm::pack(pr::SchedulerInfo{1, "tcp://s:1", {{"tcp://w:1", "w", 2, 10, 5, true}}})),
      wire(comm::pack(pr::Identity{3})),
      wire(comm::pack(pr::Unregister{"stopped"})),
  };
  size_t ok = 0, refused = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    auto parts = seeds[rng() % seeds.size()];
    for (int e = 0; e < 1 + static_cast<int>(rng() % 3); ++e) {
      auto& p = parts[rng() % parts.size()];
      if (p.empty() || rng() % 3 == 0) {
        p.resize(rng() % (p.size() + 2));
      } else {
        p[rng() % p.size()] = static_cast<std::byte>(rng());
      }
    }
    try {
      unpack_any(reread(parts));
      ++ok;
    } catch (const comm::ProtocolError&) {
      ++refused;
    }
  }
  EXPECT_GT(ok, 50U);
  EXPECT_GT(refused, 5000U);
}

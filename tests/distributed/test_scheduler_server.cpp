// The scheduler's network shell on loopback, with workers and clients played by plain
// connections speaking the protocol: handshakes, a graph computed across two workers,
// a silent worker removed and its results recomputed elsewhere, and peers that break the
// protocol cut off while the others are served.
#include <gtest/gtest.h>

#include <deque>
#include <map>

#include <chrono>
#include <thread>

#include "comm/transport.hpp"
#include "distributed/protocol.hpp"
#include "distributed/scheduler_server.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "test_support.hpp"

namespace comm = tessera::comm;
namespace pr = tessera::distributed::protocol;
namespace td = tessera::distributed;
using namespace std::chrono_literals;
using tessera::Key;

namespace {

// Waits for the next message of type M (skipping the scheduler's heartbeat replies); fails
// on another message or on timeout.
// Messages of a batch not read yet, per connection.
std::map<comm::Connection*, std::deque<comm::Envelope>> unread;

template <class M>
M expect(comm::Connection& c, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto& queue = unread[&c];
  while (std::chrono::steady_clock::now() < deadline) {
    if (queue.empty()) {
      auto got = c.receive(100ms);
      if (!got) continue;
      for (auto& m : comm::unpack_batch(std::move(*got))) queue.push_back(std::move(m));
    }
    std::optional<comm::Envelope> in = std::move(queue.front());
    queue.pop_front();
    if (in->op == M::kOp) return comm::unpack<M>(*in);
    if (in->op == pr::Heartbeat::kOp) continue;
    ADD_FAILURE() << "expected '" << M::kOp << "', got '" << in->op << "'";
  }
  ADD_FAILURE() << "no '" << M::kOp << "' within " << timeout.count() << " ms";
  return M{};
}

struct FakeWorker {
  std::string data_address;
  comm::Connection conn;
  uint32_t id = 0;
  FakeWorker(const std::string& scheduler, std::string addr)
      : data_address(std::move(addr)), conn(scheduler) {
    conn.send(comm::pack(comm::Handshake{
        .role = "worker", .name = data_address, .nthreads = 1, .address = data_address}));
    const auto reply = expect<comm::HandshakeReply>(conn);
    EXPECT_TRUE(reply.accepted) << reply.error;
    id = reply.id;
  }
  void finish(const Key& k, uint64_t nbytes = 8) {
    conn.send(comm::pack(pr::TaskFinished{k, nbytes, 0.001}));
  }
};

pr::Payload payload_of(const std::string& s) {
  auto owner = std::make_shared<std::string>(s);
  return {owner, std::as_bytes(std::span(owner->data(), owner->size()))};
}

}  // namespace

TEST(SchedulerServer, RunsAGraphAcrossWorkersAndRecoversFromASilentOne) {
  td::SchedulerServer server({.address = "tcp://127.0.0.1:0", .worker_timeout = 600ms});
  server.start();
  FakeWorker w1(server.address(), "tcp://127.0.0.1:50001");
  comm::Connection client(server.address());
  client.send(comm::pack(comm::Handshake{.role = "client", .name = "c"}));
  ASSERT_TRUE(expect<comm::HandshakeReply>(client).accepted);
  EXPECT_EQ(server.worker_count(), 1U);
  EXPECT_EQ(server.client_count(), 1U);

  client.send(comm::pack(pr::UpdateGraph{
      {{Key("a"), {}, 0, payload_of("task a")}, {Key("b"), {Key("a")}, 1, payload_of("task b")}},
      {Key("b")}}));
  auto ca = expect<pr::ComputeTask>(w1.conn);
  EXPECT_EQ(ca.key, Key("a"));
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(ca.payload.bytes.data()), ca.payload.bytes.size()),
      "task a");  // the payload reaches the worker as the client sent it
  w1.finish(Key("a"));
  auto cb = expect<pr::ComputeTask>(w1.conn);
  EXPECT_EQ(cb.key, Key("b"));
  ASSERT_EQ(cb.who_has.size(), 1U);
  EXPECT_EQ(cb.who_has[0].second, std::vector<std::string>{"tcp://127.0.0.1:50001"});
  EXPECT_EQ(cb.nbytes, std::vector<uint64_t>{8});
  w1.finish(Key("b"), 16);
  auto mem = expect<pr::KeyInMemory>(client);
  EXPECT_EQ(mem.key, Key("b"));
  EXPECT_EQ(mem.nbytes, 16U);
  EXPECT_EQ(mem.holders, std::vector<std::string>{"tcp://127.0.0.1:50001"});
  EXPECT_EQ(expect<pr::FreeKeys>(w1.conn).keys, std::vector<Key>{Key("a")});

  // A second worker joins; the first goes silent and is removed after its timeout: the
  // client hears b is lost, and the second worker recomputes a then b.
  FakeWorker w2(server.address(), "tcp://127.0.0.1:50002");
  for (int i = 0; i < 10; ++i) {  // keep the client alive meanwhile
    client.send(comm::pack(pr::Heartbeat{0}));
    w2.conn.send(comm::pack(pr::Heartbeat{0}));
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(server.worker_count(), 1U);
  EXPECT_EQ(expect<pr::KeyLost>(client).key, Key("b"));
  EXPECT_EQ(expect<pr::ComputeTask>(w2.conn).key, Key("a"));
  w2.finish(Key("a"));
  EXPECT_EQ(expect<pr::ComputeTask>(w2.conn).key, Key("b"));
  w2.finish(Key("b"));
  EXPECT_EQ(expect<pr::KeyInMemory>(client).holders,
            std::vector<std::string>{"tcp://127.0.0.1:50002"});

  // The removed worker speaks again (a late result): it is told it was removed, once, and
  // what it sends changes nothing. A fresh worker at its address joins as a new one.
  w1.finish(Key("b"));
  EXPECT_EQ(expect<pr::WorkerRemoved>(w1.conn).reason,
            "silent for over 600 ms (the scheduler's worker timeout)");
  w1.conn.send(comm::pack(pr::Heartbeat{0}));
  EXPECT_FALSE(w1.conn.receive(300ms).has_value());
  EXPECT_EQ(server.worker_count(), 1U);
  FakeWorker again(server.address(), "tcp://127.0.0.1:50001");
  EXPECT_NE(again.id, w1.id);
  EXPECT_EQ(server.worker_count(), 2U);
  server.stop();
}

TEST(SchedulerServer, RefusesAndCutsOffPeersThatBreakTheProtocol) {
  td::SchedulerServer server({.address = "tcp://127.0.0.1:0"});
  server.start();
  // Wrong version: refused with the reason.
  comm::Connection old(server.address());
  old.send(comm::pack(comm::Handshake{.version = 0, .role = "client"}));
  const auto r = expect<comm::HandshakeReply>(old);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.error, "protocol version 0 is not supported (the scheduler speaks " +
                         std::to_string(comm::kProtocolVersion) + ")");
  // A message before the handshake: ignored, and the peer with it.
  comm::Connection rude(server.address());
  rude.send(comm::pack(pr::Heartbeat{0}));
  rude.send(comm::pack(comm::Handshake{.role = "client"}));
  EXPECT_FALSE(rude.receive(300ms).has_value());
  // A worker sending a client's message is cut off, and its results with it.
  FakeWorker w(server.address(), "tcp://127.0.0.1:50003");
  w.conn.send(comm::pack(pr::ReleaseKeys{{Key("x")}}));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(server.worker_count(), 0U);
  // A client whose graph depends on nothing known hears why.
  comm::Connection client(server.address());
  client.send(comm::pack(comm::Handshake{.role = "client"}));
  ASSERT_TRUE(expect<comm::HandshakeReply>(client).accepted);
  client.send(
      comm::pack(pr::UpdateGraph{{{Key("b"), {Key("nowhere")}, 0, payload_of("b")}}, {Key("b")}}));
  EXPECT_EQ(
      expect<pr::GraphRefused>(client).message,
      "update_graph: task 'b' depends on 'nowhere', which is neither in the graph nor held by "
      "the scheduler");
  EXPECT_GE(server.dropped_messages(), 3U);
  server.stop();
}

// identity is a client's question and unregister a worker's goodbye: each is answered or
// acted on for its own role, and cuts off a peer of the other role.
TEST(SchedulerServer, AnswersIdentityAndRemovesWorkersThatUnregister) {
  td::SchedulerServer server({.address = "tcp://127.0.0.1:0", .worker_timeout = 60000ms});
  server.start();
  comm::Connection raw(server.address());
  raw.send(comm::pack(comm::Handshake{.role = "worker",
                                      .name = "w",
                                      .nthreads = 3,
                                      .address = "tcp://127.0.0.1:50010",
                                      .memory_limit = 123456}));
  ASSERT_TRUE(expect<comm::HandshakeReply>(raw).accepted);
  FakeWorker other(server.address(), "tcp://127.0.0.1:50011");
  comm::Connection client(server.address());
  client.send(comm::pack(comm::Handshake{.role = "client", .name = "c"}));
  ASSERT_TRUE(expect<comm::HandshakeReply>(client).accepted);
  client.send(comm::pack(pr::Identity{41}));
  auto info = expect<pr::SchedulerInfo>(client);
  EXPECT_EQ(info.request, 41U);
  EXPECT_EQ(info.address, server.address());
  ASSERT_EQ(info.workers.size(), 2U);
  EXPECT_EQ(info.workers[0].address, "tcp://127.0.0.1:50010");
  EXPECT_EQ(info.workers[0].name, "w");
  EXPECT_EQ(info.workers[0].nthreads, 3);
  EXPECT_EQ(info.workers[0].memory_limit, 123456U);
  EXPECT_EQ(info.workers[1].address, "tcp://127.0.0.1:50011");

  // A task on the worker that leaves goes to the other at once.
  client.send(comm::pack(pr::UpdateGraph{{{Key("t"), {}, 0, payload_of("t")}}, {Key("t")}}));
  comm::Connection* first = nullptr;
  for (int i = 0; i < 50 && !first; ++i) {
    if (auto m = raw.receive(20ms)) {
      for (auto& one : comm::unpack_batch(std::move(*m)))
        if (one.op == pr::ComputeTask::kOp) first = &raw;
    } else if (auto n = other.conn.receive(20ms)) {
      for (auto& one : comm::unpack_batch(std::move(*n)))
        if (one.op == pr::ComputeTask::kOp) first = &other.conn;
    }
  }
  ASSERT_NE(first, nullptr) << "the task went to no worker";
  comm::Connection& second = first == &raw ? other.conn : raw;
  first->send(comm::pack(pr::Unregister{"stopped\nforged line"}));
  EXPECT_EQ(expect<pr::ComputeTask>(second).key, Key("t"));
  EXPECT_EQ(server.worker_count(), 1U);
  client.send(comm::pack(pr::Identity{42}));
  EXPECT_EQ(expect<pr::SchedulerInfo>(client).workers.size(), 1U);

  // The wrong role: a client saying unregister, a worker asking identity.
  second.send(comm::pack(pr::Identity{1}));
  EXPECT_TRUE(tessera::testing::eventually([&] { return server.worker_count() == 0; }, 2000ms));
  client.send(comm::pack(pr::Unregister{"x"}));
  EXPECT_TRUE(tessera::testing::eventually([&] { return server.client_count() == 0; }, 2000ms));
  server.stop();
}

namespace {

TEST(SchedulerServer, PlacementOptionsComeFromTheConfiguration) {
  namespace config = tessera::config;
  const td::SchedulerState::Options defaults;
  td::SchedulerState::Options o = td::state_options_from_config();
  EXPECT_EQ(o.worker_saturation, defaults.worker_saturation);
  EXPECT_EQ(o.latency_hiding, defaults.latency_hiding);
  EXPECT_TRUE(o.speculative_assignment);
  EXPECT_TRUE(o.work_stealing);
  config::set("scheduler.worker-saturation", "2.5");
  config::set("scheduler.latency-hiding", "0");
  config::set("scheduler.speculative-assignment", "false");
  config::set("scheduler.work-stealing", "false");
  o = td::state_options_from_config();
  EXPECT_EQ(o.worker_saturation, 2.5);
  EXPECT_EQ(o.latency_hiding, 0.0);
  EXPECT_FALSE(o.speculative_assignment);
  EXPECT_FALSE(o.work_stealing);
  config::set("scheduler.worker-saturation", "0");
  EXPECT_EQ(tessera::testing::error_of<tessera::ValueError>([] { td::state_options_from_config(); }),
            "config: scheduler.worker-saturation must be in [0.01, 1000000], not 0");
  config::set("scheduler.worker-saturation", std::nullopt);
  config::set("scheduler.latency-hiding", "2");
  EXPECT_EQ(tessera::testing::error_of<tessera::ValueError>([] { td::state_options_from_config(); }),
            "config: scheduler.latency-hiding must be in [0, 1], not 2");
  config::set("scheduler.latency-hiding", std::nullopt);
  config::set("scheduler.speculative-assignment", "maybe");
  EXPECT_NE(tessera::testing::error_of<tessera::ValueError>([] { td::state_options_from_config(); })
                .find("scheduler.speculative-assignment"),
            std::string::npos);
  config::set("scheduler.speculative-assignment", std::nullopt);
  config::set("scheduler.work-stealing", std::nullopt);
  EXPECT_TRUE(td::state_options_from_config().speculative_assignment);
}

}  // namespace

// End to end on loopback: a SchedulerServer and two WorkerServers (threads of this process,
// talking TCP), and a client speaking the protocol: a graph of registered ops runs across
// both workers, inputs fetched worker to worker, results fetched from the worker holding
// them and checked; a task that throws and an op a worker does not know are reported with
// their keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <utility>

#include "comm/transport.hpp"
#include "distributed/protocol.hpp"
#include "distributed/scheduler_server.hpp"
#include "distributed/worker_server.hpp"
#include "tessera/core.hpp"
#include "test_ops.hpp"
#include "test_support.hpp"

namespace comm = tessera::comm;
namespace pr = tessera::distributed::protocol;
namespace td = tessera::distributed;
using namespace std::chrono_literals;
using tessera::Arg;
using tessera::Graph;
using tessera::Key;
using tessera::Task;
using tessera::Value;

namespace {

struct Client {
  comm::Connection conn;
  explicit Client(const std::string& address) : conn(address) {
    conn.send(comm::pack(comm::Handshake{.role = "client", .name = "test"}));
    auto r = conn.receive(5s);
    EXPECT_TRUE(r && comm::unpack<comm::HandshakeReply>(*r).accepted);
  }
  std::deque<comm::Envelope> unread;  // the rest of a batch
  // Waits for the next report about a key (memory or erred).
  comm::Envelope next_report(std::chrono::milliseconds timeout = 10s) {
    if (unread.empty()) {
      auto r = conn.receive(timeout);
      if (!r) {
        ADD_FAILURE() << "no report within " << timeout.count() << " ms";
        return {};
      }
      for (auto& m : comm::unpack_batch(std::move(*r))) unread.push_back(std::move(m));
    }
    comm::Envelope e = std::move(unread.front());
    unread.pop_front();
    return e;
  }
};

Value fetch(const std::string& holder, const Key& key) {
  comm::Connection c(holder);
  c.send(comm::pack(pr::GetData{{key}}));
  auto r = c.receive(5s);
  if (!r) throw tessera::IOError("no answer from " + holder);
  auto d = comm::unpack<pr::Data>(*r);
  if (d.values.empty()) throw tessera::KeyError(key.str() + " is missing at " + holder);
  return d.values[0].second;
}

// ptest_probe tasks to run as one graph: (kind, busy µs) each, keyed (kind, n).
using Probes = std::vector<std::pair<std::string, int64_t>>;

// Runs the probes as one graph, numbering them from `next` on, and checks every result
// (n + 1) at the worker that holds it.
void run_probes(Client& client, const Probes& probes, int64_t& next) {
  const tessera::Op& probe = tessera::get_op("ptest_probe");
  Graph g;
  std::vector<Key> wanted;
  std::map<Key, int64_t> want;
  for (const auto& [kind, busy_us] : probes) {
    Key k(kind, {next});
    g.add(k, Task::call(probe, {Arg(Value::of(next)), Arg(Value::of(busy_us))}));
    wanted.push_back(k);
    want[k] = next + 1;
    ++next;
  }
  client.conn.send(comm::pack(pr::to_update_graph(g, wanted)));
  for (size_t i = 0; i < wanted.size(); ++i) {
    const comm::Envelope r = client.next_report();
    ASSERT_EQ(r.op, pr::KeyInMemory::kOp);
    const auto mem = comm::unpack<pr::KeyInMemory>(r);
    ASSERT_EQ(mem.holders.size(), 1U);
    EXPECT_EQ(fetch(mem.holders[0], mem.key).get<int64_t>(), want.at(mem.key)) << mem.key.str();
  }
}

}  // namespace

TEST(WorkerServer, RunsAGraphAcrossTwoWorkersEndToEnd) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
  scheduler.start();
  td::WorkerServer w1({.scheduler = scheduler.address(), .nthreads = 1});
  td::WorkerServer w2({.scheduler = scheduler.address(), .nthreads = 2});
  w1.start();
  w2.start();
  // sum over i < 20 of (i + 1), as a tree of adds.
  Graph g;
  std::vector<Key> level;
  for (int64_t i = 0; i < 20; ++i) {
    Key k("inc", {i});
    g.add(k, Task::call(tessera::get_op("ptest_inc"), {Arg(Value::of(i))}));
    level.push_back(k);
  }
  int depth = 0;
  while (level.size() > 1) {
    std::vector<Key> next;
    ++depth;
    for (size_t i = 0; i < level.size(); i += 2) {
      if (i + 1 == level.size()) {
        next.push_back(level[i]);
        continue;
      }
      Key k("add-" + std::to_string(depth), {static_cast<int64_t>(i / 2)});
      g.add(k,
            Task::call(tessera::get_op("ptest_add"), {Arg::ref(level[i]), Arg::ref(level[i + 1])}));
      next.push_back(k);
    }
    level = std::move(next);
  }
  const Key root = level[0];
  Client client(scheduler.address());
  const std::vector<Key> wanted{root};
  client.conn.send(comm::pack(pr::to_update_graph(g, wanted)));
  const comm::Envelope report = client.next_report();
  ASSERT_EQ(report.op, pr::KeyInMemory::kOp)
      << (report.op == pr::KeyErred::kOp ? comm::unpack<pr::KeyErred>(report).exception
                                         : report.op);
  const auto mem = comm::unpack<pr::KeyInMemory>(report);
  EXPECT_EQ(mem.key, root);
  ASSERT_EQ(mem.holders.size(), 1U);
  EXPECT_EQ(fetch(mem.holders[0], root).get<int64_t>(), 210);  // 1 + 2 + … + 20
  // Both workers took part (39 tasks in all), and intermediates were released.
  EXPECT_GT(w1.executed(), 0U);
  EXPECT_GT(w2.executed(), 0U);
  EXPECT_EQ(w1.executed() + w2.executed(), 39U);
  std::this_thread::sleep_for(100ms);
  EXPECT_LE(w1.stored() + w2.stored(), 3U);

  // A task that throws: the client hears the error with the task's key.
  Graph bad;
  bad.add(Key("boom"),
          Task::call(tessera::get_op("ptest_fail"), {Arg(Value::of(std::string("no good: 7")))}));
  bad.add(Key("after"), Task::call(tessera::get_op("ptest_inc"), {Arg::ref(Key("boom"))}));
  client.conn.send(comm::pack(pr::to_update_graph(bad, std::vector<Key>{Key("after")})));
  const comm::Envelope e = client.next_report();
  ASSERT_EQ(e.op, pr::KeyErred::kOp);
  const auto err = comm::unpack<pr::KeyErred>(e);
  EXPECT_EQ(err.key, Key("after"));
  EXPECT_EQ(err.blamed, Key("boom"));
  EXPECT_NE(err.exception.find("no good: 7"), std::string::npos) << err.exception;
  EXPECT_NE(err.exception.find("boom"), std::string::npos) << err.exception;

  w1.stop();
  w2.stop();
  scheduler.stop();
}

TEST(WorkerServer, AnOpTheWorkerDoesNotKnowFailsItsTaskNamingTheOp) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
  scheduler.start();
  td::WorkerServer w({.scheduler = scheduler.address(), .nthreads = 1});
  w.start();
  // A payload calling an op no process registered (as a client built with other ops sends).
  pr::UpdateGraph u;
  {
    Graph one;
    one.add(Key("x"), Task::call(tessera::get_op("ptest_inc"), {Arg(Value::of(int64_t{1}))}));
    std::vector<std::byte> bytes = tessera::to_bytes(tessera::encode_graph(one));
    const std::string from = "ptest_inc", to = "ptest_zzz";
    auto it =
        std::search(bytes.begin(), bytes.end(), reinterpret_cast<const std::byte*>(from.data()),
                    reinterpret_cast<const std::byte*>(from.data() + from.size()));
    ASSERT_NE(it, bytes.end());
    std::memcpy(&*it, to.data(), to.size());
    auto owner = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
    u.tasks.push_back({Key("x"), {}, 0, pr::Payload{owner, std::span<const std::byte>(*owner)}});
    u.wanted = {Key("x")};
  }
  Client client(scheduler.address());
  client.conn.send(comm::pack(u));
  const comm::Envelope e = client.next_report();
  ASSERT_EQ(e.op, pr::KeyErred::kOp);
  const auto err = comm::unpack<pr::KeyErred>(e);
  EXPECT_NE(err.exception.find("task 'x' cannot run on this worker"), std::string::npos)
      << err.exception;
  EXPECT_NE(err.exception.find("ptest_zzz"), std::string::npos) << err.exception;
  EXPECT_NE(err.exception.find("--preload"), std::string::npos) << err.exception;
  w.stop();
  scheduler.stop();
}

// A worker's loop thread runs tasks measured as tiny itself (Options::inline_time), as many
// as it is given when it has one thread (one at a time with more); a longer task that
// arrives meanwhile waits for them, so a worker never runs more than nthreads tasks at once.
// Tasks of 20 µs and 0.5 ms (both queued deep on the worker:
// SchedulerState::Options::latency_hiding), interleaved, every result checked.
TEST(WorkerServer, TinyTasksOnTheLoopThreadNeverRunBesideTheExecutors) {
  for (const int nthreads : {1, 2}) {
    SCOPED_TRACE(nthreads);
    td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
    scheduler.start();
    // 20 µs tasks are tiny, 0.5 ms ones are not.
    td::WorkerServer w(
        {.scheduler = scheduler.address(), .nthreads = nthreads, .inline_time = 200us});
    w.start();
    Client client(scheduler.address());
    ptest_probe_reset();
    int64_t next = 0;
    // The first round measures both kinds; the last has tiny tasks only.
    for (int round = 0; round < 7; ++round) {
      Probes probes;
      for (int i = 0; i < 60; ++i) {
        const bool slow = i % 12 == 11 && round < 6;
        probes.emplace_back(slow ? "slow" : "tiny", slow ? 500 : 20);
      }
      run_probes(client, probes, next);
    }
    EXPECT_EQ(w.executed(), 420U);
    EXPECT_GE(ptest_probe_most_at_once(), 1);
    EXPECT_LE(ptest_probe_most_at_once(), nthreads);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // The loop did run some (the sanitizers can slow 20 µs tasks past 200 µs: not there).
    EXPECT_GT(ptest_probes_on_loop(), 0);
#endif
    w.stop();
    scheduler.stop();
  }
}

// A task of a kind measured as tiny runs on the worker's loop thread; one that then takes far
// longer must not make the worker look dead: heartbeats go on while it runs (the scheduler
// would remove a worker silent for worker_timeout), and the time the loop spent running it
// does not count as the scheduler's silence (death_timeout). The kind then runs on the
// executors: the next long one does not hold up the loop. Every task runs once.
TEST(WorkerServer, ALongTaskOfAKindMeasuredAsTinyDoesNotSilenceTheWorker) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0", .worker_timeout = 500ms});
  scheduler.start();
  td::WorkerServer w({.scheduler = scheduler.address(),
                      .nthreads = 1,
                      .heartbeat_interval = 100ms,
                      .inline_time = 500us,  // generous: the sanitizers slow tasks down
                      .death_timeout = 700ms});
  w.start();
  Client client(scheduler.address());
  ptest_probe_reset();
  // Graphs run one after the other, each long task alone on an idle worker: the first graph
  // measures the kind, the 1.5 s task runs on the loop; after 70 more tiny ones the kind's
  // measured time (a moving average) is back under the inline time, and the 0.3 s task comes.
  const Probes::value_type tiny{"tiny", 5};
  const std::vector<Probes> rounds{
      Probes(61, tiny), {{"tiny", 1500000}}, Probes(70, tiny), {{"tiny", 300000}}};
  int64_t next = 0;
  for (const Probes& round : rounds) run_probes(client, round, next);
  EXPECT_TRUE(w.running()) << w.stop_reason();
  EXPECT_FALSE(w.removed());
  EXPECT_EQ(scheduler.worker_count(), 1U);
  EXPECT_EQ(w.executed(), 133U);
  // The 1.5 s one (unless a tiny one was preempted for 100 ms on the loop, which barred the
  // kind before it came); the 0.3 s one ran on the executor.
  EXPECT_LE(ptest_long_probes_on_loop(), 1);
  w.stop();
  scheduler.stop();
}

TEST(WorkerServer, RefusedOrUnansweredHandshakesAreErrors) {
  // Nobody listening: the worker gives up after its connect timeout, naming the address.
  td::WorkerServer lonely({.scheduler = "tcp://127.0.0.1:1", .connect_timeout = 300ms});
  try {
    lonely.start();
    FAIL() << "start() returned";
  } catch (const tessera::SchedulerError& e) {
    EXPECT_STREQ(e.what(), "the scheduler at tcp://127.0.0.1:1 did not answer within 300 ms");
  }
  EXPECT_THROW(td::WorkerServer({.scheduler = "tcp://127.0.0.1:1", .nthreads = 0}),
               tessera::ValueError);
}

TEST(WorkerServer, AWorkerTheSchedulerRemovedForSilenceStopsAndSaysWhy) {
  // Heartbeats every 2 s against a scheduler that removes a worker silent for 400 ms: the
  // next heartbeat is answered worker-removed, and the worker stops (its process exits with
  // 4, so that a nanny starts a fresh one).
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0", .worker_timeout = 400ms});
  scheduler.start();
  td::WorkerServer worker({.scheduler = scheduler.address(), .heartbeat_interval = 2000ms});
  worker.start();
  ASSERT_TRUE(tessera::testing::eventually([&] { return scheduler.worker_count() == 1; }));
  ASSERT_TRUE(tessera::testing::eventually([&] { return scheduler.worker_count() == 0; }, 10s));
  ASSERT_TRUE(tessera::testing::eventually([&] { return !worker.running(); }, 10s));
  EXPECT_TRUE(worker.removed());
  EXPECT_EQ(worker.stop_reason(),
            "the scheduler at " + scheduler.address() +
                " removed this worker: silent for over 400 ms (the scheduler's worker timeout)");
  // A worker stopped by its own stop() was not removed.
  td::WorkerServer other({.scheduler = scheduler.address()});
  other.start();
  other.stop();
  EXPECT_FALSE(other.removed());
  scheduler.stop();
}

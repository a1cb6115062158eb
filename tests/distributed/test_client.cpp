// The public Client and Future API. Most tests run a SchedulerServer and WorkerServers as
// threads of this process (fast, and the scheduler's state can be inspected); the
// LocalCluster tests start real tessera-worker processes that --preload the test ops.
// Expected values come from the sync scheduler running the same graphs, or from plain
// arithmetic.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <httplib.h>
#include <signal.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <unistd.h>
#include "tessera/core/config.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <thread>

#include "block_checks.hpp"
#include "comm/transport.hpp"
#include "distributed/addresses.hpp"
#include "distributed/logging.hpp"
#include "distributed/nanny.hpp"
#include "distributed/scheduler_server.hpp"
#include "distributed/worker_main.hpp"
#include "distributed/worker_server.hpp"
#include "tessera/array.hpp"
#include "tessera/core/config.hpp"
#include "tessera/delayed.hpp"
#include "tessera/distributed.hpp"
#include "test_ops.hpp"
#include "test_support.hpp"

namespace td = tessera::distributed;
namespace ta = tessera::array;
using namespace std::chrono_literals;
using tessera::Client;
using tessera::Future;
using tessera::FutureStatus;
using tessera::testing::error_of;

namespace {

// A scheduler and two workers (1 and 2 threads) in this process.
struct InProcessCluster {
  td::SchedulerServer scheduler{{.address = "tcp://127.0.0.1:0", .worker_timeout = 2000ms}};
  td::WorkerServer w1{{.scheduler = scheduler.address(), .nthreads = 1}};
  td::WorkerServer w2{{.scheduler = scheduler.address(), .nthreads = 2}};
  InProcessCluster() {
    scheduler.start();
    w1.start();
    w2.start();
    wait_until([&] { return scheduler.worker_count() == 2; });
  }
  template <class F>
  static bool wait_until(F&& ok, std::chrono::milliseconds limit = 5000ms) {
    return tessera::testing::eventually(ok, limit);
  }
};

tessera::ClientOptions quiet() {
  return {.set_as_default = false};
}

// A scheduler and one worker with one thread, in this process, and a client of them.
struct OneThreadCluster {
  td::SchedulerServer scheduler{{.address = "tcp://127.0.0.1:0"}};
  td::WorkerServer worker{{.scheduler = scheduler.address(), .nthreads = 1}};
  std::optional<Client> client;
  OneThreadCluster() {
    scheduler.start();
    worker.start();
    client.emplace(scheduler.address(), quiet());
  }
};

// Closes ptest's gate for its lifetime: a failed assertion must not leave a worker's thread
// waiting there.
struct GateClosed {
  GateClosed() { ptest_close_gate(); }
  ~GateClosed() { ptest_open_gate(); }
};

// Of the tasks recorded in `ran` (lows 0..99, highs from 100 up to `last_high`), each high
// one ran before all but at most the two low ones the worker had started or held ready
// when they arrived.
void expect_highs_ran_first(const std::vector<int64_t>& ran, int64_t last_high) {
  const auto last = std::find(ran.begin(), ran.end(), last_high);
  ASSERT_NE(last, ran.end()) << ::testing::PrintToString(ran);
  EXPECT_LE(std::count_if(ran.begin(), last, [](int64_t x) { return x >= 0 && x < 100; }), 2)
      << ::testing::PrintToString(ran);
}

}  // namespace

TEST(Client, TheIssueExampleComputesOnTheCluster) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto f = client.submit(ptest_inc, 1);
  static_assert(std::is_same_v<decltype(f), Future<int64_t>>);
  auto g = client.submit(ptest_add, f, 10);
  EXPECT_EQ(g.result(), 12);
  EXPECT_EQ(f.result(), 2);
  EXPECT_EQ(f.key().str().rfind("ptest_inc-", 0), 0U) << f.key().str();

  auto fs = client.map(ptest_inc, std::vector<int64_t>{1, 2, 3});
  EXPECT_EQ(client.gather(fs), (std::vector<int64_t>{2, 3, 4}));

  auto d = tessera::delayed(ptest_add)(tessera::delayed(ptest_inc)(1), 2);
  const int64_t expected = d.compute({.scheduler = "sync"});
  EXPECT_EQ(d.compute(client), expected);
  EXPECT_EQ(expected, 4);

  auto p = client.persist(d);
  EXPECT_EQ(p.key(), d.key());
  // Computing on the persisted result starts from it (the scheduler holds its key).
  auto q = tessera::delayed(ptest_inc)(p);
  EXPECT_EQ(q.compute(client), 5);

  auto sc = client.scatter(std::vector<double>(1 << 20, 1.0));
  EXPECT_EQ(sc.key().str().rfind("scatter-", 0), 0U);
  EXPECT_EQ(client.submit(ptest_total, sc).result(), double(1 << 20));
  EXPECT_EQ(sc.result().size(), size_t{1} << 20);
}

TEST(Client, MapOverSeveralVectorsAndFuturesAsArguments) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  std::vector<int64_t> xs(200), ys(200);
  std::iota(xs.begin(), xs.end(), 0);
  std::iota(ys.begin(), ys.end(), 1000);
  auto sums = client.map(ptest_add, xs, ys);
  auto incs = client.map(ptest_inc, sums);      // a vector of futures: each element a dependency
  auto total = client.submit(ptest_sum, incs);  // a vector of futures as one argument
  int64_t expected = 0;
  for (size_t i = 0; i < xs.size(); ++i) expected += xs[i] + ys[i] + 1;
  EXPECT_EQ(total.result(), expected);
  // The same future twice among few arguments, and among many (a worker finds the inputs
  // of a task of more than 16 by a table).
  EXPECT_EQ(client.submit(ptest_add, sums[3], sums[3]).result(), 2 * (3 + 1003));
  std::vector<Future<int64_t>> twice(incs.begin(), incs.begin() + 20);
  twice.insert(twice.end(), incs.begin(), incs.begin() + 20);
  int64_t expected_twice = 0;
  for (size_t i = 0; i < 20; ++i) expected_twice += 2 * (xs[i] + ys[i] + 1);
  EXPECT_EQ(client.submit(ptest_sum, twice).result(), expected_twice);
  EXPECT_EQ(
      error_of<tessera::ValueError>([&] { client.map(ptest_add, xs, std::vector<int64_t>{1}); }),
      "map(): the vectors have different lengths");
}

TEST(Client, SameCallsShareOneKeyAndOneComputation) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  const size_t before = c.w1.executed() + c.w2.executed();
  auto a = client.submit(ptest_inc, 41);
  auto b = client.submit(ptest_inc, 41);
  EXPECT_EQ(a.key(), b.key());
  EXPECT_EQ(a.result() + b.result(), 84);
  EXPECT_EQ(c.w1.executed() + c.w2.executed() - before, 1U);
}

TEST(Client, ARemoteErrorIsRethrownWithTheKeyThatRaised) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto bad = client.submit(ptest_fail, std::string("no luck"));
  auto after = client.submit(ptest_inc, bad);
  try {
    (void)after.result();
    FAIL() << "expected a TaskError";
  } catch (const tessera::TaskError& e) {
    EXPECT_EQ(e.key(), bad.key().str());  // blamed: the task that raised
    EXPECT_NE(std::string(e.what()).find("ptest_fail: no luck"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(bad.key().str()), std::string::npos) << e.what();
  }
  EXPECT_EQ(bad.status(), FutureStatus::Error);
  EXPECT_TRUE(bad.done());
  std::exception_ptr ex = bad.exception();
  ASSERT_TRUE(ex);
  EXPECT_THROW(std::rethrow_exception(ex), tessera::TaskError);
  auto good = client.submit(ptest_inc, 1);
  EXPECT_EQ(good.exception(), nullptr);
  EXPECT_EQ(good.status(), FutureStatus::Finished);
}

TEST(Client, ReleasedFuturesAreForgottenByTheScheduler) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  {
    auto fs = client.map(ptest_inc, std::vector<int64_t>{1, 2, 3, 4});
    auto total = client.submit(ptest_sum, fs);
    EXPECT_EQ(total.result(), 14);
    EXPECT_EQ(client.held_keys(), 5U);
    EXPECT_GE(c.scheduler.task_count(), 5U);
    auto copy = total;  // copies share one hold
    total.release();
    EXPECT_FALSE(total.valid());
    EXPECT_EQ(copy.result(), 14);
    EXPECT_EQ(client.held_keys(), 5U);
  }
  EXPECT_EQ(client.held_keys(), 0U);
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return c.scheduler.task_count() == 0; }))
      << c.scheduler.task_count() << " tasks left";
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return c.w1.stored() + c.w2.stored() == 0; }));
  // A released key submitted again is computed again.
  EXPECT_EQ(client.submit(ptest_inc, 1).result(), 2);
}

TEST(Client, ClosingAClientReleasesWhatItHeld) {
  InProcessCluster c;
  auto client = std::make_unique<Client>(c.scheduler.address(), quiet());
  auto f = client->submit(ptest_inc, 5);
  EXPECT_EQ(f.result(), 6);
  EXPECT_EQ(c.scheduler.client_count(), 1U);
  client->close();
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return c.scheduler.task_count() == 0; }));
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return c.scheduler.client_count() == 0; }));
  EXPECT_EQ(f.result(), 6);  // fetched before closing: kept
  EXPECT_EQ(error_of<tessera::SchedulerError>([&] { (void)client->submit(ptest_inc, 7); }),
            fmt::format("the client of {} was closed", c.scheduler.address()));
  // A client destroyed at once still says goodbye (its close-client is not dropped): the
  // scheduler forgets it now, not after client_timeout (60 s).
  for (int i = 0; i < 5; ++i) {
    Client brief(c.scheduler.address(), quiet());
    EXPECT_EQ(brief.submit(ptest_inc, int64_t{100 + i}).result(), 101 + i);
  }
  EXPECT_TRUE(
      InProcessCluster::wait_until([&] { return c.scheduler.client_count() == 0; }, 2000ms));
}

TEST(Client, WaitAsCompletedAndTimeouts) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto slow = client.submit(ptest_slow_inc, 1, 400);
  auto fast = client.submit(ptest_slow_inc, 2, 0);
  EXPECT_FALSE(tessera::wait(std::vector{slow}, 20ms));
  EXPECT_EQ(error_of<tessera::TimeoutError>([&] { (void)slow.result(10ms); }),
            fmt::format("1 of 1 results not ready within 10 ms (first: '{}')", slow.key().str()));
  std::vector<int64_t> order;
  for (const auto& f : tessera::as_completed(std::vector{slow, fast})) order.push_back(f.result());
  EXPECT_EQ(order, (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(tessera::wait(std::vector{slow, fast}, 5000ms));

  auto many = client.map(ptest_inc, std::vector<int64_t>(300, 7));  // one key, 300 futures
  auto spread = client.map(ptest_inc, [] {
    std::vector<int64_t> v(300);
    std::iota(v.begin(), v.end(), 0);
    return v;
  }());
  size_t seen = 0;
  int64_t sum = 0;
  auto ac = tessera::as_completed(spread);
  while (auto f = ac.next(5000ms)) {
    ++seen;
    sum += f->result();
  }
  EXPECT_EQ(seen, 300U);
  EXPECT_EQ(sum, 300 * 301 / 2);
  EXPECT_EQ(client.gather(many), std::vector<int64_t>(300, 8));
}

// A waiting thread polls for up to spin_wait before it sleeps; the poll never outlasts the
// wait's own timeout, and results are the same with and without it.
TEST(Client, WaitersPollForResultsWithinTheirTimeouts) {
  InProcessCluster c;
  auto polling = quiet();
  polling.spin_wait = 2s;
  Client client(c.scheduler.address(), polling);
  auto slow = client.submit(ptest_slow_inc, 10, 400);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(tessera::wait(std::vector{slow}, 50ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);  // not the 2 s of polling
  EXPECT_EQ(slow.result(), 11);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(client.submit(ptest_inc, 100 + i).result(), 101 + i);

  auto sleeping = quiet();
  sleeping.spin_wait = 0us;
  Client other(c.scheduler.address(), sleeping);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(other.submit(ptest_inc, 200 + i).result(), 201 + i);
  EXPECT_EQ(other.gather(other.map(ptest_inc, std::vector<int64_t>{1, 2, 3})),
            (std::vector<int64_t>{2, 3, 4}));

  // The default comes from the configuration (seconds), and must not be negative.
  EXPECT_EQ(tessera::ClientOptions{}.spin_wait, 1000us);
  tessera::config::set("client.spin-wait", "0.00025");
  EXPECT_EQ(tessera::ClientOptions{}.spin_wait, 250us);
  for (const char* bad : {"-1", "1e30", "nan"}) {
    tessera::config::set("client.spin-wait", bad);
    EXPECT_EQ(error_of<tessera::ValueError>([&] { Client(c.scheduler.address(), quiet()); }),
              fmt::format("config: client.spin-wait must be a number of seconds from 0 to 10, "
                          "not {}",
                          std::stod(bad)));
  }
  tessera::config::set("client.spin-wait", std::nullopt);
  auto negative = quiet();
  negative.spin_wait = -5us;
  EXPECT_EQ(error_of<tessera::ValueError>([&] { Client(c.scheduler.address(), negative); }),
            "ClientOptions::spin_wait (config client.spin-wait) must be 0 or more, not -5 us");
}

TEST(Client, CancelStopsWorkAndResultsSayCancelled) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto slow = client.submit(ptest_slow_inc, 1, 300);
  auto after = client.submit(ptest_inc, slow);
  client.cancel(std::vector{after, slow});
  EXPECT_EQ(slow.status(), FutureStatus::Cancelled);
  EXPECT_EQ(error_of<tessera::CancelledError>([&] { (void)after.result(); }),
            fmt::format("the future of '{}' was cancelled", after.key().str()));
  EXPECT_TRUE(after.done());
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return c.scheduler.task_count() == 0; }, 3000ms));
  // Submitting the same call again brings it back.
  auto again = client.submit(ptest_slow_inc, 1, 0);
  EXPECT_EQ(again.result(), 2);
}

TEST(Client, FireAndForgetFinishesWorkNobodyHolds) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  const auto path =
      std::filesystem::temp_directory_path() / fmt::format("tessera-faf-{}.txt", ::getpid());
  std::filesystem::remove(path);
  {
    auto f = client.submit(ptest_touch, path.string(), int64_t{200});
    tessera::fire_and_forget(f);
  }  // released at once
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return std::filesystem::exists(path); }));
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return c.scheduler.task_count() == 0; }));
  std::filesystem::remove(path);
}

TEST(Client, AnyCollectionComputesOnAClient) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto x = ta::arange(0.0, 1000.0, 1.0, {.chunks = {100}});
  auto expr = (x * 2.0 + 1.0).sum();
  const double expected = expr.compute({.scheduler = "sync"}).item<double>();
  EXPECT_EQ(expected, 1000.0 * 999.0 + 1000.0);
  EXPECT_EQ(expr.compute(client).item<double>(), expected);
  auto [s, m] = tessera::compute(x.sum(), x.max(), client.options());
  EXPECT_EQ(s.item<double>(), 999.0 * 500.0);
  EXPECT_EQ(m.item<double>(), 999.0);
  // persist keeps the chunks on the workers; later work starts from them.
  auto kept = client.persist(x * 3.0);
  EXPECT_EQ(kept.sum().compute(client).item<double>(), 3.0 * 999.0 * 500.0);
  // A persisted collection's chunks live on its client's cluster: another scheduler says so.
  const std::string elsewhere =
      error_of<tessera::TaskError>([&] { (void)kept.sum().compute({.scheduler = "sync"}); });
  EXPECT_NE(elsewhere.find("it is a result held on a cluster by the client that persisted it "
                           "(client.persist()); compute the collection on that client "
                           "(x.compute(client), or while the client is the default scheduler)"),
            std::string::npos)
      << elsewhere;
}

TEST(Client, TheNewestClientIsTheDefaultSchedulerUntilItCloses) {
  InProcessCluster c;
  const std::string before = tessera::default_scheduler();
  {
    Client client(c.scheduler.address());
    EXPECT_EQ(tessera::default_scheduler(), "distributed");
    const size_t ran = c.w1.executed() + c.w2.executed();
    EXPECT_EQ(tessera::delayed(ptest_inc)(99).compute(), 100);
    EXPECT_GT(c.w1.executed() + c.w2.executed(), ran);
  }
  EXPECT_EQ(tessera::default_scheduler(), before);
}

TEST(Client, BadInputsAreClearErrors) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto lambda = [](int64_t x) { return x; };
  EXPECT_EQ(error_of<tessera::SerializationError>([&] { (void)client.submit(lambda, 1); }),
            "submit: 'lambda' is not a registered op, so workers cannot run it; register the "
            "function with TESSERA_REGISTER (lambdas cannot be sent to other processes)");
  Future<int64_t> empty;
  EXPECT_EQ(error_of<tessera::ValueError>([&] { (void)empty.result(); }),
            "a released or empty future cannot be used");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { (void)client.submit(ptest_inc, empty); }),
            "a released or empty future cannot be used");
  // The scheduler refuses a graph that depends on a key nobody holds.
  tessera::Graph g;
  g.add(tessera::Key("needs-ghost"),
        tessera::Task::call(tessera::get_op("ptest_inc"),
                            {tessera::Arg::ref(tessera::Key("ghost"))}));
  const tessera::Key out("needs-ghost");
  EXPECT_EQ(error_of<tessera::GraphError>([&] { client.submit_graph(g, std::span(&out, 1)); }),
            "submit_graph: a task depends on 'ghost', which is neither in the graph nor held by "
            "this client");
  EXPECT_EQ(error_of<tessera::SchedulerError>(
                [] { Client("tcp://127.0.0.1:1", {.connect_timeout = 200ms}); }),
            "the scheduler at tcp://127.0.0.1:1 did not answer within 200 ms");
}

TEST(Client, PendingFuturesFailWhenTheSchedulerIsLost) {
  auto scheduler = std::make_unique<td::SchedulerServer>(
      td::SchedulerServer::Options{.address = "tcp://127.0.0.1:0"});
  scheduler->start();
  Client client(scheduler->address(),
                {.heartbeat_interval = 50ms, .scheduler_timeout = 400ms, .set_as_default = false});
  auto f = client.submit(ptest_inc, 1);  // no worker: stays pending
  const std::string address = scheduler->address();
  scheduler.reset();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of<tessera::SchedulerError>([&] { (void)f.result(5000ms); }),
            fmt::format("lost the scheduler at {}: silent for 400 ms", address));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2000ms);
  EXPECT_EQ(error_of<tessera::SchedulerError>([&] { (void)client.submit(ptest_inc, 2); }),
            fmt::format("lost the scheduler at {}: silent for 400 ms", address));
}

// ---- real worker processes ----

TEST(LocalCluster, RunsWorkerProcessesAndSurvivesAKilledOne) {
  tessera::LocalCluster cluster({.n_workers = 2,
                                 .threads_per_worker = 1,
                                 .worker_program = TESSERA_WORKER_PROGRAM,
                                 .preload = {TESSERA_TEST_OPS},
                                 .worker_timeout = 1000ms});
  EXPECT_EQ(cluster.worker_count(), 2U);
  Client client(cluster, quiet());
  std::vector<int64_t> xs(60);
  std::iota(xs.begin(), xs.end(), 0);
  auto incs = client.map(ptest_slow_inc, xs, std::vector<int64_t>(60, 20));
  auto total = client.submit(ptest_sum, incs);
  std::this_thread::sleep_for(150ms);
  const auto pids = cluster.worker_pids();
  ASSERT_EQ(pids.size(), 2U);
  kill(pids[0], SIGKILL);
  EXPECT_EQ(total.result(30000ms), 60 * 61 / 2);
  EXPECT_EQ(client.gather(incs), [&] {
    std::vector<int64_t> v(xs);
    for (auto& x : v) ++x;
    return v;
  }());
  cluster.add_worker();
  EXPECT_EQ(cluster.worker_count(), 2U);
  EXPECT_EQ(client.submit(ptest_add, int64_t{20}, int64_t{22}).result(), 42);
}

TEST(LocalCluster, AWorkerThatCannotStartIsAClearError) {
  const std::string message = error_of<tessera::SchedulerError>([] {
    tessera::LocalCluster({.n_workers = 1,
                           .worker_program = TESSERA_WORKER_PROGRAM,
                           .preload = {"/nonexistent/libops.so"}});
  });
  EXPECT_NE(message.find("LocalCluster: worker '" TESSERA_WORKER_PROGRAM "' exited with code 1 "
                         "before connecting; its log:"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("/nonexistent/libops.so"), std::string::npos) << message;
  EXPECT_EQ(error_of<tessera::ValueError>([] { tessera::LocalCluster({.threads_per_worker = 0}); }),
            "LocalCluster: threads_per_worker must be at least 1, not 0");
}

// Worker processes get one BLAS/OpenMP thread each unless told otherwise, as Dask's nanny
// does (their parallelism is their own threads).
TEST(LocalCluster, WorkersGetOneBlasThreadUnlessToldOtherwise) {
  namespace config = tessera::config;
  const char* vars[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"};
  std::map<std::string, std::optional<std::string>> saved;
  for (const char* v : vars) {
    if (const char* x = std::getenv(v)) saved[v] = x;
    ::unsetenv(v);
  }
  std::vector<std::string> env{"PATH=/usr/bin"};
  td::add_blas_thread_limits(env);
  EXPECT_EQ(env, (std::vector<std::string>{"PATH=/usr/bin", "OMP_NUM_THREADS=1",
                                           "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"}));
  config::set("worker.blas-threads", "4");
  env = {"OMP_NUM_THREADS=2"};  // what the environment sets stays
  td::add_blas_thread_limits(env);
  EXPECT_EQ(env, (std::vector<std::string>{"OMP_NUM_THREADS=2", "OPENBLAS_NUM_THREADS=4",
                                           "MKL_NUM_THREADS=4"}));
  config::set("worker.blas-threads", "0");
  env.clear();
  td::add_blas_thread_limits(env);
  EXPECT_TRUE(env.empty());
  config::set("worker.blas-threads", "1.5");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { td::add_blas_thread_limits(env); }),
            "config: worker.blas-threads must be a whole number from 0 to 1024, not 1.5");
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              tessera::LocalCluster({.n_workers = 1, .worker_program = TESSERA_WORKER_PROGRAM});
            }),
            "config: worker.blas-threads must be a whole number from 0 to 1024, not 1.5");
  EXPECT_EQ(error_of<tessera::ValueError>([] { td::worker_environment(); }),
            "config: worker.blas-threads must be a whole number from 0 to 1024, not 1.5");
  config::set("worker.blas-threads", std::nullopt);

  // worker_environment: this process's variables but the dropped ones, then the limits.
  ::setenv("TESSERA_TEST_DROPPED", "1", 1);
  ::setenv("TESSERA_TEST_KEPT", "2", 1);
  std::vector<std::string> want;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!std::string_view(*e).starts_with("TESSERA_TEST_DROP")) want.emplace_back(*e);
  }
  want.insert(want.end(), {"OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"});
  EXPECT_EQ(td::worker_environment({"TESSERA_TEST_DROP"}), want);
  EXPECT_NE(std::find(want.begin(), want.end(), "TESSERA_TEST_KEPT=2"), want.end());
  ::unsetenv("TESSERA_TEST_DROPPED");
  ::unsetenv("TESSERA_TEST_KEPT");

  // A real worker process's environment.
  ::setenv("MKL_NUM_THREADS", "3", 1);
  {
    tessera::LocalCluster cluster(
        {.n_workers = 1, .worker_program = TESSERA_WORKER_PROGRAM, .nanny = false});
    const auto pids = cluster.worker_pids();
    ASSERT_EQ(pids.size(), 1U);
    std::set<std::string> seen;
    for (const auto& e : tessera::testing::environment_of(pids[0])) {
      if (e.find("_NUM_THREADS=") != std::string::npos) seen.insert(e);
    }
    EXPECT_EQ(seen, (std::set<std::string>{"MKL_NUM_THREADS=3", "OMP_NUM_THREADS=1",
                                           "OPENBLAS_NUM_THREADS=1"}));
  }
  ::unsetenv("MKL_NUM_THREADS");
  for (const auto& [v, x] : saved) ::setenv(v.c_str(), x->c_str(), 1);
}

TEST(LocalCluster, TakesItsSchedulerAndWorkerSettingsFromTheConfiguration) {
  namespace config = tessera::config;
  const auto reset = [] {
    for (const char* key :
         {"scheduler.speculative-assignment", "scheduler.worker-saturation", "worker.queue-time",
          "worker.inline-time", "scheduler.validate", "worker.validate"})
      config::set(key, std::nullopt);
  };
  // Tiny tasks one at a time on the workers, and no speculative assignment: still exact,
  // with both state machines checking their invariants after every event.
  config::set("scheduler.validate", "true");
  config::set("worker.validate", "true");
  config::set("scheduler.speculative-assignment", "false");
  config::set("worker.queue-time", "0");
  config::set("worker.inline-time", "0.00001");  // passed on as 1e-05
  {
    tessera::LocalCluster cluster(
        {.n_workers = 1, .worker_program = TESSERA_WORKER_PROGRAM, .preload = {TESSERA_TEST_OPS}});
    Client client(cluster, quiet());
    auto f = client.submit(ptest_inc, int64_t{0});
    for (int i = 1; i < 50; ++i) f = client.submit(ptest_inc, f);
    EXPECT_EQ(f.result(), 50);
  }

  config::set("scheduler.worker-saturation", "0");
  EXPECT_EQ(error_of<tessera::ValueError>([] { tessera::LocalCluster({.n_workers = 0}); }),
            "config: scheduler.worker-saturation must be in [0.01, 1000000], not 0");
  reset();
}

TEST(ProcessesScheduler, ComputesOnWorkerProcessesLikeSync) {
  auto x = ta::arange(0.0, 5000.0, 1.0, {.chunks = {500}});
  auto expr = ((x - 2500.0) * (x - 2500.0)).sum();
  const double expected = expr.compute({.scheduler = "sync"}).item<double>();
  EXPECT_EQ(expr.compute({.scheduler = "processes", .num_workers = 2}).item<double>(), expected);
  // The cluster is kept: a second computation reuses it.
  EXPECT_EQ(x.max().compute({.scheduler = "processes", .num_workers = 2}).item<double>(), 4999.0);
  auto lambda = tessera::delayed([](int64_t v) { return v + 1; })(1);
  const std::string refused = error_of<tessera::SerializationError>(
      [&] { (void)lambda.compute({.scheduler = "processes", .num_workers = 2}); });
  EXPECT_NE(refused.find(lambda.key().str()), std::string::npos) << refused;
}

// The issue's reliability test: a random worker SIGKILLed during a 10,000-task computation,
// 20 times in a row (a new worker joining each time): every result exact, nothing hangs.
TEST(Reliability, TwentyKilledWorkersLoseNothing) {
  tessera::LocalCluster cluster({.n_workers = 3,
                                 .threads_per_worker = 1,
                                 .worker_program = TESSERA_WORKER_PROGRAM,
                                 .preload = {TESSERA_TEST_OPS},
                                 .worker_timeout = 1000ms});
  Client client(cluster, quiet());
  std::mt19937 rng(2026);
  constexpr int kRounds = 20;
  constexpr size_t kIncs = 6666;  // + 3,333 sums of pairs + 1 total: 10,000 tasks
  for (int round = 0; round < kRounds; ++round) {
    // Different keys every round.
    std::vector<int64_t> xs(kIncs);
    std::iota(xs.begin(), xs.end(), int64_t{round} * 10000);
    // Each naps 0.1 ms, so that the computation lasts long enough to be killed under.
    auto incs = client.map(ptest_nap_inc, xs, std::vector<int64_t>(xs.size(), 100));
    std::vector<Future<int64_t>> lefts, rights;
    for (size_t i = 0; i + 1 < incs.size(); i += 2) {
      lefts.push_back(incs[i]);
      rights.push_back(incs[i + 1]);
    }
    auto pairs = client.map(ptest_add, lefts, rights);
    auto total = client.submit(ptest_sum, pairs);
    ASSERT_EQ(incs.size() + pairs.size() + 1, 10000U);
    int64_t want = 0;
    for (int64_t x : xs) want += x + 1;
    // The kill lands once 5..60% of the increments (one in 50 watched) are done, so it
    // always falls in the middle of the computation, at a different point each round.
    const size_t watched = kIncs / 50;
    const size_t at = watched * (5 + rng() % 56) / 100;
    auto done_count = [&] {
      size_t n = 0;
      for (size_t i = 0; i < kIncs; i += 50) n += incs[i].done() ? 1 : 0;
      return n;
    };
    ASSERT_TRUE(InProcessCluster::wait_until([&] { return done_count() >= at; }, 60000ms))
        << "round " << round;
    auto pids = cluster.worker_pids();
    ASSERT_FALSE(pids.empty());
    ASSERT_FALSE(total.done()) << "round " << round << ": the kill came after the result";
    kill(pids[rng() % pids.size()], SIGKILL);
    ASSERT_EQ(total.result(60000ms), want) << "round " << round;
    for (size_t i = 0; i < kIncs; i += 997) EXPECT_EQ(incs[i].result(), xs[i] + 1) << i;
    cluster.add_worker();  // back to three
  }
}

// Results totalling 5× a worker's memory limit: the worker spills the least recently used
// to disk and reads them back when asked; above the pause threshold it takes no new tasks.
TEST(WorkerMemory, SpillsPastItsLimitAndPausesUnderPressure) {
  std::atomic<uint64_t> fake_rss{0};
  const uint64_t limit = 8 << 20;
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
  scheduler.start();
  td::WorkerServer w({.scheduler = scheduler.address(),
                      .nthreads = 1,
                      .heartbeat_interval = 50ms,
                      .memory_limit = limit,
                      .process_memory = [&] { return fake_rss.load(); }});
  w.start();
  Client client(scheduler.address(), quiet());
  constexpr int64_t kBlock = 1 << 17;  // 1 MiB of doubles
  std::vector<int64_t> seeds(40);
  std::iota(seeds.begin(), seeds.end(), 0);
  auto blocks = client.map(ptest_block, seeds, std::vector<int64_t>(seeds.size(), kBlock));
  ASSERT_TRUE(tessera::wait(blocks, 30000ms));
  EXPECT_GT(w.spilled_count(), 30U);
  EXPECT_LE(w.memory_bytes(), static_cast<uint64_t>(0.6 * limit));
  EXPECT_GT(w.spilled_bytes(), 0U);
  // Every block comes back exact, read from disk.
  tessera::testing::expect_block_totals(client, blocks, seeds, kBlock);
  EXPECT_EQ(client.gather(blocks)[7][5], 12.0);

  // Over the pause threshold (0.8 × limit): no new tasks until it is below again.
  fake_rss = static_cast<uint64_t>(0.9 * limit);
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return w.paused(); }));
  std::this_thread::sleep_for(200ms);  // the heartbeat reaches the scheduler
  auto later = client.submit(ptest_inc, int64_t{41});
  EXPECT_FALSE(later.wait(300ms));
  fake_rss = 0;
  EXPECT_EQ(later.result(10000ms), 42);
  EXPECT_FALSE(w.paused());
}

// The thresholds are the worker's own fractions of its limit, not fixed ones: results are
// spilled past `target`, more when the process passes `spill`, and it pauses past `pause`.
TEST(WorkerMemory, ThresholdsAreTheFractionsGiven) {
  tessera::testing::TempDir dir;
  std::atomic<uint64_t> fake_rss{0};
  const uint64_t limit = 16 << 20;
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
  scheduler.start();
  td::WorkerServer w({.scheduler = scheduler.address(),
                      .nthreads = 1,
                      .heartbeat_interval = 50ms,
                      .memory_limit = limit,
                      .memory = {.target = 0.25, .spill = 0.5, .pause = 0.9},
                      .local_directory = dir.path().string(),
                      .spill_compression = "none",
                      .process_memory = [&] { return fake_rss.load(); }});
  w.start();
  Client client(scheduler.address(), quiet());
  constexpr int64_t kBlock = 1 << 17;  // 1 MiB of doubles
  std::vector<int64_t> seeds(8);
  std::iota(seeds.begin(), seeds.end(), 100);
  auto blocks = client.map(ptest_block, seeds, std::vector<int64_t>(seeds.size(), kBlock));
  ASSERT_TRUE(tessera::wait(blocks, 30000ms));
  // 8 MiB of results, 4 MiB allowed (0.25 of 16): the rest is on disk.
  EXPECT_LE(w.memory_bytes(), limit / 4);
  EXPECT_GE(w.memory_bytes(), limit / 4 - (2 << 20));  // not more than needed (1 MiB each)
  const uint64_t spilled = w.spilled_count();
  EXPECT_GE(spilled, 4U);
  // In the local directory given, uncompressed as asked: a header and the megabyte.
  size_t files = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (!f.is_regular_file()) continue;
    ++files;
    EXPECT_GT(f.file_size(), uint64_t{kBlock} * 8);
    std::ifstream in(f.path(), std::ios::binary);
    char head[5] = {};
    in.read(head, 5);
    EXPECT_EQ(std::string(head, 4), "TSPL");
    EXPECT_EQ(head[4], 0) << "compression none";
  }
  EXPECT_EQ(files, spilled);
  EXPECT_GE(w.spilled_bytes(), spilled * kBlock * 8);
  // The process at 0.6 of its limit, past spill (0.5): results are spilled until it would be
  // back at the target, 0.6 - 0.25 = 0.35 of 16 MiB = 5.6 MiB, more than it holds.
  fake_rss = static_cast<uint64_t>(0.6 * limit);
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return w.memory_bytes() == 0; }));
  EXPECT_GT(w.spilled_count(), spilled);
  EXPECT_FALSE(w.paused());  // 0.6 < 0.9
  // 0.85 would pause a worker with the default 0.8, not this one.
  fake_rss = static_cast<uint64_t>(0.85 * limit);
  std::this_thread::sleep_for(300ms);  // several memory checks (every 50 ms) see it
  EXPECT_FALSE(w.paused());
  auto more = client.submit(ptest_inc, int64_t{1});
  EXPECT_EQ(more.result(10000ms), 2);
  fake_rss = static_cast<uint64_t>(0.95 * limit);
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return w.paused(); }));
  fake_rss = 0;
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return !w.paused(); }));
  // Every block comes back exact.
  tessera::testing::expect_block_totals(client, blocks, seeds, kBlock);
}

TEST(WorkerMemory, AnUnknownSpillCompressionIsRefused) {
  EXPECT_EQ(error_of<tessera::ValueError>([] {
              td::WorkerServer w({.scheduler = "tcp://127.0.0.1:1", .spill_compression = "gzip"});
            }),
            "spill compression 'gzip' is not one of lz4, zstd and none");
}

TEST(WorkerMemory, LimitsAreReadAsPeopleWriteThem) {
  EXPECT_EQ(td::parse_memory_limit("4GiB"), uint64_t{4} << 30);
  EXPECT_EQ(td::parse_memory_limit("500MB"), 500'000'000U);
  EXPECT_EQ(td::parse_memory_limit("512 MiB"), uint64_t{512} << 20);
  EXPECT_EQ(td::parse_memory_limit("123456"), 123456U);
  EXPECT_EQ(td::parse_memory_limit("0"), 0U);
  const uint64_t ram = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                       static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t half = td::parse_memory_limit("0.5");
  EXPECT_NEAR(static_cast<double>(half), ram / 2.0, ram * 0.001);
  for (const char* bad : {"", "4XB", "-1", "lots", "1.5"}) {
    EXPECT_EQ(
        error_of<tessera::ValueError>([&] { td::parse_memory_limit(bad); }),
        fmt::format("memory limit: cannot read '{}' (give bytes, 4GiB, 500MB, a fraction of this "
                    "machine's memory like 0.5, or 0 for none)",
                    bad));
  }
}

namespace {
// Peak resident memory of a process (VmHWM), in bytes; 0 if it cannot be read.
uint64_t peak_rss_of(int pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}
}  // namespace

// The issue's spill test: intermediates totalling 4× the workers' memory limits complete by
// spilling, and no worker's memory passes the 95% a nanny would restart it at.
TEST(WorkerMemory, AComputationFourTimesTheMemoryLimitsCompletesBySpilling) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // A sanitized worker's shadow memory alone passes the pause threshold: it would never
  // take a task. The spilling itself is checked in-process above.
  GTEST_SKIP() << "sanitizers' shadow memory makes resident sizes meaningless";
#endif
  const uint64_t limit = 120 << 20;
  tessera::LocalCluster cluster({.n_workers = 2,
                                 .threads_per_worker = 1,
                                 .worker_program = TESSERA_WORKER_PROGRAM,
                                 .preload = {TESSERA_TEST_OPS},
                                 .memory_limit = limit});
  Client client(cluster, quiet());
  constexpr int64_t kBlock = 1 << 18;                                         // 2 MiB
  const int64_t blocks = static_cast<int64_t>(4 * 2 * limit / (kBlock * 8));  // 4 × both limits
  std::vector<int64_t> seeds(static_cast<size_t>(blocks));
  std::iota(seeds.begin(), seeds.end(), 0);
  auto held = client.map(ptest_block, seeds, std::vector<int64_t>(seeds.size(), kBlock));
  tessera::testing::expect_block_totals(client, held, seeds, kBlock, 120000ms);
  for (int pid : cluster.worker_pids()) {
    const uint64_t peak = peak_rss_of(pid);
    std::printf("worker %d peak resident memory: %.1f MiB of a %.0f MiB limit\n", pid,
                peak / 1048576.0, limit / 1048576.0);
    EXPECT_GT(peak, 0U);
    EXPECT_LT(peak, static_cast<uint64_t>(0.95 * limit))
        << "worker " << pid << " peaked at " << peak;
  }
}

TEST(SchedulerHttp, HealthAndPrometheusMetrics) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0", .http_address = "127.0.0.1:0"});
  scheduler.start();
  td::WorkerServer w({.scheduler = scheduler.address(), .nthreads = 1, .heartbeat_interval = 50ms});
  w.start();
  Client client(scheduler.address(), quiet());
  auto held = client.map(ptest_block, std::vector<int64_t>{0, 1, 2}, std::vector<int64_t>(3, 1000));
  ASSERT_TRUE(tessera::wait(held, 10000ms));
  auto waiting = client.submit(ptest_slow_inc, int64_t{1}, int64_t{2000});
  ASSERT_FALSE(scheduler.http_url().empty());
  httplib::Client http(scheduler.http_url());
  auto health = http.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  // The worker's results in memory, as its heartbeats report them: 3 × 1000 doubles. A
  // heartbeat may have left before the last of them was stored: wait for the one after.
  const std::string managed =
      "\ntessera_scheduler_managed_bytes " +
      std::to_string(3 * tessera::Value::of(std::vector<double>(1000)).nbytes()) + "\n";
  std::string text;
  ASSERT_TRUE(InProcessCluster::wait_until([&] {
    auto r = http.Get("/metrics");
    text = r ? r->body : "";
    return text.find("tessera_scheduler_tasks{state=\"memory\"} 3") != std::string::npos &&
           text.find("tessera_scheduler_tasks{state=\"processing\"} 1") != std::string::npos &&
           text.find(managed) != std::string::npos;
  })) << text;
  EXPECT_NE(text.find("# TYPE tessera_scheduler_workers gauge\ntessera_scheduler_workers 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tessera_scheduler_clients 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tessera_scheduler_dropped_messages_total 0\n"), std::string::npos) << text;
  const std::string no_host = error_of<tessera::IOError>([] {
    td::SchedulerServer bad({.address = "tcp://127.0.0.1:0", .http_address = "256.0.0.1:1"});
  });
  EXPECT_TRUE(no_host.starts_with("cannot serve HTTP on '256.0.0.1:1': no such host (")) << no_host;
  // The port this scheduler serves on is taken: the second one says so.
  const std::string port = scheduler.http_url().substr(scheduler.http_url().rfind(':') + 1);
  EXPECT_EQ(error_of<tessera::IOError>([&] {
              td::SchedulerServer taken(
                  {.address = "tcp://127.0.0.1:0", .http_address = "127.0.0.1:" + port});
            }),
            "cannot serve HTTP on '127.0.0.1:" + port + "': Address already in use");
  // No host: every interface (Dask's ":8787").
  td::SchedulerServer everywhere({.address = "tcp://127.0.0.1:0", .http_address = ":0"});
  everywhere.start();
  ASSERT_TRUE(everywhere.http_url().starts_with("http://0.0.0.0:")) << everywhere.http_url();
  httplib::Client any("127.0.0.1", std::stoi(everywhere.http_url().substr(15)));
  auto ok = any.Get("/health");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "ok\n");
}

// The scheduler logs who joins and leaves, by name; a name cannot forge a log line.
TEST(SchedulerLog, NamesClientsAndWorkersWithoutControlCharacters) {
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto log = td::logger("scheduler");
  log->sinks().push_back(ring);
  {
    InProcessCluster c;
    Client client(c.scheduler.address(),
                  {.name = "evil\n[scheduler] [info] worker x joined", .set_as_default = false});
    EXPECT_EQ(client.submit(ptest_inc, int64_t{1}).result(10000ms), 2);
  }
  log->sinks().pop_back();
  const auto lines = ring->last_formatted();
  auto has = [&](const std::string& text) {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has("[info] client evil?[scheduler] [info] worker x joined connected"));
  EXPECT_TRUE(has("[info] client evil?[scheduler] [info] worker x joined left: closed"));
  EXPECT_TRUE(has(" joined: 2 threads\n"));  // the in-process cluster's second worker
  for (const auto& l : lines) EXPECT_EQ(std::count(l.begin(), l.end(), '\n'), 1) << l;
}

// Dask's submit and map keywords: key, pure, priority, retries.
TEST(Client, SubmitOptionsNameTasksRetryThemAndOrderThem) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  // key: the task's own (submit) or its keys' prefix (map).
  auto named = client.submit({.key = "my-answer"}, ptest_inc, int64_t{41});
  EXPECT_EQ(named.key(), tessera::Key("my-answer"));
  EXPECT_EQ(named.result(10000ms), 42);
  auto plain = client.map(ptest_inc, std::vector<int64_t>{1, 2});
  auto batch = client.map({.key = "batch"}, ptest_inc, std::vector<int64_t>{1, 2});
  ASSERT_EQ(batch.size(), 2U);
  for (size_t i = 0; i < 2; ++i) {
    const std::string own = plain[i].key().str(), k = batch[i].key().str();
    EXPECT_EQ(k, "batch" + own.substr(own.rfind('-'))) << k;  // the same token, renamed
  }
  EXPECT_NE(batch[0].key(), batch[1].key());
  EXPECT_EQ(client.gather(batch, 10000ms), (std::vector<int64_t>{2, 3}));
  // pure (the default): the same call is one task, computed once; pure = false: a new task
  // every call.
  (void)ptest_take_record();
  auto p1 = client.submit(ptest_record, int64_t{7}, int64_t{0});
  auto p2 = client.submit(ptest_record, int64_t{7}, int64_t{0});
  EXPECT_EQ(p1.key(), p2.key());
  EXPECT_EQ(p2.result(10000ms), 7);
  auto i1 = client.submit({.pure = false}, ptest_record, int64_t{7}, int64_t{0});
  auto i2 = client.submit({.pure = false}, ptest_record, int64_t{7}, int64_t{0});
  EXPECT_NE(i1.key(), i2.key());
  EXPECT_NE(i1.key(), p1.key());
  EXPECT_EQ(i1.key().str().rfind("ptest_record-", 0), 0U) << i1.key().str();
  EXPECT_EQ(i1.result(10000ms) + i2.result(10000ms), 14);
  EXPECT_EQ(ptest_take_record(), (std::vector<int64_t>{7, 7, 7}));
  // retries: a task failing twice succeeds on its third run; with one retry it fails with
  // its last error, and so does what depends on it.
  ptest_flaky_reset();  // counts are per process: again under --gtest_repeat
  auto twice = client.submit({.retries = 2}, ptest_flaky, int64_t{1001}, int64_t{2});
  EXPECT_EQ(twice.result(10000ms), 1002);
  auto once = client.submit({.retries = 1}, ptest_flaky, int64_t{1002}, int64_t{2});
  auto after = client.submit(ptest_inc, once);
  const std::string failed = error_of<tessera::TaskError>([&] { (void)after.result(10000ms); });
  EXPECT_NE(failed.find("ptest_flaky: call 2 of 1002 failed"), std::string::npos) << failed;
  auto never = client.submit(ptest_flaky, int64_t{1003}, int64_t{1});
  EXPECT_NE(error_of<tessera::TaskError>([&] {
              (void)never.result(10000ms);
            }).find("ptest_flaky: call 1 of 1003 failed"),
            std::string::npos);
  EXPECT_EQ(error_of<tessera::ValueError>(
                [&] { (void)client.submit({.retries = 1001}, ptest_inc, int64_t{1}); }),
            "1001 retries, more than the 1000 allowed");
  // A graph the scheduler would drop for its size is refused here, saying why.
  tessera::detail::set_message_limits_for_tests(client, 1 << 20, 4096);
  const std::string big = error_of<tessera::ValueError>(
      [&] { (void)client.submit(ptest_total, std::vector<double>(1000, 1.0)); });
  EXPECT_TRUE(big.starts_with("a graph of 1 tasks holds ")) << big;
  EXPECT_NE(big.find(" bytes of tasks, over the limit of 4096 for a message frame; scatter its "
                     "large values first, or submit it in parts"),
            std::string::npos)
      << big;
  tessera::detail::set_message_limits_for_tests(client, 64, 1 << 20);
  std::vector<int64_t> many(100);
  std::iota(many.begin(), many.end(), 0);
  const std::string header =
      error_of<tessera::ValueError>([&] { (void)client.map(ptest_inc, many); });
  EXPECT_TRUE(header.starts_with("a graph of 100 tasks makes a message header of ")) << header;
  EXPECT_NE(header.find(" bytes, over the limit of 64; submit it in parts"), std::string::npos)
      << header;
  tessera::detail::set_message_limits_for_tests(client, 1 << 28, size_t{1} << 31);
  EXPECT_EQ(client.submit(ptest_total, std::vector<double>(1000, 1.0)).result(10000ms), 1000.0);
}

// priority: with the one thread busy, tasks submitted later with a higher priority run
// before the ones waiting.
TEST(Client, AHigherPriorityRunsBeforeTasksWaiting) {
  OneThreadCluster c;
  auto& scheduler = c.scheduler;
  auto& client = *c.client;
  (void)ptest_take_record();
  GateClosed gate;
  // The worker's one thread waits at the gate until every task is submitted.
  auto blocker = client.submit({.pure = false}, ptest_wait_gate, int64_t{-1});
  std::vector<int64_t> lows(10), highs(3);
  std::iota(lows.begin(), lows.end(), 0);
  std::iota(highs.begin(), highs.end(), 100);
  auto low = client.map(ptest_record, lows, std::vector<int64_t>(lows.size(), 5));
  auto high =
      client.map({.priority = 10}, ptest_record, highs, std::vector<int64_t>(highs.size(), 5));
  // Both updates reach the scheduler (in order, on one connection) before the gate opens.
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return scheduler.task_count() >= 14; }));
  ptest_open_gate();
  EXPECT_EQ(blocker.result(20000ms), -1);
  ASSERT_TRUE(tessera::wait(low, 20000ms));
  ASSERT_TRUE(tessera::wait(high, 20000ms));
  const auto ran = ptest_take_record();
  ASSERT_EQ(ran.size(), 13U);
  expect_highs_ran_first(ran, 102);
}

TEST(Client, ComputeFusesLinearChainsBeforeSendingThem) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  auto a = tessera::delayed(ptest_inc)(int64_t{1});
  auto b = tessera::delayed(ptest_inc)(a);
  auto d = tessera::delayed(ptest_add)(b, int64_t{10});  // a -> b -> d: one task on a worker
  const size_t before = c.w1.executed() + c.w2.executed();
  EXPECT_EQ(d.compute(client), 13);
  EXPECT_EQ(c.w1.executed() + c.w2.executed() - before, 1U);
  // Without graph optimization each call is a task of its own.
  auto e = tessera::delayed(ptest_add)(b, int64_t{20});
  const size_t before2 = c.w1.executed() + c.w2.executed();
  auto opts = client.options();
  opts.optimize_graph = false;
  EXPECT_EQ(e.compute(opts), 23);
  EXPECT_EQ(c.w1.executed() + c.w2.executed() - before2, 3U);
}

// The issue's security test: a cluster secured with a CURVE key computes as usual (the
// workers fetch from each other with it too); a client with another key, or none, is
// refused at once with the reason, and the scheduler logs each refusal.
TEST(Security, ASecuredClusterAdmitsItsKeyAndRefusesAndLogsOthers) {
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  td::logger("scheduler")->sinks().push_back(ring);
  ::unsetenv("TESSERA_CURVE_KEY_FILE");
  tessera::LocalCluster cluster({.n_workers = 2,
                                 .threads_per_worker = 1,
                                 .worker_program = TESSERA_WORKER_PROGRAM,
                                 .preload = {TESSERA_TEST_OPS},
                                 .security = tessera::Security::generate()});
  EXPECT_TRUE(cluster.security().enabled());
  {
    Client client(cluster, quiet());
    std::vector<int64_t> xs(40);
    std::iota(xs.begin(), xs.end(), 0);
    auto incs = client.map(ptest_inc, xs);
    EXPECT_EQ(client.submit(ptest_sum, incs).result(20000ms), 40 * 41 / 2);
    const auto big = client.scatter(std::vector<double>(1 << 18, 0.5));
    EXPECT_EQ(big.result().size(), size_t{1} << 18);
  }
  const std::string address = cluster.scheduler_address();
  const std::string refusal =
      "the scheduler at " + address + " refused this client: the CURVE handshake failed";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string wrong = error_of<tessera::SchedulerError>([&] {
    Client(address, {.connect_timeout = 10000ms,
                     .set_as_default = false,
                     .security = tessera::Security::generate()});
  });
  EXPECT_EQ(wrong.rfind(refusal, 0), 0U) << wrong;
  const std::string plain = error_of<tessera::SchedulerError>(
      [&] { Client(address, {.connect_timeout = 10000ms, .set_as_default = false}); });
  EXPECT_EQ(plain.rfind(refusal, 0), 0U) << plain;
  // Made from the cluster but with another key: over TCP, refused like any other peer
  // (the cluster's own key goes through the scheduler's in-process address).
  const std::string other = error_of<tessera::SchedulerError>([&] {
    Client(cluster, {.connect_timeout = 10000ms,
                     .set_as_default = false,
                     .security = tessera::Security::generate()});
  });
  EXPECT_EQ(other.rfind(refusal, 0), 0U) << other;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5000ms);  // not the connect timeout
  // Each refusal logged as a warning by the scheduler (it looks every 50 ms).
  std::vector<std::string> logged;
  EXPECT_TRUE(InProcessCluster::wait_until([&] {
    logged = ring->last_formatted();
    return std::count_if(logged.begin(), logged.end(), [](const std::string& l) {
             return l.find("[warning] refused a connection") != std::string::npos;
           }) >= 3;
  })) << ::testing::PrintToString(logged);
  // The cluster still serves its own clients.
  Client again(cluster, quiet());
  EXPECT_EQ(again.submit(ptest_add, int64_t{40}, int64_t{2}).result(), 42);
  auto& sinks = td::logger("scheduler")->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), ring), sinks.end());
}

// A small result travels with task-finished and the scheduler's report, so result() asks no
// worker for it; a large one is fetched from the worker that holds it.
TEST(Client, SmallResultsArriveWithoutAFetch) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  EXPECT_EQ(client.submit(ptest_inc, int64_t{41}).result(), 42);
  auto fs = client.map(ptest_inc, std::vector<int64_t>{1, 2, 3, 4, 5});
  EXPECT_EQ(client.gather(fs), (std::vector<int64_t>{2, 3, 4, 5, 6}));
  EXPECT_EQ(c.w1.served() + c.w2.served(), 0U);
  const auto big = client.submit(ptest_block, int64_t{0}, int64_t{1000}).result();  // 8000 B
  EXPECT_EQ(big.size(), 1000U);
  EXPECT_EQ(big[999], 999.0);
  EXPECT_EQ(c.w1.served() + c.w2.served(), 1U);
}

// Work stealing through the real shells: six slow tasks that need a result held by worker A
// all go to A (their input is there); a worker B that joins later is idle, so once the
// tasks' duration is known it steals queued ones from A, fetching the input itself.
TEST(Client, AnIdleWorkerStealsQueuedTasks) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0", .worker_timeout = 5000ms});
  scheduler.start();
  td::WorkerServer a({.scheduler = scheduler.address(), .nthreads = 1});
  a.start();
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return scheduler.worker_count() == 1; }));
  Client client(scheduler.address(), quiet());
  // Six inputs, one per slow task (a kind with so many inputs is placed by locality, not
  // queued as root-ish).
  std::vector<Future<std::vector<double>>> inputs;
  for (int64_t i = 0; i < 6; ++i) inputs.push_back(client.submit(ptest_block, i, int64_t{1000}));
  tessera::wait(inputs);
  std::vector<Future<double>> slow;
  for (int64_t i = 0; i < 6; ++i) slow.push_back(client.submit(ptest_slow_total, inputs[i], 150));
  std::this_thread::sleep_for(50ms);
  td::WorkerServer b({.scheduler = scheduler.address(), .nthreads = 1});
  b.start();
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(slow[i].result(20000ms), 1000.0 * static_cast<double>(i) + 999.0 * 1000 / 2);
  EXPECT_GE(b.executed(), 1U) << "nothing was stolen";
  EXPECT_EQ(a.executed() + b.executed(), 12U);
}

// The issue's rule for scattered data: the scheduler keeps no copy; when every worker that
// held it dies, the client (which still holds the future) sends it again, and work that
// needs it completes on the new workers.
TEST(LocalCluster, ScatteredDataIsSentAgainWhenItsWorkersDie) {
  tessera::LocalCluster cluster({.n_workers = 2,
                                 .threads_per_worker = 1,
                                 .worker_program = TESSERA_WORKER_PROGRAM,
                                 .preload = {TESSERA_TEST_OPS},
                                 .worker_timeout = 3000ms});  // sanitized workers are slow
  Client client(cluster, quiet());
  const auto sc = client.scatter(std::vector<double>(1 << 18, 0.5));
  EXPECT_EQ(client.submit(ptest_total, sc).result(60000ms), 131072.0);
  for (int pid : cluster.worker_pids()) kill(pid, SIGKILL);
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return cluster.worker_count() == 0; }, 20000ms));
  EXPECT_EQ(sc.result().size(), size_t{1} << 18);  // the client's own copy
  cluster.add_worker();
  cluster.add_worker();
  EXPECT_EQ(client.submit(ptest_slow_total, sc, int64_t{1}).result(60000ms), 131072.0);
}

// scheduler_info() lists the workers as they introduced themselves, in the order they
// joined; wait_for_workers() returns once enough have, and says how many had if not.
TEST(Client, SchedulerInfoListsTheWorkersAndWaitForWorkersWaitsForThem) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0"});
  scheduler.start();
  Client client(scheduler.address(), quiet());
  auto none = client.scheduler_info();
  EXPECT_EQ(none.address, scheduler.address());
  EXPECT_TRUE(none.workers.empty());
  EXPECT_EQ(error_of<tessera::TimeoutError>([&] { client.wait_for_workers(1, 100ms); }),
            "0 of the 1 workers waited for joined within 100 ms");

  td::WorkerServer a(
      {.scheduler = scheduler.address(), .name = "alpha", .nthreads = 2, .memory_limit = 1 << 30});
  a.start();
  // b joins while the client waits for two.
  std::optional<td::WorkerServer> b;
  std::jthread later([&] {
    std::this_thread::sleep_for(100ms);
    b.emplace(td::WorkerServer::Options{.scheduler = scheduler.address(), .nthreads = 1});
    b->start();
  });
  client.wait_for_workers(2, 10000ms);
  later.join();
  const auto info = client.scheduler_info();
  ASSERT_EQ(info.workers.size(), 2U);
  EXPECT_EQ(info.workers[0].name, "alpha");
  EXPECT_EQ(info.workers[0].address, a.data_address());
  EXPECT_EQ(info.workers[0].nthreads, 2);
  EXPECT_EQ(info.workers[0].memory_limit, uint64_t{1} << 30);
  EXPECT_FALSE(info.workers[0].paused);
  EXPECT_EQ(info.workers[1].name, b->data_address());  // no --name: its address
  EXPECT_EQ(info.workers[1].address, b->data_address());
  EXPECT_EQ(info.workers[1].nthreads, 1);
  EXPECT_EQ(info.workers[1].memory_limit, 0U);
  // A loopback scheduler: the workers listen on loopback by default.
  EXPECT_TRUE(a.data_address().starts_with("tcp://127.0.0.1:")) << a.data_address();

  // What a worker holds shows in its managed bytes (after its next heartbeat).
  auto block = client.submit(ptest_block, int64_t{1}, int64_t{1} << 16);
  block.wait();
  EXPECT_TRUE(InProcessCluster::wait_until([&] {
    uint64_t managed = 0;
    for (const auto& w : client.scheduler_info().workers) managed += w.managed_bytes;
    return managed >= (uint64_t{1} << 16) * sizeof(double);
  }));

  b->stop();
  EXPECT_TRUE(
      InProcessCluster::wait_until([&] { return client.scheduler_info().workers.size() == 1; }));
  client.close();
  EXPECT_EQ(error_of<tessera::SchedulerError>([&] { (void)client.scheduler_info(); }),
            fmt::format("the client of {} was closed", scheduler.address()));
}

// A scheduler bound to every interface is announced under this machine's address; a worker
// bound there too tells its peers the address it reaches the scheduler from; a contact
// address that names every interface is refused.
TEST(Client, ServersOnEveryInterfaceAnnounceAnAddressPeersCanReach) {
  if (td::this_machine_ip().starts_with("127."))
    GTEST_SKIP() << "this machine has no address but loopback's";
  td::SchedulerServer scheduler({.address = "tcp://0.0.0.0:0"});
  scheduler.start();
  const std::string port = scheduler.bound_address().substr(scheduler.bound_address().rfind(':'));
  EXPECT_TRUE(scheduler.bound_address().starts_with("tcp://0.0.0.0:")) << scheduler.bound_address();
  EXPECT_EQ(scheduler.address(), "tcp://" + td::this_machine_ip() + port);

  td::WorkerServer w(
      {.scheduler = scheduler.address(), .listen = "tcp://0.0.0.0:0", .nthreads = 1});
  w.start();
  EXPECT_TRUE(w.data_address().starts_with("tcp://" + td::this_machine_ip() + ":"))
      << w.data_address();
  // Through loopback, the same worker reaches the scheduler from 127.0.0.1.
  td::WorkerServer v(
      {.scheduler = "tcp://127.0.0.1" + port, .listen = "tcp://0.0.0.0:0", .nthreads = 1});
  v.start();
  EXPECT_TRUE(v.data_address().starts_with("tcp://127.0.0.1:")) << v.data_address();
  // Both addresses work: results fetched from either worker come back.
  Client client(scheduler.address(), quiet());
  client.wait_for_workers(2, 10000ms);
  std::vector<int64_t> xs(20);
  std::iota(xs.begin(), xs.end(), 0);
  auto blocks = client.map(ptest_block, xs, std::vector<int64_t>(20, 4096));
  double total = 0;
  for (const auto& b : client.gather(blocks)) total += std::accumulate(b.begin(), b.end(), 0.0);
  double want = 0;
  for (int64_t s : xs) want += 4096.0 * static_cast<double>(s) + 4095.0 * 4096 / 2;
  EXPECT_EQ(total, want);

  td::WorkerServer told(
      {.scheduler = scheduler.address(), .contact = "tcp://10.9.8.7:4321", .nthreads = 1});
  told.start();
  EXPECT_EQ(told.data_address(), "tcp://10.9.8.7:4321");
  EXPECT_TRUE(InProcessCluster::wait_until([&] {
    for (const auto& i : client.scheduler_info().workers)
      if (i.address == "tcp://10.9.8.7:4321") return true;
    return false;
  }));
  told.stop();
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              td::WorkerServer({.scheduler = scheduler.address(), .contact = "tcp://0.0.0.0:1"});
            }),
            "the contact address 'tcp://0.0.0.0:1' names every interface: give one that peers "
            "can reach");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              td::WorkerServer({.scheduler = scheduler.address(), .contact = "tcp://10.9.8.7:0"});
            }),
            "the contact address 'tcp://10.9.8.7:0' names no port: give the one peers can reach");
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              td::WorkerServer({.scheduler = scheduler.address(), .contact = "10.9.8.7:5"});
            }),
            "the contact address '10.9.8.7:5' is not tcp://host:port: it does not start with "
            "tcp://");
  EXPECT_EQ(error_of<tessera::ValueError>(
                [&] { td::WorkerServer({.scheduler = "tcp://127.0.0.1", .nthreads = 1}); }),
            "the scheduler's address 'tcp://127.0.0.1' is not tcp://host:port: no port");
}

// A worker that is stopped tells the scheduler, which at once runs elsewhere what it held
// or ran, long before the worker timeout would have noticed.
TEST(Client, AStoppedWorkerLeavesAtOnceAndItsWorkMovesOn) {
  td::SchedulerServer scheduler({.address = "tcp://127.0.0.1:0", .worker_timeout = 60000ms});
  scheduler.start();
  std::optional<td::WorkerServer> a(
      std::in_place, td::WorkerServer::Options{.scheduler = scheduler.address(), .nthreads = 1});
  a->start();
  Client client(scheduler.address(), quiet());
  std::vector<int64_t> seeds(8);
  std::iota(seeds.begin(), seeds.end(), 0);
  auto blocks = client.map(ptest_block, seeds, std::vector<int64_t>(8, 1000));
  tessera::wait(blocks);
  auto slow = client.submit(ptest_slow_inc, int64_t{5}, int64_t{300});
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return a->executed() >= 8; }));
  td::WorkerServer b({.scheduler = scheduler.address(), .nthreads = 1});
  b.start();
  const auto start = std::chrono::steady_clock::now();
  a->stop();
  EXPECT_TRUE(InProcessCluster::wait_until([&] { return scheduler.worker_count() == 1; }, 2000ms));
  a.reset();
  EXPECT_EQ(slow.result(20000ms), 6);
  // The blocks a held were lost with it: computed again on b.
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto v = blocks[i].result(20000ms);
    ASSERT_EQ(v.size(), 1000U);
    EXPECT_EQ(v[999], static_cast<double>(seeds[i]) + 999);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20000ms);
  EXPECT_GE(b.executed(), 1U);
}

// A scheduler that accepts the client but never answers its questions: scheduler_info
// gives up after its timeout, and wait_for_workers after its own, each saying so.
TEST(Client, SchedulerInfoAndWaitForWorkersGiveUpOnASilentScheduler) {
  tessera::comm::Server mute("tcp://127.0.0.1:0");
  std::atomic<bool> done{false};
  std::jthread serve([&] {
    while (!done) {
      auto in = mute.receive(20ms);
      if (in && in->message.op == tessera::comm::Handshake::kOp)
        mute.send(in->peer, tessera::comm::pack(tessera::comm::HandshakeReply{true, 1, ""}));
    }
  });
  Client client(mute.address(), quiet());
  EXPECT_EQ(error_of<tessera::TimeoutError>([&] { (void)client.scheduler_info(200ms); }),
            fmt::format("the scheduler at {} did not answer scheduler_info within 200 ms",
                        mute.address()));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of<tessera::TimeoutError>([&] { client.wait_for_workers(1, 300ms); }),
            "0 of the 1 workers waited for joined within 300 ms");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
  done = true;
}

// compute() on a client and persist() take Dask's priority and retries too.
TEST(Client, ComputeAndPersistTakePriorityAndRetries) {
  OneThreadCluster c;
  auto& scheduler = c.scheduler;
  auto& client = *c.client;
  ptest_flaky_reset();
  tessera::ComputeOptions retrying = client.options();
  retrying.retries = 2;
  EXPECT_EQ(tessera::delayed(ptest_flaky)(int64_t{2001}, int64_t{2}).compute(retrying), 2002);
  EXPECT_NE(error_of<tessera::TaskError>([&] {
              (void)tessera::delayed(ptest_flaky)(int64_t{2002}, int64_t{1}).compute(client);
            }).find("ptest_flaky: call 1 of 2002 failed"),
            std::string::npos);
  retrying.retries = 1001;
  EXPECT_EQ(error_of<tessera::ValueError>(
                [&] { (void)tessera::delayed(ptest_inc)(int64_t{1}).compute(retrying); }),
            "1001 retries, more than the 1000 allowed");
  auto kept =
      client.persist(tessera::delayed(ptest_flaky)(int64_t{2003}, int64_t{1}), {.retries = 1});
  EXPECT_EQ(tessera::delayed(ptest_inc)(kept).compute(client), 2005);

  // Held at a gate, the worker then runs the high-priority persist's tasks first.
  (void)ptest_take_record();
  GateClosed gate;
  auto blocker = client.submit({.pure = false}, ptest_wait_gate, int64_t{-1});
  auto records = [](int64_t from, int64_t n) {
    std::vector<tessera::Delayed<int64_t>> xs;
    for (int64_t i = from; i < from + n; ++i)
      xs.push_back(tessera::delayed(ptest_record)(i, int64_t{5}));
    return tessera::delayed(ptest_sum)(xs);
  };
  auto low = client.persist(records(0, 10));
  auto high = client.persist(records(100, 3), {.priority = 10});
  ASSERT_TRUE(InProcessCluster::wait_until([&] { return scheduler.task_count() >= 16; }));
  ptest_open_gate();
  EXPECT_EQ(blocker.result(20000ms), -1);
  EXPECT_EQ(low.compute(client), 45);
  EXPECT_EQ(high.compute(client), 303);
  const auto ran = ptest_take_record();
  ASSERT_EQ(ran.size(), 13U);
  expect_highs_ran_first(ran, 102);
}

// client.retry: an erred future and what failed through the same task run again.
TEST(Client, RetryRunsErredFuturesAgain) {
  InProcessCluster c;
  Client client(c.scheduler.address(), quiet());
  tessera::Client other(c.scheduler.address(), quiet());
  ptest_flaky_reset();
  auto f = client.submit(ptest_flaky, int64_t{3001}, int64_t{1});
  auto g = client.submit(ptest_inc, f);
  EXPECT_NE(error_of<tessera::TaskError>([&] {
              (void)g.result(10000ms);
            }).find("ptest_flaky: call 1 of 3001 failed"),
            std::string::npos);
  EXPECT_EQ(f.status(), FutureStatus::Error);
  // Another client holding f (the same call: the same key) sees the error too.
  auto f_there = other.submit(ptest_flaky, int64_t{3001}, int64_t{1});
  EXPECT_EQ(f_there.key(), f.key());
  EXPECT_NE(f_there.exception(10000ms), nullptr);
  auto fine = client.submit(ptest_inc, int64_t{1});
  EXPECT_EQ(fine.result(10000ms), 2);
  // A list with another client's future is refused before anything changes.
  auto foreign = other.submit(ptest_inc, int64_t{5});
  EXPECT_EQ(error_of<tessera::ValueError>([&] {
              client.retry(std::vector<tessera::FutureBase>{g, foreign});
            }),
            "retry(): a future belongs to another client");
  EXPECT_EQ(g.status(), FutureStatus::Error);
  // Once retry() returns, what failed with g here (f) is pending again too; in the other
  // client f becomes pending when its own connection brings the news. All come back right.
  client.retry(std::vector<Future<int64_t>>{g, fine});
  EXPECT_NE(f.status(), FutureStatus::Error);
  EXPECT_EQ(f.result(10000ms), 3002);
  EXPECT_EQ(g.result(10000ms), 3003);
  ASSERT_TRUE(
      InProcessCluster::wait_until([&] { return f_there.status() != FutureStatus::Error; }));
  EXPECT_EQ(f_there.result(10000ms), 3002);
  EXPECT_EQ(fine.result(), 2);  // not erred: left as it was
  client.close();
  EXPECT_EQ(
      error_of<tessera::SchedulerError>([&] { client.retry(std::vector<Future<int64_t>>{g}); }),
      fmt::format("the client of {} was closed", c.scheduler.address()));
}

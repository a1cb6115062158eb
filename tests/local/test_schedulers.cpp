#include <gtest/gtest.h>

#include <thread>

#include "local/local_ops.hpp"
#include "tessera/core.hpp"
#include "tessera/local.hpp"
#include "test_support.hpp"

namespace tessera {
namespace {

using testing::error_of;

Task lit(int64_t v) {
  return Task::literal(Value::of(v));
}
Task call(const char* op, std::vector<Arg> args) {
  return Task::call(op, std::move(args));
}
Arg ref(const char* k) {
  return Arg::ref(Key(k));
}

struct Case {
  std::string scheduler;
  int workers;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.scheduler << " with " << c.workers << " workers";
}

class EveryScheduler : public ::testing::TestWithParam<Case> {
 protected:
  ComputeOptions options() const {
    return {.scheduler = GetParam().scheduler, .num_workers = GetParam().workers};
  }
};

INSTANTIATE_TEST_SUITE_P(Local, EveryScheduler,
                         ::testing::Values(Case{"sync", 1}, Case{"threads", 1}, Case{"threads", 2},
                                           Case{"threads", 4}, Case{"threads", 8}),
                         [](const auto& info) {
                           return info.param.scheduler + std::to_string(info.param.workers);
                         });

TEST_P(EveryScheduler, SmallGraph) {
  Graph g;
  g.add(Key("a"), lit(1));
  g.add(Key("b"), call("localtest::inc", {ref("a")}));
  g.add(Key("c"), call("localtest::add", {ref("a"), ref("b")}));
  g.add(Key("s"), call("localtest::to_text", {ref("c")}));
  const std::vector<Key> outs{Key("c"), Key("s"), Key("a"), Key("c")};  // repeats are fine
  const auto r = get(g, outs, options());
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].get<int64_t>(), 3);
  EXPECT_EQ(r[1].get<std::string>(), "3");
  EXPECT_EQ(r[2].get<int64_t>(), 1);
  EXPECT_EQ(r[3].get<int64_t>(), 3);
  EXPECT_TRUE(get(g, std::vector<Key>{}, options()).empty());
}

TEST_P(EveryScheduler, RandomDagsMatchDirectComputation) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    const auto dag = testing::random_dag(seed, 2000 + 300 * seed, 1 + seed % 6);
    const auto expected = testing::random_dag_expected(dag);
    const auto r = get(dag.graph, dag.sinks, options());
    ASSERT_EQ(r.size(), dag.sinks.size());
    for (size_t i = 0; i < r.size(); ++i) {
      ASSERT_EQ(r[i].get<int64_t>(), expected[static_cast<size_t>(dag.sinks[i].index()[0])])
          << "seed " << seed;
    }
  }
}

TEST_P(EveryScheduler, IntermediateOutputsAndCulling) {
  const auto dag = testing::random_dag(99, 3000, 3);
  const auto expected = testing::random_dag_expected(dag);
  // Ask for some inner tasks: only what they need runs, and they are not released early.
  std::vector<Key> outs;
  for (size_t i = 100; i < 3000; i += 97) outs.push_back(dag.all[i]);
  const auto r = get(dag.graph, outs, options());
  for (size_t i = 0; i < outs.size(); ++i) {
    ASSERT_EQ(r[i].get<int64_t>(), expected[static_cast<size_t>(outs[i].index()[0])]);
  }
}

TEST_P(EveryScheduler, ResultsAreReleasedAfterTheirLastReader) {
  // A tree sum over 4096 leaves of Tracked objects: peak live objects stays logarithmic
  // per worker, not proportional to the number of leaves.
  Graph g;
  std::vector<Key> level;
  for (int64_t i = 0; i < 4096; ++i) {
    Key k("leaf", {i});
    g.add(k, Task::call("localtest::make_tracked", {Arg(Value::of(i))}));
    level.push_back(k);
  }
  for (int64_t d = 0; level.size() > 1; ++d) {
    std::vector<Key> next;
    for (size_t i = 0; i < level.size(); i += 2) {
      Key k("sum", {d, static_cast<int64_t>(i)});
      g.add(k, Task::call("localtest::add_tracked", {Arg::ref(level[i]), Arg::ref(level[i + 1])}));
      next.push_back(k);
    }
    level = next;
  }
  g.add(Key("total"), Task::call("localtest::unwrap", {Arg::ref(level[0])}));
  localtest::Tracked::reset();
  const auto r = get(g, std::vector<Key>{Key("total")}, options());
  EXPECT_EQ(r[0].get<int64_t>(), 4096 * 4095 / 2);
  EXPECT_EQ(localtest::Tracked::live.load(), 0);
  // Each worker holds at most a path of partial sums (12 levels) plus what is in flight.
  EXPECT_LE(localtest::Tracked::peak.load(), 8 + 16 * GetParam().workers) << "peak live results";
}

TEST_P(EveryScheduler, TaskExceptionNamesKeyAndCancelsTheRest) {
  Graph g;
  g.add(Key("c", {0}), lit(0));
  for (int64_t i = 1; i <= 2000; ++i) {
    const Arg prev = Arg::ref(Key("c", {i - 1}));
    g.add(Key("c", {i}), i == 10
                             ? Task::call("localtest::fail_if", {prev, Arg(Value::of(int64_t{9}))})
                             : Task::call("localtest::inc", {prev}));
  }
  localtest::calls = 0;
  try {
    get(g, std::vector<Key>{Key("c", {2000})}, options());
    FAIL() << "expected TaskError";
  } catch (const TaskError& e) {
    EXPECT_EQ(std::string(e.what()),
              "task '('c', 10)' (op 'localtest::fail_if') raised std::runtime_error: bad value 9");
    EXPECT_EQ(e.key(), "('c', 10)");
    EXPECT_EQ(e.op(), "localtest::fail_if");
    EXPECT_THROW(e.rethrow_original(), std::runtime_error);
  }
  EXPECT_EQ(localtest::calls.load(), 9);  // nothing after the failure ran
  // The scheduler is usable afterwards.
  Graph ok;
  ok.add(Key("x"), lit(41));
  ok.add(Key("y"), call("localtest::inc", {ref("x")}));
  EXPECT_EQ(get(ok, std::vector<Key>{Key("y")}, options())[0].get<int64_t>(), 42);
}

// ComputeOptions::retries: a task that throws runs again, up to that many times; past them
// the computation fails with the last error.
TEST_P(EveryScheduler, RetriesRunAThrowingTaskAgain) {
  localtest::flaky_reset();
  Graph g;
  for (int64_t i = 0; i < 20; ++i) {
    g.add(Key("f", {i}),
          Task::call("localtest::flaky", {Arg(Value::of(i)), Arg(Value::of(i % 3))}));
    g.add(Key("g", {i}), call("localtest::inc", {Arg::ref(Key("f", {i}))}));
  }
  std::vector<Key> outs;
  for (int64_t i = 0; i < 20; ++i) outs.push_back(Key("g", {i}));
  ComputeOptions o = options();
  o.retries = 2;
  const auto r = get(g, outs, o);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(r[static_cast<size_t>(i)].get<int64_t>(), i + 1);
  // One retry is not enough for the tasks that fail twice.
  localtest::flaky_reset();
  o.retries = 1;
  const std::string msg = error_of<TaskError>([&] { get(g, outs, o); });
  EXPECT_NE(msg.find("raised std::runtime_error: flaky: call 2 of "), std::string::npos) << msg;
  // And none by default.
  localtest::flaky_reset();
  EXPECT_NE(error_of<TaskError>([&] {
              get(g, std::vector<Key>{Key("g", {1})}, options());
            }).find("flaky: call 1 of 1"),
            std::string::npos);
}

TEST_P(EveryScheduler, ManyParallelFailuresReportOne) {
  Graph g;
  std::vector<Key> outs;
  for (int64_t i = 0; i < 500; ++i) {
    g.add(Key("f", {i}),
          Task::call("localtest::fail_if", {Arg(Value::of(i % 7)), Arg(Value::of(int64_t{3}))}));
    outs.push_back(Key("f", {i}));
  }
  const std::string msg = error_of<TaskError>([&] { get(g, outs, options()); });
  EXPECT_NE(msg.find("raised std::runtime_error: bad value 3"), std::string::npos) << msg;
}

TEST_P(EveryScheduler, BadGraphsFailBeforeRunning) {
  Graph cyc;
  cyc.add(Key("a"), call("localtest::inc", {ref("b")}));
  cyc.add(Key("b"), call("localtest::inc", {ref("a")}));
  const std::string c =
      error_of<GraphError>([&] { get(cyc, std::vector<Key>{Key("a")}, options()); });
  EXPECT_TRUE(c == "the graph has a cycle: a -> b -> a" ||
              c == "the graph has a cycle: b -> a -> b")
      << c;

  Graph missing;
  missing.add(Key("a"), call("localtest::inc", {ref("nowhere")}));
  EXPECT_EQ(error_of<GraphError>([&] { get(missing, std::vector<Key>{Key("a")}, options()); }),
            "task 'a' depends on 'nowhere', which is not in the graph");
  EXPECT_EQ(error_of<KeyError>([&] { get(missing, std::vector<Key>{Key("zz")}, options()); }),
            "key 'zz' is not in the graph (1 tasks)");

  Graph wrong;
  wrong.add(Key("s"), Task::literal(Value::of("text")));
  wrong.add(Key("n"), call("localtest::inc", {ref("s")}));
  EXPECT_EQ(error_of<TaskError>([&] { get(wrong, std::vector<Key>{Key("n")}, options()); }),
            "task 'n' (op 'localtest::inc') raised tessera::TypeError: op 'localtest::inc' "
            "argument 1 expects "
            "'int64', but the value given has type 'string' (cannot read a value of type 'string' "
            "as 'int64')");
}

TEST_P(EveryScheduler, UnneededBrokenTasksAreIgnored) {
  Graph g;
  g.add(Key("a"), lit(1));
  g.add(Key("broken"), call("localtest::inc", {ref("missing")}));
  EXPECT_EQ(get(g, std::vector<Key>{Key("a")}, options())[0].get<int64_t>(), 1);
}

TEST_P(EveryScheduler, LongChain) {
  Graph g;
  g.add(Key("c", {0}), lit(0));
  for (int64_t i = 1; i < 200000; ++i)
    g.add(Key("c", {i}),
          Task::call("localtest::add", {Arg::ref(Key("c", {i - 1})), Arg(Value::of(int64_t{1}))}));
  EXPECT_EQ(get(g, std::vector<Key>{Key("c", {199999})}, options())[0].get<int64_t>(), 199999);
}

TEST_P(EveryScheduler, ComputeInsideATask) {
  Graph g;
  std::vector<Key> outs;
  for (int64_t i = 0; i < 16; ++i) {
    g.add(Key("n", {i}), Task::call("localtest::nested_compute", {Arg(Value::of(i))}));
    outs.push_back(Key("n", {i}));
  }
  const auto r = get(g, outs, options());
  for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(r[static_cast<size_t>(i)].get<int64_t>(), i + 1);
}

TEST(Schedulers, ConcurrentComputationsFromManyThreads) {
  const auto dag = testing::random_dag(5, 3000, 3);
  const auto expected = testing::random_dag_expected(dag);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep) {
        const auto r = get(dag.graph, dag.sinks, {.scheduler = "threads", .num_workers = 2});
        for (size_t i = 0; i < r.size(); ++i) {
          if (r[i].get<int64_t>() != expected[static_cast<size_t>(dag.sinks[i].index()[0])])
            ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Schedulers, NamesAndOptions) {
  const auto names = scheduler_names();
  for (const char* n : {"sync", "threads", "synchronous", "threading", "single-threaded"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  EXPECT_EQ(local::sync_scheduler()->name(), "sync");
  EXPECT_EQ(local::threaded_scheduler()->name(), "threads");
  Graph g;
  g.add(Key("a"), lit(1));
  const std::vector<Key> outs{Key("a")};
  EXPECT_EQ(error_of<SchedulerError>([&] { get(g, outs, {.scheduler = "gpu"}); }),
            "unknown scheduler 'gpu' (available: processes, single-threaded, sync, synchronous, "
            "threading, threads)");
  EXPECT_EQ(error_of<SchedulerError>([&] { get(g, outs, {.scheduler = "distributed"}); }),
            "unknown scheduler 'distributed' (available: processes, single-threaded, sync, "
            "synchronous, threading, threads); connect a tessera::Client first (the newest client "
            "is the 'distributed' scheduler)");
  EXPECT_EQ(error_of<ValueError>([&] { get(g, outs, {.num_workers = -1}); }),
            "num_workers must be 0 (default) or positive, got -1");
  EXPECT_GE(default_num_workers(), 1);
  const std::string before = default_scheduler();
  set_default_scheduler("sync");
  EXPECT_EQ(default_scheduler(), "sync");
  EXPECT_EQ(get(g, outs)[0].get<int64_t>(), 1);
  set_default_scheduler(before);
}

// Records every callback, to check their order and arguments.
struct Recorder : Callback {
  std::mutex m;
  std::vector<std::string> events;
  std::atomic<int> pre{0}, post{0};
  int max_worker = -1;
  void on_start(const RunInfo& r) override {
    std::lock_guard l(m);
    events.push_back(fmt_start(r));
  }
  static std::string fmt_start(const RunInfo& r) {
    return "start " + std::string(r.scheduler) + " " + std::to_string(r.num_tasks);
  }
  void on_pretask(const TaskEvent& t) override {
    ++pre;
    std::lock_guard l(m);
    max_worker = std::max(max_worker, t.worker);
  }
  void on_posttask(const TaskEvent&, const Value&) override { ++post; }
  void on_finish(const RunInfo&, bool failed) override {
    std::lock_guard l(m);
    events.push_back(failed ? "finish failed" : "finish ok");
  }
};

TEST_P(EveryScheduler, CallbacksSeeEveryTask) {
  const auto dag = testing::random_dag(11, 1000, 3);
  Recorder rec;
  ComputeOptions o = options();
  o.callbacks = {&rec};
  get(dag.graph, dag.sinks, o);
  EXPECT_EQ(rec.pre.load(), 1000);
  EXPECT_EQ(rec.post.load(), 1000);
  EXPECT_LT(rec.max_worker, GetParam().workers);
  ASSERT_EQ(rec.events.size(), 2u);
  EXPECT_EQ(rec.events[0], "start " + GetParam().scheduler + " 1000");
  EXPECT_EQ(rec.events[1], "finish ok");

  Recorder global;
  global.activate();
  Graph bad;
  bad.add(Key("f"), Task::call("localtest::fail_if",
                               {Arg(Value::of(int64_t{1})), Arg(Value::of(int64_t{1}))}));
  EXPECT_THROW(get(bad, std::vector<Key>{Key("f")}, options()), TaskError);
  global.deactivate();
  get(bad, std::vector<Key>{}, options());
  ASSERT_EQ(global.events.size(), 2u);
  EXPECT_EQ(global.events[1], "finish failed");
}

}  // namespace
}  // namespace tessera

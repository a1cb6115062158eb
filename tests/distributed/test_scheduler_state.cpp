// The scheduler's state machine, transition by transition, with every invariant checked
// after each event (Options::validate), and a randomized simulation: random graphs, workers
// that compute real values from what they fetch, die, pause and join, until every wanted
// result is exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <iostream>
#include <map>
#include <random>
#include <set>

#include "distributed/scheduler_state.hpp"
#include "tessera/core/error.hpp"

namespace td = tessera::distributed;
using td::TaskStatus;
using tessera::Key;

namespace {

// prefix + i, built by appending (GCC 12 warns wrongly, -Wrestrict, on "r" + to_string(i)).
std::string named(const char* prefix, int64_t i) {
  std::string out(prefix);
  out += std::to_string(i);
  return out;
}

td::TaskSpec spec(const std::string& key, std::vector<std::string> deps = {},
                  uint64_t priority = 0) {
  td::TaskSpec s{Key(key), {}, priority, nullptr};
  for (const auto& d : deps) s.dependencies.emplace_back(d);
  return s;
}

std::vector<Key> keys(std::initializer_list<const char*> names) {
  std::vector<Key> out;
  for (const char* n : names) out.emplace_back(n);
  return out;
}

// The actions of one kind.
template <class A>
std::vector<A> only(const std::vector<td::Action>& actions) {
  std::vector<A> out;
  for (const auto& a : actions)
    if (const A* x = std::get_if<A>(&a)) out.push_back(*x);
  return out;
}

std::vector<std::string> computed(const std::vector<td::Action>& actions) {
  std::vector<std::string> out;
  for (const auto& c : only<td::ComputeTask>(actions))
    out.push_back(c.key.str() + "@" + std::to_string(c.worker));
  return out;
}

std::set<std::string> freed(const std::vector<td::Action>& actions) {
  std::set<std::string> out;
  for (const auto& f : only<td::FreeKeys>(actions))
    for (const auto& k : f.keys) out.insert(k.str() + "@" + std::to_string(f.worker));
  return out;
}

constexpr int64_t kMod = 1'000'000'007;

td::SchedulerState::Options validating() {
  return {.validate = true};
}

// A chain c-0 … c-3 of a tiny kind on worker 1, its head done: c-1 is processing there,
// c-2 and c-3 were sent ahead of their inputs.
void start_tiny_chain(td::SchedulerState& s) {
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::UpdateGraph{
      .client = 1,
      .tasks = {spec("c-0"), spec("c-1", {"c-0"}), spec("c-2", {"c-1"}), spec("c-3", {"c-2"})},
      .wanted = keys({"c-3"})});
  s.handle(td::TaskFinished{.worker = 1, .key = Key("c-0"), .nbytes = 8, .duration = 1e-5});
}

}  // namespace

TEST(SchedulerState, ComputesAChainAndReleasesIntermediates) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  auto out = s.handle(td::UpdateGraph{.client = 7,
                                      .tasks = {spec("a"), spec("b", {"a"}), spec("c", {"a", "b"})},
                                      .wanted = keys({"c"})});
  EXPECT_EQ(computed(out), std::vector<std::string>{"a@1"});
  EXPECT_EQ(s.status(Key("b")), TaskStatus::Waiting);
  EXPECT_EQ(s.status(Key("c")), TaskStatus::Waiting);

  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("a"), .nbytes = 8});
  ASSERT_EQ(computed(out), std::vector<std::string>{"b@1"});
  const auto b = only<td::ComputeTask>(out)[0];
  ASSERT_EQ(b.who_has.size(), 1U);
  EXPECT_EQ(b.who_has[0].first, Key("a"));
  EXPECT_EQ(b.who_has[0].second, std::vector<td::WorkerId>{1});
  EXPECT_EQ(b.nbytes, std::vector<uint64_t>{8});  // a's size, as its worker reported it

  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("b"), .nbytes = 8});
  EXPECT_EQ(computed(out), std::vector<std::string>{"c@1"});
  EXPECT_TRUE(freed(out).empty());  // c still needs a and b

  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("c"), .nbytes = 16});
  const auto mem = only<td::ReportMemory>(out);
  ASSERT_EQ(mem.size(), 1U);
  EXPECT_EQ(mem[0].client, 7U);
  EXPECT_EQ(mem[0].key, Key("c"));
  EXPECT_EQ(mem[0].nbytes, 16U);
  EXPECT_EQ(freed(out), (std::set<std::string>{"a@1", "b@1"}));
  EXPECT_EQ(s.status(Key("a")), TaskStatus::Released);  // kept: c could need a recompute
  EXPECT_EQ(s.status(Key("c")), TaskStatus::Memory);

  // The client drops its future: everything is forgotten.
  out = s.handle(td::ReleaseKeys{.client = 7, .keys = keys({"c"})});
  EXPECT_EQ(freed(out), (std::set<std::string>{"c@1"}));
  EXPECT_EQ(s.size(), 0U);
  EXPECT_EQ(s.status(Key("a")), TaskStatus::Forgotten);
}

TEST(SchedulerState, RootTasksWaitInTheQueueWhileWorkersAreSaturated) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  std::vector<td::TaskSpec> tasks;
  std::vector<Key> wanted;
  for (int i = 0; i < 10; ++i) {
    // Priorities reversed: r9 first.
    tasks.push_back(spec(named("r", i), {}, static_cast<uint64_t>(9 - i)));
    wanted.emplace_back(named("r", i));
  }
  auto out = s.handle(td::UpdateGraph{.client = 1, .tasks = tasks, .wanted = wanted});
  // ceil(1 × 1.1) = 2 tasks per worker; the rest queued.
  EXPECT_EQ(computed(out).size(), 4U);
  EXPECT_EQ(s.count(TaskStatus::Queued), 6U);
  EXPECT_EQ(s.processing_count(1), 2U);
  EXPECT_EQ(s.processing_count(2), 2U);
  std::set<std::string> first;
  for (const auto& c : only<td::ComputeTask>(out)) first.insert(c.key.str());
  EXPECT_EQ(first, (std::set<std::string>{"r9", "r8", "r7", "r6"}));
  // A finished task makes room for the next in priority order, on the same worker.
  const auto on1 = only<td::ComputeTask>(out)[0];
  out = s.handle(td::TaskFinished{.worker = on1.worker, .key = on1.key, .nbytes = 1});
  ASSERT_EQ(computed(out).size(), 1U);
  EXPECT_EQ(only<td::ComputeTask>(out)[0].key, Key("r5"));
  EXPECT_EQ(only<td::ComputeTask>(out)[0].worker, on1.worker);
  // A third worker takes queued work at once.
  out = s.handle(td::AddWorker{.worker = 3, .nthreads = 1});
  EXPECT_EQ(computed(out), (std::vector<std::string>{"r4@3", "r3@3"}));
}

// Dask's root-ish tasks: a kind of task much larger than the cluster that depends on a few
// tasks in all (one shared input here) is queued like root tasks and spread over the least
// loaded workers, not piled up where the input is; a kind with many inputs, or a small
// kind, is placed where its inputs are.
TEST(SchedulerState, TasksSharingAFewInputsAreQueuedLikeRootTasks) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  std::vector<td::TaskSpec> tasks{spec("shared")};
  std::vector<Key> wanted;
  for (int i = 0; i < 10; ++i) {
    tasks.push_back(spec(named("load-", i), {"shared"}, static_cast<uint64_t>(i + 1)));
    wanted.emplace_back(named("load-", i));
  }
  auto out = s.handle(td::UpdateGraph{.client = 1, .tasks = tasks, .wanted = wanted});
  ASSERT_EQ(computed(out).size(), 1U);
  const td::WorkerId holder = only<td::ComputeTask>(out)[0].worker;
  out = s.handle(td::TaskFinished{.worker = holder, .key = Key("shared"), .nbytes = 8});
  // 10 > 2 × 2 threads, one input: 2 per worker (saturation), both workers, 6 queued.
  EXPECT_EQ(computed(out).size(), 4U);
  EXPECT_EQ(s.processing_count(1), 2U);
  EXPECT_EQ(s.processing_count(2), 2U);
  EXPECT_EQ(s.count(TaskStatus::Queued), 6U);

  // Each task with inputs of its own: placed by locality, none queued.
  td::SchedulerState many(validating());
  many.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  std::vector<td::TaskSpec> specs;
  std::vector<Key> want;
  for (int i = 0; i < 10; ++i) {
    specs.push_back(spec(named("in-", i)));
    specs.push_back(spec(named("use-", i), {named("in-", i)}));
    want.emplace_back(named("use-", i));
  }
  many.handle(td::UpdateGraph{.client = 1, .tasks = specs, .wanted = want});
  for (int i = 0; i < 10; ++i)
    many.handle(td::TaskFinished{.worker = 1, .key = Key(named("in-", i)), .nbytes = 8});
  EXPECT_EQ(many.count(TaskStatus::Queued), 0U);
  EXPECT_EQ(many.processing_count(1), 10U);

  // A kind no larger than twice the cluster's threads: placed by locality too.
  td::SchedulerState small(validating());
  small.handle(td::AddWorker{.worker = 1, .nthreads = 4});
  std::vector<td::TaskSpec> few{spec("shared")};
  std::vector<Key> few_wanted;
  for (int i = 0; i < 8; ++i) {
    few.push_back(spec(named("part-", i), {"shared"}));
    few_wanted.emplace_back(named("part-", i));
  }
  small.handle(td::UpdateGraph{.client = 1, .tasks = few, .wanted = few_wanted});
  small.handle(td::TaskFinished{.worker = 1, .key = Key("shared"), .nbytes = 8});
  EXPECT_EQ(small.count(TaskStatus::Queued), 0U);
  EXPECT_EQ(small.processing_count(1), 8U);
}

TEST(SchedulerState, TinyTasksAreQueuedDeeperToHideTheRoundTrip) {
  td::SchedulerState s({.latency_hiding = 0.002, .max_saturation = 64, .validate = true});
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  std::vector<td::TaskSpec> tasks;
  std::vector<Key> wanted;
  for (int i = 0; i < 200; ++i) {
    tasks.push_back(spec(named("tiny-", i), {}, static_cast<uint64_t>(i)));
    wanted.emplace_back(named("tiny-", i));
    tasks.push_back(spec(named("slow-", i), {}, static_cast<uint64_t>(1000 + i)));
    wanted.emplace_back(named("slow-", i));
  }
  s.handle(td::UpdateGraph{.client = 1, .tasks = tasks, .wanted = wanted});
  // Durations unknown: ceil(1 × 1.1) = 2.
  EXPECT_EQ(s.processing_count(1), 2U);
  // A tiny task took 10 µs: 0.002 / 1e-5 = 200 per thread, capped at 64.
  auto out =
      s.handle(td::TaskFinished{.worker = 1, .key = Key("tiny-0"), .nbytes = 8, .duration = 1e-5});
  EXPECT_EQ(s.processing_count(1), 64U);
  EXPECT_EQ(computed(out).size(), 63U);
  // Tasks of a kind that takes 1 ms: 0.002 / 0.001 = 2 per thread. Running the tiny ones
  // down, the worker keeps 64 while tiny ones head the queue, then 2 for the slow ones.
  for (int i = 1; i < 200; ++i) {
    s.handle(td::TaskFinished{
        .worker = 1, .key = Key(named("tiny-", i)), .nbytes = 8, .duration = 1e-5});
  }
  // The slow ones were assigned while tiny ones were running (the worker had room by the
  // tiny kind's measure) or as the queue's head: never more than 64 at once.
  EXPECT_LE(s.processing_count(1), 64U);
  const size_t slow_running = s.processing_count(1);
  std::vector<std::string> slow_keys;
  for (int i = 0; i < 200; ++i) {
    if (s.status(Key(named("slow-", i))) == TaskStatus::Processing)
      slow_keys.push_back(named("slow-", i));
  }
  ASSERT_EQ(slow_keys.size(), slow_running);
  for (const auto& k : slow_keys)
    s.handle(td::TaskFinished{.worker = 1, .key = Key(k), .nbytes = 8, .duration = 1e-3});
  EXPECT_EQ(s.processing_count(1), 2U);  // slow ones: 2 at a time
  // 0 turns it off.
  td::SchedulerState off({.latency_hiding = 0, .validate = true});
  off.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  off.handle(td::UpdateGraph{.client = 1, .tasks = tasks, .wanted = wanted});
  off.handle(td::TaskFinished{.worker = 1, .key = Key("tiny-0"), .nbytes = 8, .duration = 1e-5});
  EXPECT_EQ(off.processing_count(1), 2U);
}

// Speculative assignment: once a kind is measured as tiny, a chain of it goes to the worker
// computing its head, ahead of its inputs (their holders are left empty: being computed
// there), so the worker runs it without a round trip to the scheduler per task.
TEST(SchedulerState, TinyChainsAreAssignedAheadOfTheirInputs) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  std::vector<td::TaskSpec> chain{spec("c-0")};
  for (int i = 1; i < 10; ++i)
    chain.push_back(spec(named("c-", i), {"c-" + std::to_string(i - 1)}));
  auto out = s.handle(td::UpdateGraph{.client = 1, .tasks = chain, .wanted = keys({"c-9"})});
  // Nothing is known of the kind yet: only the head goes out.
  ASSERT_EQ(computed(out).size(), 1U);
  const td::WorkerId w = only<td::ComputeTask>(out)[0].worker;
  EXPECT_EQ(s.status(Key("c-1")), TaskStatus::Waiting);
  out = s.handle(td::TaskFinished{.worker = w, .key = Key("c-0"), .nbytes = 8, .duration = 1e-5});
  const auto sent = only<td::ComputeTask>(out);
  ASSERT_EQ(sent.size(), 9U);
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(sent[i].key, Key("c-" + std::to_string(i + 1)));
    EXPECT_EQ(sent[i].worker, w);
    ASSERT_EQ(sent[i].who_has.size(), 1U);
    // c-1's input is held by w; the others' are being computed there.
    EXPECT_EQ(sent[i].who_has[0].second,
              i == 0 ? std::vector<td::WorkerId>{w} : std::vector<td::WorkerId>{});
  }
  EXPECT_EQ(s.processing_count(w), 9U);
  // A kind that takes longer than latency_hiding is not sent ahead.
  td::SchedulerState slow(validating());
  slow.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  slow.handle(td::UpdateGraph{.client = 1, .tasks = chain, .wanted = keys({"c-9"})});
  out =
      slow.handle(td::TaskFinished{.worker = 1, .key = Key("c-0"), .nbytes = 8, .duration = 0.01});
  EXPECT_EQ(computed(out), std::vector<std::string>{"c-1@1"});
  // Nor is anything when speculation is off.
  td::SchedulerState off({.speculative_assignment = false, .validate = true});
  off.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  off.handle(td::UpdateGraph{.client = 1, .tasks = chain, .wanted = keys({"c-9"})});
  out = off.handle(td::TaskFinished{.worker = 1, .key = Key("c-0"), .nbytes = 8, .duration = 1e-5});
  EXPECT_EQ(computed(out), std::vector<std::string>{"c-1@1"});

  // The worker runs the chain and reports each link; the last reaches the client.
  for (int i = 1; i < 10; ++i) {
    out = s.handle(
        td::TaskFinished{.worker = w, .key = Key(named("c-", i)), .nbytes = 8, .duration = 1e-5});
    EXPECT_TRUE(computed(out).empty());
  }
  ASSERT_EQ(only<td::ReportMemory>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportMemory>(out)[0].key, Key("c-9"));
}

// At most the worker's saturation limit is sent ahead; more follows as it reports.
TEST(SchedulerState, SpeculationStopsAtTheSaturationLimit) {
  td::SchedulerState s({.latency_hiding = 0.002, .max_saturation = 4, .validate = true});
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  std::vector<td::TaskSpec> chain{spec("c-0")};
  for (int i = 1; i < 12; ++i)
    chain.push_back(spec(named("c-", i), {"c-" + std::to_string(i - 1)}));
  s.handle(td::UpdateGraph{.client = 1, .tasks = chain, .wanted = keys({"c-11"})});
  auto out =
      s.handle(td::TaskFinished{.worker = 1, .key = Key("c-0"), .nbytes = 8, .duration = 1e-5});
  EXPECT_EQ(computed(out), (std::vector<std::string>{"c-1@1", "c-2@1", "c-3@1", "c-4@1"}));
  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("c-1"), .nbytes = 8, .duration = 1e-5});
  EXPECT_EQ(computed(out), std::vector<std::string>{"c-5@1"});
  EXPECT_EQ(s.status(Key("c-6")), TaskStatus::Waiting);
}

// An input of a task sent ahead fails: the task fails too, and its worker is told to drop it.
TEST(SchedulerState, TasksSentAheadFailWithTheirInput) {
  td::SchedulerState s(validating());
  start_tiny_chain(s);
  ASSERT_EQ(s.status(Key("c-3")), TaskStatus::Processing);
  auto out = s.handle(td::TaskErred{.worker = 1, .key = Key("c-1"), .exception = "boom"});
  const auto f = freed(out);
  EXPECT_TRUE(f.count("c-2@1") && f.count("c-3@1"));
  ASSERT_EQ(only<td::ReportErred>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportErred>(out)[0].key, Key("c-3"));
  EXPECT_EQ(only<td::ReportErred>(out)[0].blamed, Key("c-1"));
  EXPECT_EQ(s.status(Key("c-2")), TaskStatus::Erred);
}

// A task sent ahead whose input is taken back (the worker could not get that input's own
// input) waits again, and is sent ahead again with it: to the same worker, in the same
// event, so it is not freed there (a free after the new ComputeTask would drop it).
TEST(SchedulerState, TasksSentAheadWaitAgainWhenTheirInputIsTakenBack) {
  td::SchedulerState s(validating());
  start_tiny_chain(s);
  // Worker 1 lost c-0 (say its disk went bad): c-1 cannot run there now.
  auto out =
      s.handle(td::MissingData{.worker = 1, .key = Key("c-1"), .missing = Key("c-0"), .holder = 1});
  EXPECT_EQ(computed(out), (std::vector<std::string>{"c-0@1", "c-1@1", "c-2@1", "c-3@1"}));
  EXPECT_TRUE(freed(out).empty()) << *freed(out).begin();
  for (const char* k : {"c-0", "c-1", "c-2", "c-3"})
    out = s.handle(td::TaskFinished{.worker = 1, .key = Key(k), .nbytes = 8, .duration = 1e-5});
  ASSERT_EQ(only<td::ReportMemory>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportMemory>(out)[0].key, Key("c-3"));
}

TEST(SchedulerState, WaitsForWorkersAndSkipsPausedOnes) {
  td::SchedulerState s(validating());
  auto out = s.handle(td::UpdateGraph{.client = 1, .tasks = {spec("x")}, .wanted = keys({"x"})});
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.status(Key("x")), TaskStatus::NoWorker);
  s.handle(td::AddWorker{.worker = 4, .nthreads = 1});
  s.handle(td::SetWorkerPaused{.worker = 4, .paused = true});
  EXPECT_EQ(s.status(Key("x")), TaskStatus::Processing);  // already there when it paused
  out = s.handle(td::UpdateGraph{.client = 1, .tasks = {spec("y")}, .wanted = keys({"y"})});
  EXPECT_EQ(s.status(Key("y")), TaskStatus::NoWorker);  // the only worker is paused
  out = s.handle(td::SetWorkerPaused{.worker = 4, .paused = false});
  EXPECT_EQ(computed(out), std::vector<std::string>{"y@4"});
}

TEST(SchedulerState, PlacesTasksWhereTheirInputsAre) {
  td::SchedulerState s(validating());
  for (td::WorkerId w : {1U, 2U, 3U}) s.handle(td::AddWorker{.worker = w, .nthreads = 4});
  auto out =
      s.handle(td::UpdateGraph{.client = 1,
                               .tasks = {spec("big"), spec("small"), spec("sum", {"big", "small"})},
                               .wanted = keys({"sum"})});
  std::map<std::string, td::WorkerId> where;
  for (const auto& c : only<td::ComputeTask>(out)) where[c.key.str()] = c.worker;
  ASSERT_EQ(where.size(), 2U);
  EXPECT_NE(where["big"], where["small"]);  // spread over the least loaded workers
  s.handle(td::TaskFinished{.worker = where["big"], .key = Key("big"), .nbytes = 800'000'000});
  out = s.handle(td::TaskFinished{.worker = where["small"], .key = Key("small"), .nbytes = 8});
  ASSERT_EQ(only<td::ComputeTask>(out).size(), 1U);
  EXPECT_EQ(only<td::ComputeTask>(out)[0].worker, where["big"]);  // 800 MB stay put
}

// Dask's retry: the erred key, the erred task it failed through and the erred tasks that
// depend on that run again; a key that did not err is left alone.
TEST(SchedulerState, RetryRunsErredTasksAgain) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(
      td::UpdateGraph{.client = 1,
                      .tasks = {spec("a"), spec("b", {"a"}), spec("c", {"b"}), spec("e", {"a"})},
                      .wanted = keys({"c", "e"})});
  auto out = s.handle(td::TaskErred{.worker = 1, .key = Key("a"), .exception = "IOError: flaky"});
  EXPECT_EQ(only<td::ReportErred>(out).size(), 2U);
  for (const char* k : {"a", "b", "c", "e"}) EXPECT_EQ(s.status(Key(k)), TaskStatus::Erred) << k;
  // Retrying c brings back a and b (what c failed through) and e (which failed through a);
  // the client that wants c and e hears both run again.
  out = s.handle(td::RetryKeys{.client = 1, .keys = keys({"c"})});
  EXPECT_EQ(computed(out), std::vector<std::string>{"a@1"});
  std::set<std::string> retried;
  for (const auto& r : only<td::ReportRetried>(out))
    retried.insert(r.key.str() + "@" + std::to_string(r.client));
  EXPECT_EQ(retried, (std::set<std::string>{"c@1", "e@1"}));
  for (const char* k : {"b", "c", "e"}) EXPECT_EQ(s.status(Key(k)), TaskStatus::Waiting) << k;
  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("a"), .nbytes = 8});
  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("b"), .nbytes = 8});
  s.handle(td::TaskFinished{.worker = 1, .key = Key("c"), .nbytes = 8});
  s.handle(td::TaskFinished{.worker = 1, .key = Key("e"), .nbytes = 8});
  EXPECT_EQ(s.status(Key("c")), TaskStatus::Memory);
  EXPECT_EQ(s.status(Key("e")), TaskStatus::Memory);
  // Retrying what is done changes nothing, and the client hears it is in memory; a key the
  // scheduler does not know is an error for it.
  out = s.handle(td::RetryKeys{.client = 1, .keys = keys({"c", "nowhere"})});
  EXPECT_TRUE(only<td::ComputeTask>(out).empty());
  ASSERT_EQ(only<td::ReportMemory>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportMemory>(out)[0].key, Key("c"));
  ASSERT_EQ(only<td::ReportErred>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportErred>(out)[0].exception,
            "retry: the scheduler has no task 'nowhere' (it never took it, or forgot it)");
  EXPECT_EQ(s.status(Key("c")), TaskStatus::Memory);
}

TEST(SchedulerState, ErrorsReachEveryClientThatWantsADependent) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 2});
  s.handle(td::UpdateGraph{.client = 1,
                           .tasks = {spec("a"), spec("b", {"a"}), spec("c", {"b"}), spec("d")},
                           .wanted = keys({"c", "d"})});
  auto out = s.handle(td::TaskErred{.worker = 1, .key = Key("a"), .exception = "ValueError: bad"});
  const auto err = only<td::ReportErred>(out);
  ASSERT_EQ(err.size(), 1U);
  EXPECT_EQ(err[0].key, Key("c"));
  EXPECT_EQ(err[0].blamed, Key("a"));
  EXPECT_EQ(err[0].exception, "ValueError: bad");
  EXPECT_EQ(s.status(Key("b")), TaskStatus::Erred);
  EXPECT_EQ(s.status(Key("d")), TaskStatus::Processing);  // unrelated work goes on
  // Another client asking for the erred key hears at once.
  out = s.handle(td::UpdateGraph{.client = 2, .tasks = {}, .wanted = keys({"c"})});
  ASSERT_EQ(only<td::ReportErred>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportErred>(out)[0].client, 2U);
  // A late result for a task that is no longer processing there is dropped.
  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("b"), .nbytes = 1});
  EXPECT_EQ(freed(out), (std::set<std::string>{"b@1"}));
  EXPECT_EQ(s.status(Key("b")), TaskStatus::Erred);
}

// retries (Dask's): an erring task runs again, anywhere, up to that many times; its
// dependents wait meanwhile, and only the last error reaches the client.
TEST(SchedulerState, AnErringTaskRunsAgainUpToItsRetries) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  auto out = s.handle(td::UpdateGraph{.client = 1,
                                      .tasks = {spec("a"), spec("b", {"a"}), spec("f")},
                                      .wanted = keys({"b", "f"}),
                                      .retries = 2});
  auto where = [&](const std::vector<td::Action>& o, const char* key) {
    for (const auto& c : only<td::ComputeTask>(o))
      if (c.key == Key(key)) return c.worker;
    ADD_FAILURE() << key << " was not sent to a worker";
    return td::WorkerId{0};
  };
  td::WorkerId on = where(out, "a");
  td::WorkerId f_on = where(out, "f");
  for (int attempt = 1; attempt <= 2; ++attempt) {
    out = s.handle(td::TaskErred{.worker = on, .key = Key("a"), .exception = "IOError: flaky"});
    EXPECT_TRUE(only<td::ReportErred>(out).empty()) << attempt;
    EXPECT_EQ(s.status(Key("a")), TaskStatus::Processing) << attempt;
    EXPECT_EQ(s.status(Key("b")), TaskStatus::Waiting) << attempt;
    on = where(out, "a");  // sent again
  }
  // Retries spent: the third error is the task's, and its dependent's.
  out = s.handle(td::TaskErred{.worker = on, .key = Key("a"), .exception = "IOError: flaky 3"});
  const auto err = only<td::ReportErred>(out);
  ASSERT_EQ(err.size(), 1U);
  EXPECT_EQ(err[0].key, Key("b"));
  EXPECT_EQ(err[0].blamed, Key("a"));
  EXPECT_EQ(err[0].exception, "IOError: flaky 3");
  EXPECT_EQ(s.status(Key("a")), TaskStatus::Erred);
  // Another task of the update errs once, runs again and succeeds: its result is reported.
  out = s.handle(td::TaskErred{.worker = f_on, .key = Key("f"), .exception = "IOError: once"});
  EXPECT_TRUE(only<td::ReportErred>(out).empty());
  f_on = where(out, "f");
  out = s.handle(td::TaskFinished{.worker = f_on, .key = Key("f"), .nbytes = 8});
  ASSERT_EQ(only<td::ReportMemory>(out).size(), 1U);
  EXPECT_EQ(only<td::ReportMemory>(out)[0].key, Key("f"));
  // Without retries (the default) the first error is final.
  out = s.handle(td::UpdateGraph{.client = 1, .tasks = {spec("g")}, .wanted = keys({"g"})});
  out = s.handle(td::TaskErred{.worker = where(out, "g"), .key = Key("g"), .exception = "E"});
  ASSERT_EQ(only<td::ReportErred>(out).size(), 1U);
}

// priority (Dask's): ready tasks of a higher priority go first, ahead of tasks of earlier
// graphs; the priority reaches workers in ComputeTask, ahead of the graph's order.
TEST(SchedulerState, AHigherPriorityRunsFirstWhateverItsGraph) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  std::vector<td::TaskSpec> low, high;
  for (int i = 0; i < 6; ++i) low.push_back(spec(named("low-", i), {}, i));
  for (int i = 0; i < 2; ++i) high.push_back(spec(named("high-", i), {}, i));
  auto out = s.handle(
      td::UpdateGraph{.client = 1,
                      .tasks = low,
                      .wanted = keys({"low-0", "low-1", "low-2", "low-3", "low-4", "low-5"})});
  EXPECT_EQ(computed(out), (std::vector<std::string>{"low-0@1", "low-1@1"}));  // saturated: 2
  out = s.handle(td::UpdateGraph{
      .client = 1, .tasks = high, .wanted = keys({"high-0", "high-1"}), .user_priority = 5});
  EXPECT_TRUE(computed(out).empty());  // queued
  std::vector<std::string> order;
  std::vector<uint64_t> priorities;
  std::deque<Key> running = {Key("low-0"), Key("low-1")};
  while (!running.empty()) {
    out = s.handle(td::TaskFinished{.worker = 1, .key = running.front(), .nbytes = 8});
    running.pop_front();
    for (const auto& c : only<td::ComputeTask>(out)) {
      order.push_back(c.key.str());
      priorities.push_back(c.priority);
      running.push_back(c.key);
    }
  }
  EXPECT_EQ(order,
            (std::vector<std::string>{"high-0", "high-1", "low-2", "low-3", "low-4", "low-5"}));
  EXPECT_LT(priorities[1], priorities[2]);  // workers order them the same way
  // A lower priority than the default waits behind the default.
  out = s.handle(td::UpdateGraph{
      .client = 1, .tasks = {spec("later")}, .wanted = keys({"later"}), .user_priority = -1});
  const auto later = only<td::ComputeTask>(out);
  ASSERT_EQ(later.size(), 1U);
  EXPECT_GT(later[0].priority, priorities.back());
}

TEST(SchedulerState, RecomputesWhatADeadWorkerHeld) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::UpdateGraph{.client = 9,
                           .tasks = {spec("a"), spec("b", {"a"}), spec("out", {"a", "b"})},
                           .wanted = keys({"a", "out"})});
  s.handle(td::TaskFinished{.worker = 1, .key = Key("a"), .nbytes = 8});
  EXPECT_EQ(s.status(Key("b")), TaskStatus::Processing);
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  // Worker 1 dies holding a (wanted) and running b.
  auto out = s.handle(td::RemoveWorker{.worker = 1});
  const auto lost = only<td::ReportLost>(out);
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_EQ(lost[0].key, Key("a"));
  EXPECT_EQ(computed(out), std::vector<std::string>{"a@2"});
  EXPECT_EQ(s.status(Key("b")), TaskStatus::Waiting);
  out = s.handle(td::TaskFinished{.worker = 2, .key = Key("a"), .nbytes = 8});
  EXPECT_EQ(only<td::ReportMemory>(out).size(), 1U);  // the client hears a is back
  EXPECT_EQ(computed(out), std::vector<std::string>{"b@2"});
  // A result from the dead worker arriving late is ignored.
  out = s.handle(td::TaskFinished{.worker = 1, .key = Key("b"), .nbytes = 8});
  EXPECT_TRUE(out.empty());
}

TEST(SchedulerState, ClientsHearWhereAResultIsWhenOneOfItsCopiesIsLost) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  s.handle(td::UpdateGraph{.client = 4, .tasks = {spec("a")}, .wanted = keys({"a"})});
  s.handle(td::TaskFinished{.worker = 1, .key = Key("a"), .nbytes = 8});
  // A second copy (a rerun elsewhere finished too).
  auto out = s.handle(td::TaskFinished{.worker = 2, .key = Key("a"), .nbytes = 8});
  EXPECT_TRUE(only<td::ReportMemory>(out).empty());
  EXPECT_EQ(s.who_has(Key("a")), (std::vector<td::WorkerId>{1, 2}));
  // The first holder dies: nothing is recomputed, and the client, which may have been
  // fetching from it, hears the result is in memory (where: who_has) rather than nothing.
  out = s.handle(td::RemoveWorker{.worker = 1});
  EXPECT_TRUE(computed(out).empty());
  EXPECT_TRUE(only<td::ReportLost>(out).empty());
  const auto mem = only<td::ReportMemory>(out);
  ASSERT_EQ(mem.size(), 1U);
  EXPECT_EQ(mem[0].client, 4U);
  EXPECT_EQ(mem[0].key, Key("a"));
  EXPECT_EQ(s.who_has(Key("a")), std::vector<td::WorkerId>{2});
  // The last copy goes: lost, and recomputed.
  out = s.handle(td::RemoveWorker{.worker = 2});
  EXPECT_EQ(only<td::ReportLost>(out).size(), 1U);
  EXPECT_TRUE(only<td::ReportMemory>(out).empty());
  EXPECT_EQ(s.status(Key("a")), TaskStatus::NoWorker);
}

// Scattered data is not kept by the scheduler once a worker holds it: lost, it is asked
// back from the client (ReportLost), which sends it again; with no client holding it, the
// tasks that need it fail with a message saying why.
TEST(SchedulerState, LostScatteredDataComesBackFromItsClient) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  auto data = std::make_shared<const std::string>("the data");
  td::TaskSpec scattered{Key("scatter-x"), {}, 0, data, true};
  auto out =
      s.handle(td::UpdateGraph{.client = 7, .tasks = {scattered}, .wanted = keys({"scatter-x"})});
  ASSERT_EQ(computed(out), std::vector<std::string>{"scatter-x@1"});
  s.handle(td::TaskFinished{.worker = 1, .key = Key("scatter-x"), .nbytes = 8});
  out = s.handle(
      td::UpdateGraph{.client = 7, .tasks = {spec("use", {"scatter-x"})}, .wanted = keys({"use"})});
  ASSERT_EQ(computed(out), std::vector<std::string>{"use@1"});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  // Worker 1 dies: "use" waits, nothing recomputes the data, the client is asked for it.
  out = s.handle(td::RemoveWorker{.worker = 1});
  EXPECT_TRUE(computed(out).empty());
  const auto lost = only<td::ReportLost>(out);
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_EQ(lost[0].key, Key("scatter-x"));
  EXPECT_EQ(s.status(Key("scatter-x")), TaskStatus::Released);
  EXPECT_EQ(s.status(Key("use")), TaskStatus::Waiting);
  // The client sends it again: placed, then "use" runs.
  auto again = std::make_shared<const std::string>("the data");
  out = s.handle(td::UpdateGraph{.client = 7,
                                 .tasks = {td::TaskSpec{Key("scatter-x"), {}, 0, again, true}},
                                 .wanted = keys({"scatter-x"})});
  ASSERT_EQ(computed(out), std::vector<std::string>{"scatter-x@2"});
  EXPECT_EQ(only<td::ComputeTask>(out)[0].payload, again);
  out = s.handle(td::TaskFinished{.worker = 2, .key = Key("scatter-x"), .nbytes = 8});
  EXPECT_EQ(computed(out), std::vector<std::string>{"use@2"});

  // The same loss when no client holds the data any more: "use" (held on the same worker,
  // to be recomputed) and "use2" (waiting for it) fail, saying why.
  out = s.handle(td::UpdateGraph{
      .client = 7, .tasks = {spec("use2", {"scatter-x"}, 5)}, .wanted = keys({"use2"})});
  s.handle(td::ReleaseKeys{.client = 7, .keys = keys({"scatter-x"})});
  s.handle(td::AddWorker{.worker = 3, .nthreads = 1});
  out = s.handle(td::RemoveWorker{.worker = 2});
  EXPECT_TRUE(computed(out).empty());
  std::set<std::string> failed;
  for (const auto& e : only<td::ReportErred>(out)) {
    failed.insert(e.key.str());
    EXPECT_EQ(e.exception,
              "scattered data 'scatter-x' was lost with the worker that held it, and no client "
              "holds it to scatter it again");
    EXPECT_EQ(e.blamed, Key("scatter-x"));
  }
  EXPECT_EQ(failed, (std::set<std::string>{"use", "use2"}));
  // Retrying them cannot bring the data back: they fail again at once, not hang.
  out = s.handle(td::RetryKeys{.client = 7, .keys = keys({"use2"})});
  EXPECT_TRUE(computed(out).empty());
  failed.clear();
  for (const auto& e : only<td::ReportErred>(out)) failed.insert(e.key.str());
  EXPECT_EQ(failed, (std::set<std::string>{"use", "use2"}));
  EXPECT_EQ(s.status(Key("use2")), TaskStatus::Erred);
}

TEST(SchedulerState, KilledWorkerAfterThreeDeaths) {
  td::SchedulerState s(validating());
  s.handle(td::UpdateGraph{
      .client = 1, .tasks = {spec("boom"), spec("after", {"boom"})}, .wanted = keys({"after"})});
  std::vector<td::Action> out;
  for (td::WorkerId w = 1; w <= 3; ++w) {
    s.handle(td::AddWorker{.worker = w, .nthreads = 1});
    EXPECT_EQ(s.processing_on(Key("boom")), std::optional<td::WorkerId>(w));
    out = s.handle(td::RemoveWorker{.worker = w});
  }
  EXPECT_EQ(s.status(Key("boom")), TaskStatus::Erred);
  const auto err = only<td::ReportErred>(out);
  ASSERT_EQ(err.size(), 1U);
  EXPECT_EQ(err[0].key, Key("after"));
  EXPECT_EQ(err[0].blamed, Key("boom"));
  EXPECT_EQ(err[0].exception,
            "KilledWorker: attempted to run task 'boom' on 3 different workers, but all those "
            "workers died while running it; the last was worker 3");
}

TEST(SchedulerState, MissingDataIsRecomputedAndTheReaderRescheduled) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  s.handle(
      td::UpdateGraph{.client = 1, .tasks = {spec("a"), spec("b", {"a"})}, .wanted = keys({"b"})});
  const td::WorkerId wa = *s.processing_on(Key("a"));
  s.handle(td::TaskFinished{.worker = wa, .key = Key("a"), .nbytes = 8});
  const td::WorkerId wb = *s.processing_on(Key("b"));
  // The reader could not fetch a from its holder (which lost it): a runs again.
  auto out =
      s.handle(td::MissingData{.worker = wb, .key = Key("b"), .missing = Key("a"), .holder = wa});
  EXPECT_EQ(s.status(Key("a")), TaskStatus::Processing);
  EXPECT_EQ(s.status(Key("b")), TaskStatus::Waiting);
  EXPECT_EQ(computed(out).size(), 1U);
}

TEST(SchedulerState, CancelsWhatNoClientWantsAndSharesWhatTwoDo) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  s.handle(
      td::UpdateGraph{.client = 1, .tasks = {spec("a"), spec("b", {"a"})}, .wanted = keys({"b"})});
  // A second client submits the same keys: no second computation.
  auto out = s.handle(
      td::UpdateGraph{.client = 2, .tasks = {spec("a"), spec("b", {"a"})}, .wanted = keys({"b"})});
  EXPECT_TRUE(computed(out).empty());
  EXPECT_EQ(s.size(), 2U);
  out = s.handle(td::ReleaseKeys{.client = 1, .keys = keys({"b"})});
  EXPECT_EQ(s.status(Key("a")), TaskStatus::Processing);  // client 2 still wants b
  out = s.handle(td::RemoveClient{.client = 2});
  EXPECT_EQ(freed(out), (std::set<std::string>{"a@1"}));  // running a is cancelled
  EXPECT_EQ(s.size(), 0U);
  EXPECT_EQ(s.processing_count(1), 0U);
}

TEST(SchedulerState, RefusesBadGraphsAndChangesNothing) {
  td::SchedulerState s(validating());
  auto err = [&](std::vector<td::TaskSpec> tasks, std::vector<Key> wanted) {
    const auto out = s.handle(td::UpdateGraph{.client = 3, .tasks = tasks, .wanted = wanted});
    const auto e = only<td::ReportGraphError>(out);
    EXPECT_EQ(s.size(), 0U);
    return e.empty() ? std::string("no error") : e[0].message;
  };
  EXPECT_EQ(err({spec("a", {"nowhere"})}, keys({"a"})),
            "update_graph: task 'a' depends on 'nowhere', which is neither in the graph nor held "
            "by the scheduler");
  EXPECT_EQ(err({spec("a", {"b"}), spec("b", {"a"})}, keys({"a"}))
                .rfind("update_graph: the graph has a cycle through '", 0),
            0U);
  EXPECT_EQ(err({spec("a")}, keys({"zz"})), "update_graph: wanted key 'zz' is not in the graph");
  EXPECT_EQ(err({td::TaskSpec{}}, {}), "update_graph: a task has an empty key");
}

TEST(SchedulerState, DropsWorkNobodyWants) {
  td::SchedulerState s(validating());
  s.validate();
  s.handle(td::UpdateGraph{.client = 1, .tasks = {spec("lonely")}, .wanted = {}});
  EXPECT_EQ(s.size(), 0U);  // nobody wants it: forgotten at once
  s.validate();
}

// Random graphs on simulated workers that really compute: each task's value is the sum of
// its dependencies' values plus its own number, fetched from the workers the scheduler names.
// Workers die, join and pause at random; every wanted result must come out exact.
// Work stealing: an idle worker asks for the tasks a saturated worker would run last, if
// they are long enough to be worth the trip; answers that come too late change nothing.
// Steal requests are numbered: an answer to an earlier request for a task does not settle
// a later one. s-5 is asked for, errs on its worker before the request arrives (a retry
// sends it back there), is asked for again, and the worker's "no" to the first request
// arrives only then; its "yes" to the second moves the task.
TEST(SchedulerState, AStaleStealAnswerDoesNotSettleALaterRequest) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  std::vector<td::TaskSpec> inputs_spec, specs;
  std::vector<Key> inputs_wanted, wanted;
  for (int i = 0; i < 6; ++i) {
    inputs_spec.push_back(spec(named("r-", i), {}, static_cast<uint64_t>(i)));
    inputs_wanted.emplace_back(named("r-", i));
    specs.push_back(spec(named("s-", i), {named("r-", i)}, static_cast<uint64_t>(10 + i)));
    wanted.emplace_back(named("s-", i));
  }
  std::deque<Key> inputs;
  auto take = [&](const std::vector<td::Action>& actions) {
    for (const auto& c : only<td::ComputeTask>(actions)) inputs.push_back(c.key);
  };
  take(s.handle(td::UpdateGraph{.client = 7, .tasks = inputs_spec, .wanted = inputs_wanted}));
  while (!inputs.empty()) {
    const Key k = inputs.front();
    inputs.pop_front();
    take(s.handle(td::TaskFinished{.worker = 1, .key = k, .nbytes = 1000, .duration = 0.001}));
  }
  s.handle(td::UpdateGraph{.client = 7, .tasks = specs, .wanted = wanted, .retries = 1});
  ASSERT_EQ(s.processing_count(1), 6U);
  s.handle(td::TaskFinished{.worker = 1, .key = Key("s-0"), .nbytes = 8, .duration = 1.0});
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  const auto first = only<td::StealRequest>(s.handle(td::Rebalance{}));
  ASSERT_EQ(first.size(), 1U);
  ASSERT_EQ(first[0].key, Key("s-5"));
  auto out = s.handle(td::TaskErred{.worker = 1, .key = Key("s-5"), .exception = "IOError"});
  EXPECT_EQ(computed(out), std::vector<std::string>{"s-5@1"});  // retried where its input is
  EXPECT_EQ(s.steals_pending(), 0U);
  const auto second = only<td::StealRequest>(s.handle(td::Rebalance{}));
  ASSERT_EQ(second.size(), 1U);
  ASSERT_EQ(second[0].key, Key("s-5"));
  EXPECT_NE(second[0].request, first[0].request);
  out = s.handle(td::StealResponse{
      .worker = 1, .key = Key("s-5"), .stolen = false, .request = first[0].request});
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.steals_pending(), 1U);  // still waiting for the answer to the second
  out = s.handle(td::StealResponse{
      .worker = 1, .key = Key("s-5"), .stolen = true, .request = second[0].request});
  EXPECT_EQ(computed(out), std::vector<std::string>{"s-5@2"});
  EXPECT_EQ(s.processing_on(Key("s-5")), 2U);
  EXPECT_EQ(s.steals_pending(), 0U);
}

TEST(SchedulerState, IdleWorkersStealQueuedTasks) {
  td::SchedulerState s(validating());
  s.handle(td::AddWorker{.worker = 1, .nthreads = 1});
  // Six inputs, all computed on worker 1 (they come a few at a time: root tasks queue)...
  std::vector<td::TaskSpec> inputs_spec;
  std::vector<Key> inputs_wanted;
  for (int i = 0; i < 6; ++i) {
    inputs_spec.push_back(spec(named("r-", i), {}, static_cast<uint64_t>(i)));
    inputs_wanted.emplace_back(named("r-", i));
  }
  std::deque<Key> inputs;
  auto take_inputs = [&](const std::vector<td::Action>& actions) {
    for (const auto& c : only<td::ComputeTask>(actions)) inputs.push_back(c.key);
  };
  take_inputs(
      s.handle(td::UpdateGraph{.client = 7, .tasks = inputs_spec, .wanted = inputs_wanted}));
  while (!inputs.empty()) {
    const Key k = inputs.front();
    inputs.pop_front();
    take_inputs(
        s.handle(td::TaskFinished{.worker = 1, .key = k, .nbytes = 1000, .duration = 0.001}));
  }
  // ...then a task on each (a kind with that many inputs is placed by locality).
  std::vector<td::TaskSpec> specs;
  std::vector<Key> wanted;
  for (int i = 0; i < 6; ++i) {
    specs.push_back(spec(named("s-", i), {named("r-", i)}, static_cast<uint64_t>(10 + i)));
    wanted.emplace_back(named("s-", i));
  }
  s.handle(td::UpdateGraph{.client = 7, .tasks = specs, .wanted = wanted});
  EXPECT_EQ(s.processing_count(1), 6U);  // all where their input is
  s.handle(td::AddWorker{.worker = 2, .nthreads = 1});
  EXPECT_EQ(s.processing_count(2), 0U);
  // No duration known for the kind yet: nothing is stolen.
  EXPECT_TRUE(only<td::StealRequest>(s.handle(td::Rebalance{})).empty());
  s.handle(td::TaskFinished{.worker = 1, .key = Key("s-0"), .nbytes = 8, .duration = 1.0});
  auto out = s.handle(td::Rebalance{});
  auto steals = only<td::StealRequest>(out);
  ASSERT_EQ(steals.size(), 1U);  // worker 2 has one free thread
  EXPECT_EQ(steals[0].worker, 1U);
  EXPECT_EQ(steals[0].key, Key("s-5"));  // the one worker 1 would run last
  EXPECT_EQ(s.steals_pending(), 1U);
  EXPECT_TRUE(only<td::StealRequest>(s.handle(td::Rebalance{})).empty());  // already asked
  out = s.handle(td::StealResponse{
      .worker = 1, .key = Key("s-5"), .stolen = true, .request = steals[0].request});
  ASSERT_EQ(computed(out), std::vector<std::string>{"s-5@2"});
  EXPECT_EQ(only<td::ComputeTask>(out)[0].who_has.at(0).second, std::vector<td::WorkerId>{1});
  EXPECT_EQ(s.processing_on(Key("s-5")), 2U);
  EXPECT_EQ(s.steals_pending(), 0U);
  EXPECT_TRUE(only<td::StealRequest>(s.handle(td::Rebalance{})).empty());  // 2 is busy now

  // The victim finished the task before the request reached it: the late "no" is ignored.
  s.handle(td::AddWorker{.worker = 3, .nthreads = 1});
  steals = only<td::StealRequest>(s.handle(td::Rebalance{}));
  ASSERT_EQ(steals.size(), 1U);
  EXPECT_EQ(steals[0].key, Key("s-4"));
  s.handle(td::TaskFinished{.worker = 1, .key = Key("s-4"), .nbytes = 8, .duration = 1.0});
  EXPECT_EQ(s.steals_pending(), 0U);
  out = s.handle(td::StealResponse{
      .worker = 1, .key = Key("s-4"), .stolen = false, .request = steals[0].request});
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.status(Key("s-4")), TaskStatus::Memory);

  // The thief died before the answer: the task goes where it fits now.
  s.handle(td::RemoveWorker{.worker = 3});
  s.handle(td::AddWorker{.worker = 4, .nthreads = 1});
  steals = only<td::StealRequest>(s.handle(td::Rebalance{}));
  ASSERT_EQ(steals.size(), 1U);
  EXPECT_EQ(steals[0].key, Key("s-3"));
  s.handle(td::RemoveWorker{.worker = 4});
  out = s.handle(td::StealResponse{
      .worker = 1, .key = Key("s-3"), .stolen = true, .request = steals[0].request});
  ASSERT_EQ(only<td::ComputeTask>(out).size(), 1U);
  EXPECT_EQ(s.status(Key("s-3")), TaskStatus::Processing);
  EXPECT_EQ(s.steals_pending(), 0U);

  // Tasks shorter than steal_min_duration stay where they are, and so does everything when
  // stealing is off.
  td::SchedulerState quick({.steal_min_duration = 2.0, .validate = true});
  td::SchedulerState off({.work_stealing = false, .validate = true});
  for (td::SchedulerState* x : {&quick, &off}) {
    x->handle(td::AddWorker{.worker = 1, .nthreads = 1});
    take_inputs(
        x->handle(td::UpdateGraph{.client = 7, .tasks = inputs_spec, .wanted = inputs_wanted}));
    while (!inputs.empty()) {
      const Key k = inputs.front();
      inputs.pop_front();
      take_inputs(x->handle(td::TaskFinished{.worker = 1, .key = k, .nbytes = 8, .duration = 1.0}));
    }
    x->handle(td::UpdateGraph{.client = 7, .tasks = specs, .wanted = wanted});
    x->handle(td::TaskFinished{.worker = 1, .key = Key("s-0"), .nbytes = 8, .duration = 1.0});
    x->handle(td::AddWorker{.worker = 2, .nthreads = 1});
    EXPECT_EQ(x->processing_count(1), 5U);
    EXPECT_TRUE(only<td::StealRequest>(x->handle(td::Rebalance{})).empty());
  }
}

TEST(SchedulerState, RandomSimulationGivesExactResults) {
  int deaths = 0, missing_reports = 0, lost_reports = 0, pauses = 0, stolen = 0, kept = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    td::SchedulerState s({.worker_saturation = 1.1, .allowed_failures = 1000, .validate = true});
    const int n = 60 + static_cast<int>(rng() % 60);
    std::vector<td::TaskSpec> tasks;
    std::vector<std::vector<int>> deps(n);
    std::vector<int64_t> want_value(n);
    for (int i = 0; i < n; ++i) {
      const int nd = i == 0 ? 0 : static_cast<int>(rng() % 4);
      for (int d = 0; d < nd; ++d) {
        const int j = static_cast<int>(rng() % i);
        if (std::find(deps[i].begin(), deps[i].end(), j) == deps[i].end()) deps[i].push_back(j);
      }
      std::vector<std::string> dk;
      want_value[i] = i;
      for (int j : deps[i]) {
        dk.push_back(named("t-", j));
        want_value[i] = (want_value[i] + want_value[j]) % kMod;
      }
      tasks.push_back(spec(named("t-", i), dk, static_cast<uint64_t>(i)));
    }
    std::vector<Key> wanted;
    for (int i = n - 1; i >= 0; i -= 1 + static_cast<int>(rng() % 5))
      wanted.emplace_back(named("t-", i));

    // Simulated workers: their stores and their queues of assigned tasks.
    struct Sim {
      std::map<std::string, int64_t> store;
      std::deque<td::ComputeTask> todo;
    };
    std::map<td::WorkerId, Sim> sims;
    std::map<std::string, int64_t> reported;
    std::deque<td::Action> pending;
    std::deque<td::StealResponse> answers;  // delivered later, in order, if the worker lives
    td::WorkerId next_worker = 1;
    auto apply = [&](const std::vector<td::Action>& actions) {
      for (const auto& a : actions) pending.push_back(a);
    };
    auto deliver = [&] {
      while (!pending.empty()) {
        td::Action a = std::move(pending.front());
        pending.pop_front();
        if (auto* c = std::get_if<td::ComputeTask>(&a)) {
          if (sims.count(c->worker)) sims[c->worker].todo.push_back(*c);
        } else if (auto* f = std::get_if<td::FreeKeys>(&a)) {
          if (!sims.count(f->worker)) continue;
          auto& sim = sims[f->worker];
          for (const Key& k : f->keys) {
            sim.store.erase(k.str());
            sim.todo.erase(std::remove_if(sim.todo.begin(), sim.todo.end(),
                                          [&](const td::ComputeTask& t) { return t.key == k; }),
                           sim.todo.end());
          }
        } else if (auto* m = std::get_if<td::ReportMemory>(&a)) {
          reported[m->key.str()] = static_cast<int64_t>(m->nbytes);
        } else if (auto* l = std::get_if<td::ReportLost>(&a)) {
          reported.erase(l->key.str());
          ++lost_reports;
        } else if (auto* st = std::get_if<td::StealRequest>(&a)) {
          if (!sims.count(st->worker)) continue;
          auto& todo = sims[st->worker].todo;  // not started yet: given back
          auto at = std::find_if(todo.begin(), todo.end(),
                                 [&](const td::ComputeTask& t) { return t.key == st->key; });
          const bool give = at != todo.end();
          if (give) todo.erase(at);
          answers.push_back({st->worker, st->key, give});
        } else if (std::get_if<td::ReportErred>(&a) || std::get_if<td::ReportGraphError>(&a)) {
          FAIL() << "seed " << seed << ": unexpected error";
        }
      }
    };
    for (int w = 0; w < 3; ++w) {
      sims[next_worker];
      apply(s.handle(td::AddWorker{.worker = next_worker++, .nthreads = 1 + w % 2}));
    }
    apply(s.handle(td::UpdateGraph{.client = 1, .tasks = tasks, .wanted = wanted}));
    deliver();
    int steps = 0;
    while (reported.size() < wanted.size() && steps++ < 20000) {
      const uint64_t r = rng() % 100;
      if (r < 3 && sims.size() > 1) {  // a worker dies
        auto it = std::next(sims.begin(), static_cast<long>(rng() % sims.size()));
        const td::WorkerId w = it->first;
        sims.erase(it);
        ++deaths;
        apply(s.handle(td::RemoveWorker{.worker = w}));
      } else if (r < 4 && sims.size() < 5) {  // one joins
        sims[next_worker];
        apply(s.handle(td::AddWorker{.worker = next_worker++, .nthreads = 1}));
      } else if (r < 5) {  // a worker silently loses a result (a disk gone bad)
        auto it = std::next(sims.begin(), static_cast<long>(rng() % sims.size()));
        auto& store = it->second.store;
        if (!store.empty())
          store.erase(std::next(store.begin(), static_cast<long>(rng() % store.size())));
      } else if (r < 11) {  // time to balance, or a steal answer arrives
        if (r < 9 || answers.empty()) {
          apply(s.handle(td::Rebalance{}));
        } else {
          const td::StealResponse a = answers.front();
          answers.pop_front();
          if (sims.count(a.worker)) {
            (a.stolen ? stolen : kept) += 1;
            apply(s.handle(a));
          }
        }
      } else if (r < 14) {
        auto it = std::next(sims.begin(), static_cast<long>(rng() % sims.size()));
        pauses += 1;
        apply(s.handle(td::SetWorkerPaused{.worker = it->first, .paused = rng() % 2 == 0}));
      } else {  // a worker runs its next task
        auto it = std::next(sims.begin(), static_cast<long>(rng() % sims.size()));
        auto& sim = it->second;
        if (sim.todo.empty()) continue;
        const td::ComputeTask c = sim.todo.front();
        sim.todo.pop_front();
        const int i = std::stoi(c.key.str().substr(2));
        int64_t v = i;
        bool missing = false;
        for (const auto& [dep, holders] : c.who_has) {
          // Fetch from the first holder that is alive and has it.
          bool got = false;
          for (td::WorkerId h : holders) {
            auto hs = sims.find(h);
            if (hs == sims.end()) continue;
            auto val = hs->second.store.find(dep.str());
            if (val == hs->second.store.end()) continue;
            v = (v + val->second) % kMod;
            got = true;
            break;
          }
          if (!got) {
            ASSERT_FALSE(holders.empty()) << "seed " << seed << ": " << dep << " held nowhere";
            ++missing_reports;
            apply(s.handle(td::MissingData{
                .worker = it->first, .key = c.key, .missing = dep, .holder = holders[0]}));
            missing = true;
            break;
          }
        }
        if (missing) {
          deliver();
          continue;
        }
        ASSERT_EQ(v, want_value[i]) << "seed " << seed << " task " << i;
        sim.store[c.key.str()] = v;
        apply(s.handle(td::TaskFinished{.worker = it->first,
                                        .key = c.key,
                                        .nbytes = static_cast<uint64_t>(v),
                                        .duration = 0.05}));
      }
      deliver();
      // Without any running worker nothing moves: unpause one.
      if (s.count(TaskStatus::NoWorker) > 0 && !sims.empty()) {
        apply(s.handle(td::SetWorkerPaused{.worker = sims.begin()->first, .paused = false}));
        deliver();
      }
    }
    ASSERT_EQ(reported.size(), wanted.size()) << "seed " << seed << " stalled after " << steps;
    for (const Key& k : wanted) {
      const int i = std::stoi(k.str().substr(2));
      EXPECT_EQ(reported[k.str()], want_value[i]) << "seed " << seed << " " << k;
    }
    // Dropping every future leaves nothing behind.
    apply(s.handle(td::RemoveClient{.client = 1}));
    EXPECT_EQ(s.size(), 0U) << "seed " << seed;
  }
  // The runs did go through the paths they are meant to test.
  EXPECT_GT(deaths, 20);
  EXPECT_GT(missing_reports, 0);
  EXPECT_GT(lost_reports, 0);
  EXPECT_GT(pauses, 20);
  EXPECT_GT(stolen, 10);
  std::cout << "simulation: " << deaths << " deaths, " << missing_reports << " missing-data, "
            << lost_reports << " lost results, " << pauses << " pause changes, " << stolen
            << " tasks stolen, " << kept << " steals refused or stale\n";
}

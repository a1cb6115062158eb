// The worker's state machine on its own, then wired to the scheduler's in one process:
// simulated workers run their WorkerState, compute real values, answer each other's
// GatherDep requests from their stores, and die at random; every wanted result must be
// exact, with both state machines validated after every event.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>

#include "distributed/scheduler_state.hpp"
#include "distributed/worker_state.hpp"

namespace td = tessera::distributed;
using td::WorkerTaskStatus;
using tessera::Key;

namespace {

template <class A>
std::vector<A> only(const std::vector<td::WorkerInstruction>& in) {
  std::vector<A> out;
  for (const auto& a : in)
    if (const A* x = std::get_if<A>(&a)) out.push_back(*x);
  return out;
}

td::ComputeTask compute(const std::string& key,
                        std::vector<std::pair<std::string, std::vector<td::WorkerId>>> deps = {},
                        uint64_t priority = 0) {
  td::ComputeTask c{0, Key(key), nullptr, priority, {}};
  for (auto& [k, h] : deps) c.who_has.emplace_back(Key(k), h);
  return c;
}

}  // namespace

TEST(WorkerState, RunsWhatItHasAndFetchesWhatItLacks) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  auto out = w.handle(compute("a"));
  ASSERT_EQ(only<td::Execute>(out).size(), 1U);
  out = w.handle(td::ExecuteSuccess{Key("a"), 8, 0.1});
  ASSERT_EQ(only<td::SendTaskFinished>(out).size(), 1U);
  EXPECT_EQ(only<td::SendTaskFinished>(out)[0].nbytes, 8U);
  // b needs a (here) and c (on worker 2).
  out = w.handle(compute("b", {{"a", {1}}, {"c", {2}}}));
  EXPECT_TRUE(only<td::Execute>(out).empty());
  const auto g = only<td::GatherDep>(out);
  ASSERT_EQ(g.size(), 1U);
  EXPECT_EQ(g[0].peer, 2U);
  EXPECT_EQ(g[0].keys, std::vector<Key>{Key("c")});
  EXPECT_EQ(w.status(Key("c")), WorkerTaskStatus::Flight);
  EXPECT_EQ(w.status(Key("b")), WorkerTaskStatus::Waiting);
  out = w.handle(td::GatherDepDone{2, {{Key("c"), 16}}, {}});
  ASSERT_EQ(only<td::Execute>(out).size(), 1U);
  EXPECT_EQ(only<td::Execute>(out)[0].key, Key("b"));
  out = w.handle(td::ExecuteSuccess{Key("b"), 8, 0.1});
  // The fetched copy of c is dropped (nobody here needs it); a stays (the scheduler's).
  ASSERT_EQ(only<td::ReleaseData>(out).size(), 1U);
  EXPECT_EQ(only<td::ReleaseData>(out)[0].key, Key("c"));
  EXPECT_EQ(w.status(Key("a")), WorkerTaskStatus::Memory);
}

TEST(WorkerState, RunsAtMostNthreadsInPriorityOrder) {
  td::WorkerState w({.self = 1, .nthreads = 2, .validate = true});
  std::vector<td::WorkerInstruction> out;
  for (int i = 0; i < 5; ++i) {
    std::string name = "t";  // not "t" + to_string(i): GCC 12 warns wrongly (-Wrestrict) on it
    name += std::to_string(i);
    w.handle(compute(name, {}, static_cast<uint64_t>(10 - i)), out);
  }
  auto ex = only<td::Execute>(out);
  ASSERT_EQ(ex.size(), 2U);
  EXPECT_EQ(ex[0].key, Key("t0"));  // the first two arrived before the others were known
  EXPECT_EQ(ex[1].key, Key("t1"));
  EXPECT_EQ(w.executing_count(), 2U);
  out = w.handle(td::ExecuteSuccess{Key("t0"), 1, 0});
  ex = only<td::Execute>(out);
  ASSERT_EQ(ex.size(), 1U);
  EXPECT_EQ(ex[0].key, Key("t4"));  // the highest priority of those waiting
}

TEST(WorkerState, HandsBackTasksWhoseInputsAreNowhere) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  w.handle(compute("b", {{"a", {2, 3}}}));
  auto out = w.handle(td::GatherDepDone{2, {}, {Key("a")}});  // 2 does not have it: try 3
  ASSERT_EQ(only<td::GatherDep>(out).size(), 1U);
  EXPECT_EQ(only<td::GatherDep>(out)[0].peer, 3U);
  out = w.handle(td::GatherDepFailed{3, {Key("a")}});  // 3 is unreachable
  const auto m = only<td::SendMissingData>(out);
  ASSERT_EQ(m.size(), 1U);
  EXPECT_EQ(m[0].key, Key("b"));
  EXPECT_EQ(m[0].missing, Key("a"));
  EXPECT_EQ(m[0].holder, 3U);
  EXPECT_EQ(w.size(), 0U);
  // Told it holds something it does not: the same.
  out = w.handle(compute("d", {{"x", {1}}}));
  ASSERT_EQ(only<td::SendMissingData>(out).size(), 1U);
  EXPECT_EQ(only<td::SendMissingData>(out)[0].holder, 1U);
}

TEST(WorkerState, FreedTasksAreCancelled) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  w.handle(compute("run"));
  w.handle(compute("queued"));
  auto out = w.handle(td::FreeKeys{1, {Key("queued"), Key("run")}});
  EXPECT_EQ(w.status(Key("queued")), WorkerTaskStatus::Gone);
  EXPECT_EQ(w.status(Key("run")), WorkerTaskStatus::Executing);  // cannot be stopped
  out = w.handle(td::ExecuteSuccess{Key("run"), 8, 0});
  EXPECT_TRUE(only<td::SendTaskFinished>(out).empty());  // its result is dropped
  EXPECT_EQ(w.size(), 0U);
  out = w.handle(compute("boom"));
  out = w.handle(td::ExecuteFailure{Key("boom"), "ValueError: no"});
  ASSERT_EQ(only<td::SendTaskErred>(out).size(), 1U);
  EXPECT_EQ(only<td::SendTaskErred>(out)[0].exception, "ValueError: no");
}

// A task that erred here and is sent again (the scheduler retries it) runs again, with
// the input it has; sent again while it has not erred, it is not run twice.
TEST(WorkerState, RunsAnErredTaskAgainWhenTheSchedulerRetriesIt) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  w.handle(compute("in"));
  w.handle(td::ExecuteSuccess{Key("in"), 8, 0.1});
  auto out = w.handle(compute("flaky", {{"in", {1}}}));
  ASSERT_EQ(only<td::Execute>(out).size(), 1U);
  EXPECT_TRUE(only<td::Execute>(w.handle(compute("flaky", {{"in", {1}}}))).empty());  // asked twice
  out = w.handle(td::ExecuteFailure{Key("flaky"), "IOError: try again"});
  ASSERT_EQ(only<td::SendTaskErred>(out).size(), 1U);
  EXPECT_EQ(w.status(Key("flaky")), WorkerTaskStatus::Error);
  out = w.handle(compute("flaky", {{"in", {1}}}));
  const auto again = only<td::Execute>(out);
  ASSERT_EQ(again.size(), 1U);
  EXPECT_EQ(again[0].key, Key("flaky"));
  EXPECT_EQ(again[0].inputs, std::vector<Key>{Key("in")});
  out = w.handle(td::ExecuteSuccess{Key("flaky"), 8, 0.1});
  ASSERT_EQ(only<td::SendTaskFinished>(out).size(), 1U);
  EXPECT_EQ(w.status(Key("flaky")), WorkerTaskStatus::Memory);
}

// Work stealing: a task not started (ready, or waiting for its inputs) is given back, and
// the inputs fetched only for it are dropped; a running or finished one is not.
TEST(WorkerState, GivesBackTasksNotStartedWhenStolen) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  w.handle(compute("run"));
  w.handle(compute("ready"));
  w.handle(compute("waits", {{"input", {2}}}));
  EXPECT_EQ(w.status(Key("ready")), WorkerTaskStatus::Ready);
  EXPECT_EQ(w.status(Key("input")), WorkerTaskStatus::Flight);
  auto out = w.handle(td::StealRequest{1, Key("ready"), 77});
  auto r = only<td::SendStealResponse>(out);
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].request, 77U);  // given back, for the scheduler to match
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].key, Key("ready"));
  EXPECT_TRUE(r[0].stolen);
  EXPECT_EQ(w.status(Key("ready")), WorkerTaskStatus::Gone);
  out = w.handle(td::StealRequest{1, Key("waits")});
  EXPECT_TRUE(only<td::SendStealResponse>(out).at(0).stolen);
  EXPECT_EQ(w.status(Key("waits")), WorkerTaskStatus::Gone);
  // The input in flight for it is forgotten when its request returns.
  out = w.handle(td::GatherDepDone{2, {{Key("input"), 8}}, {}});
  EXPECT_EQ(only<td::ReleaseData>(out).size(), 1U);
  EXPECT_EQ(w.status(Key("input")), WorkerTaskStatus::Gone);
  // Running, finished, or unknown: kept.
  EXPECT_FALSE(only<td::SendStealResponse>(w.handle(td::StealRequest{1, Key("run")})).at(0).stolen);
  EXPECT_EQ(w.status(Key("run")), WorkerTaskStatus::Executing);
  w.handle(td::ExecuteSuccess{Key("run"), 8, 0});
  EXPECT_FALSE(only<td::SendStealResponse>(w.handle(td::StealRequest{1, Key("run")})).at(0).stolen);
  EXPECT_EQ(w.status(Key("run")), WorkerTaskStatus::Memory);
  EXPECT_FALSE(
      only<td::SendStealResponse>(w.handle(td::StealRequest{1, Key("never")})).at(0).stolen);
}

// Scheduler and workers in one process.
// Tiny tasks run back to back: beyond its threads the worker hands out tasks of kinds it
// measured as short, as many as fit in queue_seconds; never a kind it has not measured.
TEST(WorkerState, QueuesMeasuredTinyTasksBeyondItsThreads) {
  td::WorkerState w({.self = 1, .nthreads = 1, .queue_seconds = 0.001, .validate = true});
  auto out = w.handle(compute("a-0"));
  ASSERT_EQ(only<td::Execute>(out).size(), 1U);
  EXPECT_EQ(only<td::Execute>(out)[0].estimate, -1);
  for (int i = 1; i <= 20; ++i)
    EXPECT_TRUE(only<td::Execute>(w.handle(compute("a-" + std::to_string(i)))).empty());
  out = w.handle(td::ExecuteSuccess{Key("a-0"), 8, 1e-4});
  // 1 ms of 0.1 ms tasks: ten handed out at once.
  const auto ex = only<td::Execute>(out);
  ASSERT_EQ(ex.size(), 10U);
  EXPECT_DOUBLE_EQ(ex[0].estimate, 1e-4);
  EXPECT_EQ(w.executing_count(), 10U);
  // A kind never measured waits for a free thread.
  EXPECT_TRUE(only<td::Execute>(w.handle(compute("b-0", {}, 0))).empty());
  // Without queue_seconds, one task per thread.
  td::WorkerState one({.self = 1, .nthreads = 1, .validate = true});
  one.handle(compute("a-0"));
  one.handle(compute("a-1"));
  one.handle(compute("a-2"));
  EXPECT_EQ(only<td::Execute>(one.handle(td::ExecuteSuccess{Key("a-0"), 8, 1e-6})).size(), 1U);
}

// A task sent ahead of its input (speculative assignment: no holder, the input is being
// computed here) waits for it without fetching or complaining, then runs.
TEST(WorkerState, RunsATaskSentAheadOnceItsInputIsComputedHere) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  ASSERT_EQ(only<td::Execute>(w.handle(compute("x"))).size(), 1U);
  auto out = w.handle(compute("y", {{"x", {}}}));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(w.status(Key("y")), WorkerTaskStatus::Waiting);
  out = w.handle(td::ExecuteSuccess{Key("x"), 8, 1e-5});
  ASSERT_EQ(only<td::Execute>(out).size(), 1U);
  EXPECT_EQ(only<td::Execute>(out)[0].key, Key("y"));
  EXPECT_EQ(only<td::Execute>(out)[0].inputs, std::vector<Key>{Key("x")});
}

// A task handed back (its input is nowhere) takes with it the tasks sent ahead of it.
TEST(WorkerState, DropsTasksSentAheadOfOneItHandsBack) {
  td::WorkerState w({.self = 1, .nthreads = 1, .validate = true});
  w.handle(compute("x", {{"in", {2}}}));
  w.handle(compute("y", {{"x", {}}}));
  w.handle(compute("z", {{"y", {}}}));
  auto out = w.handle(td::GatherDepFailed{2, {Key("in")}});
  const auto missing = only<td::SendMissingData>(out);
  ASSERT_EQ(missing.size(), 1U);
  EXPECT_EQ(missing[0].key, Key("x"));
  EXPECT_EQ(w.status(Key("y")), WorkerTaskStatus::Gone);
  EXPECT_EQ(w.status(Key("z")), WorkerTaskStatus::Gone);
  EXPECT_EQ(w.size(), 0U);
}

TEST(WorkerState, WithTheSchedulerGivesExactResultsThroughDeaths) {
  constexpr int64_t kMod = 1'000'000'007;
  int deaths = 0, gathers = 0, stolen = 0, ahead = 0;
  // Two kinds of task: "t-" takes 10 ms, "q-" 0.1 ms: tiny enough to be assigned ahead of
  // its inputs (speculative assignment) and queued beyond the threads of the workers that
  // queue (half of them).
  auto name = [](int i) { return std::string(i % 2 ? "q-" : "t-") + std::to_string(i); };
  for (uint64_t seed = 1; seed <= 25; ++seed) {
    std::mt19937_64 rng(seed * 7919);
    td::SchedulerState sched(
        {.worker_saturation = 1.1, .allowed_failures = 1000, .validate = true});
    const int n = 50 + static_cast<int>(rng() % 80);
    std::vector<td::TaskSpec> specs;
    std::vector<int64_t> want(n);
    for (int i = 0; i < n; ++i) {
      td::TaskSpec s{Key(name(i)), {}, static_cast<uint64_t>(i), nullptr};
      want[i] = i;
      const int nd = i == 0 ? 0 : static_cast<int>(rng() % 4);
      std::vector<int> ds;
      for (int d = 0; d < nd; ++d) {
        const int j = static_cast<int>(rng() % i);
        if (std::find(ds.begin(), ds.end(), j) != ds.end()) continue;
        ds.push_back(j);
        s.dependencies.emplace_back(name(j));
        want[i] = (want[i] + want[j]) % kMod;
      }
      specs.push_back(std::move(s));
    }
    std::vector<Key> wanted;
    for (int i = n - 1; i >= 0; i -= 1 + static_cast<int>(rng() % 6)) wanted.emplace_back(name(i));

    struct Sim {
      std::unique_ptr<td::WorkerState> state;
      std::map<std::string, int64_t> store;
      std::deque<Key> running;          // Execute instructions, in order
      std::deque<td::GatherDep> asked;  // its requests to peers
    };
    std::map<td::WorkerId, Sim> sims;
    std::map<std::string, int64_t> reported;
    td::WorkerId next = 1;
    std::deque<std::pair<td::WorkerId, td::WorkerEvent>> to_workers;

    auto from_scheduler = [&](const std::vector<td::Action>& actions) {
      for (const auto& a : actions) {
        if (auto* c = std::get_if<td::ComputeTask>(&a)) {
          for (const auto& [dep, holders] : c->who_has) ahead += holders.empty();
          to_workers.emplace_back(c->worker, *c);
        } else if (auto* f = std::get_if<td::FreeKeys>(&a)) {
          to_workers.emplace_back(f->worker, *f);
        } else if (auto* st = std::get_if<td::StealRequest>(&a)) {
          to_workers.emplace_back(st->worker, *st);
        } else if (auto* m = std::get_if<td::ReportMemory>(&a)) {
          reported[m->key.str()] = static_cast<int64_t>(m->nbytes);
        } else if (auto* l = std::get_if<td::ReportLost>(&a)) {
          reported.erase(l->key.str());
        } else {
          ADD_FAILURE() << "seed " << seed << ": unexpected report";
        }
      }
    };
    auto from_worker = [&](td::WorkerId w, const std::vector<td::WorkerInstruction>& in) {
      Sim& sim = sims.at(w);
      for (const auto& i : in) {
        if (auto* e = std::get_if<td::Execute>(&i)) {
          sim.running.push_back(e->key);
        } else if (auto* g = std::get_if<td::GatherDep>(&i)) {
          sim.asked.push_back(*g);
          ++gathers;
        } else if (auto* r = std::get_if<td::ReleaseData>(&i)) {
          sim.store.erase(r->key.str());
        } else if (auto* f = std::get_if<td::SendTaskFinished>(&i)) {
          from_scheduler(sched.handle(td::TaskFinished{w, f->key, f->nbytes, f->duration}));
        } else if (auto* m = std::get_if<td::SendMissingData>(&i)) {
          from_scheduler(sched.handle(td::MissingData{w, m->key, m->missing, m->holder}));
        } else if (auto* st = std::get_if<td::SendStealResponse>(&i)) {
          stolen += st->stolen ? 1 : 0;
          from_scheduler(sched.handle(td::StealResponse{w, st->key, st->stolen, st->request}));
        } else {
          ADD_FAILURE() << "seed " << seed << ": a task failed";
        }
      }
    };
    auto deliver = [&] {
      while (!to_workers.empty()) {
        auto [w, ev] = std::move(to_workers.front());
        to_workers.pop_front();
        if (!sims.count(w)) continue;
        from_worker(w, sims.at(w).state->handle(ev));
      }
    };
    auto add_worker = [&] {
      const td::WorkerId id = next++;
      const int threads = 1 + static_cast<int>(rng() % 2);
      sims[id].state = std::make_unique<td::WorkerState>(
          td::WorkerState::Options{.self = id,
                                   .nthreads = threads,
                                   .queue_seconds = id % 2 ? 0.002 : 0.0,
                                   .max_keys_per_gather = 2,
                                   .validate = true});
      from_scheduler(sched.handle(td::AddWorker{id, threads}));
    };
    for (int i = 0; i < 3; ++i) add_worker();
    from_scheduler(sched.handle(td::UpdateGraph{1, specs, wanted}));
    deliver();
    for (int step = 0; reported.size() < wanted.size() && step < 50000; ++step) {
      const uint64_t r = rng() % 100;
      auto pick = [&] { return std::next(sims.begin(), static_cast<long>(rng() % sims.size())); };
      if (r < 2 && sims.size() > 1) {
        const td::WorkerId dead = pick()->first;
        sims.erase(dead);
        ++deaths;
        from_scheduler(sched.handle(td::RemoveWorker{dead}));
      } else if (r < 4 && sims.size() < 5) {
        add_worker();
      } else if (r < 8) {  // time to balance: idle workers steal
        from_scheduler(sched.handle(td::Rebalance{}));
      } else if (r < 50) {  // a worker finishes the oldest task it runs
        auto it = pick();
        Sim& sim = it->second;
        if (sim.running.empty()) continue;
        const Key k = sim.running.front();
        sim.running.pop_front();
        const int i = std::stoi(k.str().substr(2));
        int64_t v = i;
        for (const auto& d : specs[static_cast<size_t>(i)].dependencies) {
          auto found = sim.store.find(d.str());
          ASSERT_NE(found, sim.store.end()) << "seed " << seed << ": " << k << " ran without " << d;
          v = (v + found->second) % kMod;
        }
        ASSERT_EQ(v, want[static_cast<size_t>(i)]) << "seed " << seed;
        sim.store[k.str()] = v;
        from_worker(it->first, sim.state->handle(td::ExecuteSuccess{
                                   k, static_cast<uint64_t>(v), k.str()[0] == 'q' ? 1e-4 : 0.01}));
      } else {  // a peer answers the oldest request of a worker
        auto it = pick();
        Sim& sim = it->second;
        if (sim.asked.empty()) continue;
        const td::GatherDep g = sim.asked.front();
        sim.asked.pop_front();
        auto peer = sims.find(g.peer);
        if (peer == sims.end()) {
          from_worker(it->first, sim.state->handle(td::GatherDepFailed{g.peer, g.keys}));
        } else {
          td::GatherDepDone done{g.peer, {}, {}};
          for (const Key& k : g.keys) {
            auto v = peer->second.store.find(k.str());
            if (v == peer->second.store.end()) {
              done.missing.push_back(k);
            } else {
              sim.store[k.str()] = v->second;
              done.received.emplace_back(k, static_cast<uint64_t>(v->second));
            }
          }
          from_worker(it->first, sim.state->handle(done));
        }
      }
      deliver();
    }
    ASSERT_EQ(reported.size(), wanted.size()) << "seed " << seed << " stalled";
    for (const Key& k : wanted) {
      EXPECT_EQ(reported[k.str()], want[static_cast<size_t>(std::stoi(k.str().substr(2)))])
          << "seed " << seed;
    }
  }
  EXPECT_GT(deaths, 10);
  EXPECT_GT(gathers, 100);
  EXPECT_GT(stolen, 5);
  EXPECT_GT(ahead, 20);  // inputs of tasks sent ahead, still being computed
  std::cout << "worker simulation: " << deaths << " deaths, " << gathers << " gathers, " << stolen
            << " stolen, " << ahead << " inputs of tasks assigned ahead\n";
}

// A request to a peer carries at most max_bytes_per_gather bytes by the sizes the scheduler
// reported (a larger key goes alone), besides max_keys_per_gather keys.
TEST(WorkerState, AFetchIsBoundedInBytes) {
  td::WorkerState w({.self = 1, .nthreads = 1, .max_bytes_per_gather = 100, .validate = true});
  td::ComputeTask c =
      compute("t", {{"d0", {2}}, {"d1", {2}}, {"d2", {2}}, {"d3", {2}}, {"d4", {2}}});
  c.nbytes = {40, 40, 40, 150, 10};
  auto out = w.handle(c);
  auto g = only<td::GatherDep>(out);
  ASSERT_EQ(g.size(), 1U);
  EXPECT_EQ(g[0].keys, (std::vector<Key>{Key("d0"), Key("d1"), Key("d4")}));
  EXPECT_EQ(g[0].nbytes, 90U);
  EXPECT_EQ(w.status(Key("d2")), WorkerTaskStatus::Fetch);  // one request per peer at a time
  out = w.handle(td::GatherDepDone{2, {{Key("d0"), 40}, {Key("d1"), 40}, {Key("d4"), 10}}, {}});
  g = only<td::GatherDep>(out);
  ASSERT_EQ(g.size(), 1U);
  EXPECT_EQ(g[0].keys, std::vector<Key>{Key("d2")});  // d3 would pass 100
  out = w.handle(td::GatherDepDone{2, {{Key("d2"), 40}}, {}});
  g = only<td::GatherDep>(out);
  ASSERT_EQ(g.size(), 1U);
  EXPECT_EQ(g[0].keys, std::vector<Key>{Key("d3")});  // over the bound, alone
  EXPECT_EQ(g[0].nbytes, 150U);
  out = w.handle(td::GatherDepDone{2, {{Key("d3"), 150}}, {}});
  ASSERT_EQ(only<td::Execute>(out).size(), 1U);
  EXPECT_EQ(only<td::Execute>(out)[0].key, Key("t"));
  // Without sizes (a compute-task with none), the key count alone bounds a request.
  td::WorkerState v({.self = 1,
                     .nthreads = 1,
                     .max_keys_per_gather = 2,
                     .max_bytes_per_gather = 100,
                     .validate = true});
  g = only<td::GatherDep>(v.handle(compute("u", {{"e0", {2}}, {"e1", {2}}, {"e2", {2}}})));
  ASSERT_EQ(g.size(), 1U);
  EXPECT_EQ(g[0].keys, (std::vector<Key>{Key("e0"), Key("e1")}));
}

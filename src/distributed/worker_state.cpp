// The worker's state machine: tasks by key (node-stable, so tasks point at each other),
// a priority queue of ready tasks, and the keys to fetch grouped by the peer that holds
// them (one request per peer at a time, a bounded number in flight).
#include "distributed/worker_state.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "tessera/core/error.hpp"

namespace tessera::distributed {

const char* status_name(WorkerTaskStatus s) {
  switch (s) {
    case WorkerTaskStatus::Waiting:
      return "waiting";
    case WorkerTaskStatus::Fetch:
      return "fetch";
    case WorkerTaskStatus::Flight:
      return "flight";
    case WorkerTaskStatus::Ready:
      return "ready";
    case WorkerTaskStatus::Executing:
      return "executing";
    case WorkerTaskStatus::Memory:
      return "memory";
    case WorkerTaskStatus::Error:
      return "error";
    case WorkerTaskStatus::Gone:
      return "gone";
  }
  return "?";
}

struct WorkerState::Impl {
  struct Task {
    Key key;
    WorkerTaskStatus status = WorkerTaskStatus::Gone;
    std::shared_ptr<const std::string> payload;
    uint64_t priority = 0;
    bool run_here = false;   // the scheduler asked this worker to compute it
    bool cancelled = false;  // freed while executing: its result is dropped
    std::vector<Task*> deps, dependents;
    std::vector<WorkerId> who_has;  // peers to fetch it from (while fetch/flight)
    WorkerId flight_peer = 0;
    uint32_t waiting = 0;  // dependencies not in memory
    uint64_t nbytes = 0;
    double estimate = -1;  // while executing: its kind's measured duration (-1: unknown)
    // Asked to compute it while it was in flight: done if the data does not come.
    std::unique_ptr<ComputeTask> deferred;
  };
  struct ReadyEntry {
    uint64_t priority, seq;
    Task* task;
    bool operator>(const ReadyEntry& o) const {
      return priority != o.priority ? priority > o.priority : seq > o.seq;
    }
  };

  Options options;
  std::unordered_map<Key, Task, KeyHash> tasks;
  std::priority_queue<ReadyEntry, std::vector<ReadyEntry>, std::greater<>> ready;
  uint64_t seq = 0;
  size_t executing = 0;
  // Over the executing tasks: the sum of known estimates, and how many have none.
  double executing_estimate = 0;
  size_t executing_unknown = 0;
  // Mean measured duration by task kind (key prefix), as a moving average.
  // Looked up by std::string_view (a key's prefix), so no string is made per task.
  struct PrefixHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, double, PrefixHash, std::equal_to<>> durations;
  std::vector<Task*> to_fetch;              // in fetch status, in arrival order
  std::unordered_set<WorkerId> busy_peers;  // a request in flight to them
  std::vector<WorkerInstruction>* out = nullptr;

  explicit Impl(Options o) : options(o) {
    if (options.nthreads < 1) throw ValueError("WorkerState: nthreads must be at least 1");
  }

  static std::vector<Key> keys_of(const std::vector<Task*>& ts) {
    std::vector<Key> keys;
    keys.reserve(ts.size());
    for (const Task* t : ts) keys.push_back(t->key);
    return keys;
  }
  Task* find(const Key& k) {
    auto it = tasks.find(k);
    return it == tasks.end() ? nullptr : &it->second;
  }
  Task& get(const Key& k) {
    Task& t = tasks[k];
    if (t.key.empty()) t.key = k;
    return t;
  }
  void forget(Task& t) {
    for (Task* d : t.deps) std::erase(d->dependents, &t);
    for (Task* d : t.dependents) std::erase(d->deps, &t);
    std::erase(to_fetch, &t);
    tasks.erase(t.key);
  }

  void make_ready(Task& t) {
    t.status = WorkerTaskStatus::Ready;
    ready.push({t.priority, seq++, &t});
  }

  double estimate_of(const Key& k) const {
    auto it = durations.find(key_prefix(k.name()));
    return it == durations.end() ? -1 : it->second;
  }

  // Whether a task of this estimate may be handed out now: always onto a free thread;
  // beyond the threads only while every task handed out has a known estimate and all of
  // them fit in queue_seconds per thread.
  bool may_start(double estimate) const {
    const auto threads = static_cast<size_t>(options.nthreads);
    if (executing < threads) return true;
    if (options.queue_seconds <= 0 || estimate < 0 || executing_unknown > 0) return false;
    if (executing >= threads * (1 + options.max_queued_per_thread)) return false;
    return executing_estimate + estimate <=
           options.queue_seconds * static_cast<double>(threads) * (1 + 1e-9);  // rounding
  }

  void leave_executing(Task& t) {
    --executing;
    if (t.estimate < 0) {
      --executing_unknown;
    } else {
      executing_estimate -= t.estimate;
      if (executing == 0 || executing_estimate < 0) executing_estimate = 0;  // rounding
    }
    t.estimate = -1;
  }

  void run_ready() {
    while (!ready.empty()) {
      const ReadyEntry e = ready.top();
      // Entries of tasks that left the ready state (freed) are skipped; a freed task's
      // entry is dropped before its memory is, see release().
      if (e.task->status != WorkerTaskStatus::Ready) {
        ready.pop();
        continue;
      }
      Task& t = *e.task;
      const double estimate = estimate_of(t.key);
      if (!may_start(estimate)) break;
      ready.pop();
      t.status = WorkerTaskStatus::Executing;
      ++executing;
      t.estimate = estimate;
      if (estimate < 0) {
        ++executing_unknown;
      } else {
        executing_estimate += estimate;
      }
      Execute ex{t.key, t.payload, {}, estimate};
      ex.inputs.reserve(t.deps.size());
      for (const Task* d : t.deps) ex.inputs.push_back(d->key);
      out->push_back(std::move(ex));
    }
  }

  // Requests for keys in fetch status: for each, a holder without a request in flight; up to
  // max_keys_per_gather keys and max_bytes_per_gather bytes (by the scheduler's sizes; at
  // least one key) per request, max_gathers_in_flight requests.
  void fetch() {
    std::vector<Task*> pending;
    pending.swap(to_fetch);
    std::stable_sort(pending.begin(), pending.end(),
                     [](const Task* a, const Task* b) { return a->priority < b->priority; });
    std::vector<GatherDep> requests;
    for (Task* t : pending) {
      if (t->status != WorkerTaskStatus::Fetch) continue;
      WorkerId peer = 0;
      bool found = false;
      for (WorkerId h : t->who_has) {
        if (h == options.self || busy_peers.count(h)) continue;
        auto r = std::find_if(requests.begin(), requests.end(),
                              [h](const GatherDep& g) { return g.peer == h; });
        if (r != requests.end() && (r->keys.size() >= options.max_keys_per_gather ||
                                    r->nbytes >= options.max_bytes_per_gather ||
                                    t->nbytes > options.max_bytes_per_gather - r->nbytes))
          continue;
        if (r == requests.end() &&
            busy_peers.size() + requests.size() >= options.max_gathers_in_flight)
          continue;
        peer = h;
        found = true;
        break;
      }
      if (!found) {
        to_fetch.push_back(t);  // wait for a peer to be free
        continue;
      }
      auto r = std::find_if(requests.begin(), requests.end(),
                            [peer](const GatherDep& g) { return g.peer == peer; });
      if (r == requests.end()) {
        requests.push_back(GatherDep{peer, {}, 0});
        r = requests.end() - 1;
      }
      r->keys.push_back(t->key);
      r->nbytes += t->nbytes;
      t->status = WorkerTaskStatus::Flight;
      t->flight_peer = peer;
    }
    for (GatherDep& g : requests) {
      busy_peers.insert(g.peer);
      out->push_back(std::move(g));
    }
  }

  // Data this worker fetched and no local task needs any more is dropped.
  void release_if_unneeded(Task& t) {
    if (t.run_here || t.status != WorkerTaskStatus::Memory) return;
    for (Task* d : t.dependents) {
      if (d->status != WorkerTaskStatus::Memory && d->status != WorkerTaskStatus::Error) return;
    }
    out->push_back(ReleaseData{t.key});
    forget(t);
  }

  // A dependency that no known holder has: every local task needing it is handed back to
  // the scheduler (which reschedules it once the dependency is recomputed).
  void give_up_on(Task& dep, WorkerId last_holder) {
    const Key key = dep.key;  // `dep` may be forgotten on the way
    dep.status = WorkerTaskStatus::Gone;
    // By key: dropping one user may drop another (waiting on it here).
    for (const Key& k : keys_of(dep.dependents)) {
      Task* u = find(k);
      if (!u || !u->run_here) continue;
      out->push_back(SendMissingData{u->key, key, last_holder});
      drop_task(*u);
    }
    Task* d = find(key);
    if (!d) return;
    if (d->deferred) {
      const ComputeTask c = std::move(*d->deferred);
      d->deferred.reset();
      on(c);
      return;
    }
    forget(*d);
  }

  // Removes a task that will not run here (cancelled or handed back), and the fetched
  // dependencies only it needed.
  void drop_task(Task& t) {
    if (t.status == WorkerTaskStatus::Executing) {
      t.cancelled = true;
      return;
    }
    drop_waiting_dependents(t);
    if (t.status == WorkerTaskStatus::Memory) out->push_back(ReleaseData{t.key});
    const std::vector<Task*> deps = t.deps;
    // The ready queue points at ready tasks: take it out before its memory goes.
    if (t.status == WorkerTaskStatus::Ready) remove_from_ready(&t);
    forget(t);
    for (Task* d : deps) {
      if (d->run_here || !d->dependents.empty()) continue;
      if (d->status == WorkerTaskStatus::Memory) {
        out->push_back(ReleaseData{d->key});
        forget(*d);
      } else if (d->status == WorkerTaskStatus::Fetch) {
        forget(*d);
      } else if (d->status == WorkerTaskStatus::Flight) {
        d->status = WorkerTaskStatus::Gone;  // forgotten when its request returns
      }
    }
  }

  // Tasks to run here that wait for `t` to be computed here (sent ahead of it: speculative
  // assignment) cannot run once it will not be: they are dropped too (the scheduler, which
  // took `t` back, frees them as well).
  void drop_waiting_dependents(Task& t) {
    for (const Key& k : keys_of(t.dependents)) {  // by key: one drop may drop another
      Task* u = find(k);
      if (u && u->run_here && u->status == WorkerTaskStatus::Waiting) drop_task(*u);
    }
  }

  void remove_from_ready(Task* t) {
    std::vector<ReadyEntry> keep;
    while (!ready.empty()) {
      if (ready.top().task != t) keep.push_back(ready.top());
      ready.pop();
    }
    for (const ReadyEntry& e : keep) ready.push(e);
  }

  void arrived(Task& t, uint64_t nbytes) {
    t.status = WorkerTaskStatus::Memory;
    t.nbytes = nbytes;
    t.who_has.clear();
    if (t.run_here) out->push_back(SendTaskFinished{t.key, nbytes, 0});
    for (Task* d : t.dependents) {
      if (d->status == WorkerTaskStatus::Waiting && --d->waiting == 0) make_ready(*d);
    }
  }

  // ---- events ----
  void on(const ComputeTask& e) {
    Task& t = get(e.key);
    if (t.status == WorkerTaskStatus::Executing) {  // freed while running, then asked again
      t.run_here = true;
      t.cancelled = false;
      return;
    }
    if (t.status == WorkerTaskStatus::Flight) {  // its data may come: run it only if not
      t.run_here = true;
      t.deferred = std::make_unique<ComputeTask>(e);
      return;
    }
    // Asked twice, unless it erred here: then the scheduler retries it (UpdateGraph::retries).
    if (t.run_here && t.status != WorkerTaskStatus::Gone && t.status != WorkerTaskStatus::Error)
      return;
    t.run_here = true;
    t.cancelled = false;
    t.payload = e.payload;
    t.priority = e.priority;
    if (t.status == WorkerTaskStatus::Memory) {  // fetched earlier as a dependency
      out->push_back(SendTaskFinished{t.key, t.nbytes, 0});
      return;
    }
    if (t.status == WorkerTaskStatus::Fetch) {  // compute it instead of fetching it
      std::erase(to_fetch, &t);
      t.status = WorkerTaskStatus::Gone;
    }
    t.waiting = 0;
    for (size_t i = 0; i < e.who_has.size(); ++i) {
      const auto& [dk, holders] = e.who_has[i];
      Task& d = get(dk);
      if (std::find(t.deps.begin(), t.deps.end(), &d) == t.deps.end()) {
        t.deps.push_back(&d);
        d.dependents.push_back(&t);
      }
      if (d.status == WorkerTaskStatus::Memory) continue;
      ++t.waiting;
      if (d.status == WorkerTaskStatus::Gone) {
        d.priority = e.priority;
        d.nbytes = i < e.nbytes.size() ? e.nbytes[i] : 0;  // until it arrives: the scheduler's word
        d.who_has.clear();
        for (WorkerId h : holders) {
          if (h != options.self) d.who_has.push_back(h);
        }
        if (d.who_has.empty()) {
          // The scheduler thinks this worker (only) holds it, and it does not.
          out->push_back(SendMissingData{t.key, d.key, options.self});
          drop_task(t);
          return;
        }
        d.status = WorkerTaskStatus::Fetch;
        to_fetch.push_back(&d);
      } else if (d.status == WorkerTaskStatus::Fetch) {
        d.priority = std::min(d.priority, e.priority);
      }
    }
    if (t.waiting == 0) {
      make_ready(t);
    } else {
      t.status = WorkerTaskStatus::Waiting;
    }
  }

  void on(const FreeKeys& e) {
    for (const Key& k : e.keys) {
      Task* t = find(k);
      if (!t) continue;
      t->run_here = false;
      if (t->status == WorkerTaskStatus::Memory) {
        bool needed = false;
        for (Task* d : t->dependents)
          needed = needed ||
                   (d->status != WorkerTaskStatus::Memory && d->status != WorkerTaskStatus::Error);
        if (!needed) {
          out->push_back(ReleaseData{t->key});
          forget(*t);
        }
        continue;
      }
      if (t->status == WorkerTaskStatus::Fetch || t->status == WorkerTaskStatus::Flight) continue;
      drop_task(*t);
    }
  }

  // A task not started yet (waiting for inputs, or ready) is given up to another worker.
  void on(const StealRequest& e) {
    Task* t = find(e.key);
    const bool give =
        t && t->run_here && !t->deferred &&
        (t->status == WorkerTaskStatus::Waiting || t->status == WorkerTaskStatus::Ready);
    if (give) {
      t->run_here = false;
      drop_task(*t);
    }
    out->push_back(SendStealResponse{e.key, give, e.request});
  }

  void on(const ExecuteSuccess& e) {
    Task* t = find(e.key);
    if (!t || t->status != WorkerTaskStatus::Executing) return;
    leave_executing(*t);
    const std::string_view prefix = key_prefix(t->key.name());
    if (auto d = durations.find(prefix); d != durations.end()) {
      d->second = 0.75 * d->second + 0.25 * e.duration;
    } else {
      durations.emplace(std::string(prefix), e.duration);
    }
    if (t->cancelled) {
      out->push_back(ReleaseData{t->key});
      drop_waiting_dependents(*t);
      const std::vector<Task*> deps = t->deps;
      forget(*t);
      for (Task* d : deps) release_if_unneeded(*d);
      return;
    }
    t->status = WorkerTaskStatus::Memory;
    t->nbytes = e.nbytes;
    out->push_back(SendTaskFinished{t->key, e.nbytes, e.duration});
    for (Task* d : t->dependents) {
      if (d->status == WorkerTaskStatus::Waiting && --d->waiting == 0) make_ready(*d);
    }
    const std::vector<Task*> deps = t->deps;
    for (Task* d : deps) release_if_unneeded(*d);
  }

  void on(const ExecuteFailure& e) {
    Task* t = find(e.key);
    if (!t || t->status != WorkerTaskStatus::Executing) return;
    leave_executing(*t);
    if (t->cancelled) {
      drop_waiting_dependents(*t);
      forget(*t);
      return;
    }
    t->status = WorkerTaskStatus::Error;
    out->push_back(SendTaskErred{t->key, e.exception});
    const std::vector<Task*> deps = t->deps;
    for (Task* d : deps) release_if_unneeded(*d);
  }

  void on(const GatherDepDone& e) {
    busy_peers.erase(e.peer);
    for (const auto& [k, nbytes] : e.received) {
      Task* t = find(k);
      if (!t) {
        out->push_back(ReleaseData{k});  // nobody here needs it any more
        continue;
      }
      if (t->status == WorkerTaskStatus::Gone) {
        out->push_back(ReleaseData{k});
        forget(*t);
        continue;
      }
      if (t->status != WorkerTaskStatus::Flight) continue;
      t->deferred.reset();
      arrived(*t, nbytes);
    }
    for (const Key& k : e.missing) missing_from(k, e.peer);
  }

  void on(const GatherDepFailed& e) {
    busy_peers.erase(e.peer);
    for (const Key& k : e.keys) missing_from(k, e.peer);
  }

  void missing_from(const Key& k, WorkerId peer) {
    Task* t = find(k);
    if (!t) return;
    if (t->status == WorkerTaskStatus::Gone) {
      forget(*t);
      return;
    }
    if (t->status != WorkerTaskStatus::Flight) return;
    std::erase(t->who_has, peer);
    if (t->who_has.empty()) {
      give_up_on(*t, peer);
      return;
    }
    t->status = WorkerTaskStatus::Fetch;
    to_fetch.push_back(t);
  }

  void on(const UpdateWhoHas& e) {
    Task* t = find(e.key);
    if (!t || t->status != WorkerTaskStatus::Fetch) return;
    t->who_has.clear();
    for (WorkerId h : e.holders)
      if (h != options.self) t->who_has.push_back(h);
  }

  void validate() const {
    size_t exec = 0, unknown = 0;
    for (const auto& entry : tasks) {
      const Task& t = entry.second;
      auto broken = [&](std::string_view what) {
        throw SchedulerError(fmt::format("worker {} state: task '{}' ({}): {}", options.self,
                                         t.key.str(), status_name(t.status), what));
      };
      exec += t.status == WorkerTaskStatus::Executing;
      unknown += t.status == WorkerTaskStatus::Executing && t.estimate < 0;
      if (t.status != WorkerTaskStatus::Executing && t.estimate >= 0)
        broken("an estimate outside execution");
      uint32_t not_in_memory = 0;
      for (const Task* d : t.deps) {
        if (std::count(d->dependents.begin(), d->dependents.end(), &t) != 1)
          broken("a dependency does not list it");
        not_in_memory += d->status != WorkerTaskStatus::Memory;
      }
      if (t.status == WorkerTaskStatus::Waiting && (t.waiting != not_in_memory || t.waiting == 0))
        broken("waiting count is off");
      if ((t.status == WorkerTaskStatus::Ready || t.status == WorkerTaskStatus::Executing) &&
          not_in_memory != 0)
        broken("ready before its dependencies");
      if (t.status == WorkerTaskStatus::Flight && !busy_peers.count(t.flight_peer))
        broken(
            fmt::format("in flight from worker {}, which has no request from it", t.flight_peer));
      if (t.status == WorkerTaskStatus::Fetch && t.who_has.empty()) broken("nowhere to fetch from");
    }
    const auto threads = static_cast<size_t>(options.nthreads);
    const size_t most =
        options.queue_seconds > 0 ? threads * (1 + options.max_queued_per_thread) : threads;
    if (exec != executing || executing > most || unknown != executing_unknown)
      throw SchedulerError(fmt::format(
          "worker {} state: {} executing ({} without an estimate), counted {} ({}), at most {}",
          options.self, exec, unknown, executing, executing_unknown, most));
    if (executing > threads &&
        (executing_unknown > 0 ||
         executing_estimate > options.queue_seconds * static_cast<double>(threads) * (1 + 1e-9)))
      throw SchedulerError(
          fmt::format("worker {} state: {} tasks handed out for {} threads, estimated at {} s",
                      options.self, executing, threads, executing_estimate));
  }
};

WorkerState::WorkerState(Options options) : impl_(std::make_unique<Impl>(options)) {}
WorkerState::~WorkerState() = default;

void WorkerState::handle(const WorkerEvent& event, std::vector<WorkerInstruction>& out) {
  impl_->out = &out;
  std::visit([this](const auto& e) { impl_->on(e); }, event);
  impl_->fetch();
  impl_->run_ready();
  impl_->out = nullptr;
  if (impl_->options.validate) impl_->validate();
}

void WorkerState::validate() const {
  impl_->validate();
}

WorkerTaskStatus WorkerState::status(const Key& key) const {
  auto it = impl_->tasks.find(key);
  return it == impl_->tasks.end() ? WorkerTaskStatus::Gone : it->second.status;
}

size_t WorkerState::executing_count() const {
  return impl_->executing;
}

size_t WorkerState::size() const {
  return impl_->tasks.size();
}

}  // namespace tessera::distributed

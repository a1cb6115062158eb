// The scheduler's state machine. Tasks live in a vector indexed by a small integer id (the
// key map is the only hash lookup, done once per event key); workers in a map by id. A
// task's dependencies count how many of their dependents still need them ("waiters"), so
// that results are released the moment their last reader is done (DESIGN.md decision 5).
#include "distributed/scheduler_state.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <queue>
#include <span>
#include <string_view>
#include <unordered_set>

#include "tessera/core/error.hpp"

namespace tessera::distributed {

std::string_view key_prefix(std::string_view name) {
  const size_t dash = name.rfind('-');
  return dash == std::string_view::npos || dash == 0 ? name : name.substr(0, dash);
}

const char* status_name(TaskStatus s) {
  switch (s) {
    case TaskStatus::Released:
      return "released";
    case TaskStatus::Waiting:
      return "waiting";
    case TaskStatus::Queued:
      return "queued";
    case TaskStatus::NoWorker:
      return "no-worker";
    case TaskStatus::Processing:
      return "processing";
    case TaskStatus::Memory:
      return "memory";
    case TaskStatus::Erred:
      return "erred";
    case TaskStatus::Forgotten:
      return "forgotten";
  }
  return "?";
}

namespace {

using TaskId = uint32_t;
constexpr uint32_t kNone = UINT32_MAX;
// Placement: bytes per second assumed between workers, and the duration assumed for a task
// of a kind never seen finish (Dask's defaults).
constexpr double kBandwidth = 100e6;
constexpr double kUnknownDuration = 0.5;

// Statuses in which a task still needs its dependencies' data.
bool needy(TaskStatus s) {
  return s == TaskStatus::Waiting || s == TaskStatus::Queued || s == TaskStatus::NoWorker ||
         s == TaskStatus::Processing;
}

template <class T>
void erase_value(std::vector<T>& v, T x) {
  auto it = std::find(v.begin(), v.end(), x);
  if (it != v.end()) {
    *it = v.back();
    v.pop_back();
  }
}

// Task ids by key: open addressing over (hash, id) pairs, so that a lookup touches one slot
// and compares a key only when the 64-bit hashes match. `key_of(id)` gives an id's key.
class KeyIndex {
 public:
  size_t size() const noexcept { return used_; }

  template <class KeyOf>
  uint32_t find(const Key& k, KeyOf&& key_of) const {
    if (slots_.empty()) return kNone;
    const uint64_t h = k.hash();
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == kNone) return kNone;
      if (s.hash == h && key_of(s.id) == k) return s.id;
    }
  }

  // `k` must be absent.
  void insert(const Key& k, uint32_t id) {
    if ((used_ + 1) * 2 > slots_.size()) grow(std::max<size_t>(16, slots_.size() * 2));
    place({k.hash(), id});
    ++used_;
  }

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) grow(cap);
  }

  template <class KeyOf>
  void erase(const Key& k, KeyOf&& key_of) {
    if (slots_.empty()) return;
    const uint64_t h = k.hash();
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].id == kNone) return;
      if (slots_[i].hash == h && key_of(slots_[i].id) == k) break;
    }
    // Backward-shift deletion: later slots of the run move up if their home allows it.
    for (size_t j = i;;) {
      j = (j + 1) & mask_;
      if (slots_[j].id == kNone) break;
      const size_t home = slots_[j].hash & mask_;
      const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (movable) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
    --used_;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t id = kNone;
  };
  void place(Slot s) {
    size_t i = s.hash & mask_;
    while (slots_[i].id != kNone) i = (i + 1) & mask_;
    slots_[i] = s;
  }
  void grow(size_t cap) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (const Slot& s : old)
      if (s.id != kNone) place(s);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t used_ = 0;
};

}  // namespace

struct SchedulerState::Impl {
  struct Error {
    std::string exception;
    Key blamed;
  };
  struct Task {
    Key key;
    std::shared_ptr<const std::string> payload;
    uint64_t priority = 0;
    uint32_t generation = 0;
    uint32_t group = 0;
    std::vector<TaskId> deps, dependents;
    std::vector<WorkerId> who_has;
    std::vector<ClientId> who_wants;
    uint64_t nbytes = 0;
    // Dependencies not in memory (while Waiting, or Processing speculatively: then each of
    // them is Processing on the same worker).
    uint32_t waiting = 0;
    uint32_t waiters = 0;  // dependents in a needy status
    WorkerId processing_on = kNone;
    uint32_t slot = 0;  // position in its worker's processing list
    TaskStatus status = TaskStatus::Forgotten;
    uint8_t suspicious = 0;        // workers that died while running it
    uint16_t retries = 0;          // runs left after an error (UpdateGraph::retries)
    WorkerId stealing_to = kNone;  // a StealRequest is out: the worker it would go to
    bool scattered = false;        // client data: no payload once held (see TaskSpec)
    std::unique_ptr<Error> error;
  };
  struct Worker {
    WorkerId id = 0;
    int nthreads = 1;
    bool paused = false;
    uint32_t heap_pos = kNone;  // position in the load heap (kNone: not running)
    // Tasks assigned to it (a task knows its slot here: O(1) removal, no allocation).
    std::vector<TaskId> processing;
    uint32_t incoming = 0;  // tasks being stolen for it (StealRequests out)
    // Tasks whose results it holds. Entries are not removed when a result is released
    // (that would cost a search); `held` counts the live ones, and the list is compacted
    // when it is mostly stale. A live entry's task lists this worker in its who_has.
    std::vector<TaskId> has_what;
    size_t held = 0;
    // Tasks processing here whose dependents were not assigned speculatively because the
    // worker was full: tried again when it reports a task done.
    std::vector<TaskId> speculate_later;

    // Tasks per thread, in 1/2^20 units, then the id: the order of the load heap.
    std::pair<uint64_t, WorkerId> load() const {
      return {(static_cast<uint64_t>(processing.size()) << 20) /
                  static_cast<uint64_t>(std::max(1, nthreads)),
              id};
    }
  };
  // Running (not paused) workers as a binary min-heap by load; each worker knows its
  // position, so a change of load is one sift, without allocation.
  class LoadHeap {
   public:
    bool empty() const noexcept { return h_.empty(); }
    size_t size() const noexcept { return h_.size(); }
    Worker* top() const { return h_.front(); }
    void push(Worker* w) {
      w->heap_pos = static_cast<uint32_t>(h_.size());
      h_.push_back(w);
      up(w->heap_pos);
    }
    void erase(Worker* w) {
      const uint32_t i = w->heap_pos;
      Worker* last = h_.back();
      h_.pop_back();
      w->heap_pos = kNone;
      if (last == w) return;
      h_[i] = last;
      last->heap_pos = i;
      up(i);
      down(last->heap_pos);
    }
    void update(Worker* w) {
      up(w->heap_pos);
      down(w->heap_pos);
    }
    // Positions match and no parent is heavier than its children.
    bool valid() const {
      for (size_t i = 0; i < h_.size(); ++i) {
        if (h_[i]->heap_pos != i) return false;
        if (i > 0 && h_[i]->load() < h_[(i - 1) / 2]->load()) return false;
      }
      return true;
    }

   private:
    void swap_at(uint32_t a, uint32_t b) {
      std::swap(h_[a], h_[b]);
      h_[a]->heap_pos = a;
      h_[b]->heap_pos = b;
    }
    void up(uint32_t i) {
      while (i > 0) {
        const uint32_t p = (i - 1) / 2;
        if (!(h_[i]->load() < h_[p]->load())) return;
        swap_at(i, p);
        i = p;
      }
    }
    void down(uint32_t i) {
      const auto n = static_cast<uint32_t>(h_.size());
      while (true) {
        uint32_t m = i;
        const uint32_t l = 2 * i + 1, r = l + 1;
        if (l < n && h_[l]->load() < h_[m]->load()) m = l;
        if (r < n && h_[r]->load() < h_[m]->load()) m = r;
        if (m == i) return;
        swap_at(i, m);
        i = m;
      }
    }
    std::vector<Worker*> h_;
  };
  struct Group {
    double duration = kUnknownDuration;
    bool seen = false;
    // For Dask's "root-ish" test: tasks of the group in the state, and the distinct tasks
    // they depend on (up to kFewDependencies; `many` past that).
    uint32_t size = 0;
    std::vector<TaskId> deps;
    bool many = false;
  };
  static constexpr size_t kFewDependencies = 5;
  // A task's place in line (Task::priority): the user's priority in the high half (higher
  // first), the graph's static order in the low half. Workers order ready tasks by it.
  static uint64_t line_priority(int32_t user, uint64_t order) {
    const auto high = static_cast<uint64_t>(int64_t{INT32_MAX} - user);  // 0 .. 2^32 - 1
    return (high << 32) | std::min<uint64_t>(order, 0xffffffff);
  }
  // Whether a task (generation g, line priority p) runs before another: Dask's priority
  // tuple (user priority, generation, static order).
  static bool runs_before(uint32_t g, uint64_t p, uint32_t og, uint64_t op) {
    if ((p >> 32) != (op >> 32)) return p < op;
    return g != og ? g < og : p < op;
  }
  struct Queued {
    uint32_t generation;
    uint64_t priority;
    TaskId id;
    bool operator>(const Queued& o) const {
      if (runs_before(o.generation, o.priority, generation, priority)) return true;
      if (runs_before(generation, priority, o.generation, o.priority)) return false;
      return id > o.id;
    }
  };
  bool runs_before(TaskId a, TaskId b) const {
    return runs_before(T(a).generation, T(a).priority, T(b).generation, T(b).priority);
  }

  Options options;
  std::vector<Task> tasks;
  std::vector<TaskId> free_ids;
  KeyIndex ids;
  std::unordered_map<WorkerId, Worker> workers;
  LoadHeap by_load;
  std::unordered_map<ClientId, std::unordered_set<TaskId>> clients;
  std::priority_queue<Queued, std::vector<Queued>, std::greater<>> queue;
  std::unordered_set<TaskId> no_worker;
  std::vector<Group> groups;
  std::unordered_map<std::string, uint32_t> group_ids;
  uint32_t last_group = kNone;
  std::string last_prefix;
  uint32_t generation = 0;
  std::array<size_t, 8> counts{};
  // The tasks with a StealRequest out, and the request's number: a task can be asked for,
  // answered, sent back to the same worker and asked for again, and the first answer must
  // not settle the second.
  std::unordered_map<TaskId, uint64_t> steal_requests;
  uint64_t last_steal_request = 0;
  size_t total_threads = 0;  // of the workers connected
  // FreeKeys gathered during one event, flushed as one action per worker.
  // A free that an assignment of the same key to the same worker later in the event
  // overrides is dropped (the worker would otherwise get the ComputeTask, then the free).
  struct PendingFree {
    WorkerId worker;
    Key key;
    size_t at;  // the number of actions out when it was queued
  };
  std::vector<PendingFree> to_free;
  std::vector<Action>* out = nullptr;

  explicit Impl(Options o) : options(o) {}

  // ---- small helpers ----
  Task& T(TaskId id) { return tasks[id]; }
  const Task& T(TaskId id) const { return tasks[id]; }
  TaskId find(const Key& k) const {
    return ids.find(k, [this](TaskId id) -> const Key& { return tasks[id].key; });
  }
  // How many tasks of `group` a worker holds before root tasks wait in the queue:
  // nthreads × worker_saturation, or more for tasks known to be much shorter than
  // latency_hiding (enough of them to keep its threads busy for that long, up to
  // max_saturation per thread), so that the round trip to the scheduler does not idle them.
  size_t saturation_limit(const Worker& w, uint32_t group = kNone) const {
    const double threads = static_cast<double>(w.nthreads);
    double per_thread = options.worker_saturation;
    if (group != kNone && groups[group].seen && options.latency_hiding > 0) {
      const double d = std::max(groups[group].duration, 1e-9);
      per_thread =
          std::max(per_thread, std::min(options.max_saturation, options.latency_hiding / d));
    }
    return static_cast<size_t>(std::max(1.0, std::ceil(threads * per_thread)));
  }
  bool saturated(const Worker& w, uint32_t group = kNone) const {
    return w.processing.size() >= saturation_limit(w, group);
  }
  // The group of the task at the head of the queue (kNone if the head is stale or none).
  uint32_t queue_group() const {
    if (queue.empty()) return kNone;
    const Queued& q = queue.top();
    if (q.id >= tasks.size()) return kNone;
    const Task& t = tasks[q.id];
    return t.status == TaskStatus::Queued && t.generation == q.generation ? t.group : kNone;
  }

  void set_status(TaskId id, TaskStatus s) {
    Task& t = T(id);
    const TaskStatus old = t.status;
    if (old == s) return;
    --counts[static_cast<size_t>(old)];
    ++counts[static_cast<size_t>(s)];
    t.status = s;
    if (needy(old) != needy(s)) {
      for (TaskId d : t.deps) {
        if (needy(s)) {
          ++T(d).waiters;
        } else {
          --T(d).waiters;
        }
      }
    }
  }

  // Changes a worker's processing set, keeping the load heap in step.
  template <class F>
  void update_processing(WorkerId wid, F&& change) {
    Worker& w = workers.at(wid);
    change(w);
    if (!w.paused) by_load.update(&w);
  }

  uint32_t group_of(const Key& key) {
    const std::string_view p = key_prefix(key.name());
    // Graphs come in runs of one kind of task: try the last group first.
    if (last_group != kNone && p == last_prefix) return last_group;
    last_group = group_id(p);
    last_prefix.assign(p);
    return last_group;
  }
  uint32_t group_id(std::string_view p) {
    auto it = group_ids.find(std::string(p));
    if (it != group_ids.end()) return it->second;
    const auto g = static_cast<uint32_t>(groups.size());
    groups.push_back({});
    group_ids.emplace(std::string(p), g);
    return g;
  }

  TaskId new_task(const TaskSpec& spec, int32_t user_priority, uint32_t retries) {
    TaskId id;
    if (!free_ids.empty()) {
      id = free_ids.back();
      free_ids.pop_back();
    } else {
      id = static_cast<TaskId>(tasks.size());
      tasks.emplace_back();
    }
    Task& t = T(id);
    t = Task{};
    t.key = spec.key;
    t.payload = spec.payload;
    t.scattered = spec.scattered;
    t.priority = line_priority(user_priority, spec.priority);
    t.retries = static_cast<uint16_t>(std::min<uint32_t>(retries, UINT16_MAX));
    t.generation = generation;
    t.group = group_of(spec.key);
    ++groups[t.group].size;
    t.status = TaskStatus::Released;
    ++counts[static_cast<size_t>(TaskStatus::Released)];
    ids.insert(spec.key, id);
    return id;
  }

  void free_on(WorkerId w, const Key& k) { to_free.push_back({w, k, out->size()}); }

  void start_processing(Worker& w, TaskId id) {
    T(id).slot = static_cast<uint32_t>(w.processing.size());
    w.processing.push_back(id);
  }
  // A pending steal of `id` is over (answered, or the task left processing).
  void end_steal(TaskId id) {
    Task& t = T(id);
    if (t.stealing_to == kNone) return;
    steal_requests.erase(id);
    if (auto th = workers.find(t.stealing_to); th != workers.end()) --th->second.incoming;
    t.stealing_to = kNone;
  }
  void stop_processing(Worker& w, TaskId id) {
    end_steal(id);
    const uint32_t at = T(id).slot;
    const TaskId last = w.processing.back();
    w.processing[at] = last;
    T(last).slot = at;
    w.processing.pop_back();
  }
  void add_holder(TaskId id, WorkerId wid) {
    Worker& w = workers.at(wid);
    T(id).who_has.push_back(wid);
    w.has_what.push_back(id);
    ++w.held;
  }
  // `id`'s who_has no longer lists `wid` (the caller removed it).
  void drop_holder(WorkerId wid) {
    auto it = workers.find(wid);
    if (it == workers.end()) return;
    Worker& w = it->second;
    --w.held;
    if (w.has_what.size() > 2 * w.held + 64) compact(wid, w);
  }
  // The live entries of a worker's has_what, each once.
  void compact(WorkerId wid, Worker& w) {
    std::vector<TaskId>& h = w.has_what;
    std::sort(h.begin(), h.end());
    h.erase(std::unique(h.begin(), h.end()), h.end());
    h.erase(std::remove_if(h.begin(), h.end(),
                           [&](TaskId id) {
                             const auto& who = T(id).who_has;
                             return std::find(who.begin(), who.end(), wid) == who.end();
                           }),
            h.end());
  }

  void report_memory(const Task& t) {
    for (ClientId c : t.who_wants)
      out->emplace_back(std::in_place_type<ReportMemory>, ReportMemory{c, t.key, t.nbytes});
  }
  void report_erred(const Task& t) {
    for (ClientId c : t.who_wants)
      out->push_back(ReportErred{c, t.key, t.error->exception, t.error->blamed});
  }

  // ---- placement ----

  // The running worker with the least load, or kNone.
  WorkerId least_loaded() const { return by_load.empty() ? kNone : by_load.top()->id; }

  // Where a task with dependencies runs: the worker holding its inputs that would finish it
  // first, counting the bytes it would have to fetch and the work already assigned to it.
  WorkerId best_worker(const Task& t) {
    std::vector<std::pair<WorkerId, uint64_t>> local;  // candidate, bytes it holds
    uint64_t total = 0;
    for (TaskId d : t.deps) {
      const Task& dt = T(d);
      total += dt.nbytes;
      for (WorkerId w : dt.who_has) {
        auto it = std::find_if(local.begin(), local.end(), [w](auto& p) { return p.first == w; });
        if (it == local.end()) {
          local.emplace_back(w, dt.nbytes);
        } else {
          it->second += dt.nbytes;
        }
      }
    }
    const double duration = groups[t.group].duration;
    WorkerId best = kNone;
    double best_cost = 0;
    uint64_t best_load = 0;
    for (const auto& [w, bytes] : local) {
      const Worker& ws = workers.at(w);
      if (ws.paused) continue;
      const double cost = static_cast<double>(total - bytes) / kBandwidth +
                          static_cast<double>(ws.processing.size() + 1) / ws.nthreads * duration;
      const uint64_t load = ws.load().first;
      if (best == kNone || cost < best_cost || (cost == best_cost && load < best_load) ||
          (cost == best_cost && load == best_load && w < best)) {
        best = w;
        best_cost = cost;
        best_load = load;
      }
    }
    return best == kNone ? least_loaded() : best;
  }

  void assign(TaskId id, WorkerId w) {
    send_to(id, w);
    if (options.speculative_assignment) speculate(id);
  }

  // `id` to processing on `w`, and its ComputeTask out (holders of its inputs: none for an
  // input still being computed there, see speculate()).
  void send_to(TaskId id, WorkerId w) {
    if (!no_worker.empty()) no_worker.erase(id);
    set_status(id, TaskStatus::Processing);  // `waiting` keeps counting inputs not done
    Task& t = T(id);
    t.processing_on = w;
    update_processing(w, [this, id](Worker& ws) { start_processing(ws, id); });
    ComputeTask c{w, t.key, t.payload, t.priority, {}};
    c.who_has.reserve(t.deps.size());
    c.nbytes.reserve(t.deps.size());
    for (TaskId d : t.deps) {
      c.who_has.emplace_back(T(d).key, T(d).who_has);
      c.nbytes.push_back(T(d).nbytes);
    }
    out->push_back(std::move(c));
  }

  // Speculative assignment (see Options): the waiting dependents of `root`, processing on
  // its worker, and theirs in turn, go to that worker now if they qualify.
  void speculate(TaskId root) {
    std::vector<TaskId> stack{root};
    while (!stack.empty()) {
      const TaskId id = stack.back();
      stack.pop_back();
      const WorkerId wid = T(id).processing_on;
      Worker& w = workers.at(wid);
      for (TaskId d : T(id).dependents) {
        if (T(d).status != TaskStatus::Waiting || !speculable(T(d), wid)) continue;
        if (w.paused || saturated(w, T(d).group)) {
          w.speculate_later.push_back(id);
          break;
        }
        send_to(d, wid);
        stack.push_back(d);
      }
    }
  }

  // A waiting task that may run on `wid` ahead of its inputs: a kind measured as tiny, and
  // every input held by `wid` or processing there.
  bool speculable(const Task& t, WorkerId wid) const {
    const Group& g = groups[t.group];
    if (!g.seen || g.duration >= options.latency_hiding) return false;
    for (TaskId x : t.deps) {
      const Task& xt = T(x);
      if (xt.status == TaskStatus::Processing) {
        if (xt.processing_on != wid || xt.stealing_to != kNone) return false;
      } else if (xt.status != TaskStatus::Memory ||
                 std::find(xt.who_has.begin(), xt.who_has.end(), wid) == xt.who_has.end()) {
        return false;
      }
    }
    return true;
  }

  // A task processing speculatively (an input still being computed), or with such a
  // dependent: it stays where it is (no stealing).
  bool speculative(const Task& t) const {
    if (t.status == TaskStatus::Processing && t.waiting != 0) return true;
    for (TaskId d : t.dependents)
      if (T(d).status == TaskStatus::Processing && T(d).waiting != 0) return true;
    return false;
  }

  // After `wid` reported tasks done: dependents that did not fit earlier.
  void speculate_again(WorkerId wid) {
    auto it = workers.find(wid);
    if (it == workers.end() || it->second.speculate_later.empty()) return;
    std::vector<TaskId> later;
    later.swap(it->second.speculate_later);
    for (TaskId id : later) {
      if (id < tasks.size() && T(id).status == TaskStatus::Processing && T(id).processing_on == wid)
        speculate(id);
    }
  }

  // A task whose dependencies are all in memory: to a worker, the queue, or no-worker.
  void make_ready(TaskId id) {
    Task& t = T(id);
    if (by_load.empty()) {
      set_status(id, TaskStatus::NoWorker);
      no_worker.insert(id);
      return;
    }
    if (rootish(t)) {
      const WorkerId w = least_loaded();
      if (saturated(workers.at(w), t.group)) {
        set_status(id, TaskStatus::Queued);
        queue.push({t.generation, t.priority, id});
        return;
      }
      assign(id, w);
      return;
    }
    assign(id, best_worker(t));
  }

  // Dask's root-ish tasks: without dependencies, or of a kind much larger than the cluster
  // (more than twice its threads) that depends on a few tasks in all (less than 5, such as
  // one shared input). They are queued while workers are saturated and placed on the least
  // loaded worker: where their few inputs are is no reason to pile them up on one worker.
  bool rootish(const Task& t) const {
    if (t.deps.empty()) return true;
    const Group& g = groups[t.group];
    return !g.many && g.size > 2 * total_threads;
  }

  // Takes queued root tasks while the worker has room.
  void fill(WorkerId wid) {
    auto it = workers.find(wid);
    if (it == workers.end() || it->second.paused) return;
    while (!queue.empty() && !saturated(it->second, queue_group())) {
      const Queued q = queue.top();
      queue.pop();
      if (q.id >= tasks.size()) continue;
      const Task& t = T(q.id);
      if (t.status != TaskStatus::Queued || t.generation != q.generation ||
          t.priority != q.priority)
        continue;  // a stale entry: the task left the queue another way
      assign(q.id, wid);
    }
  }

  // Fills the least loaded workers from the queue (after workers join or resume).
  void fill_all() {
    while (!queue.empty() && !by_load.empty()) {
      const WorkerId w = least_loaded();
      if (saturated(workers.at(w), queue_group())) return;
      const size_t before = queue.size();
      fill(w);
      if (queue.size() == before) return;
    }
  }

  // ---- transitions ----

  // Released tasks needed by `roots` (and their released dependencies) to waiting, then the
  // ones with every input in memory to ready, in priority order.
  void make_waiting(std::span<const TaskId> roots) {
    std::vector<TaskId> stack(roots.begin(), roots.end()), ready;
    while (!stack.empty()) {
      const TaskId id = stack.back();
      stack.pop_back();
      Task& t = T(id);
      if (t.status != TaskStatus::Released || awaits_rescatter(t)) continue;
      set_status(id, TaskStatus::Waiting);
      t.waiting = 0;
      TaskId erred = kNone;
      for (TaskId d : t.deps) {
        const TaskStatus s = T(d).status;
        if (s == TaskStatus::Memory) continue;
        if (awaits_rescatter(T(d)) && T(d).who_wants.empty()) lost_scatter(d);
        if (T(d).status == TaskStatus::Erred) {
          erred = d;
          break;
        }
        ++t.waiting;
        // Scattered data comes back from its client, not from a computation.
        if (s == TaskStatus::Released && !awaits_rescatter(T(d))) stack.push_back(d);
      }
      if (erred != kNone) {
        mark_erred(id, T(erred).error->exception, T(erred).error->blamed);
        continue;
      }
      if (t.waiting == 0) ready.push_back(id);
    }
    std::sort(ready.begin(), ready.end(), [this](TaskId a, TaskId b) { return runs_before(a, b); });
    for (TaskId id : ready) {
      if (T(id).status == TaskStatus::Waiting && T(id).waiting == 0) make_ready(id);
    }
  }

  // Takes a task out of processing/queued/no-worker/waiting back to released (its worker, if
  // any, is told to stop).
  void to_released(TaskId id, bool tell_worker) {
    Task& t = T(id);
    if (t.status == TaskStatus::Processing) {
      const WorkerId w = t.processing_on;
      if (workers.count(w)) {
        update_processing(w, [this, id](Worker& ws) { stop_processing(ws, id); });
        if (tell_worker) free_on(w, t.key);
      }
      t.processing_on = kNone;
      unspeculate(id);
    }
    if (!no_worker.empty()) no_worker.erase(id);
    set_status(id, TaskStatus::Released);
  }

  // `id` left processing: the dependents sent ahead of its result (speculative), and theirs,
  // wait for it again, and their worker drops them.
  void unspeculate(TaskId id) {
    std::vector<TaskId> stack{id};
    while (!stack.empty()) {
      const TaskId x = stack.back();
      stack.pop_back();
      for (TaskId d : T(x).dependents) {
        Task& dt = T(d);
        if (dt.status != TaskStatus::Processing || dt.waiting == 0) continue;
        const WorkerId w = dt.processing_on;
        if (workers.count(w)) {
          update_processing(w, [this, d](Worker& ws) { stop_processing(ws, d); });
          free_on(w, dt.key);
        }
        dt.processing_on = kNone;
        set_status(d, TaskStatus::Waiting);  // `waiting` already counts its inputs
        stack.push_back(d);
      }
    }
  }

  // `id` and everything that depends on it (not already done) fail with `exception`.
  void mark_erred(TaskId id, const std::string& exception, const Key& blamed) {
    std::vector<TaskId> stack{id};
    while (!stack.empty()) {
      const TaskId x = stack.back();
      stack.pop_back();
      Task& t = T(x);
      if (t.status == TaskStatus::Erred || t.status == TaskStatus::Memory) continue;
      if (needy(t.status)) to_released(x, true);
      set_status(x, TaskStatus::Erred);
      t.error = std::make_unique<Error>(Error{exception, blamed});
      report_erred(t);
      for (TaskId d : t.dependents) stack.push_back(d);
      for (TaskId d : t.deps) release_if_unneeded(d);
    }
  }

  // A result no client wants and no dependent still needs: its data is dropped.
  void release_if_unneeded(TaskId id) {
    Task& t = T(id);
    if (t.status != TaskStatus::Memory || t.waiters != 0 || !t.who_wants.empty()) return;
    const std::vector<WorkerId> holders = std::move(t.who_has);
    t.who_has.clear();
    for (WorkerId w : holders) {
      free_on(w, t.key);
      drop_holder(w);
    }
    set_status(id, TaskStatus::Released);
    forget_if_unneeded(id);
  }

  // Work nobody needs any more (no client wants it, no needy dependent): cancelled or
  // dropped, and so on down its dependencies.
  void cancel_unneeded(TaskId root) {
    std::vector<TaskId> stack{root};
    std::vector<TaskId> touched;
    while (!stack.empty()) {
      const TaskId id = stack.back();
      stack.pop_back();
      Task& t = T(id);
      if (!t.who_wants.empty() || t.waiters != 0) continue;
      if (t.status == TaskStatus::Memory) {
        release_if_unneeded(id);
        continue;
      }
      if (!needy(t.status)) {
        touched.push_back(id);
        continue;
      }
      to_released(id, true);
      touched.push_back(id);
      for (TaskId d : t.deps) stack.push_back(d);
    }
    for (TaskId id : touched) {
      if (id < tasks.size() && T(id).status != TaskStatus::Forgotten) forget_if_unneeded(id);
    }
  }

  // Drops a released or erred task from the state when nothing refers to it any more.
  void forget_if_unneeded(TaskId root) {
    std::vector<TaskId> stack{root};
    while (!stack.empty()) {
      const TaskId id = stack.back();
      stack.pop_back();
      Task& t = T(id);
      if ((t.status != TaskStatus::Released && t.status != TaskStatus::Erred) ||
          !t.who_wants.empty() || !t.dependents.empty())
        continue;
      for (TaskId d : t.deps) {
        erase_value(T(d).dependents, id);
        if (T(d).status == TaskStatus::Memory) {
          release_if_unneeded(d);
        } else {
          stack.push_back(d);
        }
      }
      ids.erase(t.key, [this](TaskId x) -> const Key& { return tasks[x].key; });
      if (Group& g = groups[t.group]; --g.size == 0) {  // the kind is gone: start afresh
        g.deps.clear();
        g.many = false;
      }
      --counts[static_cast<size_t>(t.status)];
      ++counts[static_cast<size_t>(TaskStatus::Forgotten)];
      t = Task{};
      free_ids.push_back(id);
    }
  }

  // `w` no longer holds `id`'s result (it died, or a peer could not fetch it from there).
  // A result held nowhere else is recomputed if anything still needs it.
  void lose_replica(TaskId id, WorkerId w, std::vector<TaskId>& recompute) {
    Task& t = T(id);
    if (std::find(t.who_has.begin(), t.who_has.end(), w) == t.who_has.end()) return;
    erase_value(t.who_has, w);
    drop_holder(w);
    if (t.status != TaskStatus::Memory) return;
    if (!t.who_has.empty()) {
      // Still held elsewhere: a client may be fetching it from the worker that lost it, so
      // it hears where the copies are now.
      report_memory(t);
      return;
    }
    set_status(id, TaskStatus::Released);
    for (ClientId c : t.who_wants) out->push_back(ReportLost{c, t.key});
    // Dependents that were about to read it wait again.
    for (TaskId d : t.dependents) {
      const TaskStatus s = T(d).status;
      if (s == TaskStatus::Processing || s == TaskStatus::Queued || s == TaskStatus::NoWorker) {
        to_released(d, true);
        recompute.push_back(d);
      } else if (s == TaskStatus::Waiting) {
        ++T(d).waiting;
      }
    }
    if (awaits_rescatter(t)) {
      // Scattered data: only a client can send it again (it was told: ReportLost above).
      if (t.who_wants.empty() && t.waiters != 0) lost_scatter(id);
      return;
    }
    if (!t.who_wants.empty() || t.waiters != 0) recompute.push_back(id);
  }

  // Scattered data whose every copy is gone: it cannot be recomputed, only sent again.
  static bool awaits_rescatter(const Task& t) {
    return t.scattered && !t.payload && t.status == TaskStatus::Released;
  }
  // ... and no client holds it to send it again: what needs it fails.
  void lost_scatter(TaskId id) {
    const Key key = T(id).key;
    mark_erred(id,
               fmt::format("scattered data '{}' was lost with the worker that held it, and no "
                           "client holds it to scatter it again",
                           key.str()),
               key);
  }

  // ---- events ----

  void on(const UpdateGraph& e) {
    // Check before changing anything: every dependency is in the update or in the state,
    // and the new tasks have no cycle. Keys are looked up once; after that, positions.
    const auto& specs = e.tasks;
    const auto n = static_cast<uint32_t>(specs.size());
    KeyIndex fresh;  // key -> position in specs (the first spec with that key)
    fresh.reserve(n);
    auto spec_key = [&specs](uint32_t i) -> const Key& { return specs[i].key; };
    std::vector<uint32_t> order;                           // positions of the new tasks
    std::vector<std::pair<TaskId, uint32_t>> rescattered;  // lost data sent again
    for (uint32_t i = 0; i < n; ++i) {
      const Key& k = specs[i].key;
      if (k.empty()) return graph_error(e, "update_graph: a task has an empty key");
      if (const TaskId old = find(k); old != kNone) {
        if (awaits_rescatter(T(old)) && specs[i].scattered && specs[i].payload)
          rescattered.emplace_back(old, i);
        continue;
      }
      if (fresh.find(k, spec_key) != kNone) continue;
      fresh.insert(k, i);
      order.push_back(i);
    }
    // Dependencies of the new tasks: a position in specs, or an existing task | kExisting.
    constexpr uint64_t kExisting = uint64_t{1} << 32;
    std::vector<uint32_t> dep_off{0};
    std::vector<uint64_t> dep_ref;
    std::vector<uint32_t> indegree(n, 0);
    dep_off.reserve(order.size() + 1);
    for (uint32_t i : order) {
      for (const Key& d : specs[i].dependencies) {
        const uint32_t j = fresh.find(d, spec_key);
        if (j != kNone) {
          dep_ref.push_back(j);
          ++indegree[i];
          continue;
        }
        const TaskId id = find(d);
        if (id == kNone) {
          return graph_error(
              e, fmt::format("update_graph: task '{}' depends on '{}', which is neither "
                             "in the graph nor held by the scheduler",
                             specs[i].key.str(), d.str()));
        }
        dep_ref.push_back(kExisting | id);
      }
      dep_off.push_back(static_cast<uint32_t>(dep_ref.size()));
    }
    {
      // Kahn's algorithm over the new tasks: users of each position, then peel sources.
      std::vector<uint32_t> slot(n, kNone);  // position -> index in `order`
      for (uint32_t o = 0; o < order.size(); ++o) slot[order[o]] = o;
      std::vector<uint32_t> user_off(order.size() + 1, 0), users;
      for (uint64_t r : dep_ref)
        if (!(r & kExisting)) ++user_off[slot[static_cast<uint32_t>(r)] + 1];
      for (size_t o = 0; o < order.size(); ++o) user_off[o + 1] += user_off[o];
      users.resize(user_off.back());
      std::vector<uint32_t> fill_at(user_off.begin(), user_off.end() - 1);
      for (uint32_t o = 0; o < order.size(); ++o) {
        for (uint32_t q = dep_off[o]; q < dep_off[o + 1]; ++q) {
          if (!(dep_ref[q] & kExisting))
            users[fill_at[slot[static_cast<uint32_t>(dep_ref[q])]]++] = o;
        }
      }
      std::vector<uint32_t> frontier, left(order.size());
      for (uint32_t o = 0; o < order.size(); ++o) {
        left[o] = indegree[order[o]];
        if (left[o] == 0) frontier.push_back(o);
      }
      size_t seen = 0;
      while (!frontier.empty()) {
        const uint32_t o = frontier.back();
        frontier.pop_back();
        ++seen;
        for (uint32_t q = user_off[o]; q < user_off[o + 1]; ++q)
          if (--left[users[q]] == 0) frontier.push_back(users[q]);
      }
      if (seen != order.size()) {
        for (uint32_t o = 0; o < order.size(); ++o) {
          if (left[o] != 0) {
            return graph_error(e, fmt::format("update_graph: the graph has a cycle through '{}'",
                                              specs[order[o]].key.str()));
          }
        }
      }
    }
    for (const Key& w : e.wanted) {
      if (fresh.find(w, spec_key) == kNone && find(w) == kNone) {
        return graph_error(
            e, fmt::format("update_graph: wanted key '{}' is not in the graph", w.str()));
      }
    }
    ++generation;
    for (const auto& [id, i] : rescattered) T(id).payload = specs[i].payload;
    ids.reserve(ids.size() + order.size());
    tasks.reserve(tasks.size() + order.size());
    std::vector<TaskId> created(n, kNone);  // position -> new task id
    for (uint32_t i : order) created[i] = new_task(specs[i], e.user_priority, e.retries);
    for (uint32_t o = 0; o < order.size(); ++o) {
      const TaskId id = created[order[o]];
      auto& deps = T(id).deps;
      deps.reserve(dep_off[o + 1] - dep_off[o]);
      for (uint32_t q = dep_off[o]; q < dep_off[o + 1]; ++q) {
        const uint64_t r = dep_ref[q];
        const TaskId d =
            (r & kExisting) ? static_cast<TaskId>(r) : created[static_cast<uint32_t>(r)];
        if (std::find(deps.begin(), deps.end(), d) != deps.end()) continue;
        deps.push_back(d);
        T(d).dependents.push_back(id);
        Group& g = groups[T(id).group];
        if (!g.many && std::find(g.deps.begin(), g.deps.end(), d) == g.deps.end()) {
          g.deps.push_back(d);
          if (g.deps.size() >= kFewDependencies) {
            g.many = true;
            g.deps.clear();
          }
        }
      }
    }
    std::vector<TaskId> roots;
    auto& wants = clients[e.client];
    for (const Key& k : e.wanted) {
      const TaskId id = find(k);
      Task& t = T(id);
      if (std::find(t.who_wants.begin(), t.who_wants.end(), e.client) == t.who_wants.end())
        t.who_wants.push_back(e.client);
      wants.insert(id);
      if (t.status == TaskStatus::Memory) {
        out->push_back(ReportMemory{e.client, t.key, t.nbytes});
      } else if (t.status == TaskStatus::Erred) {
        out->push_back(ReportErred{e.client, t.key, t.error->exception, t.error->blamed});
      } else if (t.status == TaskStatus::Released) {
        roots.push_back(id);
      }
    }
    make_waiting(roots);
    // New tasks no wanted key reaches are dropped again.
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      const TaskId id = created[*it];
      if (T(id).status == TaskStatus::Released) forget_if_unneeded(id);
    }
  }

  void graph_error(const UpdateGraph& e, std::string message) {
    out->push_back(ReportGraphError{e.client, std::move(message), e.wanted});
  }

  void on(const AddWorker& e) {
    if (workers.count(e.worker)) return;
    Worker& w = workers[e.worker];
    w.id = e.worker;
    w.nthreads = std::max(1, e.nthreads);
    total_threads += static_cast<size_t>(w.nthreads);
    by_load.push(&w);
    wake_no_worker();
    fill_all();
  }

  void wake_no_worker() {
    if (no_worker.empty() || by_load.empty()) return;
    std::vector<TaskId> waiting(no_worker.begin(), no_worker.end());
    std::sort(waiting.begin(), waiting.end(),
              [this](TaskId a, TaskId b) { return runs_before(a, b); });
    no_worker.clear();
    for (TaskId id : waiting) {
      if (T(id).status == TaskStatus::NoWorker) make_ready(id);
    }
  }

  void on(const RemoveWorker& e) {
    auto it = workers.find(e.worker);
    if (it == workers.end()) return;
    if (!it->second.paused) by_load.erase(&it->second);
    it->second.paused = true;  // out of the load index while its tasks are taken back
    const std::vector<TaskId> running = it->second.processing;
    compact(e.worker, it->second);
    const std::vector<TaskId> held = it->second.has_what;
    std::vector<TaskId> recompute;
    for (TaskId id : held) lose_replica(id, e.worker, recompute);
    for (TaskId id : running) {
      Task& t = T(id);
      if (t.status != TaskStatus::Processing || t.processing_on != e.worker) continue;
      stop_processing(it->second, id);
      t.processing_on = kNone;
      const bool started = t.waiting == 0;  // a speculative task's inputs were not done
      set_status(id, TaskStatus::Released);
      if (!started) {
        recompute.push_back(id);
        continue;
      }
      ++t.suspicious;
      if (t.suspicious >= options.allowed_failures) {
        mark_erred(
            id,
            fmt::format("KilledWorker: attempted to run task '{}' on {} different workers, "
                        "but all those workers died while running it; the last was worker {}",
                        t.key.str(), static_cast<int>(t.suspicious), e.worker),
            t.key);
      } else {
        recompute.push_back(id);
      }
    }
    total_threads -= static_cast<size_t>(it->second.nthreads);
    workers.erase(it);
    std::erase_if(to_free, [&](const PendingFree& f) { return f.worker == e.worker; });
    std::vector<TaskId> roots;
    for (TaskId id : recompute) {
      if (id < tasks.size() && T(id).status == TaskStatus::Released) roots.push_back(id);
    }
    make_waiting(roots);
    for (TaskId id : held) {
      if (id < tasks.size() && T(id).status == TaskStatus::Released) forget_if_unneeded(id);
    }
  }

  void on(const TaskFinished& e) {
    const TaskId id = find(e.key);
    if (!workers.count(e.worker)) return;  // from a worker already removed
    if (id == kNone) {
      free_on(e.worker, e.key);  // nobody wants it any more
      return;
    }
    Task& t = T(id);
    if (t.status == TaskStatus::Memory) {  // another copy (a rerun elsewhere)
      if (std::find(t.who_has.begin(), t.who_has.end(), e.worker) == t.who_has.end())
        add_holder(id, e.worker);
      return;
    }
    if (t.status != TaskStatus::Processing || t.processing_on != e.worker) {
      free_on(e.worker, e.key);  // a result the scheduler stopped waiting for
      return;
    }
    update_processing(e.worker, [this, id](Worker& ws) { stop_processing(ws, id); });
    t.processing_on = kNone;
    set_status(id, TaskStatus::Memory);
    t.nbytes = e.nbytes;
    add_holder(id, e.worker);
    if (t.scattered) t.payload.reset();  // the client keeps the data, not the scheduler
    Group& g = groups[t.group];
    const double before = g.seen ? g.duration : kUnknownDuration;
    g.duration = g.seen ? 0.5 * g.duration + 0.5 * e.duration : e.duration;
    g.seen = true;
    report_memory(t);
    std::vector<TaskId> ready;
    for (TaskId d : t.dependents) {
      Task& dt = T(d);
      if (dt.status == TaskStatus::Waiting && --dt.waiting == 0) ready.push_back(d);
      if (dt.status == TaskStatus::Processing && dt.waiting != 0) --dt.waiting;  // speculative
    }
    std::sort(ready.begin(), ready.end(), [this](TaskId a, TaskId b) { return runs_before(a, b); });
    for (TaskId d : ready) make_ready(d);
    for (TaskId d : T(id).deps) release_if_unneeded(d);
    release_if_unneeded(id);
    if (options.speculative_assignment) speculate_again(e.worker);
    // A shorter duration estimate may give every worker room for more of this group.
    if (g.duration < before) {
      fill_all();
    } else {
      fill(e.worker);
    }
  }

  void on(const TaskErred& e) {
    const TaskId id = find(e.key);
    if (id == kNone || !workers.count(e.worker)) return;
    Task& t = T(id);
    if (t.status != TaskStatus::Processing || t.processing_on != e.worker) return;
    if (t.retries > 0) {  // run it again, anywhere (the worker forgets its error)
      --t.retries;
      to_released(id, true);
      const TaskId again[] = {id};
      make_waiting(again);
    } else {
      mark_erred(id, e.exception, t.key);
    }
    fill(e.worker);
  }

  void on(const ReleaseKeys& e) {
    auto c = clients.find(e.client);
    for (const Key& k : e.keys) {
      const TaskId id = find(k);
      if (id == kNone) continue;
      Task& t = T(id);
      erase_value(t.who_wants, e.client);
      if (c != clients.end()) c->second.erase(id);
      if (t.who_wants.empty() && awaits_rescatter(t) && t.waiters != 0) {
        lost_scatter(id);  // nobody is left to send it again
        continue;
      }
      if (t.who_wants.empty()) cancel_unneeded(id);
    }
    fill_all();
  }

  void on(const RetryKeys& e) {
    // Back to released: each erred key and the erred dependencies it failed through, then
    // the erred tasks that depend on any of those.
    std::vector<TaskId> reset, stack;
    auto revive = [&](TaskId x) {
      if (T(x).status != TaskStatus::Erred) return false;
      set_status(x, TaskStatus::Released);
      T(x).error.reset();
      T(x).suspicious = 0;  // the workers that died under it count anew
      reset.push_back(x);
      return true;
    };
    for (const Key& k : e.keys) {
      const TaskId id = find(k);
      if (id == kNone) {
        out->push_back(ReportErred{
            e.client, k,
            fmt::format("retry: the scheduler has no task '{}' (it never took it, or forgot it)",
                        k.str()),
            k});
        continue;
      }
      if (T(id).status == TaskStatus::Memory &&
          std::find(T(id).who_wants.begin(), T(id).who_wants.end(), e.client) !=
              T(id).who_wants.end()) {
        out->push_back(ReportMemory{e.client, k, T(id).nbytes});
        continue;
      }
      stack.push_back(id);
      while (!stack.empty()) {
        const TaskId x = stack.back();
        stack.pop_back();
        if (!revive(x)) continue;
        for (TaskId d : T(x).deps) stack.push_back(d);
      }
    }
    for (size_t i = 0; i < reset.size(); ++i) {
      for (TaskId d : T(reset[i]).dependents) revive(d);
    }
    for (TaskId x : reset) {
      for (ClientId c : T(x).who_wants)
        out->emplace_back(std::in_place_type<ReportRetried>, c, T(x).key);
    }
    // Scattered data among them comes back only from a client that holds it: those that
    // want it are asked to send it again; with none, it fails again, and its dependents.
    for (TaskId x : reset) {
      if (T(x).status != TaskStatus::Released || !awaits_rescatter(T(x))) continue;
      if (T(x).who_wants.empty()) {
        lost_scatter(x);
      } else {
        for (ClientId c : T(x).who_wants) out->push_back(ReportLost{c, T(x).key});
      }
    }
    // They run again for whoever wants them; what nobody wants any more is forgotten.
    std::vector<TaskId> wanted;
    for (TaskId x : reset) {
      if (!T(x).who_wants.empty()) wanted.push_back(x);
    }
    make_waiting(wanted);
    for (TaskId x : reset) {
      if (x < tasks.size() && T(x).status == TaskStatus::Released) forget_if_unneeded(x);
    }
  }

  void on(const RemoveClient& e) {
    auto c = clients.find(e.client);
    if (c == clients.end()) return;
    std::vector<Key> keys;
    for (TaskId id : c->second) keys.push_back(T(id).key);
    on(ReleaseKeys{e.client, std::move(keys)});
    clients.erase(e.client);
  }

  void on(const MissingData& e) {
    std::vector<TaskId> recompute;
    const TaskId m = find(e.missing);
    if (m != kNone) lose_replica(m, e.holder, recompute);
    const TaskId id = find(e.key);
    if (id != kNone && T(id).status == TaskStatus::Processing && T(id).processing_on == e.worker) {
      to_released(id, false);
      recompute.push_back(id);
    }
    std::vector<TaskId> roots;
    for (TaskId x : recompute) {
      if (x < tasks.size() && T(x).status == TaskStatus::Released) roots.push_back(x);
    }
    make_waiting(roots);
  }

  void on(const SetWorkerPaused& e) {
    auto it = workers.find(e.worker);
    if (it == workers.end() || it->second.paused == e.paused) return;
    if (e.paused) {
      by_load.erase(&it->second);
      it->second.paused = true;
      return;
    }
    it->second.paused = false;
    by_load.push(&it->second);
    wake_no_worker();
    fill_all();
  }

  // Idle threads take tasks queued behind the running ones on saturated workers: each idle
  // worker asks for as many as it has free threads, from the workers with the most tasks per
  // thread, the tasks those would run last, if moving the inputs costs less than the task.
  void on(const Rebalance&) {
    if (!options.work_stealing || by_load.size() < 2) return;
    std::vector<Worker*> thieves;
    // Each victim with the tasks it still has to give: those beyond its threads, less those
    // already being stolen.
    std::vector<std::pair<Worker*, int64_t>> victims;
    for (auto& [id, w] : workers) {
      if (w.paused) continue;
      const size_t n = w.processing.size() + w.incoming;
      if (n < static_cast<size_t>(w.nthreads)) thieves.push_back(&w);
      if (w.processing.size() <= static_cast<size_t>(w.nthreads)) continue;
      int64_t left = static_cast<int64_t>(w.processing.size()) - w.nthreads;
      for (TaskId t : w.processing) left -= T(t).stealing_to != kNone;
      if (left > 0) victims.emplace_back(&w, left);
    }
    if (thieves.empty() || victims.empty()) return;
    std::sort(thieves.begin(), thieves.end(), [](Worker* a, Worker* b) { return a->id < b->id; });
    for (Worker* thief : thieves) {
      int64_t free =
          thief->nthreads - static_cast<int64_t>(thief->processing.size() + thief->incoming);
      while (free > 0) {
        // The victim with the most tasks per thread still to give.
        auto victim = victims.end();
        for (auto v = victims.begin(); v != victims.end(); ++v) {
          if (v->second <= 0) continue;
          if (victim == victims.end() ||
              v->second * victim->first->nthreads > victim->second * v->first->nthreads)
            victim = v;
        }
        if (victim == victims.end()) return;
        const TaskId id = steal_candidate(*victim->first, thief->id);
        if (id == kNone) {
          victims.erase(victim);
          continue;
        }
        Task& t = T(id);
        t.stealing_to = thief->id;
        ++thief->incoming;
        steal_requests[id] = ++last_steal_request;
        --victim->second;
        out->push_back(StealRequest{victim->first->id, t.key, last_steal_request});
        --free;
      }
    }
  }

  // The task on `victim` worth moving to `thief` that the victim would run last, or kNone.
  TaskId steal_candidate(const Worker& victim, WorkerId thief) const {
    TaskId best = kNone;
    for (TaskId id : victim.processing) {
      const Task& t = T(id);
      if (t.stealing_to != kNone || speculative(t)) continue;
      const Group& g = groups[t.group];
      if (!g.seen || g.duration < options.steal_min_duration) continue;  // not worth a trip
      uint64_t transfer = 0;
      for (TaskId d : t.deps) {
        const Task& dt = T(d);
        if (std::find(dt.who_has.begin(), dt.who_has.end(), thief) == dt.who_has.end())
          transfer += dt.nbytes;
      }
      if (static_cast<double>(transfer) / kBandwidth >= g.duration) continue;
      if (best == kNone || t.priority > T(best).priority) best = id;
    }
    return best;
  }

  void on(const StealResponse& e) {
    const TaskId id = find(e.key);
    if (id == kNone) return;
    Task& t = T(id);
    if (t.status != TaskStatus::Processing || t.processing_on != e.worker || t.stealing_to == kNone)
      return;  // finished, moved or lost meanwhile: the answer is stale
    if (auto r = steal_requests.find(id); r == steal_requests.end() || r->second != e.request)
      return;  // the answer to an earlier request (the task has been sent here again since)
    const WorkerId thief = t.stealing_to;
    end_steal(id);
    if (!e.stolen) return;  // it had started
    // The victim dropped it: it goes to the thief, or (gone or paused) where it fits now.
    update_processing(e.worker, [this, id](Worker& ws) { stop_processing(ws, id); });
    t.processing_on = kNone;
    auto th = workers.find(thief);
    if (th != workers.end() && !th->second.paused) {
      assign(id, thief);
    } else {
      set_status(id, TaskStatus::Released);
      const TaskId roots[] = {id};
      make_waiting(roots);
    }
    fill(e.worker);
  }

  // ---- validation ----
  [[noreturn]] void broken(const Task& t, std::string_view what) const {
    throw SchedulerError(fmt::format("scheduler state: task '{}' ({}): {}", t.key.str(),
                                     status_name(t.status), what));
  }

  void validate() const {
    std::array<size_t, 8> seen{};
    std::unordered_map<WorkerId, size_t> processing, incoming;
    size_t stealing = 0;
    for (TaskId id = 0; id < tasks.size(); ++id) {
      const Task& t = tasks[id];
      if (t.status == TaskStatus::Forgotten) continue;
      ++seen[static_cast<size_t>(t.status)];
      if (find(t.key) != id) broken(t, "not in the key map");
      uint32_t not_in_memory = 0, waiters = 0;
      for (TaskId d : t.deps) {
        const Task& dt = tasks[d];
        if (dt.status == TaskStatus::Forgotten) broken(t, "depends on a forgotten task");
        if (std::count(dt.dependents.begin(), dt.dependents.end(), id) != 1)
          broken(t, fmt::format("dependency '{}' does not list it once", dt.key.str()));
        not_in_memory += dt.status != TaskStatus::Memory;
      }
      for (TaskId d : t.dependents) {
        const Task& dt = tasks[d];
        if (std::count(dt.deps.begin(), dt.deps.end(), id) != 1)
          broken(t, fmt::format("dependent '{}' does not list it once", dt.key.str()));
        waiters += needy(dt.status);
      }
      if (waiters != t.waiters)
        broken(t, fmt::format("counts {} waiters, has {}", t.waiters, waiters));
      const bool holds = !t.who_has.empty();
      if ((t.status == TaskStatus::Memory) != holds) broken(t, "who_has does not match");
      for (WorkerId w : t.who_has) {
        auto ws = workers.find(w);
        if (ws == workers.end()) broken(t, fmt::format("held by unknown worker {}", w));
        const auto& h = ws->second.has_what;
        if (std::find(h.begin(), h.end(), id) == h.end())
          broken(t, fmt::format("worker {} does not list it", w));
      }
      if ((t.status == TaskStatus::Processing) != (t.processing_on != kNone))
        broken(t, "processing_on does not match");
      if (t.scattered && !t.payload &&
          (t.status == TaskStatus::Waiting || t.status == TaskStatus::Queued ||
           t.status == TaskStatus::NoWorker || t.status == TaskStatus::Processing))
        broken(t, "scattered data without its payload cannot run");
      if (t.stealing_to != kNone) {
        if (t.status != TaskStatus::Processing) broken(t, "being stolen but not processing");
        ++stealing;
        if (workers.count(t.stealing_to)) ++incoming[t.stealing_to];
      }
      if (t.status == TaskStatus::Processing) {
        auto ws = workers.find(t.processing_on);
        if (ws == workers.end() || t.slot >= ws->second.processing.size() ||
            ws->second.processing[t.slot] != id)
          broken(t, "its worker does not list it at its slot");
        ++processing[t.processing_on];
      }
      if ((t.status == TaskStatus::Queued || t.status == TaskStatus::NoWorker) &&
          not_in_memory != 0)
        broken(t, "ready while a dependency is not in memory");
      if (t.status == TaskStatus::Processing) {
        if (t.waiting != not_in_memory)
          broken(t,
                 fmt::format("counts {} inputs not in memory, {} are", t.waiting, not_in_memory));
        for (TaskId d : t.deps) {
          const Task& dt = tasks[d];
          if (dt.status != TaskStatus::Memory &&
              (dt.status != TaskStatus::Processing || dt.processing_on != t.processing_on))
            broken(t, fmt::format("processing while its input '{}' is {} and not processing "
                                  "on the same worker",
                                  dt.key.str(), status_name(dt.status)));
        }
        if (t.waiting != 0 && t.stealing_to != kNone) broken(t, "speculative, yet being stolen");
      }
      if (t.status == TaskStatus::Waiting && (t.waiting != not_in_memory || t.waiting == 0))
        broken(t, fmt::format("waits on {}, {} are not in memory", t.waiting, not_in_memory));
      if ((t.status == TaskStatus::Erred) != static_cast<bool>(t.error))
        broken(t, "error does not match");
      if ((t.status == TaskStatus::NoWorker) != (no_worker.count(id) != 0))
        broken(t, "no-worker set does not match");
      if (t.status == TaskStatus::NoWorker && !by_load.empty())
        broken(t, "no-worker while workers run");
      if (t.status == TaskStatus::Released && t.who_wants.empty() && t.dependents.empty())
        broken(t, "released, unwanted and without dependents, yet not forgotten");
      for (ClientId c : t.who_wants) {
        auto cs = clients.find(c);
        if (cs == clients.end() || !cs->second.count(id))
          broken(t, fmt::format("client {} does not list it", c));
      }
    }
    for (size_t s = 0; s < 7; ++s) {
      if (seen[s] != counts[s]) {
        throw SchedulerError(fmt::format("scheduler state: {} tasks {}, counted {}", seen[s],
                                         status_name(static_cast<TaskStatus>(s)), counts[s]));
      }
    }
    if (stealing != steal_requests.size()) {
      throw SchedulerError(fmt::format("scheduler state: {} tasks being stolen, {} requests out",
                                       stealing, steal_requests.size()));
    }
    size_t running = 0;
    for (const auto& [id, w] : workers) {
      if (w.incoming != incoming[id]) {
        throw SchedulerError(
            fmt::format("scheduler state: worker {} counts {} tasks stolen for it, {} are", id,
                        w.incoming, incoming[id]));
      }
      if (w.processing.size() != processing[id]) {
        throw SchedulerError(
            fmt::format("scheduler state: worker {} lists {} processing tasks, {} "
                        "are assigned to it",
                        id, w.processing.size(), processing[id]));
      }
      size_t live = 0;
      for (TaskId t = 0; t < tasks.size(); ++t) {
        const auto& who = tasks[t].who_has;
        live += std::count(who.begin(), who.end(), id);
      }
      if (live != w.held) {
        throw SchedulerError(fmt::format("scheduler state: worker {} counts {} results, holds {}",
                                         id, w.held, live));
      }
      if (!w.paused) {
        ++running;
        if (w.heap_pos == kNone)
          throw SchedulerError(
              fmt::format("scheduler state: worker {} runs but is not in the load heap", id));
      }
    }
    if (running != by_load.size() || !by_load.valid())
      throw SchedulerError(
          "scheduler state: the load heap is out of order or lists workers that do not run");
    // Queued tasks wait only while every running worker is saturated.
    if (counts[static_cast<size_t>(TaskStatus::Queued)] != 0 && !by_load.empty() &&
        queue_group() != kNone && !saturated(*by_load.top(), queue_group()))
      throw SchedulerError("scheduler state: root tasks queued while a worker has room");
  }
};

SchedulerState::SchedulerState() : SchedulerState(Options{}) {}
SchedulerState::SchedulerState(Options options) : impl_(std::make_unique<Impl>(options)) {}
SchedulerState::~SchedulerState() = default;

void SchedulerState::handle(const Event& event, std::vector<Action>& out) {
  impl_->out = &out;
  const size_t start = out.size();
  std::visit([this](const auto& e) { impl_->on(e); }, event);
  // Tasks cancelled or moved may have left room on a worker: queued root tasks take it.
  if (!impl_->queue.empty()) impl_->fill_all();
  auto& to_free = impl_->to_free;
  if (!to_free.empty()) {
    // Frees go out last, as one FreeKeys per worker; a task freed on a worker and then
    // assigned to it again in this event is not freed.
    std::unordered_map<Key, std::pair<WorkerId, size_t>, KeyHash> assigned;
    for (size_t i = start; i < out.size(); ++i) {
      if (const auto* c = std::get_if<ComputeTask>(&out[i])) assigned[c->key] = {c->worker, i};
    }
    if (!assigned.empty()) {
      std::erase_if(to_free, [&](const Impl::PendingFree& f) {
        auto it = assigned.find(f.key);
        return it != assigned.end() && it->second.first == f.worker && it->second.second >= f.at;
      });
    }
    std::stable_sort(to_free.begin(), to_free.end(),
                     [](const auto& a, const auto& b) { return a.worker < b.worker; });
    for (size_t i = 0; i < to_free.size();) {
      FreeKeys f{to_free[i].worker, {}};
      for (; i < to_free.size() && to_free[i].worker == f.worker; ++i)
        f.keys.push_back(std::move(to_free[i].key));
      out.push_back(std::move(f));
    }
    to_free.clear();
  }
  impl_->out = nullptr;
  if (impl_->options.validate) impl_->validate();
}

void SchedulerState::validate() const {
  impl_->validate();
}

TaskStatus SchedulerState::status(const Key& key) const {
  const auto id = impl_->find(key);
  return id == kNone ? TaskStatus::Forgotten : impl_->tasks[id].status;
}

std::vector<WorkerId> SchedulerState::who_has(const Key& key) const {
  const auto id = impl_->find(key);
  return id == kNone ? std::vector<WorkerId>{} : impl_->tasks[id].who_has;
}

std::optional<WorkerId> SchedulerState::processing_on(const Key& key) const {
  const auto id = impl_->find(key);
  if (id == kNone || impl_->tasks[id].processing_on == kNone) return std::nullopt;
  return impl_->tasks[id].processing_on;
}

size_t SchedulerState::size() const {
  return impl_->ids.size();
}

size_t SchedulerState::count(TaskStatus status) const {
  return impl_->counts[static_cast<size_t>(status)];
}

size_t SchedulerState::steals_pending() const {
  return impl_->steal_requests.size();
}

size_t SchedulerState::processing_count(WorkerId worker) const {
  auto it = impl_->workers.find(worker);
  return it == impl_->workers.end() ? 0 : it->second.processing.size();
}

size_t SchedulerState::worker_count() const {
  return impl_->workers.size();
}

}  // namespace tessera::distributed

// The distributed scheduler's task-state logic as a pure state machine (DESIGN.md decision
// 9): events in (a client's graph, a worker's result, a worker's death, …), actions out
// (run this task there, free these keys, tell this client). No sockets, threads or clocks:
// the network shell feeds it events and carries out its actions, tests drive it transition
// by transition, and benchmarks/distributed/scale.cpp drives it with a thousand simulated
// workers.
//
//   SchedulerState s({.validate = true});
//   std::vector<Action> out;
//   s.handle(AddWorker{.worker = 1, .nthreads = 2}, out);
//   s.handle(UpdateGraph{.client = 7, .tasks = specs, .wanted = {out_key}}, out);
//   // out now holds ComputeTask actions; when worker 1 reports back:
//   s.handle(TaskFinished{.worker = 1, .key = k, .nbytes = 8}, out);
//
// Task states follow Dask's scheduler: released, waiting (for dependencies), queued (root
// tasks held back while every worker is saturated), no-worker, processing, memory, erred,
// forgotten (gone from the state).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "tessera/core/key.hpp"

namespace tessera::distributed {

using WorkerId = uint32_t;
using ClientId = uint32_t;

enum class TaskStatus : uint8_t {
  Released,
  Waiting,
  Queued,
  NoWorker,
  Processing,
  Memory,
  Erred,
  Forgotten,
};
const char* status_name(TaskStatus s);
// A key's kind: "inc-5f1c" -> "inc". Tasks of one kind share duration estimates (Dask's
// key_split), on the scheduler and on workers.
std::string_view key_prefix(std::string_view name);

// One task of a graph sent by a client.
struct TaskSpec {
  Key key;
  std::vector<Key> dependencies;
  uint64_t priority = 0;  // the graph's static order (tessera::order): smaller runs first
  std::shared_ptr<const std::string> payload{};  // the encoded task, passed to workers as-is
  // Data a client scattered (and keeps): the payload is dropped once a worker holds the
  // result; if every copy is lost, the clients that want it are told (ReportLost) and one
  // sends it again (an UpdateGraph with the payload); with no client holding it, what
  // needs it fails with a message saying so.
  bool scattered = false;
};

// ---- events ----
struct UpdateGraph {
  ClientId client = 0;
  std::vector<TaskSpec> tasks;
  std::vector<Key> wanted;  // the keys the client holds futures for
  // For the new tasks: ready tasks of a higher priority run first, before the graph's
  // generation and static order count (Dask's priority tuple); an erring task is run again
  // (anywhere) up to `retries` times before it and its dependents err.
  int32_t user_priority = 0;
  uint32_t retries = 0;
};
struct AddWorker {
  WorkerId worker = 0;
  int nthreads = 1;
};
struct RemoveWorker {
  WorkerId worker = 0;
};
struct TaskFinished {
  WorkerId worker = 0;
  Key key;
  uint64_t nbytes = 0;
  double duration = 0;  // seconds the task ran (for placement estimates)
};
struct TaskErred {
  WorkerId worker = 0;
  Key key;
  std::string exception;  // the error, as the worker words it
};
// The client no longer holds futures for these keys.
struct ReleaseKeys {
  ClientId client = 0;
  std::vector<Key> keys;
};
struct RemoveClient {
  ClientId client = 0;
};
// Dask's retry: the erred tasks behind `keys` (each key, and the erred dependencies it
// failed through) run again, as do the erred tasks that depend on them; every client that
// wants one of those hears it is pending again (ReportRetried). A key asked for that did
// not err is reported to `client` as it is (in memory), or as an error if the scheduler
// does not know it; one still being computed will be reported when done.
struct RetryKeys {
  ClientId client = 0;
  std::vector<Key> keys;
};
// `worker` could not get `missing` (a dependency of `key`) from `holder`.
struct MissingData {
  WorkerId worker = 0;
  Key key;
  Key missing;
  WorkerId holder = 0;
};
// A worker stops taking new tasks (memory pressure) or starts again.
struct SetWorkerPaused {
  WorkerId worker = 0;
  bool paused = true;
};
// Time to balance the load (the shell sends it every 100 ms): idle workers steal queued
// tasks from saturated ones (Dask's work stealing).
struct Rebalance {};
// A worker's answer to a StealRequest: whether it gave the task up (it had not started it).
struct StealResponse {
  WorkerId worker = 0;
  Key key;
  bool stolen = false;
  uint64_t request = 0;  // the StealRequest's: an answer to an earlier one is stale
};
using Event =
    std::variant<UpdateGraph, AddWorker, RemoveWorker, TaskFinished, TaskErred, ReleaseKeys,
                 RemoveClient, MissingData, SetWorkerPaused, Rebalance, StealResponse, RetryKeys>;

// ---- actions ----
struct ComputeTask {
  WorkerId worker = 0;
  Key key;
  std::shared_ptr<const std::string> payload;
  uint64_t priority = 0;
  // Each dependency and the workers that hold it.
  std::vector<std::pair<Key, std::vector<WorkerId>>> who_has;
  // The size of each of who_has's keys, as its worker reported it (for a dependency still
  // being computed, 0), so that the worker can bound the bytes of each fetch.
  std::vector<uint64_t> nbytes = {};
};
// Drop these keys' data, or stop running them.
struct FreeKeys {
  WorkerId worker = 0;
  std::vector<Key> keys;
};
struct ReportMemory {
  ClientId client = 0;
  Key key;
  uint64_t nbytes = 0;
};
struct ReportErred {
  ClientId client = 0;
  Key key;
  std::string exception;
  Key blamed;  // the task that raised (key itself, or a dependency)
};
// A result the client was told about is gone with its worker and is being recomputed.
struct ReportLost {
  ClientId client = 0;
  Key key;
};
// An erred task runs again (RetryKeys): the client waits for it anew.
struct ReportRetried {
  ClientId client = 0;
  Key key;
};
// An update the scheduler refused (a dependency that is nowhere, a cycle).
struct ReportGraphError {
  ClientId client = 0;
  std::string message;
  std::vector<Key> keys;  // the update's wanted keys (whose futures fail)
};
// Ask `worker` to give `key` back if it has not started it (work stealing); it answers with
// a StealResponse, and the task then goes to the idle worker that asked for work.
struct StealRequest {
  WorkerId worker = 0;
  Key key;
  uint64_t request = 0;  // numbers the request; the StealResponse gives it back
};
using Action = std::variant<ComputeTask, FreeKeys, ReportMemory, ReportErred, ReportLost,
                            ReportGraphError, StealRequest, ReportRetried>;

class SchedulerState {
 public:
  struct Options {
    // A worker is saturated with ceil(nthreads × worker_saturation) tasks; root tasks wait
    // in the queue while every worker is (Dask's worker-saturation).
    double worker_saturation = 1.1;
    // Tasks of a kind measured to take less than this (seconds) are queued deeper on workers:
    // enough to keep each thread busy this long, at most max_saturation per thread. It
    // hides the scheduler round trip behind tiny tasks; 0 turns it off.
    double latency_hiding = 0.002;
    double max_saturation = 64;
    // Speculative assignment: a waiting task of a kind measured shorter than latency_hiding,
    // whose inputs are all on one worker or being computed there, is sent to that worker
    // before its inputs are done (it runs there as soon as they are), so a chain of tiny
    // tasks does not wait for a scheduler round trip per task. Within the same saturation
    // limit as latency_hiding; never stolen.
    bool speculative_assignment = true;
    // A task running on this many workers that died fails with KilledWorker.
    int allowed_failures = 3;
    // On Rebalance, a worker with idle threads takes tasks queued on saturated workers:
    // those of a kind measured to take at least steal_min_duration seconds, whose inputs
    // it could fetch in less time than the task takes.
    bool work_stealing = true;
    double steal_min_duration = 0.005;
    // Check every invariant after each event (tests); InternalError naming the task.
    bool validate = false;
  };

  SchedulerState();
  explicit SchedulerState(Options options);
  ~SchedulerState();
  SchedulerState(const SchedulerState&) = delete;
  SchedulerState& operator=(const SchedulerState&) = delete;

  // Applies one event; appends the resulting actions to `out`.
  void handle(const Event& event, std::vector<Action>& out);
  std::vector<Action> handle(const Event& event) {
    std::vector<Action> out;
    handle(event, out);
    return out;
  }

  // Every invariant (tasks, workers, clients, queue); InternalError naming what is broken.
  void validate() const;

  // ---- queries (tests, metrics) ----
  TaskStatus status(const Key& key) const;  // Forgotten for an unknown key
  std::vector<WorkerId> who_has(const Key& key) const;
  std::optional<WorkerId> processing_on(const Key& key) const;
  size_t size() const;                             // tasks in the state
  size_t count(TaskStatus status) const;           // tasks in one state
  size_t processing_count(WorkerId worker) const;  // tasks assigned to a worker
  size_t steals_pending() const;                   // StealRequests not answered yet
  size_t worker_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::distributed

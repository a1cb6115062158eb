// The worker's task-state logic as a pure state machine (DESIGN.md decision 9), the
// counterpart of SchedulerState on each worker: what to fetch from which peer, what to run
// next on a free thread, what to tell the scheduler. The network shell feeds it messages
// and completions and carries its instructions out; it never blocks or reads a clock.
//
//   WorkerState w({.nthreads = 2});
//   std::vector<WorkerInstruction> out;
//   w.handle(ComputeTask{...}, out);      // from the scheduler: Execute or GatherDep
//   w.handle(ExecuteSuccess{key, 8}, out); // the task ran: TaskFinished for the scheduler
//
// Task states, as in dask.distributed's worker: waiting (for dependencies), fetch (a
// dependency to get), flight (being fetched), ready (to run), executing, memory, error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "distributed/scheduler_state.hpp"
#include "tessera/core/key.hpp"

namespace tessera::distributed {

enum class WorkerTaskStatus : uint8_t {
  Waiting,
  Fetch,
  Flight,
  Ready,
  Executing,
  Memory,
  Error,
  Gone
};
const char* status_name(WorkerTaskStatus s);

// ---- events (ComputeTask and FreeKeys come from the scheduler: see scheduler_state.hpp) ----
struct ExecuteSuccess {
  Key key;
  uint64_t nbytes = 0;
  double duration = 0;
};
struct ExecuteFailure {
  Key key;
  std::string exception;
};
// A peer sent (some of) the keys asked from it; `missing` are those it does not have.
struct GatherDepDone {
  WorkerId peer = 0;
  std::vector<std::pair<Key, uint64_t>> received;  // key, nbytes
  std::vector<Key> missing;
};
// The peer could not be reached: every key asked from it is missing there.
struct GatherDepFailed {
  WorkerId peer = 0;
  std::vector<Key> keys;
};
// The scheduler says who holds a dependency now (after the one asked did not have it).
struct UpdateWhoHas {
  Key key;
  std::vector<WorkerId> holders;
};
// (StealRequest, from the scheduler: give the task back if it has not started.)
using WorkerEvent = std::variant<ComputeTask, FreeKeys, ExecuteSuccess, ExecuteFailure,
                                 GatherDepDone, GatherDepFailed, UpdateWhoHas, StealRequest>;

// ---- instructions ----
// Run the task (its payload), with its inputs (all in local data by now).
struct Execute {
  Key key;
  std::shared_ptr<const std::string> payload;
  std::vector<Key> inputs;
  double estimate = -1;  // seconds its kind took here on average (-1: never measured)
};
// Ask `peer` for these keys' data.
struct GatherDep {
  WorkerId peer = 0;
  std::vector<Key> keys;
  uint64_t nbytes = 0;  // the keys' sizes, as the scheduler reported them
};
// Drop this key's data from local storage.
struct ReleaseData {
  Key key;
};
// Messages for the scheduler.
struct SendTaskFinished {
  Key key;
  uint64_t nbytes = 0;
  double duration = 0;
};
struct SendTaskErred {
  Key key;
  std::string exception;
};
struct SendMissingData {
  Key key;      // the task that needs it
  Key missing;  // the dependency no known holder had
  WorkerId holder = 0;
};
// The answer to a StealRequest: whether the task was given up (it was waiting or ready).
struct SendStealResponse {
  Key key;
  bool stolen = false;
  uint64_t request = 0;  // the StealRequest's
};
using WorkerInstruction = std::variant<Execute, GatherDep, ReleaseData, SendTaskFinished,
                                       SendTaskErred, SendMissingData, SendStealResponse>;

class WorkerState {
 public:
  struct Options {
    WorkerId self = 0;
    int nthreads = 1;
    // Tasks handed to the executors beyond one per thread, while the durations measured for
    // their kinds (key prefixes) say that all tasks handed out finish within this many
    // seconds of thread time per thread (0: exactly one task per thread). Tiny tasks then run
    // back to back without a round trip through the shell per task; a kind never measured,
    // or a slow one, is never queued behind another task.
    double queue_seconds = 0;
    size_t max_queued_per_thread = 64;
    // Keys asked from one peer in one request, at most, and their bytes (by the sizes the
    // scheduler reports; a larger key goes alone; Dask's transfer-message-bytes-limit), and
    // requests in flight at once.
    size_t max_keys_per_gather = 50;
    uint64_t max_bytes_per_gather = 50'000'000;
    size_t max_gathers_in_flight = 4;
    bool validate = false;
  };
  explicit WorkerState(Options options);
  ~WorkerState();
  WorkerState(const WorkerState&) = delete;
  WorkerState& operator=(const WorkerState&) = delete;

  void handle(const WorkerEvent& event, std::vector<WorkerInstruction>& out);
  std::vector<WorkerInstruction> handle(const WorkerEvent& event) {
    std::vector<WorkerInstruction> out;
    handle(event, out);
    return out;
  }
  void validate() const;

  WorkerTaskStatus status(const Key& key) const;  // Gone for an unknown key
  size_t executing_count() const;
  size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::distributed

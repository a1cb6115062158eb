// The distributed runtime's messages: the wire form of the scheduler's and the worker's
// events and actions (scheduler_state.hpp, worker_state.hpp), typed and bounded through
// comm::pack / comm::unpack. Workers are named by the address of their data server, so
// that a worker or client can fetch a result straight from the worker holding it.
//
// The scheduler never decodes a task: a client sends, per task, its key, its dependencies,
// its priority (the graph's static order) and its payload (the task encoded for workers),
// so a scheduler runs any graph without linking the ops it calls.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/message.hpp"
#include "tessera/core/graph.hpp"
#include "tessera/core/value.hpp"

namespace tessera::distributed::protocol {

// Bounds on counts inside one message (besides comm::Limits on bytes).
inline constexpr size_t kMaxKeys = size_t{1} << 24;
inline constexpr size_t kMaxHolders = 4096;
inline constexpr uint32_t kMaxRetries = 1000;
inline constexpr size_t kMaxWorkers = size_t{1} << 20;

// An opaque byte payload carried as a frame (not copied through the encoder).
struct Payload {
  std::shared_ptr<const void> owner;
  std::span<const std::byte> bytes;
};

// ---- client -> scheduler ----
struct GraphTask {
  Key key;
  std::vector<Key> dependencies;
  uint64_t priority = 0;
  Payload payload{};
};
struct UpdateGraph {
  static constexpr std::string_view kOp = "update-graph";
  std::vector<GraphTask> tasks;
  std::vector<Key> wanted;
  // Tasks that are data the client scattered and keeps: the scheduler drops their payload
  // once a worker holds them, and asks the client (key-lost) to send them again if lost.
  std::vector<Key> scattered{};
  // For the update's new tasks (Dask's submit/compute keywords): a higher priority runs
  // before ready tasks of lower ones, whatever graph they came in; an erring task is run
  // again up to `retries` times before it errs.
  int32_t user_priority = 0;
  uint32_t retries = 0;
  void encode(Encoder& e) const;
  static UpdateGraph decode(Decoder& d);
};
struct ReleaseKeys {
  static constexpr std::string_view kOp = "release-keys";
  std::vector<Key> keys;
  void encode(Encoder& e) const;
  static ReleaseKeys decode(Decoder& d);
};

// Run these erred keys again (Dask's client.retry); answered with `retried` carrying the
// same request number, after the key-retried reports it causes.
struct Retry {
  static constexpr std::string_view kOp = "retry";
  uint64_t request = 0;
  std::vector<Key> keys;
  void encode(Encoder& e) const;
  static Retry decode(Decoder& d);
};

// The scheduler keeps computing these keys after the client lets them go
// (fire_and_forget).
struct FireAndForget {
  static constexpr std::string_view kOp = "fire-and-forget";
  std::vector<Key> keys;
  void encode(Encoder& e) const;
  static FireAndForget decode(Decoder& d);
};
// The client is leaving: what it holds is released now, not after its timeout.
struct CloseClient {
  static constexpr std::string_view kOp = "close-client";
  void encode(Encoder& e) const;
  static CloseClient decode(Decoder& d);
};

// Asks for the scheduler's state (Dask's "identity"): answered with scheduler-info carrying
// the same request number.
struct Identity {
  static constexpr std::string_view kOp = "identity";
  uint64_t request = 0;
  void encode(Encoder& e) const;
  static Identity decode(Decoder& d);
};

// A graph as a client sends it: each task encoded on its own as a payload (a one-task graph
// for workers), with its dependencies and its priority from tessera::order. Tasks for which
// `held` is true are left out: the scheduler already has those keys (the graph holds a
// placeholder for them, for ordering). SerializationError naming the task if one cannot
// cross processes (a closure, a value without a codec).
UpdateGraph to_update_graph(const Graph& graph, std::span<const Key> wanted,
                            const std::function<bool(const Key&)>& held = {});

// ---- scheduler -> client ----
struct KeyInMemory {
  static constexpr std::string_view kOp = "key-in-memory";
  Key key;
  uint64_t nbytes = 0;
  std::vector<std::string> holders;  // data addresses of the workers holding it
  std::optional<Value> value{};       // a small result, carried along (no fetch needed)
  void encode(Encoder& e) const;
  static KeyInMemory decode(Decoder& d);
};
struct KeyErred {
  static constexpr std::string_view kOp = "key-erred";
  Key key;
  std::string exception;
  Key blamed;
  void encode(Encoder& e) const;
  static KeyErred decode(Decoder& d);
};
struct KeyLost {
  static constexpr std::string_view kOp = "key-lost";
  Key key;
  void encode(Encoder& e) const;
  static KeyLost decode(Decoder& d);
};
// A key that erred runs again (a client's retry): its futures are pending again.
struct KeyRetried {
  static constexpr std::string_view kOp = "key-retried";
  Key key;
  void encode(Encoder& e) const;
  static KeyRetried decode(Decoder& d);
};
struct Retried {
  static constexpr std::string_view kOp = "retried";
  uint64_t request = 0;
  void encode(Encoder& e) const;
  static Retried decode(Decoder& d);
};
struct GraphRefused {
  static constexpr std::string_view kOp = "graph-refused";
  std::string message;
  std::vector<Key> keys;  // the refused update's wanted keys
  void encode(Encoder& e) const;
  static GraphRefused decode(Decoder& d);
};

struct WorkerInfo {
  std::string address;  // its data server
  std::string name;
  int32_t nthreads = 0;
  uint64_t memory_limit = 0;   // 0: none
  uint64_t managed_bytes = 0;  // its results in memory, by its last heartbeat
  bool paused = false;
};
struct SchedulerInfo {
  static constexpr std::string_view kOp = "scheduler-info";
  uint64_t request = 0;
  std::string address;
  std::vector<WorkerInfo> workers;  // in the order they joined
  void encode(Encoder& e) const;
  static SchedulerInfo decode(Decoder& d);
};

// ---- scheduler -> worker ----
struct ComputeTask {
  static constexpr std::string_view kOp = "compute-task";
  Key key;
  uint64_t priority = 0;
  Payload payload{};
  std::vector<std::pair<Key, std::vector<std::string>>> who_has;  // dependency, holders
  std::vector<uint64_t> nbytes{};  // each dependency's size (0 for all when empty)
  void encode(Encoder& e) const;
  static ComputeTask decode(Decoder& d);
};
struct FreeKeys {
  static constexpr std::string_view kOp = "free-keys";
  std::vector<Key> keys;
  void encode(Encoder& e) const;
  static FreeKeys decode(Decoder& d);
};
// To a worker the scheduler removed (it was silent past the worker timeout) that still
// sends: its tasks were rescheduled and its results forgotten, so it exits, and its nanny
// starts it again as a new worker (Dask's worker does the same on status "missing").
struct WorkerRemoved {
  static constexpr std::string_view kOp = "worker-removed";
  std::string reason;
  void encode(Encoder& e) const;
  static WorkerRemoved decode(Decoder& d);
};

// ---- worker -> scheduler ----
struct TaskFinished {
  static constexpr std::string_view kOp = "task-finished";
  Key key;
  uint64_t nbytes = 0;
  double duration = 0;
  // The result itself when it is small (WorkerServer::Options::inline_bytes), for the
  // scheduler to pass to the clients that want it: result() then needs no fetch.
  std::optional<Value> value{};
  void encode(Encoder& e) const;
  static TaskFinished decode(Decoder& d);
};
// The worker is leaving (it was stopped): the scheduler removes it now, not after its
// timeout, and runs elsewhere what it was running or held (Dask's unregister).
struct Unregister {
  static constexpr std::string_view kOp = "unregister";
  std::string reason;
  void encode(Encoder& e) const;
  static Unregister decode(Decoder& d);
};
// Scheduler to worker: give this task back if it has not started (work stealing).
struct StealRequest {
  static constexpr std::string_view kOp = "steal-request";
  Key key;
  uint64_t request = 0;  // given back in the response
  void encode(Encoder& e) const;
  static StealRequest decode(Decoder& d);
};
// Worker to scheduler: whether it gave the task up.
struct StealResponse {
  static constexpr std::string_view kOp = "steal-response";
  Key key;
  bool stolen = false;
  uint64_t request = 0;
  void encode(Encoder& e) const;
  static StealResponse decode(Decoder& d);
};
struct TaskErred {
  static constexpr std::string_view kOp = "task-erred";
  Key key;
  std::string exception;
  void encode(Encoder& e) const;
  static TaskErred decode(Decoder& d);
};
struct MissingData {
  static constexpr std::string_view kOp = "missing-data";
  Key key;
  Key missing;
  std::string holder;
  void encode(Encoder& e) const;
  static MissingData decode(Decoder& d);
};
struct Heartbeat {
  static constexpr std::string_view kOp = "heartbeat";
  uint64_t managed_bytes = 0;
  bool paused = false;  // a worker over its memory's pause threshold takes no new tasks
  void encode(Encoder& e) const;
  static Heartbeat decode(Decoder& d);
};

// ---- anyone -> a worker's data server, and its answer ----
struct GetData {
  static constexpr std::string_view kOp = "get-data";
  std::vector<Key> keys;
  void encode(Encoder& e) const;
  static GetData decode(Decoder& d);
};
struct Data {
  static constexpr std::string_view kOp = "data";
  std::vector<std::pair<Key, Value>> values;
  std::vector<Key> missing;
  void encode(Encoder& e) const;
  static Data decode(Decoder& d);
};

}  // namespace tessera::distributed::protocol

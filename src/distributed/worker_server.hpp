// A worker process's network shell: a WorkerState fed by the scheduler's messages, a data
// server answering peers' and clients' get-data requests from the worker's store, one
// connection per peer it fetches from, and `nthreads` executor threads that run tasks
// (decoded from their payloads with the ops this process registered).
//
//   WorkerServer w({.scheduler = "tcp://127.0.0.1:8786", .nthreads = 2});
//   w.start();     // handshakes, then serves on its own thread
//   …
//   w.stop();
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "comm/message.hpp"
#include "tessera/core/config.hpp"
#include "tessera/distributed/security.hpp"

namespace tessera::distributed {

class WorkerServer {
 public:
  struct Options {
    std::string scheduler;  // the scheduler's address
    // Where the data server listens (port 0: any free one). Default: on this machine's
    // address towards the scheduler (loopback for a scheduler on loopback), as Dask's
    // worker does, so that peers on other machines reach it.
    std::string listen{};
    // What the scheduler and peers are told to fetch from (Dask's contact address; a
    // forwarded port, say). Default: `listen` as bound, with a host of every interface
    // ("tcp://0.0.0.0:0") replaced by this machine's address towards the scheduler.
    std::string contact{};
    std::string name{};
    int nthreads = 1;
    std::chrono::milliseconds heartbeat_interval{500};
    // While tasks are still queued or running here, finished ones are reported at most this
    // often, in one batch (Dask's BatchedSend); an idle worker reports at once.
    std::chrono::microseconds batch_interval{1000};
    // Tiny tasks run back to back: tasks of kinds measured here as short are handed to the
    // executor threads beyond one per thread, as many as this much of their measured time per
    // thread (WorkerState::Options::queue_seconds). 0: one task per thread.
    std::chrono::microseconds queue_time{2000};
    // A task of a kind measured here to take less than this runs on the worker's loop thread
    // when the executor threads are idle, which saves two thread hand-offs per task (a chain
    // of tiny tasks); with one thread, the loop runs whole batches of them. Never more than
    // nthreads tasks run at once, and a kind of which a task ran 100 ms or more on the loop
    // stays on the executors. 0: tasks always run on the executor threads.
    std::chrono::microseconds inline_time{50};
    // Results this small travel with task-finished, and the scheduler hands them to the
    // clients that want them (result() then needs no fetch from this worker).
    uint64_t inline_bytes = 1024;
    // Give up when the scheduler has not answered the handshake this long.
    std::chrono::milliseconds connect_timeout{10000};
    // Stop serving when the scheduler has been silent this long (it answers heartbeats).
    std::chrono::milliseconds death_timeout{60000};
    // A fetch from a peer not answered this long counts as failed (one whose connection
    // drops fails at once).
    std::chrono::milliseconds gather_timeout{30000};
    // Memory (Dask's worker memory management): with a limit, results beyond `target` ×
    // limit are spilled to disk (least recently used first), the process's memory above
    // `spill` × limit spills more, and above `pause` × limit the worker takes no new tasks
    // until it is below again. 0: no limit.
    uint64_t memory_limit = 0;
    struct Fractions {
      double target = 0.6;
      double spill = 0.7;
      double pause = 0.8;
    } memory{};
    // Where spilled results go (a directory of the worker's own is made inside; default:
    // the system's temporary directory).
    std::string local_directory{};
    // How spilled results are compressed: "lz4" (fast; Dask's default), "zstd" (smaller
    // files, slower) or "none". Default: the configuration's worker.spill-compression
    // (TESSERA_WORKER_SPILL_COMPRESSION), else lz4.
    std::string spill_compression = config::get_string("worker.spill-compression", "lz4");
    // The process's memory in bytes (default: resident set size); tests give their own.
    std::function<uint64_t()> process_memory{};
    comm::Limits limits{};
    // The cluster's CURVE key pair, for the scheduler, the peers and the data server.
    Security security{};
    // Check the worker state machine's invariants after every event (slow; for debugging
    // and tests): InternalError naming the task stops the worker (config worker.validate).
    bool validate = false;
  };

  // Binds the data server (IOError naming the address if it cannot).
  explicit WorkerServer(Options options);
  ~WorkerServer();  // stops
  WorkerServer(const WorkerServer&) = delete;
  WorkerServer& operator=(const WorkerServer&) = delete;

  // Where peers fetch this worker's results.
  const std::string& data_address() const;
  // Handshakes with the scheduler and serves on threads of its own until stop(). SchedulerError
  // with the scheduler's reason if it refuses, or naming the address if it does not answer
  // within connect_timeout.
  void start();
  void stop();
  // False once stopped, after the scheduler went silent past death_timeout, or once the
  // scheduler removed it; then stop_reason() says why.
  bool running() const;
  std::string stop_reason() const;
  // Whether it stopped because the scheduler removed it (it had been silent past the
  // scheduler's worker timeout): a new worker process should take its place.
  bool removed() const;
  // Results held, and tasks run so far.
  size_t stored() const;
  // Bytes of results in memory and on disk (compressed), values spilled so far, and
  // whether the worker stopped taking tasks for memory.
  uint64_t memory_bytes() const;
  uint64_t spilled_bytes() const;
  uint64_t spilled_count() const;
  bool paused() const;
  size_t executed() const;
  // Values sent to peers and clients that asked for them (get-data).
  size_t served() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::distributed

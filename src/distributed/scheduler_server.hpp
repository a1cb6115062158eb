// The scheduler process's network shell: a comm::Server around a SchedulerState. It turns
// messages into the state machine's events and its actions into messages, keeps the
// table of peers (which routing id is which worker or client, and each worker's data
// address), and is the only part that knows about time: a worker or client not heard from
// within its timeout is removed (a worker's heartbeats, a client's messages or pings).
//
//   SchedulerServer s({.address = "tcp://127.0.0.1:0"});
//   s.start();                      // serves on its own thread
//   connect workers and clients to s.address() …
//   s.stop();
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "comm/message.hpp"
#include "distributed/scheduler_state.hpp"
#include "tessera/distributed/security.hpp"

namespace tessera::distributed {

// The scheduler's placement options from the configuration (tessera/core/config.hpp), each
// defaulting to SchedulerState::Options': scheduler.worker-saturation, scheduler.latency-hiding
// (seconds), scheduler.speculative-assignment and scheduler.work-stealing (true/false), and
// scheduler.validate (false: check every invariant after each event, for debugging).
// ValueError naming the key if a value is not a number/bool or is out of range.
SchedulerState::Options state_options_from_config();

class SchedulerServer {
 public:
  struct Options {
    std::string address = "tcp://127.0.0.1:8786";
    // A worker silent this long is removed (its tasks rescheduled, its results recomputed).
    std::chrono::milliseconds worker_timeout{10000};
    // A client silent this long is removed (its futures released).
    std::chrono::milliseconds client_timeout{60000};
    comm::Limits limits{};
    // The cluster's CURVE key pair: only peers holding it are admitted (none: plain TCP).
    Security security{};
    SchedulerState::Options state{};
    // GET /health and /metrics (Prometheus) on this host:port ("" = none; port 0: any).
    std::string http_address{};
  };

  // Binds the address (IOError naming it if it cannot).
  explicit SchedulerServer(Options options);
  ~SchedulerServer();  // stops
  SchedulerServer(const SchedulerServer&) = delete;
  SchedulerServer& operator=(const SchedulerServer&) = delete;

  // Where peers connect: the address bound ("tcp://127.0.0.1:8786"), or, bound to every
  // interface ("tcp://0.0.0.0:8786"), this machine's outward address with its port.
  const std::string& address() const;
  // The address as bound (differs from address() for every interface's).
  const std::string& bound_address() const;
  // Its in-process address (comm::Server::local_address()).
  const std::string& local_address() const;
  // Serves on a thread of its own until stop().
  void start();
  void stop();

  // Counts, read from any thread (for tests and /metrics).
  size_t worker_count() const;
  size_t client_count() const;
  size_t dropped_messages() const;
  // Connections refused for want of the cluster's key (each is logged as a warning).
  size_t refused_connections() const;
  // Tasks the scheduler knows (held, waiting or running): 0 once every future is released.
  size_t task_count() const;
  // Where /health and /metrics are served ("http://127.0.0.1:8787"), or "" if not.
  std::string http_url() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::distributed

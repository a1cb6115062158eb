// The scheduler's HTTP endpoints, for load balancers and Prometheus: GET /health answers
// "ok", GET /metrics the scheduler's counters in Prometheus' text format. Served on a thread
// of its own (cpp-httplib), from a snapshot the scheduler's loop publishes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace tessera::distributed {

// What /metrics reports; written by the scheduler's loop, read by the HTTP thread.
struct SchedulerMetrics {
  std::atomic<uint64_t> workers{0}, clients{0}, paused_workers{0};
  std::atomic<uint64_t> dropped_messages{0};
  std::atomic<uint64_t> refused_connections{0};  // peers without the cluster's key
  std::atomic<uint64_t> managed_bytes{0};        // results in workers' memory (their heartbeats)
  std::array<std::atomic<uint64_t>, 8> tasks{};  // by TaskStatus
};

// The Prometheus text for `m`.
std::string prometheus_text(const SchedulerMetrics& m);

class HttpServer {
 public:
  // Listens on `address` ("127.0.0.1:8787"; port 0: any free one); IOError naming it and
  // saying why if it cannot ("no such host", "Address already in use").
  HttpServer(const std::string& address, std::shared_ptr<const SchedulerMetrics> metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // "http://127.0.0.1:8787"
  const std::string& url() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::distributed

#include "distributed/http_server.hpp"

#include <fmt/format.h>
#include <httplib.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <netdb.h>
#include <sys/socket.h>

#include "core/thread_name.hpp"
#include "distributed/scheduler_state.hpp"
#include "tessera/core/error.hpp"

namespace tessera::distributed {

std::string prometheus_text(const SchedulerMetrics& m) {
  std::string out;
  auto gauge = [&](const char* name, const char* help, uint64_t v) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, v);
  };
  gauge("tessera_scheduler_workers", "Workers connected.", m.workers.load());
  gauge("tessera_scheduler_paused_workers", "Workers that take no new tasks (memory).",
        m.paused_workers.load());
  gauge("tessera_scheduler_clients", "Clients connected.", m.clients.load());
  gauge("tessera_scheduler_managed_bytes", "Bytes of results in the workers' memory.",
        m.managed_bytes.load());
  out +=
      "# HELP tessera_scheduler_dropped_messages_total Messages dropped as malformed or from "
      "cut-off peers.\n"
      "# TYPE tessera_scheduler_dropped_messages_total counter\n";
  out += fmt::format("tessera_scheduler_dropped_messages_total {}\n", m.dropped_messages.load());
  out +=
      "# HELP tessera_scheduler_refused_connections_total Connections refused for want of the "
      "cluster's CURVE key.\n"
      "# TYPE tessera_scheduler_refused_connections_total counter\n";
  out +=
      fmt::format("tessera_scheduler_refused_connections_total {}\n", m.refused_connections.load());
  out +=
      "# HELP tessera_scheduler_tasks Tasks the scheduler knows, by state.\n# TYPE "
      "tessera_scheduler_tasks gauge\n";
  for (size_t s = 0; s < m.tasks.size(); ++s) {
    const auto status = static_cast<TaskStatus>(s);
    if (status == TaskStatus::Forgotten) continue;
    out += fmt::format("tessera_scheduler_tasks{{state=\"{}\"}} {}\n", status_name(status),
                       m.tasks[s].load());
  }
  return out;
}

struct HttpServer::Impl {
  httplib::Server server;
  std::shared_ptr<const SchedulerMetrics> metrics;
  std::string url;
  std::thread thread;
};

HttpServer::HttpServer(const std::string& address, std::shared_ptr<const SchedulerMetrics> metrics)
    : impl_(std::make_unique<Impl>()) {
  impl_->metrics = std::move(metrics);
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    throw ValueError(fmt::format("HTTP address '{}' is not host:port", address));
  }
  // No host (":8787", as Dask writes it): every IPv4 interface (httplib alone would take
  // IPv6's loopback).
  const std::string host = colon == 0 ? "0.0.0.0" : address.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (const std::exception&) {
    throw ValueError(fmt::format("HTTP address '{}' has no port number", address));
  }
  // Resolved here first, so that a bad host is told apart from a port in use.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    const bool unknown = rc == EAI_NONAME
#ifdef EAI_NODATA
                         || rc == EAI_NODATA
#endif
        ;
    throw IOError(fmt::format("cannot serve HTTP on '{}': {} ({})", address,
                              unknown ? "no such host" : "cannot resolve its host",
                              gai_strerror(rc)));
  }
  freeaddrinfo(found);
  impl_->server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  auto* m = impl_->metrics.get();
  impl_->server.Get("/metrics", [m](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus_text(*m), "text/plain; version=0.0.4");
  });
  // SO_REUSEADDR (a restarted scheduler gets its port back at once), not httplib's default
  // SO_REUSEPORT: with it a second scheduler on this host would share the port, and each
  // request would go to either one.
  impl_->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  errno = 0;
  const int bound = port == 0 ? impl_->server.bind_to_any_port(host)
                              : (impl_->server.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    const int err = errno;  // bind's or listen's (the socket's close keeps it)
    throw IOError(fmt::format("cannot serve HTTP on '{}'{}", address,
                              err == 0 ? std::string() : std::string(": ") + std::strerror(err)));
  }
  impl_->url = fmt::format("http://{}:{}", host, bound);
  impl_->thread = std::thread([this] {
    tessera::detail::name_this_thread("tsr-http");
    impl_->server.listen_after_bind();
  });
  // stop() before the listener runs would be lost: wait until it does.
  while (!impl_->server.is_running()) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

const std::string& HttpServer::url() const {
  return impl_->url;
}

}  // namespace tessera::distributed

// tessera-scheduler: the distributed scheduler as a program.
//
//   tessera-scheduler [--address tcp://127.0.0.1:8786] [--scheduler-file FILE]
//                     [--worker-timeout SECONDS] [--client-timeout SECONDS]
//                     [--http HOST:PORT] [--curve-key FILE]
//                     [--worker-saturation 1.1] [--latency-hiding SECONDS]
//                     [--speculative-assignment|--no-speculative-assignment]
//                     [--work-stealing|--no-work-stealing] [--validate]
//
// Every option also reads TESSERA_SCHEDULER_<OPTION> from the environment. It serves until
// SIGINT or SIGTERM.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "distributed/scheduler_server.hpp"
#include "tool_config.hpp"
#include "tessera/core/error.hpp"

namespace {

// Writes the address where workers and clients find it; atomically (temporary + rename).
void write_scheduler_file(const std::string& path, const std::string& address) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) {
      throw tessera::IOError("cannot write the scheduler file '" + path +
                             "': " + std::strerror(errno));
    }
    f << "{\"address\": \"" << address << "\"}\n";
    f.close();  // a full disk shows at the flush
    if (!f) {
      std::filesystem::remove(tmp);
      throw tessera::IOError("cannot write the scheduler file '" + path + "'");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw tessera::IOError("cannot write the scheduler file '" + path + "': " + ec.message());
  }
}

}  // namespace

int main(int argc, char** argv) {
  namespace config = tessera::config;
  CLI::App app{"tessera-scheduler: the distributed scheduler (workers and clients connect to it)"};
  std::string address, scheduler_file, http, curve_key, config_file;
  double worker_timeout = 10, client_timeout = 60;
  tessera::distributed::SchedulerState::Options placement;
  // Every default from the configuration (tessera/core/config.hpp), then the command line.
  try {
    tessera::tools::load_config_flag(argc, argv);
    address = config::get_string("scheduler.address", "tcp://127.0.0.1:8786");
    scheduler_file = config::get_string("scheduler.file", "");
    worker_timeout = config::get_number("scheduler.worker-timeout", 10);
    client_timeout = config::get_number("scheduler.client-timeout", 60);
    http = config::get_string("scheduler.http", "127.0.0.1:8787");
    curve_key = config::get_string("curve.key-file", "");
    placement = tessera::distributed::state_options_from_config();
  } catch (const std::exception& e) {
    spdlog::stderr_color_mt("scheduler")->error("{}", e.what());
    return 1;
  }
  tessera::tools::add_config_option(app, config_file);
  app.add_option("--address", address, "where to listen: tcp://host:port (port 0: any free one)")
      ->envname("TESSERA_SCHEDULER_ADDRESS")
      ->capture_default_str();
  app.add_option("--scheduler-file", scheduler_file,
                 "write {\"address\": ...} here for workers and clients (--scheduler-file)")
      ->envname("TESSERA_SCHEDULER_FILE");
  app.add_option("--worker-timeout", worker_timeout,
                 "seconds of silence after which a worker is removed")
      ->envname("TESSERA_SCHEDULER_WORKER_TIMEOUT")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  app.add_option("--client-timeout", client_timeout,
                 "seconds of silence after which a client is removed")
      ->envname("TESSERA_SCHEDULER_CLIENT_TIMEOUT")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  app.add_option(
         "--http", http,
         "serve GET /health and /metrics (Prometheus) on host:port (:port: every interface); "
         "\"\" for none (a busy port: any free one)")
      ->envname("TESSERA_SCHEDULER_HTTP")
      ->capture_default_str();
  app.add_option("--worker-saturation", placement.worker_saturation,
                 "root tasks wait in the scheduler while every worker holds this many tasks "
                 "per thread (Dask's worker-saturation)")
      ->envname("TESSERA_SCHEDULER_WORKER_SATURATION")
      ->check(CLI::Range(0.01, 1e6))
      ->capture_default_str();
  app.add_option("--latency-hiding", placement.latency_hiding,
                 "seconds: tasks measured shorter than this are queued deeper on workers and "
                 "may be sent ahead of their inputs (0: off)")
      ->envname("TESSERA_SCHEDULER_LATENCY_HIDING")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_flag("--speculative-assignment,!--no-speculative-assignment",
               placement.speculative_assignment,
               "send a tiny task to the worker computing all its inputs before they are done, "
               "so a chain of tiny tasks needs no round trip per task (default: on)")
      ->envname("TESSERA_SCHEDULER_SPECULATIVE_ASSIGNMENT")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--work-stealing,!--no-work-stealing", placement.work_stealing,
               "let idle workers take queued tasks from busy ones (default: on)")
      ->envname("TESSERA_SCHEDULER_WORK_STEALING")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--validate", placement.validate,
               "check every task's state after every event; a broken invariant stops the "
               "scheduler naming the task (slow: for debugging)")
      ->envname("TESSERA_SCHEDULER_VALIDATE");
  app.add_option("--curve-key", curve_key,
                 "the cluster's key file (tessera-keys): encrypt every connection and admit "
                 "only clients and workers that hold it; refusals are logged")
      ->envname("TESSERA_CURVE_KEY_FILE");
  app.set_version_flag("--version", std::string("tessera-scheduler ") + TESSERA_VERSION);
  CLI11_PARSE(app, argc, argv);

  auto log = spdlog::stderr_color_mt("scheduler");
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    tessera::distributed::SchedulerServer::Options options{
        .address = address,
        .worker_timeout = std::chrono::milliseconds(static_cast<long>(worker_timeout * 1000)),
        .client_timeout = std::chrono::milliseconds(static_cast<long>(client_timeout * 1000)),
        .state = placement,
        .http_address = http};
    if (!curve_key.empty()) options.security = tessera::Security::from_file(curve_key);
    std::unique_ptr<tessera::distributed::SchedulerServer> made;
    try {
      made = std::make_unique<tessera::distributed::SchedulerServer>(options);
    } catch (const tessera::IOError& e) {
      // Another program on the HTTP port is no reason not to schedule: serve it elsewhere.
      const std::string what = e.what();
      if (http.empty() || what.find("HTTP") == std::string::npos ||
          what.find(std::strerror(EADDRINUSE)) == std::string::npos) {
        throw;
      }
      log->warn("{}; serving HTTP on another port", e.what());
      options.http_address = http.substr(0, http.rfind(':')) + ":0";
      made = std::make_unique<tessera::distributed::SchedulerServer>(options);
    }
    auto& server = *made;
    server.start();
    if (!scheduler_file.empty()) write_scheduler_file(scheduler_file, server.address());
    if (server.bound_address() == server.address()) {
      log->info("listening on {}", server.address());
    } else {
      log->info("listening on {}; peers connect to {}", server.bound_address(), server.address());
    }
    if (!server.http_url().empty()) log->info("health and metrics at {}", server.http_url());
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log->info("signal {}: stopping", sig);
    server.stop();
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return 1;
  }
  return 0;
}

// tessera-worker: a worker process.
//
//   tessera-worker tcp://127.0.0.1:8786 [--nthreads N] [--name NAME] [--listen ADDRESS]
//                  [--preload lib.so ...] [--death-timeout SECONDS] [--memory-limit 4GiB]
//                  [--local-directory DIR] [--curve-key FILE]
//   tessera-worker --scheduler-file FILE ...
//
// --preload loads a shared library whose static initializers register ops
// (TESSERA_REGISTER), so that graphs calling them run here. Every option also reads
// TESSERA_WORKER_<OPTION> from the environment. It serves until SIGINT or SIGTERM, or until
// the scheduler has been silent for --death-timeout seconds (then it exits with 3).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "distributed/worker_main.hpp"
#include "tessera/core/error.hpp"

namespace {

// The address in a scheduler file ({"address": "tcp://..."}).
std::string read_scheduler_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw tessera::IOError("cannot read the scheduler file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const auto at = text.find("tcp://");
  const auto end = text.find('"', at);
  if (at == std::string::npos || end == std::string::npos)
    throw tessera::IOError("the scheduler file '" + path + "' holds no tcp:// address");
  return text.substr(at, end - at);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera-worker: runs tasks for a tessera scheduler"};
  std::string scheduler, scheduler_file, name, listen = "tcp://127.0.0.1:0";
  int nthreads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  std::vector<std::string> preload;
  double death_timeout = 60, connect_timeout = 10;
  app.add_option("scheduler", scheduler, "the scheduler's address (tcp://host:port)")
      ->envname("TESSERA_WORKER_SCHEDULER");
  app.add_option("--scheduler-file", scheduler_file, "read the scheduler's address from this file")
      ->envname("TESSERA_WORKER_SCHEDULER_FILE");
  app.add_option("--nthreads", nthreads, "threads running tasks")
      ->envname("TESSERA_WORKER_NTHREADS")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--name", name, "how the scheduler calls this worker")
      ->envname("TESSERA_WORKER_NAME");
  app.add_option("--listen", listen, "where peers fetch results from (port 0: any free one)")
      ->envname("TESSERA_WORKER_LISTEN")
      ->capture_default_str();
  app.add_option("--preload", preload,
                 "a shared library to load first (it registers ops); repeatable")
      ->allow_extra_args(false)
      ->envname("TESSERA_WORKER_PRELOAD");
  app.add_option("--death-timeout", death_timeout, "seconds without the scheduler before exiting")
      ->envname("TESSERA_WORKER_DEATH_TIMEOUT")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  app.add_option("--connect-timeout", connect_timeout, "seconds to wait for the scheduler at start")
      ->envname("TESSERA_WORKER_CONNECT_TIMEOUT")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  std::string memory_limit = "0", local_directory;
  app.add_option(
         "--memory-limit", memory_limit,
         "bytes of memory for this worker: 4GiB, 500MB, a fraction of RAM like 0.5, or 0 for "
         "none; results past 60% are spilled to disk, and past 80% it takes no new tasks")
      ->envname("TESSERA_WORKER_MEMORY_LIMIT")
      ->capture_default_str();
  app.add_option("--local-directory", local_directory,
                 "where spilled results go (default: the temporary directory)")
      ->envname("TESSERA_WORKER_LOCAL_DIRECTORY");
  std::string curve_key;
  app.add_option("--curve-key", curve_key,
                 "the cluster's key file (tessera-keys): encrypt every connection and admit "
                 "only peers that hold it")
      ->envname("TESSERA_CURVE_KEY_FILE");
  app.set_version_flag("--version", std::string("tessera-worker ") + TESSERA_VERSION);
  CLI11_PARSE(app, argc, argv);

  uint64_t limit = 0;
  tessera::Security security;
  try {
    if (!curve_key.empty()) security = tessera::Security::from_file(curve_key);
    if (scheduler.empty() && scheduler_file.empty())
      throw tessera::ValueError("give the scheduler's address or --scheduler-file");
    if (scheduler.empty()) scheduler = read_scheduler_file(scheduler_file);
    limit = tessera::distributed::parse_memory_limit(memory_limit);
  } catch (const std::exception& e) {
    spdlog::stderr_color_mt("worker")->error("{}", e.what());
    return 1;
  }
  return tessera::distributed::run_worker(
      {.scheduler = scheduler,
       .listen = listen,
       .name = name,
       .nthreads = nthreads,
       .connect_timeout = std::chrono::milliseconds(static_cast<long>(connect_timeout * 1000)),
       .death_timeout = std::chrono::milliseconds(static_cast<long>(death_timeout * 1000)),
       .memory_limit = limit,
       .local_directory = local_directory,
       .security = security},
      preload);
}

// tessera-worker: a worker process.
//
//   tessera-worker tcp://127.0.0.1:8786 [--nthreads N] [--nworkers N] [--nanny|--no-nanny]
//                  [--name NAME] [--listen ADDRESS | --interface NAME]
//                  [--contact-address ADDRESS]
//                  [--preload lib.so ...] [--death-timeout SECONDS] [--memory-limit 4GiB]
//                  [--local-directory DIR] [--spill-compression lz4|zstd|none]
//                  [--curve-key FILE]
//                  [--queue-time SECONDS] [--inline-time SECONDS] [--validate]
//   tessera-worker --scheduler-file FILE ...
//
// --preload loads a shared library whose static initializers register ops
// (TESSERA_REGISTER), so that graphs calling them run here. Every option also reads
// TESSERA_WORKER_<OPTION> from the environment. It serves until SIGINT or SIGTERM, or until
// the scheduler has been silent for --death-timeout seconds (then it exits with 3), or until
// the scheduler removes it for having been silent itself (exit code 4; the nanny starts a
// fresh worker, which joins as a new one).
//
// By default the process is a nanny (distributed/nanny.hpp): it runs the worker(s) as
// child processes (this program again, with --no-nanny) and starts one again if it dies or
// passes --memory-terminate of its --memory-limit.
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#ifdef TESSERA_WITH_MIMALLOC
#include <mimalloc.h>
#endif

#include "distributed/addresses.hpp"
#include "distributed/nanny.hpp"
#include "distributed/worker_main.hpp"
#include "tessera/core/error.hpp"
#include "tool_config.hpp"

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
#ifdef TESSERA_WITH_MIMALLOC
  // Memory freed goes back to the operating system at once, not 25 ms later when this
  // thread next allocates: the memory limit is checked on the resident size, and a paused
  // worker's idle threads would otherwise hold what they freed, keeping it paused.
#if MI_MALLOC_VERSION >= 210
  mi_option_set(mi_option_purge_delay, 0);
#else
  mi_option_set(mi_option_decommit_delay, 0);
  mi_option_set(mi_option_segment_decommit_delay, 0);
#endif
#endif
  namespace config = tessera::config;
  CLI::App app{"tessera-worker: runs tasks for a tessera scheduler"};
  std::string scheduler, scheduler_file, name, listen, contact, interface, memory_limit,
      local_directory, curve_key, config_file, spill_compression;
  int nthreads = 1, nworkers = 1;
  bool nanny = true;
  std::vector<std::string> preload;
  double death_timeout = 60, connect_timeout = 10, terminate = 0.95;
  const tessera::distributed::WorkerServer::Options defaults;
  double queue_time = tessera::distributed::micros_to_seconds(defaults.queue_time);
  double inline_time = tessera::distributed::micros_to_seconds(defaults.inline_time);
  bool validate = false;
  tessera::distributed::WorkerServer::Options::Fractions fractions;
  // Every default from the configuration (tessera/core/config.hpp), then the command line.
  try {
    tessera::tools::load_config_flag(argc, argv);
    scheduler = config::get_string("worker.scheduler", "");
    scheduler_file = config::get_string("worker.scheduler-file", "");
    name = config::get_string("worker.name", "");
    listen = config::get_string("worker.listen", "");
    contact = config::get_string("worker.contact-address", "");
    interface = config::get_string("worker.interface", "");
    nthreads = static_cast<int>(config::get_number(
        "worker.nthreads", std::max(1U, std::thread::hardware_concurrency())));
    nworkers = static_cast<int>(config::get_number("worker.nworkers", 1));
    nanny = config::get_bool("worker.nanny", true);
    death_timeout = config::get_number("worker.death-timeout", 60);
    connect_timeout = config::get_number("worker.connect-timeout", 10);
    memory_limit = config::get_string("worker.memory-limit", "0");
    local_directory = config::get_string("worker.local-directory", "");
    spill_compression = config::get_string("worker.spill-compression", "lz4");
    fractions.target = config::get_number("worker.memory-target", fractions.target);
    fractions.spill = config::get_number("worker.memory-spill", fractions.spill);
    fractions.pause = config::get_number("worker.memory-pause", fractions.pause);
    terminate = config::get_number("worker.memory-terminate", terminate);
    curve_key = config::get_string("curve.key-file", "");
    queue_time = config::get_number("worker.queue-time", queue_time);
    inline_time = config::get_number("worker.inline-time", inline_time);
    validate = config::get_bool("worker.validate", validate);
    for (std::string libs = config::get_string("worker.preload", ""); !libs.empty();) {
      const auto end = libs.find(':');
      if (end != 0) preload.push_back(libs.substr(0, end));
      libs = end == std::string::npos ? "" : libs.substr(end + 1);
    }
  } catch (const std::exception& e) {
    spdlog::stderr_color_mt("worker")->error("{}", e.what());
    return 1;
  }
  tessera::tools::add_config_option(app, config_file);
  app.add_option("scheduler", scheduler, "the scheduler's address (tcp://host:port)")
      ->envname("TESSERA_WORKER_SCHEDULER");
  app.add_option("--scheduler-file", scheduler_file, "read the scheduler's address from this file")
      ->envname("TESSERA_WORKER_SCHEDULER_FILE");
  app.add_option("--nthreads", nthreads, "threads running tasks")
      ->envname("TESSERA_WORKER_NTHREADS")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--name", name, "how the scheduler calls this worker (NAME-i with --nworkers)")
      ->envname("TESSERA_WORKER_NAME")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--nworkers", nworkers, "worker processes to start (each with --nthreads)")
      ->envname("TESSERA_WORKER_NWORKERS")
      ->check(CLI::Range(1, 4096))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  app.add_flag("--nanny,!--no-nanny", nanny,
               "run the workers under a nanny process that restarts them when they die or pass "
               "--memory-terminate (default), or run one worker in this process")
      ->envname("TESSERA_WORKER_NANNY")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI::Option* listen_flag =
      app.add_option(
             "--listen", listen,
             "where peers fetch results from: tcp://host:port (port 0: any free one; default: "
             "this machine's address towards the scheduler)")
          ->envname("TESSERA_WORKER_LISTEN");
  CLI::Option* interface_flag =
      app.add_option("--interface", interface,
                     "listen on this network interface's address (eth0, ib0) instead")
          ->envname("TESSERA_WORKER_INTERFACE");
  app.add_option("--contact-address", contact,
                 "the address peers are told to fetch from, if not the one listened on (a "
                 "forwarded port)")
      ->envname("TESSERA_WORKER_CONTACT_ADDRESS");
  app.add_option("--preload", preload,
                 "a shared library to load first (it registers ops); repeatable, or several "
                 "separated by ':'")
      ->allow_extra_args(false)
      ->delimiter(':')
      ->envname("TESSERA_WORKER_PRELOAD");
  app.add_option("--death-timeout", death_timeout, "seconds without the scheduler before exiting")
      ->envname("TESSERA_WORKER_DEATH_TIMEOUT")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  app.add_option("--connect-timeout", connect_timeout, "seconds to wait for the scheduler at start")
      ->envname("TESSERA_WORKER_CONNECT_TIMEOUT")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  app.add_option(
         "--memory-limit", memory_limit,
         "bytes of memory for this worker: 4GiB, 500MB, a fraction of RAM like 0.5, or 0 for "
         "none; results past 60% are spilled to disk, and past 80% it takes no new tasks")
      ->envname("TESSERA_WORKER_MEMORY_LIMIT")
      ->capture_default_str();
  app.add_option("--local-directory", local_directory,
                 "where spilled results go (default: the temporary directory)")
      ->envname("TESSERA_WORKER_LOCAL_DIRECTORY");
  app.add_option("--spill-compression", spill_compression,
                 "how spilled results are compressed: lz4 (fast), zstd (smaller files, slower) "
                 "or none")
      ->envname("TESSERA_WORKER_SPILL_COMPRESSION")
      ->check(CLI::IsMember({"lz4", "zstd", "none"}))
      ->capture_default_str();
  auto fraction = [&](const char* flag, double& value, const char* env, const char* what) {
    app.add_option(flag, value, what)->envname(env)->check(CLI::Range(0.0, 1.0))->capture_default_str();
  };
  fraction("--memory-target", fractions.target, "TESSERA_WORKER_MEMORY_TARGET",
           "spill results to disk past this fraction of --memory-limit");
  fraction("--memory-spill", fractions.spill, "TESSERA_WORKER_MEMORY_SPILL",
           "spill more while the process's memory is past this fraction");
  fraction("--memory-pause", fractions.pause, "TESSERA_WORKER_MEMORY_PAUSE",
           "take no new tasks while the process's memory is past this fraction");
  fraction("--memory-terminate", terminate, "TESSERA_WORKER_MEMORY_TERMINATE",
           "the nanny restarts a worker whose memory passes this fraction");
  app.add_option("--queue-time", queue_time,
                 "seconds: tasks measured here as short are handed to the threads this much "
                 "work ahead, and run back to back (0: one task per thread)")
      ->envname("TESSERA_WORKER_QUEUE_TIME")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--inline-time", inline_time,
                 "seconds: tasks measured here as shorter run on the worker's loop thread when "
                 "its threads are idle (0: never)")
      ->envname("TESSERA_WORKER_INLINE_TIME")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_flag("--validate", validate,
               "check the worker's task states after every event; a broken invariant stops the "
               "worker naming the task (slow: for debugging)")
      ->envname("TESSERA_WORKER_VALIDATE");
  app.add_option("--curve-key", curve_key,
                 "the cluster's key file (tessera-keys): encrypt every connection and admit "
                 "only peers that hold it")
      ->envname("TESSERA_CURVE_KEY_FILE");
  app.set_version_flag("--version", std::string("tessera-worker ") + TESSERA_VERSION);
  CLI11_PARSE(app, argc, argv);

  uint64_t limit = 0;
  tessera::Security security;
  std::vector<std::string> env;  // a nanny's workers': this process's, and BLAS limits
  try {
    if (!curve_key.empty()) security = tessera::Security::from_file(curve_key);
    if (scheduler.empty() && scheduler_file.empty())
      throw tessera::ValueError("give the scheduler's address or --scheduler-file");
    if (scheduler.empty()) scheduler = read_scheduler_file(scheduler_file);
    limit = tessera::distributed::parse_memory_limit(memory_limit);
    // --listen and --interface both say where to listen: one given here (flag or
    // environment) wins over the other from the config file; two given at one level clash.
    const bool listen_here = listen_flag->count() > 0, interface_here = interface_flag->count() > 0;
    if (listen_here != interface_here) (listen_here ? interface : listen).clear();
    if (!interface.empty() && !listen.empty()) {
      throw tessera::ValueError(listen_here ? "give --listen or --interface, not both"
                                            : "config: give worker.listen or worker.interface, "
                                              "not both");
    }
    if (!interface.empty())
      listen = fmt::format("tcp://{}:0", tessera::distributed::interface_ip(interface));
    if (nworkers > 1 && !contact.empty()) {
      throw tessera::ValueError(fmt::format(
          "--nworkers {} workers cannot share one --contact-address: start one tessera-worker "
          "per contact address",
          nworkers));
    }
    if (nworkers > 1 && !listen.empty() &&
        tessera::distributed::split_tcp_address(listen, "--listen").port != "0" &&
        tessera::distributed::split_tcp_address(listen, "--listen").port != "*") {
      throw tessera::ValueError(
          fmt::format("--nworkers {} workers cannot all listen on {}: give port 0 (any free one)",
                      nworkers, listen));
    }
    if (nanny) env = tessera::distributed::worker_environment();
  } catch (const std::exception& e) {
    spdlog::stderr_color_mt("worker")->error("{}", e.what());
    return 1;
  }
  if (nanny) {
    std::vector<std::string> child_args(argv, argv + argc);
    child_args.insert(child_args.end(), {"--no-nanny", "--nworkers", "1"});
    const std::string program = tessera::distributed::self_executable();
    return tessera::distributed::run_nanny(
        {.nworkers = nworkers,
         .name = name,
         .memory_limit = limit,
         .terminate = terminate,
         .spawn = [&](int, const std::string& child_name) {
           auto args = child_args;
           if (!child_name.empty()) args.insert(args.end(), {"--name", child_name});
           return tessera::distributed::spawn_child(program, args, env);
         }});
  }
  if (nworkers != 1) {
    spdlog::stderr_color_mt("worker")->error(
        "--nworkers {} needs the nanny, which starts them (drop --no-nanny)", nworkers);
    return 1;
  }
  return tessera::distributed::run_worker(
      {.scheduler = scheduler,
       .listen = listen,
       .contact = contact,
       .name = name,
       .nthreads = nthreads,
       .queue_time = tessera::distributed::seconds_to_micros(queue_time),
       .inline_time = tessera::distributed::seconds_to_micros(inline_time),
       .connect_timeout = std::chrono::milliseconds(static_cast<long>(connect_timeout * 1000)),
       .death_timeout = std::chrono::milliseconds(static_cast<long>(death_timeout * 1000)),
       .memory_limit = limit,
       .memory = fractions,
       .local_directory = local_directory,
       .spill_compression = spill_compression,
       .security = security,
       .validate = validate},
      preload);
}

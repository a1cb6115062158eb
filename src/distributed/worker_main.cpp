#include "distributed/worker_main.hpp"

#include "distributed/addresses.hpp"
#include "distributed/logging.hpp"
#include "distributed/nanny.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <thread>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"

namespace tessera {
namespace detail {
void set_worker_main(int (*main)(const std::string& scheduler));
}

namespace distributed {

namespace {

std::shared_ptr<spdlog::logger> worker_logger() {
  return logger("worker");
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

double env_number(const char* name, double fallback, double low, double high) {
  const std::string v = env(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (*end != '\0' || !(x >= low && x <= high)) {
    throw ValueError(fmt::format("{} must be a number in [{}, {}], got '{}'", name, low, high, v));
  }
  return x;
}

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<long>(s * 1000));
}

// Registered with core: tessera::init hands a worker-mode process to this.
[[maybe_unused]] const bool kHooked =
    (tessera::detail::set_worker_main(&run_worker_from_environment), true);

}  // namespace

int run_worker(const WorkerServer::Options& options, const std::vector<std::string>& preload) {
  auto log = worker_logger();
  try {
    for (const auto& lib : preload) {
      if (!dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL))
        throw IOError(fmt::format("--preload {}: {}", lib, dlerror()));
      log->info("loaded {}", lib);
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    WorkerServer worker(options);
    worker.start();
    log->info("serving {} with {} threads; data at {}; tiny tasks queued {} µs ahead, inline "
              "under {} µs{}",
              options.scheduler, options.nthreads, worker.data_address(),
              options.queue_time.count(), options.inline_time.count(),
              options.validate ? "; checking its task states after every event" : "");
    while (worker.running()) {
      timespec poll{0, 100'000'000};
      const int sig = sigtimedwait(&stop_signals, nullptr, &poll);
      if (sig > 0) {
        log->info("signal {}: stopping", sig);
        worker.stop();
        return 0;
      }
    }
    if (worker.removed()) {
      log->error("{}; exiting (code 4) so that a nanny starts a new worker", worker.stop_reason());
      return 4;
    }
    log->error("{}", worker.stop_reason());
    return 3;
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return 1;
  }
}

uint64_t parse_memory_limit(std::string_view text) {
  auto bad = [&] {
    return ValueError(
        fmt::format("memory limit: cannot read '{}' (give bytes, 4GiB, 500MB, a fraction "
                    "of this machine's memory like 0.5, or 0 for none)",
                    text));
  };
  std::string t(text);
  std::erase(t, ' ');
  if (t.empty()) throw bad();
  char* end = nullptr;
  const double x = std::strtod(t.c_str(), &end);
  if (end == t.c_str() || !(x >= 0) || !std::isfinite(x)) throw bad();
  std::string unit(end);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.empty()) {
    if (x > 0 && x < 1) {
      const double ram = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                         static_cast<double>(::sysconf(_SC_PAGESIZE));
      return static_cast<uint64_t>(x * ram);
    }
    if (x != std::floor(x)) throw bad();
    return static_cast<uint64_t>(x);
  }
  static const std::pair<const char*, double> units[] = {{"b", 1},
                                                         {"kb", 1e3},
                                                         {"mb", 1e6},
                                                         {"gb", 1e9},
                                                         {"tb", 1e12},
                                                         {"kib", 1024},
                                                         {"mib", 1048576.0},
                                                         {"gib", 1073741824.0},
                                                         {"tib", 1099511627776.0},
                                                         {"k", 1e3},
                                                         {"m", 1e6},
                                                         {"g", 1e9},
                                                         {"t", 1e12}};
  for (const auto& [name, scale] : units) {
    if (unit == name) return static_cast<uint64_t>(x * scale);
  }
  throw bad();
}

std::chrono::microseconds seconds_to_micros(double seconds) {
  return std::chrono::microseconds(std::llround(seconds * 1e6));
}

double micros_to_seconds(std::chrono::microseconds micros) {
  return std::chrono::duration<double>(micros).count();
}

int run_worker_from_environment(const std::string& scheduler) {
  WorkerServer::Options o;
  std::vector<std::string> preload;
  try {
    o.scheduler = scheduler;
    const unsigned hw = std::max(1U, std::thread::hardware_concurrency());
    o.nthreads = static_cast<int>(env_number("TESSERA_WORKER_NTHREADS", hw, 1, 4096));
    o.name = env("TESSERA_WORKER_NAME");
    o.listen = env("TESSERA_WORKER_LISTEN");
    o.contact = env("TESSERA_WORKER_CONTACT_ADDRESS");
    if (std::string interface = env("TESSERA_WORKER_INTERFACE"); !interface.empty()) {
      if (!o.listen.empty())
        throw ValueError("give TESSERA_WORKER_LISTEN or TESSERA_WORKER_INTERFACE, not both");
      o.listen = fmt::format("tcp://{}:0", interface_ip(interface));
    }
    o.death_timeout = seconds(env_number("TESSERA_WORKER_DEATH_TIMEOUT", 60, 0.001, 1e6));
    o.connect_timeout = seconds(env_number("TESSERA_WORKER_CONNECT_TIMEOUT", 10, 0.001, 1e6));
    if (std::string m = env("TESSERA_WORKER_MEMORY_LIMIT"); !m.empty())
      o.memory_limit = parse_memory_limit(m);
    o.local_directory = env("TESSERA_WORKER_LOCAL_DIRECTORY");
    o.memory.target = env_number("TESSERA_WORKER_MEMORY_TARGET", o.memory.target, 0, 1);
    o.memory.spill = env_number("TESSERA_WORKER_MEMORY_SPILL", o.memory.spill, 0, 1);
    o.memory.pause = env_number("TESSERA_WORKER_MEMORY_PAUSE", o.memory.pause, 0, 1);
    o.queue_time = seconds_to_micros(
        env_number("TESSERA_WORKER_QUEUE_TIME", micros_to_seconds(o.queue_time), 0, 1));
    o.inline_time = seconds_to_micros(
        env_number("TESSERA_WORKER_INLINE_TIME", micros_to_seconds(o.inline_time), 0, 1));
    o.validate = config::get_bool("worker.validate", false);  // TESSERA_WORKER_VALIDATE
    o.security = Security::from_environment();
    const std::string libs = env("TESSERA_WORKER_PRELOAD");
    for (size_t at = 0; at < libs.size();) {
      size_t end = libs.find(':', at);
      if (end == std::string::npos) end = libs.size();
      if (end > at) preload.push_back(libs.substr(at, end - at));
      at = end + 1;
    }
    const std::string nanny = env("TESSERA_WORKER_NANNY");
    if (nanny == "1" || nanny == "true") {
      NannyOptions n{
          .nworkers = static_cast<int>(env_number("TESSERA_WORKER_NWORKERS", 1, 1, 4096)),
          .name = o.name,
          .memory_limit = o.memory_limit,
          .terminate = env_number("TESSERA_WORKER_MEMORY_TERMINATE", 0.95, 0, 1),
          .spawn = {}};
      // The workers: this program again, its command line and environment, without a nanny.
      const std::string program = self_executable();
      const std::vector<std::string> args = self_command_line();
      std::vector<std::string> base =
          worker_environment({"TESSERA_WORKER_NANNY=", "TESSERA_WORKER_NAME="});
      base.push_back("TESSERA_WORKER_NANNY=0");
      n.spawn = [=](int, const std::string& name) {
        auto child_env = base;
        if (!name.empty()) child_env.push_back("TESSERA_WORKER_NAME=" + name);
        return spawn_child(program, args, child_env);
      };
      return run_nanny(n);
    }
    if (const double n = env_number("TESSERA_WORKER_NWORKERS", 1, 1, 4096); n != 1) {
      throw ValueError(
          fmt::format("TESSERA_WORKER_NWORKERS={} needs the nanny, which starts them "
                      "(TESSERA_WORKER_NANNY=1)",
                      n));
    }
  } catch (const std::exception& e) {
    worker_logger()->error("{}", e.what());
    return 1;
  }
  return run_worker(o, preload);
}

}  // namespace distributed
}  // namespace tessera

#include "tessera/distributed/local_cluster.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "distributed/logging.hpp"
#include "distributed/nanny.hpp"
#include "distributed/scheduler_server.hpp"
#include "distributed/worker_main.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

namespace detail {
bool init_called();
}

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string self_program() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

bool executable(const fs::path& p) {
  return !p.empty() && access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p);
}

// tessera-worker: next to this program, in the install prefix, in the build tree, on PATH.
std::string find_worker_program() {
  if (const char* env = std::getenv("TESSERA_WORKER_PROGRAM"); env && *env) return env;
  std::vector<fs::path> candidates;
  if (std::string self = self_program(); !self.empty()) {
    const fs::path dir = fs::path(self).parent_path();
    candidates.push_back(dir / "tessera-worker");
    candidates.push_back(dir / ".." / "bin" / "tessera-worker");
    candidates.push_back(dir / ".." / "tools" / "tessera-worker");
  }
#ifdef TESSERA_INSTALL_BINDIR
  candidates.push_back(fs::path(TESSERA_INSTALL_BINDIR) / "tessera-worker");
#endif
#ifdef TESSERA_BUILD_TOOLS_DIR
  candidates.push_back(fs::path(TESSERA_BUILD_TOOLS_DIR) / "tessera-worker");
#endif
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (!dir.empty()) candidates.push_back(fs::path(dir) / "tessera-worker");
    }
  }
  for (const auto& c : candidates) {
    if (executable(c)) return fs::weakly_canonical(c).string();
  }
  throw SchedulerError(
      "LocalCluster: cannot find the tessera-worker program (looked next to this program, in "
      "tessera's install prefix and on PATH); set TESSERA_WORKER_PROGRAM or "
      "LocalCluster::Options::worker_program, or call tessera::init(argc, argv) first in main() "
      "so that this program serves as its own worker");
}

std::string tail_of(const fs::path& log, size_t lines) {
  std::ifstream f(log);
  std::vector<std::string> all;
  for (std::string line; std::getline(f, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "\n  " + all[i];
  }
  return out.empty() ? std::string(" (its log is empty)") : out;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return "stopped";
}

}  // namespace

struct LocalCluster::Impl {
  struct Worker {
    pid_t pid = -1;
    fs::path log;
  };

  Options options;
  std::unique_ptr<distributed::SchedulerServer> scheduler;
  std::string program;
  bool self_mode = false;
  fs::path directory;
  std::vector<Worker> workers;
  int started = 0;
  mutable std::mutex mu;

  pid_t spawn(const fs::path& log) {
    std::vector<std::string> args{program};
    std::vector<std::string> env = distributed::worker_environment(
        {"TESSERA_RUN_WORKER=", "TESSERA_WORKER_", "TESSERA_CURVE_KEY_FILE="});
    // The cluster's key, from a file only this user can read (the cluster's directory).
    if (options.security.enabled())
      env.push_back("TESSERA_CURVE_KEY_FILE=" + (directory / "cluster.key").string());
    const std::string nthreads = std::to_string(options.threads_per_worker);
    const std::string death = fmt::format("{}", options.death_timeout.count() / 1000.0);
    const std::string name = fmt::format("local-worker-{}", started);
    // The configuration's worker.queue-time, worker.inline-time and worker.validate (this
    // process's TESSERA_WORKER_* variables are not passed on, so they are read here).
    const distributed::WorkerServer::Options defaults;
    const auto seconds = [&](const char* key, std::chrono::microseconds fallback) {
      return fmt::format("{}", config::get_number(key, distributed::micros_to_seconds(fallback)));
    };
    const std::string queue_time = seconds("worker.queue-time", defaults.queue_time);
    const std::string inline_time = seconds("worker.inline-time", defaults.inline_time);
    const bool validate = config::get_bool("worker.validate", false);
    if (self_mode) {
      if (validate) env.push_back("TESSERA_WORKER_VALIDATE=true");
      env.push_back("TESSERA_WORKER_QUEUE_TIME=" + queue_time);
      env.push_back("TESSERA_WORKER_INLINE_TIME=" + inline_time);
      env.push_back("TESSERA_RUN_WORKER=" + scheduler->address());
      env.push_back("TESSERA_WORKER_NTHREADS=" + nthreads);
      env.push_back("TESSERA_WORKER_DEATH_TIMEOUT=" + death);
      env.push_back("TESSERA_WORKER_NAME=" + name);
      std::string libs;
      for (const auto& p : options.preload) libs += (libs.empty() ? "" : ":") + p;
      if (!libs.empty()) env.push_back("TESSERA_WORKER_PRELOAD=" + libs);
      if (options.memory_limit > 0)
        env.push_back("TESSERA_WORKER_MEMORY_LIMIT=" + std::to_string(options.memory_limit));
      if (options.nanny) env.push_back("TESSERA_WORKER_NANNY=1");
    } else {
      args.insert(args.end(),
                  {scheduler->address(), "--nthreads", nthreads, "--death-timeout", death, "--name",
                   name, "--queue-time", queue_time, "--inline-time", inline_time});
      for (const auto& p : options.preload) args.insert(args.end(), {"--preload", p});
      if (options.memory_limit > 0)
        args.insert(args.end(), {"--memory-limit", std::to_string(options.memory_limit)});
      args.push_back(options.nanny ? "--nanny" : "--no-nanny");
      if (validate) args.push_back("--validate");
    }
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      throw SchedulerError(
          fmt::format("LocalCluster: cannot start '{}': {}", program, std::strerror(rc)));
    }
    ++started;
    return pid;
  }

  // Starts `n` workers and waits until the scheduler counts `expected` of them.
  void start_workers(int n, size_t expected) {
    std::vector<size_t> fresh;
    for (int i = 0; i < n; ++i) {
      const fs::path log = directory / fmt::format("worker-{}.log", started);
      const pid_t pid = spawn(log);
      fresh.push_back(workers.size());
      workers.push_back({pid, log});
    }
    const auto deadline = Clock::now() + options.start_timeout;
    while (scheduler->worker_count() < expected) {
      for (size_t i : fresh) {
        int status = 0;
        if (workers[i].pid > 0 && waitpid(workers[i].pid, &status, WNOHANG) == workers[i].pid) {
          workers[i].pid = -1;
          throw SchedulerError(
              fmt::format("LocalCluster: worker '{}' {} before connecting; its log:{}", program,
                          describe_exit(status), tail_of(workers[i].log, 10)));
        }
      }
      if (Clock::now() > deadline) {
        throw SchedulerError(fmt::format(
            "LocalCluster: {} of {} workers connected within {} ms; the last worker's log:{}",
            scheduler->worker_count(), expected, options.start_timeout.count(),
            tail_of(workers.back().log, 10)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void stop_workers() {
    std::vector<pid_t> pids;
    for (auto& w : workers) {
      pids.push_back(w.pid);
      w.pid = -1;
    }
    distributed::stop_children(pids, std::chrono::seconds(3));
  }

  void close() {
    stop_workers();
    if (scheduler) scheduler->stop();
    std::error_code ec;
    if (!directory.empty()) fs::remove_all(directory, ec);
  }
};

LocalCluster::LocalCluster(Options options) : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  if (options.n_workers < 0)
    throw ValueError(
        fmt::format("LocalCluster: n_workers must be 0 or more, not {}", options.n_workers));
  if (options.threads_per_worker < 1) {
    throw ValueError(fmt::format("LocalCluster: threads_per_worker must be at least 1, not {}",
                                 options.threads_per_worker));
  }
  m.options = std::move(options);
  // In a program of the user's, workers and clients coming and going are not news: the
  // scheduler's log shows warnings and errors only, unless the program registered its own
  // spdlog logger named "scheduler" first (tessera-scheduler logs them at info).
  if (!spdlog::get("scheduler")) distributed::logger("scheduler")->set_level(spdlog::level::warn);
  if (!m.options.worker_program.empty()) {
    m.program = m.options.worker_program;
  } else if (detail::init_called()) {
    m.program = self_program();
    m.self_mode = true;
  } else {
    m.program = find_worker_program();
  }
  // Read (and checked) before anything is made that would need cleaning up.
  const distributed::SchedulerState::Options state_options =
      distributed::state_options_from_config();
  std::string tmpl = (fs::temp_directory_path() / "tessera-cluster-XXXXXX").string();
  if (!mkdtemp(tmpl.data()))
    throw IOError(fmt::format("LocalCluster: cannot create a directory like '{}'", tmpl));
  m.directory = tmpl;
  if (m.options.security.enabled())
    m.options.security.write((m.directory / "cluster.key").string());
  distributed::SchedulerServer::Options so;
  so.address = m.options.scheduler_address;
  so.worker_timeout = m.options.worker_timeout;
  so.security = m.options.security;
  so.state = state_options;
  m.scheduler = std::make_unique<distributed::SchedulerServer>(so);
  m.scheduler->start();
  try {
    m.start_workers(m.options.n_workers, static_cast<size_t>(m.options.n_workers));
  } catch (...) {
    m.close();
    throw;
  }
}

LocalCluster::~LocalCluster() {
  close();
}

const std::string& LocalCluster::scheduler_address() const {
  return impl_->scheduler->address();
}

const std::string& LocalCluster::scheduler_local_address() const {
  return impl_->scheduler->local_address();
}

const Security& LocalCluster::security() const {
  return impl_->options.security;
}

size_t LocalCluster::worker_count() const {
  return impl_->scheduler->worker_count();
}

std::vector<int> LocalCluster::worker_pids() const {
  std::lock_guard lock(impl_->mu);
  std::vector<int> out;
  for (auto& w : impl_->workers) {
    if (w.pid > 0 && waitpid(w.pid, nullptr, WNOHANG) == w.pid) w.pid = -1;  // reaped
    if (w.pid > 0) out.push_back(w.pid);
  }
  return out;
}

void LocalCluster::add_worker() {
  std::lock_guard lock(impl_->mu);
  impl_->start_workers(1, impl_->scheduler->worker_count() + 1);
}

void LocalCluster::close() {
  std::lock_guard lock(impl_->mu);
  impl_->close();
}

}  // namespace tessera

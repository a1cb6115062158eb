#include "distributed/nanny.hpp"

#include <fmt/format.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "distributed/logging.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"

namespace tessera::distributed {

using Clock = std::chrono::steady_clock;

namespace {

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return "stopped";
}

struct Child {
  std::string name;
  pid_t pid = -1;
  bool killed_for_memory = false;
};

// Stops every live child (see stop_children).
void stop_all(std::vector<Child>& children, std::chrono::milliseconds grace) {
  std::vector<pid_t> pids;
  for (auto& c : children) {
    pids.push_back(c.pid);
    c.pid = -1;
  }
  stop_children(pids, grace);
}

}  // namespace

void stop_children(const std::vector<pid_t>& pids, std::chrono::milliseconds grace) {
  for (pid_t pid : pids) {
    if (pid > 0) kill(pid, SIGTERM);
  }
  const auto deadline = Clock::now() + grace;
  for (pid_t pid : pids) {
    while (pid > 0) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
      } else if (Clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        pid = -1;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }
}

void add_blas_thread_limits(std::vector<std::string>& env) {
  const double n = config::get_number("worker.blas-threads", 1);
  if (!(n >= 0 && n <= 1024 && n == static_cast<double>(static_cast<int>(n)))) {
    throw ValueError(fmt::format(
        "config: worker.blas-threads must be a whole number from 0 to 1024, not {}", n));
  }
  if (n == 0) return;
  for (const char* var : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}) {
    const std::string prefix = std::string(var) + "=";
    const bool set = std::any_of(env.begin(), env.end(),
                                 [&](const std::string& e) { return e.starts_with(prefix); });
    if (!set) env.push_back(prefix + std::to_string(static_cast<int>(n)));
  }
}

std::vector<std::string> worker_environment(std::initializer_list<std::string_view> dropped) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view v(*e);
    if (std::none_of(dropped.begin(), dropped.end(),
                     [&](std::string_view prefix) { return v.starts_with(prefix); }))
      env.emplace_back(v);
  }
  add_blas_thread_limits(env);
  return env;
}

uint64_t resident_bytes(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/statm", pid));
  uint64_t pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::string self_executable() {
  std::error_code ec;
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw IOError("cannot read /proc/self/exe (this program's path)");
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<std::string> self_command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(f, arg, '\0')) args.push_back(arg);
  return args;
}

pid_t spawn_child(const std::string& program, const std::vector<std::string>& args,
                  const std::vector<std::string>& env) {
  std::vector<std::string> a(args), e(env);
  std::vector<char*> argv, envp;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : e) envp.push_back(s.data());
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw IOError(fmt::format("cannot start '{}': {}", program, std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(3);  // the nanny died already
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(program.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

int run_nanny(const NannyOptions& options) {
  auto log = logger("nanny");
  if (options.nworkers < 1) {
    log->error("--nworkers must be at least 1, not {}", options.nworkers);
    return 1;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::vector<Child> children(static_cast<size_t>(options.nworkers));
  for (size_t i = 0; i < children.size(); ++i) {
    if (!options.name.empty())
      children[i].name = options.nworkers == 1 ? options.name : fmt::format("{}-{}", options.name, i);
  }
  auto start = [&](size_t i) {
    children[i].pid = options.spawn(static_cast<int>(i), children[i].name);
    children[i].killed_for_memory = false;
  };
  auto label = [&](size_t i) {
    return children[i].name.empty() ? fmt::format("{} (pid {})", i, children[i].pid)
                                     : fmt::format("'{}' (pid {})", children[i].name, children[i].pid);
  };
  try {
    for (size_t i = 0; i < children.size(); ++i) start(i);
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    stop_all(children, std::chrono::milliseconds(3000));
    return 1;
  }
  log->info("watching {} worker{}{}", children.size(), children.size() == 1 ? "" : "s",
            options.memory_limit > 0
                ? fmt::format(" (restarted past {:.0f} MiB each)",
                              options.terminate * static_cast<double>(options.memory_limit) /
                                  1048576.0)
                : std::string());
  const double terminate_bytes = options.terminate * static_cast<double>(options.memory_limit);
  while (true) {
    timespec wait{0, static_cast<long>(options.interval.count()) * 1'000'000};
    if (const int sig = sigtimedwait(&stop_signals, nullptr, &wait); sig > 0) {
      log->info("signal {}: stopping the workers", sig);
      stop_all(children, std::chrono::milliseconds(5000));
      return 0;
    }
    for (size_t i = 0; i < children.size(); ++i) {
      auto& c = children[i];
      int status = 0;
      if (c.pid <= 0 || waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
      const std::string who = label(i);
      c.pid = -1;
      if (c.killed_for_memory) {
        start(i);
        log->info("worker {} started in its place", label(i));
        continue;
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
        log->error("worker {} exited: its scheduler went silent; stopping", who);
        stop_all(children, std::chrono::milliseconds(5000));
        return 3;
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
        log->error("worker {} could not start (exit code 1; its log above says why); stopping",
                   who);
        stop_all(children, std::chrono::milliseconds(5000));
        return 1;
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log->info("worker {} stopped", who);
        bool any = false;
        for (const auto& other : children) any = any || other.pid > 0;
        if (!any) return 0;
        continue;
      }
      log->warn("worker {} {}; starting it again", who, describe_exit(status));
      try {
        start(i);
      } catch (const std::exception& e) {
        log->error("{}", e.what());
        stop_all(children, std::chrono::milliseconds(5000));
        return 1;
      }
    }
    if (options.memory_limit == 0) continue;
    for (size_t i = 0; i < children.size(); ++i) {
      auto& c = children[i];
      if (c.pid <= 0 || c.killed_for_memory) continue;
      const uint64_t rss = resident_bytes(c.pid);
      if (static_cast<double>(rss) <= terminate_bytes) continue;
      log->warn("worker {} uses {:.0f} MiB, past {:.0f}% of its {:.0f} MiB limit: restarting it",
                label(i), static_cast<double>(rss) / 1048576.0, options.terminate * 100,
                static_cast<double>(options.memory_limit) / 1048576.0);
      c.killed_for_memory = true;
      kill(c.pid, SIGKILL);
    }
  }
}

}  // namespace tessera::distributed

#include "tessera/core/init.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "tessera/core/error.hpp"
#include "tessera/core/scheduler.hpp"

namespace tessera {

namespace detail {
void set_default_num_workers(int n);

namespace {
using WorkerMain = int (*)(const std::string& scheduler);
std::atomic<WorkerMain> worker_main{nullptr};
std::atomic<bool> initialized{false};
}  // namespace

// The distributed layer's worker loop (set when it loads).
void set_worker_main(WorkerMain main) {
  worker_main = main;
}
// Whether main() called tessera::init (so this program can serve as a worker).
bool init_called() {
  return initialized.load();
}
}  // namespace detail

namespace {
// Runs this process as a worker of `scheduler` and exits with the worker's code.
[[noreturn]] void become_worker(const std::string& scheduler) {
  auto main = detail::worker_main.load();
  if (!main) {
    throw SchedulerError(
        "this program was started as a tessera worker, but tessera's distributed "
        "runtime is not loaded");
  }
  std::exit(main(scheduler));
}
}  // namespace

void init(int& argc, char** argv) {
  detail::initialized = true;
  if (const char* w = std::getenv("TESSERA_RUN_WORKER"); w && *w) become_worker(w);
  (void)default_scheduler();  // reads and validates the TESSERA_* environment
  (void)default_num_workers();
  int out = argc > 0 ? 1 : 0;
  for (int i = out; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (!arg.starts_with("--tessera-")) {
      argv[out++] = argv[i];
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string_view flag = arg.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : arg.substr(eq + 1);
    if (flag == "--tessera-worker" && !value.empty()) {
      become_worker(std::string(value));
    } else if (flag == "--tessera-scheduler" && !value.empty()) {
      set_default_scheduler(std::string(value));
    } else if (flag == "--tessera-num-workers" && !value.empty()) {
      const std::string v(value);
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 4096) {
        throw ValueError(
            fmt::format("--tessera-num-workers must be a positive integer, got '{}'", v));
      }
      detail::set_default_num_workers(static_cast<int>(n));
    } else {
      throw ValueError(
          fmt::format("unknown or incomplete tessera flag '{}' (known: --tessera-scheduler=NAME, "
                      "--tessera-num-workers=N, --tessera-worker=ADDRESS)",
                      arg));
    }
  }
  if (argc > 0) {
    argc = out;
    argv[argc] = nullptr;
  }
}

}  // namespace tessera

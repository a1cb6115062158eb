#include "tessera/core/init.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "tessera/core/error.hpp"
#include "tessera/core/scheduler.hpp"

namespace tessera {

namespace detail {
void set_default_num_workers(int n);
}

void init(int& argc, char** argv) {
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
    if (flag == "--tessera-scheduler" && !value.empty()) {
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
                      "--tessera-num-workers=N)",
                      arg));
    }
  }
  if (argc > 0) {
    argc = out;
    argv[argc] = nullptr;
  }
}

}  // namespace tessera

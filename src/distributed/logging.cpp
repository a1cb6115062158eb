#include "distributed/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace tessera::distributed {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  if (auto log = spdlog::get(name)) return log;
  try {
    return spdlog::stderr_color_mt(name);
  } catch (const spdlog::spdlog_ex&) {
    return spdlog::get(name);  // made by another thread meanwhile
  }
}

}  // namespace tessera::distributed

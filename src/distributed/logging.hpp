// The runtime's spdlog loggers: "scheduler", "worker", "nanny" and "client" (as Dask names
// its own), made on first use and writing to stderr unless a program registered its own.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace tessera::distributed {

std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace tessera::distributed

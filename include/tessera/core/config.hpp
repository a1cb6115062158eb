// File: tessera/core/config.hpp — configuration (Dask's dask.config): every default of the
// runtime's programs and options read from, in this order of precedence,
//   1. set() in this process (tests, embedding programs),
//   2. the environment: key "worker.memory-limit" is TESSERA_WORKER_MEMORY_LIMIT,
//   3. the config files: the ':'-separated paths in TESSERA_CONFIG if set, else
//      ~/.config/tessera/tessera.toml then /etc/tessera/tessera.toml (an earlier file wins),
//   4. the built-in default the caller gives.
// Command-line flags of tessera-scheduler and tessera-worker override all of these.
//
// The files are a small part of TOML: [sections], `key = value` with a quoted string, a
// number or true/false, and # comments.
//
//   # ~/.config/tessera/tessera.toml
//   [scheduler]
//   address = "tcp://10.0.0.1:8786"
//   worker-timeout = 20          # seconds
//   [worker]
//   nthreads = 4
//   memory-limit = "8GiB"
//   [client]
//   scheduler-timeout = 60       # seconds
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::config {

// The value of `key` ("section.name"), or nullopt. ValueError naming file:line if a config
// file is malformed (read once, on first use).
std::optional<std::string> get(std::string_view key);

// Typed reads with the built-in default; ValueError naming the key and where its value came
// from if it is not of the type.
std::string get_string(std::string_view key, std::string_view fallback);
double get_number(std::string_view key, double fallback);
bool get_bool(std::string_view key, bool fallback);
// A number of seconds, as milliseconds.
std::chrono::milliseconds get_seconds(std::string_view key, double fallback_seconds);

// Overrides `key` in this process (empty optional: removes the override).
void set(std::string_view key, std::optional<std::string> value);

// Reads these files instead of the default ones (':'-separated, an earlier one wins; what
// tessera-scheduler --config FILE does); ValueError naming file:line if one is malformed,
// IOError if one cannot be read.
void load_files(std::string_view paths);

// The environment variable of `key`: "worker.memory-limit" -> "TESSERA_WORKER_MEMORY_LIMIT".
std::string environment_name(std::string_view key);

}  // namespace tessera::config

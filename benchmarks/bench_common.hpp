// Shared by the benchmark programs: JSON-line output and memory readings.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

namespace bench {

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Resident and peak resident set size of this process, in bytes (/proc/self/status).
inline long long status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(f, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(prefix.size())) * 1024;
  }
  return 0;
}
inline long long rss_bytes() {
  return status_bytes("VmRSS");
}
inline long long peak_rss_bytes() {
  return status_bytes("VmHWM");
}

// Resets the peak RSS mark (Linux: writing 5 to clear_refs), so the peak measures one phase.
inline void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// One result line: {"bench": ..., "impl": ..., "params": {...}, "value": ..., "unit": ...}.
inline void emit(const std::string& bench, const std::string& impl, const std::string& params_json,
                 double value, const std::string& unit) {
  std::printf(
      "{\"bench\": \"%s\", \"impl\": \"%s\", \"params\": %s, \"value\": %.6g, \"unit\": \"%s\"}\n",
      bench.c_str(), impl.c_str(), params_json.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

}  // namespace bench

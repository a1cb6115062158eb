// Helpers shared by the test suites.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tessera/core.hpp"

namespace tessera::testing {

// Waits until `ok()` holds, looking every 2 ms; false if `limit` passes first.
template <class F>
bool eventually(F&& ok, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ok()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// A process's environment, "NAME=value" each, from /proc/PID/environ.
std::vector<std::string> environment_of(int pid);

// Runs `fn` and returns the message of the exception of type E it throws (fails if none).
template <class E, class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected another exception type, got: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::mt19937_64 rng(std::random_device{}());
    path_ = std::filesystem::temp_directory_path() / ("tessera-test-" + std::to_string(rng()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Connects to 127.0.0.1:`port` over plain TCP, writes `bytes` and hangs up (hostile-peer
// tests: bytes that are not even ZeroMQ's greeting); false if it could not connect or write.
bool send_raw_tcp(int port, std::string_view bytes);

// A random DAG: task i depends on up to `max_fan_in` earlier tasks; every task computes a
// deterministic mix of its inputs, so any scheduler must reproduce the sync results.
struct RandomDag {
  Graph graph;
  std::vector<Key> sinks;
  std::vector<Key> all;
};
RandomDag random_dag(uint64_t seed, size_t n, size_t max_fan_in, double literal_fraction = 0.1);

// The expected values of every task of a random DAG, computed directly.
std::vector<int64_t> random_dag_expected(const RandomDag& dag);

}  // namespace tessera::testing

// Ops for the multi-process tests: linked into the test program (the client) and loaded by
// the worker processes with --preload.
#include "test_ops.hpp"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include "tessera/core/op.hpp"

int64_t ptest_slow_inc(int64_t x, int64_t sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  return x + 1;
}
TESSERA_REGISTER(ptest_slow_inc);

int64_t ptest_nap_inc(int64_t x, int64_t sleep_us) {
  std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
  return x + 1;
}
TESSERA_REGISTER(ptest_nap_inc);

int64_t ptest_inc(int64_t x) {
  return x + 1;
}
TESSERA_REGISTER(ptest_inc);

int64_t ptest_add(int64_t x, int64_t y) {
  return x + y;
}
TESSERA_REGISTER(ptest_add);

int64_t ptest_fail(std::string why) {
  throw std::domain_error("ptest_fail: " + why);
}
TESSERA_REGISTER(ptest_fail);

int64_t ptest_sum(const std::vector<int64_t>& xs) {
  return std::accumulate(xs.begin(), xs.end(), int64_t{0});
}
TESSERA_REGISTER(ptest_sum);

double ptest_total(const std::vector<double>& xs) {
  return std::accumulate(xs.begin(), xs.end(), 0.0);
}
TESSERA_REGISTER(ptest_total);

int64_t ptest_touch(std::string path, int64_t sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  std::ofstream(path, std::ios::app) << "touched\n";
  return 1;
}
TESSERA_REGISTER(ptest_touch);

std::vector<double> ptest_block(int64_t seed, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), static_cast<double>(seed));
  return v;
}
TESSERA_REGISTER(ptest_block);

int64_t ptest_hog(int64_t mib, int64_t hold_ms) {
  std::vector<char> memory(static_cast<size_t>(mib) << 20);
  for (size_t i = 0; i < memory.size(); i += 4096) memory[i] = 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  return static_cast<int64_t>(memory[4096] != 0) * mib;
}
TESSERA_REGISTER(ptest_hog);

double ptest_slow_total(const std::vector<double>& xs, int64_t sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  double s = 0;
  for (double x : xs) s += x;
  return s;
}
TESSERA_REGISTER(ptest_slow_total);

namespace {
std::atomic<int> probes_running{0}, probes_most{0}, probes_on_loop{0}, long_probes_on_loop{0};
}  // namespace

int64_t ptest_probe(int64_t x, int64_t busy_us) {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  if (std::string_view(name) == "tsr-worker") {  // a worker's loop thread
    probes_on_loop.fetch_add(1);
    if (busy_us >= 1000) long_probes_on_loop.fetch_add(1);
  }
  const int now = probes_running.fetch_add(1) + 1;
  int most = probes_most.load();
  while (now > most && !probes_most.compare_exchange_weak(most, now)) {
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(busy_us);
  while (std::chrono::steady_clock::now() < until) {
  }
  probes_running.fetch_sub(1);
  return x + 1;
}
TESSERA_REGISTER(ptest_probe);

int ptest_probe_most_at_once() {
  return probes_most.load();
}

int ptest_probes_on_loop() {
  return probes_on_loop.load();
}

int ptest_long_probes_on_loop() {
  return long_probes_on_loop.load();
}

void ptest_probe_reset() {
  probes_most.store(0);
  probes_on_loop.store(0);
  long_probes_on_loop.store(0);
}

namespace {
std::mutex& ptest_state_mu() {
  static std::mutex mu;
  return mu;
}
std::map<int64_t, int64_t>& ptest_flaky_calls() {
  static std::map<int64_t, int64_t> calls;
  return calls;
}
std::vector<int64_t>& ptest_recorded() {
  static std::vector<int64_t> record;
  return record;
}
}  // namespace

int64_t ptest_flaky(int64_t x, int64_t failures) {
  int64_t call = 0;
  {
    std::lock_guard lock(ptest_state_mu());
    call = ++ptest_flaky_calls()[x];
  }
  if (call <= failures)
    throw std::runtime_error("ptest_flaky: call " + std::to_string(call) + " of " +
                             std::to_string(x) + " failed");
  return x + 1;
}
TESSERA_REGISTER(ptest_flaky);

int64_t ptest_record(int64_t x, int64_t sleep_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  std::lock_guard lock(ptest_state_mu());
  ptest_recorded().push_back(x);
  return x;
}
TESSERA_REGISTER(ptest_record);

std::vector<int64_t> ptest_take_record() {
  std::lock_guard lock(ptest_state_mu());
  return std::exchange(ptest_recorded(), {});
}

void ptest_flaky_reset() {
  std::lock_guard lock(ptest_state_mu());
  ptest_flaky_calls().clear();
}

namespace {
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
};
Gate& ptest_gate() {
  static Gate gate;
  return gate;
}
}  // namespace

int64_t ptest_wait_gate(int64_t x) {
  Gate& g = ptest_gate();
  std::unique_lock lock(g.mu);
  g.cv.wait(lock, [&] { return g.open; });
  return x;
}
TESSERA_REGISTER(ptest_wait_gate);

void ptest_open_gate() {
  Gate& g = ptest_gate();
  std::lock_guard lock(g.mu);
  g.open = true;
  g.cv.notify_all();
}

void ptest_close_gate() {
  Gate& g = ptest_gate();
  std::lock_guard lock(g.mu);
  g.open = false;
}

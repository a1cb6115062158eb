// Ops used by the local scheduler tests.
#include "local/local_ops.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "tessera/core/op.hpp"

namespace localtest {

std::atomic<int64_t> Tracked::live{0};
std::atomic<int64_t> Tracked::peak{0};
std::atomic<int64_t> calls{0};

Tracked::Tracked(int64_t v) : value(v) {
  note(++live);
}
Tracked::Tracked(const Tracked& o) : value(o.value) {
  note(++live);
}
Tracked::~Tracked() {
  --live;
}
void Tracked::note(int64_t now) {
  int64_t p = peak.load();
  while (now > p && !peak.compare_exchange_weak(p, now)) {
  }
}
void Tracked::reset() {
  live = 0;
  peak = 0;
}

int64_t inc(int64_t x) {
  ++calls;
  return x + 1;
}
int64_t add(int64_t x, int64_t y) {
  return x + y;
}
int64_t fail_if(int64_t x, int64_t bad) {
  if (x == bad) throw std::runtime_error("bad value " + std::to_string(x));
  return x;
}
int64_t slow_inc(int64_t x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return inc(x);
}
namespace {
std::mutex flaky_mu;
std::map<int64_t, int64_t> flaky_calls;
}  // namespace
int64_t flaky(int64_t x, int64_t failures) {
  std::lock_guard lock(flaky_mu);
  const int64_t call = ++flaky_calls[x];
  if (call <= failures)
    throw std::runtime_error("flaky: call " + std::to_string(call) + " of " + std::to_string(x));
  return x;
}
void flaky_reset() {
  std::lock_guard lock(flaky_mu);
  flaky_calls.clear();
}

Tracked make_tracked(int64_t v) {
  return Tracked(v);
}
Tracked add_tracked(const Tracked& a, const Tracked& b) {
  return Tracked(a.value + b.value);
}
int64_t unwrap(const Tracked& t) {
  return t.value;
}
std::string to_text(int64_t x) {
  return std::to_string(x);
}
int64_t nested_compute(int64_t x) {
  // A task that itself computes a graph (on the default scheduler).
  tessera::Graph g;
  g.add(tessera::Key("inner"), tessera::Task::literal(tessera::Value::of(x)));
  g.add(tessera::Key("inner2"),
        tessera::Task::call("localtest::inc", {tessera::Arg::ref(tessera::Key("inner"))}));
  return tessera::get(g, std::vector<tessera::Key>{tessera::Key("inner2")})[0].get<int64_t>();
}

}  // namespace localtest

TESSERA_REGISTER(localtest::inc);
TESSERA_REGISTER(localtest::add);
TESSERA_REGISTER(localtest::fail_if);
TESSERA_REGISTER(localtest::flaky);
TESSERA_REGISTER(localtest::slow_inc);
TESSERA_REGISTER(localtest::make_tracked);
TESSERA_REGISTER(localtest::add_tracked);
TESSERA_REGISTER(localtest::unwrap);
TESSERA_REGISTER(localtest::to_text);
TESSERA_REGISTER(localtest::nested_compute);

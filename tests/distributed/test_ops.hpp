// Ops for the distributed tests, in a shared library (tessera_test_ops) that the test
// program links and worker processes load with --preload.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

// x + 1, after `sleep_ms` (so that a worker can be killed while tasks run).
int64_t ptest_slow_inc(int64_t x, int64_t sleep_ms);
int64_t ptest_nap_inc(int64_t x, int64_t sleep_us);  // sleeps microseconds
int64_t ptest_inc(int64_t x);
int64_t ptest_add(int64_t x, int64_t y);
// Throws std::domain_error("ptest_fail: <why>").
int64_t ptest_fail(std::string why);
int64_t ptest_sum(const std::vector<int64_t>& xs);
double ptest_total(const std::vector<double>& xs);
// Appends a line to `path` (a side effect, for fire_and_forget).
int64_t ptest_touch(std::string path, int64_t sleep_ms);
// n doubles: seed, seed + 1, …
std::vector<double> ptest_block(int64_t seed, int64_t n);
// Holds `mib` MiB of touched memory for `hold_ms`, then returns mib (a task that outgrows
// its worker, for the nanny).
int64_t ptest_hog(int64_t mib, int64_t hold_ms);
// The sum of xs, after `sleep_ms`.
double ptest_slow_total(const std::vector<double>& xs, int64_t sleep_ms);
// x + 1, after `busy_us` of busy waiting (a task of known length), counting how many
// ptest_probe calls run at once in this process.
int64_t ptest_probe(int64_t x, int64_t busy_us);
// The most ptest_probe calls seen running at once since the last reset.
int ptest_probe_most_at_once();
// How many ran on a worker's loop thread (named tsr-worker), and how many of those were
// busy for 1 ms or more.
int ptest_probes_on_loop();
int ptest_long_probes_on_loop();
void ptest_probe_reset();
// Fails (std::runtime_error "ptest_flaky: call N of X failed") the first `failures` calls
// with this x in this process, then returns x + 1: a task that succeeds on a retry.
int64_t ptest_flaky(int64_t x, int64_t failures);
// Appends x to this process's record (the order tasks ran in), after `sleep_ms`; returns x.
int64_t ptest_record(int64_t x, int64_t sleep_ms);
// The record so far, and empties it.
std::vector<int64_t> ptest_take_record();
// Forgets every ptest_flaky call count (a test's first call of each x fails again).
void ptest_flaky_reset();
// Blocks until ptest_open_gate() (in this process), then returns x; ptest_close_gate()
// closes it again.
int64_t ptest_wait_gate(int64_t x);
void ptest_open_gate();
void ptest_close_gate();

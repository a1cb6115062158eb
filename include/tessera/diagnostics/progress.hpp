// File: tessera/diagnostics/progress.hpp
//
// A progress bar on stderr for every computation while it is in scope, like dask's:
//
//   { tessera::ProgressBar progress; b.compute(); }
//   [########################################] | 100% Completed |  0.2s
//
// It is drawn when the output is a terminal (or when forced), redrawn at most 10 times a
// second by its own thread, and costs the workers one atomic increment per task. One
// computation is shown at a time: one started while another is shown is not drawn.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "tessera/core/callbacks.hpp"

namespace tessera {

struct ProgressBarOptions {
  double minimum = 0.0;      // seconds a computation must run before the bar appears
  int width = 40;            // characters of bar
  double dt = 0.1;           // seconds between redraws (at least 0.1)
  bool force = false;        // draw even when the output is not a terminal
  std::FILE* out = nullptr;  // where to draw; stderr by default
};

// Shows the progress of every computation while it exists.
class ProgressBar final : public Callback {
 public:
  explicit ProgressBar(ProgressBarOptions options = {});
  ~ProgressBar() override;

  // Seconds the last computation took.
  double last_elapsed() const noexcept { return last_elapsed_.load(); }
  // The line last drawn (without the carriage return), for tests.
  std::string last_line() const;

  void on_start(const RunInfo& run) override;
  void on_posttask(const TaskEvent& task, const Value& result) override;
  void on_finish(const RunInfo& run, bool failed) override;

 private:
  void draw(bool final);
  void redraw_loop();

  ProgressBarOptions options_;
  bool enabled_ = false;
  std::atomic<size_t> done_{0};
  size_t total_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::atomic<double> last_elapsed_{0.0};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool running_ = false;
  const RunInfo* run_ = nullptr;  // the computation shown (one at a time)
  bool shown_ = false;
  std::string last_line_;
  std::thread thread_;
};

}  // namespace tessera

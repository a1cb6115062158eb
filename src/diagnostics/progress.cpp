#include "tessera/diagnostics/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include "core/thread_name.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

ProgressBar::ProgressBar(ProgressBarOptions options) : options_(options) {
  if (!options_.out) options_.out = stderr;
  if (options_.width < 1)
    throw ValueError(fmt::format("ProgressBar width must be positive, got {}", options_.width));
  options_.dt = std::max(options_.dt, 0.1);
  enabled_ = options_.force || isatty(fileno(options_.out));
  activate();
}

ProgressBar::~ProgressBar() {
  deactivate();
  std::unique_lock lock(mutex_);
  running_ = false;
  cv_.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
}

std::string ProgressBar::last_line() const {
  std::lock_guard lock(mutex_);
  return last_line_;
}

void ProgressBar::on_start(const RunInfo& run) {
  std::unique_lock lock(mutex_);
  if (running_) return;  // one bar at a time: a concurrent computation is not shown
  run_ = &run;
  done_ = 0;
  total_ = run.num_tasks;
  start_ = std::chrono::steady_clock::now();
  running_ = true;
  shown_ = false;
  lock.unlock();
  if (thread_.joinable()) thread_.join();
  if (enabled_)
    thread_ = std::thread([this] {
      tessera::detail::name_this_thread("tsr-progress");
      redraw_loop();
    });
}

void ProgressBar::on_posttask(const TaskEvent&, const Value&) {
  done_.fetch_add(1, std::memory_order_relaxed);
}

void ProgressBar::on_finish(const RunInfo& run, bool failed) {
  std::unique_lock lock(mutex_);
  if (!running_ || &run != run_) return;
  running_ = false;
  last_elapsed_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  cv_.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
  if (enabled_ && last_elapsed_ >= options_.minimum) draw(true);
}

void ProgressBar::redraw_loop() {
  std::unique_lock lock(mutex_);
  while (running_) {
    cv_.wait_for(lock, std::chrono::duration<double>(options_.dt), [&] { return !running_; });
    if (!running_) break;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (elapsed < options_.minimum) continue;
    lock.unlock();
    draw(false);
    lock.lock();
  }
}

void ProgressBar::draw(bool final) {
  const size_t done = std::min(done_.load(std::memory_order_relaxed), total_);
  const double frac = total_ == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total_);
  const double elapsed =
      final ? last_elapsed_.load()
            : std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int filled = static_cast<int>(options_.width * frac);
  std::string line = fmt::format("[{:<{}}] | {:3d}% Completed | {:4.1f}s",
                                 std::string(static_cast<size_t>(filled), '#'), options_.width,
                                 static_cast<int>(100 * frac), elapsed);
  {
    std::lock_guard lock(mutex_);
    last_line_ = line;
    shown_ = true;
  }
  std::fputc('\r', options_.out);
  std::fputs(line.c_str(), options_.out);
  if (final) std::fputc('\n', options_.out);
  std::fflush(options_.out);
}

}  // namespace tessera

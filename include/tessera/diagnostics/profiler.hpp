// File: tessera/diagnostics/profiler.hpp
//
// Records when every task ran and on which worker, while it exists:
//
//   tessera::Profiler prof;
//   b.compute();
//   prof.write_chrome_trace("trace.json");   // open in https://ui.perfetto.dev
//   prof.write_html("stream.html");          // self-contained task stream, one row per worker
//   for (const auto& r : prof.results()) std::cout << r.key << " " << r.end - r.start << "\n";
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include "tessera/core/callbacks.hpp"

namespace tessera {

// One task execution.
struct TaskRecord {
  std::string key;
  std::string op;
  double start = 0;  // seconds since the profiler was created
  double end = 0;
  int worker = 0;
};

// Records every task of every computation while it exists.
class Profiler final : public Callback {
 public:
  Profiler();
  ~Profiler() override;

  // The records so far, ordered by start time.
  std::vector<TaskRecord> results() const;
  // Forgets the records so far.
  void clear();
  // Chrome trace-event JSON (Perfetto, chrome://tracing).
  void write_chrome_trace(const std::string& path) const;
  // A self-contained HTML page: the task stream, one row per worker, colored by op.
  void write_html(const std::string& path, const std::string& title = "tessera task stream") const;

  void on_pretask(const TaskEvent& task) override;
  void on_posttask(const TaskEvent& task, const Value& result) override;

 private:
  struct Raw {
    Key key;
    std::string op;
    int64_t start_ns, end_ns;
    int worker;
  };
  struct alignas(64) Slot {
    std::mutex mutex;
    std::vector<Raw> records;
  };
  static constexpr size_t kSlots = 64;

  std::chrono::steady_clock::time_point origin_;
  std::array<Slot, kSlots> slots_;
};

}  // namespace tessera

// File: tessera/core/callbacks.hpp
//
// Hooks into every computation, like dask.callbacks: start, before each task, after each
// task, finish. A callback observes every computation while it is active (ProgressBar and
// Profiler activate themselves for their lifetime), or only those whose ComputeOptions list
// it. With no callback active a scheduler pays one branch per task.
//
//   struct Counter : tessera::Callback {
//     std::atomic<int> n{0};
//     Counter() { activate(); }
//     ~Counter() override { deactivate(); }
//     void on_posttask(const tessera::TaskEvent&, const tessera::Value&) override { ++n; }
//   };
//
// on_pretask and on_posttask run on the worker threads, concurrently: make them thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera {

// What a computation is about to run.
struct RunInfo {
  const Graph* graph = nullptr;  // the graph as scheduled (after optimization)
  std::span<const Key> outputs;
  size_t num_tasks = 0;  // tasks that will run
  std::string_view scheduler;
  int num_workers = 1;
};

// One task, as seen by pretask/posttask.
struct TaskEvent {
  const Key& key;
  const Task& task;
  size_t index;  // position in RunInfo::graph
  int worker;    // 0 .. num_workers-1
};

// Base class of computation observers.
class Callback {
 public:
  Callback() = default;
  Callback(const Callback&) = delete;
  Callback& operator=(const Callback&) = delete;
  virtual ~Callback();

  // Observe every computation from now on (until deactivate()).
  void activate();
  // Stop observing; waits until no running computation still uses this callback. Derived
  // classes call it in their destructor, before their members go away.
  void deactivate();
  bool active() const noexcept { return active_.load(); }

  virtual void on_start(const RunInfo& run) {}
  virtual void on_pretask(const TaskEvent& task) {}
  virtual void on_posttask(const TaskEvent& task, const Value& result) {}
  virtual void on_finish(const RunInfo& run, bool failed) {}

 private:
  friend class CallbackSet;
  std::atomic<bool> active_{false};
  std::atomic<int> users_{0};
};

// The callbacks one computation notifies: the active ones plus those passed in its options,
// held (so they cannot be deactivated underneath it) until this set is destroyed.
class CallbackSet {
 public:
  explicit CallbackSet(std::span<Callback* const> extra = {});
  ~CallbackSet();
  CallbackSet(const CallbackSet&) = delete;
  CallbackSet& operator=(const CallbackSet&) = delete;

  bool empty() const noexcept { return callbacks_.empty(); }
  void start(const RunInfo& run) const;
  void pretask(const TaskEvent& t) const {
    for (Callback* c : callbacks_) c->on_pretask(t);
  }
  void posttask(const TaskEvent& t, const Value& v) const {
    for (Callback* c : callbacks_) c->on_posttask(t, v);
  }
  void finish(const RunInfo& run, bool failed) const;

 private:
  std::vector<Callback*> callbacks_;
  std::vector<Callback*> held_;
};

}  // namespace tessera

// The distributed scheduler past this machine, by simulation: its state machine driven
// in-process by stub workers through a large graph (N independent tasks summed by a tree
// of fan-in 4). Each stub worker runs what it is given in order and reports it finished at
// once, so the time measured is the scheduler's own: every event handled, every action
// produced (placement, queueing of root tasks, releasing intermediates).
//
//   tessera-bench-scale --tasks 1000000 --workers 1000 [--nthreads 2]
//
// Prints scale.scheduler_time (µs per task) and scale.scheduler_memory (bytes of heap the
// state holds per task, at its largest: right after the graph arrives).
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "distributed/scheduler_state.hpp"

namespace td = tessera::distributed;

namespace {

size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

struct Options {
  long tasks = 1000000;
  int workers = 100;
  int nthreads = 2;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--tasks") {
      o.tasks = std::atol(v);
    } else if (a == "--workers") {
      o.workers = std::atoi(v);
    } else if (a == "--nthreads") {
      o.nthreads = std::atoi(v);
    } else {
      std::fprintf(stderr, "usage: tessera-bench-scale --tasks N --workers W [--nthreads T]\n");
      std::exit(2);
    }
  }
  return o;
}

// N leaves and a sum tree of fan-in 4 over them, about `total` tasks in all; priorities in
// the order a depth-first static ordering gives (each group of four leaves, then its sum).
std::vector<td::TaskSpec> tree_graph(long total, tessera::Key& root) {
  const long leaves = std::max<long>(4, total * 3 / 4);
  std::vector<td::TaskSpec> specs;
  specs.reserve(static_cast<size_t>(total + 64));
  std::vector<tessera::Key> level;
  level.reserve(static_cast<size_t>(leaves));
  for (long i = 0; i < leaves; ++i) {
    tessera::Key k("leaf-0f3a", {i});
    specs.push_back({k, {}, static_cast<uint64_t>(i), nullptr});
    level.push_back(k);
  }
  int depth = 0;
  while (level.size() > 1) {
    ++depth;
    std::vector<tessera::Key> next;
    for (size_t i = 0; i < level.size(); i += 4) {
      tessera::Key k("sum-" + std::to_string(depth), {static_cast<int64_t>(i / 4)});
      td::TaskSpec s{k, {}, 0, nullptr};
      for (size_t j = i; j < std::min(level.size(), i + 4); ++j) s.dependencies.push_back(level[j]);
      // Right after its last input in the leaves' order.
      s.priority = static_cast<uint64_t>(std::min(level.size(), i + 4)) << depth;
      specs.push_back(std::move(s));
      next.push_back(k);
    }
    level = std::move(next);
  }
  root = level[0];
  return specs;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  tessera::Key root;
  std::vector<td::TaskSpec> specs = tree_graph(o.tasks, root);
  const auto n = static_cast<double>(specs.size());

  td::SchedulerState s;
  std::vector<td::Action> out;
  std::vector<std::deque<tessera::Key>> todo(static_cast<size_t>(o.workers) + 1);
  for (int w = 1; w <= o.workers; ++w) s.handle(td::AddWorker{static_cast<td::WorkerId>(w), o.nthreads}, out);
  out.clear();

  // The event is built (and later destroyed) outside the timed region: that is the
  // client's and the network's work.
  auto event = std::make_unique<td::Event>(td::UpdateGraph{1, std::move(specs), {root}});
  const size_t heap_before = heap_in_use();
  const double t0 = bench::now();
  s.handle(*event, out);
  const double t_update = bench::now() - t0;
  size_t heap_peak = heap_in_use();
  event.reset();

  // Stub workers: take assigned tasks in order, finish them at once, round robin over the
  // workers that have work. Only the time inside handle() is counted.
  size_t finished = 0, frees = 0;
  bool done = false;
  std::vector<td::Action> next;
  std::vector<int> busy;
  std::vector<char> listed(static_cast<size_t>(o.workers) + 1, 0);
  double t_run = 0;
  // Hands actions to the stub workers as soon as they come (as the network shell would).
  auto dispatch = [&](std::vector<td::Action>& actions) -> bool {
    for (auto& a : actions) {
      if (auto* c = std::get_if<td::ComputeTask>(&a)) {
        todo[c->worker].push_back(std::move(c->key));
        if (!listed[c->worker]) {
          listed[c->worker] = 1;
          busy.push_back(static_cast<int>(c->worker));
        }
      } else if (auto* f = std::get_if<td::FreeKeys>(&a)) {
        frees += f->keys.size();
      } else if (auto* m = std::get_if<td::ReportMemory>(&a)) {
        done = m->key == root;
      } else {
        std::fprintf(stderr, "unexpected action %zu\n", a.index());
        return false;
      }
    }
    actions.clear();
    return true;
  };
  if (!dispatch(out)) return 1;
  while (!done) {
    if (busy.empty()) {
      std::fprintf(stderr, "stalled after %zu of %.0f tasks\n", finished, n);
      return 1;
    }
    std::vector<int> round;
    round.swap(busy);
    for (int w : round) {
      auto& q = todo[static_cast<size_t>(w)];
      tessera::Key k = std::move(q.front());
      q.pop_front();
      listed[static_cast<size_t>(w)] = 0;
      const double t = bench::now();
      s.handle(td::TaskFinished{static_cast<td::WorkerId>(w), std::move(k), 8, 0.001}, next);
      t_run += bench::now() - t;
      if (++finished % 262144 == 0) heap_peak = std::max(heap_peak, heap_in_use());
      if (!dispatch(next)) return 1;
      if (!q.empty() && !listed[static_cast<size_t>(w)]) {
        listed[static_cast<size_t>(w)] = 1;
        busy.push_back(w);
      }
    }
  }
  const std::string params = "{\"tasks\": " + std::to_string(static_cast<long>(n)) +
                             ", \"workers\": " + std::to_string(o.workers) +
                             ", \"nthreads\": " + std::to_string(o.nthreads) +
                             ", \"graph\": \"leaves + sum tree (fan-in 4)\", \"update_graph_s\": " +
                             std::to_string(t_update) + ", \"freed_keys\": " + std::to_string(frees) + "}";
  bench::emit("scale.scheduler_time", "tessera", params, (t_update + t_run) / n * 1e6, "us/task");
  bench::emit("scale.scheduler_memory", "tessera", params,
              static_cast<double>(heap_peak - heap_before) / n, "bytes/task");
  return 0;
}

#include "distributed/worker_server.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <unistd.h>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "comm/transport.hpp"
#include "core/thread_name.hpp"
#include "distributed/addresses.hpp"
#include "distributed/logging.hpp"
#include "distributed/protocol.hpp"
#include "distributed/spill_store.hpp"
#include "distributed/worker_state.hpp"
#include "local/execute_internal.hpp"
#include "tessera/core/scheduler.hpp"
#include "tessera/core/serialize.hpp"

namespace tessera::distributed {

namespace pr = protocol;
using Clock = std::chrono::steady_clock;

namespace {
// The longest the loop runs tasks itself before it looks at its sockets again.
constexpr std::chrono::milliseconds kLoopTurn{1};
// A task that ran this long on the loop (not a preempted tiny one: that takes a few ms) bars
// its kind from the loop.
constexpr std::chrono::milliseconds kLongOnLoop{100};

// This process's resident set size (/proc/self/statm), in bytes.
uint64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}
}  // namespace

struct WorkerServer::Impl {
  // A task to run and what it needs.
  struct Job {
    Key key;
    std::shared_ptr<const std::string> payload;
    std::vector<std::pair<Key, Value>> inputs;
  };
  struct Done {
    Key key;
    bool ok = false;
    Value value{};
    std::string error{};
    double duration = 0;
  };

  Options options;
  comm::Server data;
  std::string contact;  // the data server's address as peers are told it
  std::unique_ptr<comm::Connection> scheduler;
  std::unique_ptr<WorkerState> state;
  std::unique_ptr<SpillStore> store;
  std::atomic<size_t> stored_count{0}, executed_count{0}, served_count{0};
  std::atomic<uint64_t> memory_bytes{0}, spilled_bytes{0}, spilled_count{0};
  std::atomic<bool> paused{false};
  Clock::time_point last_memory_check{};
  // Peers by local id (the state machine's WorkerIds) and address.
  std::vector<std::string> peer_address{""};
  std::unordered_map<std::string, WorkerId> peer_id;
  std::unordered_map<WorkerId, std::unique_ptr<comm::Connection>> peer_conn;
  // The fetch in flight from each peer (one at a time; see WorkerState).
  struct Gather {
    std::vector<Key> keys;
    Clock::time_point sent;
    size_t disconnects = 0;  // the connection's count when it was sent
  };
  std::unordered_map<WorkerId, Gather> gathers;
  // Executor threads and their queues.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  size_t running = 0;  // jobs an executor has taken and not finished
  std::deque<Done> done;
  std::deque<Job> inline_jobs;  // tiny tasks the loop thread runs itself (loop thread only)
  std::deque<Job> held_jobs;    // for the executors once inline_jobs is done (loop thread only)
  // Kinds (key prefixes) of which a task ran for kLongOnLoop or longer there: they run on the
  // executors from then on, whatever their measured time (loop thread only).
  std::unordered_set<std::string> long_on_loop;
  std::vector<std::thread> executors;
  std::vector<comm::Envelope> to_scheduler;  // sent as one batch per loop iteration
  comm::Waker finished;                      // an executor finished a task (or stop() was called)
  // The scheduler connection is the loop's, except while the loop runs tiny tasks itself:
  // then the beat thread may send heartbeats on it (a task measured as tiny can still take
  // long). The loop holds scheduler_mu at all other times.
  std::mutex scheduler_mu;
  std::atomic<Clock::rep> last_beat{0};  // when the last heartbeat went (Clock ticks)
  std::mutex beat_mu;
  std::condition_variable beat_cv;
  std::thread beat;
  std::thread loop;
  std::atomic<bool> stopping{false};
  std::atomic<bool> serving{false};
  std::string reason;  // why serving stopped (set by the loop thread before serving = false)
  std::atomic<bool> removed{false};  // by the scheduler (worker-removed)

  // The scheduler's host, if it is reached over TCP ("" for an in-process one).
  static std::string scheduler_host(const Options& o) {
    if (!o.scheduler.starts_with("tcp://")) return {};
    return split_tcp_address(o.scheduler, "the scheduler's address").host;
  }

  // The options with the default listening address filled in (see Options::listen).
  static Options with_listen_address(Options o) {
    if (o.listen.empty()) {
      const std::string host = scheduler_host(o);
      std::string note;
      o.listen =
          fmt::format("tcp://{}:0", host.empty() ? "127.0.0.1" : worker_listen_ip(host, note));
      if (!note.empty()) logger("worker")->info("{}", note);
    }
    if (!o.contact.empty()) {
      const TcpAddress c = split_tcp_address(o.contact, "the contact address");
      if (is_wildcard_host(c.host)) {
        throw ValueError(fmt::format(
            "the contact address '{}' names every interface: give one that peers can reach",
            o.contact));
      }
      if (c.port == "0" || c.port == "*") {
        throw ValueError(fmt::format(
            "the contact address '{}' names no port: give the one peers can reach", o.contact));
      }
    }
    return o;
  }

  explicit Impl(Options o)
      : options(with_listen_address(std::move(o))),
        data(options.listen, options.limits, options.security),
        contact(options.contact.empty() ? contact_address(data.address(), scheduler_host(options))
                                        : options.contact) {
    if (options.nthreads < 1)
      throw ValueError(fmt::format("a worker needs at least one thread, not {}", options.nthreads));
    const auto& m = options.memory;
    if (!(m.target > 0 && m.target <= m.spill && m.spill <= m.pause && m.pause <= 1)) {
      throw ValueError(fmt::format(
          "worker memory fractions must satisfy 0 < target <= spill <= pause <= 1, got {}, {}, {}",
          m.target, m.spill, m.pause));
    }
    SpillStore::Options so;
    so.compression = parse_spill_compression(options.spill_compression);
    if (options.memory_limit > 0) {
      so.target_bytes = static_cast<uint64_t>(m.target * static_cast<double>(options.memory_limit));
      const std::filesystem::path base = options.local_directory.empty()
                                             ? std::filesystem::temp_directory_path()
                                             : std::filesystem::path(options.local_directory);
      so.directory =
          base / fmt::format("tessera-worker-{}-{}", ::getpid(), static_cast<void*>(this));
    }
    store = std::make_unique<SpillStore>(so);
  }

  // The counters other threads read (stored(), memory_bytes(), …).
  void publish_counters() {
    stored_count = store->size();
    memory_bytes = store->memory_bytes();
    spilled_bytes = store->disk_bytes();
    spilled_count = store->spilled_count();
  }

  // The process's resident memory against the limit: spill above `spill`, stop taking
  // tasks above `pause` (the scheduler is told at once), take them again below it.
  void check_memory() {
    if (options.memory_limit == 0) return;
    const auto now = Clock::now();
    if (now - last_memory_check < std::chrono::milliseconds(50)) return;
    last_memory_check = now;
    const double limit = static_cast<double>(options.memory_limit);
    const uint64_t rss = options.process_memory ? options.process_memory() : resident_bytes();
    const uint64_t managed = store->memory_bytes();
    if (static_cast<double>(rss) > options.memory.spill * limit) {
      // Spill until the process would be back at the target.
      const double excess = static_cast<double>(rss) - options.memory.target * limit;
      store->spill_to(static_cast<uint64_t>(std::max(0.0, static_cast<double>(managed) - excess)));
      publish_counters();
    }
    const bool over = static_cast<double>(rss) > options.memory.pause * limit;
    if (over != paused.load()) {
      paused = over;
      if (auto log = spdlog::get("worker")) {
        log->warn("process memory {:.0f} MiB is {} {:.0f}% of the {:.0f} MiB limit: {}",
                  rss / 1048576.0, over ? "over" : "back under", options.memory.pause * 100,
                  limit / 1048576.0, over ? "pausing (no new tasks)" : "resuming");
      }
      scheduler->send(comm::pack(pr::Heartbeat{store->memory_bytes(), over}));
    }
  }

  WorkerId id_of(const std::string& address) {
    auto it = peer_id.find(address);
    if (it != peer_id.end()) return it->second;
    const auto id = static_cast<WorkerId>(peer_address.size());
    peer_address.push_back(address);
    peer_id.emplace(address, id);
    return id;
  }

  void handshake() {
    scheduler =
        std::make_unique<comm::Connection>(options.scheduler, options.limits, options.security);
    scheduler->send(comm::pack(comm::Handshake{comm::kProtocolVersion, "worker",
                                               options.name.empty() ? contact : options.name,
                                               options.nthreads, contact, options.memory_limit}),
                    options.connect_timeout);
    std::optional<comm::Envelope> reply;
    try {
      reply = scheduler->receive_reply(options.connect_timeout);
    } catch (const IOError& e) {
      throw SchedulerError(
          fmt::format("the scheduler at {} refused this worker: {}", options.scheduler, e.what()));
    }
    if (!reply) {
      throw SchedulerError(fmt::format("the scheduler at {} did not answer within {} ms",
                                       options.scheduler, options.connect_timeout.count()));
    }
    const auto r = comm::unpack<comm::HandshakeReply>(*reply, options.limits);
    if (!r.accepted) {
      throw SchedulerError(
          fmt::format("the scheduler at {} refused this worker: {}", options.scheduler, r.error));
    }
    state = std::make_unique<WorkerState>(WorkerState::Options{
        .self = id_of(contact),
        .nthreads = options.nthreads,
        .queue_seconds = std::chrono::duration<double>(options.queue_time).count(),
        .validate = options.validate});
  }

  // ---- executor threads ----
  void execute_loop() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping.load() || !jobs.empty(); });
        if (stopping.load()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
        ++running;
      }
      Done d = run(job);
      bool wake = false;
      {
        std::lock_guard lock(mu);
        done.push_back(std::move(d));
        --running;
        // The loop hears of finished tasks when the queue runs low (it hands out more, and
        // reports these), else within its batch interval: tiny tasks do not wake it one by one.
        wake = jobs.size() <= static_cast<size_t>(options.nthreads);
      }
      if (wake) finished.wake();
    }
  }

  // The value of the job's task. The payload is a one-task graph whose references are the
  // job's inputs: the task is called directly with them, as the local schedulers call a
  // task (a graph and a plan per task cost more than a tiny task itself). Anything else
  // goes through the sync scheduler with the inputs as literals. A failure is a TaskError
  // naming the key and the op, as from the local schedulers.
  static Value compute(Job& job) {
    const auto bytes = std::as_bytes(std::span(job.payload->data(), job.payload->size()));
    Graph g = decode_graph(from_bytes(bytes));
    const Task* task = g.size() == 1 ? g.find(job.key) : nullptr;
    if (task == nullptr) {
      for (auto& [k, v] : job.inputs) g.add(k, Task::literal(std::move(v)));
      return std::move(get(g, std::span<const Key>(&job.key, 1), {.scheduler = "sync"}).at(0));
    }
    std::vector<Key> refs;
    task->collect_refs(refs);
    // Where each reference is among the inputs: a linear search for few inputs, a table
    // for many.
    const size_t n = job.inputs.size();
    std::unordered_map<Key, uint32_t, KeyHash> position;
    if (n > 16) {
      position.reserve(n);
      for (size_t i = 0; i < n; ++i) position.emplace(job.inputs[i].first, i);
    }
    auto find_input = [&](const Key& k) -> size_t {
      if (n > 16) {
        auto it = position.find(k);
        return it == position.end() ? n : it->second;
      }
      size_t i = 0;
      while (i < n && !(job.inputs[i].first == k)) ++i;
      return i;
    };
    std::vector<uint32_t> at(refs.size());
    for (size_t r = 0; r < refs.size(); ++r) {
      const size_t i = find_input(refs[r]);
      if (i == n) {
        throw TaskError(job.key.str(), std::string(task->label()), nullptr,
                        fmt::format("task '{}' (op '{}') cannot run: its input '{}' is not on "
                                    "this worker",
                                    job.key.str(), task->label(), refs[r].str()));
      }
      at[r] = static_cast<uint32_t>(i);
    }
    std::vector<Value> inputs;
    inputs.reserve(job.inputs.size());
    for (auto& kv : job.inputs) inputs.push_back(std::move(kv.second));
    try {
      return local::execute_task(*task, at, inputs.data());
    } catch (...) {
      std::rethrow_exception(local::task_failure(job.key, *task, std::current_exception()));
    }
  }

  // Runs one task (on an executor thread, or inline on the loop thread).
  Done run(Job& job) {
    Done d{job.key};
    const auto t0 = Clock::now();
    try {
      d.value = compute(job);
      d.ok = true;
    } catch (const TaskError& e) {
      d.error = e.what();
    } catch (const OpError& e) {
      d.error = fmt::format(
          "task '{}' cannot run on this worker: {} (start the worker with --preload of a library "
          "that registers the op, or use a worker program built with it)",
          job.key.str(), e.what());
    } catch (const std::exception& e) {
      d.error = fmt::format("task '{}' could not run on this worker: {}", job.key.str(), e.what());
    }
    d.duration = std::chrono::duration<double>(Clock::now() - t0).count();
    ++executed_count;
    return d;
  }

  // ---- the loop: messages in, instructions out ----
  void apply(std::vector<WorkerInstruction>& ins) {
    for (auto& i : ins) {
      if (auto* e = std::get_if<Execute>(&i)) {
        Job job{e->key, e->payload, {}};
        if (!job.payload) job.payload = std::make_shared<const std::string>();
        // The state machine executes a task only once its inputs are all in the store.
        for (const Key& k : e->inputs) {
          if (auto v = store->get(k)) job.inputs.emplace_back(k, std::move(*v));
        }
        if (may_run_inline(*e)) {
          inline_jobs.push_back(std::move(job));
          continue;
        }
        if (!inline_jobs.empty()) {  // the loop's tiny tasks take a thread's place: wait
          held_jobs.push_back(std::move(job));
          continue;
        }
        std::lock_guard lock(mu);
        jobs.push_back(std::move(job));
        cv.notify_one();
      } else if (auto* g = std::get_if<GatherDep>(&i)) {
        auto& conn = peer_conn[g->peer];
        if (!conn)
          conn = std::make_unique<comm::Connection>(peer_address.at(g->peer), options.limits,
                                                    options.security);
        gathers[g->peer] = Gather{g->keys, Clock::now(), conn->disconnects()};
        conn->send(comm::pack(pr::GetData{g->keys}));
      } else if (auto* r = std::get_if<ReleaseData>(&i)) {
        store->erase(r->key);
      } else if (auto* f = std::get_if<SendTaskFinished>(&i)) {
        pr::TaskFinished m{f->key, f->nbytes, f->duration};
        if (f->nbytes <= options.inline_bytes) m.value = store->get(f->key);
        to_scheduler.push_back(comm::pack(m));
      } else if (auto* st = std::get_if<SendStealResponse>(&i)) {
        to_scheduler.push_back(comm::pack(pr::StealResponse{st->key, st->stolen, st->request}));
      } else if (auto* x = std::get_if<SendTaskErred>(&i)) {
        to_scheduler.push_back(comm::pack(pr::TaskErred{x->key, x->exception}));
      } else if (auto* m = std::get_if<SendMissingData>(&i)) {
        to_scheduler.push_back(
            comm::pack(pr::MissingData{m->key, m->missing, peer_address.at(m->holder)}));
      }
    }
    ins.clear();
    publish_counters();
  }

  // Fetches from peers that died (their connection dropped) or did not answer in time: the
  // keys asked are missing there (the state machine asks elsewhere, or tells the scheduler).
  void check_gathers(std::vector<WorkerInstruction>& ins) {
    if (gathers.empty()) return;
    const auto now = Clock::now();
    std::vector<WorkerId> failed;
    for (auto& [peer, g] : gathers) {
      auto& conn = peer_conn.at(peer);
      if (conn->disconnects() > g.disconnects || now - g.sent > options.gather_timeout)
        failed.push_back(peer);
    }
    for (WorkerId peer : failed) {
      GatherDepFailed ev{peer, std::move(gathers.at(peer).keys)};
      gathers.erase(peer);
      peer_conn.erase(peer);  // a late answer on the old socket is not read
      state->handle(ev, ins);
      apply(ins);
    }
  }

  // Messages from the scheduler.
  void on_scheduler(const comm::Envelope& m, std::vector<WorkerInstruction>& ins) {
    if (m.op == pr::ComputeTask::kOp) {
      auto c = comm::unpack<pr::ComputeTask>(m, options.limits);
      ComputeTask ev{
          0,
          c.key,
          std::make_shared<const std::string>(reinterpret_cast<const char*>(c.payload.bytes.data()),
                                              c.payload.bytes.size()),
          c.priority,
          {}};
      for (auto& [k, holders] : c.who_has) {
        std::vector<WorkerId> ids;
        for (const auto& h : holders) ids.push_back(id_of(h));
        ev.who_has.emplace_back(k, std::move(ids));
      }
      ev.nbytes = std::move(c.nbytes);
      state->handle(ev, ins);
    } else if (m.op == pr::FreeKeys::kOp) {
      auto f = comm::unpack<pr::FreeKeys>(m, options.limits);
      state->handle(FreeKeys{0, std::move(f.keys)}, ins);
    } else if (m.op == pr::StealRequest::kOp) {
      auto r = comm::unpack<pr::StealRequest>(m, options.limits);
      state->handle(StealRequest{0, std::move(r.key), r.request}, ins);
    } else if (m.op == pr::WorkerRemoved::kOp) {
      const auto r = comm::unpack<pr::WorkerRemoved>(m, options.limits);
      reason =
          fmt::format("the scheduler at {} removed this worker: {}", options.scheduler, r.reason);
      removed = true;
      stopping = true;  // what it holds and runs was given to other workers
    }
    apply(ins);
  }

  // get-data requests to this worker's data server.
  void serve_data() {
    while (auto r = data.receive(std::chrono::milliseconds(0))) {
      if (r->message.op != pr::GetData::kOp) {
        data.block(r->peer);
        continue;
      }
      pr::GetData req;
      try {
        req = comm::unpack<pr::GetData>(r->message, options.limits);
      } catch (const comm::ProtocolError&) {
        data.block(r->peer);
        continue;
      }
      pr::Data reply;
      for (const Key& k : req.keys) {
        if (auto v = store->get(k)) {
          reply.values.emplace_back(k, std::move(*v));
        } else {
          reply.missing.push_back(k);
        }
      }
      served_count += reply.values.size();
      data.send(r->peer, comm::pack(reply));
    }
  }

  // Whether a task may join the loop thread's queue: one of a kind measured below
  // inline_time and not barred (long_on_loop), only while the executors are idle and no task
  // waits for them, so that no more than nthreads tasks run at once (other tasks wait in
  // held_jobs while the loop runs tiny ones). With one thread the loop stands in for it and
  // takes every tiny task it is given: they would have run one after another on the
  // executor too, with two thread hand-offs per batch. With more, it takes one at a time and
  // the others go to the executors, which run them in parallel.
  bool may_run_inline(const Execute& e) {
    const double inline_below = std::chrono::duration<double>(options.inline_time).count();
    if (e.estimate < 0 || e.estimate >= inline_below) return false;
    if (!long_on_loop.empty() && long_on_loop.contains(std::string(key_prefix(e.key.name()))))
      return false;
    if (!held_jobs.empty()) return false;
    if (!inline_jobs.empty() && options.nthreads > 1) return false;
    std::lock_guard lock(mu);
    return running == 0 && jobs.empty();
  }

  // Once the loop has run its tiny tasks, the tasks held for the executors go to them.
  void release_held_jobs() {
    if (!inline_jobs.empty() || held_jobs.empty()) return;
    std::lock_guard lock(mu);
    for (Job& job : held_jobs) jobs.push_back(std::move(job));
    held_jobs.clear();
    cv.notify_all();
  }

  // Whether tasks are queued or running on the executors, or waiting to run inline.
  bool busy() {
    if (!inline_jobs.empty() || !held_jobs.empty()) return true;
    std::lock_guard lock(mu);
    return running > 0 || !jobs.empty();
  }

  // A task's outcome into the state machine, and its instructions out.
  void finish(Done& d, std::vector<WorkerInstruction>& ins) {
    if (d.ok) {
      const uint64_t nbytes = d.value.nbytes();
      store->put(d.key, std::move(d.value));
      state->handle(ExecuteSuccess{d.key, nbytes, d.duration}, ins);
    } else {
      state->handle(ExecuteFailure{d.key, d.error}, ins);
    }
    apply(ins);
  }

  // Tiny tasks run on this thread while the executors are idle (see Options::inline_time),
  // for up to a turn of the loop; what they make ready may run inline in turn. Tasks held
  // for the executors meanwhile go to them once none is left. A kind of which a task took
  // kLongOnLoop or longer runs on the executors from then on.
  // Meanwhile the beat thread may use the scheduler connection (`talking` is let go).
  // Returns how long the loop was away from its sockets.
  Clock::duration run_inline(std::vector<WorkerInstruction>& ins,
                             std::unique_lock<std::mutex>& talking) {
    Clock::duration away{};
    if (!inline_jobs.empty()) {
      const auto from = Clock::now();
      const auto until = from + kLoopTurn;
      talking.unlock();
      while (!inline_jobs.empty() && !stopping.load()) {
        Job job = std::move(inline_jobs.front());
        inline_jobs.pop_front();
        Done d = run(job);
        if (d.duration >= std::chrono::duration<double>(kLongOnLoop).count())
          long_on_loop.emplace(key_prefix(d.key.name()));
        finish(d, ins);
        if (Clock::now() > until) break;
      }
      talking.lock();
      away = Clock::now() - from;
    }
    release_held_jobs();
    return away;
  }

  Clock::time_point beaten() const { return Clock::time_point(Clock::duration(last_beat.load())); }

  // The beat thread: while the loop runs a task itself for longer than a heartbeat interval,
  // it sends the heartbeats (the scheduler removes a worker silent for its worker timeout).
  void beat_while_loop_runs_tasks() {
    std::unique_lock lock(beat_mu);
    while (!beat_cv.wait_for(lock, options.heartbeat_interval, [&] { return stopping.load(); })) {
      std::unique_lock talking(scheduler_mu, std::try_to_lock);
      if (!talking.owns_lock()) continue;  // the loop is listening: it sends its own
      const auto now = Clock::now();
      if (now - beaten() < options.heartbeat_interval) continue;
      scheduler->send(comm::pack(pr::Heartbeat{memory_bytes.load(), paused.load()}));
      last_beat = now.time_since_epoch().count();
    }
  }

  // Whether the executors may finish tasks without waking the loop (see execute_loop).
  bool quiet_results() {
    std::lock_guard lock(mu);
    return !jobs.empty() || !done.empty();
  }

  void serve() {
    std::vector<WorkerInstruction> ins;
    std::unique_lock talking(scheduler_mu);
    auto last_heard = Clock::now(), last_send = Clock::now();
    last_beat = Clock::now().time_since_epoch().count();
    bool holding = false;  // finished tasks wait for the batch interval
    std::vector<comm::PollItem> items;
    std::vector<WorkerId> item_peer;
    while (!stopping.load()) {
      const auto now = Clock::now();
      if (now - last_heard > options.death_timeout) {
        reason = fmt::format("the scheduler at {} was silent for {} ms", options.scheduler,
                             options.death_timeout.count());
        break;
      }
      if (now - beaten() > options.heartbeat_interval) {
        for (const auto& why : data.take_refusals()) logger("worker")->warn("{}", why);
        scheduler->send(comm::pack(pr::Heartbeat{store->memory_bytes(), paused.load()}));
        last_beat = now.time_since_epoch().count();
      }
      // Sleep until a message, a finished task or the next heartbeat; stop() wakes us too.
      items.clear();
      item_peer.clear();
      items.push_back({scheduler->handle(), -1, false});
      items.push_back({data.handle(), -1, false});
      items.push_back({nullptr, finished.fd(), false});
      for (auto& [peer, conn] : peer_conn) {
        items.push_back({conn->handle(), -1, false});
        item_peer.push_back(peer);
      }
      auto wait = std::min<Clock::duration>(std::chrono::milliseconds(100),
                                            options.heartbeat_interval - (now - beaten()));
      if (holding) wait = std::min<Clock::duration>(wait, last_send + options.batch_interval - now);
      if (quiet_results()) wait = std::min<Clock::duration>(wait, options.batch_interval);
      if (!inline_jobs.empty()) wait = Clock::duration::zero();
      comm::poll(items, std::chrono::duration_cast<std::chrono::microseconds>(
                            std::max<Clock::duration>(wait, Clock::duration::zero())));
      if (items[0].ready) {
        while (auto m = scheduler->receive(std::chrono::milliseconds(0))) {
          last_heard = Clock::now();
          for (const auto& one : comm::unpack_batch(std::move(*m), options.limits))
            on_scheduler(one, ins);
        }
      }
      if (items[1].ready) serve_data();
      for (size_t i = 3; i < items.size(); ++i) {
        if (!items[i].ready) continue;
        const WorkerId peer = item_peer[i - 3];
        auto& conn = peer_conn.at(peer);
        while (auto m = conn->receive(std::chrono::milliseconds(0))) {
          auto d = comm::unpack<pr::Data>(*m, options.limits);
          gathers.erase(peer);
          GatherDepDone ev{peer, {}, std::move(d.missing)};
          for (auto& [k, v] : d.values) {
            ev.received.emplace_back(k, v.nbytes());
            store->put(k, std::move(v));
          }
          state->handle(ev, ins);
          apply(ins);
        }
      }
      check_gathers(ins);
      check_memory();
      if (items[2].ready) finished.clear();
      std::deque<Done> results;
      {
        std::lock_guard lock(mu);
        results.swap(done);
      }
      for (Done& d : results) finish(d, ins);
      // The time spent running tasks here is not the scheduler's silence: its messages wait.
      last_heard += run_inline(ins, talking);
      // Report at once when idle (a chain's next task waits on it); while busy, gather what
      // finishes within the batch interval into one message.
      holding = false;
      if (!to_scheduler.empty()) {
        const auto t = Clock::now();
        if (t - last_send < options.batch_interval && to_scheduler.size() < 4096 && busy()) {
          holding = true;
        } else {
          for (auto& b : comm::pack_batches(std::move(to_scheduler), options.limits))
            scheduler->send(b);
          to_scheduler.clear();
          last_send = t;
        }
      }
    }
    if (reason.empty()) {
      reason = "stopped";
      // Told, the scheduler runs elsewhere at once what was here (after the results held
      // for the next batch); the messages get a second to leave before the connection closes.
      to_scheduler.push_back(comm::pack(pr::Unregister{reason}));
      for (auto& b : comm::pack_batches(std::move(to_scheduler), options.limits))
        scheduler->send(b, std::chrono::milliseconds(0));
      to_scheduler.clear();
      scheduler->set_linger(std::chrono::milliseconds(1000));
    }
    stop_serving();
  }

  void stop_after_failure(const std::string& what) {
    reason = "the worker's loop failed: " + what;
    stop_serving();
  }

  void stop_serving() {
    serving = false;
    {
      std::lock_guard lock(mu);  // an executor between its check and its wait sees it
      stopping = true;           // the executors leave too
    }
    cv.notify_all();
    wake_beat();
  }

  void wake_beat() {
    std::lock_guard lock(beat_mu);  // the beat thread between its check and its wait sees it
    beat_cv.notify_all();
  }
};

WorkerServer::WorkerServer(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

WorkerServer::~WorkerServer() {
  stop();
}

const std::string& WorkerServer::data_address() const {
  return impl_->contact;
}

void WorkerServer::start() {
  if (impl_->loop.joinable()) return;
  impl_->reason.clear();
  impl_->removed = false;
  impl_->handshake();
  impl_->stopping = false;
  for (int i = 0; i < impl_->options.nthreads; ++i)
    impl_->executors.emplace_back([this] {
      tessera::detail::name_this_thread("tsr-worker-exec");
      impl_->execute_loop();
    });
  impl_->serving = true;
  impl_->beat = std::thread([this] {
    tessera::detail::name_this_thread("tsr-worker-beat");
    impl_->beat_while_loop_runs_tasks();
  });
  impl_->loop = std::thread([this] {
    tessera::detail::name_this_thread("tsr-worker");
    try {
      impl_->serve();
    } catch (const std::exception& e) {
      // A broken invariant (Options::validate) or a bug: the worker stops, saying why.
      impl_->stop_after_failure(e.what());
    }
  });
}

bool WorkerServer::running() const {
  return impl_->serving.load();
}

bool WorkerServer::removed() const {
  return impl_->removed.load();
}

std::string WorkerServer::stop_reason() const {
  return impl_->serving.load() ? std::string() : impl_->reason;
}

void WorkerServer::stop() {
  impl_->stopping = true;
  impl_->cv.notify_all();
  impl_->finished.wake();
  impl_->wake_beat();
  if (impl_->loop.joinable()) impl_->loop.join();
  if (impl_->beat.joinable()) impl_->beat.join();
  for (auto& t : impl_->executors) t.join();
  impl_->executors.clear();
}

size_t WorkerServer::executed() const {
  return impl_->executed_count.load();
}

size_t WorkerServer::served() const {
  return impl_->served_count.load();
}

uint64_t WorkerServer::memory_bytes() const {
  return impl_->memory_bytes.load();
}

uint64_t WorkerServer::spilled_bytes() const {
  return impl_->spilled_bytes.load();
}

uint64_t WorkerServer::spilled_count() const {
  return impl_->spilled_count.load();
}

bool WorkerServer::paused() const {
  return impl_->paused.load();
}

size_t WorkerServer::stored() const {
  return impl_->stored_count.load();
}

}  // namespace tessera::distributed

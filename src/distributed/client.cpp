// The client's shell: one I/O thread owns the scheduler connection and the connections to
// workers' data servers; user threads record what they want under a mutex and wake it.
// Records (one per key this client holds) carry the scheduler's reports and the fetched
// values; waiters (value(), gather(), wait(), as_completed()) count down as records resolve,
// so that waiting on n futures costs O(n) in all, not O(n) per message.
#include "tessera/distributed/client.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "comm/transport.hpp"
#include "core/thread_name.hpp"
#include "distributed/logging.hpp"
#include "distributed/protocol.hpp"
#include "tessera/core/optimize.hpp"
#include "tessera/core/tokenize.hpp"
#include "tessera/distributed/local_cluster.hpp"

namespace tessera {

namespace pr = distributed::protocol;
using Clock = std::chrono::steady_clock;

const char* to_string(FutureStatus s) noexcept {
  switch (s) {
    case FutureStatus::Pending:
      return "pending";
    case FutureStatus::Finished:
      return "finished";
    case FutureStatus::Error:
      return "error";
    case FutureStatus::Cancelled:
      return "cancelled";
  }
  return "?";
}

namespace detail {

namespace {

std::atomic<uint32_t> next_client_number{0};

// Tells the CPU that this thread is polling a value another thread will write.
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A deadline `timeout` from now (kForever: none).
Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  if (timeout == kForever || timeout > std::chrono::hours(24 * 365))
    return Clock::time_point::max();
  return Clock::now() + timeout;
}

}  // namespace

// Someone waiting for records to resolve: `remaining` counts down; `ready` lists the
// positions resolved (as_completed).
struct Waiter {
  bool for_value = false;  // resolved by a value or a failure, not merely by being done
  size_t remaining = 0;
  std::deque<size_t> ready;
};

struct ClientCore {
  struct Record {
    size_t refs = 0;
    FutureStatus status = FutureStatus::Pending;
    bool released = false;  // the scheduler was told to let it go (cancel)
    bool lost_scheduler = false;
    std::string error;
    Key blamed;
    std::vector<std::string> holders;
    size_t next_holder = 0;
    Value value;
    bool has_value = false;
    bool want_value = false;  // someone waits for the value: fetch it when it is ready
    bool fetching = false;
    bool scattered = false;        // data this client scattered: it keeps `value` to send again
    Clock::time_point retry_at{};  // a holder said it lacks the key: ask again then
    std::vector<std::pair<std::shared_ptr<Waiter>, size_t>> waiters;
  };

  ClientOptions options;
  std::string address;
  std::string scheduler_name;
  comm::Limits limits{};
  // What user threads check a graph against before sending it (limits', unless a test
  // lowered them: set_message_limits_for_tests).
  std::atomic<size_t> send_header_limit{limits.max_header_bytes};
  std::atomic<size_t> send_frame_limit{limits.max_frame_bytes};
  std::unique_ptr<comm::Connection> conn;  // the I/O thread's, after the handshake
  comm::Waker waker;

  mutable std::mutex mu;
  std::condition_variable cv;
  // Under mu:
  // Messages and releases, in the order they happened (a release sent after a later
  // update wanting the same key would make the scheduler forget a held key).
  std::deque<std::variant<comm::Envelope, std::vector<Key>>> outbox;
  std::vector<Key> to_fetch;
  std::unordered_map<Key, Record, KeyHash> records;
  std::string broken;  // why the client cannot go on (closed, scheduler lost)
  // Questions to the scheduler waiting for their answer, by request number (see ask()).
  uint64_t last_request = 0;
  using Answers =
      std::unordered_map<uint64_t, std::optional<std::variant<pr::SchedulerInfo, pr::Retried>>>;
  Answers answers;
  bool has_retries = false;
  bool wake_waiters = false;  // a waiter can return: notify cv (see resolve)
  // Bumped with every notification of cv: a thread polling before it sleeps (wait_all)
  // watches it instead of the mutex.
  std::atomic<uint64_t> notifications{0};
  // How long recent waits took (an average over the last few), for wait_all to judge
  // whether polling is worth it; in nanoseconds.
  std::atomic<int64_t> typical_wait_ns{0};

  std::atomic<bool> stopping{false};
  std::thread io;
  // The I/O thread's own:
  std::unordered_map<std::string, std::unique_ptr<comm::Connection>> data;
  std::vector<std::string> data_order;  // data connections in poll order

  // ---- user side (any thread) ----

  void send(comm::Envelope env) {
    {
      std::lock_guard lock(mu);
      outbox.push_back(std::move(env));
    }
    waker.wake();
  }

  // Queues a release-keys for `key`, batched with releases queued just before (mu held).
  void queue_release(const Key& key) {
    if (outbox.empty() || !std::holds_alternative<std::vector<Key>>(outbox.back()))
      outbox.emplace_back(std::vector<Key>{});
    std::get<std::vector<Key>>(outbox.back()).push_back(key);
  }

  // A new hold on `key` (mu held).
  Record& acquire_locked(const Key& key) {
    Record& r = records[key];
    ++r.refs;
    return r;
  }

  void release(const Key& key) noexcept {
    try {
      bool wake = false;
      {
        std::lock_guard lock(mu);
        auto it = records.find(key);
        if (it == records.end() || --it->second.refs > 0) return;
        if (!it->second.released && broken.empty()) {
          queue_release(key);
          wake = true;
        }
        records.erase(it);
      }
      if (wake) waker.wake();
    } catch (...) {
      // A release that cannot be sent is dropped; the scheduler forgets the client's keys
      // when it goes.
    }
  }

  // Marks a record resolved for the waiters it satisfies (mu held). A waiter that can now
  // return (all it waits for done, or a first one ready for as_completed) sets
  // `wake_waiters`: the user threads are woken once for it, not once per result.
  void resolve(Record& r) {
    auto& ws = r.waiters;
    size_t kept = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      auto& [w, pos] = ws[i];
      if (satisfied(r, w->for_value)) {
        --w->remaining;
        w->ready.push_back(pos);
        if (w->remaining == 0 || w->ready.size() == 1) wake_waiters = true;
      } else {
        ws[kept++] = std::move(ws[i]);
      }
    }
    ws.resize(kept);
  }

  // Done (for_value: holding its value, or failed).
  static bool satisfied(const Record& r, bool for_value) {
    const bool failed = r.status == FutureStatus::Error || r.status == FutureStatus::Cancelled;
    return for_value ? (r.has_value || failed) : r.status != FutureStatus::Pending;
  }

  // Registers a waiter on `keys` (mu held); asks for values when it waits for them.
  std::shared_ptr<Waiter> make_waiter(std::span<const Key> keys, bool for_value) {
    auto w = std::make_shared<Waiter>();
    w->for_value = for_value;
    bool fetch = false;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = records.find(keys[i]);
      if (it == records.end()) throw SchedulerError(released_message(keys[i]));
      Record& r = it->second;
      if (for_value) r.want_value = true;
      if (satisfied(r, for_value)) {
        w->ready.push_back(i);
        continue;
      }
      ++w->remaining;
      r.waiters.emplace_back(w, i);
      if (for_value && r.status == FutureStatus::Finished && !r.fetching) {
        to_fetch.push_back(keys[i]);
        fetch = true;
      }
    }
    if (fetch) waker.wake();
    return w;
  }

  // Drops a waiter that gave up (mu held).
  void drop_waiter(const std::shared_ptr<Waiter>& w, std::span<const Key> keys) {
    for (const Key& k : keys) {
      auto it = records.find(k);
      if (it == records.end()) continue;
      auto& ws = it->second.waiters;
      std::erase_if(ws, [&](const auto& e) { return e.first == w; });
    }
  }

  static std::string released_message(const Key& key) {
    return fmt::format("the future of '{}' was released", key.str());
  }

  // Wakes the threads waiting on cv (mu held).
  void notify_all() {
    notifications.fetch_add(1, std::memory_order_release);
    cv.notify_all();
  }

  // Waits for a waiter to count down to zero (mu held through `lock`). It first polls for
  // up to options.spin_wait, unless recent waits took longer than that (see ClientOptions).
  bool wait_all(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Waiter>& w,
                Clock::time_point deadline) {
    auto pred = [&] { return w->remaining == 0; };
    if (pred()) return true;
    const auto start = Clock::now();
    const auto spin = options.spin_wait;
    if (spin.count() > 0 &&
        typical_wait_ns.load(std::memory_order_relaxed) <=
            std::chrono::duration_cast<std::chrono::nanoseconds>(spin).count()) {
      const auto until = std::min(deadline, start + spin);
      while (!pred() && Clock::now() < until) {
        const uint64_t seen = notifications.load(std::memory_order_acquire);
        lock.unlock();
        for (int i = 0; notifications.load(std::memory_order_acquire) == seen; ++i) {
          spin_pause();
          if (i % 64 == 63 && Clock::now() >= until) break;
        }
        lock.lock();
      }
    }
    bool done = pred();
    if (!done) {
      if (deadline == Clock::time_point::max()) {
        cv.wait(lock, pred);
        done = true;
      } else {
        done = cv.wait_until(lock, deadline, pred);
      }
    }
    // An average of the last few waits: a wait counts for a quarter.
    const int64_t took = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start)
                             .count();
    const int64_t before = typical_wait_ns.load(std::memory_order_relaxed);
    typical_wait_ns.store(before + (took - before) / 4, std::memory_order_relaxed);
    return done;
  }

  // The error a failed record raises (mu held).
  [[noreturn]] void throw_failure(const Key& key, const Record& r) const {
    if (r.status == FutureStatus::Cancelled)
      throw CancelledError(fmt::format("the future of '{}' was cancelled", key.str()));
    if (r.lost_scheduler) throw SchedulerError(r.error);
    const std::string& blamed = r.blamed.empty() ? key.str() : r.blamed.str();
    throw TaskError(blamed, "", std::make_exception_ptr(Error(r.error)), r.error);
  }

  std::exception_ptr failure(const Key& key, const Record& r) const {
    try {
      throw_failure(key, r);
    } catch (...) {
      return std::current_exception();
    }
  }

  std::vector<Value> values(std::span<const Key> keys, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    const auto deadline = deadline_after(timeout);
    for (;;) {
      auto w = make_waiter(keys, true);
      if (!wait_all(lock, w, deadline)) {
        drop_waiter(w, keys);
        throw TimeoutError(fmt::format("{} of {} results not ready within {} ms (first: '{}')",
                                       w->remaining, keys.size(), timeout.count(),
                                       first_unready(keys).str()));
      }
      // A failure seen, then retried (retry() from another thread) before this thread woke:
      // wait for the new run.
      bool retried = false;
      for (const Key& k : keys) {
        auto it = records.find(k);
        if (it != records.end() && !it->second.has_value &&
            it->second.status == FutureStatus::Pending)
          retried = true;
      }
      if (!retried) break;
    }
    std::vector<Value> out;
    out.reserve(keys.size());
    for (const Key& k : keys) {
      auto it = records.find(k);
      if (it == records.end()) throw SchedulerError(released_message(k));
      const Record& r = it->second;
      if (!r.has_value) throw_failure(k, r);
      out.push_back(r.value);
    }
    return out;
  }

  // Sends `question` (its request number set here) and waits for the scheduler's answer of
  // type Answer: SchedulerError if the client breaks meanwhile, TimeoutError naming `what`
  // after `timeout`.
  template <class Answer, class Question>
  Answer ask(Question question, std::chrono::milliseconds timeout, std::string_view what) {
    std::unique_lock lock(mu);
    if (!broken.empty()) throw SchedulerError(broken);
    const uint64_t request = question.request = ++last_request;
    const auto& answer = answers[request];  // filled by the I/O thread (on_scheduler)
    outbox.push_back(comm::pack(question));
    waker.wake();
    const auto done = [&] { return answer.has_value() || !broken.empty(); };
    const auto deadline = deadline_after(timeout);
    if (deadline == Clock::time_point::max()) {
      cv.wait(lock, done);
    } else {
      cv.wait_until(lock, deadline, done);
    }
    std::optional<Answers::mapped_type::value_type> got =
        std::move(answers.extract(request).mapped());  // an answer arriving later is dropped
    if (got) {
      if (Answer* a = std::get_if<Answer>(&*got)) return std::move(*a);
      throw SchedulerError(
          fmt::format("the scheduler at {} answered {} with another message", address, what));
    }
    if (!broken.empty()) throw SchedulerError(broken);
    throw TimeoutError(fmt::format("the scheduler at {} did not answer {} within {} ms", address,
                                   what, timeout.count()));
  }

  // Fills in the answer to a question still waiting for it (mu held).
  template <class Answer>
  void answered(Answer a) {
    auto it = answers.find(a.request);
    if (it == answers.end()) return;  // its asker gave up
    it->second = std::move(a);
    notify_all();
  }

  Key first_unready(std::span<const Key> keys) const {
    for (const Key& k : keys) {
      auto it = records.find(k);
      if (it != records.end() && !it->second.has_value) return k;
    }
    return keys.empty() ? Key() : keys.front();
  }

  // ---- the I/O thread ----

  void fail_all(const std::string& why) {
    std::lock_guard lock(mu);
    if (broken.empty()) broken = why;
    for (auto& [k, r] : records) {
      if (r.has_value || r.status == FutureStatus::Error || r.status == FutureStatus::Cancelled)
        continue;
      r.status = FutureStatus::Error;
      r.lost_scheduler = true;
      r.error = why;
      resolve(r);
    }
    wake_waiters = false;
    notify_all();
  }

  // Whether the client cannot go on (its scheduler lost, or closed).
  bool is_broken() const {
    std::lock_guard lock(mu);
    return !broken.empty();
  }

  // The update-graph that scatters `value` as `key` (the scheduler may drop its copy).
  static pr::UpdateGraph scatter_message(const Key& key, const Value& value) {
    Graph g;
    g.add(key, Task::literal(value));
    pr::UpdateGraph up = pr::to_update_graph(g, std::span<const Key>(&key, 1));
    up.scattered.push_back(key);
    return up;
  }

  // Asks holders for the values of `keys` (I/O thread; takes mu).
  void fetch(std::vector<Key>& keys) {
    std::unordered_map<std::string, std::vector<Key>> by_holder;
    {
      std::lock_guard lock(mu);
      for (Key& k : keys) {
        auto it = records.find(k);
        if (it == records.end()) continue;
        Record& r = it->second;
        if (r.has_value || r.fetching || r.status != FutureStatus::Finished || r.holders.empty())
          continue;
        r.fetching = true;
        const std::string& h = r.holders[r.next_holder++ % r.holders.size()];
        by_holder[h].push_back(std::move(k));
      }
    }
    keys.clear();
    for (auto& [holder, ks] : by_holder) {
      auto& c = data[holder];
      if (!c) {
        c = std::make_unique<comm::Connection>(holder, limits, options.security);
        data_order.push_back(holder);
      }
      c->send(comm::pack(pr::GetData{std::move(ks)}));
    }
  }

  void on_scheduler(const comm::Envelope& m, std::vector<Key>& fetch_now) {
    std::lock_guard lock(mu);
    if (m.op == pr::KeyInMemory::kOp) {
      auto msg = comm::unpack<pr::KeyInMemory>(m, limits);
      auto it = records.find(msg.key);
      if (it == records.end() || it->second.status == FutureStatus::Cancelled) return;
      Record& r = it->second;
      r.status = FutureStatus::Finished;
      r.holders = std::move(msg.holders);
      r.fetching = false;
      if (msg.value && !r.has_value) {  // a small result, carried along
        r.value = std::move(*msg.value);
        r.has_value = true;
      }
      if (r.want_value && !r.has_value) fetch_now.push_back(msg.key);
      resolve(r);
    } else if (m.op == pr::KeyErred::kOp) {
      auto msg = comm::unpack<pr::KeyErred>(m, limits);
      auto it = records.find(msg.key);
      if (it == records.end() || it->second.status == FutureStatus::Cancelled) return;
      Record& r = it->second;
      r.status = FutureStatus::Error;
      r.error = std::move(msg.exception);
      r.blamed = std::move(msg.blamed);
      resolve(r);
    } else if (m.op == pr::KeyLost::kOp) {
      auto msg = comm::unpack<pr::KeyLost>(m, limits);
      auto it = records.find(msg.key);
      if (it == records.end()) return;
      Record& r = it->second;
      if (r.scattered && r.has_value && r.refs > 0) {
        // Scattered data lost with its worker: the scheduler cannot recompute it; send it
        // again (it goes out with the I/O thread's next turn).
        outbox.push_back(comm::pack(scatter_message(msg.key, r.value)));
        waker.wake();
        return;
      }
      if (r.status != FutureStatus::Finished) return;
      if (r.has_value) return;           // fetched already: nothing to wait for
      r.status = FutureStatus::Pending;  // being recomputed
      r.holders.clear();
      r.fetching = false;
    } else if (m.op == pr::Retried::kOp) {
      answered(comm::unpack<pr::Retried>(m, limits));
    } else if (m.op == pr::KeyRetried::kOp) {
      auto msg = comm::unpack<pr::KeyRetried>(m, limits);
      auto it = records.find(msg.key);
      if (it == records.end() || it->second.status != FutureStatus::Error) return;
      Record& r = it->second;
      r.status = FutureStatus::Pending;  // run again: its result or error comes later
      r.error.clear();
      r.blamed = Key();
    } else if (m.op == pr::GraphRefused::kOp) {
      auto msg = comm::unpack<pr::GraphRefused>(m, limits);
      for (const Key& k : msg.keys) {
        auto it = records.find(k);
        if (it == records.end() || it->second.status != FutureStatus::Pending) continue;
        Record& r = it->second;
        r.status = FutureStatus::Error;
        r.error = msg.message;
        r.blamed = k;
        resolve(r);
      }
    } else if (m.op == pr::SchedulerInfo::kOp) {
      answered(comm::unpack<pr::SchedulerInfo>(m, limits));
    } else if (m.op == pr::Heartbeat::kOp) {
      (void)comm::unpack<pr::Heartbeat>(m, limits);
    } else {
      throw comm::ProtocolError(fmt::format("a scheduler does not send '{}' to clients", m.op));
    }
    notify_waiters();
  }

  // Wakes the user threads if a waiter can return (mu held).
  void notify_waiters() {
    if (!wake_waiters) return;
    wake_waiters = false;
    notify_all();
  }

  void on_data(const comm::Envelope& m) {
    auto msg = comm::unpack<pr::Data>(m, limits);
    std::lock_guard lock(mu);
    for (auto& [k, v] : msg.values) {
      auto it = records.find(k);
      if (it == records.end()) continue;
      Record& r = it->second;
      r.fetching = false;
      if (r.has_value) continue;
      r.value = std::move(v);
      r.has_value = true;
      resolve(r);
    }
    // Gone from that worker (freed, or the worker restarted): ask again shortly; a key-lost
    // report in between turns the record back to pending.
    for (const Key& k : msg.missing) {
      auto it = records.find(k);
      if (it == records.end()) continue;
      it->second.fetching = false;
      it->second.retry_at = Clock::now() + std::chrono::milliseconds(50);
      has_retries = true;
    }
    notify_waiters();
  }

  void serve() {
    auto last_heard = Clock::now(), last_beat = Clock::now();
    std::vector<comm::PollItem> items;
    std::deque<std::variant<comm::Envelope, std::vector<Key>>> out;
    std::vector<Key> fetch_now;
    while (!stopping.load()) {
      const auto now = Clock::now();
      if (now - last_heard > options.scheduler_timeout) {
        const std::string why = fmt::format("lost the scheduler at {}: silent for {} ms", address,
                                            options.scheduler_timeout.count());
        if (!is_broken()) distributed::logger("client")->error("{}; pending futures fail", why);
        fail_all(why);
        last_heard = now;  // keep serving fetches of what is already computed
      }
      if (now - last_beat >= options.heartbeat_interval) {
        conn->send(comm::pack(pr::Heartbeat{0}), std::chrono::milliseconds(0));
        last_beat = now;
      }
      items.clear();
      items.push_back({conn->handle(), -1, false});
      items.push_back({nullptr, waker.fd(), false});
      for (const auto& a : data_order) items.push_back({data.at(a)->handle(), -1, false});
      comm::poll(items, std::chrono::milliseconds(has_retries ? 10 : 100));
      if (items[1].ready) waker.clear();
      {
        std::lock_guard lock(mu);
        out.swap(outbox);
        fetch_now.swap(to_fetch);
        if (has_retries) {
          has_retries = false;
          for (auto& [k, r] : records) {
            if (r.retry_at == Clock::time_point{}) continue;
            if (r.retry_at <= Clock::now()) {
              r.retry_at = {};
              if (r.want_value) fetch_now.push_back(k);
            } else {
              has_retries = true;
            }
          }
        }
      }
      if (!out.empty()) {
        std::vector<comm::Envelope> batch;
        batch.reserve(out.size());
        for (auto& o : out) {
          if (auto* env = std::get_if<comm::Envelope>(&o)) {
            batch.push_back(std::move(*env));
          } else {
            batch.push_back(comm::pack(pr::ReleaseKeys{std::move(std::get<std::vector<Key>>(o))}));
          }
        }
        for (auto& b : comm::pack_batches(std::move(batch), limits)) conn->send(b);
        out.clear();
      }
      if (items[0].ready) {
        while (auto m = conn->receive(std::chrono::milliseconds(0))) {
          last_heard = Clock::now();
          for (const auto& one : comm::unpack_batch(std::move(*m), limits))
            on_scheduler(one, fetch_now);
        }
      }
      for (size_t i = 2; i < items.size(); ++i) {
        if (!items[i].ready) continue;
        auto& c = data.at(data_order[i - 2]);
        while (auto m = c->receive(std::chrono::milliseconds(0))) on_data(*m);
      }
      if (!fetch_now.empty()) fetch(fetch_now);
    }
  }

  void start() {
    io = std::thread([this] {
      tessera::detail::name_this_thread("tsr-client-io");
      try {
        serve();
      } catch (const std::exception& e) {
        fail_all(fmt::format("the client's connection failed: {}", e.what()));
      }
    });
  }

  void close() {
    if (!io.joinable()) return;
    {
      std::lock_guard lock(mu);
      outbox.push_back(comm::pack(pr::CloseClient{}));
    }
    waker.wake();
    // Let the I/O thread send what is queued, then stop it.
    for (int i = 0; i < 100; ++i) {
      {
        std::lock_guard lock(mu);
        if (outbox.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    stopping = true;
    waker.wake();
    io.join();
    // close-client may still be queued in ZeroMQ: let it leave when the connection goes (at
    // most a second), unless the scheduler is known to be gone.
    if (!is_broken()) conn->set_linger(std::chrono::milliseconds(1000));
    fail_all(fmt::format("the client of {} was closed", address));
  }
};

// The scheduler interface of a client: compute() on it.
class ClientScheduler final : public Scheduler {
 public:
  ClientScheduler(std::weak_ptr<ClientCore> core, std::string name)
      : core_(std::move(core)), name_(std::move(name)) {}
  std::string_view name() const noexcept override { return name_; }
  std::vector<Value> get(const Graph& graph, std::span<const Key> outputs,
                         const ComputeOptions& options) override;

 private:
  std::weak_ptr<ClientCore> core_;
  std::string name_;
};

FutureHandle::FutureHandle(std::shared_ptr<ClientCore> core, Key key)
    : core_(std::move(core)), key_(std::move(key)) {}

FutureHandle::~FutureHandle() {
  if (core_) core_->release(key_);
}

FutureHandlePtr checked_handle(const FutureBase& f) {
  if (!f.valid()) throw ValueError("a released or empty future cannot be used");
  return f.handle();
}

void throw_unregistered(const Op& op) {
  throw SerializationError(fmt::format(
      "submit: '{}' is not a registered op, so workers cannot run it; register the function "
      "with TESSERA_REGISTER (lambdas cannot be sent to other processes)",
      op.name));
}

// The held result a task stands for, if it is a RemoteKey placeholder (persist()).
const RemoteKey* remote_key_of(const Task& t) {
  if (t.is_call() || t.args().size() != 1 || t.args()[0].kind() != Arg::Kind::kValue)
    return nullptr;
  const Value& v = t.args()[0].value();
  return v.is<RemoteKey>() ? &v.get<RemoteKey>() : nullptr;
}

// Queues `msg`, an update wanting `keys`, and returns holds on them; `prepare(record)` runs
// on each key's record under the lock.
template <class F>
std::vector<FutureHandlePtr> send_wanting(const std::shared_ptr<ClientCore>& core,
                                          comm::Envelope msg, std::span<const Key> keys,
                                          F&& prepare) {
  {
    std::lock_guard lock(core->mu);
    if (!core->broken.empty()) throw SchedulerError(core->broken);
    for (const Key& k : keys) {
      auto& r = core->acquire_locked(k);
      if (r.status == FutureStatus::Cancelled) r.status = FutureStatus::Pending;
      r.released = false;
      prepare(r);
    }
    core->outbox.push_back(std::move(msg));
  }
  core->waker.wake();
  std::vector<FutureHandlePtr> out;
  out.reserve(keys.size());
  for (const Key& k : keys) out.push_back(std::make_shared<const FutureHandle>(core, k));
  return out;
}

// Sends a graph whose tasks may reference keys held by `core` (RemoteKey placeholders or
// futures), wanting `keys`; returns holds on them.
std::vector<FutureHandlePtr> submit_graph_to(const std::shared_ptr<ClientCore>& core,
                                             const Graph& graph, std::span<const Key> keys,
                                             std::span<const FutureHandlePtr> held,
                                             const SubmitOptions& how = {}) {
  if (how.retries > pr::kMaxRetries) {
    throw ValueError(
        fmt::format("{} retries, more than the {} allowed", how.retries, pr::kMaxRetries));
  }
  // References to held keys: placeholders in the graph (for ordering), left out of the
  // message. A RemoteKey literal is such a placeholder already.
  std::unordered_set<Key, KeyHash> remote;
  for (const auto& h : held) remote.insert(h->key());
  for (const auto& e : graph.entries()) {
    const RemoteKey* rk = remote_key_of(*e.task);
    if (!rk) continue;
    if (!rk->handle || rk->handle->core() != core) {
      throw SchedulerError(fmt::format(
          "'{}' was persisted on another client (or that client is closed); compute it there",
          e.key.str()));
    }
    remote.insert(e.key);
  }
  // Futures referenced by the graph get placeholders (a copy of the graph only then).
  Graph with_placeholders;
  const Graph* full = &graph;
  if (!held.empty()) {
    std::vector<Key> refs;
    for (const auto& e : graph.entries()) e.task->collect_refs(refs);
    with_placeholders = graph;
    for (const Key& r : refs) {
      if (!with_placeholders.contains(r) && remote.count(r))
        with_placeholders.add(r, Task::literal(Value()));
    }
    full = &with_placeholders;
  }
  pr::UpdateGraph update =
      pr::to_update_graph(*full, keys, [&](const Key& k) { return remote.count(k) != 0; });
  update.user_priority = how.priority;
  update.retries = how.retries;
  comm::Envelope msg = comm::pack(update);
  const size_t header_limit = core->send_header_limit.load(std::memory_order_relaxed);
  const size_t frame_limit = core->send_frame_limit.load(std::memory_order_relaxed);
  if (msg.body.header.size() > header_limit) {
    throw ValueError(fmt::format(
        "a graph of {} tasks makes a message header of {} bytes, over the limit of {}; submit it "
        "in parts",
        full->size(), msg.body.header.size(), header_limit));
  }
  const size_t frame_bytes = msg.body.nbytes() - msg.body.header.size();
  if (frame_bytes > frame_limit) {
    throw ValueError(fmt::format(
        "a graph of {} tasks holds {} bytes of tasks, over the limit of {} for a message frame; "
        "scatter its large values first, or submit it in parts",
        full->size(), frame_bytes, frame_limit));
  }
  return send_wanting(core, std::move(msg), keys, [](ClientCore::Record&) {});
}

// A graph a collection computes, with linear chains fused into one task each: every task
// costs a scheduler round trip here, unlike on the local schedulers. Placeholders of held
// results (and the outputs) are never fused away.
Graph fused_for_cluster(const Graph& graph, std::span<const Key> outputs) {
  std::vector<Key> keep(outputs.begin(), outputs.end());
  for (const auto& e : graph.entries()) {
    if (remote_key_of(*e.task)) keep.push_back(e.key);
  }
  return fuse_linear(graph, keep);
}

// A collection's graph sent for `outputs` (compute or persist): fused unless `optimize` is
// off, with the computation's priority and retries.
std::vector<FutureHandlePtr> submit_collection(const std::shared_ptr<ClientCore>& core,
                                               const Graph& graph, std::span<const Key> outputs,
                                               bool optimize, int32_t priority, uint32_t retries) {
  const SubmitOptions how{.priority = priority, .retries = retries};
  return optimize ? submit_graph_to(core, fused_for_cluster(graph, outputs), outputs, {}, how)
                  : submit_graph_to(core, graph, outputs, {}, how);
}

std::vector<Value> ClientScheduler::get(const Graph& graph, std::span<const Key> outputs,
                                        const ComputeOptions& options) {
  auto core = core_.lock();
  if (!core) throw SchedulerError(fmt::format("scheduler '{}': its client is closed", name_));
  std::vector<FutureHandlePtr> hs = submit_collection(core, graph, outputs, options.optimize_graph,
                                                      options.priority, options.retries);
  return core->values(outputs, kForever);
}

}  // namespace detail

using detail::ClientCore;

// ---- FutureBase ----

namespace {
const ClientCore::Record* find_record(const ClientCore& core, const Key& key) {
  auto it = core.records.find(key);
  return it == core.records.end() ? nullptr : &it->second;
}
}  // namespace

const Key& FutureBase::key() const {
  return detail::checked_handle(*this)->key();
}

FutureStatus FutureBase::status() const {
  const auto& h = detail::checked_handle(*this);
  std::lock_guard lock(h->core()->mu);
  const auto* r = find_record(*h->core(), h->key());
  return r ? r->status : FutureStatus::Cancelled;
}

bool FutureBase::done() const {
  return status() != FutureStatus::Pending;
}

bool FutureBase::wait(std::chrono::milliseconds timeout) const {
  std::vector<FutureBase> one{*this};
  return tessera::wait(std::span<const FutureBase>(one), timeout);
}

std::exception_ptr FutureBase::exception(std::chrono::milliseconds timeout) const {
  const auto& h = detail::checked_handle(*this);
  if (!wait(timeout)) {
    throw TimeoutError(fmt::format("'{}' not done within {} ms", h->key().str(), timeout.count()));
  }
  auto& core = *h->core();
  std::lock_guard lock(core.mu);
  const auto* r = find_record(core, h->key());
  if (!r) return std::make_exception_ptr(SchedulerError(ClientCore::released_message(h->key())));
  if (r->status == FutureStatus::Finished) return nullptr;
  return core.failure(h->key(), *r);
}

Value FutureBase::value(std::chrono::milliseconds timeout) const {
  const auto& h = detail::checked_handle(*this);
  return h->core()->values(std::span<const Key>(&h->key(), 1), timeout).at(0);
}

void FutureBase::cancel() const {
  auto& core = *detail::checked_handle(*this)->core();
  {
    std::lock_guard lock(core.mu);
    auto it = core.records.find(key());
    if (it == core.records.end() || it->second.status == FutureStatus::Cancelled) return;
    auto& r = it->second;
    r.status = FutureStatus::Cancelled;
    r.released = true;
    core.queue_release(key());
    core.resolve(r);
    core.wake_waiters = false;
    core.notify_all();
  }
  core.waker.wake();
}

bool wait(std::span<const FutureBase> futures, std::chrono::milliseconds timeout) {
  if (futures.empty()) return true;
  std::vector<Key> keys;
  keys.reserve(futures.size());
  auto& core = *detail::checked_handle(futures[0])->core();
  for (const auto& f : futures) {
    if (detail::checked_handle(f)->core().get() != &core)
      throw ValueError("wait(): the futures belong to different clients");
    keys.push_back(f.key());
  }
  std::unique_lock lock(core.mu);
  auto w = core.make_waiter(keys, false);
  if (!core.wait_all(lock, w, detail::deadline_after(timeout))) {
    core.drop_waiter(w, keys);
    return false;
  }
  return true;
}

void fire_and_forget(const FutureBase& future) {
  const auto& h = detail::checked_handle(future);
  h->core()->send(comm::pack(pr::FireAndForget{{h->key()}}));
}

// ---- as_completed ----

struct detail::CompletionQueue::State {
  std::shared_ptr<ClientCore> core;
  std::vector<Key> keys;
  std::shared_ptr<Waiter> waiter;
  size_t handed = 0;
};

detail::CompletionQueue::CompletionQueue(std::span<const FutureBase> futures)
    : state_(std::make_shared<State>()) {
  if (futures.empty()) return;
  state_->core = checked_handle(futures[0])->core();
  for (const auto& f : futures) {
    if (checked_handle(f)->core() != state_->core)
      throw ValueError("as_completed(): the futures belong to different clients");
    state_->keys.push_back(f.key());
  }
  std::lock_guard lock(state_->core->mu);
  state_->waiter = state_->core->make_waiter(state_->keys, false);
}

detail::CompletionQueue::~CompletionQueue() {
  if (!state_->core) return;
  std::lock_guard lock(state_->core->mu);
  state_->core->drop_waiter(state_->waiter, state_->keys);
}

std::optional<size_t> detail::CompletionQueue::next(std::chrono::milliseconds timeout) {
  if (state_->handed == state_->keys.size()) return std::nullopt;
  auto& core = *state_->core;
  std::unique_lock lock(core.mu);
  auto& w = *state_->waiter;
  auto pred = [&] { return !w.ready.empty(); };
  const auto deadline = deadline_after(timeout);
  if (deadline == Clock::time_point::max()) {
    core.cv.wait(lock, pred);
  } else if (!core.cv.wait_until(lock, deadline, pred)) {
    throw TimeoutError(
        fmt::format("as_completed: no future finished within {} ms", timeout.count()));
  }
  const size_t i = w.ready.front();
  w.ready.pop_front();
  ++state_->handed;
  return i;
}

// ---- Client ----

std::chrono::microseconds detail::configured_spin_wait() {
  const double s = config::get_number("client.spin-wait", 0.001);
  if (!(s >= 0 && s <= 10)) {
    throw ValueError(fmt::format(
        "config: client.spin-wait must be a number of seconds from 0 to 10, not {}", s));
  }
  return std::chrono::microseconds(static_cast<int64_t>(s * 1e6));
}

namespace {

ClientOptions with_cluster_security(const LocalCluster& cluster, ClientOptions options) {
  if (!options.security.enabled()) options.security = cluster.security();
  return options;
}

}  // namespace

Client::Client(const LocalCluster& cluster, ClientOptions options)
    : Client(cluster.scheduler_address(), &cluster, std::move(options)) {}

Client::Client(const std::string& address, ClientOptions options)
    : Client(address, nullptr, std::move(options)) {}

Client::Client(const std::string& address, const LocalCluster* cluster, ClientOptions options)
    : core_(std::make_shared<ClientCore>()) {
  if (options.spin_wait.count() < 0) {
    throw ValueError(fmt::format(
        "ClientOptions::spin_wait (config client.spin-wait) must be 0 or more, not {} us",
        options.spin_wait.count()));
  }
  auto& c = *core_;
  c.options = cluster ? with_cluster_security(*cluster, std::move(options)) : std::move(options);
  c.address = address;
  if (!c.options.security.enabled()) c.options.security = Security::from_environment();
  const bool own_key = cluster && c.options.security.public_key == cluster->security().public_key &&
                       c.options.security.secret_key == cluster->security().secret_key;
  c.conn = std::make_unique<comm::Connection>(
      own_key ? cluster->scheduler_local_address() : address, c.limits, c.options.security);
  const uint32_t number = ++detail::next_client_number;
  const auto wait = c.options.connect_timeout;
  if (!c.conn->send(
          comm::pack(comm::Handshake{
              comm::kProtocolVersion, "client",
              c.options.name.empty() ? fmt::format("client-{}", number) : c.options.name, 0, ""}),
          wait)) {
    throw SchedulerError(
        fmt::format("cannot reach the scheduler at {} within {} ms", address, wait.count()));
  }
  std::optional<comm::Envelope> reply;
  try {
    reply = c.conn->receive_reply(wait);
  } catch (const IOError& e) {
    throw SchedulerError(
        fmt::format("the scheduler at {} refused this client: {}", address, e.what()));
  }
  if (!reply) {
    throw SchedulerError(
        fmt::format("the scheduler at {} did not answer within {} ms", address, wait.count()));
  }
  const auto r = comm::unpack<comm::HandshakeReply>(*reply, c.limits);
  if (!r.accepted) {
    throw SchedulerError(
        fmt::format("the scheduler at {} refused this client: {}", address, r.error));
  }
  c.scheduler_name = fmt::format("client-{}", number);
  register_scheduler(c.scheduler_name,
                     std::make_shared<detail::ClientScheduler>(core_, c.scheduler_name));
  if (c.options.set_as_default) {
    register_scheduler("distributed",
                       std::make_shared<detail::ClientScheduler>(core_, "distributed"));
    previous_default_ = default_scheduler();
    set_default_scheduler("distributed");
  }
  c.start();
}

Client::~Client() {
  close();
}

void Client::close() {
  if (!core_) return;
  if (core_->options.set_as_default && !previous_default_.empty()) {
    if (default_scheduler() == "distributed") set_default_scheduler(previous_default_);
    previous_default_.clear();
  }
  core_->close();
}

const std::string& Client::scheduler_address() const {
  return core_->address;
}

const std::string& Client::scheduler_name() const {
  return core_->scheduler_name;
}

ComputeOptions Client::options() const {
  return ComputeOptions{.scheduler = core_->scheduler_name};
}

size_t Client::held_keys() const {
  std::lock_guard lock(core_->mu);
  return core_->records.size();
}

SchedulerInfo Client::scheduler_info(std::chrono::milliseconds timeout) const {
  pr::SchedulerInfo m = core_->ask<pr::SchedulerInfo>(pr::Identity{}, timeout, "scheduler_info");
  SchedulerInfo out{std::move(m.address), {}};
  out.workers.reserve(m.workers.size());
  for (auto& w : m.workers) {
    out.workers.push_back({std::move(w.address), std::move(w.name), w.nthreads, w.memory_limit,
                           w.managed_bytes, w.paused});
  }
  return out;
}

void Client::wait_for_workers(size_t n, std::chrono::milliseconds timeout) const {
  const auto deadline = detail::deadline_after(timeout);
  size_t have = 0;
  for (;;) {
    // Each question gets what time is left (at most 10 s: a scheduler busy for longer is
    // asked again), and a question not answered in time is not the end of the wait.
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left > std::chrono::milliseconds(0)) {
      try {
        have = core_
                   ->ask<pr::SchedulerInfo>(pr::Identity{},
                                            std::min(left, std::chrono::milliseconds(10000)),
                                            "scheduler_info")
                   .workers.size();
        if (have >= n) return;
      } catch (const TimeoutError&) {
      }
    }
    if (Clock::now() >= deadline) {
      throw TimeoutError(fmt::format("{} of the {} workers waited for joined within {} ms", have, n,
                                     timeout.count()));
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(std::chrono::milliseconds(20), deadline - Clock::now()));
  }
}

void Client::throw_map_lengths() {
  throw ValueError("map(): the vectors have different lengths");
}

std::vector<detail::FutureHandlePtr> Client::submit_tasks(
    const Graph& graph, std::span<const Key> keys, std::span<const detail::FutureHandlePtr> held,
    const SubmitOptions& how) {
  return detail::submit_graph_to(core_, graph, keys, held, how);
}

void detail::set_message_limits_for_tests(Client& c, size_t max_header_bytes,
                                          size_t max_frame_bytes) {
  c.core_->send_header_limit = max_header_bytes;
  c.core_->send_frame_limit = max_frame_bytes;
}

Key Client::task_key(const SubmitOptions& how, bool exact, Key own) {
  if (how.key.empty()) return own;
  if (exact) return Key(how.key);
  const std::string_view name = own.name();
  const auto dash = name.rfind('-');
  std::string key = how.key;  // "<key>-<token>"
  if (dash == std::string_view::npos) key += '-';
  key += name.substr(dash == std::string_view::npos ? 0 : dash);
  return Key(std::move(key));
}

std::vector<FutureBase> Client::submit_graph(const Graph& graph, std::span<const Key> keys) {
  std::vector<detail::FutureHandlePtr> held;
  {
    // Keys this client holds may be referenced without being in the graph.
    std::vector<Key> refs;
    for (const auto& e : graph.entries()) e.task->collect_refs(refs);
    std::lock_guard lock(core_->mu);
    for (const Key& r : refs) {
      if (graph.contains(r)) continue;
      if (!core_->records.count(r)) {
        throw GraphError(fmt::format(
            "submit_graph: a task depends on '{}', which is neither in the graph nor held by this "
            "client",
            r.str()));
      }
      core_->acquire_locked(r);
      held.push_back(std::make_shared<const detail::FutureHandle>(core_, r));
    }
  }
  auto hs = detail::submit_graph_to(core_, graph, keys, held);
  std::vector<FutureBase> out;
  out.reserve(hs.size());
  for (auto& h : hs) out.push_back(Future<Value>(std::move(h)));
  return out;
}

std::vector<Value> Client::gather_values(std::span<const detail::FutureHandlePtr> handles,
                                         std::chrono::milliseconds timeout) {
  std::vector<Key> keys;
  keys.reserve(handles.size());
  for (const auto& h : handles) {
    if (h->core() != core_) throw ValueError("gather(): a future belongs to another client");
    keys.push_back(h->key());
  }
  return core_->values(keys, timeout);
}

detail::FutureHandlePtr Client::scatter_value(Value v) {
  Key key(fmt::format("scatter-{}", tokenize(v)));
  // The client keeps the value (result() needs no fetch, and it is sent again if the worker
  // holding it dies); the scheduler keeps no copy once a worker has it.
  comm::Envelope msg = comm::pack(ClientCore::scatter_message(key, v));
  return detail::send_wanting(core_, std::move(msg), std::span<const Key>(&key, 1),
                              [&v](ClientCore::Record& r) {
                                r.scattered = true;
                                r.value = std::move(v);
                                r.has_value = true;
                              })
      .at(0);
}

std::vector<Value> Client::persist_keys(const HighLevelGraph& hlg, std::span<const Key> keys,
                                        std::span<const detail::OptimizeFn> optimizers,
                                        const PersistOptions& how) {
  Graph graph = hlg.materialize(keys);
  ComputeOptions opts = options();
  opts.optimize_graph = how.optimize_graph;
  if (how.optimize_graph) {
    for (detail::OptimizeFn f : optimizers) f(graph, keys, opts);
  }
  std::vector<detail::FutureHandlePtr> hs =
      detail::submit_collection(core_, graph, keys, how.optimize_graph, how.priority, how.retries);
  std::vector<Value> out;
  out.reserve(hs.size());
  for (auto& h : hs) out.push_back(Value::of(detail::RemoteKey{std::move(h)}));
  return out;
}

void Client::retry(std::span<const FutureBase> futures) {
  for (const auto& f : futures) {  // every future checked before any changes
    if (detail::checked_handle(f)->core() != core_)
      throw ValueError("retry(): a future belongs to another client");
  }
  std::vector<Key> keys;
  {
    std::lock_guard lock(core_->mu);
    if (!core_->broken.empty()) throw SchedulerError(core_->broken);
    for (const auto& f : futures) {
      auto it = core_->records.find(f.key());
      if (it != core_->records.end() && it->second.status == FutureStatus::Error)
        keys.push_back(f.key());
    }
  }
  // The scheduler says which keys run again (key-retried: these, and what failed with them,
  // for every client that wants them) before it answers: then the futures are pending.
  if (!keys.empty())
    (void)core_->ask<pr::Retried>(pr::Retry{0, std::move(keys)}, core_->options.scheduler_timeout,
                                  "retry()");
}

void Client::cancel(std::span<const FutureBase> futures) {
  for (const auto& f : futures) {
    if (detail::checked_handle(f)->core() != core_)
      throw ValueError("cancel(): a future belongs to another client");
    f.cancel();
  }
}

}  // namespace tessera

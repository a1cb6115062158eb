// File: tessera/distributed/client.hpp
//
// Client and futures: compute on a cluster of worker processes, like dask.distributed.
//
//   int64_t inc(int64_t x) { return x + 1; }
//   int64_t add(int64_t x, int64_t y) { return x + y; }
//   TESSERA_REGISTER(inc);
//   TESSERA_REGISTER(add);
//
//   tessera::LocalCluster cluster({.n_workers = 2, .threads_per_worker = 1});
//   tessera::Client client(cluster);              // or tessera::Client client("tcp://host:8786");
//   auto f = client.submit(inc, 1);               // Future<int64_t>, running now
//   auto g = client.submit(add, f, 10);           // futures as arguments are dependencies
//   int64_t v = g.result();                       // 12; a remote error is rethrown with its key
//   auto fs = client.map(inc, std::vector<int64_t>{1, 2, 3});
//   std::vector<int64_t> vs = client.gather(fs);  // {2, 3, 4}
//   auto d = tessera::delayed(add)(tessera::delayed(inc)(1), 2);
//   int64_t w = d.compute(client);                // any collection computes on a client
//   auto p = client.persist(d);                   // its result stays on the workers
//   auto sc = client.scatter(std::vector<double>(1 << 20, 1.0));
//
// Tasks name registered ops (TESSERA_REGISTER), so the workers must have them too: run
// workers from the same program (LocalCluster does when main() called tessera::init), or
// start tessera-worker with --preload of a library that registers them. A lambda cannot
// be sent: submit() refuses it with SerializationError.
//
// A Future holds its key on the cluster: the scheduler keeps the result while any Future
// (or persisted collection) of any client refers to it, and forgets it when the last one
// is gone. Keys are deterministic, so submitting the same call twice computes it once.
// Every wait takes a timeout (TimeoutError when it passes); when the scheduler has been
// silent for ClientOptions::scheduler_timeout, pending futures fail with SchedulerError.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/collection.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "tessera/delayed/delayed.hpp"
#include "tessera/distributed/security.hpp"

namespace tessera {

class LocalCluster;

// A wait that did not finish within its timeout.
class TimeoutError : public SchedulerError {
 public:
  using SchedulerError::SchedulerError;
};

// The result of a cancelled future.
class CancelledError : public SchedulerError {
 public:
  using SchedulerError::SchedulerError;
};

// Where a future's work is.
enum class FutureStatus : uint8_t {
  Pending,    // waiting, queued or running (or being recomputed after a worker died)
  Finished,   // the result is on a worker (or already fetched)
  Error,      // the task, or one it depends on, failed
  Cancelled,  // cancel() was called
};
const char* to_string(FutureStatus s) noexcept;

// "No timeout".
inline constexpr std::chrono::milliseconds kForever = std::chrono::milliseconds::max();

namespace detail {

struct ClientCore;

// One hold on a key of a client's cluster. The last hold going away releases the key.
class FutureHandle {
 public:
  FutureHandle(std::shared_ptr<ClientCore> core, Key key);
  ~FutureHandle();
  FutureHandle(const FutureHandle&) = delete;
  FutureHandle& operator=(const FutureHandle&) = delete;
  const Key& key() const noexcept { return key_; }
  const std::shared_ptr<ClientCore>& core() const noexcept { return core_; }

 private:
  std::shared_ptr<ClientCore> core_;
  Key key_;
};
using FutureHandlePtr = std::shared_ptr<const FutureHandle>;

// Stands, in a persisted collection's graph, for a result kept on the cluster.
struct RemoteKey {
  FutureHandlePtr handle;
};

}  // namespace detail

// A result being computed, or computed, on a cluster; see Future<T>.
class FutureBase {
 public:
  FutureBase() = default;

  // The key of the task.
  const Key& key() const;
  // False for a default-constructed or released future.
  bool valid() const noexcept { return handle_ != nullptr; }
  FutureStatus status() const;
  // Finished, failed or cancelled.
  bool done() const;
  // Waits until done(); false if `timeout` passed first.
  bool wait(std::chrono::milliseconds timeout = kForever) const;
  // Waits until done(); the error if the task failed (TaskError naming the key that
  // raised), CancelledError if cancelled, nullptr if it finished.
  std::exception_ptr exception(std::chrono::milliseconds timeout = kForever) const;
  // The result as a Value (fetched from the worker holding it, then kept). Rethrows the
  // task's error; TimeoutError after `timeout`.
  Value value(std::chrono::milliseconds timeout = kForever) const;
  // Stops the work if no other future needs it; result() then throws CancelledError.
  void cancel() const;
  // Drops this hold now (as destroying the future would).
  void release() noexcept { handle_.reset(); }

  const detail::FutureHandlePtr& handle() const noexcept { return handle_; }

 protected:
  explicit FutureBase(detail::FutureHandlePtr h) : handle_(std::move(h)) {}
  detail::FutureHandlePtr handle_;
};

// A Future whose result is a T.
template <class T>
class Future : public FutureBase {
 public:
  using value_type = T;
  Future() = default;
  explicit Future(detail::FutureHandlePtr h) : FutureBase(std::move(h)) {}

  // Waits for the result and returns it; rethrows a remote error (TaskError naming the
  // key), TimeoutError after `timeout`.
  T result(std::chrono::milliseconds timeout = kForever) const {
    Value v = value(timeout);
    if constexpr (std::is_void_v<T> || std::is_same_v<T, std::monostate>) {
      return T();
    } else if constexpr (std::is_same_v<T, Value>) {
      return v;
    } else {
      try {
        return v.as<T>();
      } catch (const std::exception& e) {
        detail::throw_result_type(key(), e);
      }
    }
  }
};

// The defaults come from the configuration (tessera/core/config.hpp): client.connect-timeout,
// client.heartbeat-interval and client.scheduler-timeout, in seconds.
namespace detail {
// The configuration's client.spin-wait (seconds, 0.001 by default) in µs; ValueError naming
// the key if it is not from 0 to 10.
std::chrono::microseconds configured_spin_wait();
}  // namespace detail

// How submit() and map() send their tasks: Dask's submit and map keywords.
//   client.submit({.priority = 10, .retries = 2}, fetch_page, url);
//   client.map({.pure = false}, draw, seeds);   // a fresh key (a new draw) every call
struct SubmitOptions {
  // submit: the task's key; map: the keys' prefix ("<key>-<token of the arguments>").
  // Default: the function's name (map and submit alike).
  std::string key = {};
  // The function gives the same result for the same arguments: the key is a token of the
  // call, and submitting the same call again gives a future of the same result, computed
  // once. false: a fresh key every call (random numbers, clocks, side effects).
  bool pure = true;
  // Ready tasks of a higher priority run first, on the scheduler's queue and on workers,
  // whatever graph they came in (Dask's priority). Only new tasks take it: a key the
  // scheduler already has keeps its own.
  int32_t priority = 0;
  // An erring task is run again (on any worker) up to this many times (at most 1000)
  // before its future fails with the last error.
  uint32_t retries = 0;
};

// How Client::persist computes (Dask's persist keywords).
struct PersistOptions {
  // As SubmitOptions' and ComputeOptions': this computation's ready tasks run before those
  // of lower priorities; an erring task runs again up to `retries` times (at most 1000).
  int32_t priority = 0;
  uint32_t retries = 0;
  // Fuse linear chains (and run the collections' other optimizations) before sending.
  bool optimize_graph = true;
};

// The scheduler's state as Client::scheduler_info() reports it (Dask's scheduler_info()).
struct SchedulerInfo {
  struct Worker {
    std::string address;  // its data server: where clients and peers fetch results
    std::string name;     // --name, else its address
    int nthreads = 0;
    uint64_t memory_limit = 0;   // bytes; 0: none
    uint64_t managed_bytes = 0;  // its results in memory, by its last heartbeat
    bool paused = false;         // over its memory's pause threshold: takes no new tasks
  };
  std::string address;          // the scheduler's
  std::vector<Worker> workers;  // in the order they joined
};

struct ClientOptions {
  // How long to wait for the scheduler to accept the connection.
  std::chrono::milliseconds connect_timeout = config::get_seconds("client.connect-timeout", 10);
  // How often the client tells the scheduler it is alive (and hears it is).
  std::chrono::milliseconds heartbeat_interval =
      config::get_seconds("client.heartbeat-interval", 1);
  // The scheduler silent this long: pending futures fail with SchedulerError.
  std::chrono::milliseconds scheduler_timeout = config::get_seconds("client.scheduler-timeout", 30);
  // How long a thread waiting for results (result(), gather(), compute(), wait()) polls for
  // them before it sleeps. A result that arrives meanwhile is seen at once, without the
  // wake-up of a sleeping thread, which costs from a few µs on a busy core to hundreds on
  // an idle virtual CPU. It does not poll while recent waits took longer than this (an
  // average of the last few), so long computations do not pay for it. 0: never polls.
  std::chrono::microseconds spin_wait = detail::configured_spin_wait();
  // How the scheduler calls this client (in its logs).
  std::string name = {};
  // Make this client the default scheduler of compute() (as Dask does), until it closes.
  bool set_as_default = true;
  // The cluster's CURVE key pair (security.hpp). None: the LocalCluster's when made from
  // one, else the file TESSERA_CURVE_KEY_FILE names, else plain TCP.
  Security security = {};
};

namespace detail {

// The future's handle; ValueError if it is empty or released.
FutureHandlePtr checked_handle(const FutureBase& f);

template <class T>
struct IsFuture : std::false_type {};
template <class T>
struct IsFuture<Future<T>> : std::true_type {
  using type = T;
};
template <class T>
struct IsFutureVector : std::false_type {};
template <class T, class A>
struct IsFutureVector<std::vector<Future<T>, A>> : std::true_type {
  using type = T;
};

// Turns one submit() argument into a task argument for a parameter of type D: a future
// becomes a reference to its key (and is kept in `held` until the task is sent).
template <class D, class A>
Arg submit_arg(const A& a, std::vector<FutureHandlePtr>& held) {
  static_assert(!IsDelayed<A>::value && !IsDelayedVector<A>::value,
                "submit() takes values and futures; compute or persist a Delayed on the "
                "client first (client.persist(d)) or submit its function");
  if constexpr (IsFuture<A>::value) {
    using U = typename IsFuture<A>::type;
    static_assert(
        std::is_same_v<D, Value> || std::is_same_v<U, Value> || std::is_convertible_v<U, D>,
        "a Future<U> argument must convert to the function's parameter type");
    held.push_back(checked_handle(a));
    return Arg::ref(a.key());
  } else if constexpr (IsFutureVector<A>::value) {
    std::vector<Arg> items;
    items.reserve(a.size());
    for (const auto& f : a) {
      held.push_back(checked_handle(f));
      items.push_back(Arg::ref(f.key()));
    }
    return Arg::list(std::move(items));
  } else {
    std::vector<DelayedNodePtr> none;
    return to_arg<D>(a, none);
  }
}
[[noreturn]] void throw_unregistered(const Op& op);

template <class Fp>
using SubmitResult = DelayedResult<typename FnTraits<Fp>::result>;

}  // namespace detail

// A connection to a scheduler: submits work, holds futures, fetches results.
class Client;
namespace detail {
// Lowers the message limits `c` checks its graphs against before sending them (the header
// and the task frame's bytes), so that tests reach those errors without gigabytes.
void set_message_limits_for_tests(Client& c, size_t max_header_bytes, size_t max_frame_bytes);
}  // namespace detail

class Client {
 public:
  // Connects to the scheduler at `address` ("tcp://host:8786"); SchedulerError naming the
  // address if it refuses or does not answer within options.connect_timeout.
  explicit Client(const std::string& address, ClientOptions options = {});
  // Connects to a LocalCluster's scheduler. With the cluster's own key (the default) or
  // no security on either side, through the scheduler's in-process address: no network
  // stack (scheduler_address() still names its TCP one). With another key, over TCP, where
  // the scheduler's CURVE handshake judges it like any peer.
  explicit Client(const LocalCluster& cluster, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Releases everything this client holds and disconnects. Futures still alive fail
  // afterwards (unless their result was already fetched).
  void close();
  const std::string& scheduler_address() const;
  // The scheduler name under which compute() runs on this client ("client-1").
  const std::string& scheduler_name() const;
  // Compute options that run on this client: d.compute(client), tessera::compute(a, b,
  // client.options()).
  ComputeOptions options() const;
  operator ComputeOptions() const { return options(); }  // NOLINT(google-explicit-constructor)

  // Runs fn(args...) on the cluster. Futures among the arguments (or vectors of futures)
  // are its dependencies. Key: "<op>-<token>", deterministic.
  template <class Fp, class... A>
  requires(!std::is_same_v<std::decay_t<Fp>, SubmitOptions>)
      Future<detail::SubmitResult<Fp>> submit(Fp fn, const A&... args) {
    return submit(SubmitOptions{}, fn, args...);
  }
  // The same, sent as `how` says (key, pure, priority, retries).
  template <class Fp, class... A>
  Future<detail::SubmitResult<Fp>> submit(const SubmitOptions& how, Fp fn, const A&... args) {
    Prepared p;
    prepare_into(p, how, /*exact_key=*/true, fn, args...);
    return Future<detail::SubmitResult<Fp>>(
        std::move(submit_tasks(p.graph, p.keys, p.held, how).at(0)));
  }

  // fn applied to each element (to the i-th elements of several equally long vectors),
  // sent in one message.
  template <class Fp, class V, class... Vs>
  requires(!std::is_same_v<std::decay_t<Fp>, SubmitOptions>)
      std::vector<Future<detail::SubmitResult<Fp>>> map(Fp fn, const V& xs, const Vs&... more) {
    return map(SubmitOptions{}, fn, xs, more...);
  }
  // The same, sent as `how` says (its key is the keys' prefix).
  template <class Fp, class V, class... Vs>
  std::vector<Future<detail::SubmitResult<Fp>>> map(const SubmitOptions& how, Fp fn, const V& xs,
                                                    const Vs&... more) {
    const size_t n = xs.size();
    if (((more.size() != n) || ...)) throw_map_lengths();
    Prepared p;
    p.keys.reserve(n);
    for (size_t i = 0; i < n; ++i) prepare_into(p, how, /*exact_key=*/false, fn, xs[i], more[i]...);
    std::vector<detail::FutureHandlePtr> hs = submit_tasks(p.graph, p.keys, p.held, how);
    std::vector<Future<detail::SubmitResult<Fp>>> out;
    out.reserve(hs.size());
    for (auto& h : hs) out.emplace_back(std::move(h));
    return out;
  }

  // The results of `futures`, fetched together; rethrows the first error.
  template <class T>
  std::vector<T> gather(const std::vector<Future<T>>& futures,
                        std::chrono::milliseconds timeout = kForever) {
    std::vector<detail::FutureHandlePtr> hs;
    hs.reserve(futures.size());
    for (const auto& f : futures) hs.push_back(detail::checked_handle(f));
    std::vector<Value> values = gather_values(hs, timeout);
    std::vector<T> out;
    out.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      try {
        out.push_back(values[i].as<T>());
      } catch (const std::exception& e) {
        detail::throw_result_type(futures[i].key(), e);
      }
    }
    return out;
  }
  template <class T>
  T gather(const Future<T>& future, std::chrono::milliseconds timeout = kForever) {
    return future.result(timeout);
  }

  // Places a value on a worker; its future can be passed to submit(). Key:
  // "scatter-<token of the value>". The value travels as a one-task graph; the scheduler
  // drops its copy once a worker holds it, and the client keeps the value while the future
  // is held (result() needs no fetch): if that worker dies, the client sends it again. Once
  // no future holds it, tasks that still need lost scattered data fail with an error saying
  // so. SerializationError if T has no codec.
  template <class T>
  Future<detail::StoredType<T>> scatter(T&& value) {
    return Future<detail::StoredType<T>>(scatter_value(Value::of(std::forward<T>(value))));
  }

  // Starts computing collections on the cluster and returns them with their results kept
  // there (same keys): later computations on this client start from them.
  template <Collection C>
  C persist(const C& c, const PersistOptions& how = {}) {
    detail::Batch<C> batch(c);
    std::vector<Value> remote = persist_keys(batch.hlg, batch.keys, batch.optimizers, how);
    return CollectionTraits<C>::rebuild(c, remote);
  }

  // Runs erred futures again (Dask's retry): each erred one, the erred tasks it failed
  // through, and the erred tasks that depend on those are computed anew. When it returns,
  // this client's futures of all of those are pending again (another client's become
  // pending when its connection brings it the news); futures that did not err are left as
  // they are. ValueError (nothing changed) if a
  // future is another client's; SchedulerError if this client cannot reach its scheduler,
  // TimeoutError if it does not answer within ClientOptions::scheduler_timeout.
  void retry(std::span<const FutureBase> futures);
  template <class T>
  void retry(const std::vector<Future<T>>& futures) {
    std::vector<FutureBase> fs(futures.begin(), futures.end());
    retry(std::span<const FutureBase>(fs));
  }

  // Cancels futures (see FutureBase::cancel).
  void cancel(std::span<const FutureBase> futures);
  template <class T>
  void cancel(const std::vector<Future<T>>& futures) {
    std::vector<FutureBase> fs(futures.begin(), futures.end());
    cancel(std::span<const FutureBase>(fs));
  }

  // Lower level: sends `graph` and returns futures for `keys`. Keys held by futures of
  // this client may be referenced without being in the graph.
  std::vector<FutureBase> submit_graph(const Graph& graph, std::span<const Key> keys);

  // How many keys this client holds.
  size_t held_keys() const;

  // The scheduler's address and its workers, asked of it now. SchedulerError if it does
  // not answer within `timeout` or the client cannot reach it.
  SchedulerInfo scheduler_info(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // Waits until at least `n` workers have joined (Dask's wait_for_workers); TimeoutError
  // saying how many had if they have not within `timeout`.
  void wait_for_workers(size_t n, std::chrono::milliseconds timeout = kForever) const;

 private:
  // Connects to the scheduler at `address`, or to `cluster`'s (in-process when it can).
  Client(const std::string& address, const LocalCluster* cluster, ClientOptions options);

  struct Prepared {
    Graph graph;
    std::vector<Key> keys;
    std::vector<detail::FutureHandlePtr> held;
  };
  // The key of a task: its own ("<op>-<token>"), or as `how` says (`how.key` itself if
  // `exact`, else "<how.key>-<token>").
  static Key task_key(const SubmitOptions& how, bool exact, Key own);

  // Adds fn(args...) to `p` (its key as `how` says).
  template <class Fp, class... A>
  void prepare_into(Prepared& p, const SubmitOptions& how, bool exact_key, Fp fn,
                    const A&... args) {
    using Traits = detail::FnTraits<Fp>;
    auto wrapped = tessera::delayed(fn);
    const Op& op = wrapped.op();
    if (!op.registered) detail::throw_unregistered(op);
    if constexpr (!detail::kVariadic<Fp>) {
      static_assert(sizeof...(A) == Traits::arity, "wrong number of arguments for this function");
    }
    std::vector<Arg> task_args;
    if constexpr (sizeof...(A) > 0) {
      auto all = std::forward_as_tuple(args...);
      [&]<size_t... I>(std::index_sequence<I...>) {
        if constexpr (detail::kVariadic<Fp>) {
          task_args = {detail::submit_arg<Value>(std::get<I>(all), p.held)...};
        } else {
          task_args = {
              detail::submit_arg<detail::Param<std::tuple_element_t<I, typename Traits::args>>>(
                  std::get<I>(all), p.held)...};
        }
      }
      (std::index_sequence_for<A...>{});
    }
    Key key = task_key(how, exact_key, detail::delayed_key(op, task_args, how.pure));
    p.graph.add(key, Task::call(op, std::move(task_args)));
    p.keys.push_back(std::move(key));
  }

  [[noreturn]] static void throw_map_lengths();
  std::vector<detail::FutureHandlePtr> submit_tasks(const Graph& graph, std::span<const Key> keys,
                                                    std::span<const detail::FutureHandlePtr> held,
                                                    const SubmitOptions& how);
  std::vector<Value> gather_values(std::span<const detail::FutureHandlePtr> handles,
                                   std::chrono::milliseconds timeout);
  detail::FutureHandlePtr scatter_value(Value v);
  std::vector<Value> persist_keys(const HighLevelGraph& hlg, std::span<const Key> keys,
                                  std::span<const detail::OptimizeFn> optimizers,
                                  const PersistOptions& how);

  friend void detail::set_message_limits_for_tests(Client&, size_t, size_t);
  std::shared_ptr<detail::ClientCore> core_;
  std::string previous_default_;  // the default scheduler before this client took over
};

// Waits until every future is done; false if `timeout` passed first.
bool wait(std::span<const FutureBase> futures, std::chrono::milliseconds timeout = kForever);
template <class T>
bool wait(const std::vector<Future<T>>& futures, std::chrono::milliseconds timeout = kForever) {
  std::vector<FutureBase> fs(futures.begin(), futures.end());
  return wait(std::span<const FutureBase>(fs), timeout);
}

// Lets the cluster finish a future's work even after every future on it is gone (for
// tasks run for their side effects).
void fire_and_forget(const FutureBase& future);

namespace detail {
// The indices of futures in the order they finish.
class CompletionQueue {
 public:
  explicit CompletionQueue(std::span<const FutureBase> futures);
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;
  // The next finished future's index; nullopt when all were handed out. TimeoutError
  // after `timeout`.
  std::optional<size_t> next(std::chrono::milliseconds timeout = kForever);

  struct State;

 private:
  std::shared_ptr<State> state_;
};
}  // namespace detail

// Futures in the order they finish (done, failed or cancelled):
//   for (auto& f : tessera::as_completed(futures)) use(f.result());
template <class T>
class AsCompleted {
 public:
  explicit AsCompleted(std::vector<Future<T>> futures)
      : futures_(std::move(futures)),
        queue_(std::make_unique<detail::CompletionQueue>(
            std::vector<FutureBase>(futures_.begin(), futures_.end()))) {}

  // The next future to finish; nullopt when every one was handed out.
  std::optional<Future<T>> next(std::chrono::milliseconds timeout = kForever) {
    auto i = queue_->next(timeout);
    if (!i) return std::nullopt;
    return futures_[*i];
  }

  class iterator {
   public:
    using value_type = Future<T>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { advance(); }
    const Future<T>& operator*() const { return *current_; }
    const Future<T>* operator->() const { return &*current_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(const iterator& o) const { return done() == o.done(); }

   private:
    bool done() const { return !current_.has_value(); }
    void advance() { current_ = owner_ ? owner_->next() : std::nullopt; }
    AsCompleted* owner_ = nullptr;
    std::optional<Future<T>> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  std::vector<Future<T>> futures_;
  std::unique_ptr<detail::CompletionQueue> queue_;
};

template <class T>
AsCompleted<T> as_completed(std::vector<Future<T>> futures) {
  return AsCompleted<T>(std::move(futures));
}

}  // namespace tessera

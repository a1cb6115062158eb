#include "distributed/scheduler_server.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <unordered_map>

#include "comm/transport.hpp"
#include "core/thread_name.hpp"
#include "distributed/addresses.hpp"
#include "distributed/http_server.hpp"
#include "distributed/logging.hpp"
#include "distributed/protocol.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"

namespace tessera::distributed {

namespace pr = protocol;
using Clock = std::chrono::steady_clock;

namespace {
constexpr WorkerId kUnknownWorker = UINT32_MAX;
// Holds fire-and-forget keys until they finish (no peer has this id).
constexpr ClientId kFireAndForget = UINT32_MAX - 1;
// What a peer said, fit for the log: at most 256 bytes, no control characters (which could
// forge log lines).
std::string loggable(std::string text) {
  if (text.size() > 256) text.resize(256);
  for (char& ch : text) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  }
  return text;
}

}  // namespace

struct SchedulerServer::Impl {
  struct Peer {
    bool worker = false;
    uint32_t id = 0;
    std::string address;  // a worker's data server
    Clock::time_point last_seen;
    std::string name;            // as it introduced itself (a worker: --name, else its address)
    bool paused = false;         // a worker over its memory's pause threshold
    uint64_t managed_bytes = 0;  // a worker's results in memory (its heartbeats)
    int nthreads = 0;            // a worker's
    uint64_t memory_limit = 0;   // a worker's (0: none)
  };

  Options options;
  comm::Server server;
  std::string contact;  // server.address(), with this machine's address for every interface's
  SchedulerState state;
  std::unordered_map<comm::PeerId, Peer> peers;
  std::unordered_map<WorkerId, comm::PeerId> worker_peers;
  std::unordered_map<ClientId, comm::PeerId> client_peers;
  std::unordered_map<std::string, WorkerId> worker_by_address;
  uint32_t next_id = 0;
  // Small results that came with task-finished, until the reports they cause are sent.
  std::unordered_map<Key, Value, KeyHash> inline_values;
  std::vector<WorkerId> unreachable;  // workers a send failed to, removed after dispatch
  // Workers removed for silence, and why: the first message from one is answered.
  std::unordered_map<comm::PeerId, std::string> removed_workers;
  std::unordered_map<comm::PeerId, std::vector<comm::Envelope>> outgoing;
  std::vector<comm::PeerId> outgoing_order;
  std::atomic<size_t> workers{0}, clients{0}, dropped{0}, tasks{0}, refused{0};
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::shared_ptr<SchedulerMetrics> metrics = std::make_shared<SchedulerMetrics>();
  std::unique_ptr<HttpServer> http;

  explicit Impl(Options o)
      : options(std::move(o)),
        server(options.address, options.limits, options.security),
        contact(contact_address(server.address())),
        state(options.state) {
    if (!options.http_address.empty())
      http = std::make_unique<HttpServer>(options.http_address, metrics);
  }

  // The snapshot /metrics reads.
  void publish() {
    auto& m = *metrics;
    m.workers = workers.load();
    m.clients = clients.load();
    m.dropped_messages = dropped.load() + server.dropped();
    m.refused_connections = refused.load();
    for (size_t s = 0; s < m.tasks.size(); ++s)
      m.tasks[s] = state.count(static_cast<TaskStatus>(s));
    uint64_t managed = 0, paused = 0;
    for (const auto& [peer, p] : peers) {
      if (!p.worker) continue;
      managed += p.managed_bytes;
      paused += p.paused ? 1 : 0;
    }
    m.managed_bytes = managed;
    m.paused_workers = paused;
  }

  void serve() {
    Clock::time_point last_check = Clock::now();
    uint64_t checks = 0;
    while (!stopping.load()) {
      if (auto in = server.receive(std::chrono::milliseconds(20))) {
        on_message(*in);
        // Under load, handle what else has arrived before answering: the answers then go out
        // as one batch per peer.
        for (int more = 0; more < 1024; ++more) {
          auto next = server.receive(std::chrono::milliseconds(0));
          if (!next) break;
          on_message(*next);
        }
      }
      flush();
      if (Clock::now() - last_check > std::chrono::milliseconds(50)) {
        check_timeouts();
        if (++checks % 2 == 0) {  // every 100 ms: idle workers steal from saturated ones
          std::vector<Action> actions;
          state.handle(Rebalance{}, actions);
          dispatch(actions);
          flush();
        }
        for (const auto& why : server.take_refusals()) logger("scheduler")->warn("{}", why);
        refused = server.refused();
        if (http) publish();
        last_check = Clock::now();
      }
    }
  }

  // ---- peers ----
  void refuse(const comm::PeerId& peer, const std::string& why) {
    server.send(peer, comm::pack(comm::HandshakeReply{false, 0, why}));
    server.block(peer);
    ++dropped;
  }

  void on_handshake(const comm::Received& in) {
    comm::Handshake h;
    try {
      h = comm::unpack<comm::Handshake>(in.message);
    } catch (const comm::ProtocolError& e) {
      return refuse(in.peer, e.what());
    }
    if (std::string why = comm::check_handshake(h); !why.empty()) return refuse(in.peer, why);
    Peer p{h.role == "worker", ++next_id, h.address, Clock::now(), h.name};
    p.nthreads = h.nthreads;
    p.memory_limit = h.memory_limit;
    if (p.name.empty()) p.name = p.worker ? h.address : fmt::format("client-{}", p.id);
    p.name = loggable(std::move(p.name));
    std::vector<Action> actions;
    if (p.worker) {
      if (auto old = worker_by_address.find(h.address); old != worker_by_address.end()) {
        // Restarted at the same address: the old one is gone.
        remove_worker(old->second, "a new worker took its address");
      }
      worker_peers[p.id] = in.peer;
      worker_by_address[h.address] = p.id;
      ++workers;
      logger("scheduler")
          ->info("worker {} joined: {} thread{}{}", p.name, h.nthreads, h.nthreads == 1 ? "" : "s",
                 p.name == h.address ? "" : ", data at " + h.address);
      state.handle(AddWorker{p.id, h.nthreads}, actions);
    } else {
      client_peers[p.id] = in.peer;
      ++clients;
      logger("scheduler")->info("client {} connected", p.name);
    }
    peers[in.peer] = p;
    server.send(in.peer, comm::pack(comm::HandshakeReply{true, p.id, ""}));
    dispatch(actions);
  }

  // Removes a worker, logging `why` (a warning unless it `left` of its own accord). Anything
  // it still sends is stale: with a `reason` (it was silent) it is answered with
  // worker-removed, so it exits and its nanny starts it again; without one (it left, broke
  // the protocol, or cannot be reached) it is ignored.
  void remove_worker(WorkerId id, std::string_view why, std::string reason = {},
                     bool left = false) {
    auto it = worker_peers.find(id);
    if (it == worker_peers.end()) return;
    const comm::PeerId peer = it->second;
    if (left) {
      logger("scheduler")->info("worker {} left: {}", peers[peer].name, why);
    } else {
      logger("scheduler")->warn("removing worker {}: {}", peers[peer].name, why);
    }
    worker_by_address.erase(peers[peer].address);
    peers.erase(peer);
    worker_peers.erase(it);
    outgoing.erase(peer);
    if (reason.empty()) {
      server.block(peer);
    } else {
      if (removed_workers.size() >= 4096) removed_workers.clear();  // bounded; best effort
      removed_workers.insert_or_assign(peer, std::move(reason));
    }
    --workers;
    std::vector<Action> actions;
    state.handle(RemoveWorker{id}, actions);
    dispatch(actions);
  }

  // Removes a client and releases what it held, logging `why`.
  void remove_client(ClientId id, std::string_view why) {
    auto it = client_peers.find(id);
    if (it == client_peers.end()) return;
    logger("scheduler")->info("client {} left: {}", peers[it->second].name, why);
    peers.erase(it->second);
    outgoing.erase(it->second);
    server.block(it->second);
    client_peers.erase(it);
    --clients;
    std::vector<Action> actions;
    state.handle(RemoveClient{id}, actions);
    dispatch(actions);
  }

  void check_timeouts() {
    const auto now = Clock::now();
    std::vector<std::pair<bool, uint32_t>> silent;
    for (const auto& [peer, p] : peers) {
      const auto limit = p.worker ? options.worker_timeout : options.client_timeout;
      if (now - p.last_seen > limit) silent.emplace_back(p.worker, p.id);
    }
    for (const auto& [worker, id] : silent) {
      if (worker) {
        const std::string why =
            fmt::format("silent for over {} ms (the scheduler's worker timeout)",
                        options.worker_timeout.count());
        remove_worker(id, why, why);
      } else {
        remove_client(id, fmt::format("silent for over {} ms (the scheduler's client timeout)",
                                      options.client_timeout.count()));
      }
    }
  }

  // ---- messages in ----
  void on_message(const comm::Received& in) {
    auto it = peers.find(in.peer);
    if (it == peers.end()) {
      if (auto r = removed_workers.find(in.peer); r != removed_workers.end()) {
        queue(in.peer, comm::pack(pr::WorkerRemoved{r->second}));
        removed_workers.erase(r);  // told once; anything more it sends is dropped
        server.block(in.peer);
        return;
      }
      if (in.message.op != comm::Handshake::kOp) {
        server.block(in.peer);  // a peer must introduce itself first
        ++dropped;
        return;
      }
      return on_handshake(in);
    }
    it->second.last_seen = Clock::now();
    const Peer p = it->second;
    if (in.message.op != comm::kBatchOp) {
      on_peer_message(in.peer, p, in.message);
      return;
    }
    std::vector<comm::Envelope> inner;
    try {
      inner = comm::unpack_batch(in.message, options.limits);
    } catch (const comm::ProtocolError&) {
      return cut_off(p);
    }
    for (const auto& m : inner) {
      if (!on_peer_message(in.peer, p, m)) return;
    }
  }

  // A peer that breaks the protocol is cut off, and what it held or wanted goes with it.
  void cut_off(const Peer& p) {
    ++dropped;
    if (p.worker) {
      remove_worker(p.id, "it broke the protocol");
    } else {
      remove_client(p.id, "it broke the protocol");
    }
  }

  // One message from a known peer; false if the peer is gone afterwards.
  bool on_peer_message(const comm::PeerId& peer, const Peer& p, const comm::Envelope& msg) {
    std::vector<Action> actions;
    try {
      const std::string& op = msg.op;
      if (p.worker) {
        if (op == pr::TaskFinished::kOp) {
          auto m = comm::unpack<pr::TaskFinished>(msg, options.limits);
          if (m.value) inline_values.insert_or_assign(m.key, std::move(*m.value));
          state.handle(TaskFinished{p.id, std::move(m.key), m.nbytes, m.duration}, actions);
        } else if (op == pr::TaskErred::kOp) {
          auto m = comm::unpack<pr::TaskErred>(msg, options.limits);
          state.handle(TaskErred{p.id, std::move(m.key), std::move(m.exception)}, actions);
        } else if (op == pr::MissingData::kOp) {
          auto m = comm::unpack<pr::MissingData>(msg, options.limits);
          auto h = worker_by_address.find(m.holder);
          state.handle(MissingData{p.id, std::move(m.key), std::move(m.missing),
                                   h == worker_by_address.end() ? kUnknownWorker : h->second},
                       actions);
        } else if (op == pr::StealResponse::kOp) {
          auto m = comm::unpack<pr::StealResponse>(msg, options.limits);
          state.handle(StealResponse{p.id, std::move(m.key), m.stolen, m.request}, actions);
        } else if (op == pr::Unregister::kOp) {
          auto m = comm::unpack<pr::Unregister>(msg, options.limits);
          remove_worker(p.id, loggable(std::move(m.reason)), {}, /*left=*/true);
          return false;
        } else if (op == pr::Heartbeat::kOp) {
          const auto h = comm::unpack<pr::Heartbeat>(msg, options.limits);
          peers[peer].managed_bytes = h.managed_bytes;
          if (h.paused != p.paused) {
            peers[peer].paused = h.paused;
            state.handle(SetWorkerPaused{p.id, h.paused}, actions);
          }
          queue(peer, comm::pack(pr::Heartbeat{}));  // so it knows we are here
        } else {
          throw comm::ProtocolError(fmt::format("a worker may not send '{}'", op));
        }
      } else {
        if (op == pr::UpdateGraph::kOp) {
          auto m = comm::unpack<pr::UpdateGraph>(msg, options.limits);
          UpdateGraph u{p.id, {}, std::move(m.wanted), m.user_priority, m.retries};
          u.tasks.reserve(m.tasks.size());
          for (auto& t : m.tasks) {
            auto payload = std::make_shared<const std::string>(
                reinterpret_cast<const char*>(t.payload.bytes.data()), t.payload.bytes.size());
            const bool scattered =
                std::find(m.scattered.begin(), m.scattered.end(), t.key) != m.scattered.end();
            u.tasks.push_back(TaskSpec{std::move(t.key), std::move(t.dependencies), t.priority,
                                       std::move(payload), scattered});
          }
          state.handle(u, actions);
        } else if (op == pr::ReleaseKeys::kOp) {
          auto m = comm::unpack<pr::ReleaseKeys>(msg, options.limits);
          state.handle(ReleaseKeys{p.id, std::move(m.keys)}, actions);
        } else if (op == pr::FireAndForget::kOp) {
          auto m = comm::unpack<pr::FireAndForget>(msg, options.limits);
          state.handle(UpdateGraph{kFireAndForget, {}, std::move(m.keys)}, actions);
        } else if (op == pr::Heartbeat::kOp) {
          (void)comm::unpack<pr::Heartbeat>(msg, options.limits);
          queue(peer, comm::pack(pr::Heartbeat{}));
        } else if (op == pr::Retry::kOp) {
          auto m = comm::unpack<pr::Retry>(msg, options.limits);
          state.handle(RetryKeys{p.id, std::move(m.keys)}, actions);
          dispatch(actions);  // its reports go out before the answer
          queue(peer, comm::pack(pr::Retried{m.request}));
        } else if (op == pr::Identity::kOp) {
          const auto m = comm::unpack<pr::Identity>(msg, options.limits);
          queue(peer, comm::pack(identity(m.request)));
        } else if (op == pr::CloseClient::kOp) {
          (void)comm::unpack<pr::CloseClient>(msg, options.limits);
          remove_client(p.id, "closed");
          return false;
        } else {
          throw comm::ProtocolError(fmt::format("a client may not send '{}'", op));
        }
      }
    } catch (const comm::ProtocolError&) {
      cut_off(p);
      return false;
    }
    dispatch(actions);
    return true;
  }

  // What a client asking for the scheduler's state gets (workers in the order they joined).
  pr::SchedulerInfo identity(uint64_t request) const {
    pr::SchedulerInfo info{request, contact, {}};
    std::vector<const Peer*> ws;
    for (const auto& [peer, p] : peers)
      if (p.worker) ws.push_back(&p);
    std::sort(ws.begin(), ws.end(), [](const Peer* a, const Peer* b) { return a->id < b->id; });
    for (const Peer* p : ws)
      info.workers.push_back(
          {p->address, p->name, p->nthreads, p->memory_limit, p->managed_bytes, p->paused});
    return info;
  }

  // ---- actions out ----
  std::vector<std::string> addresses(const std::vector<WorkerId>& ids) const {
    std::vector<std::string> out;
    for (WorkerId w : ids) {
      auto it = worker_peers.find(w);
      if (it == worker_peers.end()) continue;
      out.push_back(peers.at(it->second).address);
    }
    return out;
  }

  // Messages wait in `outgoing` until the loop has handled what arrived with them, then go
  // out one batch per peer (flush).
  void queue(const comm::PeerId& peer, comm::Envelope env) {
    auto& q = outgoing[peer];
    if (q.empty()) outgoing_order.push_back(peer);
    q.push_back(std::move(env));
  }

  void to_worker(WorkerId w, comm::Envelope env) {
    auto it = worker_peers.find(w);
    if (it == worker_peers.end()) {
      unreachable.push_back(w);
    } else {
      queue(it->second, std::move(env));
    }
  }

  void to_client(ClientId c, comm::Envelope env) {
    auto it = client_peers.find(c);
    if (it != client_peers.end()) queue(it->second, std::move(env));
  }

  void flush() {
    while (!outgoing_order.empty()) {
      std::vector<comm::PeerId> order;
      order.swap(outgoing_order);
      for (const auto& peer : order) {
        auto node = outgoing.extract(peer);
        if (node.empty()) continue;
        bool sent = true;
        for (auto& b : comm::pack_batches(std::move(node.mapped()), options.limits))
          sent = sent && server.send(peer, b);
        auto p = peers.find(peer);
        if (!sent && p != peers.end() && p->second.worker) unreachable.push_back(p->second.id);
      }
      remove_unreachable();  // may queue more (tasks moved elsewhere)
    }
  }

  void remove_unreachable() {
    while (!unreachable.empty()) {
      const WorkerId w = unreachable.back();
      unreachable.pop_back();
      remove_worker(w, "it cannot be reached");
    }
  }

  void dispatch(std::vector<Action>& actions) {
    std::vector<Key> forget;  // fire-and-forget keys that are done
    for (Action& a : actions) {
      if (auto* c = std::get_if<ComputeTask>(&a)) {
        pr::ComputeTask m{c->key, c->priority, {}, {}};
        if (c->payload) {
          m.payload = pr::Payload{c->payload,
                                  std::as_bytes(std::span(c->payload->data(), c->payload->size()))};
        }
        m.who_has.reserve(c->who_has.size());
        for (auto& [k, holders] : c->who_has) m.who_has.emplace_back(k, addresses(holders));
        m.nbytes = c->nbytes;
        to_worker(c->worker, comm::pack(m));
      } else if (auto* f = std::get_if<FreeKeys>(&a)) {
        to_worker(f->worker, comm::pack(pr::FreeKeys{std::move(f->keys)}));
      } else if (auto* m = std::get_if<ReportMemory>(&a)) {
        if (m->client == kFireAndForget) {
          forget.push_back(m->key);
          continue;
        }
        pr::KeyInMemory out{m->key, m->nbytes, addresses(state.who_has(m->key))};
        if (auto v = inline_values.find(m->key); v != inline_values.end()) out.value = v->second;
        to_client(m->client, comm::pack(out));
      } else if (auto* e = std::get_if<ReportErred>(&a)) {
        if (e->client == kFireAndForget) {
          forget.push_back(e->key);
          continue;
        }
        to_client(e->client, comm::pack(pr::KeyErred{e->key, e->exception, e->blamed}));
      } else if (auto* l = std::get_if<ReportLost>(&a)) {
        to_client(l->client, comm::pack(pr::KeyLost{l->key}));
      } else if (auto* r = std::get_if<ReportRetried>(&a)) {
        to_client(r->client, comm::pack(pr::KeyRetried{r->key}));
      } else if (auto* g = std::get_if<ReportGraphError>(&a)) {
        to_client(g->client, comm::pack(pr::GraphRefused{g->message, g->keys}));
      } else if (auto* st = std::get_if<StealRequest>(&a)) {
        to_worker(st->worker, comm::pack(pr::StealRequest{st->key, st->request}));
      }
    }
    actions.clear();
    inline_values.clear();  // only for the reports of the message that carried them
    tasks = state.size();
    if (!forget.empty()) {
      state.handle(ReleaseKeys{kFireAndForget, std::move(forget)}, actions);
      dispatch(actions);
    }
    remove_unreachable();
  }
};

SchedulerState::Options state_options_from_config() {
  SchedulerState::Options o;
  const auto number = [](std::string_view key, double fallback, double low, double high) {
    const double x = config::get_number(key, fallback);
    if (!(x >= low && x <= high))
      throw ValueError(fmt::format("config: {} must be in [{}, {}], not {}", key, low, high, x));
    return x;
  };
  o.worker_saturation = number("scheduler.worker-saturation", o.worker_saturation, 0.01, 1e6);
  o.latency_hiding = number("scheduler.latency-hiding", o.latency_hiding, 0, 1);
  o.speculative_assignment =
      config::get_bool("scheduler.speculative-assignment", o.speculative_assignment);
  o.work_stealing = config::get_bool("scheduler.work-stealing", o.work_stealing);
  o.validate = config::get_bool("scheduler.validate", o.validate);
  return o;
}

SchedulerServer::SchedulerServer(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

SchedulerServer::~SchedulerServer() {
  stop();
}

const std::string& SchedulerServer::address() const {
  return impl_->contact;
}

const std::string& SchedulerServer::bound_address() const {
  return impl_->server.address();
}

const std::string& SchedulerServer::local_address() const {
  return impl_->server.local_address();
}

void SchedulerServer::start() {
  if (impl_->thread.joinable()) return;
  impl_->stopping = false;
  impl_->thread = std::thread([this] {
    tessera::detail::name_this_thread("tsr-scheduler");
    try {
      impl_->serve();
    } catch (const std::exception& e) {
      // A broken invariant (Options::state.validate) or a bug: say so and stop serving;
      // clients and workers then see the scheduler go silent.
      logger("scheduler")->critical("the scheduler's loop failed, and stops: {}", e.what());
    }
  });
}

void SchedulerServer::stop() {
  impl_->stopping = true;
  if (impl_->thread.joinable()) impl_->thread.join();
}

size_t SchedulerServer::worker_count() const {
  return impl_->workers.load();
}

size_t SchedulerServer::client_count() const {
  return impl_->clients.load();
}

std::string SchedulerServer::http_url() const {
  return impl_->http ? impl_->http->url() : std::string();
}

size_t SchedulerServer::task_count() const {
  return impl_->tasks.load();
}

size_t SchedulerServer::refused_connections() const {
  return impl_->refused.load();
}

size_t SchedulerServer::dropped_messages() const {
  return impl_->dropped.load();
}

}  // namespace tessera::distributed

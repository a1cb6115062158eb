#include "comm/transport.hpp"

#include <fmt/format.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#if defined(__SANITIZE_THREAD__)
#define TESSERA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TESSERA_TSAN 1
#endif
#endif
#ifdef TESSERA_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace tessera::comm {

namespace {

// ThreadSanitizer cannot see libzmq's synchronization (Debian's libzmq is not built with
// it). Over an inproc:// connection the bytes one thread wrote are read by another with no
// system call between them, so each send releases and each receive acquires the sockets'
// context, which is what ZeroMQ's queue between them does. Over TCP the kernel copies the
// bytes and the two ends have contexts of their own: nothing is paired. No-ops otherwise.
void handed_over([[maybe_unused]] zmq::context_t* context) {
#ifdef TESSERA_TSAN
  __tsan_release(context);
#endif
}
void taken_over([[maybe_unused]] zmq::context_t* context) {
#ifdef TESSERA_TSAN
  __tsan_acquire(context);
#endif
}

// The parts of an envelope: head, then the frames without copying them (ZeroMQ calls
// release() when it has sent a frame; the frame's owner lives until then).
void append_parts(const Envelope& env, std::vector<zmq::message_t>& parts) {
  const std::vector<std::byte> head = encode_head(env);
  parts.emplace_back(head.data(), head.size());
  for (const Frame& f : env.body.frames) {
    if (!f.owner || f.bytes.empty()) {
      parts.emplace_back(f.bytes.data(), f.bytes.size());
      continue;
    }
    auto* keep = new std::shared_ptr<const void>(f.owner);
    parts.emplace_back(
        const_cast<std::byte*>(f.bytes.data()), f.bytes.size(),
        [](void*, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }, keep);
  }
}

// The envelope in received parts [first, end); the frames point into the parts, which a
// shared owner keeps alive.
Envelope parse(std::vector<zmq::message_t>&& msgs, size_t first, const Limits& limits) {
  auto owner = std::make_shared<std::vector<zmq::message_t>>(std::move(msgs));
  std::vector<std::span<const std::byte>> parts;
  parts.reserve(owner->size() - first);
  for (size_t i = first; i < owner->size(); ++i) {
    const auto& m = (*owner)[i];
    parts.emplace_back(static_cast<const std::byte*>(m.data()), m.size());
  }
  return decode_parts(parts, owner, limits);
}

void configure(zmq::socket_t& s, const Limits& limits) {
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(limits.max_frame_bytes));
}

constexpr int kHandshakeFailures = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;

// Starts monitoring `socket`'s `events` into a PAIR socket of the same context.
void start_monitor(zmq::socket_t& socket, zmq::socket_t& monitor, int events, const void* owner,
                   const std::string& address) {
  const std::string endpoint = fmt::format("inproc://tessera-monitor-{}", owner);
  if (zmq_socket_monitor(static_cast<void*>(socket), endpoint.c_str(), events) != 0)
    throw IOError(
        fmt::format("cannot monitor the socket of '{}': {}", address, zmq_strerror(zmq_errno())));
  monitor.set(zmq::sockopt::linger, 0);
  monitor.connect(endpoint);
}

// Calls on_event(event, value, endpoint) for each event queued on `monitor`, without waiting.
template <class F>
void drain_monitor(zmq::socket_t& monitor, F&& on_event) {
  // Each event is two parts: the event (u16 id, u32 value) and the endpoint.
  while (true) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(monitor, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
    if (parts.size() < 2 || parts[0].size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, parts[0].data(), sizeof event);
    std::memcpy(&value, static_cast<const char*>(parts[0].data()) + 2, sizeof value);
    on_event(event, value, parts[1].to_string());
  }
}

// Why a handshake failed, from a monitor event.
std::string describe_handshake_failure(uint16_t event, uint32_t value) {
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    return fmt::format("its CURVE key is not the cluster's (authentication refused, status {})",
                       value);
  }
  return "the CURVE handshake failed (the two sides do not share a cluster key, or one of them "
         "does not use one)";
}

void secure_server(zmq::socket_t& s, const Security& security) {
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, security.secret_key);
  s.set(zmq::sockopt::zap_domain, "tessera");
}

void secure_client(zmq::socket_t& s, const Security& security) {
  s.set(zmq::sockopt::curve_serverkey, security.public_key);
  s.set(zmq::sockopt::curve_publickey, security.public_key);
  s.set(zmq::sockopt::curve_secretkey, security.secret_key);
}

// ZeroMQ's authentication protocol (ZAP, RFC 27) for one Server's context: admits a CURVE
// peer whose public key is the cluster's, refuses any other and records why.
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& context, std::string cluster_public_key)
      : socket_(context, zmq::socket_type::rep) {
    std::array<uint8_t, 32> key{};
    zmq_z85_decode(key.data(), cluster_public_key.c_str());
    key_.assign(reinterpret_cast<const char*>(key.data()), key.size());
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("inproc://zeromq.zap.01");
    thread_ = std::thread([this] { serve(); });
  }
  ~ZapHandler() {
    stop_ = true;
    thread_.join();
  }
  std::vector<std::string> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(refusals_, {});
  }

 private:
  void serve() {
    while (!stop_) {
      zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(50)) == 0) continue;
      std::vector<zmq::message_t> request;
      if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait))
        continue;
      // version, request id, domain, address, routing id, mechanism, credentials...
      if (request.size() < 6) continue;
      const std::string mechanism = request[5].to_string();
      const bool ok = mechanism == "CURVE" && request.size() >= 7 && request[6].to_string() == key_;
      if (!ok) {
        char text[41] = {};
        if (request.size() >= 7 && request[6].size() == 32)
          zmq_z85_encode(text, static_cast<const uint8_t*>(request[6].data()), 32);
        std::lock_guard lock(mutex_);
        refusals_.push_back(
            fmt::format("refused a connection from {}: its CURVE key {}... is not the cluster's",
                        request[3].to_string(), std::string(text).substr(0, 8)));
      }
      std::array<zmq::message_t, 6> reply{
          zmq::message_t(std::string("1.0")),
          std::move(request[1]),
          zmq::message_t(std::string(ok ? "200" : "400")),
          zmq::message_t(std::string(ok ? "OK" : "not the cluster's key")),
          zmq::message_t(),
          zmq::message_t()};
      zmq::send_multipart(socket_, reply);
    }
  }

  zmq::socket_t socket_;
  std::string key_;  // the cluster's public key, 32 bytes
  std::atomic<bool> stop_ = false;
  std::mutex mutex_;
  std::vector<std::string> refusals_;
  std::thread thread_;
};

}  // namespace

namespace {

// The contexts of this process's servers by their in-process address: a Connection to an
// inproc:// endpoint must live in the context of the socket bound to it.
struct LocalEndpoints {
  std::mutex mu;
  std::unordered_map<std::string, std::weak_ptr<zmq::context_t>> contexts;
  std::atomic<uint64_t> next{0};
};
LocalEndpoints& local_endpoints() {
  static LocalEndpoints* endpoints = new LocalEndpoints;  // never destroyed: used at exit
  return *endpoints;
}

}  // namespace

struct Server::Impl {
  Limits limits;
  std::shared_ptr<zmq::context_t> context = std::make_shared<zmq::context_t>(1);
  std::unique_ptr<ZapHandler> zap;  // with security: before the socket, which asks it
  zmq::socket_t socket{*context, zmq::socket_type::router};
  zmq::socket_t monitor{*context, zmq::socket_type::pair};  // handshake failures of `socket`
  std::string address;
  std::string local_address;
  std::unordered_set<PeerId> blocked;
  size_t dropped = 0;
  size_t refused = 0;
  std::string last_error;
};

Server::Server(const std::string& address, Limits limits, const Security& security)
    : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  configure(impl_->socket, limits);
  impl_->socket.set(zmq::sockopt::router_mandatory, 1);
  if (security.enabled()) {
    impl_->zap = std::make_unique<ZapHandler>(*impl_->context, security.public_key);
    secure_server(impl_->socket, security);
    start_monitor(impl_->socket, impl_->monitor, kHandshakeFailures, impl_.get(), address);
  }
  try {
    impl_->socket.bind(address);
  } catch (const zmq::error_t& e) {
    throw IOError(fmt::format("cannot listen on '{}': {}", address, e.what()));
  }
  impl_->address = impl_->socket.get(zmq::sockopt::last_endpoint);
  auto& local = local_endpoints();
  impl_->local_address = fmt::format("inproc://tessera-server-{}-{}", getpid(), ++local.next);
  impl_->socket.bind(impl_->local_address);
  std::lock_guard lock(local.mu);
  local.contexts[impl_->local_address] = impl_->context;
}

Server::~Server() {
  auto& local = local_endpoints();
  std::lock_guard lock(local.mu);
  local.contexts.erase(impl_->local_address);
}

const std::string& Server::address() const {
  return impl_->address;
}

const std::string& Server::local_address() const {
  return impl_->local_address;
}

bool Server::send(const PeerId& to, const Envelope& message) {
  std::vector<zmq::message_t> parts;
  parts.emplace_back(to.data(), to.size());
  append_parts(message, parts);
  handed_over(impl_->context.get());
  try {
    return zmq::send_multipart(impl_->socket, parts, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;  // the peer is gone
    throw IOError(fmt::format("send to a peer of {} failed: {}", impl_->address, e.what()));
  }
}

std::optional<Received> Server::receive(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool waited = false;
  while (true) {
    std::vector<zmq::message_t> msgs;
    // Read first: a message already queued needs no poll (a system call).
    if (!zmq::recv_multipart(impl_->socket, std::back_inserter(msgs), zmq::recv_flags::dontwait)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (waited && left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{static_cast<void*>(impl_->socket), 0, ZMQ_POLLIN, 0};
      waited = true;
      if (zmq::poll(&item, 1, std::max(left, std::chrono::milliseconds(0))) == 0)
        return std::nullopt;
      continue;
    }
    taken_over(impl_->context.get());
    if (msgs.size() < 2) continue;  // a routing id alone: nothing to read
    PeerId peer(static_cast<const char*>(msgs[0].data()), msgs[0].size());
    if (impl_->blocked.count(peer)) {
      ++impl_->dropped;
      continue;
    }
    try {
      Envelope env = parse(std::move(msgs), 1, impl_->limits);
      return Received{std::move(peer), std::move(env)};
    } catch (const SerializationError& e) {
      // A peer that sends what does not decode is not heard again.
      ++impl_->dropped;
      impl_->last_error = e.what();
      impl_->blocked.insert(std::move(peer));
    }
  }
}

void* Server::handle() const {
  return static_cast<void*>(impl_->socket);
}

size_t Server::dropped() const {
  return impl_->dropped;
}

const std::string& Server::last_error() const {
  return impl_->last_error;
}

void Server::block(const PeerId& peer) {
  impl_->blocked.insert(peer);
}

bool Server::blocked(const PeerId& peer) const {
  return impl_->blocked.count(peer) != 0;
}

std::vector<std::string> Server::take_refusals() {
  if (!impl_->zap) return {};
  // The handler knows the peer and its key; the monitor also sees handshakes that failed
  // before a key could be checked (a peer with another cluster's key, or none).
  std::vector<std::string> out = impl_->zap->take();
  drain_monitor(impl_->monitor, [&](uint16_t event, uint32_t value, const std::string& where) {
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) return;  // the handler described it
    out.push_back(fmt::format("refused a connection on {}: {}", where,
                              describe_handshake_failure(event, value)));
  });
  impl_->refused += out.size();
  return out;
}

size_t Server::refused() const {
  return impl_->refused;
}

struct Connection::Impl {
  explicit Impl(std::shared_ptr<zmq::context_t> c) : context(std::move(c)) {}
  Limits limits;
  // Its own, or a local server's (which it keeps alive: the sockets close first).
  std::shared_ptr<zmq::context_t> context;
  zmq::socket_t socket{*context, zmq::socket_type::dealer};
  zmq::socket_t monitor{*context, zmq::socket_type::pair};  // disconnect events of `socket`
  size_t disconnects = 0;
  std::string handshake_error;

  void drain() {
    drain_monitor(monitor, [&](uint16_t event, uint32_t value, const std::string&) {
      if (event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_CONNECT_RETRIED) {
        ++disconnects;
      } else {
        handshake_error = describe_handshake_failure(event, value);
      }
    });
  }
};

namespace {

std::shared_ptr<zmq::context_t> context_for(const std::string& address) {
  if (!address.starts_with("inproc://")) return std::make_shared<zmq::context_t>(1);
  auto& local = local_endpoints();
  std::lock_guard lock(local.mu);
  auto it = local.contexts.find(address);
  std::shared_ptr<zmq::context_t> context =
      it == local.contexts.end() ? nullptr : it->second.lock();
  if (!context) {
    throw IOError(
        fmt::format("cannot connect to '{}': no server of this process listens there", address));
  }
  return context;
}

}  // namespace

Connection::Connection(const std::string& address, Limits limits, const Security& security)
    : impl_(std::make_unique<Impl>(context_for(address))) {
  impl_->limits = limits;
  configure(impl_->socket, limits);
  if (security.enabled()) secure_client(impl_->socket, security);
  start_monitor(impl_->socket, impl_->monitor,
                ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CONNECT_RETRIED | kHandshakeFailures,
                impl_.get(), address);
  try {
    impl_->socket.connect(address);
  } catch (const zmq::error_t& e) {
    throw IOError(fmt::format("cannot connect to '{}': {}", address, e.what()));
  }
}

Connection::~Connection() = default;

bool Connection::send(const Envelope& message, std::chrono::milliseconds timeout) {
  std::vector<zmq::message_t> parts;
  append_parts(message, parts);
  impl_->socket.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout.count()));
  handed_over(impl_->context.get());
  return zmq::send_multipart(impl_->socket, parts).has_value();
}

std::optional<Envelope> Connection::receive(std::chrono::milliseconds timeout) {
  std::vector<zmq::message_t> msgs;
  // Read first: a message already queued needs no poll (a system call).
  if (!zmq::recv_multipart(impl_->socket, std::back_inserter(msgs), zmq::recv_flags::dontwait)) {
    if (timeout.count() <= 0) return std::nullopt;
    zmq::pollitem_t item{static_cast<void*>(impl_->socket), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    if (!zmq::recv_multipart(impl_->socket, std::back_inserter(msgs), zmq::recv_flags::dontwait))
      return std::nullopt;
  }
  taken_over(impl_->context.get());
  return parse(std::move(msgs), 0, impl_->limits);
}

std::optional<Envelope> Connection::receive_reply(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (auto m =
            receive(std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(50))))
      return m;
    if (!handshake_error().empty()) throw IOError(impl_->handshake_error);
    if (left.count() <= 0) return std::nullopt;
  }
}

void Connection::set_linger(std::chrono::milliseconds linger) {
  impl_->socket.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
}

void* Connection::handle() const {
  return static_cast<void*>(impl_->socket);
}

size_t Connection::disconnects() {
  impl_->drain();
  return impl_->disconnects;
}

const std::string& Connection::handshake_error() {
  impl_->drain();
  return impl_->handshake_error;
}

Waker::Waker() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw IOError(fmt::format("eventfd failed: {}", std::strerror(errno)));
}

Waker::~Waker() {
  close(fd_);
}

void Waker::wake() const {
  // The work was queued before this: if a wake-up is pending, the sleeper has not cleared
  // it yet, so it will look at its queues after this point (see clear()).
  if (pending_.exchange(true)) return;
  const uint64_t one = 1;
  // A full counter (EAGAIN) is already a pending wake-up.
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);
}

void Waker::clear() const {
  // Read first, then reset the flag: a wake() between the two found the flag set and did
  // not write, and its work is seen by the look at the queues that follows. (Reset first,
  // a wake() could write between the two, the read would swallow it, and the flag would
  // stay set with nothing to read: every later wake() skipped.)
  uint64_t value = 0;
  [[maybe_unused]] ssize_t n = read(fd_, &value, sizeof value);
  pending_.store(false);
}

int poll(std::span<PollItem> items, std::chrono::microseconds timeout) {
  std::vector<zmq_pollitem_t> zitems(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    zitems[i] = zmq_pollitem_t{items[i].socket, items[i].fd, ZMQ_POLLIN, 0};
  }
  // zmq_poll takes milliseconds; below one, spin with zero-timeout polls until it passes.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int n = 0;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline - std::chrono::steady_clock::now());
    const long ms = left.count() <= 0 ? 0 : std::max<long>(1, left.count() / 1000);
    n = zmq_poll(zitems.data(), static_cast<int>(zitems.size()), ms);
    if (n < 0) {
      if (zmq_errno() == EINTR) continue;
      throw IOError(fmt::format("poll failed: {}", zmq_strerror(zmq_errno())));
    }
    if (n > 0 || left.count() <= 0 || std::chrono::steady_clock::now() >= deadline) break;
  }
  for (size_t i = 0; i < items.size(); ++i) items[i].ready = (zitems[i].revents & ZMQ_POLLIN) != 0;
  return n;
}

}  // namespace tessera::comm

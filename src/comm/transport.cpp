#include "comm/transport.hpp"

#include <fmt/format.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace tessera::comm {

namespace {

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

}  // namespace

struct Server::Impl {
  Limits limits;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::router};
  std::string address;
  std::unordered_set<PeerId> blocked;
  size_t dropped = 0;
  std::string last_error;
};

Server::Server(const std::string& address, Limits limits) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  configure(impl_->socket, limits);
  impl_->socket.set(zmq::sockopt::router_mandatory, 1);
  try {
    impl_->socket.bind(address);
  } catch (const zmq::error_t& e) {
    throw IOError(fmt::format("cannot listen on '{}': {}", address, e.what()));
  }
  impl_->address = impl_->socket.get(zmq::sockopt::last_endpoint);
}

Server::~Server() = default;

const std::string& Server::address() const {
  return impl_->address;
}

bool Server::send(const PeerId& to, const Envelope& message) {
  std::vector<zmq::message_t> parts;
  parts.emplace_back(to.data(), to.size());
  append_parts(message, parts);
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

struct Connection::Impl {
  Limits limits;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  zmq::socket_t monitor{context, zmq::socket_type::pair};  // disconnect events of `socket`
  size_t disconnects = 0;
};

Connection::Connection(const std::string& address, Limits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  configure(impl_->socket, limits);
  const std::string monitor =
      fmt::format("inproc://tessera-monitor-{}", static_cast<void*>(impl_.get()));
  if (zmq_socket_monitor(static_cast<void*>(impl_->socket), monitor.c_str(),
                         ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CONNECT_RETRIED) != 0)
    throw IOError(fmt::format("cannot monitor the connection to '{}': {}", address,
                              zmq_strerror(zmq_errno())));
  impl_->monitor.set(zmq::sockopt::linger, 0);
  impl_->monitor.connect(monitor);
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
  return parse(std::move(msgs), 0, impl_->limits);
}

void* Connection::handle() const {
  return static_cast<void*>(impl_->socket);
}

size_t Connection::disconnects() {
  // Each event is two parts: the event (u16 id, u32 value) and the endpoint.
  while (true) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(impl_->monitor, std::back_inserter(parts), zmq::recv_flags::dontwait))
      break;
    if (!parts.empty() && parts[0].size() >= 2) {
      uint16_t event = 0;
      std::memcpy(&event, parts[0].data(), sizeof event);
      if (event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_CONNECT_RETRIED)
        ++impl_->disconnects;
    }
  }
  return impl_->disconnects;
}

Waker::Waker() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw IOError(fmt::format("eventfd failed: {}", std::strerror(errno)));
}

Waker::~Waker() {
  close(fd_);
}

void Waker::wake() const {
  const uint64_t one = 1;
  // A full counter (EAGAIN) is already a pending wake-up.
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);
}

void Waker::clear() const {
  uint64_t value = 0;
  [[maybe_unused]] ssize_t n = read(fd_, &value, sizeof value);
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

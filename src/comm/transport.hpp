// The transport: ZeroMQ sockets carrying Envelopes (comm/message.hpp). A Server (the
// scheduler's ROUTER socket) talks to many peers, each known by a PeerId; a Connection
// (a client's or worker's DEALER socket) talks to one server. Frames are handed to ZeroMQ
// without a copy (the frame's owner is kept alive until ZeroMQ is done with it).
//
// The network is hostile by default (DESIGN.md decision 7): a Server binds to loopback
// unless given another address; a part larger than Limits::max_frame_bytes makes ZeroMQ
// drop that connection; a message that does not decode is dropped and its sender blocked
// (its later messages are ignored), and receive() goes on serving everyone else. Every
// wait takes a timeout.
//
// With a Security key pair (tessera/distributed/security.hpp) every connection is CURVE:
// encrypted, and a Server admits only peers that prove they hold the same key pair (a ZAP
// handler of its own checks each one); refusals are kept for the owner to log.
//
//   comm::Server server;                                  // tcp://127.0.0.1:<free port>
//   comm::Connection conn(server.address());
//   conn.send(comm::pack(comm::Handshake{.role = "client"}));
//   auto in = server.receive(std::chrono::seconds(1));    // {peer, envelope}
//   server.send(in->peer, comm::pack(comm::HandshakeReply{.accepted = true, .id = 1}));
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "comm/message.hpp"
#include "tessera/distributed/security.hpp"

namespace tessera::comm {

// How a Server knows a peer (ZeroMQ's routing id).
using PeerId = std::string;

struct Received {
  PeerId peer;
  Envelope message;
};

class Server {
 public:
  // Binds `address`; port 0 picks a free one. IOError naming the address if it cannot.
  explicit Server(const std::string& address = "tcp://127.0.0.1:0", Limits limits = {},
                  const Security& security = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The address bound, with its actual port ("tcp://127.0.0.1:45123").
  const std::string& address() const;
  // The same socket's in-process address ("inproc://tessera-server-..."): a Connection made
  // in this process with it reaches the server without the network stack or ZeroMQ's I/O
  // threads (the server's context carries it).
  const std::string& local_address() const;
  // Sends to a peer; false if the peer is not connected (any more).
  bool send(const PeerId& to, const Envelope& message);
  // The next well-formed message from a peer not blocked, waiting at most `timeout`.
  std::optional<Received> receive(std::chrono::milliseconds timeout);
  // The ZeroMQ socket, for poll() only.
  void* handle() const;
  // Messages dropped as malformed or from blocked peers, and why the last one was.
  size_t dropped() const;
  const std::string& last_error() const;
  // Ignores a peer from now on.
  void block(const PeerId& peer);
  bool blocked(const PeerId& peer) const;
  // Connections refused since the last call (a peer without the cluster's key, or not
  // speaking CURVE to a secured server), each described with its address; and how many
  // were refused in all. Called from the owner's thread.
  std::vector<std::string> take_refusals();
  size_t refused() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Connection {
 public:
  // Connects to `address` (ZeroMQ connects in the background and reconnects on its own).
  // An "inproc://" address must be a Server's local_address() in this process (IOError if
  // no live server has it).
  explicit Connection(const std::string& address, Limits limits = {},
                      const Security& security = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues a message; false if it could not be queued within `timeout` (no server yet and
  // the queue is full).
  bool send(const Envelope& message,
            std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // The next message from the server within `timeout`; ProtocolError if it is malformed.
  std::optional<Envelope> receive(std::chrono::milliseconds timeout);
  // As receive(), for the answer to a first message: a handshake the server refuses ends
  // the wait at once with an IOError saying why (see handshake_error()).
  std::optional<Envelope> receive_reply(std::chrono::milliseconds timeout);
  // The ZeroMQ socket, for poll() only.
  void* handle() const;
  // How long the destructor waits for queued messages to leave (default 0: they are dropped,
  // so that nothing blocks on a dead server). A client sets it before closing, so that its
  // last message (close-client) is not lost.
  void set_linger(std::chrono::milliseconds linger);
  // Times the connection to the server dropped (the server's process died, or its socket
  // closed) or an attempt to connect was refused; ZeroMQ retries on its own, so this is
  // how a caller learns that what it asked may never be answered. Cheap: reads a monitor
  // queue without waiting.
  size_t disconnects();
  // Why the server refused this connection's handshake the last time (its CURVE key is not
  // the cluster's, or one side speaks CURVE and the other does not); "" if it has not.
  const std::string& handshake_error();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Wakes a thread blocked in poll() from another thread (an eventfd): wake() is safe from
// any thread; the polling thread, once poll() says the fd is ready, calls clear() and then
// looks at its queues. Wake-ups coalesce: only the first wake() after a clear() writes to
// the eventfd (a system call, and the sleeper's wake-up), so a thread that queues work item
// by item (releasing 20,000 futures one by one) pays for one, not for each.
class Waker {
 public:
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  void wake() const;
  void clear() const;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  mutable std::atomic<bool> pending_{false};  // written since the last clear()
};

// One thing poll() watches: a server, a connection or a waker; `ready` is set when it has
// something to read.
struct PollItem {
  void* socket = nullptr;  // Server::handle() or Connection::handle()
  int fd = -1;             // Waker::fd()
  bool ready = false;
};

// Waits until one of `items` is readable or `timeout` passes (microsecond resolution);
// marks the ready ones and returns how many are.
int poll(std::span<PollItem> items, std::chrono::microseconds timeout);

}  // namespace tessera::comm

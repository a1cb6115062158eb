// Messages and the transport: typed round trips, every malformed-input path with its
// message, random mutations that must never crash or escape as anything but a protocol
// error, and real sockets on loopback (garbage bytes, malformed and oversized messages
// dropped while other peers are still served).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <zmq.hpp>
#include "comm/message.hpp"
#include "comm/transport.hpp"
#include "test_support.hpp"

namespace comm = tessera::comm;
using namespace std::chrono_literals;
using tessera::Key;
using tessera::testing::error_of;

namespace {

// A message with a key, a number and one large frame.
struct Blob {
  static constexpr std::string_view kOp = "blob";
  Key key;
  uint64_t n = 0;
  std::shared_ptr<const std::vector<std::byte>> data;
  void encode(tessera::Encoder& e) const {
    comm::write_key(e, key);
    e.write_uint(n);
    e.write_frame(*data, data);
  }
  static Blob decode(tessera::Decoder& d) {
    Blob b;
    b.key = comm::read_key(d);
    b.n = d.read_uint();
    const tessera::Frame f = d.read_frame();
    b.data = std::make_shared<const std::vector<std::byte>>(f.bytes.begin(), f.bytes.end());
    return b;
  }
};

std::shared_ptr<const std::vector<std::byte>> bytes_of(size_t n, uint8_t seed) {
  auto v = std::make_shared<std::vector<std::byte>>(n);
  for (size_t i = 0; i < n; ++i) (*v)[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
  return v;
}

// The wire parts of an envelope, as the transport would send them.
std::vector<std::vector<std::byte>> wire(const comm::Envelope& env) {
  std::vector<std::vector<std::byte>> parts{comm::encode_head(env)};
  for (const auto& f : env.body.frames) parts.emplace_back(f.bytes.begin(), f.bytes.end());
  return parts;
}

comm::Envelope reread(const std::vector<std::vector<std::byte>>& parts,
                      const comm::Limits& limits = {}) {
  std::vector<std::span<const std::byte>> spans(parts.begin(), parts.end());
  return comm::decode_parts(spans, nullptr, limits);
}

}  // namespace

TEST(Messages, RoundTripTyped) {
  const comm::Handshake h{.role = "worker",
                          .name = "w-1",
                          .nthreads = 4,
                          .address = "tcp://127.0.0.1:9",
                          .memory_limit = uint64_t{3} << 30};
  const auto back = comm::unpack<comm::Handshake>(reread(wire(comm::pack(h))));
  EXPECT_EQ(back.version, comm::kProtocolVersion);
  EXPECT_EQ(back.role, "worker");
  EXPECT_EQ(back.name, "w-1");
  EXPECT_EQ(back.nthreads, 4);
  EXPECT_EQ(back.address, "tcp://127.0.0.1:9");
  EXPECT_EQ(back.memory_limit, uint64_t{3} << 30);
  EXPECT_EQ(comm::check_handshake(back), "");

  const Blob b{Key("x", {3, -1}), 99, bytes_of(1 << 20, 7)};
  const comm::Envelope env = comm::pack(b);
  ASSERT_EQ(env.body.frames.size(), 1U);
  EXPECT_EQ(env.body.frames[0].bytes.data(), b.data->data());  // not copied by the encoder
  const Blob out = comm::unpack<Blob>(reread(wire(env)));
  EXPECT_EQ(out.key, Key("x", {3, -1}));
  EXPECT_EQ(out.n, 99U);
  EXPECT_EQ(*out.data, *b.data);
}

TEST(Messages, BatchesCarrySeveralMessagesWithoutCopyingFrames) {
  const Blob a{Key("a"), 1, bytes_of(1000, 1)}, c{Key("c"), 3, bytes_of(70000, 3)};
  const comm::Handshake h{.role = "client", .name = "n"};
  std::vector<comm::Envelope> three{comm::pack(a), comm::pack(h), comm::pack(c)};
  const comm::Envelope batch = comm::pack_batch(three);
  EXPECT_EQ(batch.op, comm::kBatchOp);
  ASSERT_EQ(batch.body.frames.size(), 2U);
  EXPECT_EQ(batch.body.frames[1].bytes.data(), c.data->data());  // frames are not copied
  const auto parts = wire(batch);  // the received parts must outlive what points into them
  const auto inner = comm::unpack_batch(reread(parts));
  ASSERT_EQ(inner.size(), 3U);
  EXPECT_EQ(comm::unpack<Blob>(inner[0]).n, 1U);
  EXPECT_EQ(*comm::unpack<Blob>(inner[0]).data, *a.data);
  EXPECT_EQ(comm::unpack<comm::Handshake>(inner[1]).name, "n");
  EXPECT_EQ(*comm::unpack<Blob>(inner[2]).data, *c.data);
  // One message is sent as itself; a message that is not a batch unpacks as itself.
  EXPECT_EQ(comm::pack_batch({comm::pack(h)}).op, comm::Handshake::kOp);
  EXPECT_EQ(comm::unpack_batch(comm::pack(h)).size(), 1U);

  // Malformed batches are protocol errors that say what is wrong.
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::pack_batch({batch, comm::pack(h)});
            }),
            "a batch cannot hold a batch");
  auto forged = [&](auto&& write, size_t frames) {
    tessera::Encoder e;
    write(e);
    comm::Envelope env{std::string(comm::kBatchOp), {}};
    env.body.header = e.finish_header();
    for (size_t i = 0; i < frames; ++i) env.body.frames.push_back(batch.body.frames[0]);
    return env;
  };
  auto entry = [](tessera::Encoder& e, std::string_view op, uint64_t frames) {
    e.begin_array(3);
    e.write_string(op);
    e.write_bytes({});
    e.write_uint(frames);
  };
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::unpack_batch(forged(
                  [&](auto& e) {
                    e.begin_array(1);
                    entry(e, "blob", 2);
                  },
                  1));
            }),
            "batch: 'blob' claims more frames than the batch has");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::unpack_batch(forged(
                  [&](auto& e) {
                    e.begin_array(1);
                    entry(e, "blob", 0);
                  },
                  1));
            }),
            "batch: frames left over");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::unpack_batch(forged(
                  [&](auto& e) {
                    e.begin_array(1);
                    entry(e, "batch", 0);
                  },
                  0));
            }),
            "batch: invalid inner op 'batch'");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::unpack_batch(forged(
                  [&](auto& e) {
                    e.begin_array(1);
                    e.write_uint(5);
                  },
                  0));
            }),
            "malformed 'batch' message: expected array, found unsigned integer");
  comm::Limits small;
  small.max_header_bytes = 4;
  const std::vector<comm::Envelope> big{comm::pack(h), comm::pack(h)};
  EXPECT_NE(error_of<comm::ProtocolError>([&] {
              comm::unpack_batch(comm::pack_batch(big), small);
            }).find("header of"),
            std::string::npos);
}

// pack_batches splits a stream of messages so that each batch passes the receiver's limits
// (with room to spare), and the messages come out of the batches in order, frames intact.
TEST(Messages, BatchesStayWithinEveryLimit) {
  auto blobs = [](size_t n, size_t frame_bytes) {
    std::vector<comm::Envelope> v;
    for (size_t i = 0; i < n; ++i) {
      v.push_back(comm::pack(Blob{Key("b", {static_cast<int64_t>(i)}), i,
                                  bytes_of(frame_bytes, static_cast<uint8_t>(i))}));
    }
    return v;
  };
  auto check = [&](size_t n, size_t frame_bytes, const comm::Limits& limits, size_t batches) {
    SCOPED_TRACE(fmt::format("{} messages of {} bytes", n, frame_bytes));
    const auto batched = comm::pack_batches(blobs(n, frame_bytes), limits);
    EXPECT_EQ(batched.size(), batches);
    size_t next = 0;
    for (const auto& b : batched) {
      // Each passes the limits as the receiver checks them, then unpacks in order.
      const auto parts = wire(b);  // the frames below point into these
      for (auto& m : comm::unpack_batch(reread(parts, limits), limits)) {
        const Blob got = comm::unpack<Blob>(m);
        EXPECT_EQ(got.n, next);
        EXPECT_EQ(got.key, Key("b", {static_cast<int64_t>(next)}));
        EXPECT_EQ(*got.data, *bytes_of(frame_bytes, static_cast<uint8_t>(next)));
        ++next;
      }
    }
    EXPECT_EQ(next, n);
  };
  check(10, 100, {}, 1);
  check(5000, 1, {}, 2);                            // at most 4096 messages a batch
  check(10, 100, {.max_frames = 3}, 4);             // 3, 3, 3, 1 frames
  check(10, 1000, {.max_message_bytes = 5000}, 5);  // two 1 KB frames in half of 5 KB
  check(10, 1, {.max_header_bytes = 200}, 4);       // about 30 header bytes each: 3 in half of 200
}

TEST(Messages, MalformedInputIsNamed) {
  const auto good = wire(comm::pack(comm::Handshake{.role = "client"}));
  auto with_head = [&](auto&& change) {
    auto parts = good;
    change(parts[0]);
    return error_of<comm::ProtocolError>([&] { reread(parts); });
  };
  EXPECT_EQ(with_head([](auto& h) { h[0] = std::byte{'X'}; }), "not a tessera message (bad magic)");
  EXPECT_EQ(with_head([](auto& h) { h.resize(5); }), "not a tessera message (bad magic)");
  EXPECT_EQ(with_head([](auto& h) { h[4] = std::byte{9}; }),
            "protocol version 9 is not supported (this process speaks " +
                std::to_string(comm::kProtocolVersion) + ")");
  EXPECT_EQ(with_head([](auto& h) { h[6] = std::byte{200}; }), "truncated message head");
  EXPECT_EQ(with_head([](auto& h) { h[7] = std::byte{'!'}; }), "invalid op name in message head");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { reread({}); }), "empty message");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              reread(good, {.max_header_bytes = 4});
            }).rfind("'handshake' message header of ", 0),
            0U);
  auto framed = wire(comm::pack(Blob{Key("k"), 1, bytes_of(100, 1)}));
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { reread(framed, {.max_frame_bytes = 64}); }),
            "'blob' message frame of 100 bytes exceeds the limit of 64");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { reread(framed, {.max_frames = 0}); }),
            "'blob' message has 1 frames, more than the limit of 0");
  const size_t framed_bytes = framed[0].size() + framed[1].size();
  EXPECT_EQ(error_of<comm::ProtocolError>(
                [&] { reread(framed, {.max_message_bytes = framed_bytes - 1}); }),
            fmt::format("'blob' message of {} bytes exceeds the limit of {}", framed_bytes,
                        framed_bytes - 1));
  EXPECT_EQ(reread(framed, {.max_message_bytes = framed_bytes}).body.frames.at(0).bytes.size(),
            100U);
  // Read as the wrong type, or with fields missing or extra.
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<Blob>(reread(good)); }),
            "expected a 'blob' message, got 'handshake'");
  comm::Envelope lying = comm::pack(comm::Handshake{.role = "client"});
  lying.op = "blob";
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::unpack<Blob>(lying);
            }).rfind("malformed 'blob' message: ", 0),
            0U);
  comm::Envelope extra = comm::pack(comm::HandshakeReply{.accepted = true, .id = 3});
  extra.op = "handshake-reply";
  {
    tessera::Encoder e;
    comm::HandshakeReply{.accepted = true, .id = 3}.encode(e);
    e.write_uint(5);
    extra.body.header = e.finish_header();
  }
  EXPECT_EQ(error_of<comm::ProtocolError>([&] { comm::unpack<comm::HandshakeReply>(extra); }),
            "malformed 'handshake-reply' message: unexpected fields after the last one");
  EXPECT_EQ(error_of<comm::ProtocolError>([&] {
              comm::encode_head(comm::Envelope{"Bad Op", {}});
            }),
            "invalid op name 'Bad Op'");
  // A handshake that decodes but is refused.
  EXPECT_EQ(comm::check_handshake({.version = comm::kProtocolVersion + 1, .role = "client"}),
            "protocol version " + std::to_string(comm::kProtocolVersion + 1) +
                " is not supported (the scheduler speaks " +
                std::to_string(comm::kProtocolVersion) + ")");
  EXPECT_EQ(comm::check_handshake({.role = "spy"}),
            "unknown role 'spy' (expected client or worker)");
  EXPECT_EQ(comm::check_handshake({.role = "worker", .nthreads = 0}),
            "a worker needs at least one thread, not 0");
  EXPECT_EQ(comm::check_handshake({.role = "worker", .nthreads = 1, .address = "here"}),
            "a worker's data address must be tcp://host:port, not 'here'");
  for (const char* unreachable : {"tcp://0.0.0.0:5", "tcp://*:5", "tcp://:5", "tcp://h:0",
                                  "tcp://h:*", "tcp://h:", "tcp://h"}) {
    EXPECT_EQ(comm::check_handshake({.role = "worker", .nthreads = 1, .address = unreachable}),
              fmt::format("a worker's data address must name a host and port its peers can "
                          "reach, not '{}'",
                          unreachable));
  }
  EXPECT_EQ(comm::check_handshake({.role = "worker", .nthreads = 1, .address = "tcp://h:5"}), "");
}

// What a fuzzer does, in every build: random changes to valid messages either decode or
// raise ProtocolError (sanitizer builds also check that nothing reads out of bounds).
TEST(Messages, RandomMutationsNeverEscape) {
  std::mt19937_64 rng(42);
  const std::vector<std::vector<std::vector<std::byte>>> seeds = {
      wire(comm::pack(
          comm::Handshake{.role = "worker", .name = "n", .nthreads = 2, .address = "tcp://a:1"})),
      wire(comm::pack(comm::HandshakeReply{.accepted = false, .id = 1, .error = "no"})),
      wire(comm::pack(Blob{Key("k", {1, 2}), 5, bytes_of(40, 3)})),
  };
  size_t decoded = 0, refused = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    auto parts = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      auto& p = parts[rng() % parts.size()];
      switch (rng() % 4) {
        case 0:
          if (!p.empty()) p[rng() % p.size()] = static_cast<std::byte>(rng());
          break;
        case 1:
          p.resize(rng() % (p.size() + 1));
          break;
        case 2:
          p.insert(p.begin() + static_cast<long>(rng() % (p.size() + 1)),
                   static_cast<std::byte>(rng()));
          break;
        default:
          if (parts.size() > 1 && rng() % 2) {
            parts.pop_back();
          } else {
            parts.push_back(std::vector<std::byte>(rng() % 16));
          }
      }
    }
    try {
      const comm::Envelope env =
          reread(parts, {.max_header_bytes = 1 << 12, .max_frame_bytes = 1 << 12});
      if (env.op == "handshake") (void)comm::unpack<comm::Handshake>(env);
      if (env.op == "handshake-reply") (void)comm::unpack<comm::HandshakeReply>(env);
      if (env.op == "blob") (void)comm::unpack<Blob>(env);
      ++decoded;
    } catch (const comm::ProtocolError&) {
      ++refused;
    }
  }
  EXPECT_GT(decoded, 100U);
  EXPECT_GT(refused, 10000U);
}

TEST(Transport, LoopbackRoundTrip) {
  comm::Server server;
  EXPECT_EQ(server.address().rfind("tcp://127.0.0.1:", 0), 0U) << server.address();
  comm::Connection conn(server.address());
  ASSERT_TRUE(conn.send(comm::pack(comm::Handshake{.role = "client", .name = "c"})));
  auto in = server.receive(5s);
  ASSERT_TRUE(in.has_value());
  const auto h = comm::unpack<comm::Handshake>(in->message);
  EXPECT_EQ(h.name, "c");
  ASSERT_TRUE(server.send(in->peer, comm::pack(comm::HandshakeReply{.accepted = true, .id = 17})));
  auto reply = conn.receive(5s);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(comm::unpack<comm::HandshakeReply>(*reply).id, 17U);
  // A frame of 8 MB both ways.
  const Blob big{Key("big"), 1, bytes_of(8 << 20, 9)};
  ASSERT_TRUE(conn.send(comm::pack(big)));
  auto got = server.receive(5s);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*comm::unpack<Blob>(got->message).data, *big.data);
  ASSERT_TRUE(server.send(got->peer, comm::pack(big)));
  auto back = conn.receive(5s);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*comm::unpack<Blob>(*back).data, *big.data);
  // Waits end when they say.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(server.receive(50ms).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 45ms);
  EXPECT_FALSE(server.send("no-such-peer", comm::pack(comm::HandshakeReply{})));
}

TEST(Transport, InProcessConnectionsReachTheServerWithoutTheNetwork) {
  std::string local;
  std::unique_ptr<comm::Connection> survivor;
  {
    comm::Server server;
    local = server.local_address();
    EXPECT_EQ(local.rfind("inproc://tessera-server-", 0), 0U) << local;
    comm::Server other;  // each server its own in-process address
    EXPECT_NE(other.local_address(), local);
    comm::Connection tcp(server.address());
    auto conn = std::make_unique<comm::Connection>(local);
    ASSERT_TRUE(conn->send(comm::pack(comm::Handshake{.role = "client", .name = "in"})));
    ASSERT_TRUE(tcp.send(comm::pack(comm::Handshake{.role = "client", .name = "tcp"})));
    std::map<std::string, comm::PeerId> peers;  // both arrive on the one socket
    for (int i = 0; i < 2; ++i) {
      auto in = server.receive(5s);
      ASSERT_TRUE(in.has_value());
      peers[comm::unpack<comm::Handshake>(in->message).name] = in->peer;
    }
    ASSERT_EQ(peers.size(), 2U);
    const Blob big{Key("big"), 1, bytes_of(1 << 20, 3)};
    ASSERT_TRUE(server.send(peers.at("in"), comm::pack(big)));
    auto back = conn->receive(5s);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*comm::unpack<Blob>(*back).data, *big.data);
    EXPECT_FALSE(tcp.receive(50ms).has_value());  // and only to that peer
    survivor = std::move(conn);
  }
  // The connection outlived its server (it keeps the server's ZeroMQ context alive) and is
  // closed after it without blocking.
  EXPECT_FALSE(survivor->receive(10ms).has_value());
  survivor.reset();
  EXPECT_EQ(error_of<tessera::IOError>([&] { comm::Connection late(local); }),
            "cannot connect to '" + local + "': no server of this process listens there");
}

TEST(Transport, HostilePeersAreDroppedOthersServed) {
  comm::Server server("tcp://127.0.0.1:0", {.max_frame_bytes = 1 << 16});
  const std::string addr = server.address();
  const int port = std::stoi(addr.substr(addr.rfind(':') + 1));
  // Raw garbage on the port (not even ZeroMQ's greeting): that connection is dropped.
  const char junk[] = "\xff\x00\x00\x00\x00\x00\x00\x00\x7f GET / HTTP/1.1\r\n\r\n garbage";
  ASSERT_TRUE(tessera::testing::send_raw_tcp(port, std::string_view(junk, sizeof junk)));
  // A ZeroMQ peer speaking something else: its message is dropped and it is blocked, so
  // even its well-formed message afterwards is ignored.
  zmq::context_t ctx(1);
  zmq::socket_t rogue(ctx, zmq::socket_type::dealer);
  rogue.set(zmq::sockopt::linger, 0);
  rogue.connect(addr);
  rogue.send(zmq::str_buffer("hello, I am not tessera"), zmq::send_flags::none);
  const auto valid =
      comm::encode_head(comm::pack(comm::Handshake{.role = "client", .name = "rogue"}));
  // A truncated tessera head from a second rogue.
  zmq::socket_t rogue2(ctx, zmq::socket_type::dealer);
  rogue2.set(zmq::sockopt::linger, 0);
  rogue2.connect(addr);
  rogue2.send(zmq::buffer(valid.data(), 6), zmq::send_flags::none);
  // An oversized frame (the limit is 64 KiB): ZeroMQ drops that connection.
  comm::Connection huge(addr);
  ASSERT_TRUE(huge.send(comm::pack(Blob{Key("h"), 1, bytes_of(1 << 20, 1)})));
  EXPECT_FALSE(server.receive(500ms).has_value());
  EXPECT_EQ(server.dropped(), 2U);
  rogue.send(zmq::buffer(valid.data(), valid.size()), zmq::send_flags::none);
  // A good client is still served.
  comm::Connection good(addr);
  ASSERT_TRUE(good.send(comm::pack(comm::Handshake{.role = "client", .name = "good"})));
  const auto in = server.receive(5s);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(comm::unpack<comm::Handshake>(in->message).name, "good");
  EXPECT_FALSE(server.receive(200ms).has_value());
  EXPECT_EQ(server.dropped(), 3U);  // the rogue's valid message, ignored
  EXPECT_FALSE(server.last_error().empty());
}

TEST(Transport, AConnectionCountsDropsAndRefusals) {
  auto server = std::make_unique<comm::Server>();
  comm::Connection conn(server->address());
  ASSERT_TRUE(conn.send(comm::pack(comm::Handshake{.role = "client"})));
  ASSERT_TRUE(server->receive(2000ms).has_value());  // connected
  EXPECT_EQ(conn.disconnects(), 0U);
  const std::string address = server->address();
  server.reset();  // the peer goes away
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (conn.disconnects() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_GE(conn.disconnects(), 1U);
  // Nobody listens there any more: connecting is refused, and that counts too.
  comm::Connection nowhere(address);
  const auto later = std::chrono::steady_clock::now() + 3s;
  while (nowhere.disconnects() == 0 && std::chrono::steady_clock::now() < later)
    std::this_thread::sleep_for(5ms);
  EXPECT_GE(nowhere.disconnects(), 1U);
}

namespace {

// Waits until `cond` or 5 s pass.
template <class F>
bool eventually(F&& cond) {
  return tessera::testing::eventually(cond, 5s);
}

}  // namespace

TEST(Security, CurveAdmitsTheClusterKeyOnlyAndReportsRefusals) {
  const tessera::Security cluster = tessera::Security::generate();
  ASSERT_TRUE(cluster.enabled());
  EXPECT_EQ(cluster.public_key.size(), 40U);
  comm::Server server("tcp://127.0.0.1:0", {}, cluster);
  // The cluster's key: served, both ways, with a large frame.
  comm::Connection good(server.address(), {}, cluster);
  const Blob big{Key("big"), 1, bytes_of(1 << 20, 3)};
  ASSERT_TRUE(good.send(comm::pack(big)));
  auto in = server.receive(5s);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(*comm::unpack<Blob>(in->message).data, *big.data);
  ASSERT_TRUE(server.send(in->peer, comm::pack(comm::HandshakeReply{.accepted = true, .id = 5})));
  auto reply = good.receive(5s);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(comm::unpack<comm::HandshakeReply>(*reply).id, 5U);
  EXPECT_TRUE(server.take_refusals().empty());
  EXPECT_EQ(good.handshake_error(), "");

  // A peer that knows the server's public key but holds another key pair: the ZAP handler
  // refuses it, names its key, and the peer learns why.
  tessera::Security impostor = tessera::Security::generate();
  const std::string impostor_key = impostor.public_key;
  {
    // Connect with the right server key but the wrong client key, through raw ZeroMQ.
    zmq::context_t ctx(1);
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::curve_serverkey, cluster.public_key);
    s.set(zmq::sockopt::curve_publickey, impostor.public_key);
    s.set(zmq::sockopt::curve_secretkey, impostor.secret_key);
    s.connect(server.address());
    s.send(zmq::str_buffer("let me in"), zmq::send_flags::dontwait);
    std::vector<std::string> refusals;
    auto named = [&](const std::string& r) {
      return r.find(impostor_key.substr(0, 8)) != std::string::npos;
    };
    ASSERT_TRUE(eventually([&] {
      for (auto& r : server.take_refusals()) refusals.push_back(r);
      return std::any_of(refusals.begin(), refusals.end(), named);
    })) << ::testing::PrintToString(refusals);
    const std::string refusal = *std::find_if(refusals.begin(), refusals.end(), named);
    EXPECT_EQ(refusal.rfind("refused a connection from 127.0.0.1: its CURVE key ", 0), 0U)
        << refusal;
  }
  comm::Connection wrong(server.address(), {}, impostor);  // uses its own key as the server's
  // Another cluster's key altogether, and a peer without CURVE: both refused and reported,
  // and their messages never arrive.
  comm::Connection plain(server.address());
  ASSERT_TRUE(wrong.send(comm::pack(comm::Handshake{.role = "client", .name = "wrong"}), 100ms) ||
              true);
  ASSERT_TRUE(plain.send(comm::pack(comm::Handshake{.role = "client", .name = "plain"}), 100ms) ||
              true);
  size_t refused_before = server.refused();
  ASSERT_TRUE(eventually([&] {
    server.take_refusals();
    return server.refused() >= refused_before + 2;
  })) << server.refused();
  EXPECT_FALSE(server.receive(300ms).has_value());
  EXPECT_TRUE(eventually([&] { return !wrong.handshake_error().empty(); }));
  EXPECT_NE(wrong.handshake_error().find("CURVE"), std::string::npos) << wrong.handshake_error();
  // The good peer is still served.
  ASSERT_TRUE(good.send(comm::pack(comm::Handshake{.role = "client", .name = "again"})));
  in = server.receive(5s);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(comm::unpack<comm::Handshake>(in->message).name, "again");
}

TEST(Security, KeyFilesRoundTripAndBadOnesAreNamed) {
  const std::string dir = ::testing::TempDir() + "tessera-keys-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/cluster.key";
  std::filesystem::remove(path);
  const tessera::Security keys = tessera::Security::generate();
  keys.write(path);
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const auto back = tessera::Security::from_file(path);
  EXPECT_EQ(back.public_key, keys.public_key);
  EXPECT_EQ(back.secret_key, keys.secret_key);
  EXPECT_NE(error_of<tessera::IOError>([&] { keys.write(path); }).find("File exists"),
            std::string::npos);
  keys.write(path, /*overwrite=*/true);
  // Readable by others: refused, with the fix.
  std::filesystem::permissions(path, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  EXPECT_NE(error_of<tessera::IOError>([&] { tessera::Security::from_file(path); })
                .find("may be read by other users (mode 0640); whoever holds it can join the "
                      "cluster: chmod 600"),
            std::string::npos);
  // Malformed, and keys that do not belong together.
  auto write_text = [&](const std::string& text) {
    std::filesystem::remove(path);
    std::ofstream(path) << text;
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  };
  write_text("public-key = short\n");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { tessera::Security::from_file(path); }),
            "the key file '" + path +
                "' holds no CURVE key pair (lines 'public-key = ' and 'secret-key = ' with 40 "
                "Z85 characters each; tessera-keys writes such a file)");
  const auto other = tessera::Security::generate();
  write_text("public-key = " + other.public_key + "\nsecret-key = " + keys.secret_key + "\n");
  EXPECT_EQ(error_of<tessera::ValueError>([&] { tessera::Security::from_file(path); }),
            "the key file '" + path + "': its public key does not belong to its secret key");
  EXPECT_NE(error_of<tessera::IOError>([&] {
              tessera::Security::from_file(dir + "/none");
            }).find("cannot read the key file '" + dir + "/none': No such file"),
            std::string::npos);
  EXPECT_EQ(error_of<tessera::ValueError>([] { tessera::Security{}.write("/tmp/x"); }),
            "Security::write: there is no key pair to write");
  // The environment names the file for every program and client.
  write_text("public-key = " + keys.public_key + "\nsecret-key = " + keys.secret_key + "\n");
  ::setenv("TESSERA_CURVE_KEY_FILE", path.c_str(), 1);
  EXPECT_EQ(tessera::Security::from_environment().secret_key, keys.secret_key);
  ::unsetenv("TESSERA_CURVE_KEY_FILE");
  EXPECT_FALSE(tessera::Security::from_environment().enabled());
  std::filesystem::remove_all(dir);
}

// Messages between tessera processes (DESIGN.md decisions 4 and 7): an op name, fields
// written with core's Encoder (a msgpack header), and raw frames for large buffers, which
// travel as separate transport frames without passing through the encoder. Decoding is
// typed and bounded: a message is read only as the one type its op names, every size is
// checked against the limits and the bytes present, and nothing is ever built from bytes
// but the fields of that type.
//
//   struct Ping { static constexpr std::string_view kOp = "ping"; uint64_t n = 0;
//                 void encode(Encoder& e) const { e.write_uint(n); }
//                 static Ping decode(Decoder& d) { return {d.read_uint()}; } };
//   Envelope env = pack(Ping{7});
//   Ping p = unpack<Ping>(env);              // ProtocolError if env is not a valid ping
//
// On the wire (one transport message of 1 + frames parts): part 0 is the head — magic
// "TSRA", protocol version (u16), op length (u8), op, header bytes — and each frame follows
// as its own part.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/codec.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/key.hpp"
#include "tessera/core/serialize.hpp"

namespace tessera::comm {

// 2: small results inline; 3: worker-removed; 4: small task payloads in the header;
// 5: priority and retries in update-graph, a request number in steal requests.
inline constexpr uint16_t kProtocolVersion = 7;

// Bytes that break the protocol: a bad head, an unknown op where one is required, a
// message of the wrong type, a size over the limits.
class ProtocolError : public SerializationError {
 public:
  using SerializationError::SerializationError;
};

// Bounds on what a peer may send.
struct Limits {
  size_t max_header_bytes = size_t{256} << 20;  // a graph of 1M tasks takes about 100 MB
  size_t max_frame_bytes = size_t{1} << 31;     // also the transport's per-part limit
  size_t max_frames = 1 << 16;
  // Head and frames together; no cap by default. A check on what a message may hold, not a
  // bound on memory: ZeroMQ has received every part before it can be counted (the per-part
  // limit above is the bound: ZeroMQ drops a connection whose part passes it). A reply to
  // get-data holds whatever was asked, so a cap here must leave room for the largest.
  size_t max_message_bytes = SIZE_MAX;
  size_t max_depth = 32;
};

// One message: its op and its body (header and frames).
struct Envelope {
  std::string op;
  Message body;
};

// The head part of `env` on the wire.
std::vector<std::byte> encode_head(const Envelope& env);
// Parses a message from its parts (head, then frames). The frames keep pointing into
// `parts`' memory, kept alive by `owner`. ProtocolError naming what is wrong.
Envelope decode_parts(std::span<const std::span<const std::byte>> parts,
                      std::shared_ptr<const void> owner, const Limits& limits = {});

// Keys as fields: [name, [index...]].
void write_key(Encoder& e, const Key& k);
Key read_key(Decoder& d);
void write_keys(Encoder& e, std::span<const Key> keys);
std::vector<Key> read_keys(Decoder& d, size_t max_count);

// A message type M has `static constexpr std::string_view kOp`, `void encode(Encoder&)
// const` and `static M decode(Decoder&)`.
template <class M>
Envelope pack(const M& m) {
  Encoder e;
  m.encode(e);
  Envelope env{std::string(M::kOp), {}};
  env.body.header = e.finish_header();
  env.body.frames = std::move(e.frames());
  return env;
}

namespace detail {
[[noreturn]] void wrong_op(std::string_view want, std::string_view got);
[[noreturn]] void bad_fields(std::string_view op, std::string_view what);
void check_end(Decoder& d, std::string_view op);
}  // namespace detail

// Reads `env` as an M; ProtocolError if it is another op or its fields do not decode.
template <class M>
M unpack(const Envelope& env, const Limits& limits = {}) {
  if (env.op != M::kOp) detail::wrong_op(M::kOp, env.op);
  try {
    Decoder d(env.body.header, env.body.frames, limits.max_depth);
    M m = M::decode(d);
    detail::check_end(d, M::kOp);
    return m;
  } catch (const ProtocolError&) {
    throw;
  } catch (const Error& e) {
    detail::bad_fields(M::kOp, e.what());
  }
}

// ---- batches ----

// Several messages sent as one transport message (op "batch"), so that a busy peer's
// messages cost one send and one wake-up: each inner message's op, header and frame count
// in the batch's header, its frames in order among the batch's frames (not copied).
inline constexpr std::string_view kBatchOp = "batch";
// One message as itself, several as a batch. `messages` must not hold a batch.
Envelope pack_batch(std::vector<Envelope> messages);
// `messages` as few batches as stay within `limits` (frames; header and total bytes, with
// room to spare) and 4096 messages each.
std::vector<Envelope> pack_batches(std::vector<Envelope> messages, const Limits& limits = {});
// The messages of a batch, or `env` alone if it is not one. ProtocolError for a malformed
// batch or a batch inside a batch; the limits apply to every inner message.
std::vector<Envelope> unpack_batch(Envelope env, const Limits& limits = {});

// ---- the messages every connection starts with ----

// First message of every connection: who is calling, speaking which protocol version.
struct Handshake {
  static constexpr std::string_view kOp = "handshake";
  uint16_t version = kProtocolVersion;
  std::string role{};  // "client" or "worker"
  std::string name{};
  int nthreads = 0;       // workers
  std::string address{};  // workers: where their data server listens
  uint64_t memory_limit = 0;  // workers: bytes (0: none)
  void encode(Encoder& e) const;
  static Handshake decode(Decoder& d);
};

// The answer: accepted (with the id the peer is known by) or refused (with why).
struct HandshakeReply {
  static constexpr std::string_view kOp = "handshake-reply";
  bool accepted = false;
  uint32_t id = 0;
  std::string error{};
  void encode(Encoder& e) const;
  static HandshakeReply decode(Decoder& d);
};

// Checks a handshake: the version and role; the refusal's text otherwise (empty when fine).
std::string check_handshake(const Handshake& h);

}  // namespace tessera::comm

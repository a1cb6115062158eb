#include "comm/message.hpp"

#include "comm/address.hpp"
#include "tessera/core/error.hpp"

#include <fmt/format.h>

#include <cstring>

namespace tessera::comm {

namespace {

constexpr char kMagic[4] = {'T', 'S', 'R', 'A'};
constexpr size_t kMaxOp = 64;

bool valid_op(std::string_view op) {
  if (op.empty() || op.size() > kMaxOp) return false;
  for (char c : op) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

std::vector<std::byte> encode_head(const Envelope& env) {
  if (!valid_op(env.op)) throw ProtocolError(fmt::format("invalid op name '{}'", env.op));
  std::vector<std::byte> out(4 + 2 + 1 + env.op.size() + env.body.header.size());
  std::byte* p = out.data();
  std::memcpy(p, kMagic, 4);
  p[4] = static_cast<std::byte>(kProtocolVersion & 0xff);
  p[5] = static_cast<std::byte>(kProtocolVersion >> 8);
  p[6] = static_cast<std::byte>(env.op.size());
  std::memcpy(p + 7, env.op.data(), env.op.size());
  if (!env.body.header.empty())
    std::memcpy(p + 7 + env.op.size(), env.body.header.data(), env.body.header.size());
  return out;
}

Envelope decode_parts(std::span<const std::span<const std::byte>> parts,
                      std::shared_ptr<const void> owner, const Limits& limits) {
  if (parts.empty()) throw ProtocolError("empty message");
  const auto head = parts[0];
  if (head.size() < 7 || std::memcmp(head.data(), kMagic, 4) != 0)
    throw ProtocolError("not a tessera message (bad magic)");
  const auto version =
      static_cast<uint16_t>(static_cast<unsigned>(head[4]) | (static_cast<unsigned>(head[5]) << 8));
  if (version != kProtocolVersion) {
    throw ProtocolError(fmt::format("protocol version {} is not supported (this process speaks {})",
                                    version, kProtocolVersion));
  }
  const auto op_len = static_cast<size_t>(head[6]);
  if (7 + op_len > head.size()) throw ProtocolError("truncated message head");
  std::string op(reinterpret_cast<const char*>(head.data() + 7), op_len);
  if (!valid_op(op)) throw ProtocolError("invalid op name in message head");
  const size_t header_bytes = head.size() - 7 - op_len;
  if (header_bytes > limits.max_header_bytes) {
    throw ProtocolError(fmt::format("'{}' message header of {} bytes exceeds the limit of {}", op,
                                    header_bytes, limits.max_header_bytes));
  }
  if (parts.size() - 1 > limits.max_frames) {
    throw ProtocolError(fmt::format("'{}' message has {} frames, more than the limit of {}", op,
                                    parts.size() - 1, limits.max_frames));
  }
  size_t total = head.size();
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i].size() > limits.max_frame_bytes) {
      throw ProtocolError(fmt::format("'{}' message frame of {} bytes exceeds the limit of {}", op,
                                      parts[i].size(), limits.max_frame_bytes));
    }
    total += parts[i].size();
  }
  if (total > limits.max_message_bytes) {
    throw ProtocolError(fmt::format("'{}' message of {} bytes exceeds the limit of {}", op, total,
                                    limits.max_message_bytes));
  }
  Envelope env{std::move(op), {}};
  env.body.header.assign(head.begin() + 7 + static_cast<std::ptrdiff_t>(op_len), head.end());
  env.body.frames.reserve(parts.size() - 1);
  for (size_t i = 1; i < parts.size(); ++i) env.body.frames.push_back(Frame{parts[i], owner});
  return env;
}

void write_key(Encoder& e, const Key& k) {
  e.begin_array(2);
  e.write_string(k.name());
  const auto idx = k.index();
  e.begin_array(idx.size());
  for (int64_t i : idx) e.write_int(i);
}

Key read_key(Decoder& d) {
  if (d.read_array() != 2) throw ProtocolError("a key is [name, [index...]]");
  const std::string name = d.read_string();
  if (name.empty()) throw ProtocolError("a key has an empty name");
  const size_t n = d.read_array();
  if (n > 32) throw ProtocolError(fmt::format("key '{}' has an index of {} entries", name, n));
  std::vector<int64_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = d.read_int();
  return n == 0 ? Key(name) : Key(name, idx);
}

void write_keys(Encoder& e, std::span<const Key> keys) {
  e.begin_array(keys.size());
  for (const Key& k : keys) write_key(e, k);
}

std::vector<Key> read_keys(Decoder& d, size_t max_count) {
  const size_t n = d.read_array();
  if (n > max_count)
    throw ProtocolError(fmt::format("{} keys, more than the limit of {}", n, max_count));
  std::vector<Key> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(read_key(d));
  return out;
}

namespace detail {

void wrong_op(std::string_view want, std::string_view got) {
  throw ProtocolError(fmt::format("expected a '{}' message, got '{}'", want, got));
}

void bad_fields(std::string_view op, std::string_view what) {
  throw ProtocolError(fmt::format("malformed '{}' message: {}", op, what));
}

void check_end(Decoder& d, std::string_view op) {
  if (!d.at_end()) bad_fields(op, "unexpected fields after the last one");
}

}  // namespace detail

void Handshake::encode(Encoder& e) const {
  e.write_uint(version);
  e.write_string(role);
  e.write_string(name);
  e.write_int(nthreads);
  e.write_string(address);
  e.write_uint(memory_limit);
}

Handshake Handshake::decode(Decoder& d) {
  Handshake h;
  const uint64_t v = d.read_uint();
  if (v > 0xffff) throw ProtocolError("handshake version out of range");
  h.version = static_cast<uint16_t>(v);
  h.role = d.read_string();
  h.name = d.read_string();
  const int64_t n = d.read_int();
  if (n < 0 || n > 1 << 16)
    throw ProtocolError(fmt::format("handshake nthreads {} out of range", n));
  h.nthreads = static_cast<int>(n);
  h.address = d.read_string();
  h.memory_limit = d.read_uint();
  return h;
}

void HandshakeReply::encode(Encoder& e) const {
  e.write_bool(accepted);
  e.write_uint(id);
  e.write_string(error);
}

HandshakeReply HandshakeReply::decode(Decoder& d) {
  HandshakeReply r;
  r.accepted = d.read_bool();
  const uint64_t id = d.read_uint();
  if (id > UINT32_MAX) throw ProtocolError("handshake id out of range");
  r.id = static_cast<uint32_t>(id);
  r.error = d.read_string();
  return r;
}

std::string check_handshake(const Handshake& h) {
  if (h.version != kProtocolVersion) {
    return fmt::format("protocol version {} is not supported (the scheduler speaks {})", h.version,
                       kProtocolVersion);
  }
  if (h.role != "client" && h.role != "worker")
    return fmt::format("unknown role '{}' (expected client or worker)", h.role);
  if (h.role == "worker" && h.nthreads < 1)
    return fmt::format("a worker needs at least one thread, not {}", h.nthreads);
  if (h.role == "worker" && h.address.rfind("tcp://", 0) != 0)
    return fmt::format("a worker's data address must be tcp://host:port, not '{}'", h.address);
  if (h.role == "worker") {
    bool reachable = false;
    try {
      const TcpAddress a = split_tcp_address(h.address, "a worker's data address");
      reachable = !is_wildcard_host(a.host) && a.port != "0" && a.port != "*";
    } catch (const ValueError&) {
    }
    if (!reachable) {
      return fmt::format(
          "a worker's data address must name a host and port its peers can reach, not '{}'",
          h.address);
    }
  }
  if (h.name.size() > 256) return "name longer than 256 bytes";
  return {};
}

Envelope pack_batch(std::vector<Envelope> messages) {
  if (messages.size() == 1) return std::move(messages[0]);
  Encoder e;
  e.begin_array(messages.size());
  for (const Envelope& m : messages) {
    if (m.op == kBatchOp) throw ProtocolError("a batch cannot hold a batch");
    e.begin_array(3);
    e.write_string(m.op);
    e.write_bytes(m.body.header);
    e.write_uint(m.body.frames.size());
  }
  Envelope out{std::string(kBatchOp), {}};
  out.body.header = e.finish_header();
  size_t frames = 0;
  for (const Envelope& m : messages) frames += m.body.frames.size();
  out.body.frames.reserve(frames);
  for (Envelope& m : messages) {
    for (Frame& f : m.body.frames) out.body.frames.push_back(std::move(f));
  }
  return out;
}

std::vector<Envelope> pack_batches(std::vector<Envelope> messages, const Limits& limits) {
  std::vector<Envelope> out, part;
  size_t frames = 0, header = 0, bytes = 0;
  for (Envelope& m : messages) {
    const size_t f = m.body.frames.size(), h = m.body.header.size() + m.op.size() + 16;
    const size_t b = m.body.nbytes() + m.op.size() + 16;  // h and the frames
    if (!part.empty() &&
        (part.size() == 4096 || frames + f > limits.max_frames ||
         header + h > limits.max_header_bytes / 2 || bytes + b > limits.max_message_bytes / 2)) {
      out.push_back(pack_batch(std::move(part)));
      part.clear();
      frames = header = bytes = 0;
    }
    frames += f;
    header += h;
    bytes += b;
    part.push_back(std::move(m));
  }
  if (!part.empty()) out.push_back(pack_batch(std::move(part)));
  return out;
}

std::vector<Envelope> unpack_batch(Envelope env, const Limits& limits) {
  std::vector<Envelope> out;
  if (env.op != kBatchOp) {
    out.push_back(std::move(env));
    return out;
  }
  try {
    Decoder d(env.body.header, {}, limits.max_depth);
    const size_t n = d.read_array();
    if (n > env.body.header.size()) throw ProtocolError("batch: more messages than header bytes");
    out.reserve(n);
    size_t frame = 0;
    for (size_t i = 0; i < n; ++i) {
      if (d.read_array() != 3) throw ProtocolError("batch: an entry is not [op, header, frames]");
      Envelope m{d.read_string(), {}};
      if (!valid_op(m.op) || m.op == kBatchOp)
        throw ProtocolError(fmt::format("batch: invalid inner op '{}'", m.op));
      m.body.header = d.read_bytes();
      if (m.body.header.size() > limits.max_header_bytes) {
        throw ProtocolError(fmt::format("batch: '{}' header of {} bytes exceeds the limit of {}",
                                        m.op, m.body.header.size(), limits.max_header_bytes));
      }
      const uint64_t count = d.read_uint();
      if (count > env.body.frames.size() - frame)
        throw ProtocolError(fmt::format("batch: '{}' claims more frames than the batch has", m.op));
      m.body.frames.assign(env.body.frames.begin() + static_cast<std::ptrdiff_t>(frame),
                           env.body.frames.begin() + static_cast<std::ptrdiff_t>(frame + count));
      frame += count;
      out.push_back(std::move(m));
    }
    detail::check_end(d, kBatchOp);
    if (frame != env.body.frames.size()) throw ProtocolError("batch: frames left over");
  } catch (const ProtocolError&) {
    throw;
  } catch (const Error& e) {
    detail::bad_fields(kBatchOp, e.what());
  }
  return out;
}

}  // namespace tessera::comm

#include "tessera/core/serialize.hpp"

#include <fmt/format.h>

#include <cstring>

#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera {

namespace {

constexpr std::string_view kGraphTag = "tessera-graph";
constexpr uint64_t kGraphVersion = 1;
constexpr char kMagic[4] = {'T', 'S', 'R', 'A'};
constexpr uint32_t kBytesVersion = 1;

enum : uint64_t { kArgValue = 0, kArgRef = 1, kArgList = 2, kArgTask = 3 };

void encode_key(const Key& k, Encoder& e) {
  e.begin_array(2);
  e.write_string(k.name());
  e.begin_array(k.index().size());
  for (int64_t i : k.index()) e.write_int(i);
}

void encode_task(const Key& owner, const Task& t, Encoder& e);

void encode_args(const Key& owner, std::span<const Arg> args, Encoder& e) {
  e.begin_array(args.size());
  for (const Arg& a : args) {
    e.begin_array(2);
    switch (a.kind()) {
      case Arg::Kind::kValue:
        e.write_uint(kArgValue);
        try {
          e.write_value(a.value());
        } catch (const SerializationError& err) {
          throw SerializationError(fmt::format("task '{}': {}", owner.str(), err.what()));
        }
        break;
      case Arg::Kind::kRef:
        e.write_uint(kArgRef);
        encode_key(a.ref(), e);
        break;
      case Arg::Kind::kList:
        e.write_uint(kArgList);
        encode_args(owner, a.list(), e);
        break;
      case Arg::Kind::kTask:
        e.write_uint(kArgTask);
        encode_task(owner, a.task(), e);
        break;
    }
  }
}

void encode_task(const Key& owner, const Task& t, Encoder& e) {
  e.begin_array(2);
  if (const Op* op = t.op()) {
    if (!op->registered) {
      throw SerializationError(
          fmt::format("task '{}' calls '{}', a closure that cannot be sent to another process: "
                      "register the function with "
                      "TESSERA_REGISTER and call it by name",
                      owner.str(), op->name));
    }
    e.write_string(op->name);
  } else {
    e.write_nil();
  }
  encode_args(owner, t.args(), e);
}

struct GraphDecoder {
  Decoder& d;
  const DecodeLimits& limits;
  size_t depth = 0;

  Key key() {
    if (d.read_array() != 2) throw SerializationError("a key must be [name, index]");
    std::string name = d.read_string();
    const size_t n = d.read_array();
    std::vector<int64_t> idx(n);
    for (size_t i = 0; i < n; ++i) idx[i] = d.read_int();
    return Key(name, idx);
  }

  std::vector<Arg> args(const Key& owner) {
    if (++depth > limits.max_depth)
      throw SerializationError(fmt::format("task '{}' is nested too deeply", owner.str()));
    const size_t n = d.read_array();
    std::vector<Arg> out;
    for (size_t i = 0; i < n; ++i) {
      if (d.read_array() != 2)
        throw SerializationError(fmt::format("task '{}': malformed argument", owner.str()));
      switch (d.read_uint()) {
        case kArgValue:
          out.emplace_back(d.read_value());
          break;
        case kArgRef:
          out.push_back(Arg::ref(key()));
          break;
        case kArgList:
          out.push_back(Arg::list(args(owner)));
          break;
        case kArgTask:
          out.push_back(Arg::task(task(owner)));
          break;
        default:
          throw SerializationError(fmt::format("task '{}': unknown argument kind", owner.str()));
      }
    }
    --depth;
    return out;
  }

  Task task(const Key& owner) {
    if (d.read_array() != 2)
      throw SerializationError(fmt::format("task '{}' must be [op, args]", owner.str()));
    const Op* op = nullptr;
    if (d.next_is_nil()) {
      d.read_nil();
    } else {
      const std::string name = d.read_string();
      try {
        op = &get_op(name);  // OpError says why not: unknown, or registered twice
      } catch (const OpError& e) {
        throw OpError(fmt::format("task '{}': {}", owner.str(), e.what()));
      }
    }
    std::vector<Arg> a = args(owner);
    if (op) return Task::call(*op, std::move(a));
    if (a.size() != 1)
      throw SerializationError(
          fmt::format("task '{}' without op must have one argument", owner.str()));
    return Task::of_arg(std::move(a[0]));
  }
};

}  // namespace

size_t Message::nbytes() const noexcept {
  size_t n = header.size();
  for (const Frame& f : frames) n += f.bytes.size();
  return n;
}

namespace {

Message finish(Encoder& e) {
  Message m;
  m.header = e.finish_header();
  m.frames = std::move(e.frames());
  return m;
}

void check_limits(const Message& m, const DecodeLimits& limits) {
  if (m.header.size() > limits.max_header_bytes) {
    throw SerializationError(fmt::format("message header of {} bytes exceeds the limit of {}",
                                         m.header.size(), limits.max_header_bytes));
  }
  if (m.frames.size() > limits.max_frames) {
    throw SerializationError(fmt::format("message has {} frames, more than the limit of {}",
                                         m.frames.size(), limits.max_frames));
  }
}

}  // namespace

Message encode_value(const Value& v) {
  Encoder e;
  e.write_value(v);
  return finish(e);
}

Value decode_value(const Message& m, const DecodeLimits& limits) {
  check_limits(m, limits);
  Decoder d(m.header, m.frames);
  Value v = d.read_value();
  if (!d.at_end()) throw SerializationError("trailing items after the value");
  return v;
}

Message encode_graph(const Graph& graph) {
  Encoder e;
  e.write_string(kGraphTag);
  e.write_uint(kGraphVersion);
  e.write_uint(graph.size());
  for (const Graph::Entry& entry : graph.entries()) {
    encode_key(entry.key, e);
    encode_task(entry.key, *entry.task, e);
  }
  return finish(e);
}

Graph decode_graph(const Message& m, const DecodeLimits& limits) {
  check_limits(m, limits);
  // Each nested task adds three levels (argument, task, argument list) to the header.
  Decoder d(m.header, m.frames, 3 * limits.max_depth + 8);
  if (d.read_string() != kGraphTag) throw SerializationError("not a tessera graph message");
  const uint64_t version = d.read_uint();
  if (version != kGraphVersion) {
    throw SerializationError(fmt::format(
        "graph message version {} is not supported (this build reads {})", version, kGraphVersion));
  }
  const uint64_t n = d.read_uint();
  Graph g;
  // The count comes from the bytes: reserve only what the header could really hold (an
  // encoded task takes well over 16 bytes), so a lying count cannot make us allocate
  // many times the input.
  g.reserve(static_cast<size_t>(std::min<uint64_t>(n, m.header.size() / 16)));
  GraphDecoder gd{d, limits};
  for (uint64_t i = 0; i < n; ++i) {
    Key k = gd.key();
    Task t = gd.task(k);
    if (!g.add(k, std::move(t)))
      throw SerializationError(fmt::format("key '{}' appears twice", k.str()));
  }
  if (!d.at_end()) throw SerializationError("trailing items after the graph");
  return g;
}

namespace {

size_t padded(size_t n) {
  return (n + 7) & ~size_t{7};
}

template <class T>
void put(std::vector<std::byte>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

}  // namespace

std::vector<std::byte> to_bytes(const Message& m) {
  std::vector<std::byte> out;
  size_t total = 24 + 8 * m.frames.size() + padded(m.header.size());
  for (const Frame& f : m.frames) total += padded(f.bytes.size());
  out.reserve(total);
  uint32_t magic;
  std::memcpy(&magic, kMagic, 4);
  put<uint32_t>(out, magic);
  put<uint32_t>(out, kBytesVersion);
  put<uint64_t>(out, m.header.size());
  put<uint64_t>(out, m.frames.size());
  for (const Frame& f : m.frames) put<uint64_t>(out, f.bytes.size());
  out.insert(out.end(), m.header.begin(), m.header.end());
  out.resize(padded(out.size()));
  for (const Frame& f : m.frames) {
    out.insert(out.end(), f.bytes.begin(), f.bytes.end());
    out.resize(padded(out.size()));
  }
  return out;
}

Message from_bytes(std::shared_ptr<const std::vector<std::byte>> bytes,
                   const DecodeLimits& limits) {
  if (!bytes) throw SerializationError("from_bytes: null buffer");
  const std::vector<std::byte>& b = *bytes;
  auto fail = [&](const char* what) -> SerializationError {
    return SerializationError(fmt::format("malformed message ({} bytes): {}", b.size(), what));
  };
  auto get = [&](size_t at, auto& v) {
    if (at + sizeof(v) > b.size()) throw fail("truncated");
    std::memcpy(&v, b.data() + at, sizeof(v));
  };
  if (b.size() < 24 || std::memcmp(b.data(), kMagic, 4) != 0) throw fail("bad magic");
  uint32_t version;
  uint64_t header_len, nframes;
  get(4, version);
  get(8, header_len);
  get(16, nframes);
  if (version != kBytesVersion) throw fail("unsupported version");
  if (header_len > limits.max_header_bytes || header_len > b.size()) throw fail("header too large");
  if (nframes > limits.max_frames || nframes > b.size() / 8) throw fail("too many frames");
  size_t at = 24;
  std::vector<uint64_t> lengths(nframes);
  for (auto& len : lengths) {
    get(at, len);
    at += 8;
  }
  Message m;
  if (header_len > b.size() - at) throw fail("truncated header");
  m.header.assign(b.begin() + static_cast<ptrdiff_t>(at),
                  b.begin() + static_cast<ptrdiff_t>(at + header_len));
  at = padded(at + header_len);
  for (uint64_t len : lengths) {
    if (at > b.size() || len > b.size() - at) throw fail("truncated frame");
    m.frames.push_back(Frame{std::span(b.data() + at, len), bytes});
    at = padded(at + len);
  }
  if (at < b.size()) throw fail("trailing bytes");
  return m;
}

Message from_bytes(std::span<const std::byte> bytes, const DecodeLimits& limits) {
  return from_bytes(std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end()),
                    limits);
}

}  // namespace tessera

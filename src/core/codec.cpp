// Encoder and Decoder on msgpack-cxx. Frames are referenced by index through a msgpack
// ext item (type 1, 4 bytes), so they never pass through the packer.
#include "tessera/core/codec.hpp"

#include <fmt/format.h>

#include <cstring>
#include <msgpack.hpp>

#include "tessera/core/error.hpp"
#include "tessera/core/value.hpp"

namespace tessera {

namespace {

constexpr int8_t kFrameExt = 1;
constexpr size_t kMaxValueDepth = 64;

const char* type_name_of(msgpack::type::object_type t) {
  switch (t) {
    case msgpack::type::NIL:
      return "nil";
    case msgpack::type::BOOLEAN:
      return "bool";
    case msgpack::type::POSITIVE_INTEGER:
      return "unsigned integer";
    case msgpack::type::NEGATIVE_INTEGER:
      return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "float";
    case msgpack::type::STR:
      return "string";
    case msgpack::type::BIN:
      return "bytes";
    case msgpack::type::ARRAY:
      return "array";
    case msgpack::type::MAP:
      return "map";
    case msgpack::type::EXT:
      return "ext";
  }
  return "unknown";
}

}  // namespace

// ---- Encoder ---------------------------------------------------------------------------

struct Encoder::Impl {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  size_t top_count = 0;
  std::vector<size_t> open;  // items still expected by each open container
  std::vector<Frame> own_frames;
  std::vector<Frame>* frames = &own_frames;
  std::shared_ptr<const void> value_owner;  // keeps the value being encoded alive
  size_t depth = 0;

  void item() {
    if (open.empty()) {
      ++top_count;
    } else if (--open.back() == 0) {
      open.pop_back();
    }
  }
};

Encoder::Encoder() : impl_(std::make_unique<Impl>()) {}
Encoder::~Encoder() = default;

void Encoder::write_nil() {
  impl_->item();
  impl_->pk.pack_nil();
}
void Encoder::write_bool(bool v) {
  impl_->item();
  v ? impl_->pk.pack_true() : impl_->pk.pack_false();
}
void Encoder::write_int(int64_t v) {
  impl_->item();
  impl_->pk.pack_int64(v);
}
void Encoder::write_uint(uint64_t v) {
  impl_->item();
  impl_->pk.pack_uint64(v);
}
void Encoder::write_double(double v) {
  impl_->item();
  impl_->pk.pack_double(v);
}
void Encoder::write_string(std::string_view v) {
  impl_->item();
  impl_->pk.pack_str(static_cast<uint32_t>(v.size()));
  impl_->pk.pack_str_body(v.data(), static_cast<uint32_t>(v.size()));
}
void Encoder::write_bytes(std::span<const std::byte> v) {
  impl_->item();
  impl_->pk.pack_bin(static_cast<uint32_t>(v.size()));
  impl_->pk.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<uint32_t>(v.size()));
}
void Encoder::begin_array(size_t n) {
  impl_->item();
  impl_->pk.pack_array(static_cast<uint32_t>(n));
  if (n) impl_->open.push_back(n);
}
void Encoder::begin_map(size_t n) {
  impl_->item();
  impl_->pk.pack_map(static_cast<uint32_t>(n));
  if (n) impl_->open.push_back(2 * n);
}
void Encoder::write_frame(std::span<const std::byte> bytes, std::shared_ptr<const void> owner) {
  impl_->item();
  const auto index = static_cast<uint32_t>(impl_->frames->size());
  impl_->frames->push_back(Frame{bytes, owner ? std::move(owner) : impl_->value_owner});
  impl_->pk.pack_ext(4, kFrameExt);
  char le[4];
  std::memcpy(le, &index, 4);
  impl_->pk.pack_ext_body(le, 4);
}

void Encoder::write_value(const Value& v) {
  if (v.is_none()) {
    write_nil();
    return;
  }
  const TypeInfo& t = v.type();
  if (!t.encode) {
    throw SerializationError(
        fmt::format("values of type '{}' have no codec and cannot leave this process: specialize "
                    "tessera::Codec<{}>",
                    t.name, t.name));
  }
  if (impl_->depth >= kMaxValueDepth)
    throw SerializationError("values nested too deeply to encode");
  Encoder child;
  child.impl_->frames = impl_->frames;
  child.impl_->value_owner = std::make_shared<const Value>(v);
  child.impl_->depth = impl_->depth + 1;
  t.encode(v, child);
  std::vector<std::byte> payload = child.finish_header();
  begin_array(2);
  write_string(t.name);
  write_bytes(payload);
}

std::vector<std::byte> Encoder::finish_header() {
  if (!impl_->open.empty()) {
    throw SerializationError(fmt::format(
        "encoder finished with an incomplete array or map ({} items missing)", impl_->open.back()));
  }
  msgpack::sbuffer head;
  msgpack::packer<msgpack::sbuffer> pk(head);
  pk.pack_array(static_cast<uint32_t>(impl_->top_count));
  std::vector<std::byte> out(head.size() + impl_->buf.size());
  std::memcpy(out.data(), head.data(), head.size());
  if (impl_->buf.size())
    std::memcpy(out.data() + head.size(), impl_->buf.data(), impl_->buf.size());
  return out;
}

std::vector<Frame>& Encoder::frames() {
  return *impl_->frames;
}

// ---- Decoder ---------------------------------------------------------------------------

struct Decoder::Impl {
  msgpack::object_handle handle;
  std::span<const Frame> frames;
  struct Level {
    const msgpack::object* items;
    size_t remaining;
  };
  std::vector<Level> levels;
  size_t depth = 0;

  void pop_finished() {
    while (levels.size() > 1 && levels.back().remaining == 0) levels.pop_back();
  }
  const msgpack::object& next(const char* wanted) {
    pop_finished();
    Level& l = levels.back();
    if (l.remaining == 0)
      throw SerializationError(fmt::format("expected {}, but the data ended", wanted));
    --l.remaining;
    return *l.items++;
  }
  const msgpack::object& next_of(msgpack::type::object_type t, const char* wanted) {
    const msgpack::object& o = next(wanted);
    if (o.type != t) {
      throw SerializationError(fmt::format("expected {}, found {}", wanted, type_name_of(o.type)));
    }
    return o;
  }
};

Decoder::Decoder(std::span<const std::byte> header, std::span<const Frame> frames,
                 size_t max_nesting)
    : impl_(std::make_unique<Impl>()) {
  impl_->frames = frames;
  // No container can hold more items than there are bytes, so each array or map the parser
  // reads is limited to `n` items. The parser allocates a container's items when it reads
  // its header, so a truncated message can reserve up to depth x 24 x n bytes of address
  // space before failing (mostly never touched); the nesting limit keeps that bounded.
  const size_t n = header.size();
  msgpack::unpack_limit limit(n, n, n, n, n, max_nesting);
  size_t off = 0;
  try {
    impl_->handle = msgpack::unpack(reinterpret_cast<const char*>(header.data()), n, off, nullptr,
                                    nullptr, limit);
  } catch (const std::exception& e) {
    throw SerializationError(fmt::format("malformed message header ({} bytes): {}", n, e.what()));
  }
  if (off != n)
    throw SerializationError(fmt::format("message header has {} trailing bytes", n - off));
  const msgpack::object& root = impl_->handle.get();
  if (root.type != msgpack::type::ARRAY) {
    throw SerializationError(
        fmt::format("message header must be an array, found {}", type_name_of(root.type)));
  }
  impl_->levels.push_back({root.via.array.ptr, root.via.array.size});
}

Decoder::~Decoder() = default;

bool Decoder::at_end() const {
  impl_->pop_finished();
  return impl_->levels.size() == 1 && impl_->levels.back().remaining == 0;
}

bool Decoder::next_is_nil() const {
  impl_->pop_finished();
  const auto& l = impl_->levels.back();
  return l.remaining > 0 && l.items->type == msgpack::type::NIL;
}

void Decoder::read_nil() {
  impl_->next_of(msgpack::type::NIL, "nil");
}

bool Decoder::read_bool() {
  return impl_->next_of(msgpack::type::BOOLEAN, "bool").via.boolean;
}

int64_t Decoder::read_int() {
  const msgpack::object& o = impl_->next("integer");
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<uint64_t>(INT64_MAX))
      throw SerializationError("integer out of int64 range");
    return static_cast<int64_t>(o.via.u64);
  }
  throw SerializationError(fmt::format("expected integer, found {}", type_name_of(o.type)));
}

uint64_t Decoder::read_uint() {
  const msgpack::object& o = impl_->next("unsigned integer");
  if (o.type == msgpack::type::POSITIVE_INTEGER) return o.via.u64;
  throw SerializationError(
      fmt::format("expected unsigned integer, found {}", type_name_of(o.type)));
}

double Decoder::read_double() {
  const msgpack::object& o = impl_->next("float");
  switch (o.type) {
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return o.via.f64;
    case msgpack::type::POSITIVE_INTEGER:
      return static_cast<double>(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return static_cast<double>(o.via.i64);
    default:
      throw SerializationError(fmt::format("expected float, found {}", type_name_of(o.type)));
  }
}

std::string Decoder::read_string() {
  const msgpack::object& o = impl_->next_of(msgpack::type::STR, "string");
  return std::string(o.via.str.ptr, o.via.str.size);
}

std::vector<std::byte> Decoder::read_bytes() {
  const msgpack::object& o = impl_->next_of(msgpack::type::BIN, "bytes");
  const auto* p = reinterpret_cast<const std::byte*>(o.via.bin.ptr);
  return std::vector<std::byte>(p, p + o.via.bin.size);
}

size_t Decoder::read_array() {
  const msgpack::object& o = impl_->next_of(msgpack::type::ARRAY, "array");
  if (o.via.array.size) impl_->levels.push_back({o.via.array.ptr, o.via.array.size});
  return o.via.array.size;
}

size_t Decoder::read_map() {
  const msgpack::object& o = impl_->next_of(msgpack::type::MAP, "map");
  static_assert(sizeof(msgpack::object_kv) == 2 * sizeof(msgpack::object));
  if (o.via.map.size) {
    impl_->levels.push_back(
        {reinterpret_cast<const msgpack::object*>(o.via.map.ptr), size_t{2} * o.via.map.size});
  }
  return o.via.map.size;
}

Frame Decoder::read_frame() {
  const msgpack::object& o = impl_->next_of(msgpack::type::EXT, "frame reference");
  if (o.via.ext.type() != kFrameExt || o.via.ext.size != 4)
    throw SerializationError("malformed frame reference");
  uint32_t index;
  std::memcpy(&index, o.via.ext.data(), 4);
  if (index >= impl_->frames.size()) {
    throw SerializationError(fmt::format("frame {} referenced, but the message has {} frames",
                                         index, impl_->frames.size()));
  }
  return impl_->frames[index];
}

Value Decoder::read_value() {
  if (next_is_nil()) {
    read_nil();
    return Value();
  }
  if (read_array() != 2) throw SerializationError("a value must be encoded as [type, payload]");
  std::string name = read_string();
  const msgpack::object& payload = impl_->next_of(msgpack::type::BIN, "value payload");
  const TypeInfo* type = find_type(name);
  if (!type || !type->decode) {
    throw SerializationError(fmt::format(
        "unknown value type '{}': register it in this process with TESSERA_REGISTER_TYPE", name));
  }
  if (impl_->depth >= kMaxValueDepth)
    throw SerializationError("values nested too deeply to decode");
  Decoder child(
      std::span(reinterpret_cast<const std::byte*>(payload.via.bin.ptr), payload.via.bin.size),
      impl_->frames);
  child.impl_->depth = impl_->depth + 1;
  Value v = type->decode(child);
  if (!child.at_end())
    throw SerializationError(fmt::format("value of type '{}' has trailing items", name));
  return v;
}

}  // namespace tessera

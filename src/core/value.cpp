#include "tessera/core/value.hpp"

#include <cxxabi.h>
#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <map>
#include <mutex>

#include "tessera/core/error.hpp"
#include "tessera/core/serialize.hpp"

namespace tessera {

namespace {

struct TypeRegistry {
  std::mutex mutex;
  std::map<std::string, const TypeInfo*, std::less<>> by_name;
};

TypeRegistry& type_registry() {
  static TypeRegistry* r = new TypeRegistry();  // never destroyed: used from static destructors
  return *r;
}

template <class T>
T read_inline(const Value& v) {
  T x;
  std::memcpy(&x, v.data(), sizeof(T));
  return x;
}

}  // namespace

void register_type(const TypeInfo& info) {
  TypeRegistry& r = type_registry();
  std::lock_guard lock(r.mutex);
  r.by_name.emplace(info.name, &info);  // the first registration of a name wins
}

const TypeInfo* find_type(std::string_view name) {
  TypeRegistry& r = type_registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : it->second;
}

namespace detail {

std::string demangle(const std::type_info& t) {
  int status = 0;
  char* s = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string out = (status == 0 && s) ? s : t.name();
  std::free(s);
  return out;
}

const TypeInfo& none_type() noexcept {
  static const TypeInfo info = [] {
    TypeInfo t;
    t.name = "none";
    t.cpp_type = &typeid(void);
    t.kind = TypeKind::None;
    t.boxed = false;
    t.nbytes = [](const Value&) -> size_t { return 0; };
    t.hash = [](const Value&, Hasher&) {};
    return t;
  }();
  return info;
}

void throw_type_error(const TypeInfo& held, std::string_view wanted) {
  if (held.name == "tessera::detail::RemoteKey") {
    // A persisted collection's placeholder reached a scheduler that is not its client.
    throw TypeError(fmt::format(
        "cannot read a value of type '{}': it is a result held on a cluster by the client that "
        "persisted it (client.persist()); compute the collection on that client "
        "(x.compute(client), or while the client is the default scheduler)",
        wanted));
  }
  throw TypeError(fmt::format("cannot read a value of type '{}' as '{}'", held.name, wanted));
}

void throw_frame_size(uint64_t count, size_t elem, size_t got) {
  throw SerializationError(fmt::format(
      "frame holds {} bytes, but {} elements of {} bytes were announced", got, count, elem));
}

int64_t arith_as_int64(const Value& v) {
  const TypeInfo& t = v.type();
  switch (t.kind) {
    case TypeKind::Bool:
      return read_inline<bool>(v) ? 1 : 0;
    case TypeKind::Int:
      switch (t.width) {
        case 1:
          return read_inline<int8_t>(v);
        case 2:
          return read_inline<int16_t>(v);
        case 4:
          return read_inline<int32_t>(v);
        default:
          return read_inline<int64_t>(v);
      }
    case TypeKind::UInt:
      return static_cast<int64_t>(arith_as_uint64(v));
    case TypeKind::Float:
      return static_cast<int64_t>(arith_as_double(v));
    default:
      throw_type_error(t, "int64");
  }
}

uint64_t arith_as_uint64(const Value& v) {
  const TypeInfo& t = v.type();
  switch (t.kind) {
    case TypeKind::UInt:
      switch (t.width) {
        case 1:
          return read_inline<uint8_t>(v);
        case 2:
          return read_inline<uint16_t>(v);
        case 4:
          return read_inline<uint32_t>(v);
        default:
          return read_inline<uint64_t>(v);
      }
    case TypeKind::Bool:
    case TypeKind::Int:
      return static_cast<uint64_t>(arith_as_int64(v));
    case TypeKind::Float:
      return static_cast<uint64_t>(arith_as_double(v));
    default:
      throw_type_error(t, "uint64");
  }
}

double arith_as_double(const Value& v) {
  const TypeInfo& t = v.type();
  switch (t.kind) {
    case TypeKind::Float:
      return t.width == 4 ? read_inline<float>(v) : read_inline<double>(v);
    case TypeKind::Bool:
    case TypeKind::Int:
      return static_cast<double>(arith_as_int64(v));
    case TypeKind::UInt:
      return static_cast<double>(arith_as_uint64(v));
    default:
      throw_type_error(t, "float64");
  }
}

size_t nbytes_via_codec(const Value& v) {
  if (!v.type().encode) return 0;
  return encode_value(v).nbytes();
}

void hash_via_codec(const Value& v, Hasher& h) {
  const TypeInfo& t = v.type();
  if (!t.encode) {
    throw SerializationError(
        fmt::format("values of type '{}' cannot be hashed: give it a tessera::Codec", t.name));
  }
  Encoder e;
  t.encode(v, e);
  std::vector<std::byte> header = e.finish_header();
  h.update_pod(header.size());
  h.update(header.data(), header.size());
  for (const Frame& f : e.frames()) {
    h.update_pod(f.bytes.size());
    h.update(f.bytes.data(), f.bytes.size());
  }
}

}  // namespace detail

size_t Value::nbytes() const {
  if (!type_) return 0;
  return type_->nbytes ? type_->nbytes(*this) : 0;
}

namespace {

std::string format_double(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, end);
}

}  // namespace

std::string Value::repr(size_t max_chars) const {
  const TypeInfo& t = type();
  std::string out;
  switch (t.kind) {
    case TypeKind::None:
      out = "none";
      break;
    case TypeKind::Bool:
      out = detail::arith_as_int64(*this) ? "true" : "false";
      break;
    case TypeKind::Int:
      out = std::to_string(detail::arith_as_int64(*this));
      break;
    case TypeKind::UInt:
      out = std::to_string(detail::arith_as_uint64(*this));
      break;
    case TypeKind::Float:
      out = format_double(detail::arith_as_double(*this));
      break;
    case TypeKind::String:
      out = "\"" + get<std::string>() + "\"";
      break;
    case TypeKind::List:
    case TypeKind::Sequence: {
      const size_t n = t.length(*this);
      out = "[";
      for (size_t i = 0; i < n && out.size() < max_chars; ++i) {
        if (i) out += ", ";
        out += t.element(*this, i).repr(max_chars);
      }
      out += "]";
      break;
    }
    case TypeKind::Other:
      out = "<" + t.name + ">";
      break;
  }
  if (out.size() > max_chars) out = out.substr(0, max_chars > 3 ? max_chars - 3 : 0) + "...";
  return out;
}

namespace {

// The built-in types are decodable from the start.
const bool kBuiltinsRegistered = [] {
  (void)type_of<bool>();
  (void)type_of<int8_t>();
  (void)type_of<int16_t>();
  (void)type_of<int32_t>();
  (void)type_of<int64_t>();
  (void)type_of<uint8_t>();
  (void)type_of<uint16_t>();
  (void)type_of<uint32_t>();
  (void)type_of<uint64_t>();
  (void)type_of<float>();
  (void)type_of<double>();
  (void)type_of<std::string>();
  (void)type_of<std::vector<Value>>();
  (void)type_of<std::vector<bool>>();
  (void)type_of<std::vector<int32_t>>();
  (void)type_of<std::vector<int64_t>>();
  (void)type_of<std::vector<uint64_t>>();
  (void)type_of<std::vector<float>>();
  (void)type_of<std::vector<double>>();
  (void)type_of<std::vector<std::string>>();
  return true;
}();

}  // namespace

}  // namespace tessera

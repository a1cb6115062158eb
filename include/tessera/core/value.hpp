// File: tessera/core/value.hpp
//
// Value: the type-erased, immutable, shared result of a task. Small trivially copyable
// values (numbers) are stored inline; anything else is held once on the heap and shared by
// every reader without copies. Each type has a TypeInfo: a name, a size estimate, and a
// codec when the type can cross processes.
//
//   auto v = tessera::Value::of(std::vector<double>{1, 2, 3});
//   const auto& xs = v.get<std::vector<double>>();   // no copy; TypeError if not that type
//   int64_t n = tessera::Value::of(2.0).as<int64_t>(); // arithmetic conversions are allowed
//   v.nbytes();                                        // about 24 + 3 * 8
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "tessera/core/codec.hpp"

namespace tessera {

class Value;

// Incremental hashing used by tokenize; types feed their bytes through it.
class Hasher {
 public:
  virtual void update(const void* data, size_t size) = 0;
  template <class T>
  void update_pod(const T& x) {
    static_assert(std::is_trivially_copyable_v<T>);
    update(&x, sizeof(T));
  }

 protected:
  ~Hasher() = default;
};

// What kind of data a type holds; decides conversions and printing.
enum class TypeKind : uint8_t { None, Bool, Int, UInt, Float, String, List, Sequence, Other };

// Everything tessera knows about one C++ type held in a Value. One instance per type.
struct TypeInfo {
  std::string name;  // "int64", "float64", "string", "vector<float64>", …
  const std::type_info* cpp_type = nullptr;
  TypeKind kind = TypeKind::Other;
  uint8_t width = 0;                         // bytes, for arithmetic kinds
  bool boxed = true;                         // held on the heap (false: inline in the Value)
  size_t (*nbytes)(const Value&) = nullptr;  // memory estimate
  void (*encode)(const Value&, Encoder&) = nullptr;  // nullptr: no codec
  Value (*decode)(Decoder&) = nullptr;               // nullptr: no codec
  void (*hash)(const Value&, Hasher&) = nullptr;     // nullptr: hash the encoding, if any
  size_t (*length)(const Value&) = nullptr;          // sequences: number of elements
  Value (*element)(const Value&, size_t) = nullptr;  // sequences: one element as a Value
};

// Registers a type so that it can be decoded by name (done for you by TESSERA_REGISTER_TYPE,
// by TESSERA_REGISTER for an op's parameter and result types, and for the built-in types).
void register_type(const TypeInfo& info);
// The type registered under `name`, or nullptr.
const TypeInfo* find_type(std::string_view name);

namespace detail {

// The heap block behind a boxed Value: reference count plus the object.
struct BoxBase {
  std::atomic<uint32_t> refs{1};
  virtual ~BoxBase() = default;
  virtual const void* get() const noexcept = 0;
};

template <class T>
struct Box final : BoxBase {
  template <class... A>
  explicit Box(A&&... a) : value(std::forward<A>(a)...) {}
  const void* get() const noexcept override { return &value; }
  T value;
};

template <class T>
inline constexpr bool kInline = std::is_trivially_copyable_v<T> && sizeof(T) <= 8 &&
                                alignof(T) <= 8 && std::is_default_constructible_v<T>;

template <class T>
struct IsVector : std::false_type {};
template <class E, class A>
struct IsVector<std::vector<E, A>> : std::true_type {
  using element = E;
};

template <class T>
concept HasCodec = requires(const T& x, Encoder& e, Decoder& d) {
  Codec<T>::encode(x, e);
  { Codec<T>::decode(d) } -> std::convertible_to<T>;
};

std::string demangle(const std::type_info& t);
const TypeInfo& none_type() noexcept;
[[noreturn]] void throw_type_error(const TypeInfo& held, std::string_view wanted);
int64_t arith_as_int64(const Value& v);
uint64_t arith_as_uint64(const Value& v);
double arith_as_double(const Value& v);
size_t nbytes_via_codec(const Value& v);
void hash_via_codec(const Value& v, Hasher& h);

template <class T>
std::string type_name();
[[noreturn]] void throw_frame_size(uint64_t count, size_t elem, size_t got);

// Memory estimate of one object: Codec<T>::nbytes when given, else its size.
template <class T>
size_t estimate_nbytes(const T& x) {
  if constexpr (requires { Codec<T>::nbytes(x); }) {
    return Codec<T>::nbytes(x);
  } else {
    return sizeof(T);
  }
}

}  // namespace detail

// The TypeInfo of C++ type T (created, and registered for decoding, on first use).
template <class T>
const TypeInfo& type_of();

// An immutable, shared, type-erased value. 16 bytes; copying a heap value is one atomic
// increment.
class Value {
 public:
  // The empty value ("none").
  Value() noexcept = default;
  Value(const Value& o) noexcept : type_(o.type_), s_(o.s_) {
    if (boxed()) box()->refs.fetch_add(1, std::memory_order_relaxed);
  }
  Value(Value&& o) noexcept : type_(o.type_), s_(o.s_) { o.type_ = nullptr; }
  Value& operator=(const Value& o) noexcept {
    Value tmp(o);
    swap(tmp);
    return *this;
  }
  Value& operator=(Value&& o) noexcept {
    Value tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~Value() { release(); }

  // Wraps a C++ object (moved or copied in). String literals become std::string.
  template <class T>
  static Value of(T&& x);
  // Constructs the held object in place.
  template <class T, class... A>
  static Value emplace(A&&... args);
  // A list of values (the type "list"; what a list of task references evaluates to).
  static Value list(std::vector<Value> items);

  // The type held ("none" for an empty value).
  const TypeInfo& type() const noexcept { return type_ ? *type_ : detail::none_type(); }
  bool is_none() const noexcept { return type_ == nullptr; }
  // True if the value holds exactly a T.
  template <class T>
  bool is() const noexcept;
  // The held T, without a copy. Throws TypeError naming both types otherwise.
  template <class T>
  const T& get() const;
  // The value converted to T: exact types are copied, arithmetic types convert to each
  // other, and sequences (lists, vectors) convert element by element.
  template <class T>
  T as() const;
  // Estimated memory held, in bytes (drives memory-aware scheduling).
  size_t nbytes() const;
  // A short human-readable form, for messages and pictures.
  std::string repr(size_t max_chars = 60) const;
  // Address of the held object (inline or on the heap).
  const void* data() const noexcept { return boxed() ? s_.box->get() : s_.bytes; }
  // True if both values share one heap object (or are the same inline bits).
  bool shares_with(const Value& o) const noexcept {
    return type_ == o.type_ &&
           (boxed() ? s_.box == o.s_.box : std::memcmp(s_.bytes, o.s_.bytes, 8) == 0);
  }
  void reset() noexcept {
    release();
    type_ = nullptr;
  }
  void swap(Value& o) noexcept {
    std::swap(type_, o.type_);
    std::swap(s_, o.s_);
  }

 private:
  bool boxed() const noexcept { return type_ && type_->boxed; }
  // The heap block. The empty asm hides where the pointer came from: GCC 12 otherwise
  // propagates an inline number's bytes into this never-taken branch and warns.
  detail::BoxBase* box() const noexcept {
    detail::BoxBase* b = s_.box;
#if defined(__GNUC__)
    asm("" : "+r"(b));
#endif
    return b;
  }
  void release() noexcept {
    if (boxed()) {
      detail::BoxBase* b = box();
      if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete b;
    }
  }

  const TypeInfo* type_ = nullptr;
  union Storage {
    alignas(8) unsigned char bytes[8];
    detail::BoxBase* box;
  } s_{};
};

// ---- built-in codecs ------------------------------------------------------------------

template <class T>
requires std::is_arithmetic_v<T>
struct Codec<T> {
  static void encode(const T& x, Encoder& e) {
    if constexpr (std::is_same_v<T, bool>)
      e.write_bool(x);
    else if constexpr (std::is_floating_point_v<T>)
      e.write_double(static_cast<double>(x));
    else if constexpr (std::is_signed_v<T>)
      e.write_int(static_cast<int64_t>(x));
    else
      e.write_uint(static_cast<uint64_t>(x));
  }
  static T decode(Decoder& d) {
    if constexpr (std::is_same_v<T, bool>)
      return d.read_bool();
    else if constexpr (std::is_floating_point_v<T>)
      return static_cast<T>(d.read_double());
    else if constexpr (std::is_signed_v<T>)
      return static_cast<T>(d.read_int());
    else
      return static_cast<T>(d.read_uint());
  }
};

template <>
struct Codec<std::string> {
  static void encode(const std::string& s, Encoder& e) { e.write_string(s); }
  static std::string decode(Decoder& d) { return d.read_string(); }
  static size_t nbytes(const std::string& s) { return sizeof(std::string) + s.capacity(); }
};

template <>
struct Codec<Value> {
  static void encode(const Value& v, Encoder& e) { e.write_value(v); }
  static Value decode(Decoder& d) { return d.read_value(); }
};

// Vectors of numbers travel as one raw frame (no copy on the way out); other vectors as an
// array of their elements.
template <class E, class A>
requires(std::is_arithmetic_v<E> || detail::HasCodec<E>) struct Codec<std::vector<E, A>> {
  static void encode(const std::vector<E, A>& v, Encoder& e) {
    if constexpr (std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) {
      e.write_uint(v.size());
      e.write_frame(std::as_bytes(std::span<const E>(v.data(), v.size())));
    } else {
      e.begin_array(v.size());
      for (const auto& x : v) Codec<E>::encode(x, e);
    }
  }
  static std::vector<E, A> decode(Decoder& d) {
    std::vector<E, A> out;
    if constexpr (std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) {
      const uint64_t n = d.read_uint();
      Frame f = d.read_frame();
      // Compare by division: n comes from the bytes and n * sizeof(E) could wrap around.
      if (f.bytes.size() % sizeof(E) != 0 || f.bytes.size() / sizeof(E) != n) {
        detail::throw_frame_size(n, sizeof(E), f.bytes.size());
      }
      out.resize(n);
      if (n) std::memcpy(out.data(), f.bytes.data(), f.bytes.size());
    } else {
      const size_t n = d.read_array();
      out.reserve(n);
      for (size_t i = 0; i < n; ++i) out.push_back(Codec<E>::decode(d));
    }
    return out;
  }
  static size_t nbytes(const std::vector<E, A>& v) {
    size_t total = sizeof(v) + (v.capacity() - v.size()) * sizeof(E);
    if constexpr (std::is_arithmetic_v<E>) {
      total += v.size() * sizeof(E);
    } else {
      for (const auto& x : v) total += detail::estimate_nbytes(x);
    }
    return total;
  }
};

}  // namespace tessera

#include "tessera/core/value_impl.hpp"

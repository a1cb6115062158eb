// File: tessera/core/value_impl.hpp — template definitions behind value.hpp. Not included
// directly.
#pragma once

namespace tessera {
namespace detail {

template <class T>
constexpr TypeKind kind_of() {
  if constexpr (std::is_same_v<T, bool>)
    return TypeKind::Bool;
  else if constexpr (std::is_floating_point_v<T>)
    return TypeKind::Float;
  else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>)
    return TypeKind::Int;
  else if constexpr (std::is_integral_v<T>)
    return TypeKind::UInt;
  else if constexpr (std::is_same_v<T, std::string>)
    return TypeKind::String;
  else if constexpr (std::is_same_v<T, std::vector<Value>>)
    return TypeKind::List;
  else if constexpr (IsVector<T>::value)
    return TypeKind::Sequence;
  else
    return TypeKind::Other;
}

// Names are part of the wire format: keep them stable.
template <class T>
std::string type_name() {
  if constexpr (requires { Codec<T>::name(); })
    return std::string(Codec<T>::name());
  else if constexpr (std::is_same_v<T, bool>)
    return "bool";
  else if constexpr (std::is_same_v<T, int8_t>)
    return "int8";
  else if constexpr (std::is_same_v<T, int16_t>)
    return "int16";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "int32";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "int64";
  else if constexpr (std::is_same_v<T, uint8_t>)
    return "uint8";
  else if constexpr (std::is_same_v<T, uint16_t>)
    return "uint16";
  else if constexpr (std::is_same_v<T, uint32_t>)
    return "uint32";
  else if constexpr (std::is_same_v<T, uint64_t>)
    return "uint64";
  else if constexpr (std::is_same_v<T, float>)
    return "float32";
  else if constexpr (std::is_same_v<T, double>)
    return "float64";
  else if constexpr (std::is_same_v<T, std::string>)
    return "string";
  else if constexpr (std::is_same_v<T, std::vector<Value>>)
    return "list";
  else if constexpr (IsVector<T>::value)
    return "vector<" + type_name<typename IsVector<T>::element>() + ">";
  else
    return demangle(typeid(T));
}

template <class T>
const T& held(const Value& v) noexcept {
  return *static_cast<const T*>(v.data());
}

template <class T>
size_t nbytes_impl(const Value& v) {
  if constexpr (requires(const T& x) { Codec<T>::nbytes(x); })
    return Codec<T>::nbytes(held<T>(v));
  else if constexpr (kInline<T>)
    return sizeof(T);
  else
    return sizeof(T) + 16;
}

template <class T>
void encode_impl(const Value& v, Encoder& e) {
  Codec<T>::encode(held<T>(v), e);
}

template <class T>
Value decode_impl(Decoder& d) {
  return Value::of(Codec<T>::decode(d));
}

template <class T>
void hash_impl(const Value& v, Hasher& h) {
  const T& x = held<T>(v);
  if constexpr (requires { Codec<T>::hash(x, h); }) {
    Codec<T>::hash(x, h);
  } else if constexpr (std::is_arithmetic_v<T>) {
    h.update_pod(x);
  } else if constexpr (std::is_same_v<T, std::string>) {
    h.update_pod(x.size());
    h.update(x.data(), x.size());
  } else if constexpr (IsVector<T>::value) {
    using E = typename IsVector<T>::element;
    h.update_pod(x.size());
    if constexpr (std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) {
      h.update(x.data(), x.size() * sizeof(E));
    } else {
      for (const auto& el : x) {
        if constexpr (std::is_same_v<E, Value>) {
          const TypeInfo& t = el.type();
          h.update(t.name.data(), t.name.size());
          if (t.hash)
            t.hash(el, h);
          else
            hash_via_codec(el, h);
        } else {
          Value ev = Value::of(el);
          hash_impl<E>(ev, h);
        }
      }
    }
  } else {
    hash_via_codec(v, h);
  }
}

template <class T>
size_t length_impl(const Value& v) {
  return held<T>(v).size();
}

template <class T>
Value element_impl(const Value& v, size_t i) {
  using E = typename IsVector<T>::element;
  if constexpr (std::is_same_v<E, Value>)
    return held<T>(v)[i];
  else if constexpr (std::is_same_v<E, bool>)
    return Value::of(static_cast<bool>(held<T>(v)[i]));
  else
    return Value::of(held<T>(v)[i]);
}

template <class T>
TypeInfo make_type_info() {
  TypeInfo t;
  t.name = type_name<T>();
  t.cpp_type = &typeid(T);
  t.kind = kind_of<T>();
  t.width = std::is_arithmetic_v<T> ? sizeof(T) : 0;
  t.boxed = !kInline<T>;
  t.nbytes = &nbytes_impl<T>;
  if constexpr (HasCodec<T>) {
    t.encode = &encode_impl<T>;
    t.decode = &decode_impl<T>;
    t.hash = &hash_impl<T>;
  } else if constexpr (requires(const T& x, Hasher& h) { Codec<T>::hash(x, h); }) {
    t.hash = &hash_impl<T>;
  }
  if constexpr (IsVector<T>::value) {
    t.length = &length_impl<T>;
    t.element = &element_impl<T>;
  }
  return t;
}

template <class T>
struct RegisteredTypeInfo {
  TypeInfo info = make_type_info<T>();
  RegisteredTypeInfo() {
    if (info.encode) register_type(info);
  }
};

// Values built from string literals and string views hold a std::string.
template <class T>
using StoredType = std::conditional_t<std::is_convertible_v<T, std::string_view> &&
                                          !std::is_same_v<std::remove_cvref_t<T>, Value>,
                                      std::string, std::remove_cvref_t<T>>;

}  // namespace detail

template <class T>
const TypeInfo& type_of() {
  using D = std::remove_cvref_t<T>;
  static const detail::RegisteredTypeInfo<D> registered;
  return registered.info;
}

template <class T>
Value Value::of(T&& x) {
  using D = detail::StoredType<T>;
  static_assert(!std::is_same_v<D, Value>, "Value::of(Value) is not needed: copy the Value");
  static_assert(!std::is_pointer_v<D> && !std::is_reference_v<D>,
                "a Value cannot hold a raw pointer: hold the object (or a shared_ptr) instead");
  if constexpr (std::is_same_v<D, std::string> &&
                !std::is_same_v<std::remove_cvref_t<T>, std::string>) {
    return emplace<std::string>(std::string_view(x));
  } else {
    return emplace<D>(std::forward<T>(x));
  }
}

template <class T, class... A>
Value Value::emplace(A&&... args) {
  Value v;
  v.type_ = &type_of<T>();
  if constexpr (detail::kInline<T>) {
    new (v.s_.bytes) T(std::forward<A>(args)...);
  } else {
    v.s_.box = new detail::Box<T>(std::forward<A>(args)...);
  }
  return v;
}

inline Value Value::list(std::vector<Value> items) {
  return Value::of(std::move(items));
}

template <class T>
bool Value::is() const noexcept {
  using D = std::remove_cvref_t<T>;
  if (type_ == &type_of<D>()) return true;
  // A type's info can be instantiated in two shared objects; fall back to RTTI equality.
  return type_ && *type_->cpp_type == typeid(D);
}

template <class T>
const T& Value::get() const {
  using D = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<D, Value>) {
    return *this;
  } else {
    if (!is<D>()) detail::throw_type_error(type(), type_of<D>().name);
    return detail::held<D>(*this);
  }
}

template <class T>
T Value::as() const {
  using D = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<D, Value>) {
    return *this;
  } else {
    if (is<D>()) return detail::held<D>(*this);
    const TypeKind k = type().kind;
    if constexpr (std::is_arithmetic_v<D>) {
      if (k == TypeKind::Bool || k == TypeKind::Int)
        return static_cast<D>(detail::arith_as_int64(*this));
      if (k == TypeKind::UInt) return static_cast<D>(detail::arith_as_uint64(*this));
      if (k == TypeKind::Float) return static_cast<D>(detail::arith_as_double(*this));
    } else if constexpr (detail::IsVector<D>::value) {
      if (k == TypeKind::List || k == TypeKind::Sequence) {
        using E = typename detail::IsVector<D>::element;
        const size_t n = type().length(*this);
        D out;
        out.reserve(n);
        for (size_t i = 0; i < n; ++i) out.push_back(type().element(*this, i).template as<E>());
        return out;
      }
    }
    detail::throw_type_error(type(), type_of<D>().name);
  }
}

}  // namespace tessera

// TESSERA_REGISTER_TYPE(T): make values of T decodable by name in every process that links
// this translation unit (T needs a tessera::Codec<T> specialization).
#define TESSERA_REGISTER_TYPE(...)                                                            \
  static const bool TESSERA_CONCAT_(tessera_registered_type_, __COUNTER__) [[maybe_unused]] = \
      (::tessera::type_of<__VA_ARGS__>(), true)

#ifndef TESSERA_CONCAT_
#define TESSERA_CONCAT_INNER_(a, b) a##b
#define TESSERA_CONCAT_(a, b) TESSERA_CONCAT_INNER_(a, b)
#endif

// File: tessera/array/dtype.hpp
//
// The element types of tessera arrays and NumPy's rules for combining them.
//
//   using tessera::array::DType;
//   DType t = tessera::array::result_type(DType::Int32, DType::Float32);  // Float64
//   tessera::array::dtype_name(t);                                        // "float64"
//   tessera::array::dtype_of<float>();                                    // DType::Float32
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace tessera::array {

// Element types, in NumPy's names.
enum class DType : uint8_t { Bool, Int32, Int64, Float32, Float64 };

// "bool", "int32", "int64", "float32", "float64".
std::string_view dtype_name(DType t) noexcept;
// The dtype named `name` (NumPy's names, plus "f8", "i4", "<f8", "float", "int", …);
// ValueError naming it otherwise.
DType dtype_from_name(std::string_view name);
// Bytes per element.
size_t dtype_size(DType t) noexcept;
// True for float32 and float64.
bool is_floating(DType t) noexcept;
// True for int32 and int64.
bool is_integer(DType t) noexcept;
// The type NumPy gives a binary operation on arrays of types a and b (numpy.result_type).
DType result_type(DType a, DType b) noexcept;
// The type of the result of a float function (exp, sqrt, mean, …) on type t: floats keep
// their type, bool and integers give float64.
DType float_result(DType t) noexcept;
// True if values of type `from` convert to `to` without loss (numpy.can_cast, "safe").
bool can_cast(DType from, DType to) noexcept;

// The dtype of a C++ element type (bool, int32_t, int64_t, float, double).
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, bool>)
    return DType::Bool;
  else if constexpr (std::is_same_v<T, int32_t>)
    return DType::Int32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::Int64;
  else if constexpr (std::is_same_v<T, float>)
    return DType::Float32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::Float64;
  else
    static_assert(sizeof(T) == 0, "tessera arrays hold bool, int32, int64, float32 or float64");
}

// Calls f(T{}) with the C++ type of dtype t.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Bool:
      return f(bool{});
    case DType::Int32:
      return f(int32_t{});
    case DType::Int64:
      return f(int64_t{});
    case DType::Float32:
      return f(float{});
    case DType::Float64:
      break;
  }
  return f(double{});
}

}  // namespace tessera::array

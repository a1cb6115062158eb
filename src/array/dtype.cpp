// dtype names and NumPy's promotion rules.
#include "tessera/array/dtype.hpp"

#include <fmt/format.h>

#include "tessera/core/error.hpp"

namespace tessera::array {

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::Bool:
      return "bool";
    case DType::Int32:
      return "int32";
    case DType::Int64:
      return "int64";
    case DType::Float32:
      return "float32";
    case DType::Float64:
      break;
  }
  return "float64";
}

DType dtype_from_name(std::string_view name) {
  std::string_view n = name;
  if (!n.empty() && (n[0] == '<' || n[0] == '=' || n[0] == '|')) n.remove_prefix(1);
  if (n == "bool" || n == "b1" || n == "?") return DType::Bool;
  if (n == "int32" || n == "i4") return DType::Int32;
  if (n == "int64" || n == "i8" || n == "int") return DType::Int64;
  if (n == "float32" || n == "f4") return DType::Float32;
  if (n == "float64" || n == "f8" || n == "float" || n == "double") return DType::Float64;
  throw ValueError(fmt::format(
      "unsupported dtype '{}' (tessera arrays hold bool, int32, int64, float32, float64)", name));
}

size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::Bool:
      return 1;
    case DType::Int32:
    case DType::Float32:
      return 4;
    case DType::Int64:
    case DType::Float64:
      break;
  }
  return 8;
}

bool is_floating(DType t) noexcept {
  return t == DType::Float32 || t == DType::Float64;
}
bool is_integer(DType t) noexcept {
  return t == DType::Int32 || t == DType::Int64;
}

DType result_type(DType a, DType b) noexcept {
  if (a == b) return a;
  if (a > b) std::swap(a, b);  // now a < b in Bool, Int32, Int64, Float32, Float64 order
  // float32 cannot hold every int32 or int64: NumPy goes to float64.
  if (b == DType::Float32 && is_integer(a)) return DType::Float64;
  return b;
}

DType float_result(DType t) noexcept {
  return is_floating(t) ? t : DType::Float64;
}

bool can_cast(DType from, DType to) noexcept {
  return result_type(from, to) == to;
}

}  // namespace tessera::array

// Strided traversal of NDArrays, shared by the kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "tessera/array/ndarray.hpp"

namespace tessera::array {

// Builds NDArrays with explicit layout (the kernels' private constructor).
struct NDArrayAccess {
  static NDArray view(const NDArray& base, DType dtype, Shape shape, std::vector<int64_t> strides,
                      const void* ptr) {
    NDArray a;
    a.dtype_ = dtype;
    a.size_ = 1;
    for (int64_t s : shape) a.size_ *= s;
    a.shape_ = std::move(shape);
    a.strides_ = std::move(strides);
    a.owner_ = base.owner_;
    a.ptr_ = ptr;
    return a;
  }
  static const std::shared_ptr<const void>& owner(const NDArray& a) { return a.owner_; }
};

// Converts one element type to another the way NumPy's astype does (bool: nonzero).
template <class T, class S>
inline T convert(S x) {
  if constexpr (std::is_same_v<T, bool>) {
    return x != S(0);
  } else if constexpr (std::is_integral_v<T> && std::is_floating_point_v<S>) {
    // Out of range (and NaN) is undefined in C++; x86 NumPy gives the minimum integer.
    constexpr S lo = static_cast<S>(std::numeric_limits<T>::min());
    constexpr S hi = -lo;
    return (x >= lo && x < hi) ? static_cast<T>(x) : std::numeric_limits<T>::min();
  } else {
    return static_cast<T>(x);
  }
}

// Row-major strides (in elements) of a contiguous array of `shape`.
std::vector<int64_t> contiguous_strides(const Shape& shape);

// Calls f(ptr, stride, length) for each row of `a` (the last axis, merged with earlier axes
// where the layout allows), in row-major order. T must be a's element type.
template <class T, class F>
void for_each_row(const NDArray& a, F&& f) {
  const T* base = static_cast<const T*>(a.raw_data());
  if (a.size() == 0) return;
  const int nd = a.ndim();
  if (nd == 0) {
    f(base, int64_t{1}, int64_t{1});
    return;
  }
  // Merge trailing axes while they are laid out as one run.
  const auto& sh = a.shape();
  const auto& st = a.strides();
  int inner = nd - 1;
  int64_t len = sh[inner];
  const int64_t stride = st[inner];
  while (inner > 0 && st[inner - 1] == stride * len) {
    --inner;
    len *= sh[inner];
  }
  if (inner == 0) {
    f(base, stride, len);
    return;
  }
  std::vector<int64_t> idx(static_cast<size_t>(inner), 0);
  int64_t off = 0;
  while (true) {
    f(base + off, stride, len);
    int k = inner - 1;
    for (; k >= 0; --k) {
      off += st[k];
      if (++idx[k] < sh[k]) break;
      off -= st[k] * sh[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

// Copies elements [start, start + n) (row-major order) of `a`, converted to T, into out.
template <class T, class S>
void gather_range(const NDArray& a, int64_t start, int64_t n, T* out) {
  const S* base = static_cast<const S*>(a.raw_data());
  const int nd = a.ndim();
  if (nd == 0) {
    for (int64_t i = 0; i < n; ++i) out[i] = convert<T, S>(base[0]);
    return;
  }
  const auto& sh = a.shape();
  const auto& st = a.strides();
  std::vector<int64_t> idx(static_cast<size_t>(nd));
  int64_t rest = start, off = 0;
  for (int k = nd - 1; k >= 0; --k) {
    idx[k] = sh[k] ? rest % sh[k] : 0;
    rest = sh[k] ? rest / sh[k] : 0;
    off += idx[k] * st[k];
  }
  const int64_t last = sh[nd - 1], ls = st[nd - 1];
  int64_t done = 0;
  while (done < n) {
    const int64_t run = std::min(n - done, last - idx[nd - 1]);
    const S* p = base + off;
    if (ls == 1) {
      for (int64_t i = 0; i < run; ++i) out[done + i] = convert<T, S>(p[i]);
    } else {
      for (int64_t i = 0; i < run; ++i) out[done + i] = convert<T, S>(p[i * ls]);
    }
    done += run;
    off += run * ls;
    idx[nd - 1] += run;
    // carry
    for (int k = nd - 1; k > 0 && idx[k] == sh[k]; --k) {
      off -= idx[k] * st[k];
      idx[k] = 0;
      off += st[k - 1];
      ++idx[k - 1];
    }
  }
}

}  // namespace tessera::array

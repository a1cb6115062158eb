// File: tessera/array/ndarray.hpp
//
// NDArray: an in-memory N-d array (what a chunk is, and what compute() returns). Elements
// are bool, int32, int64, float32 or float64; the buffer is shared and never changed once
// the array is handed to a graph, so copies and views cost nothing. A view (transpose,
// slice, broadcast) has strides; compute() results are always contiguous and row-major.
//
//   namespace ta = tessera::array;
//   ta::NDArray a = ta::NDArray::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
//   a.at<double>({1, 2});                  // 6
//   const double* p = a.data<double>();    // contiguous, row-major: usable as
//                                          // Eigen::Map<const RowMatrixXd>(p, 2, 3) or
//                                          // xt::adapt(p, a.size(), xt::no_ownership(), shape)
//   ta::NDArray t = a.transpose();         // a view: shape (3, 2), no copy
//   t.contiguous().data<double>();         // 1 4 2 5 3 6
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/array/dtype.hpp"
#include "tessera/core/value.hpp"

namespace tessera::array {

// The extent of each axis.
using Shape = std::vector<int64_t>;

// An in-memory N-d array with a dtype, a shape and (for views) strides.
class NDArray {
 public:
  // A 0-d float64 zero.
  NDArray();

  // A new contiguous array with unspecified contents (fill it through mutable_data()).
  static NDArray empty(DType dtype, Shape shape);
  // A new contiguous array of zeros.
  static NDArray zeros(DType dtype, Shape shape);
  // A new contiguous array filled with `value` (converted to dtype).
  static NDArray full(DType dtype, Shape shape, double value);
  // `value` broadcast to `shape` without memory per element (every stride is 0), the way
  // dask's ones() chunks are stride-0 views.
  static NDArray constant(DType dtype, Shape shape, double value);
  // A 0-d array holding `value`.
  template <class T>
  static NDArray scalar(T value);
  // Takes `data` (row-major) as an array of `shape`; ValueError if the sizes differ.
  template <class T>
  static NDArray from_vector(std::vector<T> data, Shape shape);
  // Wraps memory someone else owns (zero-copy): `owner` keeps `data` alive; strides are in
  // elements (empty: contiguous row-major).
  static NDArray from_buffer(std::shared_ptr<const void> owner, const void* data, DType dtype,
                             Shape shape, std::vector<int64_t> strides = {});

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  // Strides in elements (0 on broadcast axes).
  const std::vector<int64_t>& strides() const noexcept { return strides_; }
  int ndim() const noexcept { return static_cast<int>(shape_.size()); }
  // Number of elements.
  int64_t size() const noexcept { return size_; }
  // Bytes of the elements (size × itemsize), whatever memory the view shares.
  size_t nbytes() const noexcept { return static_cast<size_t>(size_) * dtype_size(dtype_); }
  // True when the elements lie row-major without gaps (data<T>() is then allowed).
  bool is_contiguous() const noexcept;
  // True when every stride is 0 (a broadcast scalar).
  bool is_constant() const noexcept;

  // The elements, contiguous row-major. TypeError if T is not the dtype; ValueError if this
  // is a strided view (call contiguous() first).
  template <class T>
  const T* data() const;
  // Writable elements of an array you just created (empty/zeros/full/from_vector), before
  // it is shared with a graph.
  template <class T>
  T* mutable_data();
  // Address of the first element (any dtype, any layout).
  const void* raw_data() const noexcept { return ptr_; }
  void* raw_mutable_data() noexcept { return const_cast<void*>(ptr_); }

  // The single element of a size-1 array, converted to T; ValueError otherwise.
  template <class T>
  T item() const;
  // The element at `index` (negative counts from the end), converted to T; IndexError
  // naming the index and shape when out of bounds.
  template <class T>
  T at(std::initializer_list<int64_t> index) const {
    return at<T>(std::span<const int64_t>(index.begin(), index.size()));
  }
  template <class T>
  T at(std::span<const int64_t> index) const;
  // All elements in row-major order, converted to T.
  template <class T>
  std::vector<T> to_vector() const;

  // This array if contiguous, else a contiguous copy.
  NDArray contiguous() const;
  // A contiguous copy converted to `dtype` (NumPy's astype; this array if already so).
  NDArray astype(DType dtype) const;
  // A view with axes reversed (no copy).
  NDArray transpose() const;
  // A view with axes permuted: axis i of the result is axis axes[i] of this array.
  NDArray transpose(std::span<const int> axes) const;
  // A view of [start, stop) with `step` along `axis` (no copy).
  NDArray slice(int axis, int64_t start, int64_t stop, int64_t step = 1) const;
  // A view broadcast to `shape` (NumPy's rules); ValueError naming both shapes otherwise.
  NDArray broadcast_to(const Shape& shape) const;
  // The same elements with another shape (a copy unless contiguous).
  NDArray reshape(Shape shape) const;

  // "array([[1., 2.], [3., 4.]], dtype=float64)"-like text, elided past `max_items`.
  std::string repr(size_t max_items = 1000) const;

  // Equal shapes, dtypes and elements (NaN equals NaN).
  friend bool operator==(const NDArray& a, const NDArray& b);

 private:
  friend struct NDArrayAccess;
  void check_dtype(DType wanted) const;
  void check_contiguous() const;
  void check_item() const;
  static void check_data_size(size_t got, const Shape& shape);
  double element_as_double(int64_t flat) const;
  int64_t element_as_int64(int64_t flat) const;
  int64_t flat_of(std::span<const int64_t> index) const;

  DType dtype_ = DType::Float64;
  Shape shape_;
  std::vector<int64_t> strides_;
  int64_t size_ = 1;
  std::shared_ptr<const void> owner_;
  const void* ptr_ = nullptr;
};

std::ostream& operator<<(std::ostream& os, const NDArray& a);

// Human-readable shape: "(15,)", "(10, 10)", "()".
std::string shape_str(std::span<const int64_t> shape);

// ---- templates ----------------------------------------------------------------------------

template <class T>
NDArray NDArray::scalar(T value) {
  NDArray a = empty(dtype_of<T>(), {});
  *a.mutable_data<T>() = value;
  return a;
}

template <class T>
NDArray NDArray::from_vector(std::vector<T> data, Shape shape) {
  static_assert(!std::is_same_v<T, bool>,
                "std::vector<bool> is packed: make bool arrays with NDArray::empty(DType::Bool, "
                "shape) and fill mutable_data<bool>()");
  auto holder = std::make_shared<std::vector<T>>(std::move(data));
  check_data_size(holder->size(), shape);
  const void* p = holder->data();
  return from_buffer(std::move(holder), p, dtype_of<T>(), std::move(shape));
}

template <class T>
const T* NDArray::data() const {
  check_dtype(dtype_of<T>());
  check_contiguous();
  return static_cast<const T*>(ptr_);
}

template <class T>
T* NDArray::mutable_data() {
  check_dtype(dtype_of<T>());
  check_contiguous();
  return static_cast<T*>(const_cast<void*>(ptr_));
}

template <class T>
T NDArray::item() const {
  check_item();
  if constexpr (std::is_floating_point_v<T>)
    return static_cast<T>(element_as_double(0));
  else
    return static_cast<T>(element_as_int64(0));
}

template <class T>
T NDArray::at(std::span<const int64_t> index) const {
  const int64_t flat = flat_of(index);
  if constexpr (std::is_floating_point_v<T>)
    return static_cast<T>(element_as_double(flat));
  else
    return static_cast<T>(element_as_int64(flat));
}

template <class T>
std::vector<T> NDArray::to_vector() const {
  NDArray c = astype(dtype_of<T>());
  const T* p = static_cast<const T*>(c.ptr_);
  return std::vector<T>(p, p + c.size_);
}

}  // namespace tessera::array

// NDArrays travel between processes as (dtype, shape) plus one raw frame.
template <>
struct tessera::Codec<tessera::array::NDArray> {
  static void encode(const tessera::array::NDArray& a, tessera::Encoder& e);
  static tessera::array::NDArray decode(tessera::Decoder& d);
  static size_t nbytes(const tessera::array::NDArray& a) { return a.nbytes() + 64; }
};

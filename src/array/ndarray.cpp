// NDArray: storage, views, conversion, printing and the codec.
#include "tessera/array/ndarray.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <ostream>

#include "array/buffer_pool_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"

namespace tessera::array {

namespace {

int64_t product(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

void check_shape(const Shape& shape) {
  for (int64_t s : shape) {
    if (s < 0)
      throw ValueError(
          fmt::format("negative dimensions are not allowed: shape {}", shape_str(shape)));
  }
}

std::shared_ptr<void> allocate(size_t bytes) {
  return allocate_buffer(bytes);
}

}  // namespace

std::string shape_str(std::span<const int64_t> shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> st(shape.size());
  int64_t s = 1;
  for (size_t k = shape.size(); k-- > 0;) {
    st[k] = s;
    s *= std::max<int64_t>(shape[k], 1);
  }
  return st;
}

NDArray::NDArray() {
  static const double kZero = 0;  // shared, never written: mutable_data() is for new arrays
  ptr_ = &kZero;
}

NDArray NDArray::empty(DType dtype, Shape shape) {
  check_shape(shape);
  NDArray a;
  a.dtype_ = dtype;
  a.size_ = product(shape);
  a.strides_ = contiguous_strides(shape);
  a.shape_ = std::move(shape);
  auto buf = allocate(static_cast<size_t>(a.size_) * dtype_size(dtype));
  a.ptr_ = buf.get();
  a.owner_ = std::move(buf);
  return a;
}

NDArray NDArray::zeros(DType dtype, Shape shape) {
  NDArray a = empty(dtype, std::move(shape));
  std::memset(a.raw_mutable_data(), 0, a.nbytes());
  return a;
}

NDArray NDArray::full(DType dtype, Shape shape, double value) {
  NDArray a = empty(dtype, std::move(shape));
  visit_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    std::fill_n(static_cast<T*>(a.raw_mutable_data()), a.size_, convert<T, double>(value));
  });
  return a;
}

NDArray NDArray::constant(DType dtype, Shape shape, double value) {
  check_shape(shape);
  NDArray one = full(dtype, {}, value);
  NDArray a = NDArrayAccess::view(one, dtype, std::move(shape), {}, one.ptr_);
  a.strides_.assign(a.shape_.size(), 0);
  return a;
}

NDArray NDArray::from_buffer(std::shared_ptr<const void> owner, const void* data, DType dtype,
                             Shape shape, std::vector<int64_t> strides) {
  check_shape(shape);
  if (strides.empty()) strides = contiguous_strides(shape);
  if (strides.size() != shape.size()) {
    throw ValueError(fmt::format("{} strides for shape {}", strides.size(), shape_str(shape)));
  }
  NDArray a;
  a.dtype_ = dtype;
  a.size_ = product(shape);
  a.shape_ = std::move(shape);
  a.strides_ = std::move(strides);
  a.owner_ = std::move(owner);
  a.ptr_ = data;
  return a;
}

void NDArray::check_data_size(size_t got, const Shape& shape) {
  check_shape(shape);
  if (static_cast<int64_t>(got) != product(shape)) {
    throw ValueError(fmt::format("cannot make an array of shape {} ({} elements) from {} values",
                                 shape_str(shape), product(shape), got));
  }
}

bool NDArray::is_contiguous() const noexcept {
  if (size_ <= 1) return true;
  int64_t s = 1;
  for (size_t k = shape_.size(); k-- > 0;) {
    if (shape_[k] != 1 && strides_[k] != s) return false;
    s *= shape_[k];
  }
  return true;
}

bool NDArray::is_constant() const noexcept {
  for (size_t k = 0; k < shape_.size(); ++k) {
    if (shape_[k] > 1 && strides_[k] != 0) return false;
  }
  return true;
}

void NDArray::check_dtype(DType wanted) const {
  if (wanted != dtype_) {
    throw TypeError(fmt::format("array holds {}, not {}", dtype_name(dtype_), dtype_name(wanted)));
  }
}

void NDArray::check_contiguous() const {
  if (!is_contiguous()) {
    throw ValueError(fmt::format("array of shape {} is a strided view: call contiguous() first",
                                 shape_str(shape_)));
  }
}

void NDArray::check_item() const {
  if (size_ != 1) {
    throw ValueError(fmt::format("item(): the array has {} elements (shape {}), not 1", size_,
                                 shape_str(shape_)));
  }
}

int64_t NDArray::flat_of(std::span<const int64_t> index) const {
  if (index.size() != shape_.size()) {
    throw IndexError(
        fmt::format("{} indices for an array of shape {}", index.size(), shape_str(shape_)));
  }
  int64_t off = 0;
  for (size_t k = 0; k < index.size(); ++k) {
    int64_t i = index[k];
    if (i < 0) i += shape_[k];
    if (i < 0 || i >= shape_[k]) {
      throw IndexError(fmt::format("index {} is out of bounds for axis {} with size {} (shape {})",
                                   index[k], k, shape_[k], shape_str(shape_)));
    }
    off += i * strides_[k];
  }
  return off;
}

double NDArray::element_as_double(int64_t off) const {
  return visit_dtype(dtype_, [&](auto t) -> double {
    using T = decltype(t);
    return static_cast<double>(static_cast<const T*>(ptr_)[off]);
  });
}

int64_t NDArray::element_as_int64(int64_t off) const {
  return visit_dtype(dtype_, [&](auto t) -> int64_t {
    using T = decltype(t);
    return convert<int64_t, T>(static_cast<const T*>(ptr_)[off]);
  });
}

NDArray NDArray::contiguous() const {
  if (is_contiguous()) return *this;
  return astype(dtype_);
}

NDArray NDArray::astype(DType dtype) const {
  if (dtype == dtype_ && is_contiguous()) return *this;
  NDArray out = empty(dtype, shape_);
  visit_dtype(dtype, [&](auto d) {
    using D = decltype(d);
    D* o = static_cast<D*>(out.raw_mutable_data());
    visit_dtype(dtype_, [&](auto s) {
      using S = decltype(s);
      for_each_row<S>(*this, [&](const S* p, int64_t stride, int64_t len) {
        if (stride == 1) {
          for (int64_t i = 0; i < len; ++i) o[i] = convert<D, S>(p[i]);
        } else {
          for (int64_t i = 0; i < len; ++i) o[i] = convert<D, S>(p[i * stride]);
        }
        o += len;
      });
    });
  });
  return out;
}

NDArray NDArray::transpose() const {
  std::vector<int> axes(shape_.size());
  std::iota(axes.rbegin(), axes.rend(), 0);
  return transpose(axes);
}

NDArray NDArray::transpose(std::span<const int> axes) const {
  if (axes.size() != shape_.size()) {
    throw ValueError(fmt::format("axes ({}) don't match an array of shape {}",
                                 fmt::join(axes, ", "), shape_str(shape_)));
  }
  Shape sh(axes.size());
  std::vector<int64_t> st(axes.size());
  std::vector<bool> seen(axes.size());
  for (size_t i = 0; i < axes.size(); ++i) {
    const int a = axes[i];
    if (a < 0 || a >= ndim() || seen[a]) {
      throw AxisError(
          fmt::format("axes ({}) are not a permutation of {} axes", fmt::join(axes, ", "), ndim()));
    }
    seen[a] = true;
    sh[i] = shape_[a];
    st[i] = strides_[a];
  }
  return NDArrayAccess::view(*this, dtype_, std::move(sh), std::move(st), ptr_);
}

NDArray NDArray::slice(int axis, int64_t start, int64_t stop, int64_t step) const {
  if (axis < 0 || axis >= ndim()) {
    throw AxisError(
        fmt::format("axis {} is out of bounds for an array of dimension {}", axis, ndim()));
  }
  if (step <= 0) throw ValueError(fmt::format("slice step must be positive here, not {}", step));
  const int64_t n = shape_[axis];
  if (start < 0 || stop > n || start > stop) {
    throw IndexError(
        fmt::format("slice [{}:{}] out of range for axis {} of size {}", start, stop, axis, n));
  }
  Shape sh = shape_;
  std::vector<int64_t> st = strides_;
  sh[axis] = (stop - start + step - 1) / step;
  st[axis] = strides_[axis] * step;
  const auto* p = static_cast<const std::byte*>(ptr_) +
                  start * strides_[axis] * static_cast<int64_t>(dtype_size(dtype_));
  return NDArrayAccess::view(*this, dtype_, std::move(sh), std::move(st), p);
}

NDArray NDArray::broadcast_to(const Shape& shape) const {
  if (shape.size() < shape_.size()) {
    throw ValueError(
        fmt::format("cannot broadcast shape {} to {}", shape_str(shape_), shape_str(shape)));
  }
  const size_t lead = shape.size() - shape_.size();
  std::vector<int64_t> st(shape.size(), 0);
  for (size_t k = 0; k < shape_.size(); ++k) {
    const int64_t want = shape[lead + k];
    if (shape_[k] == want) {
      st[lead + k] = strides_[k];
    } else if (shape_[k] != 1) {
      throw ValueError(
          fmt::format("cannot broadcast shape {} to {}", shape_str(shape_), shape_str(shape)));
    }
  }
  return NDArrayAccess::view(*this, dtype_, shape, std::move(st), ptr_);
}

NDArray NDArray::reshape(Shape shape) const {
  int64_t unknown = -1, known = 1;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == -1 && unknown < 0) {
      unknown = static_cast<int64_t>(k);
    } else {
      known *= shape[k];
    }
  }
  if (unknown >= 0 && known > 0 && size_ % known == 0) shape[unknown] = size_ / known;
  check_shape(shape);
  if (product(shape) != size_) {
    throw ValueError(fmt::format("cannot reshape an array of shape {} ({} elements) into shape {}",
                                 shape_str(shape_), size_, shape_str(shape)));
  }
  NDArray c = contiguous();
  return NDArrayAccess::view(c, dtype_, shape, contiguous_strides(shape), c.ptr_);
}

namespace {

template <class T>
std::string format_element(T x) {
  if constexpr (std::is_same_v<T, bool>) {
    return x ? "True" : "False";
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    std::string s = fmt::format("{:.8g}", static_cast<double>(x));
    if (s.find_first_of(".e") == std::string::npos) s += ".";
    return s;
  } else {
    return fmt::format("{}", x);
  }
}

}  // namespace

std::string NDArray::repr(size_t max_items) const {
  std::string out = "array(";
  NDArray c = contiguous();
  visit_dtype(dtype_, [&](auto t) {
    using T = decltype(t);
    const T* p = static_cast<const T*>(c.ptr_);
    if (shape_.empty()) {
      out += format_element(p[0]);
      return;
    }
    // Nested brackets, row-major; elide the middle of long arrays.
    const auto total = static_cast<size_t>(size_);
    std::vector<int64_t> idx(shape_.size(), 0);
    for (size_t i = 0; i < total; ++i) {
      int opens = 0;
      for (size_t k = shape_.size(); k-- > 0;) {
        if (idx[k] != 0) break;
        ++opens;
      }
      if (i > 0) out += opens > 0 ? ",\n" + std::string(6 + shape_.size() - opens, ' ') : ", ";
      out.append(static_cast<size_t>(opens), '[');
      if (total > max_items && i == max_items / 2) {
        out += "...";
        i = total - max_items / 2 - 1;
        // recompute the index of the next element
        int64_t rest = static_cast<int64_t>(i + 1);
        for (size_t k = shape_.size(); k-- > 0;) {
          idx[k] = rest % shape_[k];
          rest /= shape_[k];
        }
        continue;
      }
      out += format_element(p[i]);
      int closes = 0;
      for (size_t k = shape_.size(); k-- > 0;) {
        if (++idx[k] < shape_[k]) break;
        idx[k] = 0;
        ++closes;
      }
      out.append(static_cast<size_t>(closes), ']');
    }
    if (total == 0) out += std::string(shape_.size(), '[') + std::string(shape_.size(), ']');
  });
  if (dtype_ != DType::Float64 && dtype_ != DType::Int64 && dtype_ != DType::Bool) {
    out += fmt::format(", dtype={}", dtype_name(dtype_));
  }
  if (size_ == 0) out += fmt::format(", shape={}", shape_str(shape_));
  return out + ")";
}

bool operator==(const NDArray& a, const NDArray& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const NDArray x = a.contiguous(), y = b.contiguous();
  return visit_dtype(a.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* p = static_cast<const T*>(x.raw_data());
    const T* q = static_cast<const T*>(y.raw_data());
    for (int64_t i = 0; i < x.size(); ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        if (std::isnan(p[i]) && std::isnan(q[i])) continue;
      }
      if (p[i] != q[i]) return false;
    }
    return true;
  });
}

std::ostream& operator<<(std::ostream& os, const NDArray& a) {
  return os << a.repr();
}

}  // namespace tessera::array

void tessera::Codec<tessera::array::NDArray>::encode(const tessera::array::NDArray& a,
                                                     tessera::Encoder& e) {
  using namespace tessera::array;
  NDArray c = a.contiguous();
  e.write_string(dtype_name(c.dtype()));
  e.begin_array(c.shape().size());
  for (int64_t s : c.shape()) e.write_int(s);
  e.write_frame(std::span(static_cast<const std::byte*>(c.raw_data()), c.nbytes()),
                NDArrayAccess::owner(c));
}

tessera::array::NDArray tessera::Codec<tessera::array::NDArray>::decode(tessera::Decoder& d) {
  using namespace tessera::array;
  const DType dtype = dtype_from_name(d.read_string());
  const size_t nd = d.read_array();
  if (nd > 64) throw SerializationError(fmt::format("an array of {} dimensions", nd));
  Shape shape(nd);
  uint64_t n = 1;
  for (auto& s : shape) {
    s = d.read_int();
    if (s < 0 || (s > 0 && n > (uint64_t{1} << 62) / static_cast<uint64_t>(s))) {
      throw SerializationError("array shape out of range");
    }
    n *= static_cast<uint64_t>(s);
  }
  Frame f = d.read_frame();
  if (f.bytes.size() != n * dtype_size(dtype)) {
    throw SerializationError(fmt::format("array of shape {} ({}) needs {} bytes, the frame has {}",
                                         shape_str(shape), dtype_name(dtype), n * dtype_size(dtype),
                                         f.bytes.size()));
  }
  if (reinterpret_cast<uintptr_t>(f.bytes.data()) % dtype_size(dtype) != 0) {
    NDArray out = NDArray::empty(dtype, shape);  // misaligned: copy
    std::memcpy(out.raw_mutable_data(), f.bytes.data(), f.bytes.size());
    return out;
  }
  return NDArray::from_buffer(f.owner, f.bytes.data(), dtype, std::move(shape));
}

// Linear algebra: matmul and dot, with BLAS gemm per block pair.
#include <cblas.h>
#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

std::atomic<int> g_blas_threads{-1};

// tessera runs blocks in parallel; BLAS inside a task uses blas_threads() threads (1 by
// default) so the two do not oversubscribe the cores.
void apply_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (g_blas_threads.load() < 0) {
      int n = 1;
      if (const char* s = std::getenv("TESSERA_BLAS_THREADS")) n = std::max(1, std::atoi(s));
      g_blas_threads.store(n);
    }
    openblas_set_num_threads(g_blas_threads.load());
  });
}

// A 2-D block as BLAS sees it: contiguous row-major, or its transpose.
struct Operand {
  NDArray keep;
  const void* data;
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};

Operand as_operand(const NDArray& a, DType t) {
  NDArray x = a.dtype() == t ? a : a.astype(t);
  const auto& st = x.strides();
  const auto& sh = x.shape();
  if ((st[1] == 1 || sh[1] == 1) && st[0] >= std::max<int64_t>(sh[1], 1))
    return {x, x.raw_data(), CblasNoTrans, std::max<int64_t>(st[0], 1)};
  if ((st[0] == 1 || sh[0] == 1) && st[1] >= std::max<int64_t>(sh[0], 1))
    return {x, x.raw_data(), CblasTrans, std::max<int64_t>(st[1], 1)};
  NDArray c = x.contiguous();
  return {c, c.raw_data(), CblasNoTrans, std::max<int64_t>(sh[1], 1)};
}

template <class T>
void naive_gemm(const NDArray& a, const NDArray& b, T* c, int64_t m, int64_t n, int64_t k) {
  const NDArray x = a.astype(dtype_of<T>()), y = b.astype(dtype_of<T>());
  const T* pa = x.data<T>();
  const T* pb = y.data<T>();
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < k; ++p) {
      const T v = pa[i * k + p];
      for (int64_t j = 0; j < n; ++j) {
        if constexpr (std::is_same_v<T, bool>) {
          c[i * n + j] = c[i * n + j] || (v && pb[p * n + j]);
        } else {
          using U = std::make_unsigned_t<T>;
          c[i * n + j] = static_cast<T>(static_cast<U>(c[i * n + j]) +
                                        static_cast<U>(v) * static_cast<U>(pb[p * n + j]));
        }
      }
    }
  }
}

// C = sum over p of A[p] @ B[p].
NDArray matmul_block(const std::vector<Value>& as, const std::vector<Value>& bs,
                     const std::string& dtype) {
  if (as.size() != bs.size() || as.empty())
    throw ValueError("array.matmul: block lists differ in length");
  const DType t = dtype_from_name(dtype);
  const int64_t m = as_ndarray(as[0]).shape().at(0);
  const int64_t n = as_ndarray(bs[0]).shape().at(1);
  NDArray c = NDArray::zeros(t, {m, n});
  for (size_t p = 0; p < as.size(); ++p) {
    const NDArray& a = as_ndarray(as[p]);
    const NDArray& b = as_ndarray(bs[p]);
    const int64_t k = a.shape()[1];
    if (a.ndim() != 2 || b.ndim() != 2 || b.shape()[0] != k || a.shape()[0] != m ||
        b.shape()[1] != n) {
      throw ValueError(fmt::format("array.matmul: blocks {} and {} do not fit",
                                   shape_str(a.shape()), shape_str(b.shape())));
    }
    if (m == 0 || n == 0 || k == 0) continue;
    if (t == DType::Float64 || t == DType::Float32) {
      apply_blas_threads();
      const Operand x = as_operand(a, t), y = as_operand(b, t);
      if (t == DType::Float64) {
        cblas_dgemm(CblasRowMajor, x.trans, y.trans, static_cast<int>(m), static_cast<int>(n),
                    static_cast<int>(k), 1.0, static_cast<const double*>(x.data),
                    static_cast<int>(x.ld), static_cast<const double*>(y.data),
                    static_cast<int>(y.ld), 1.0, c.mutable_data<double>(), static_cast<int>(n));
      } else {
        cblas_sgemm(CblasRowMajor, x.trans, y.trans, static_cast<int>(m), static_cast<int>(n),
                    static_cast<int>(k), 1.0f, static_cast<const float*>(x.data),
                    static_cast<int>(x.ld), static_cast<const float*>(y.data),
                    static_cast<int>(y.ld), 1.0f, c.mutable_data<float>(), static_cast<int>(n));
      }
    } else {
      visit_dtype(t, [&](auto z) {
        using T = decltype(z);
        if constexpr (!std::is_floating_point_v<T>)
          naive_gemm<T>(a.contiguous(), b.contiguous(), c.mutable_data<T>(), m, n, k);
      });
    }
  }
  return c;
}
TESSERA_REGISTER_AS("array.matmul", matmul_block);

}  // namespace

std::string blas_core() {
  const char* s = openblas_get_corename();
  return s ? s : "unknown";
}

int set_blas_threads(int n) {
  if (n < 1) throw ValueError(fmt::format("BLAS threads must be at least 1, not {}", n));
  const int old = g_blas_threads.exchange(n);
  openblas_set_num_threads(n);
  return old < 0 ? 1 : old;
}

Array matmul(const Array& a, const Array& b) {
  require_known_chunks(a, "matmul");
  require_known_chunks(b, "matmul");
  if (a.ndim() == 0 || b.ndim() == 0) {
    throw ValueError(
        fmt::format("matmul: input operand does not have enough dimensions (shapes {} and {})",
                    shape_str(a.shape()), shape_str(b.shape())));
  }
  if (a.ndim() > 2 || b.ndim() > 2) {
    throw ValueError(
        fmt::format("matmul of shapes {} and {}: only 1-D and 2-D operands are supported",
                    shape_str(a.shape()), shape_str(b.shape())));
  }
  const int64_t ka = a.shape().back();
  const int64_t kb = b.ndim() == 1 ? b.shape()[0] : b.shape()[0];
  if (ka != kb) {
    throw ValueError(
        fmt::format("matmul: mismatch in its core dimension: shapes {} and {} ({} != {})",
                    shape_str(a.shape()), shape_str(b.shape()), ka, kb));
  }
  const DType t = result_type(a.dtype(), b.dtype());
  // 1-D operands: NumPy's promotion, computed as broadcast products and sums. The sums are cast
  // back to the operands' type, as NumPy's matmul keeps it (sum() gives int64 for int32 and
  // bool): the int64 sum wraps to the same int32 value, and bool is "some product is true".
  if (a.ndim() == 1 && b.ndim() == 1) return sum(a * b.rechunk(Chunks{a.chunks()[0]})).astype(t);
  if (b.ndim() == 1) return sum(a * b.rechunk(Chunks{a.chunks()[1]}), 1).astype(t);
  if (a.ndim() == 1) return sum(b.T() * a.rechunk(Chunks{b.chunks()[0]}), 1).astype(t);
  // The contracted axis must be cut the same way on both sides.
  Array B = b;
  if (b.chunks()[0] != a.chunks()[1]) B = b.rechunk(Chunks{a.chunks()[1], b.chunks()[1]});
  const Shape shape{a.shape()[0], B.shape()[1]};
  const Chunks chunks{a.chunks()[0], B.chunks()[1]};
  std::string name = make_name("matmul", std::vector<Value>{token_of(a), token_of(B)});
  const std::string an = a.name(), bn = B.name();
  const int64_t kblocks = static_cast<int64_t>(a.chunks()[1].size());
  const Value dt = Value::of(std::string(dtype_name(t)));
  auto layer = std::make_shared<BlockLayer>(
      name, "matmul", numblocks_of(chunks), std::vector<std::string>{an, bn},
      [an, bn, kblocks, dt](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<Arg> as, bs;
        for (int64_t p = 0; p < kblocks; ++p) {
          Key ka(an, {c[0], p}), kb(bn, {p, c[1]});
          external.push_back(ka);
          external.push_back(kb);
          as.push_back(Arg::ref(std::move(ka)));
          bs.push_back(Arg::ref(std::move(kb)));
        }
        return Task::call(get_op("array.matmul"),
                          {Arg::list(std::move(as)), Arg::list(std::move(bs)), Arg(dt)});
      });
  const Array inputs[] = {a, B};
  return make_array(std::move(name), "matmul", t, shape, chunks, std::move(layer), inputs);
}

Array dot(const Array& a, const Array& b) {
  return matmul(a, b);
}

}  // namespace tessera::array

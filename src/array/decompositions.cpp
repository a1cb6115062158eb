// Decompositions and solvers: tsqr/qr, svd, svd_compressed, cholesky, solve, lstsq, norm,
// and tensordot. LAPACK (through LAPACKE) works on each block; the graph combines them.
#include <cblas.h>
#include <fmt/format.h>
#include <lapacke.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

using Mat = NDArray;  // float64, contiguous, 2-D

Mat f64(const NDArray& a) {
  return a.astype(DType::Float64);
}

// Copies a into a fresh contiguous float64 matrix that LAPACK may overwrite.
Mat writable(const NDArray& a) {
  Mat out = NDArray::empty(DType::Float64, a.shape());
  const Mat c = f64(a);
  std::memcpy(out.raw_mutable_data(), c.raw_data(), c.nbytes());
  return out;
}

Mat matmul2(const Mat& a, const Mat& b, bool ta = false, bool tb = false) {
  const int64_t m = ta ? a.shape()[1] : a.shape()[0], k = ta ? a.shape()[0] : a.shape()[1];
  const int64_t n = tb ? b.shape()[0] : b.shape()[1];
  Mat c = NDArray::zeros(DType::Float64, {m, n});
  if (m && n && k) {
    const Mat x = f64(a).contiguous(), y = f64(b).contiguous();
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0,
                x.data<double>(), static_cast<int>(x.shape()[1]), y.data<double>(),
                static_cast<int>(y.shape()[1]), 0.0, c.mutable_data<double>(), static_cast<int>(n));
  }
  return c;
}

void check_info(lapack_int info, const char* what) {
  if (info < 0) throw ValueError(fmt::format("{}: LAPACK rejected argument {}", what, -info));
  if (info > 0) {
    if (std::string_view(what) == "cholesky") throw LinAlgError("Matrix is not positive definite");
    if (std::string_view(what) == "solve") throw LinAlgError("Singular matrix");
    throw LinAlgError(fmt::format("{} did not converge", what));
  }
}

// Reduced QR of one block: [Q (m x p), R (p x n)], p = min(m, n).
std::vector<Value> qr_mat(const NDArray& block) {
  Mat a = writable(block);
  const int64_t m = a.shape()[0], n = a.shape()[1], p = std::min(m, n);
  Mat r = NDArray::zeros(DType::Float64, {p, n});
  Mat q = NDArray::zeros(DType::Float64, {m, p});
  if (p > 0) {
    std::vector<double> tau(static_cast<size_t>(p));
    double* pa = a.mutable_data<double>();
    check_info(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, static_cast<int>(m), static_cast<int>(n), pa,
                              static_cast<int>(n), tau.data()),
               "qr");
    double* pr = r.mutable_data<double>();
    for (int64_t i = 0; i < p; ++i) {
      for (int64_t j = i; j < n; ++j) pr[i * n + j] = pa[i * n + j];
    }
    // Q: the first p columns of the reflectors' product.
    double* pq = q.mutable_data<double>();
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < p; ++j) pq[i * p + j] = pa[i * n + j];
    }
    check_info(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, static_cast<int>(m), static_cast<int>(p),
                              static_cast<int>(p), pq, static_cast<int>(p), tau.data()),
               "qr");
  }
  return {Value::of(q), Value::of(r)};
}

Value qr_block(const NDArray& a) {
  return Value::list(qr_mat(a));
}
TESSERA_REGISTER_AS("linalg.qr-block", qr_block);

// QR of the stacked R factors of every block: [Q2, R].
Value qr_stack(const std::vector<Value>& parts) {
  std::vector<NDArray> rs;
  int64_t rows = 0, n = -1;
  for (const Value& p : parts) {
    const NDArray& r = as_ndarray(p.get<std::vector<Value>>().at(1));
    rows += r.shape()[0];
    n = r.shape()[1];
    rs.push_back(r);
  }
  Mat stacked = NDArray::empty(DType::Float64, {rows, n});
  int64_t at = 0;
  for (const NDArray& r : rs) {
    std::memcpy(stacked.mutable_data<double>() + at * n, r.data<double>(), r.nbytes());
    at += r.shape()[0];
  }
  return Value::list(qr_mat(stacked));
}
TESSERA_REGISTER_AS("linalg.qr-stack", qr_stack);

// Q of block i: Q1_i @ Q2[offset : offset + rows of R_i].
NDArray qr_apply(const std::vector<Value>& first, const std::vector<Value>& second,
                 int64_t offset) {
  const NDArray& q1 = as_ndarray(first.at(0));
  const NDArray& r1 = as_ndarray(first.at(1));
  const NDArray& q2 = as_ndarray(second.at(0));
  return matmul2(q1, q2.slice(0, offset, offset + r1.shape()[0]));
}
TESSERA_REGISTER_AS("linalg.qr-apply", qr_apply);

NDArray pick(const std::vector<Value>& list, int64_t i) {
  if (i < 0 || i >= static_cast<int64_t>(list.size()))
    throw ValueError("linalg.pick: index out of range");
  return as_ndarray(list[static_cast<size_t>(i)]);
}
TESSERA_REGISTER_AS("linalg.pick", pick, tessera::OpOptions{.cheap = true});

// Thin SVD of a small matrix: [U, S, Vt].
Value svd_small(const NDArray& block) {
  Mat a = writable(block);
  const int64_t m = a.shape()[0], n = a.shape()[1], p = std::min(m, n);
  Mat u = NDArray::zeros(DType::Float64, {m, p}), s = NDArray::zeros(DType::Float64, {p}),
      vt = NDArray::zeros(DType::Float64, {p, n});
  if (p > 0) {
    check_info(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<int>(m), static_cast<int>(n),
                              a.mutable_data<double>(), static_cast<int>(n),
                              s.mutable_data<double>(), u.mutable_data<double>(),
                              static_cast<int>(p), vt.mutable_data<double>(), static_cast<int>(n)),
               "svd");
  }
  return Value::list({Value::of(u), Value::of(s), Value::of(vt)});
}
TESSERA_REGISTER_AS("linalg.svd-small", svd_small);

// a - sum_m x_m y_m (y_m transposed when asked), as a fresh matrix.
Mat minus_products(const NDArray& a, const std::vector<Value>& xs, const std::vector<Value>& ys,
                   bool transpose_y = false) {
  Mat s = writable(a);
  const int64_t m = s.shape()[0], n = s.shape()[1];
  for (size_t j = 0; j < xs.size(); ++j) {
    const Mat x = f64(as_ndarray(xs[j])).contiguous(), y = f64(as_ndarray(ys[j])).contiguous();
    const int64_t k = x.shape()[1];
    if (m && n && k) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, transpose_y ? CblasTrans : CblasNoTrans,
                  static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), -1.0,
                  x.data<double>(), static_cast<int>(k), y.data<double>(),
                  static_cast<int>(y.shape()[1]), 1.0, s.mutable_data<double>(),
                  static_cast<int>(n));
    }
  }
  return s;
}

NDArray chol_diag(const NDArray& akk, const std::vector<Value>& lkj) {
  Mat a = writable(akk);
  const int64_t n = a.shape()[0];
  for (const Value& v : lkj) {
    const Mat l = f64(as_ndarray(v)).contiguous();
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<int>(n),
                static_cast<int>(l.shape()[1]), -1.0, l.data<double>(),
                static_cast<int>(l.shape()[1]), 1.0, a.mutable_data<double>(), static_cast<int>(n));
  }
  if (n > 0)
    check_info(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', static_cast<int>(n), a.mutable_data<double>(),
                              static_cast<int>(n)),
               "cholesky");
  double* p = a.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) p[i * n + j] = 0;
  }
  return a;
}
TESSERA_REGISTER_AS("linalg.cholesky-diag", chol_diag);

// L_ik = (A_ik - sum_j L_ij L_kj^T) L_kk^-T
NDArray chol_off(const NDArray& aik, const std::vector<Value>& lij, const std::vector<Value>& lkj,
                 const NDArray& lkk) {
  Mat a = minus_products(aik, lij, lkj, /*transpose_y=*/true);
  const int64_t m = a.shape()[0], n = a.shape()[1];
  const Mat l = f64(lkk).contiguous();
  if (m && n) {
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                static_cast<int>(m), static_cast<int>(n), 1.0, l.data<double>(),
                static_cast<int>(n), a.mutable_data<double>(), static_cast<int>(n));
  }
  return a;
}
TESSERA_REGISTER_AS("linalg.cholesky-off", chol_off);

// Solves R x = y for upper-triangular R.
NDArray triangular_solve(const NDArray& r, const NDArray& y) {
  const Mat l = f64(r).contiguous();
  const bool vec = y.ndim() == 1;
  Mat x = writable(vec ? y.reshape({y.shape()[0], 1}) : y);
  const int64_t n = l.shape()[0], k = x.shape()[1];
  for (int64_t i = 0; i < n; ++i) {
    if (l.data<double>()[i * n + i] == 0) throw LinAlgError("lstsq: the matrix is rank deficient");
  }
  if (n && k) {
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit,
                static_cast<int>(n), static_cast<int>(k), 1.0, l.data<double>(),
                static_cast<int>(n), x.mutable_data<double>(), static_cast<int>(k));
  }
  return vec ? x.reshape({n}) : x;
}
TESSERA_REGISTER_AS("linalg.triangular-solve", triangular_solve);

// ---- blocked LU (solve) ----
//
// Left-looking block LU with partial pivoting inside each diagonal block, as dask's lu:
// S = A_kk - sum_m L_km U_mk is factored P_k L_kk U_kk (getrf); U_kj = L_kk^-1 P_k^T
// (A_kj - sum_m L_km U_mj); L_ik = (A_ik - sum_m L_im U_mk) U_kk^-1. The right-hand side
// is eliminated as one more block column, then back-substituted.

// [packed L\U, pivots (int64, 1-based as getrf gives them)] of a diagonal block.
Value lu_diag(std::span<const Value> args) {
  const char* op = "linalg.lu-diag";
  const auto& block = arg_at(args, 3, op).get<std::vector<int64_t>>();
  Mat s = minus_products(as_ndarray(arg_at(args, 0, op)),
                         arg_at(args, 1, op).get<std::vector<Value>>(),
                         arg_at(args, 2, op).get<std::vector<Value>>());
  const int64_t n = s.shape()[0];
  std::vector<lapack_int> piv(static_cast<size_t>(std::max<int64_t>(n, 1)));
  if (n > 0) {
    const lapack_int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, static_cast<int>(n),
                                           static_cast<int>(n), s.mutable_data<double>(),
                                           static_cast<int>(n), piv.data());
    if (info < 0) check_info(info, "solve");
    if (info > 0) {
      throw LinAlgError(block.size() == 2 && block[1] > 1
                            ? fmt::format("Singular matrix: diagonal block {} of {} is singular "
                                          "after elimination (pivoting stays within blocks; "
                                          "larger blocks may avoid this)",
                                          block[0], block[1])
                            : std::string("Singular matrix"));
    }
  }
  NDArray p = NDArray::empty(DType::Int64, {n});
  for (int64_t i = 0; i < n; ++i) p.mutable_data<int64_t>()[i] = piv[static_cast<size_t>(i)];
  return Value::list({Value::of(std::move(s)), Value::of(std::move(p))});
}
TESSERA_REGISTER_AS("linalg.lu-diag", lu_diag);

// L_kk^-1 P_k^T (a - sum_m x_m y_m): the U blocks right of a diagonal block, and the
// eliminated right-hand side.
NDArray lu_right(const NDArray& a, const std::vector<Value>& xs, const std::vector<Value>& ys,
                 const std::vector<Value>& factor) {
  Mat s = minus_products(a, xs, ys);
  const Mat lu = f64(as_ndarray(factor.at(0))).contiguous();
  const NDArray& piv = as_ndarray(factor.at(1));
  const int64_t n = s.shape()[0], k = s.shape()[1];
  if (n && k) {
    double* p = s.mutable_data<double>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = piv.data<int64_t>()[i] - 1;
      if (r != i) std::swap_ranges(p + i * k, p + (i + 1) * k, p + r * k);
    }
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, static_cast<int>(n),
                static_cast<int>(k), 1.0, lu.data<double>(), static_cast<int>(n), p,
                static_cast<int>(k));
  }
  return s;
}
TESSERA_REGISTER_AS("linalg.lu-right", lu_right);

// (a - sum_m x_m y_m) U_kk^-1: the L blocks below a diagonal block.
NDArray lu_below(const NDArray& a, const std::vector<Value>& xs, const std::vector<Value>& ys,
                 const std::vector<Value>& factor) {
  Mat s = minus_products(a, xs, ys);
  const Mat lu = f64(as_ndarray(factor.at(0))).contiguous();
  const int64_t m = s.shape()[0], n = s.shape()[1];
  if (m && n) {
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit,
                static_cast<int>(m), static_cast<int>(n), 1.0, lu.data<double>(),
                static_cast<int>(n), s.mutable_data<double>(), static_cast<int>(n));
  }
  return s;
}
TESSERA_REGISTER_AS("linalg.lu-below", lu_below);

// U_kk^-1 (y - sum_j x_j y_j): back substitution of one block row.
NDArray lu_back(const NDArray& y, const std::vector<Value>& us, const std::vector<Value>& xs,
                const std::vector<Value>& factor) {
  Mat s = minus_products(y, us, xs);
  const Mat lu = f64(as_ndarray(factor.at(0))).contiguous();
  const int64_t n = s.shape()[0], k = s.shape()[1];
  if (n && k) {
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit,
                static_cast<int>(n), static_cast<int>(k), 1.0, lu.data<double>(),
                static_cast<int>(n), s.mutable_data<double>(), static_cast<int>(k));
  }
  return s;
}
TESSERA_REGISTER_AS("linalg.lu-back", lu_back);

Array one_block_task(const std::string& label, std::vector<Value> token, DType dtype, Shape shape,
                     std::vector<Array> inputs, std::function<Task(std::vector<Key>&)> make) {
  for (const Array& a : inputs) token.push_back(token_of(a));
  std::string name = make_name(label, token);
  Chunks chunks;
  for (int64_t s : shape) chunks.push_back({s});
  std::vector<std::string> deps;
  for (const Array& a : inputs) deps.push_back(a.name());
  auto layer = std::make_shared<BlockLayer>(
      name, label, numblocks_of(chunks), deps,
      [make](std::span<const int64_t>, std::vector<Key>& external) { return make(external); });
  return make_array(std::move(name), label, dtype, std::move(shape), std::move(chunks),
                    std::move(layer), inputs);
}

Key zero_key(const std::string& name, int nd) {
  return Key(name, std::vector<int64_t>(static_cast<size_t>(nd), 0));
}

DType linalg_dtype(DType t) {
  return t == DType::Float32 ? DType::Float32 : DType::Float64;
}

void check_2d(const Array& a, const char* what) {
  if (a.ndim() != 2) {
    throw ValueError(
        fmt::format("{}: {}-dimensional array given, a 2-D matrix is needed (shape {})", what,
                    a.ndim(), shape_str(a.shape())));
  }
}

// The tsqr graph: per-block QR, then QR of the stacked Rs. Returns Q and R and the name of
// the stacked-QR task (a one-block "array" holding the list), for svd to reuse.
linalg::QR tsqr_impl(const Array& input) {
  check_2d(input, "tsqr");
  Array a = input.chunks()[1].size() == 1
                ? input
                : input.rechunk(Chunks{input.chunks()[0], {input.shape()[1]}});
  const int64_t n = a.shape()[1];
  const DType dt = linalg_dtype(a.dtype());
  std::vector<Value> token{token_of(a)};
  const std::string in = a.name();
  const std::string qr1 = make_name("tsqr-block", token);
  auto l1 = std::make_shared<BlockLayer>(
      qr1, "tsqr-block", a.numblocks(), std::vector<std::string>{in},
      [in](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k(in, c);
        external.push_back(k);
        return Task::call(get_op("linalg.qr-block"), {Arg::ref(std::move(k))});
      });
  const Array l1a =
      make_array(qr1, "tsqr-block", dt, a.shape(), a.chunks(), l1, std::span<const Array>(&a, 1));
  const int64_t nb = a.numblocks()[0];
  // Rows of each block's R: min(rows, n).
  std::vector<int64_t> offsets{0};
  for (int64_t r : a.chunks()[0]) offsets.push_back(offsets.back() + std::min(r, n));
  const int64_t p = std::min(offsets.back(), n);
  const std::string stack = make_name("tsqr-stack", token);
  auto l2 = std::make_shared<BlockLayer>(
      stack, "tsqr-stack", Shape{1, 1}, std::vector<std::string>{qr1},
      [qr1, nb](std::span<const int64_t>, std::vector<Key>& external) {
        std::vector<Arg> parts;
        for (int64_t i = 0; i < nb; ++i) {
          Key k(qr1, {i, 0});
          external.push_back(k);
          parts.push_back(Arg::ref(std::move(k)));
        }
        return Task::call(get_op("linalg.qr-stack"), {Arg::list(std::move(parts))});
      });
  const Array l2a =
      make_array(stack, "tsqr-stack", dt, {1, 1}, {{1}, {1}}, l2, std::span<const Array>(&l1a, 1));
  const std::string qn = make_name("tsqr-q", token);
  auto lq = std::make_shared<BlockLayer>(
      qn, "tsqr-q", Shape{nb, 1}, std::vector<std::string>{qr1, stack},
      [qr1, stack, offsets](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k1(qr1, {c[0], 0}), k2(stack, {0, 0});
        external.push_back(k1);
        external.push_back(k2);
        return Task::call(
            get_op("linalg.qr-apply"),
            {Arg::ref(std::move(k1)), Arg::ref(std::move(k2)), Arg(Value::of(offsets[c[0]]))});
      });
  const Array parts[] = {l1a, l2a};
  Array q =
      make_array(qn, "tsqr-q", DType::Float64, {a.shape()[0], p}, {a.chunks()[0], {p}}, lq, parts);
  const std::string rn = make_name("tsqr-r", token);
  auto lr = std::make_shared<BlockLayer>(
      rn, "tsqr-r", Shape{1, 1}, std::vector<std::string>{stack},
      [stack](std::span<const int64_t>, std::vector<Key>& external) {
        Key k(stack, {0, 0});
        external.push_back(k);
        return Task::call(get_op("linalg.pick"),
                          {Arg::ref(std::move(k)), Arg(Value::of(int64_t{1}))});
      });
  Array r = make_array(rn, "tsqr-r", DType::Float64, {p, n}, {{p}, {n}}, lr,
                       std::span<const Array>(&l2a, 1));
  if (dt == DType::Float32) return {astype(q, dt), astype(r, dt)};
  return {q, r};
}

}  // namespace

namespace linalg {

QR tsqr(const Array& a) {
  return tsqr_impl(a);
}
QR qr(const Array& a) {
  return tsqr_impl(a);
}

SVD svd(const Array& a) {
  check_2d(a, "svd");
  if (a.chunks()[1].size() != 1 && a.shape()[0] < a.shape()[1]) {
    throw ValueError(fmt::format(
        "svd: the matrix {} is not tall-and-skinny (use svd_compressed, or one block of columns)",
        shape_str(a.shape())));
  }
  const QR qr = tsqr_impl(a.astype(DType::Float64));
  const int64_t p = qr.r.shape()[0], n = qr.r.shape()[1];
  const std::string rn = qr.r.name();
  const std::string sv = make_name("svd-small", std::vector<Value>{token_of(qr.r)});
  auto l = std::make_shared<BlockLayer>(sv, "svd-small", Shape{1, 1}, std::vector<std::string>{rn},
                                        [rn](std::span<const int64_t>, std::vector<Key>& external) {
                                          Key k(rn, {0, 0});
                                          external.push_back(k);
                                          return Task::call(get_op("linalg.svd-small"),
                                                            {Arg::ref(std::move(k))});
                                        });
  const Array small = make_array(sv, "svd-small", DType::Float64, {1, 1}, {{1}, {1}}, l,
                                 std::span<const Array>(&qr.r, 1));
  const int64_t k = std::min(p, n);
  auto piece = [&](const char* label, int64_t i, Shape shape) {
    return one_block_task(
        label, {Value::of(i)}, DType::Float64, shape, {small}, [sv, i](std::vector<Key>& external) {
          Key key(sv, {0, 0});
          external.push_back(key);
          return Task::call(get_op("linalg.pick"), {Arg::ref(std::move(key)), Arg(Value::of(i))});
        });
  };
  Array ur = piece("svd-u", 0, {p, k});
  Array s = piece("svd-s", 1, {k});
  Array vt = piece("svd-v", 2, {k, n});
  Array u = matmul(qr.q, ur);
  const DType dt = linalg_dtype(a.dtype());
  if (dt == DType::Float32) return {astype(u, dt), astype(s, dt), astype(vt, dt)};
  return {u, s, vt};
}

SVD svd_compressed(const Array& a, int64_t k, int n_power_iter, uint64_t seed) {
  check_2d(a, "svd_compressed");
  const int64_t m = a.shape()[0], n = a.shape()[1];
  if (k < 1 || k > std::min(m, n)) {
    throw ValueError(
        fmt::format("svd_compressed: rank k = {} must be between 1 and {} for shape {}", k,
                    std::min(m, n), shape_str(a.shape())));
  }
  if (n_power_iter < 0)
    throw ValueError(
        fmt::format("svd_compressed: n_power_iter must be >= 0, not {}", n_power_iter));
  const int64_t width = std::min(k + 10, std::min(m, n));
  const Array x = a.astype(DType::Float64);
  // The range of a, by a random projection (refined by power iterations).
  const Array omega = random::normal({n, width}, Chunks{x.chunks()[1], {width}}, seed);
  Array h = matmul(x, omega);
  for (int i = 0; i < n_power_iter; ++i) {
    h = tsqr_impl(h).q;
    h = matmul(x, matmul(x.T(), h));
  }
  const Array q = tsqr_impl(h).q;                                            // m x width
  const Array small = matmul(q.T(), x);                                      // width x n
  const SVD inner = svd(small.T().rechunk(Chunks{x.chunks()[1], {width}}));  // n x width = U S Vt
  // a ~ q @ small = q @ (U S Vt)^T = (q @ Vt^T) S U^T
  Array u = matmul(q, inner.v.T())[{slice(), slice(0, k)}];
  Array s = inner.s[{slice(0, k)}];
  Array v = inner.u.T()[{slice(0, k)}];
  return {u, s, v};
}

Array cholesky(const Array& input) {
  check_2d(input, "cholesky");
  if (input.shape()[0] != input.shape()[1]) {
    throw ValueError(
        fmt::format("cholesky: the matrix must be square, not {}", shape_str(input.shape())));
  }
  const Array a = input.chunks()[1] == input.chunks()[0]
                      ? input
                      : input.rechunk(Chunks{input.chunks()[0], input.chunks()[0]});
  const std::string in = a.name();
  const std::string name = make_name("cholesky", std::vector<Value>{token_of(a)});
  const Chunks ch = a.chunks();
  auto layer = std::make_shared<BlockLayer>(
      name, "cholesky", a.numblocks(), std::vector<std::string>{in},
      [in, name, ch](std::span<const int64_t> c, std::vector<Key>& external) {
        const int64_t i = c[0], k = c[1];
        if (k > i) {
          return Task::call(get_op("array.constant"),
                            {Arg(Value::of(std::string("float64"))),
                             Arg(Value::of(block_shape(ch, c))), Arg(Value::of(0.0))});
        }
        Key aik(in, {i, k});
        external.push_back(aik);
        std::vector<Arg> li, lk;
        for (int64_t j = 0; j < k; ++j) {
          li.push_back(Arg::ref(Key(name, {i, j})));
          lk.push_back(Arg::ref(Key(name, {k, j})));
        }
        if (i == k)
          return Task::call(get_op("linalg.cholesky-diag"),
                            {Arg::ref(std::move(aik)), Arg::list(std::move(lk))});
        return Task::call(get_op("linalg.cholesky-off"),
                          {Arg::ref(std::move(aik)), Arg::list(std::move(li)),
                           Arg::list(std::move(lk)), Arg::ref(Key(name, {k, k}))});
      });
  Array out = make_array(name, "cholesky", DType::Float64, a.shape(), a.chunks(), std::move(layer),
                         std::span<const Array>(&a, 1));
  return linalg_dtype(a.dtype()) == DType::Float32 ? astype(out, DType::Float32) : out;
}

Array solve(const Array& a, const Array& b) {
  check_2d(a, "solve");
  if (a.shape()[0] != a.shape()[1])
    throw ValueError(fmt::format("solve: a must be square, not {}", shape_str(a.shape())));
  if (b.ndim() < 1 || b.ndim() > 2 || b.shape()[0] != a.shape()[0]) {
    throw ValueError(fmt::format("solve: b of shape {} does not fit a of shape {}",
                                 shape_str(b.shape()), shape_str(a.shape())));
  }
  require_known_chunks(a, "solve");
  require_known_chunks(b, "solve");
  const std::vector<int64_t>& rows = a.chunks()[0];
  const Array A = a.chunks()[1] == rows ? a : a.rechunk(Chunks{rows, rows});
  const bool vec = b.ndim() == 1;
  const Array b2 = vec ? b.reshape({b.shape()[0], 1}) : b;
  const Array B = b2.chunks()[0] == rows ? b2 : b2.rechunk(Chunks{rows, b2.chunks()[1]});
  const auto nb = static_cast<int64_t>(rows.size());
  const std::string in = A.name(), rhs = B.name();
  // The factors: L below the diagonal, U right of it, [L\U, pivots] on it.
  const std::string lu = make_name("lu", std::vector<Value>{token_of(A)});
  auto lu_layer = std::make_shared<BlockLayer>(
      lu, "lu", A.numblocks(), std::vector<std::string>{in},
      [in, lu, nb](std::span<const int64_t> c, std::vector<Key>& external) {
        const int64_t i = c[0], j = c[1], k = std::min(i, j);
        Key aij(in, {i, j});
        external.push_back(aij);
        std::vector<Arg> ls, us;
        for (int64_t m = 0; m < k; ++m) {
          ls.push_back(Arg::ref(Key(lu, {i, m})));
          us.push_back(Arg::ref(Key(lu, {m, j})));
        }
        std::vector<Arg> args;
        args.reserve(4);  // (room for the fourth: GCC 12 warns wrongly on growing from 3)
        args.push_back(Arg::ref(std::move(aij)));
        args.push_back(Arg::list(std::move(ls)));
        args.push_back(Arg::list(std::move(us)));
        if (i == j) {
          args.push_back(Arg(Value::of(std::vector<int64_t>{i, nb})));
          return Task::call(get_op("linalg.lu-diag"), std::move(args));
        }
        args.push_back(Arg::ref(Key(lu, {k, k})));
        return Task::call(get_op(i < j ? "linalg.lu-right" : "linalg.lu-below"), std::move(args));
      });
  const Array factors = make_array(lu, "lu", DType::Float64, A.shape(), A.chunks(),
                                   std::move(lu_layer), std::span<const Array>(&A, 1));
  // Forward elimination of b: y_k = L_kk^-1 P_k^T (b_k - sum_m L_km y_m).
  const std::string y = make_name("lu-forward", std::vector<Value>{token_of(factors), token_of(B)});
  auto y_layer = std::make_shared<BlockLayer>(
      y, "lu-forward", B.numblocks(), std::vector<std::string>{lu, rhs},
      [lu, rhs, y](std::span<const int64_t> c, std::vector<Key>& external) {
        const int64_t k = c[0], col = c[1];
        Key bk(rhs, {k, col}), fk(lu, {k, k});
        external.push_back(bk);
        external.push_back(fk);
        std::vector<Arg> ls, ys;
        for (int64_t m = 0; m < k; ++m) {
          Key l(lu, {k, m});
          external.push_back(l);
          ls.push_back(Arg::ref(std::move(l)));
          ys.push_back(Arg::ref(Key(y, {m, col})));
        }
        return Task::call(get_op("linalg.lu-right"),
                          {Arg::ref(std::move(bk)), Arg::list(std::move(ls)),
                           Arg::list(std::move(ys)), Arg::ref(std::move(fk))});
      });
  const Array fw[] = {factors, B};
  const Array Y = make_array(y, "lu-forward", DType::Float64, B.shape(), B.chunks(),
                             std::move(y_layer), fw);
  // Back substitution: x_k = U_kk^-1 (y_k - sum_{j>k} U_kj x_j).
  const std::string x = make_name("lu-back", std::vector<Value>{token_of(factors), token_of(Y)});
  auto x_layer = std::make_shared<BlockLayer>(
      x, "lu-back", B.numblocks(), std::vector<std::string>{lu, y},
      [lu, y, x, nb](std::span<const int64_t> c, std::vector<Key>& external) {
        const int64_t k = c[0], col = c[1];
        Key yk(y, {k, col}), fk(lu, {k, k});
        external.push_back(yk);
        external.push_back(fk);
        std::vector<Arg> us, xs;
        for (int64_t j = k + 1; j < nb; ++j) {
          Key u(lu, {k, j});
          external.push_back(u);
          us.push_back(Arg::ref(std::move(u)));
          xs.push_back(Arg::ref(Key(x, {j, col})));
        }
        return Task::call(get_op("linalg.lu-back"),
                          {Arg::ref(std::move(yk)), Arg::list(std::move(us)),
                           Arg::list(std::move(xs)), Arg::ref(std::move(fk))});
      });
  const Array bw[] = {factors, Y};
  Array X = make_array(x, "lu-back", DType::Float64, B.shape(), B.chunks(), std::move(x_layer), bw);
  if (vec) X = X.reshape({b.shape()[0]});
  if (X.chunks() != b.chunks()) X = X.rechunk(b.chunks());
  return linalg_dtype(result_type(a.dtype(), b.dtype())) == DType::Float32
             ? astype(X, DType::Float32)
             : X;
}

Lstsq lstsq(const Array& a, const Array& b) {
  check_2d(a, "lstsq");
  if (b.ndim() < 1 || b.ndim() > 2 || b.shape()[0] != a.shape()[0]) {
    throw ValueError(fmt::format("lstsq: b of shape {} does not fit a of shape {}",
                                 shape_str(b.shape()), shape_str(a.shape())));
  }
  if (a.shape()[0] < a.shape()[1]) {
    throw ValueError(
        fmt::format("lstsq: a of shape {} is not tall-and-skinny", shape_str(a.shape())));
  }
  const QR qr = tsqr_impl(a.astype(DType::Float64));
  const Array qtb = matmul(qr.q.T(), b.astype(DType::Float64)).rechunk(-1);
  const Array r = qr.r;
  const int nb = qtb.ndim();
  const Shape xs = b.ndim() == 1 ? Shape{a.shape()[1]} : Shape{a.shape()[1], b.shape()[1]};
  Array x = one_block_task("lstsq", {}, DType::Float64, xs, {r, qtb},
                           [r, qtb, nb](std::vector<Key>& external) {
                             Key kr = zero_key(r.name(), 2), kb = zero_key(qtb.name(), nb);
                             external.push_back(kr);
                             external.push_back(kb);
                             return Task::call(get_op("linalg.triangular-solve"),
                                               {Arg::ref(std::move(kr)), Arg::ref(std::move(kb))});
                           });
  const Array diff = matmul(a, x) - b;
  return {x, sum(diff * diff, 0)};
}

Array norm(const Array& x, std::optional<double> ord) {
  const Array ax = abs(x.astype(float_result(x.dtype())));
  if (x.ndim() == 1) {
    if (!ord || *ord == 2) return sqrt(sum(ax * ax));
    const double p = *ord;
    if (std::isinf(p)) return p > 0 ? max(ax) : min(ax);
    if (p == 0) return count_nonzero(x).astype(float_result(x.dtype()));
    if (p == 1) return sum(ax);
    return power(sum(power(ax, scalar(p))), scalar(1.0 / p));
  }
  if (x.ndim() == 2) {
    if (!ord) return sqrt(sum(ax * ax));
    const double p = *ord;
    if (p == 1) return max(sum(ax, 0));
    if (p == -1) return min(sum(ax, 0));
    if (std::isinf(p)) return p > 0 ? max(sum(ax, 1)) : min(sum(ax, 1));
    if (p == 2 || p == -2) {
      const SVD s = svd(x);
      return p > 0 ? max(s.s) : min(s.s);
    }
  }
  throw ValueError(fmt::format("norm: ord {} is not supported for a {}-dimensional array",
                               ord ? fmt::format("{}", *ord) : "None", x.ndim()));
}

Array norm(const Array& x, const std::string& ord) {
  if (x.ndim() != 2)
    throw ValueError(
        fmt::format("norm: ord '{}' needs a 2-D array, not shape {}", ord, shape_str(x.shape())));
  if (ord == "fro") return norm(x);
  if (ord == "nuc") return sum(svd(x).s);
  throw ValueError(fmt::format("norm: invalid ord '{}' (use \"fro\", \"nuc\" or a number)", ord));
}

}  // namespace linalg

Array tensordot(const Array& a, const Array& b, const std::vector<int>& a_axes,
                const std::vector<int>& b_axes) {
  if (a_axes.size() != b_axes.size()) {
    throw ValueError(
        fmt::format("tensordot: {} axes of a and {} of b", a_axes.size(), b_axes.size()));
  }
  std::vector<int> ca, cb;
  for (size_t i = 0; i < a_axes.size(); ++i) {
    ca.push_back(normalize_axis(a_axes[i], a.ndim()));
    cb.push_back(normalize_axis(b_axes[i], b.ndim()));
    if (a.shape()[ca.back()] != b.shape()[cb.back()]) {
      throw ValueError(
          fmt::format("tensordot: shape mismatch for sum: axis {} of {} and axis {} of {}",
                      ca.back(), shape_str(a.shape()), cb.back(), shape_str(b.shape())));
    }
  }
  std::vector<int> fa, fb;  // free axes
  for (int k = 0; k < a.ndim(); ++k) {
    if (std::find(ca.begin(), ca.end(), k) == ca.end()) fa.push_back(k);
  }
  for (int k = 0; k < b.ndim(); ++k) {
    if (std::find(cb.begin(), cb.end(), k) == cb.end()) fb.push_back(k);
  }
  std::vector<int> pa = fa, pb = cb;
  pa.insert(pa.end(), ca.begin(), ca.end());
  pb.insert(pb.end(), fb.begin(), fb.end());
  int64_t m = 1, k = 1, n = 1;
  Shape out;
  for (int x : fa) {
    m *= a.shape()[x];
    out.push_back(a.shape()[x]);
  }
  for (int x : ca) k *= a.shape()[x];
  for (int x : fb) {
    n *= b.shape()[x];
    out.push_back(b.shape()[x]);
  }
  const Array a2 = a.transpose(pa).reshape({m, k});
  const Array b2 = b.transpose(pb).reshape({k, n});
  return matmul(a2, b2).reshape(out);
}

Array tensordot(const Array& a, const Array& b, int axes) {
  if (axes < 0 || axes > a.ndim() || axes > b.ndim()) {
    throw ValueError(fmt::format("tensordot: cannot contract {} axes of shapes {} and {}", axes,
                                 shape_str(a.shape()), shape_str(b.shape())));
  }
  std::vector<int> x, y;
  for (int i = 0; i < axes; ++i) {
    x.push_back(a.ndim() - axes + i);
    y.push_back(i);
  }
  return tensordot(a, b, x, y);
}

}  // namespace tessera::array

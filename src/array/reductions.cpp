// Reductions as tree reductions (dask's reduction): a chunk step per block gives partial
// results (with reduced axes kept at length 1), combine steps merge groups of split_every
// partials, and the aggregate step turns the last partial into the result block. Partials
// are lists of NDArray fields: sums and counts for mean, (count, mean, M2) for var (merged
// with Chan et al.'s pairwise update), (value, index) for argmin/argmax.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

// Sums of deviations from `shift` and of their squares over n contiguous elements: the
// inner loop of var/std over a whole block. Four plain lanes per sum (two SSE2 registers,
// no spills); on CPUs with AVX2 and FMA, eight lanes in four AVX registers.
template <class T>
void moments_portable(const T* p, int64_t n, double shift, double& s1, double& s2) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const double d0 = static_cast<double>(p[i]) - shift, d1 = static_cast<double>(p[i + 1]) - shift;
    const double d2 = static_cast<double>(p[i + 2]) - shift,
                 d3 = static_cast<double>(p[i + 3]) - shift;
    a0 += d0;
    a1 += d1;
    a2 += d2;
    a3 += d3;
    b0 += d0 * d0;
    b1 += d1 * d1;
    b2 += d2 * d2;
    b3 += d3 * d3;
  }
  for (; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - shift;
    a0 += d;
    b0 += d * d;
  }
  s1 = (a0 + a1) + (a2 + a3);
  s2 = (b0 + b1) + (b2 + b3);
}

#if defined(__x86_64__) && defined(__GNUC__)
template <class T>
__attribute__((target("avx2,fma"))) void moments_avx2(const T* p, int64_t n, double shift,
                                                      double& s1, double& s2) {
  const __m256d sh = _mm256_set1_pd(shift);
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256d x0, x1;
    if constexpr (std::is_same_v<T, double>) {
      x0 = _mm256_loadu_pd(p + i);
      x1 = _mm256_loadu_pd(p + i + 4);
    } else {
      const __m256 f = _mm256_loadu_ps(p + i);
      x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
      x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
    }
    const __m256d d0 = _mm256_sub_pd(x0, sh), d1 = _mm256_sub_pd(x1, sh);
    a0 = _mm256_add_pd(a0, d0);
    a1 = _mm256_add_pd(a1, d1);
    b0 = _mm256_fmadd_pd(d0, d0, b0);
    b1 = _mm256_fmadd_pd(d1, d1, b1);
  }
  alignas(32) double a[4], b[4];
  _mm256_store_pd(a, _mm256_add_pd(a0, a1));
  _mm256_store_pd(b, _mm256_add_pd(b0, b1));
  double t1 = 0, t2 = 0;
  moments_portable(p + i, n - i, shift, t1, t2);
  s1 = ((a[0] + a[1]) + (a[2] + a[3])) + t1;
  s2 = ((b[0] + b[1]) + (b[2] + b[3])) + t2;
}

// TESSERA_ARRAY_SIMD=portable turns the AVX2 kernels off (the tests run both paths).
bool cpu_has_avx2_fma() {
  static const bool yes = [] {
    const char* env = std::getenv("TESSERA_ARRAY_SIMD");
    if (env && std::string_view(env) == "portable") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#endif

template <class T>
void moments(const T* p, int64_t n, double shift, double& s1, double& s2) {
#if defined(__x86_64__) && defined(__GNUC__)
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    if (cpu_has_avx2_fma()) return moments_avx2(p, n, shift, s1, s2);
  }
#endif
  moments_portable(p, n, shift, s1, s2);
}

enum class RKind : int64_t {
  Sum,
  Prod,
  Min,
  Max,
  Any,
  All,
  NanSum,
  CountNonzero,
  Mean,
  NanMean,
  Var,
  Std,
  ArgMin,
  ArgMax
};

const char* kind_name(RKind k) {
  switch (k) {
    case RKind::Sum:
      return "sum";
    case RKind::Prod:
      return "prod";
    case RKind::Min:
      return "min";
    case RKind::Max:
      return "max";
    case RKind::Any:
      return "any";
    case RKind::All:
      return "all";
    case RKind::NanSum:
      return "nansum";
    case RKind::CountNonzero:
      return "count_nonzero";
    case RKind::Mean:
      return "mean";
    case RKind::NanMean:
      return "nanmean";
    case RKind::Var:
      return "var";
    case RKind::Std:
      return "std";
    case RKind::ArgMin:
      return "argmin";
    case RKind::ArgMax:
      return "argmax";
  }
  return "?";
}

// Configuration passed to every step: kind, input dtype, output dtype, keepdims, ddof,
// then the reduced axes (of the input).
struct Config {
  RKind kind;
  DType in, out;
  bool keepdims;
  int64_t ddof;
  std::vector<int64_t> axes;
  // argmin/argmax: the array's shape and the block offsets come per chunk task.
  std::vector<int64_t> encode() const {
    std::vector<int64_t> v{static_cast<int64_t>(kind), static_cast<int64_t>(in),
                           static_cast<int64_t>(out), keepdims, ddof};
    v.insert(v.end(), axes.begin(), axes.end());
    return v;
  }
  static Config decode(const std::vector<int64_t>& v) {
    if (v.size() < 5 || v[0] < 0 || v[0] > static_cast<int64_t>(RKind::ArgMax) || v[1] < 0 ||
        v[1] > 4 || v[2] < 0 || v[2] > 4) {
      throw ValueError("array reduction: malformed configuration");
    }
    return {static_cast<RKind>(v[0]),
            static_cast<DType>(v[1]),
            static_cast<DType>(v[2]),
            v[3] != 0,
            v[4],
            std::vector<int64_t>(v.begin() + 5, v.end())};
  }
};

// ---- the chunk step ----

// Accumulates the elements of `block` into `out` (the block's shape with reduced axes of
// length 1, contiguous): op(acc, x) per element, merge(acc, acc) to join lanes.
template <class T, class A, class Op, class Merge>
void reduce_rows(const NDArray& block, const std::vector<bool>& reduced, A* out, A identity, Op op,
                 Merge merge) {
  const int nd = block.ndim();
  const T* base = static_cast<const T*>(block.raw_data());
  if (block.size() == 0) return;
  if (nd == 0) {
    op(out[0], base[0]);
    return;
  }
  const auto& sh = block.shape();
  const auto& st = block.strides();
  // Strides of `out` (contiguous, keepdims shape).
  std::vector<int64_t> ost(static_cast<size_t>(nd));
  int64_t s = 1;
  for (int k = nd - 1; k >= 0; --k) {
    ost[k] = reduced[k] ? 0 : s;
    s *= reduced[k] ? 1 : sh[k];
  }
  const int64_t len = sh[nd - 1], ls = st[nd - 1];
  const bool last_reduced = reduced[nd - 1];
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  int64_t in_off = 0, out_off = 0;
  while (true) {
    const T* row = base + in_off;
    if (last_reduced) {
      // Eight independent lanes: vectorizable and more accurate than one running sum.
      A lane[8] = {identity, identity, identity, identity, identity, identity, identity, identity};
      int64_t i = 0;
      if (ls == 1) {
        for (; i + 8 <= len; i += 8) {
          for (int j = 0; j < 8; ++j) op(lane[j], row[i + j]);
        }
      }
      for (; i < len; ++i) op(lane[0], row[i * ls]);
      for (int j = 1; j < 8; ++j) merge(lane[0], lane[j]);
      merge(out[out_off], lane[0]);
    } else {
      A* o = out + out_off;
      if (ls == 1 && nd >= 2 && reduced[nd - 2] && sh[nd - 2] - idx[nd - 2] >= 4) {
        // The next rows fold into the same output row: four at a time, so each output
        // element is loaded and stored once per four rows (the loop is otherwise
        // store-bound).
        const int64_t rs = st[nd - 2];
        const T* r1 = row + rs;
        const T* r2 = row + 2 * rs;
        const T* r3 = row + 3 * rs;
        for (int64_t i = 0; i < len; ++i) {
          A acc = o[i];
          op(acc, row[i]);
          op(acc, r1[i]);
          op(acc, r2[i]);
          op(acc, r3[i]);
          o[i] = acc;
        }
        // Three of the four rows are consumed here; the step below moves past the fourth.
        idx[nd - 2] += 3;
        in_off += 3 * rs;
      } else if (ls == 1) {
        for (int64_t i = 0; i < len; ++i) op(o[i], row[i]);
      } else {
        for (int64_t i = 0; i < len; ++i) op(o[i], row[i * ls]);
      }
    }
    int k = nd - 2;
    for (; k >= 0; --k) {
      in_off += st[k];
      out_off += ost[k];
      if (++idx[k] < sh[k]) break;
      in_off -= st[k] * sh[k];
      out_off -= ost[k] * sh[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

Shape keepdims_shape(const Shape& shape, const std::vector<bool>& reduced) {
  Shape out = shape;
  for (size_t k = 0; k < out.size(); ++k) {
    if (reduced[k]) out[k] = 1;
  }
  return out;
}

template <class A>
NDArray filled(const Shape& shape, A value) {
  NDArray a = NDArray::empty(dtype_of<A>(), shape);
  std::fill_n(a.mutable_data<A>(), a.size(), value);
  return a;
}

// Per-element "x is NaN" that is false for integers.
template <class T>
bool is_nan(T x) {
  if constexpr (std::is_floating_point_v<T>)
    return x != x;
  else
    return false;
}

// The partial fields of one block.
template <class T>
std::vector<Value> chunk_partial(const NDArray& block, const Config& cfg,
                                 const std::vector<bool>& reduced, std::span<const int64_t> offsets,
                                 std::span<const int64_t> full_shape) {
  const Shape ks = keepdims_shape(block.shape(), reduced);
  int64_t count = 1;
  for (size_t k = 0; k < reduced.size(); ++k) {
    if (reduced[k]) count *= block.shape()[k];
  }
  constexpr bool kFloat = std::is_floating_point_v<T>;
  using Acc = std::conditional_t<kFloat, double, int64_t>;
  auto add = [](Acc& a, T x) { a += static_cast<Acc>(x); };
  auto join = [](Acc& a, Acc b) { a += b; };
  RKind kind = cfg.kind;
  if constexpr (!kFloat) {
    // Integers hold no NaN: nansum and nanmean are sum and mean (and wrap like them).
    if (kind == RKind::NanSum) kind = RKind::Sum;
    if (kind == RKind::NanMean) kind = RKind::Mean;
  }
  switch (kind) {
    case RKind::Sum: {
      NDArray sum = filled<Acc>(ks, Acc(0));
      if (block.is_constant() && block.size() > 0) {
        const Acc v = static_cast<Acc>(*static_cast<const T*>(block.raw_data()));
        Acc total;
        if constexpr (kFloat) {
          total = v * static_cast<Acc>(count);
        } else {  // wraps like NumPy's sum (signed overflow would be undefined)
          total = static_cast<Acc>(static_cast<uint64_t>(v) * static_cast<uint64_t>(count));
        }
        std::fill_n(sum.mutable_data<Acc>(), sum.size(), total);
      } else if constexpr (kFloat) {
        reduce_rows<T, Acc>(block, reduced, sum.mutable_data<Acc>(), Acc(0), add, join);
      } else {
        // Integers wrap like NumPy's (unsigned arithmetic is defined on overflow).
        NDArray u = filled<int64_t>(ks, 0);
        reduce_rows<T, int64_t>(
            block, reduced, u.mutable_data<int64_t>(), 0,
            [](int64_t& a, T x) {
              a = static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(x));
            },
            [](int64_t& a, int64_t b) {
              a = static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
            });
        sum = u;
      }
      return {Value::of(sum)};
    }
    case RKind::Mean: {
      // In float64 whatever the input, as NumPy's mean: an int64 sum would wrap.
      NDArray sum = filled<double>(ks, 0.0);
      if (block.is_constant() && block.size() > 0) {
        const double v = static_cast<double>(*static_cast<const T*>(block.raw_data()));
        std::fill_n(sum.mutable_data<double>(), sum.size(), v * static_cast<double>(count));
      } else {
        reduce_rows<T, double>(
            block, reduced, sum.mutable_data<double>(), 0.0,
            [](double& a, T x) { a += static_cast<double>(x); },
            [](double& a, double b) { a += b; });
      }
      return {Value::of(sum), Value::of(filled<double>(ks, static_cast<double>(count)))};
    }
    case RKind::NanSum:
    case RKind::NanMean: {
      NDArray sum = filled<Acc>(ks, Acc(0));
      reduce_rows<T, Acc>(
          block, reduced, sum.mutable_data<Acc>(), Acc(0),
          [](Acc& a, T x) {
            if (!is_nan(x)) a += static_cast<Acc>(x);
          },
          join);
      if (kind == RKind::NanSum) return {Value::of(sum)};
      NDArray n = filled<double>(ks, 0);
      reduce_rows<T, double>(
          block, reduced, n.mutable_data<double>(), 0.0,
          [](double& a, T x) {
            if (!is_nan(x)) a += 1;
          },
          [](double& a, double b) { a += b; });
      return {Value::of(sum.astype(DType::Float64)), Value::of(n)};
    }
    case RKind::Prod: {
      NDArray p = filled<Acc>(ks, Acc(1));
      if constexpr (kFloat) {
        reduce_rows<T, Acc>(
            block, reduced, p.mutable_data<Acc>(), Acc(1),
            [](Acc& a, T x) { a *= static_cast<Acc>(x); }, [](Acc& a, Acc b) { a *= b; });
      } else {
        auto mul = [](int64_t& a, int64_t b) {
          a = static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
        };
        reduce_rows<T, int64_t>(
            block, reduced, p.mutable_data<int64_t>(), 1,
            [mul](int64_t& a, T x) { mul(a, static_cast<int64_t>(x)); }, mul);
      }
      return {Value::of(p)};
    }
    case RKind::Min:
    case RKind::Max: {
      const bool mx = cfg.kind == RKind::Max;
      Acc init;
      if constexpr (kFloat) {
        init = mx ? -INFINITY : INFINITY;
      } else {
        init = mx ? std::numeric_limits<Acc>::lowest() : std::numeric_limits<Acc>::max();
      }
      NDArray m = filled<Acc>(ks, init);
      auto pick = [mx](Acc& a, Acc x) {
        if (is_nan(a)) return;
        if (is_nan(x) || (mx ? x > a : x < a)) a = x;
      };
      reduce_rows<T, Acc>(
          block, reduced, m.mutable_data<Acc>(), *m.data<Acc>(),
          [pick](Acc& a, T x) { pick(a, static_cast<Acc>(x)); }, pick);
      return {Value::of(m)};
    }
    case RKind::Any:
    case RKind::All:
    case RKind::CountNonzero: {
      const bool all = cfg.kind == RKind::All;
      NDArray c = filled<int64_t>(ks, 0);
      reduce_rows<T, int64_t>(
          block, reduced, c.mutable_data<int64_t>(), 0,
          [all](int64_t& a, T x) { a += all ? (x == T(0)) : (x != T(0)); },
          [](int64_t& a, int64_t b) { a += b; });
      // any: nonzero count; all: zero count (all holds when it is 0)
      return {Value::of(c)};
    }
    case RKind::Var:
    case RKind::Std: {
      // One pass with a shift (the block's first finite element) keeps the sums well
      // conditioned. A NaN or inf shift would make every output of the block NaN, not only
      // those whose elements hold one.
      struct Moments {
        double s1 = 0, s2 = 0;
      };
      double shift = 0.0;
      bool found = false;
      for_each_row<T>(block, [&](const T* p, int64_t stride, int64_t len) {
        for (int64_t i = 0; i < len && !found; ++i) {
          const auto x = static_cast<double>(p[i * stride]);
          if (std::isfinite(x)) shift = x, found = true;
        }
      });
      int64_t outputs = 1;
      for (int64_t e : ks) outputs *= e;
      std::vector<Moments> m(static_cast<size_t>(std::max<int64_t>(1, outputs)));
      const bool everything = outputs == 1 && block.is_contiguous() && block.size() > 0;
      if (everything) {
        // Every axis reduced over one run of memory: the sums in separate lanes, so the
        // loop vectorizes instead of shuffling (s1, s2) pairs.
        moments(static_cast<const T*>(block.raw_data()), block.size(), shift, m[0].s1, m[0].s2);
      } else {
        reduce_rows<T, Moments>(
            block, reduced, m.data(), Moments{},
            [shift](Moments& a, T x) {
              const double d = static_cast<double>(x) - shift;
              a.s1 += d;
              a.s2 += d * d;
            },
            [](Moments& a, Moments b) {
              a.s1 += b.s1;
              a.s2 += b.s2;
            });
      }
      NDArray n = filled<double>(ks, static_cast<double>(count));
      NDArray mean = NDArray::empty(DType::Float64, ks), m2 = NDArray::empty(DType::Float64, ks);
      double* pm = mean.mutable_data<double>();
      double* p2 = m2.mutable_data<double>();
      const double c = static_cast<double>(count);
      for (int64_t i = 0; i < mean.size(); ++i) {
        pm[i] = count ? shift + m[i].s1 / c : 0.0;
        p2[i] = count ? std::max(0.0, m[i].s2 - m[i].s1 * m[i].s1 / c) : 0.0;
        // A NaN or an inf element (its deviation from the inf or NaN mean is NaN in NumPy);
        // std::max above would have turned the NaN of inf - inf into 0.
        if (!std::isfinite(m[i].s1) || std::isnan(m[i].s2)) p2[i] = NAN;
      }
      return {Value::of(n), Value::of(mean), Value::of(m2)};
    }
    case RKind::ArgMin:
    case RKind::ArgMax: {
      const bool mx = cfg.kind == RKind::ArgMax;
      NDArray val = NDArray::empty(dtype_of<Acc>(), ks);
      NDArray idx = NDArray::empty(DType::Int64, ks);
      Acc* pv = val.mutable_data<Acc>();
      int64_t* pi = idx.mutable_data<int64_t>();
      // Walk elements in order with their global index; first occurrence wins, NaN wins.
      const int nd = block.ndim();
      const NDArray c = block.contiguous();
      const T* px = static_cast<const T*>(c.raw_data());
      std::vector<int64_t> at(static_cast<size_t>(nd), 0);
      const std::vector<int64_t> ost = contiguous_strides(ks);
      std::vector<bool> seen(static_cast<size_t>(val.size()), false);
      for (int64_t e = 0; e < c.size(); ++e) {
        int64_t o = 0, g = 0;
        for (int k = 0; k < nd; ++k) {
          if (!reduced[k]) o += at[k] * ost[k];
        }
        if (cfg.axes.size() == 1) {  // the index along that axis
          g = offsets[cfg.axes[0]] + at[cfg.axes[0]];
        } else {
          for (int k = 0; k < nd; ++k) g = g * full_shape[k] + offsets[k] + at[k];
        }
        const Acc x = static_cast<Acc>(px[e]);
        if (!seen[o]) {
          seen[o] = true;
          pv[o] = x;
          pi[o] = g;
        } else if (!is_nan(pv[o]) && (is_nan(x) || (mx ? x > pv[o] : x < pv[o]))) {
          pv[o] = x;
          pi[o] = g;
        }
        for (int k = nd - 1; k >= 0; --k) {
          if (++at[k] < block.shape()[k]) break;
          at[k] = 0;
        }
      }
      return {Value::of(val), Value::of(idx)};
    }
  }
  throw ValueError("array reduction: unknown kind");
}

Value reduce_chunk(std::span<const Value> args) {
  const NDArray& block = as_ndarray(arg_at(args, 0, "array reduction"));
  const Config cfg = Config::decode(arg_at(args, 1, "array reduction").get<std::vector<int64_t>>());
  const auto& offsets = arg_at(args, 2, "array reduction").get<std::vector<int64_t>>();
  const auto& full_shape = arg_at(args, 3, "array reduction").get<std::vector<int64_t>>();
  std::vector<bool> reduced(static_cast<size_t>(block.ndim()), false);
  for (int64_t a : cfg.axes) {
    if (a < 0 || a >= block.ndim()) throw ValueError("array reduction: axis out of range");
    reduced[a] = true;
  }
  std::vector<Value> fields = visit_dtype(block.dtype(), [&](auto t) {
    return chunk_partial<decltype(t)>(block, cfg, reduced, offsets, full_shape);
  });
  return Value::list(std::move(fields));
}
TESSERA_REGISTER_AS("array.reduce-chunk", reduce_chunk);

// ---- combine and aggregate ----

void flatten(const Value& v, std::vector<const std::vector<Value>*>& out) {
  const auto& items = v.get<std::vector<Value>>();
  if (!items.empty() && items[0].is<NDArray>()) {
    out.push_back(&items);
    return;
  }
  for (const Value& x : items) flatten(x, out);
}

template <class A>
void merge_into(NDArray& acc, const NDArray& x, RKind kind) {
  A* a = acc.mutable_data<A>();
  const A* b = x.data<A>();
  const int64_t n = acc.size();
  switch (kind) {
    case RKind::Prod:
      if constexpr (std::is_floating_point_v<A>) {
        for (int64_t i = 0; i < n; ++i) a[i] *= b[i];
      } else {
        for (int64_t i = 0; i < n; ++i)
          a[i] = static_cast<A>(static_cast<uint64_t>(a[i]) * static_cast<uint64_t>(b[i]));
      }
      return;
    case RKind::Min:
    case RKind::Max:
      for (int64_t i = 0; i < n; ++i) {
        if (is_nan(a[i])) continue;
        if (is_nan(b[i]) || (kind == RKind::Max ? b[i] > a[i] : b[i] < a[i])) a[i] = b[i];
      }
      return;
    default:
      if constexpr (std::is_floating_point_v<A>) {
        for (int64_t i = 0; i < n; ++i) a[i] += b[i];
      } else {
        for (int64_t i = 0; i < n; ++i)
          a[i] = static_cast<A>(static_cast<uint64_t>(a[i]) + static_cast<uint64_t>(b[i]));
      }
  }
}

NDArray fresh(const NDArray& a) {
  NDArray out = NDArray::empty(a.dtype(), a.shape());
  std::memcpy(out.raw_mutable_data(), a.contiguous().raw_data(), a.nbytes());
  return out;
}

// Merges a list of partials (each a list of fields) into one.
std::vector<Value> merge_partials(const std::vector<const std::vector<Value>*>& parts, RKind kind) {
  if (parts.empty()) throw ValueError("array reduction: nothing to combine");
  std::vector<NDArray> acc;
  for (const Value& f : *parts[0]) acc.push_back(fresh(as_ndarray(f)));
  for (size_t p = 1; p < parts.size(); ++p) {
    const auto& fields = *parts[p];
    if (fields.size() != acc.size()) throw ValueError("array reduction: partials disagree");
    switch (kind) {
      case RKind::Var:
      case RKind::Std: {
        // Chan, Golub and LeVeque's pairwise update of (n, mean, M2).
        double* na = acc[0].mutable_data<double>();
        double* ma = acc[1].mutable_data<double>();
        double* qa = acc[2].mutable_data<double>();
        const double* nb = as_ndarray(fields[0]).data<double>();
        const double* mb = as_ndarray(fields[1]).data<double>();
        const double* qb = as_ndarray(fields[2]).data<double>();
        for (int64_t i = 0; i < acc[0].size(); ++i) {
          const double n = na[i] + nb[i];
          if (nb[i] == 0) continue;
          if (na[i] == 0) {
            na[i] = nb[i], ma[i] = mb[i], qa[i] = qb[i];
            continue;
          }
          const double d = mb[i] - ma[i];
          ma[i] += d * nb[i] / n;
          qa[i] += qb[i] + d * d * na[i] * nb[i] / n;
          na[i] = n;
        }
        break;
      }
      case RKind::ArgMin:
      case RKind::ArgMax: {
        const bool mx = kind == RKind::ArgMax;
        visit_dtype(acc[0].dtype(), [&](auto t) {
          using A = decltype(t);
          if constexpr (std::is_same_v<A, double> || std::is_same_v<A, int64_t>) {
            A* va = acc[0].mutable_data<A>();
            int64_t* ia = acc[1].mutable_data<int64_t>();
            const A* vb = as_ndarray(fields[0]).data<A>();
            const int64_t* ib = as_ndarray(fields[1]).data<int64_t>();
            for (int64_t i = 0; i < acc[0].size(); ++i) {
              if (is_nan(va[i]) && !(is_nan(vb[i]) && ib[i] < ia[i])) continue;
              const bool better = is_nan(vb[i]) || (mx ? vb[i] > va[i] : vb[i] < va[i]) ||
                                  (vb[i] == va[i] && ib[i] < ia[i]);
              if (better) {
                va[i] = vb[i];
                ia[i] = ib[i];
              }
            }
          }
        });
        break;
      }
      default:
        for (size_t f = 0; f < acc.size(); ++f) {
          visit_dtype(acc[f].dtype(), [&](auto t) {
            using A = decltype(t);
            if constexpr (std::is_same_v<A, double> || std::is_same_v<A, int64_t>) {
              merge_into<A>(acc[f], as_ndarray(fields[f]), kind);
            }
          });
        }
    }
  }
  std::vector<Value> out;
  for (NDArray& a : acc) out.push_back(Value::of(std::move(a)));
  return out;
}

Value reduce_combine(std::span<const Value> args) {
  const Config cfg = Config::decode(arg_at(args, 1, "array reduction").get<std::vector<int64_t>>());
  std::vector<const std::vector<Value>*> parts;
  flatten(arg_at(args, 0, "array reduction"), parts);
  return Value::list(merge_partials(parts, cfg.kind));
}
TESSERA_REGISTER_AS("array.reduce-combine", reduce_combine);

Value reduce_aggregate(std::span<const Value> args) {
  const Config cfg = Config::decode(arg_at(args, 1, "array reduction").get<std::vector<int64_t>>());
  std::vector<const std::vector<Value>*> parts;
  flatten(arg_at(args, 0, "array reduction"), parts);
  const std::vector<Value> fields = merge_partials(parts, cfg.kind);
  const NDArray& f0 = as_ndarray(fields[0]);
  NDArray result;
  switch (cfg.kind) {
    case RKind::Mean:
    case RKind::NanMean: {
      NDArray r = NDArray::empty(DType::Float64, f0.shape());
      const double* s = f0.data<double>();
      const double* n = as_ndarray(fields[1]).data<double>();
      double* o = r.mutable_data<double>();
      for (int64_t i = 0; i < r.size(); ++i) o[i] = s[i] / n[i];
      result = r;
      break;
    }
    case RKind::Var:
    case RKind::Std: {
      NDArray r = NDArray::empty(DType::Float64, f0.shape());
      const double* n = f0.data<double>();
      const double* q = as_ndarray(fields[2]).data<double>();
      double* o = r.mutable_data<double>();
      for (int64_t i = 0; i < r.size(); ++i) {
        // As NumPy: max(n - ddof, 0) degrees of freedom; 0 gives inf (or nan for M2 = 0).
        const double dof = std::max(n[i] - static_cast<double>(cfg.ddof), 0.0);
        o[i] = q[i] / dof;
        if (cfg.kind == RKind::Std) o[i] = std::sqrt(o[i]);
      }
      result = r;
      break;
    }
    case RKind::Any:
    case RKind::All: {
      NDArray r = NDArray::empty(DType::Bool, f0.shape());
      const int64_t* c = f0.data<int64_t>();
      bool* o = r.mutable_data<bool>();
      for (int64_t i = 0; i < r.size(); ++i) o[i] = cfg.kind == RKind::Any ? c[i] != 0 : c[i] == 0;
      result = r;
      break;
    }
    case RKind::ArgMin:
    case RKind::ArgMax:
      result = as_ndarray(fields[1]);
      break;
    default:
      result = f0;
  }
  result = result.astype(cfg.out);
  if (!cfg.keepdims) {
    Shape s;
    std::vector<bool> red(static_cast<size_t>(result.ndim()), false);
    for (int64_t a : cfg.axes) red[a] = true;
    for (int k = 0; k < result.ndim(); ++k) {
      if (!red[k]) s.push_back(result.shape()[k]);
    }
    result = result.reshape(s);
  }
  return Value::of(result);
}
TESSERA_REGISTER_AS("array.reduce-aggregate", reduce_aggregate);

DType output_dtype(RKind kind, DType in) {
  switch (kind) {
    case RKind::Sum:
    case RKind::Prod:
    case RKind::NanSum:
      return is_floating(in) ? in : DType::Int64;
    case RKind::Min:
    case RKind::Max:
      return in;
    case RKind::Any:
    case RKind::All:
      return DType::Bool;
    case RKind::CountNonzero:
    case RKind::ArgMin:
    case RKind::ArgMax:
      return DType::Int64;
    default:
      return float_result(in);
  }
}

Array reduction(RKind kind, const Array& a, const std::vector<int>& axes, ReduceOptions o) {
  if (o.split_every < 0 || o.split_every == 1) {
    throw ValueError(
        fmt::format("{}: split_every must be at least 2 (or 0 for the default), not {}",
                    kind_name(kind), o.split_every));
  }
  const int nd = a.ndim();
  std::vector<bool> reduced(static_cast<size_t>(nd), false);
  for (int ax : axes) reduced[ax] = true;
  for (int k = 0; k < nd; ++k) {
    if (reduced[k] && a.shape()[k] == 0 &&
        (kind == RKind::Min || kind == RKind::Max || kind == RKind::ArgMin ||
         kind == RKind::ArgMax)) {
      throw ValueError(
          fmt::format("zero-size array to reduction operation {} which has no identity "
                      "(axis {} of shape {} is empty)",
                      kind_name(kind), k, shape_str(a.shape())));
    }
  }
  const DType out = output_dtype(kind, a.dtype());
  Config cfg{kind,       a.dtype(), out,
             o.keepdims, o.ddof,    std::vector<int64_t>(axes.begin(), axes.end())};
  const std::vector<int64_t> code = cfg.encode();
  const Value code_value = Value::of(code);
  std::vector<Value> token{token_of(a), code_value, Value::of(static_cast<int64_t>(o.split_every))};
  const std::string name = make_name(kind_name(kind), token);
  const std::string chunk_name = make_name(std::string(kind_name(kind)) + "-chunk", token);
  const std::string in = a.name();
  // argmin/argmax need each block's position; other reductions work on unknown block sizes.
  const bool arg = kind == RKind::ArgMin || kind == RKind::ArgMax;
  if (arg) require_known_chunks(a, kind_name(kind));
  std::vector<std::vector<int64_t>> offs;
  if (arg) {
    offs = offsets_of(a.chunks());
  } else {
    for (const auto& c : a.chunks()) offs.emplace_back(c.size() + 1, 0);
  }
  const Value full_shape = Value::of(a.shape());
  auto chunk_layer = std::make_shared<BlockLayer>(
      chunk_name, "reduction-chunk", a.numblocks(), std::vector<std::string>{in},
      [in, offs, code_value, full_shape](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> start(c.size());
        for (size_t k = 0; k < c.size(); ++k) start[k] = offs[k][c[k]];
        Key k(in, c);
        external.push_back(k);
        return Task::call(get_op("array.reduce-chunk"), {Arg::ref(std::move(k)), Arg(code_value),
                                                         Arg(Value::of(start)), Arg(full_shape)});
      });
  const Array chunks = make_array(chunk_name, "reduction-chunk", a.dtype(), a.shape(), a.chunks(),
                                  chunk_layer, std::span<const Array>(&a, 1));
  // Output chunks: kept axes keep theirs; reduced axes become one block of 1 or vanish.
  Shape shape;
  Chunks out_chunks;
  for (int k = 0; k < nd; ++k) {
    if (!reduced[k]) {
      shape.push_back(a.shape()[k]);
      out_chunks.push_back(a.chunks()[k]);
    } else if (o.keepdims) {
      shape.push_back(1);
      out_chunks.push_back({1});
    }
  }
  TreeReductionLayer::Spec spec;
  spec.input = chunk_name;
  spec.numblocks = a.numblocks();
  spec.axes = axes;
  const int every = o.split_every ? o.split_every : (axes.size() >= 3 ? 2 : 4);
  spec.split_every.assign(axes.size(), every);
  spec.keepdims = o.keepdims;
  spec.combine = std::shared_ptr<const Op>(&get_op("array.reduce-combine"), [](const Op*) {});
  spec.aggregate = std::shared_ptr<const Op>(&get_op("array.reduce-aggregate"), [](const Op*) {});
  spec.extra_args = {code_value};
  if (axes.empty()) {
    // Nothing to reduce: aggregate each block's partial directly.
    auto layer = std::make_shared<BlockLayer>(
        name, "reduction", a.numblocks(), std::vector<std::string>{chunk_name},
        [chunk_name, code_value](std::span<const int64_t> c, std::vector<Key>& external) {
          Key k(chunk_name, c);
          external.push_back(k);
          return Task::call(get_op("array.reduce-aggregate"),
                            {Arg::list({Arg::ref(std::move(k))}), Arg(code_value)});
        });
    return make_array(name, kind_name(kind), out, shape, out_chunks, layer,
                      std::span<const Array>(&chunks, 1));
  }
  auto layer = std::make_shared<TreeReductionLayer>(name, std::move(spec));
  return make_array(name, kind_name(kind), out, std::move(shape), std::move(out_chunks),
                    std::move(layer), std::span<const Array>(&chunks, 1));
}

}  // namespace

Array sum(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Sum, a, axis.resolve(a.ndim()), o);
}
Array prod(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Prod, a, axis.resolve(a.ndim()), o);
}
Array mean(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Mean, a, axis.resolve(a.ndim()), o);
}
Array var(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Var, a, axis.resolve(a.ndim()), o);
}
Array std(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Std, a, axis.resolve(a.ndim()), o);
}
Array min(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Min, a, axis.resolve(a.ndim()), o);
}
Array max(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Max, a, axis.resolve(a.ndim()), o);
}
Array any(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::Any, a, axis.resolve(a.ndim()), o);
}
Array all(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::All, a, axis.resolve(a.ndim()), o);
}
Array nansum(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::NanSum, a, axis.resolve(a.ndim()), o);
}
Array nanmean(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::NanMean, a, axis.resolve(a.ndim()), o);
}
Array count_nonzero(const Array& a, Axes axis, ReduceOptions o) {
  return reduction(RKind::CountNonzero, a, axis.resolve(a.ndim()), o);
}

Array argmin(const Array& a, std::optional<int> axis, ReduceOptions o) {
  if (axis) return reduction(RKind::ArgMin, a, {normalize_axis(*axis, a.ndim())}, o);
  return reduction(RKind::ArgMin, a, Axes().resolve(a.ndim()), o);
}
Array argmax(const Array& a, std::optional<int> axis, ReduceOptions o) {
  if (axis) return reduction(RKind::ArgMax, a, {normalize_axis(*axis, a.ndim())}, o);
  return reduction(RKind::ArgMax, a, Axes().resolve(a.ndim()), o);
}

}  // namespace tessera::array

// Generated cases checked against NumPy 1.24 as an independent oracle.
//
// SetUpTestSuite generates every case from fixed seeds: an expression tree over input arrays
// (built here with from_ndarray on irregular, one-element, large or whole chunks, zero-length
// axes included) and Python-like scalars. It writes the inputs with write_npy (one flat .npy
// per dtype: thousands of small files are slow to open), the trees to cases.jsonl, and runs
// tests/array/numpy_oracle.py once, which writes NumPy's results the same way. Each test then
// builds its group's cases with tessera, computes them and compares. A case that fails prints
// its expression (op, dtypes, shapes, chunks, axis, options) and the first elements that
// differ; the inputs are printed too when small.
//
// Tolerances: |tessera - numpy| <= rtol * scale + atol per element; NaN matches NaN, inf
// matches inf of the same sign, dtypes and shapes must be equal.
//   exact       bool and integer results (integer overflow wraps in both); float results of
//               correctly rounded operations: + - * /, sqrt, abs, negative, floor, ceil, round,
//               maximum, minimum, clip, where, astype, comparisons, transpose, rechunk, min,
//               max, argmin, argmax, eye, full.
//   libm        anything with exp, log, sin, cos, tanh or power (NumPy's SIMD kernels and
//               glibc differ by a few ulp): float64 rtol 1e-13 atol 1e-15, float32 rtol 2e-6
//               atol 2e-6; scale |numpy|.
//   accumulate  sum, nansum, mean, nanmean, var, std, prod, matmul, dot (NumPy sums pairwise
//               in the result's type, tessera in float64 per block and then along a tree):
//               float64 rtol 1e-12, float32 rtol 1e-5, atol 0, against the magnitude that was
//               summed: sum |x| (sum, nansum), mean |x| (mean, nanmean), sum x^2 / max(n -
//               ddof, 1) (var; its square root for std), |numpy| (prod), |A| @ |B| (matmul).
//   range       arange, linspace (NumPy steps by (start + step) - start in the result's type):
//               float64 rtol 1e-13, float32 rtol 1e-5, scale max(|start|, |stop|, |step|, 1).
// When NumPy raises ValueError or TypeError, tessera must throw tessera::ValueError or
// tessera::TypeError (while building the graph or from compute()).
//
// Result dtypes equal NumPy 1.24's, Python scalars included: ta::scalar(v), `x + 1` and
// `x * 2.5` promote by value as NumPy 1.24's Python scalars do (int32 + 3000000000 is int64,
// float32 + 70000 is float64, float32 + 2.5 stays float32). Deliberate differences:
//   - tessera has no float16 or int8: a float function of bool (exp, log, sqrt, sin, cos,
//     tanh, floor, ceil, round) is float64 where NumPy gives float16, and bool ** bool is
//     int64 where NumPy gives int8. The oracle recomputes those with the bools cast to
//     float64 / int64.
//   - clip(a, lo, hi) takes doubles: for bool and integer arrays, integral bounds below 9e18
//     act as Python ints (clip(int32, 0, 3) stays int32), otherwise as Python floats.
//   - 0-d Arrays other than scalar() literals promote by dtype, as 1-element arrays do (NumPy
//     1.24 promotes 0-d arrays by value, but a lazy array's value is unknown while the graph
//     is built): the oracle lifts 0-d operands to 1-element 1-D arrays.
// Not generated: arange with an integer dtype and a non-integral start or step (NumPy steps
// by int(start + step) - int(start)); float-to-int astype of NaN or out-of-range values
// (undefined in C++); clip with lo > hi (tessera throws, NumPy returns hi).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <sys/wait.h>

#include <tessera/array.hpp>

#include "test_support.hpp"

namespace ta = tessera::array;
using ta::DType;

namespace {

constexpr DType kDTypes[] = {DType::Bool, DType::Int32, DType::Int64, DType::Float32,
                             DType::Float64};

std::string name_of(DType t) {
  return std::string(ta::dtype_name(t));
}

// ---- deterministic random numbers (std distributions differ between libraries) ----------

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t next() { return g_(); }
  // Uniform on [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
    return static_cast<int64_t>(static_cast<uint64_t>(lo) + (span ? next() % span : next()));
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool chance(double p) { return uniform() < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[next() % v.size()];
  }

 private:
  std::mt19937_64 g_;
};

// ---- input data ---------------------------------------------------------------------------

// What the elements of an input look like.
enum class Dist {
  Small,     // ints in [-5, 5], floats in [-5, 5), bools half true
  Halves,    // floats k/4 (exact halves: rounding ties, equal elements)
  NaNs,      // floats with 20% NaN (and some ties)
  Special,   // NaN, +-inf, -0, halves, huge and tiny floats; integer extremes
  Big,       // int32 over its whole range, int64 in +-2^62, floats in +-1e6, bools mostly true
  Exponent,  // ints in [0, 5], floats in [-2.5, 2.5]
  Prod,      // ints in [-3, 3], floats of magnitude [0.6, 1.6] (products stay finite)
  Positive,  // ints in [1, 10], floats in (0, 10]
  MostNaN,   // floats 70% NaN (all-NaN slices)
};

double float_value(Dist d, Rng& r) {
  static const std::vector<double> kSpecial{NAN, INFINITY, -INFINITY, -0.0,   0.0,  0.5,   1.5,
                                            2.5, -2.5,     -0.5,      1e-300, 1e30, -7.25, 3.0};
  switch (d) {
    case Dist::Small:
      return r.uniform(-5, 5);
    case Dist::Halves:
      return static_cast<double>(r.range(-12, 12)) / 4.0;
    case Dist::NaNs:
      if (r.chance(0.2)) return NAN;
      return r.chance(0.3) ? static_cast<double>(r.range(-4, 4)) : r.uniform(-5, 5);
    case Dist::Special:
      return r.pick(kSpecial);
    case Dist::Big:
      return r.uniform(-1e6, 1e6);
    case Dist::Exponent:
      return r.uniform(-2.5, 2.5);
    case Dist::Prod:
      return (r.chance(0.5) ? -1.0 : 1.0) * r.uniform(0.6, 1.6);
    case Dist::Positive:
      return 10.0 - r.uniform(0, 9.99);
    case Dist::MostNaN:
      return r.chance(0.7) ? NAN : static_cast<double>(r.range(-4, 4));
  }
  return 0;
}

int64_t int_value(Dist d, Rng& r, DType t) {
  const bool i32 = t == DType::Int32;
  const int64_t lo =
      i32 ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int64_t>::min();
  const int64_t hi =
      i32 ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int64_t>::max();
  switch (d) {
    case Dist::Special:
      return r.pick(std::vector<int64_t>{0, 1, -1, lo, hi, 7, -8, lo + 1});
    case Dist::Big:
      return i32 ? r.range(lo, hi) : r.range(-(int64_t{1} << 62), int64_t{1} << 62);
    case Dist::Exponent:
      return r.range(0, 5);
    case Dist::Prod:
      return r.range(-3, 3);
    case Dist::Positive:
      return r.range(1, 10);
    default:
      return r.range(-5, 5);
  }
}

ta::NDArray make_data(DType t, const ta::Shape& shape, Dist d, Rng& r) {
  ta::NDArray a = ta::NDArray::empty(t, shape);
  ta::visit_dtype(t, [&](auto z) {
    using T = decltype(z);
    T* p = a.mutable_data<T>();
    for (int64_t i = 0; i < a.size(); ++i) {
      if constexpr (std::is_same_v<T, bool>) {
        p[i] = r.chance(d == Dist::Big ? 0.9 : d == Dist::Special ? 0.1 : 0.5);
      } else if constexpr (std::is_floating_point_v<T>) {
        p[i] = static_cast<T>(float_value(d, r));
      } else {
        p[i] = static_cast<T>(int_value(d, r, t));
      }
    }
  });
  return a;
}

// How an input is cut into blocks.
enum class ChunkStyle {
  Random,  // per axis: one block, one-element blocks, irregular 1 to 3, or regular 2 or 3
  Ones,    // one-element blocks
  Whole,   // one block
  Large,   // irregular blocks of a third of the axis or more (long rows, many tiles)
};

std::vector<int64_t> axis_chunks(int64_t n, Rng& r, ChunkStyle style) {
  if (n == 0) return {0};
  const int s = style == ChunkStyle::Whole  ? 0
                : style == ChunkStyle::Ones ? 1
                                            : static_cast<int>(r.range(0, 3));
  std::vector<int64_t> out;
  if (style == ChunkStyle::Large) {
    for (int64_t left = n; left > 0;) {
      const int64_t b = std::min(left, r.range(std::max<int64_t>(1, n / 3), n));
      out.push_back(b);
      left -= b;
    }
    return out;
  }
  if (s == 0) return {n};
  if (s == 1) return std::vector<int64_t>(static_cast<size_t>(n), 1);
  const int64_t regular = r.range(2, 3);
  for (int64_t left = n; left > 0;) {
    const int64_t b = std::min(left, s == 2 ? r.range(1, 3) : regular);  // 2: irregular
    out.push_back(b);
    left -= b;
  }
  return out;
}

ta::Chunks make_chunks(const ta::Shape& shape, Rng& r, ChunkStyle style) {
  ta::Chunks c;
  for (int64_t n : shape) c.push_back(axis_chunks(n, r, style));
  return c;
}

std::string chunks_text(const ta::Chunks& c) {
  std::vector<std::string> axes;
  for (const auto& a : c) axes.push_back(ta::shape_str(a));
  return axes.size() == 1 ? fmt::format("({},)", axes[0])
                          : fmt::format("({})", fmt::join(axes, ", "));
}

std::string json_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return fmt::format("{}", v);  // shortest text that reads back as v
}

// ---- expressions: built here with tessera, evaluated by numpy_oracle.py -------------------

using ScalarValue = std::variant<int64_t, double, bool>;

struct Expr {
  std::string json;                   // the node for numpy_oracle.py
  std::string text;                   // the node for failure messages
  std::function<ta::Array()> build;   // the tessera expression
  std::optional<ScalarValue> scalar;  // set for Python-like scalar operands
  std::vector<int> inputs;            // inputs it reads
  bool libm = false;                  // contains exp, log, sin, cos, tanh or power
  bool accumulate = false;            // the root sums (sum, mean, var, prod, matmul, …)
  bool range = false;                 // the root is arange or linspace
};

std::vector<int> merged_inputs(std::initializer_list<const Expr*> kids) {
  std::vector<int> out;
  for (const Expr* k : kids) out.insert(out.end(), k->inputs.begin(), k->inputs.end());
  return out;
}

ta::Array array_binary(const std::string& fn, const ta::Array& a, const ta::Array& b) {
  if (fn == "add") return a + b;
  if (fn == "subtract") return a - b;
  if (fn == "multiply") return a * b;
  if (fn == "true_divide") return a / b;
  if (fn == "equal") return a == b;
  if (fn == "not_equal") return a != b;
  if (fn == "less") return a < b;
  if (fn == "less_equal") return a <= b;
  if (fn == "greater") return a > b;
  if (fn == "greater_equal") return a >= b;
  if (fn == "maximum") return ta::maximum(a, b);
  if (fn == "minimum") return ta::minimum(a, b);
  if (fn == "power") return ta::power(a, b);
  if (fn == "bitwise_and") return a & b;
  if (fn == "bitwise_or") return a | b;
  if (fn == "bitwise_xor") return a ^ b;
  throw std::invalid_argument("unknown binary op " + fn);
}

// `a fn s` through the operators taking C++ numbers (x + 1, x * 2.5) where they exist.
template <class S>
ta::Array scalar_right(const std::string& fn, const ta::Array& a, S s) {
  if constexpr (!std::is_same_v<S, bool>) {
    if (fn == "add") return a + s;
    if (fn == "subtract") return a - s;
    if (fn == "multiply") return a * s;
    if (fn == "true_divide") return a / s;
    if (fn == "equal") return a == s;
    if (fn == "not_equal") return a != s;
    if (fn == "less") return a < s;
    if (fn == "less_equal") return a <= s;
    if (fn == "greater") return a > s;
    if (fn == "greater_equal") return a >= s;
  }
  return array_binary(fn, a, ta::scalar(s));
}

template <class S>
ta::Array scalar_left(const std::string& fn, S s, const ta::Array& b) {
  if constexpr (!std::is_same_v<S, bool>) {
    if (fn == "add") return s + b;
    if (fn == "subtract") return s - b;
    if (fn == "multiply") return s * b;
    if (fn == "true_divide") return s / b;
    if (fn == "less") return s < b;
    if (fn == "greater_equal") return s >= b;
  }
  return array_binary(fn, ta::scalar(s), b);
}

Expr scalar_expr(ScalarValue v) {
  Expr e;
  e.scalar = v;
  std::visit(
      [&](auto s) {
        using S = decltype(s);
        if constexpr (std::is_same_v<S, bool>) {
          e.json =
              fmt::format(R"({{"op":"scalar","kind":"bool","value":{}}})", s ? "true" : "false");
          e.text = s ? "True" : "False";
        } else if constexpr (std::is_same_v<S, double>) {
          e.json = fmt::format(R"({{"op":"scalar","kind":"float","value":{}}})", json_number(s));
          e.text = fmt::format("{:#}", s);
        } else {
          e.json = fmt::format(R"({{"op":"scalar","kind":"int","value":{}}})", s);
          e.text = fmt::format("{}", s);
        }
        e.build = [s] { return ta::scalar(s); };
      },
      v);
  return e;
}

Expr binary(const std::string& fn, const Expr& a, const Expr& b) {
  Expr e;
  e.json = fmt::format(R"({{"op":"{}","args":[{},{}]}})", fn, a.json, b.json);
  e.text = fmt::format("{}({}, {})", fn, a.text, b.text);
  e.inputs = merged_inputs({&a, &b});
  e.libm = a.libm || b.libm || fn == "power";
  e.build = [fn, a, b]() -> ta::Array {
    if (b.scalar && !a.scalar) {
      return std::visit([&](auto s) { return scalar_right(fn, a.build(), s); }, *b.scalar);
    }
    if (a.scalar && !b.scalar) {
      return std::visit([&](auto s) { return scalar_left(fn, s, b.build()); }, *a.scalar);
    }
    return array_binary(fn, a.build(), b.build());
  };
  return e;
}

ta::Array array_unary(const std::string& fn, const ta::Array& a) {
  if (fn == "exp") return ta::exp(a);
  if (fn == "log") return ta::log(a);
  if (fn == "sqrt") return ta::sqrt(a);
  if (fn == "sin") return ta::sin(a);
  if (fn == "cos") return ta::cos(a);
  if (fn == "tanh") return ta::tanh(a);
  if (fn == "abs") return ta::abs(a);
  if (fn == "floor") return ta::floor(a);
  if (fn == "ceil") return ta::ceil(a);
  if (fn == "round") return ta::round(a);
  if (fn == "isnan") return ta::isnan(a);
  if (fn == "negative") return -a;
  if (fn == "invert") return ~a;
  throw std::invalid_argument("unknown unary op " + fn);
}

Expr unary(const std::string& fn, const Expr& a) {
  Expr e;
  e.json = fmt::format(R"({{"op":"{}","args":[{}]}})", fn, a.json);
  e.text = fmt::format("{}({})", fn, a.text);
  e.inputs = a.inputs;
  e.libm = a.libm || fn == "exp" || fn == "log" || fn == "sin" || fn == "cos" || fn == "tanh";
  e.build = [fn, a] { return array_unary(fn, a.build()); };
  return e;
}

Expr where(const Expr& c, const Expr& a, const Expr& b) {
  Expr e;
  e.json = fmt::format(R"({{"op":"where","args":[{},{},{}]}})", c.json, a.json, b.json);
  e.text = fmt::format("where({}, {}, {})", c.text, a.text, b.text);
  e.inputs = merged_inputs({&c, &a, &b});
  e.libm = c.libm || a.libm || b.libm;
  e.build = [c, a, b] { return ta::where(c.build(), a.build(), b.build()); };
  return e;
}

// clip's bounds act as Python ints for bool and integer arrays when integral (tessera's rule).
Expr clip(const Expr& a, DType t, double lo, double hi) {
  const bool ints = !ta::is_floating(t) && lo == std::floor(lo) && hi == std::floor(hi) &&
                    std::abs(lo) < 9e18 && std::abs(hi) < 9e18;
  const Expr l = ints ? scalar_expr(static_cast<int64_t>(lo)) : scalar_expr(lo);
  const Expr h = ints ? scalar_expr(static_cast<int64_t>(hi)) : scalar_expr(hi);
  Expr e;
  e.json = fmt::format(R"({{"op":"clip","args":[{},{},{}]}})", a.json, l.json, h.json);
  e.text = fmt::format("clip({}, {}, {})", a.text, l.text, h.text);
  e.inputs = a.inputs;
  e.libm = a.libm;
  e.build = [a, lo, hi] { return ta::clip(a.build(), lo, hi); };
  return e;
}

Expr astype(const Expr& a, DType t) {
  Expr e;
  e.json = fmt::format(R"({{"op":"astype","dtype":"{}","args":[{}]}})", name_of(t), a.json);
  e.text = fmt::format("astype({}, {})", a.text, name_of(t));
  e.inputs = a.inputs;
  e.libm = a.libm;
  e.build = [a, t] { return a.build().astype(t); };
  return e;
}

// A reduction's axis argument: None, one int, or a tuple (possibly empty).
struct AxisArg {
  enum Kind { None, Int, Tuple } kind = None;
  std::vector<int> axes;
  std::string json() const {
    if (kind == None) return "null";
    if (kind == Int) return std::to_string(axes[0]);
    return fmt::format("[{}]", fmt::join(axes, ","));
  }
  std::string text() const {
    if (kind == None) return "None";
    if (kind == Int) return std::to_string(axes[0]);
    return axes.size() == 1 ? fmt::format("({},)", axes[0])
                            : fmt::format("({})", fmt::join(axes, ", "));
  }
  ta::Axes arg() const {
    if (kind == None) return ta::Axes();
    if (kind == Int) return ta::Axes(axes[0]);
    return ta::Axes(axes);
  }
};

using ReduceFn = ta::Array (*)(const ta::Array&, ta::Axes, ta::ReduceOptions);

const std::map<std::string, ReduceFn>& reductions() {
  static const std::map<std::string, ReduceFn> fns{
      {"sum", &ta::sum},       {"prod", &ta::prod},       {"mean", &ta::mean},
      {"var", &ta::var},       {"std", &ta::std},         {"min", &ta::min},
      {"max", &ta::max},       {"any", &ta::any},         {"all", &ta::all},
      {"nansum", &ta::nansum}, {"nanmean", &ta::nanmean}, {"count_nonzero", &ta::count_nonzero}};
  return fns;
}

bool accumulates(const std::string& fn) {
  return fn == "sum" || fn == "prod" || fn == "mean" || fn == "var" || fn == "std" ||
         fn == "nansum" || fn == "nanmean";
}

Expr reduce(const std::string& fn, const Expr& x, const AxisArg& axis, ta::ReduceOptions o) {
  Expr e;
  e.json = fmt::format(R"({{"op":"{}","axis":{},"keepdims":{},"ddof":{},"args":[{}]}})", fn,
                       axis.json(), o.keepdims ? "true" : "false", o.ddof, x.json);
  e.text = fmt::format("{}({}, axis={}, keepdims={}, split_every={}{})", fn, x.text, axis.text(),
                       o.keepdims, o.split_every, o.ddof ? fmt::format(", ddof={}", o.ddof) : "");
  e.inputs = x.inputs;
  e.libm = x.libm;
  e.accumulate = accumulates(fn);
  e.build = [fn, x, axis, o]() -> ta::Array {
    if (fn == "argmin" || fn == "argmax") {
      const std::optional<int> ax =
          axis.kind == AxisArg::None ? std::nullopt : std::optional<int>(axis.axes[0]);
      return fn == "argmin" ? ta::argmin(x.build(), ax, o) : x.build().argmax(ax, o);
    }
    return reductions().at(fn)(x.build(), axis.arg(), o);
  };
  return e;
}

Expr transpose(const Expr& x, std::optional<std::vector<int>> axes) {
  Expr e;
  if (axes) {
    e.json = fmt::format(R"({{"op":"transpose","axes":[{}],"args":[{}]}})", fmt::join(*axes, ","),
                         x.json);
    e.text = fmt::format("transpose({}, axes=({}))", x.text, fmt::join(*axes, ", "));
  } else {
    e.json = fmt::format(R"({{"op":"T","args":[{}]}})", x.json);
    e.text = fmt::format("({}).T", x.text);
  }
  e.inputs = x.inputs;
  e.libm = x.libm;
  e.build = [x, axes] { return axes ? x.build().transpose(*axes) : x.build().T(); };
  return e;
}

Expr rechunk(const Expr& x, ta::ChunkSpec spec, std::string spec_text) {
  Expr e;
  e.json = fmt::format(R"({{"op":"rechunk","args":[{}]}})", x.json);
  e.text = fmt::format("rechunk({}, {})", x.text, spec_text);
  e.inputs = x.inputs;
  e.libm = x.libm;
  e.build = [x, spec] { return x.build().rechunk(spec); };
  return e;
}

Expr matmul(const std::string& fn, const Expr& a, const Expr& b) {
  Expr e;
  e.json = fmt::format(R"({{"op":"{}","args":[{},{}]}})", fn, a.json, b.json);
  e.text = fmt::format("{}({}, {})", fn, a.text, b.text);
  e.inputs = merged_inputs({&a, &b});
  e.accumulate = true;
  e.build = [fn, a, b] {
    return fn == "dot" ? ta::dot(a.build(), b.build()) : ta::matmul(a.build(), b.build());
  };
  return e;
}

Expr full(const ta::Shape& shape, double v, const ta::Chunks& c, DType t) {
  Expr e;
  e.json = fmt::format(R"({{"op":"full","shape":[{}],"value":{},"dtype":"{}"}})",
                       fmt::join(shape, ","), json_number(v), name_of(t));
  e.text = fmt::format("full({}, {}, chunks={}, dtype={})", ta::shape_str(shape), v, chunks_text(c),
                       name_of(t));
  e.build = [shape, v, c, t] { return ta::full(shape, v, c, t); };
  return e;
}

// ---- cases, results, comparison -----------------------------------------------------------

struct Input {
  std::string name;  // "in<index>", for messages
  ta::NDArray data;
  ta::Chunks chunks;
  int64_t offset;  // where its elements start in inputs_<dtype>.npy
};

struct Case {
  int id;
  std::string group;
  Expr expr;
};

struct Result {
  bool ok = false;
  std::string numpy_dtype;    // ok: NumPy's own result dtype
  std::string dtype;          // ok: the dtype expected of tessera (see DELIBERATE)
  int64_t offset = -1;        // ok: where the elements are in expected_<dtype>.npy
  ta::Shape shape;            // ok
  int64_t scale_offset = -1;  // ok: where the tolerance scales are in scales.npy (or -1)
  std::string error_kind;     // error: ValueError, TypeError, …
  std::string message;        // error
};

enum class Tol { Exact, Libm, Accumulate, Range };

struct Tolerance {
  double rtol = 0, atol = 0;
};

Tolerance tolerance(Tol t, DType d) {
  if (!ta::is_floating(d)) return {};
  const bool f32 = d == DType::Float32;
  switch (t) {
    case Tol::Exact:
      return {};
    case Tol::Libm:
      return f32 ? Tolerance{2e-6, 2e-6} : Tolerance{1e-13, 1e-15};
    case Tol::Accumulate:
      return f32 ? Tolerance{1e-5, 0} : Tolerance{1e-12, 0};
    case Tol::Range:
      return f32 ? Tolerance{1e-5, 0} : Tolerance{1e-13, 0};
  }
  return {};
}

std::string index_text(int64_t flat, const ta::Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    idx[k] = flat % shape[k];
    flat /= shape[k];
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}

// "" when `got` matches `want`; otherwise what differs (the first few elements).
std::string compare(const ta::NDArray& got, const ta::NDArray& want,
                    const std::optional<ta::NDArray>& scale, Tol tol) {
  if (got.dtype() != want.dtype()) {
    return fmt::format("dtype: tessera {}, numpy {}", name_of(got.dtype()), name_of(want.dtype()));
  }
  if (got.shape() != want.shape()) {
    return fmt::format("shape: tessera {}, numpy {}", ta::shape_str(got.shape()),
                       ta::shape_str(want.shape()));
  }
  std::vector<std::string> bad;
  int64_t nbad = 0;
  if (ta::is_floating(want.dtype())) {
    const Tolerance t = tolerance(tol, want.dtype());
    const auto g = got.to_vector<double>(), w = want.to_vector<double>();
    std::vector<double> s;
    if (scale && scale->shape() == want.shape()) s = scale->to_vector<double>();
    for (size_t i = 0; i < w.size(); ++i) {
      const double si = s.empty() ? std::abs(w[i]) : s[i];
      const bool ok = (std::isnan(g[i]) && std::isnan(w[i])) || g[i] == w[i] ||
                      (std::isfinite(g[i]) && std::isfinite(w[i]) &&
                       std::abs(g[i] - w[i]) <= t.rtol * si + t.atol);
      if (!ok && nbad++ < 6) {
        bad.push_back(fmt::format("{} tessera {:.17g} numpy {:.17g} (tolerance {:.3g})",
                                  index_text(static_cast<int64_t>(i), want.shape()), g[i], w[i],
                                  t.rtol * si + t.atol));
      }
    }
  } else {
    const auto g = got.to_vector<int64_t>(), w = want.to_vector<int64_t>();
    for (size_t i = 0; i < w.size(); ++i) {
      if (g[i] != w[i] && nbad++ < 6) {
        bad.push_back(fmt::format("{} tessera {} numpy {}",
                                  index_text(static_cast<int64_t>(i), want.shape()), g[i], w[i]));
      }
    }
  }
  if (nbad == 0) return "";
  return fmt::format("{} of {} elements differ: {}", nbad, want.size(), fmt::join(bad, "; "));
}

// The kind of a tessera exception, as the oracle names Python's: "ValueError", "TypeError", …
std::string error_kind(std::exception_ptr e, std::string& message) {
  try {
    std::rethrow_exception(e);
  } catch (const tessera::TaskError& x) {
    return error_kind(x.original(), message);
  } catch (const tessera::ValueError& x) {
    message = x.what();
    return "ValueError";
  } catch (const tessera::TypeError& x) {
    message = x.what();
    return "TypeError";
  } catch (const tessera::IndexError& x) {
    message = x.what();
    return "IndexError";
  } catch (const std::exception& x) {
    message = x.what();
    return "std::exception";
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// ---- the generated suite ------------------------------------------------------------------

class Suite {
 public:
  Suite() {
    gen_binary();
    gen_python_scalars();
    gen_unary();
    gen_where_clip_astype();
    gen_chains();
    gen_reductions();
    gen_arg_reductions();
    gen_empty_reductions();
    gen_transpose();
    gen_rechunk();
    gen_matmul();
    gen_creation();
    gen_large();
    gen_constant_blocks();
  }

  // Exit status of numpy_oracle.py when NumPy cannot be imported.
  static constexpr int kNoNumpy = 77;

  // Writes the inputs and cases and runs the oracle. Returns "" or why it failed; sets
  // `no_numpy` (and returns "") when the Python there cannot import NumPy.
  std::string run_oracle(bool& no_numpy) {
    // One flat file per dtype: opening thousands of small files would be slow.
    for (DType t : kDTypes) {
      ta::NDArray all = ta::NDArray::empty(t, {input_sizes_[t]});
      auto* out = static_cast<std::byte*>(all.raw_mutable_data());
      for (const Input& in : inputs_) {
        if (in.data.dtype() != t) continue;
        std::memcpy(out + in.offset * static_cast<int64_t>(ta::dtype_size(t)), in.data.raw_data(),
                    in.data.nbytes());
      }
      ta::write_npy(all, dir_.file(fmt::format("inputs_{}.npy", name_of(t))));
    }
    {
      std::ofstream f(dir_.file("cases.jsonl"));
      for (const Case& c : cases_)
        f << fmt::format(R"({{"id":{},"expr":{}}})", c.id, c.expr.json) << "\n";
    }
    const std::string log = dir_.file("oracle.log");
    const std::string cmd =
        fmt::format("{} {}/tests/array/numpy_oracle.py {} > {} 2>&1", TESSERA_PYTHON,
                    TESSERA_SOURCE_DIR, dir_.path().string(), log);
    const int status = std::system(cmd.c_str());
    if (status != 0) {
      // 127: the shell found no such Python (it cannot import NumPy either).
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      no_numpy = code == kNoNumpy || code == 127;
      return no_numpy ? "" : fmt::format("numpy_oracle.py failed ({}):\n{}", code, read_file(log));
    }
    std::ifstream f(dir_.file("results.tsv"));
    std::string line;
    while (std::getline(f, line)) {
      std::vector<std::string> cols;
      std::stringstream ss(line);
      for (std::string c; std::getline(ss, c, '\t');) cols.push_back(c);
      if (cols.size() < 3) continue;
      Result r;
      r.ok = cols[1] == "ok";
      if (r.ok && cols.size() == 7) {
        r.numpy_dtype = cols[2];
        r.dtype = cols[3];
        r.offset = std::stoll(cols[4]);
        std::stringstream dims(cols[5]);
        for (std::string d; std::getline(dims, d, ',');) r.shape.push_back(std::stoll(d));
        r.scale_offset = std::stoll(cols[6]);
      } else {
        r.error_kind = cols[2];
        if (cols.size() > 3) r.message = cols[3];
      }
      results_[std::stoi(cols[0])] = r;
    }
    for (DType t : kDTypes) {
      expected_[t] = ta::read_npy(dir_.file(fmt::format("expected_{}.npy", name_of(t))));
    }
    scales_ = ta::read_npy(dir_.file("scales.npy"));
    if (results_.size() != cases_.size()) {
      return fmt::format("numpy_oracle.py answered {} of {} cases:\n{}", results_.size(),
                         cases_.size(), read_file(log));
    }
    return "";
  }

  // Computes every case of `group` with tessera and compares; returns the number checked.
  int check(const std::string& group) {
    int n = 0;
    for (const Case& c : cases_) {
      if (c.group != group) continue;
      ++n;
      std::string failure;
      try {
        failure = check_case(c);
      } catch (const std::exception& e) {
        failure = fmt::format("checking the case threw: {}", e.what());
      }
      if (!failure.empty())
        ADD_FAILURE() << "case " << c.id << ": " << c.expr.text << "\n  " << failure
                      << inputs_text(c);
    }
    return n;
  }

  size_t size() const { return cases_.size(); }
  // "4321 cases: binary 410, scalars 760, …"
  std::string summary() const {
    std::vector<std::pair<std::string, int>> groups;
    for (const Case& c : cases_) {
      if (groups.empty() || groups.back().first != c.group) groups.emplace_back(c.group, 0);
      ++groups.back().second;
    }
    std::vector<std::string> parts;
    for (const auto& [g, n] : groups) parts.push_back(fmt::format("{} {}", g, n));
    return fmt::format("{} cases: {}", cases_.size(), fmt::join(parts, ", "));
  }

 private:
  std::string check_case(const Case& c) {
    const Result& r = results_.at(c.id);
    std::optional<ta::NDArray> got;
    std::string kind, message;
    try {
      // Both local schedulers: the results must not depend on which ran the tasks.
      got = c.expr.build().compute({.scheduler = c.id % 2 ? "threads" : "sync"});
    } catch (...) {
      kind = error_kind(std::current_exception(), message);
    }
    if (!r.ok) {
      if (got)
        return fmt::format("numpy raised {} ({}); tessera returned {}", r.error_kind, r.message,
                           got->repr(50));
      if (kind != r.error_kind) {
        return fmt::format("numpy raised {} ({}); tessera threw {} ({})", r.error_kind, r.message,
                           kind, message);
      }
      return "";
    }
    if (!got)
      return fmt::format("tessera threw {} ({}); numpy returned {}", kind, message, r.numpy_dtype);
    if (r.offset < 0)
      return fmt::format("numpy returned {}, a dtype tessera does not have", r.dtype);
    const ta::NDArray want = slice(expected_.at(ta::dtype_from_name(r.dtype)), r.offset, r.shape);
    std::optional<ta::NDArray> scale;
    if (r.scale_offset >= 0) scale = slice(scales_, r.scale_offset, r.shape);
    const Tol tol = c.expr.accumulate ? Tol::Accumulate
                    : c.expr.range    ? Tol::Range
                    : c.expr.libm     ? Tol::Libm
                                      : Tol::Exact;
    std::string diff = compare(*got, want, scale, tol);
    if (!diff.empty() && r.numpy_dtype != name_of(want.dtype())) {
      diff += fmt::format(" (numpy's own dtype: {}, compared as {})", r.numpy_dtype,
                          name_of(want.dtype()));
    }
    return diff;
  }

  // Elements [offset, offset + size of shape) of a flat array, as an array of `shape`.
  static ta::NDArray slice(const ta::NDArray& flat, int64_t offset, const ta::Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return flat.slice(0, offset, offset + n).reshape(shape);
  }

  std::string inputs_text(const Case& c) const {
    std::string out;
    for (int i : c.expr.inputs) {
      const Input& in = inputs_[static_cast<size_t>(i)];
      if (in.data.size() <= 64) out += fmt::format("\n  {} = {}", in.name, in.data.repr());
    }
    return out;
  }

  Expr input(Rng& r, DType t, const ta::Shape& shape, Dist d,
             ChunkStyle style = ChunkStyle::Random) {
    const int id = static_cast<int>(inputs_.size());
    Input in{fmt::format("in{}", id), make_data(t, shape, d, r), make_chunks(shape, r, style),
             input_sizes_[t]};
    input_sizes_[t] += in.data.size();
    Expr e;
    e.json = fmt::format(R"({{"op":"in","dtype":"{}","offset":{},"shape":[{}]}})", name_of(t),
                         in.offset, fmt::join(shape, ","));
    e.text = fmt::format("in{}<{} {} chunks={}>", id, name_of(t), ta::shape_str(shape),
                         chunks_text(in.chunks));
    e.inputs = {id};
    e.build = [data = in.data, chunks = in.chunks] { return ta::from_ndarray(data, chunks); };
    inputs_.push_back(std::move(in));
    return e;
  }

  void add(const std::string& group, Expr e) {
    cases_.push_back(Case{static_cast<int>(cases_.size()), group, std::move(e)});
  }

  // Every binary op on every pair of dtypes, shapes broadcast against each other.
  void gen_binary() {
    Rng r(101);
    const std::vector<std::pair<ta::Shape, ta::Shape>> shapes{
        {{4, 1}, {3}},    {{2, 3, 4}, {3, 1}},    {{5}, {5}},   {{0, 3}, {3}},    {{1}, {0}},
        {{3, 4}, {3, 4}}, {{2, 1, 3}, {1, 4, 1}}, {{}, {2, 3}}, {{6, 5}, {6, 1}}, {{1, 1}, {2, 7}}};
    const std::vector<std::string> ops{"add",     "subtract",      "multiply",   "true_divide",
                                       "equal",   "not_equal",     "less",       "less_equal",
                                       "greater", "greater_equal", "maximum",    "minimum",
                                       "power",   "bitwise_and",   "bitwise_or", "bitwise_xor"};
    size_t k = 0;
    for (const std::string& op : ops) {
      for (DType ta_ : kDTypes) {
        for (DType tb : kDTypes) {
          auto [sa, sb] = shapes[k++ % shapes.size()];
          if (r.chance(0.5)) std::swap(sa, sb);
          const Dist da = op == "power"
                              ? Dist::Small
                              : r.pick(std::vector<Dist>{Dist::Small, Dist::Halves, Dist::NaNs});
          const Dist db = op == "power"
                              ? Dist::Exponent
                              : r.pick(std::vector<Dist>{Dist::Small, Dist::Halves, Dist::NaNs});
          add("binary", binary(op, input(r, ta_, sa, da), input(r, tb, sb, db)));
        }
      }
    }
    // Special values (inf, -0, NaN, integer extremes) on one shape.
    for (const std::string& op : ops) {
      for (DType t : kDTypes) {
        if (op == "power") continue;
        add("binary",
            binary(op, input(r, t, {4, 3}, Dist::Special), input(r, t, {3}, Dist::Special)));
      }
    }
    // Integer power with negative exponents raises in both; shapes that do not broadcast too.
    add("binary", binary("power", input(r, DType::Int32, {3}, Dist::Small),
                         input(r, DType::Int64, {3}, Dist::Small)));
    add("binary", binary("add", input(r, DType::Float64, {3, 4}, Dist::Small),
                         input(r, DType::Float64, {3, 5}, Dist::Small)));
  }

  // Arrays with Python-like scalars on either side: NumPy 1.24's value-based promotion.
  void gen_python_scalars() {
    Rng r(202);
    // Around NumPy 1.24's cutoffs: int32's range, the int16/uint16 values float32 holds, and
    // 3.4e38 for float32.
    std::vector<ScalarValue> scalars;
    for (int64_t v :
         std::initializer_list<int64_t>{0, 3, -7, 255, 70000, -40000, 3000000000, -3000000000,
                                        65535, -32768, -32769, 2147483647}) {
      scalars.emplace_back(v);
    }
    for (double v :
         {2.5, -0.5, 1e5, 1e300, 3.5e38, -3.5e38, 3.3e38, double{INFINITY}, double{NAN}}) {
      scalars.emplace_back(v);
    }
    scalars.emplace_back(true);
    scalars.emplace_back(false);
    // Every scalar against every dtype for one arithmetic op and one comparison.
    for (const std::string op : {"add", "less", "maximum", "true_divide"}) {
      for (DType t : kDTypes) {
        for (const ScalarValue& s : scalars) {
          const Expr x = input(r, t, {2, 3}, Dist::Small);
          add("scalars",
              r.chance(0.5) ? binary(op, x, scalar_expr(s)) : binary(op, scalar_expr(s), x));
        }
      }
    }
    // Every op with a few scalars.
    const std::vector<std::string> ops{"add",     "subtract",      "multiply",   "true_divide",
                                       "equal",   "not_equal",     "less",       "less_equal",
                                       "greater", "greater_equal", "maximum",    "minimum",
                                       "power",   "bitwise_and",   "bitwise_or", "bitwise_xor"};
    size_t k = 0;
    for (const std::string& op : ops) {
      for (DType t : kDTypes) {
        for (int j = 0; j < 4; ++j) {
          ScalarValue s = scalars[k++ % scalars.size()];
          if (op == "power" && std::holds_alternative<int64_t>(s)) s = std::get<int64_t>(s) % 4;
          const Expr x = input(r, t, {3, 2}, op == "power" ? Dist::Exponent : Dist::NaNs);
          add("scalars", j % 2 ? binary(op, x, scalar_expr(s)) : binary(op, scalar_expr(s), x));
        }
      }
    }
  }

  void gen_unary() {
    Rng r(303);
    for (const std::string fn : {"exp", "log", "sqrt", "sin", "cos", "tanh", "abs", "floor", "ceil",
                                 "round", "isnan", "negative", "invert"}) {
      for (DType t : kDTypes) {
        add("unary", unary(fn, input(r, t, {3, 5}, Dist::Special)));
        add("unary", unary(fn, input(r, t, {7}, Dist::Halves)));
        add("unary", unary(fn, input(r, t, {2, 0, 3}, Dist::Small)));
      }
    }
  }

  void gen_where_clip_astype() {
    Rng r(404);
    const std::vector<std::pair<DType, DType>> pairs{
        {DType::Float64, DType::Float64}, {DType::Float32, DType::Int32},
        {DType::Int32, DType::Int64},     {DType::Bool, DType::Bool},
        {DType::Bool, DType::Float32},    {DType::Int32, DType::Int32}};
    for (DType ct : {DType::Bool, DType::Int32, DType::Float64}) {
      for (const auto& [xt, yt] : pairs) {
        add("where", where(input(r, ct, {4, 1}, Dist::NaNs), input(r, xt, {3}, Dist::Small),
                           input(r, yt, {1, 3}, Dist::NaNs)));
        add("where", where(input(r, ct, {2, 3, 4}, Dist::Small),
                           input(r, xt, {2, 3, 4}, Dist::Halves), input(r, yt, {4}, Dist::Small)));
      }
    }
    // Python scalars as either branch.
    const std::vector<ScalarValue> scalars{1.5,  int64_t{0}, int64_t{70000}, int64_t{3000000000},
                                           true, 1e300};
    for (DType t : kDTypes) {
      for (const ScalarValue& s : scalars) {
        const Expr c = input(r, DType::Bool, {5}, Dist::Small);
        const Expr x = input(r, t, {2, 5}, Dist::Small);
        add("where", r.chance(0.5) ? where(c, x, scalar_expr(s)) : where(c, scalar_expr(s), x));
      }
    }
    const std::vector<std::pair<double, double>> bounds{{0, 3}, {-1.5, 2.5}, {-3e9, 5}, {0, 1e300},
                                                        {2, 2}, {-4, 70000}, {-0.5, 0}};
    for (DType t : kDTypes) {
      for (const auto& [lo, hi] : bounds)
        add("clip", clip(input(r, t, {4, 3}, Dist::NaNs), t, lo, hi));
    }
    for (DType from : kDTypes) {
      for (DType to : kDTypes) {
        // NaN only where the target holds it (float-to-int of NaN is undefined).
        const Dist d = ta::is_floating(to) || to == DType::Bool ? Dist::Special : Dist::Halves;
        add("astype", astype(input(r, from, {3, 4}, d), to));
        add("astype", astype(input(r, from, {0, 2}, Dist::Small), to));
      }
    }
  }

  // Chains that fuse into one task per block, mixing chunkings, broadcasting and transposes.
  void gen_chains() {
    Rng r(505);
    for (DType t : {DType::Float64, DType::Float32}) {
      const Expr x = input(r, t, {6, 5}, Dist::Small);
      add("chains", binary("subtract",
                           unary("exp", binary("add", binary("multiply", x, scalar_expr(2.0)),
                                               scalar_expr(int64_t{1}))),
                           binary("true_divide", x, scalar_expr(int64_t{3}))));
    }
    for (DType tx : kDTypes) {
      for (DType ty : kDTypes) {
        const Expr x = input(r, tx, {4, 1}, Dist::NaNs), y = input(r, ty, {3}, Dist::Small);
        add("chains", where(binary("greater", x, y), binary("maximum", x, y),
                            binary("minimum", binary("multiply", y, scalar_expr(int64_t{2})), x)));
        const Expr a = input(r, tx, {5, 4}, Dist::Halves), b = input(r, ty, {4, 5}, Dist::Halves);
        add("chains",
            binary("add", transpose(a, std::nullopt), binary("multiply", b, scalar_expr(true))));
        add("chains",
            binary("less_equal",
                   unary("abs", binary("maximum", a, transpose(b, std::vector<int>{1, 0}))),
                   scalar_expr(1.5)));
      }
    }
    // Reductions kept as length-1 axes (one block of 1) broadcast back against their input.
    for (DType t : kDTypes) {
      const Expr x = input(r, t, {4, 5, 3}, Dist::NaNs);
      for (const AxisArg& axis : {AxisArg{AxisArg::Int, {1}}, AxisArg{AxisArg::Tuple, {0, 2}}}) {
        const Expr m = reduce("max", x, axis, {.keepdims = true});
        add("chains", binary("subtract", x, m));
        add("chains", where(binary("equal", x, reduce("min", x, axis, {.keepdims = true})),
                            scalar_expr(int64_t{1}), m));
      }
      add("chains", where(scalar_expr(true), x, scalar_expr(0.5)));
      add("chains", where(scalar_expr(false), x, input(r, DType::Int32, {3}, Dist::Small)));
    }
    for (DType t : kDTypes) {
      const Expr x = input(r, t, {3, 4, 2}, Dist::Small),
                 y = input(r, DType::Int64, {4, 2}, Dist::Small);
      add("chains",
          binary("add", astype(x, DType::Int32), binary("multiply", y, scalar_expr(int64_t{3}))));
      add("chains", clip(binary("multiply", astype(x, DType::Float64), scalar_expr(1.5)),
                         DType::Float64, -2, 2));
      add("chains", binary("subtract",
                           rechunk(binary("maximum", x, y), ta::Chunks{{1, 2}, {4}, {1, 1}},
                                   "((1, 2), (4,), (1, 1))"),
                           astype(y, t == DType::Bool ? DType::Int32 : t)));
      add("chains", reduce("sum", binary("multiply", x, y), AxisArg{AxisArg::Tuple, {0, 2}},
                           {.keepdims = true}));
      add("chains", binary("bitwise_or", binary("greater", x, scalar_expr(int64_t{0})),
                           unary("isnan", astype(x, DType::Float32))));
    }
  }

  // Every reduction over every axis combination of 1-, 2- and 3-D arrays of every dtype.
  void gen_reductions() {
    Rng r(606);
    const std::vector<std::string> fns{"sum", "prod", "mean", "var",    "std",     "min",
                                       "max", "any",  "all",  "nansum", "nanmean", "count_nonzero"};
    int k = 0;
    for (const ta::Shape& shape : {ta::Shape{7}, ta::Shape{5, 6}, ta::Shape{3, 4, 5}}) {
      for (const AxisArg& axis : axis_combinations(static_cast<int>(shape.size()))) {
        for (const std::string& fn : fns) {
          for (DType t : kDTypes) {
            const int variant = k++;
            ta::ReduceOptions o{.keepdims = variant % 2 == 1,
                                .split_every = (variant / 2) % 2 ? 2 : 0,
                                .ddof = (fn == "var" || fn == "std") ? (variant / 4) % 2 : 0};
            Dist d = fn == "prod" ? Dist::Prod : variant % 3 == 0 ? Dist::NaNs : Dist::Halves;
            if (d == Dist::Halves && variant % 3 == 1) d = Dist::Small;
            const ChunkStyle cs = variant % 7 == 0 ? ChunkStyle::Ones : ChunkStyle::Random;
            add("reductions", reduce(fn, input(r, t, shape, d, cs), axis, o));
          }
        }
      }
    }
    // Big integers: int64 sums wrap in both; means, variances never overflow in NumPy.
    for (const std::string fn : {"sum", "mean", "var", "std", "nanmean", "nansum", "min", "max"}) {
      for (DType t : {DType::Int32, DType::Int64}) {
        for (const AxisArg& axis :
             {AxisArg{}, AxisArg{AxisArg::Int, {0}}, AxisArg{AxisArg::Int, {1}}}) {
          add("reductions", reduce(fn, input(r, t, {6, 4}, Dist::Big), axis, {.split_every = 2}));
        }
      }
    }
    // Reductions of fused expressions and of transposed arrays.
    for (DType t : kDTypes) {
      const Expr x = input(r, t, {4, 6}, Dist::Small);
      add("reductions", reduce("max", transpose(x, std::nullopt), AxisArg{AxisArg::Int, {0}}, {}));
      add("reductions", reduce("mean", binary("add", x, scalar_expr(int64_t{1})),
                               AxisArg{AxisArg::Int, {1}}, {}));
      add("reductions",
          reduce("var", transpose(x, std::nullopt), AxisArg{AxisArg::Int, {-1}}, {.ddof = 1}));
    }
  }

  void gen_arg_reductions() {
    Rng r(707);
    int k = 0;
    const std::vector<std::pair<ta::Shape, std::vector<std::optional<int>>>> plans{
        {{9}, {std::nullopt, 0, -1}},
        {{5, 6}, {std::nullopt, 0, 1, -1}},
        {{3, 4, 5}, {std::nullopt, 0, 1, 2, -2}}};
    for (const std::string fn : {"argmin", "argmax"}) {
      for (const auto& [shape, axes] : plans) {
        for (const auto& ax : axes) {
          for (DType t : kDTypes) {
            const int variant = k++;
            const AxisArg axis = ax ? AxisArg{AxisArg::Int, {*ax}} : AxisArg{};
            const Dist d = variant % 2 ? Dist::NaNs : Dist::Halves;  // ties and NaN: first wins
            add("argreductions",
                reduce(fn, input(r, t, shape, d), axis,
                       {.keepdims = variant % 3 == 1, .split_every = variant % 4 < 2 ? 2 : 0}));
          }
        }
      }
    }
  }

  // Zero-length axes: empty sums, NaN means, and min/max/argmin errors.
  void gen_empty_reductions() {
    Rng r(808);
    const std::vector<std::string> fns{"sum", "prod", "mean", "var",    "std",     "min",
                                       "max", "any",  "all",  "nansum", "nanmean", "count_nonzero"};
    int k = 0;
    for (const ta::Shape& shape : {ta::Shape{0}, ta::Shape{3, 0}, ta::Shape{0, 2, 3}}) {
      for (const AxisArg& axis : axis_combinations(static_cast<int>(shape.size()))) {
        for (const std::string& fn : fns) {
          const int variant = k++;
          const DType t = kDTypes[variant % 5];
          add("empty", reduce(fn, input(r, t, shape, Dist::Small), axis,
                              {.keepdims = variant % 2 == 0, .split_every = variant % 3 ? 2 : 0}));
        }
      }
    }
    for (const std::string fn : {"argmin", "argmax"}) {
      for (const AxisArg& axis :
           {AxisArg{}, AxisArg{AxisArg::Int, {0}}, AxisArg{AxisArg::Int, {1}}}) {
        add("empty", reduce(fn, input(r, DType::Float64, {3, 0}, Dist::Small), axis, {}));
      }
    }
  }

  // Arrays over 1024 elements (several tiles per elementwise block, broadcast leaves read from
  // inside a tile) and rows of 8 or more (the reductions' vectorized lanes), big blocks.
  void gen_large() {
    Rng r(1313);
    const auto big = ChunkStyle::Large;
    for (DType t : kDTypes) {
      const Expr x = input(r, t, {40, 1}, Dist::NaNs, big),
                 y = input(r, DType::Int32, {70}, Dist::Small, big);
      add("large", binary("add", x, y));
      add("large", where(binary("greater", x, scalar_expr(int64_t{0})), y,
                         binary("multiply", x, scalar_expr(2.5))));
      add("large", binary("maximum", input(r, t, {3, 1, 400}, Dist::Small, big),
                          input(r, t, {5, 1}, Dist::Small, ChunkStyle::Whole)));
      add("large", binary("less", transpose(input(r, t, {60, 30}, Dist::Halves, big), std::nullopt),
                          input(r, t, {30, 60}, Dist::Halves, big)));
    }
    const std::vector<std::string> fns{"sum", "prod",   "mean",    "var",          "std",
                                       "min", "max",    "argmin",  "argmax",       "any",
                                       "all", "nansum", "nanmean", "count_nonzero"};
    int k = 0;
    for (const std::string& fn : fns) {
      for (DType t : kDTypes) {
        const int variant = k++;
        const Dist d = fn == "prod" ? Dist::Prod : variant % 2 ? Dist::NaNs : Dist::Small;
        const bool arg = fn == "argmin" || fn == "argmax";
        const ta::ReduceOptions o{.keepdims = variant % 2 == 0,
                                  .split_every = 2 + variant % 3,
                                  .ddof = variant % 3 == 1 ? 1 : 0};
        for (const AxisArg& axis :
             {AxisArg{}, AxisArg{AxisArg::Int, {0}}, AxisArg{AxisArg::Int, {-1}}}) {
          add("large", reduce(fn, input(r, t, {9, 37}, d, big), axis, o));
          add("large", reduce(fn, transpose(input(r, t, {33, 12}, d, big), std::nullopt), axis, o));
        }
        add("large", reduce(fn, input(r, t, {1500}, d, big), AxisArg{}, o));
        // A deep tree: forty one-element blocks.
        add("large", reduce(fn, input(r, t, {40}, d, ChunkStyle::Ones),
                            arg ? AxisArg{} : AxisArg{AxisArg::Tuple, {0}}, o));
        if (!arg)
          add("large",
              reduce(fn, input(r, t, {6, 5, 10}, d, big), AxisArg{AxisArg::Tuple, {0, 2}}, o));
      }
    }
    const std::vector<std::pair<DType, DType>> pairs{{DType::Float64, DType::Float64},
                                                     {DType::Float32, DType::Float32},
                                                     {DType::Int32, DType::Int64},
                                                     {DType::Float32, DType::Int32}};
    for (const auto& [ta_, tb] : pairs) {
      add("large", matmul("matmul", input(r, ta_, {30, 40}, Dist::Small, big),
                          input(r, tb, {40, 20}, Dist::Small, big)));
      add("large",
          matmul("matmul", transpose(input(r, ta_, {40, 30}, Dist::Small, big), std::nullopt),
                 transpose(input(r, tb, {20, 40}, Dist::Small, big), std::nullopt)));
    }
    // Special values (inf, -inf, NaN, -0, 1e30) through the reductions.
    for (const std::string fn : {"sum", "mean", "var", "std", "min", "max", "argmin", "argmax",
                                 "nansum", "nanmean", "any", "all", "count_nonzero"}) {
      for (DType t : {DType::Float64, DType::Float32}) {
        for (const AxisArg& axis : {AxisArg{}, AxisArg{AxisArg::Int, {1}}}) {
          add("large", reduce(fn, input(r, t, {6, 9}, Dist::Special), axis, {.split_every = 2}));
        }
      }
    }
    // All-NaN slices.
    for (const std::string fn : {"nansum", "nanmean", "min", "argmax", "mean", "sum"}) {
      for (DType t : {DType::Float64, DType::Float32}) {
        for (const AxisArg& axis : {AxisArg{}, AxisArg{AxisArg::Int, {1}}}) {
          add("large", reduce(fn, input(r, t, {5, 3}, Dist::MostNaN), axis, {.keepdims = true}));
        }
      }
    }
    // 0-d inputs.
    for (const std::string fn :
         {"sum", "prod", "mean", "var", "min", "argmax", "any", "count_nonzero"}) {
      for (DType t : kDTypes) {
        add("large",
            reduce(fn, input(r, t, {}, Dist::Small), AxisArg{}, {.keepdims = t == DType::Int32}));
        if (fn != "argmax")
          add("large", reduce(fn, input(r, t, {}, Dist::Small), AxisArg{AxisArg::Tuple, {}}, {}));
      }
    }
    // Two Python-like scalars: a 0-d array.
    const std::vector<std::pair<ScalarValue, ScalarValue>> scalar_pairs{{int64_t{2}, 2.5},
                                                                        {true, int64_t{3}},
                                                                        {true, false},
                                                                        {1.5, 1e300},
                                                                        {int64_t{7}, int64_t{-2}}};
    for (const auto& [a, b] : scalar_pairs) {
      for (const std::string op : {"add", "multiply", "true_divide", "maximum", "less"}) {
        add("large", binary(op, scalar_expr(a), scalar_expr(b)));
      }
    }
  }

  // Constant blocks (ta::full: every stride 0) through elementwise ops and reductions.
  void gen_constant_blocks() {
    Rng r(1414);
    int k = 0;
    for (DType t : kDTypes) {
      for (double v : {2.5, 4611686018427387904.0, 0.0, -3.0}) {
        if (v > 1e18 && t != DType::Int64) continue;
        const ta::Shape shape{4, 6};
        const Expr c = full(shape, v, make_chunks(shape, r, ChunkStyle::Random), t);
        for (const std::string fn :
             {"sum", "prod", "mean", "var", "min", "argmax", "count_nonzero", "all", "nanmean"}) {
          const int variant = k++;
          const AxisArg axis = variant % 3 == 0   ? AxisArg{}
                               : variant % 3 == 1 ? AxisArg{AxisArg::Int, {0}}
                                                  : AxisArg{AxisArg::Int, {1}};
          add("constant", reduce(fn, c, axis, {.keepdims = variant % 2 == 1}));
        }
        const DType xt = t == DType::Bool ? DType::Int32 : t;
        add("constant", binary("subtract", input(r, xt, shape, Dist::Small), c));
        add("constant",
            where(input(r, DType::Bool, {6}, Dist::Small), c, scalar_expr(int64_t{-1})));
      }
    }
  }

  void gen_transpose() {
    Rng r(909);
    const std::vector<std::vector<int>> perms3{{0, 1, 2}, {0, 2, 1}, {1, 0, 2},  {1, 2, 0},
                                               {2, 0, 1}, {2, 1, 0}, {-1, 0, 1}, {1, -3, -1}};
    for (DType t : kDTypes) {
      add("transpose", transpose(input(r, t, {4, 7}, Dist::Small), std::nullopt));
      add("transpose", transpose(input(r, t, {4, 7}, Dist::Small), std::vector<int>{1, 0}));
      add("transpose", transpose(input(r, t, {5}, Dist::Small), std::nullopt));
      add("transpose", transpose(input(r, t, {3, 4, 5}, Dist::Small), std::nullopt));
      for (const auto& p : perms3)
        add("transpose", transpose(input(r, t, {3, 4, 5}, Dist::NaNs), p));
      add("transpose", transpose(input(r, t, {2, 0, 3}, Dist::Small), std::vector<int>{2, 0, 1}));
      // A transpose read by an elementwise op cut otherwise, then transposed back.
      const Expr x = input(r, t, {5, 3}, Dist::Small), y = input(r, t, {3, 5}, Dist::Small);
      add("transpose",
          transpose(binary("maximum", transpose(x, std::nullopt), y), std::vector<int>{1, 0}));
    }
  }

  void gen_rechunk() {
    Rng r(1010);
    int k = 0;
    for (const ta::Shape& shape :
         {ta::Shape{7}, ta::Shape{5, 6}, ta::Shape{3, 4, 5}, ta::Shape{0, 4}, ta::Shape{6, 0, 2}}) {
      for (int target = 0; target < 6; ++target) {
        const DType t = kDTypes[k++ % 5];
        const Expr x = input(r, t, shape, Dist::NaNs);
        switch (target) {
          case 0:
            add("rechunk", rechunk(x, int64_t{2}, "2"));
            break;
          case 1:
            add("rechunk", rechunk(x, int64_t{-1}, "-1"));
            break;
          case 2:
            add("rechunk", rechunk(x, "auto", "'auto'"));
            break;
          case 3: {
            const ta::Chunks c = make_chunks(shape, r, ChunkStyle::Ones);
            add("rechunk", rechunk(x, c, chunks_text(c)));
            break;
          }
          default: {
            const ta::Chunks c = make_chunks(shape, r, ChunkStyle::Random);
            add("rechunk", rechunk(x, c, chunks_text(c)));
          }
        }
      }
    }
    // Rechunked operands meeting in an elementwise op (the result is cut like one of them).
    for (DType t : kDTypes) {
      const Expr x = input(r, t, {6, 5}, Dist::Small), y = input(r, t, {6, 5}, Dist::Small);
      const ta::Chunks c = make_chunks({6, 5}, r, ChunkStyle::Random);
      add("rechunk", binary("maximum", rechunk(x, c, chunks_text(c)), y));
    }
  }

  void gen_matmul() {
    Rng r(1111);
    const std::vector<std::pair<DType, DType>> pairs{
        {DType::Float64, DType::Float64}, {DType::Float32, DType::Float32},
        {DType::Int32, DType::Int32},     {DType::Int64, DType::Int64},
        {DType::Bool, DType::Bool},       {DType::Int32, DType::Float32},
        {DType::Float32, DType::Float64}, {DType::Bool, DType::Int64}};
    const std::vector<std::array<int64_t, 3>> dims{{3, 4, 5}, {1, 7, 2}, {6, 1, 3}, {4, 0, 3},
                                                   {0, 3, 2}, {5, 5, 5}, {2, 9, 1}};
    int k = 0;
    for (const auto& [ta_, tb] : pairs) {
      for (const auto& [m, kk, n] : dims) {
        const std::string fn = k++ % 4 == 3 ? "dot" : "matmul";
        add("matmul",
            matmul(fn, input(r, ta_, {m, kk}, Dist::Small), input(r, tb, {kk, n}, Dist::Small)));
      }
      // 1-D operands.
      add("matmul",
          matmul("matmul", input(r, ta_, {6}, Dist::Small), input(r, tb, {6}, Dist::Small)));
      add("matmul", matmul("dot", input(r, ta_, {0}, Dist::Small), input(r, tb, {0}, Dist::Small)));
      add("matmul",
          matmul("matmul", input(r, ta_, {4, 6}, Dist::Small), input(r, tb, {6}, Dist::Small)));
      add("matmul",
          matmul("dot", input(r, ta_, {5}, Dist::Small), input(r, tb, {5, 3}, Dist::Small)));
      // Transposed (strided) blocks reach BLAS as they are.
      const Expr x = input(r, ta_, {6, 4}, Dist::Small);
      add("matmul",
          matmul("matmul", transpose(x, std::nullopt), input(r, tb, {6, 3}, Dist::Small)));
    }
    add("matmul", matmul("matmul", input(r, DType::Float64, {3, 4}, Dist::Small),
                         input(r, DType::Float64, {5, 2}, Dist::Small)));
  }

  void gen_creation() {
    struct Range {
      double start, stop, step;
    };
    const std::vector<Range> ranges{
        {0, 10, 1}, {2, 20, 3},        {-3, 3, 0.5},         {10, 0, -1.5}, {0, 1, 0.1},
        {5, 5, 1},  {0.5, 7.25, 0.75}, {1e6, 1e6 + 10, 0.7}, {-7, 8, 2},    {3, -9, -4}};
    int k = 0;
    for (const Range& g : ranges) {
      for (DType t : {DType::Float64, DType::Float32, DType::Int32, DType::Int64}) {
        const bool integral = g.start == std::floor(g.start) && g.step == std::floor(g.step);
        if (!ta::is_floating(t) && !integral) continue;
        const int64_t block = 1 + k++ % 4;
        Expr e;
        e.json =
            fmt::format(R"({{"op":"arange","start":{},"stop":{},"step":{},"dtype":"{}"}})",
                        json_number(g.start), json_number(g.stop), json_number(g.step), name_of(t));
        e.text = fmt::format("arange({}, {}, {}, chunks={}, dtype={})", g.start, g.stop, g.step,
                             block, name_of(t));
        e.range = true;
        e.build = [g, block, t] { return ta::arange(g.start, g.stop, g.step, block, t); };
        add("creation", e);
      }
    }
    struct Lin {
      double start, stop;
      int64_t num;
    };
    const std::vector<Lin> lins{{0, 1, 5},  {0, 1, 1}, {0, 1, 0},  {-2, 3, 7},
                                {3, -2, 8}, {1, 1, 4}, {0, 10, 7}, {-5, 5, 7}};
    for (const Lin& l : lins) {
      for (bool endpoint : {true, false}) {
        const DType t = kDTypes[1 + k++ % 4];
        const int64_t block = 1 + k % 3;
        Expr e;
        e.json = fmt::format(
            R"({{"op":"linspace","start":{},"stop":{},"num":{},"endpoint":{},"dtype":"{}"}})",
            json_number(l.start), json_number(l.stop), l.num, endpoint ? "true" : "false",
            name_of(t));
        e.text = fmt::format("linspace({}, {}, {}, chunks={}, endpoint={}, dtype={})", l.start,
                             l.stop, l.num, block, endpoint, name_of(t));
        e.range = true;
        e.build = [l, block, endpoint, t] {
          return ta::linspace(l.start, l.stop, l.num, block, endpoint, t);
        };
        add("creation", e);
      }
    }
    struct Eye {
      int64_t n;
      std::optional<int64_t> m;
      int64_t k;
    };
    const std::vector<Eye> eyes{{4, std::nullopt, 0}, {3, 5, 1}, {5, 3, -2}, {4, 4, 7}, {0, 3, 0},
                                {3, 3, -3},           {6, 4, 2}};
    for (const Eye& y : eyes) {
      for (int c = 0; c < 2; ++c) {
        const DType t = kDTypes[k++ % 5];
        const int64_t block = c ? 2 : 4;
        Expr e;
        e.json = fmt::format(R"({{"op":"eye","n":{},"m":{},"k":{},"dtype":"{}"}})", y.n,
                             y.m ? std::to_string(*y.m) : "null", y.k, name_of(t));
        e.text = fmt::format("eye({}, chunks={}, m={}, k={}, dtype={})", y.n, block,
                             y.m ? std::to_string(*y.m) : "None", y.k, name_of(t));
        e.build = [y, block, t] { return ta::eye(y.n, block, y.m, y.k, t); };
        add("creation", e);
      }
    }
    Rng r(1212);
    const std::vector<ta::Shape> shapes{{3, 4}, {0, 2}, {5}, {}, {2, 3, 2}};
    for (double v : std::vector<double>{2.7, -1.5, 0.5, 0.0, 7.0, NAN}) {
      for (DType t : kDTypes) {
        if (std::isnan(v) && !ta::is_floating(t) && t != DType::Bool) continue;
        const ta::Shape shape = shapes[static_cast<size_t>(k++) % shapes.size()];
        add("creation", full(shape, v, make_chunks(shape, r, ChunkStyle::Random), t));
      }
    }
  }

  // None, the empty tuple and every subset of the axes (singletons as ints, some negative).
  static std::vector<AxisArg> axis_combinations(int nd) {
    std::vector<AxisArg> out{AxisArg{}};
    for (int mask = 0; mask < (1 << nd); ++mask) {
      AxisArg a{AxisArg::Tuple, {}};
      for (int k = 0; k < nd; ++k) {
        if (mask & (1 << k)) a.axes.push_back(k);
      }
      if (a.axes.size() == 1) {
        a.kind = AxisArg::Int;
        if (mask % 3 == 1) a.axes[0] -= nd;
      } else if (a.axes.size() == static_cast<size_t>(nd) && nd > 1) {
        std::reverse(a.axes.begin(), a.axes.end());  // any order, negative allowed
        a.axes[0] -= nd;
      }
      out.push_back(a);
    }
    return out;
  }

  tessera::testing::TempDir dir_;
  std::vector<Input> inputs_;
  std::vector<Case> cases_;
  std::map<DType, int64_t> input_sizes_;
  std::map<int, Result> results_;
  std::map<DType, ta::NDArray> expected_;
  ta::NDArray scales_;
};

}  // namespace

class NumpyOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_ = std::make_unique<Suite>();
    bool no_numpy = false;
    setup_error_ = suite_->run_oracle(no_numpy);
    if (no_numpy) skip_ = TESSERA_PYTHON " cannot import numpy: the NumPy oracle cases are skipped";
  }
  static void TearDownTestSuite() { suite_.reset(); }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  // Checks every case of `group`; there must be some.
  static void check(const std::string& group) {
    EXPECT_GT(suite_->check(group), 0) << "no cases in group " << group;
  }

  static inline std::unique_ptr<Suite> suite_;
  static inline std::string skip_, setup_error_;
};

TEST_F(NumpyOracle, HasSeveralHundredCases) {
  EXPECT_GE(suite_->size(), 500u);
  std::cout << suite_->summary() << "\n";
}
TEST_F(NumpyOracle, BinaryOpsBroadcastAndPromote) {
  check("binary");
}
TEST_F(NumpyOracle, PythonScalarsPromoteByValue) {
  check("scalars");
}
TEST_F(NumpyOracle, UnaryFunctions) {
  check("unary");
}
TEST_F(NumpyOracle, Where) {
  check("where");
}
TEST_F(NumpyOracle, Clip) {
  check("clip");
}
TEST_F(NumpyOracle, Astype) {
  check("astype");
}
TEST_F(NumpyOracle, FusedChains) {
  check("chains");
}
TEST_F(NumpyOracle, ReductionsOverEveryAxisCombination) {
  check("reductions");
}
TEST_F(NumpyOracle, ArgminArgmax) {
  check("argreductions");
}
TEST_F(NumpyOracle, ReductionsOfZeroLengthAxes) {
  check("empty");
}
TEST_F(NumpyOracle, Transpose) {
  check("transpose");
}
TEST_F(NumpyOracle, Rechunk) {
  check("rechunk");
}
TEST_F(NumpyOracle, MatmulAndDot) {
  check("matmul");
}
TEST_F(NumpyOracle, Creation) {
  check("creation");
}
TEST_F(NumpyOracle, LargeArraysAndSpecialValues) {
  check("large");
}
TEST_F(NumpyOracle, ConstantBlocks) {
  check("constant");
}

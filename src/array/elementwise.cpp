// Elementwise operations with NumPy broadcasting and promotion. An elementwise result keeps
// its expression, and later elementwise operations inline it: a chain of them becomes one
// layer, one task per block, evaluated in cache-sized tiles without whole-block temporaries.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "array/array_internal.hpp"
#include "array/elementwise_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

constexpr int64_t kTile = 1024;  // elements evaluated at once per node

const char* op_name(Code c) {
  switch (c) {
    case Code::Load:
      return "load";
    case Code::Cast:
      return "astype";
    case Code::Add:
      return "add";
    case Code::Sub:
      return "subtract";
    case Code::Mul:
      return "multiply";
    case Code::Div:
      return "true_divide";
    case Code::Pow:
      return "power";
    case Code::Max:
      return "maximum";
    case Code::Min:
      return "minimum";
    case Code::Eq:
      return "equal";
    case Code::Ne:
      return "not_equal";
    case Code::Lt:
      return "less";
    case Code::Le:
      return "less_equal";
    case Code::Gt:
      return "greater";
    case Code::Ge:
      return "greater_equal";
    case Code::And:
      return "bitwise_and";
    case Code::Or:
      return "bitwise_or";
    case Code::Xor:
      return "bitwise_xor";
    case Code::Neg:
      return "negative";
    case Code::Not:
      return "invert";
    case Code::Abs:
      return "absolute";
    case Code::Exp:
      return "exp";
    case Code::Log:
      return "log";
    case Code::Sqrt:
      return "sqrt";
    case Code::Sin:
      return "sin";
    case Code::Cos:
      return "cos";
    case Code::Tanh:
      return "tanh";
    case Code::Floor:
      return "floor";
    case Code::Ceil:
      return "ceil";
    case Code::Round:
      return "round";
    case Code::IsNan:
      return "isnan";
    case Code::Where:
      return "where";
  }
  return "?";
}

// ---- kernels -------------------------------------------------------------------------------

template <class T>
T wrap_add(T a, T b) {
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
}
template <class T>
T wrap_sub(T a, T b) {
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
}
template <class T>
T wrap_mul(T a, T b) {
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
}

template <class T>
T ipow(T base, T exp) {
  if (exp < 0) throw ValueError("Integers to negative integer powers are not allowed.");
  T r = 1;
  while (exp) {
    if (exp & 1) r = wrap_mul(r, base);
    base = wrap_mul(base, base);
    exp >>= 1;
  }
  return r;
}

template <class T>
void binary(Code op, const T* a, const T* b, T* o, int64_t n) {
  constexpr bool kFloat = std::is_floating_point_v<T>;
  constexpr bool kBool = std::is_same_v<T, bool>;
  switch (op) {
    case Code::Add:
      if constexpr (kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] || b[i];
      } else if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] + b[i];
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = wrap_add(a[i], b[i]);
      }
      return;
    case Code::Sub:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] - b[i];
      } else if constexpr (!kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = wrap_sub(a[i], b[i]);
      }
      return;
    case Code::Mul:
      if constexpr (kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] && b[i];
      } else if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] * b[i];
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = wrap_mul(a[i], b[i]);
      }
      return;
    case Code::Div:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] / b[i];
      }
      return;
    case Code::Pow:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = std::pow(a[i], b[i]);
      } else if constexpr (!kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = ipow(a[i], b[i]);
      }
      return;
    case Code::Max:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i)
          o[i] = a[i] != a[i] ? a[i] : (b[i] != b[i] ? b[i] : (a[i] > b[i] ? a[i] : b[i]));
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] > b[i] ? a[i] : b[i];
      }
      return;
    case Code::Min:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i)
          o[i] = a[i] != a[i] ? a[i] : (b[i] != b[i] ? b[i] : (a[i] < b[i] ? a[i] : b[i]));
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] < b[i] ? a[i] : b[i];
      }
      return;
    case Code::And:
      if constexpr (!kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] & b[i];
      }
      return;
    case Code::Or:
      if constexpr (!kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] | b[i];
      }
      return;
    case Code::Xor:
      if constexpr (!kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] ^ b[i];
      }
      return;
    default:
      return;
  }
}

template <class T>
void compare(Code op, const T* a, const T* b, bool* o, int64_t n) {
  switch (op) {
    case Code::Eq:
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] == b[i];
      return;
    case Code::Ne:
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] != b[i];
      return;
    case Code::Lt:
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] < b[i];
      return;
    case Code::Le:
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] <= b[i];
      return;
    case Code::Gt:
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] > b[i];
      return;
    case Code::Ge:
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] >= b[i];
      return;
    default:
      return;
  }
}

template <class T>
void unary(Code op, const T* a, T* o, int64_t n) {
  constexpr bool kFloat = std::is_floating_point_v<T>;
  constexpr bool kBool = std::is_same_v<T, bool>;
  switch (op) {
    case Code::Neg:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = -a[i];
      } else if constexpr (!kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = wrap_sub(T(0), a[i]);
      }
      return;
    case Code::Not:
      if constexpr (kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = !a[i];
      } else if constexpr (!kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = ~a[i];
      }
      return;
    case Code::Abs:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = std::abs(a[i]);
      } else if constexpr (kBool) {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i];
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i] < 0 ? wrap_sub(T(0), a[i]) : a[i];
      }
      return;
    case Code::Round:
      if constexpr (kFloat) {
        for (int64_t i = 0; i < n; ++i) o[i] = std::nearbyint(a[i]);  // half to even
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = a[i];
      }
      return;
    default:
      break;
  }
  if constexpr (kFloat) {
    switch (op) {
      case Code::Exp:
        for (int64_t i = 0; i < n; ++i) o[i] = std::exp(a[i]);
        return;
      case Code::Log:
        for (int64_t i = 0; i < n; ++i) o[i] = std::log(a[i]);
        return;
      case Code::Sqrt:
        for (int64_t i = 0; i < n; ++i) o[i] = std::sqrt(a[i]);
        return;
      case Code::Sin:
        for (int64_t i = 0; i < n; ++i) o[i] = std::sin(a[i]);
        return;
      case Code::Cos:
        for (int64_t i = 0; i < n; ++i) o[i] = std::cos(a[i]);
        return;
      case Code::Tanh:
        for (int64_t i = 0; i < n; ++i) o[i] = std::tanh(a[i]);
        return;
      case Code::Floor:
        for (int64_t i = 0; i < n; ++i) o[i] = std::floor(a[i]);
        return;
      case Code::Ceil:
        for (int64_t i = 0; i < n; ++i) o[i] = std::ceil(a[i]);
        return;
      default:
        return;
    }
  }
}

// Evaluates a program over the blocks in `args` (args[0] is the program).
Value elementwise_block(std::span<const Value> args) {
  if (args.empty()) throw ValueError("array.elementwise: missing program");
  const Program prog = Program::decode(args[0].get<std::vector<int64_t>>());
  const size_t nleaves = args.size() - 1;
  // The block's shape: the leaves broadcast together.
  Shape shape;
  for (size_t i = 0; i < nleaves; ++i)
    shape = broadcast_shapes(shape, as_ndarray(args[1 + i]).shape());
  std::vector<NDArray> leaves;
  leaves.reserve(nleaves);
  for (size_t i = 0; i < nleaves; ++i)
    leaves.push_back(as_ndarray(args[1 + i]).broadcast_to(shape));

  const size_t nn = prog.nodes.size();
  const Node& last = prog.nodes.back();
  NDArray out = NDArray::empty(last.dtype, shape);
  const int64_t total = out.size();
  // Tile buffers per node; loads of contiguous leaves point straight into the leaf.
  std::vector<std::vector<double>> buffers(nn);  // 8-byte elements fit every dtype
  std::vector<const void*> src(nn);
  std::vector<bool> contiguous_leaf(nleaves), constant_leaf(nleaves);
  for (size_t i = 0; i < nleaves; ++i) {
    contiguous_leaf[i] = leaves[i].is_contiguous();
    constant_leaf[i] = !contiguous_leaf[i] && leaves[i].is_constant();
  }
  for (size_t k = 0; k + 1 < nn; ++k) buffers[k].resize(kTile);
  for (int64_t s = 0; s < total; s += kTile) {
    const int64_t n = std::min(kTile, total - s);
    for (size_t k = 0; k < nn; ++k) {
      const Node& node = prog.nodes[k];
      const size_t w = dtype_size(node.dtype);
      void* dst = k + 1 == nn ? static_cast<std::byte*>(out.raw_mutable_data()) +
                                    s * static_cast<int64_t>(w)
                              : static_cast<void*>(buffers[k].data());
      if (node.code == Code::Load) {
        const NDArray& leaf = leaves[static_cast<size_t>(node.a)];
        if (contiguous_leaf[node.a]) {
          const void* p =
              static_cast<const std::byte*>(leaf.raw_data()) + s * static_cast<int64_t>(w);
          if (k + 1 == nn) {
            std::memcpy(dst, p, static_cast<size_t>(n) * w);
          } else {
            src[k] = p;
          }
          continue;
        }
        visit_dtype(node.dtype, [&](auto t) {
          using T = decltype(t);
          if (constant_leaf[node.a]) {
            std::fill_n(static_cast<T*>(dst), n, *static_cast<const T*>(leaf.raw_data()));
          } else {
            gather_range<T, T>(leaf, s, n, static_cast<T*>(dst));
          }
        });
        src[k] = dst;
        continue;
      }
      const void* a = node.a >= 0 ? src[node.a] : nullptr;
      const void* b = node.b >= 0 ? src[node.b] : nullptr;
      const void* c = node.c >= 0 ? src[node.c] : nullptr;
      switch (node.code) {
        case Code::Cast:
          visit_dtype(node.dtype, [&](auto d) {
            using D = decltype(d);
            visit_dtype(prog.nodes[node.a].dtype, [&](auto t) {
              using S = decltype(t);
              const S* p = static_cast<const S*>(a);
              D* o = static_cast<D*>(dst);
              for (int64_t i = 0; i < n; ++i) o[i] = convert<D, S>(p[i]);
            });
          });
          break;
        case Code::Eq:
        case Code::Ne:
        case Code::Lt:
        case Code::Le:
        case Code::Gt:
        case Code::Ge:
          visit_dtype(prog.nodes[node.a].dtype, [&](auto t) {
            using T = decltype(t);
            compare<T>(node.code, static_cast<const T*>(a), static_cast<const T*>(b),
                       static_cast<bool*>(dst), n);
          });
          break;
        case Code::IsNan:
          visit_dtype(prog.nodes[node.a].dtype, [&](auto t) {
            using T = decltype(t);
            const T* p = static_cast<const T*>(a);
            bool* o = static_cast<bool*>(dst);
            for (int64_t i = 0; i < n; ++i) o[i] = p[i] != p[i];
          });
          break;
        case Code::Where:
          visit_dtype(node.dtype, [&](auto t) {
            using T = decltype(t);
            const bool* cond = static_cast<const bool*>(a);
            const T* x = static_cast<const T*>(b);
            const T* y = static_cast<const T*>(c);
            T* o = static_cast<T*>(dst);
            for (int64_t i = 0; i < n; ++i) o[i] = cond[i] ? x[i] : y[i];
          });
          break;
        default:
          visit_dtype(node.dtype, [&](auto t) {
            using T = decltype(t);
            if (b) {
              binary<T>(node.code, static_cast<const T*>(a), static_cast<const T*>(b),
                        static_cast<T*>(dst), n);
            } else {
              unary<T>(node.code, static_cast<const T*>(a), static_cast<T*>(dst), n);
            }
          });
      }
      src[k] = dst;
    }
  }
  return Value::of(std::move(out));
}
TESSERA_REGISTER_AS("array.elementwise", elementwise_block);

// ---- building expressions -------------------------------------------------------------------

enum class Kind { Bool, Int, Float };
Kind kind_of(DType t) {
  return t == DType::Bool ? Kind::Bool : is_integer(t) ? Kind::Int : Kind::Float;
}

// The type NumPy 1.24 gives an array of type `t` combined with a Python scalar `v` of the same
// or a lower kind. Its value-based casting counts the scalar as the smallest type holding its
// value (numpy.min_scalar_type), so the scalar widens the array only when the value does not
// fit: int32 + 3000000000 is int64; float32 + 70000 is float64 (70000 needs 32 bits, more
// than float32 holds exactly; int16 and uint16 values keep float32); float32 + 1e300 is
// float64. int32 + 1 and float32 + 1.5 keep their type.
DType promote_by_value(DType t, const NDArray& v) {
  if (t == DType::Int32 && is_integer(v.dtype())) {
    const auto x = v.item<int64_t>();
    return x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max()
               ? t
               : DType::Int64;
  }
  if (t == DType::Float32 && is_integer(v.dtype())) {
    const auto x = v.item<int64_t>();
    return x >= -32768 && x <= 65535 ? t : DType::Float64;
  }
  if (t == DType::Float32 && is_floating(v.dtype())) {
    // NumPy's float32 cutoff (just below FLT_MAX); inf and NaN fit every float type.
    const auto x = v.item<double>();
    return std::isfinite(x) && std::abs(x) >= 3.4e38 ? DType::Float64 : t;
  }
  return t;  // bool, int64 and float64 hold every scalar of their kind or a lower one
}

// NumPy 1.24's promotion with Python scalars (weak 0-d literals): by value when the scalar's
// kind is not above the array's (see promote_by_value); a scalar of a higher kind takes its
// kind's default type (bool + 1 is int64, int32 + 1.5 is float64).
DType promote(const Array& a, const Array& b) {
  const bool wa = a.data().weak, wb = b.data().weak;
  if (wa == wb) return result_type(a.dtype(), b.dtype());
  const Array& arr = wa ? b : a;
  const Array& s = wa ? a : b;
  if (kind_of(s.dtype()) <= kind_of(arr.dtype()) && s.data().literal) {
    return promote_by_value(arr.dtype(), *s.data().literal);
  }
  return result_type(arr.dtype(), s.dtype());
}

struct Builder {
  Program prog;
  std::vector<Array> leaves;      // array leaves (blocks read per task)
  std::vector<NDArray> literals;  // literal leaves (weak scalars and 0-d constants)
  std::vector<Shape> shapes;      // of each input, for broadcasting
  Shape out_shape;

  // Leaf indexes: arrays first (0..), literals after; fixed up in finish().
  int32_t leaf_index(const Array& a) {
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (leaves[i].name() == a.name()) return static_cast<int32_t>(i);
    }
    leaves.push_back(a);
    return static_cast<int32_t>(leaves.size() - 1);
  }
  int32_t literal_index(const NDArray& v) {
    literals.push_back(v);
    return static_cast<int32_t>(kLiteralBase + literals.size() - 1);
  }
  int32_t add(Code code, DType dtype, int32_t a = -1, int32_t b = -1, int32_t c = -1) {
    prog.nodes.push_back({code, dtype, a, b, c});
    return static_cast<int32_t>(prog.nodes.size() - 1);
  }
  static constexpr int32_t kLiteralBase = 1 << 20;
};

// Can `a`'s expression be inlined in an operation whose output has `chunks` (aligned right)?
bool can_inline(const Array& a, const Chunks& out_chunks) {
  if (!a.data().expr) return false;
  const size_t lead = out_chunks.size() - a.chunks().size();
  for (size_t k = 0; k < a.chunks().size(); ++k) {
    if (a.chunks()[k] != out_chunks[lead + k] && !(a.shape()[k] == 1)) return false;
  }
  return true;
}

// Adds the nodes computing input `a` (inlining its expression when allowed).
int32_t input_node(Builder& b, const Array& a, const Chunks& out_chunks) {
  if (a.data().literal) return b.add(Code::Load, a.dtype(), b.literal_index(*a.data().literal));
  if (can_inline(a, out_chunks)) {
    const Expr& e = *a.data().expr;
    std::vector<int32_t> map(e.prog.nodes.size());
    for (size_t k = 0; k < e.prog.nodes.size(); ++k) {
      Node n = e.prog.nodes[k];
      if (n.code == Code::Load) {
        n.a = n.a >= Builder::kLiteralBase
                  ? b.literal_index(e.literals[static_cast<size_t>(n.a - Builder::kLiteralBase)])
                  : b.leaf_index(e.leaves[static_cast<size_t>(n.a)]);
      } else {
        if (n.a >= 0) n.a = map[n.a];
        if (n.b >= 0) n.b = map[n.b];
        if (n.c >= 0) n.c = map[n.c];
      }
      map[k] = b.add(n.code, n.dtype, n.a, n.b, n.c);
    }
    return map.back();
  }
  return b.add(Code::Load, a.dtype(), b.leaf_index(a));
}

int32_t cast_node(Builder& b, int32_t node, DType to) {
  if (b.prog.nodes[node].dtype == to) return node;
  return b.add(Code::Cast, to, node);
}

// Builds an elementwise array of `code` over `inputs` (already of the node dtypes).
Array elementwise(Code code, DType out_dtype, DType compute_dtype, std::vector<Array> inputs) {
  Shape shape;
  for (const Array& a : inputs) {
    try {
      shape = broadcast_shapes(shape, a.shape());
    } catch (const ValueError&) {
      std::vector<std::string> shapes;
      for (const Array& x : inputs) shapes.push_back(shape_str(x.shape()));
      throw ValueError(fmt::format("operands could not be broadcast together with shapes {} ({})",
                                   fmt::join(shapes, " "), op_name(code)));
    }
  }
  const Chunks chunks = unify(inputs, shape);
  Builder b;
  std::vector<int32_t> nodes;
  for (const Array& a : inputs) nodes.push_back(input_node(b, a, chunks));
  if (code == Code::Where) {
    nodes[0] = cast_node(b, nodes[0], DType::Bool);
    nodes[1] = cast_node(b, nodes[1], compute_dtype);
    nodes[2] = cast_node(b, nodes[2], compute_dtype);
    b.add(code, out_dtype, nodes[0], nodes[1], nodes[2]);
  } else if (code == Code::Cast) {
    b.add(Code::Cast, out_dtype, nodes[0]);
  } else {
    for (auto& n : nodes) n = cast_node(b, n, compute_dtype);
    b.add(code, out_dtype, nodes[0], nodes.size() > 1 ? nodes[1] : -1);
  }
  return make_elementwise(op_name(code), out_dtype, shape, chunks, std::move(b.prog),
                          std::move(b.leaves), std::move(b.literals));
}

void check_not_bool(Code code, const Array& a, const Array& b, DType t) {
  if (t != DType::Bool) return;
  if (code == Code::Sub) {
    throw TypeError(
        "numpy boolean subtract, the `-` operator, is not supported, use the bitwise_xor, "
        "the `^` operator, or the logical_xor function instead");
  }
}

Array binary_op(Code code, const Array& a, const Array& b) {
  DType t = promote(a, b);
  check_not_bool(code, a, b, t);
  switch (code) {
    case Code::Div:
      return elementwise(code, float_result(t), float_result(t), {a, b});
    case Code::Pow:
      if (t == DType::Bool) t = DType::Int64;
      return elementwise(code, t, t, {a, b});
    case Code::Eq:
    case Code::Ne:
    case Code::Lt:
    case Code::Le:
    case Code::Gt:
    case Code::Ge:
      return elementwise(code, DType::Bool, t, {a, b});
    case Code::And:
    case Code::Or:
    case Code::Xor:
      if (is_floating(t)) {
        throw TypeError(
            fmt::format("{} is not supported for {} and {} (integer or bool operands only)",
                        op_name(code), dtype_name(a.dtype()), dtype_name(b.dtype())));
      }
      return elementwise(code, t, t, {a, b});
    default:
      return elementwise(code, t, t, {a, b});
  }
}

Array float_op(Code code, const Array& a) {
  const DType t = float_result(a.dtype());
  return elementwise(code, t, t, {a});
}

Array scalar_array(NDArray v) {
  auto d = std::make_shared<ArrayData>();
  d->label = "scalar";
  d->dtype = v.dtype();
  d->name = make_name("scalar", std::vector<Value>{Value::of(v)});
  d->weak = true;
  Graph g;
  g.add(Key(d->name, std::span<const int64_t>()), Task::literal(Value::of(v)));
  d->hlg =
      std::make_shared<HighLevelGraph>(std::make_shared<MaterializedLayer>(d->name, std::move(g)));
  d->literal = std::move(v);
  return Array(std::move(d));
}

}  // namespace

// The output chunks along each axis: those of an input that spans it (not broadcast);
// inputs with other chunks are rechunked to them.
Chunks unify(std::vector<Array>& inputs, const Shape& out_shape) {
  const size_t nd = out_shape.size();
  Chunks out(nd);
  for (size_t k = 0; k < nd; ++k) {
    for (const Array& a : inputs) {
      const size_t lead = nd - static_cast<size_t>(a.ndim());
      if (k < lead || a.data().literal) continue;
      if (a.shape()[k - lead] == out_shape[k] && (out_shape[k] != 1 || out[k].empty())) {
        if (out[k].empty() || a.chunks()[k - lead].size() > out[k].size())
          out[k] = a.chunks()[k - lead];
      }
    }
    if (out[k].empty()) out[k] = {out_shape[k]};
  }
  for (Array& a : inputs) {
    if (a.data().literal) continue;
    const size_t lead = nd - static_cast<size_t>(a.ndim());
    Chunks want(a.chunks());
    bool differs = false;
    for (size_t k = 0; k < want.size(); ++k) {
      if (a.shape()[k] == out_shape[lead + k] && a.chunks()[k] != out[lead + k]) {
        want[k] = out[lead + k];
        differs = true;
      }
    }
    if (differs) a = a.rechunk(want);
  }
  return out;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t k = 0; k < n; ++k) {
    const int64_t x = k < n - a.size() ? 1 : a[k - (n - a.size())];
    const int64_t y = k < n - b.size() ? 1 : b[k - (n - b.size())];
    if (x < 0 || y < 0) {  // unknown extents (after boolean-mask indexing)
      if ((x < 0 && y < 0) || x == 1 || y == 1) {
        out[k] = -1;
        continue;
      }
      throw ValueError(fmt::format(
          "shapes {} and {} may not broadcast: chunk sizes are unknown (after boolean-mask "
          "indexing); call compute_chunk_sizes() first",
          shape_str(a), shape_str(b)));
    }
    if (x != y && x != 1 && y != 1) {
      throw ValueError(
          fmt::format("shapes {} and {} do not broadcast", shape_str(a), shape_str(b)));
    }
    out[k] = x == 1 ? y : x;
  }
  return out;
}

std::vector<int64_t> Program::encode() const {
  std::vector<int64_t> out;
  out.reserve(nodes.size() * 5);
  for (const Node& n : nodes) {
    out.insert(out.end(),
               {static_cast<int64_t>(n.code), static_cast<int64_t>(n.dtype), n.a, n.b, n.c});
  }
  return out;
}

Program Program::decode(const std::vector<int64_t>& code) {
  if (code.empty() || code.size() % 5 != 0)
    throw ValueError("array.elementwise: malformed program");
  Program p;
  for (size_t i = 0; i < code.size(); i += 5) {
    const auto k = static_cast<int32_t>(p.nodes.size());
    Node n{static_cast<Code>(code[i]), static_cast<DType>(code[i + 1]),
           static_cast<int32_t>(code[i + 2]), static_cast<int32_t>(code[i + 3]),
           static_cast<int32_t>(code[i + 4])};
    if (code[i] < 0 || code[i] > static_cast<int64_t>(Code::Where) || code[i + 1] < 0 ||
        code[i + 1] > static_cast<int64_t>(DType::Float64) ||
        (n.code != Code::Load && (n.a >= k || n.b >= k || n.c >= k || n.a < 0))) {
      throw ValueError("array.elementwise: malformed program");
    }
    p.nodes.push_back(n);
  }
  return p;
}

Array make_elementwise(std::string label, DType dtype, Shape shape, Chunks chunks, Program prog,
                       std::vector<Array> leaves, std::vector<NDArray> literals) {
  // Literal leaves follow the array leaves in the task's arguments.
  const auto narrays = static_cast<int32_t>(leaves.size());
  for (Node& n : prog.nodes) {
    if (n.code == Code::Load && n.a >= Builder::kLiteralBase)
      n.a = narrays + (n.a - Builder::kLiteralBase);
  }
  std::vector<Value> token{Value::of(prog.encode())};
  for (const Array& a : leaves) token.push_back(token_of(a));
  for (const NDArray& l : literals) token.push_back(Value::of(l));
  std::string name = make_name(label, token);
  const Value program = Value::of(prog.encode());
  std::vector<Value> lits;
  for (const NDArray& l : literals) lits.push_back(Value::of(l));
  const AlignedInputs inputs(leaves, chunks);
  auto layer = std::make_shared<BlockLayer>(
      name, "elementwise", numblocks_of(chunks), inputs.names(),
      [inputs, program, lits](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<Arg> args;
        args.reserve(1 + inputs.names().size() + lits.size());
        args.emplace_back(program);
        inputs.append_refs(c, args, external);
        for (const Value& v : lits) args.emplace_back(v);
        return Task::call(get_op("array.elementwise"), std::move(args));
      });
  auto expr = std::make_shared<Expr>();
  expr->prog = prog;
  expr->leaves = leaves;
  expr->literals = literals;
  // The expression refers to literal leaves by kLiteralBase + i again.
  for (Node& n : expr->prog.nodes) {
    if (n.code == Code::Load && n.a >= narrays) n.a = Builder::kLiteralBase + (n.a - narrays);
  }
  return make_array(std::move(name), std::move(label), dtype, std::move(shape), std::move(chunks),
                    std::move(layer), leaves, std::move(expr));
}

Array scalar(double v) {
  return scalar_array(NDArray::scalar(v));
}
Array scalar(int64_t v) {
  return scalar_array(NDArray::scalar(v));
}
Array scalar(int v) {
  return scalar(static_cast<int64_t>(v));
}
Array scalar(bool v) {
  NDArray a = NDArray::empty(DType::Bool, {});
  *a.mutable_data<bool>() = v;
  return scalar_array(std::move(a));
}

Array operator+(const Array& a, const Array& b) {
  return binary_op(Code::Add, a, b);
}
Array operator-(const Array& a, const Array& b) {
  return binary_op(Code::Sub, a, b);
}
Array operator*(const Array& a, const Array& b) {
  return binary_op(Code::Mul, a, b);
}
Array operator/(const Array& a, const Array& b) {
  return binary_op(Code::Div, a, b);
}
Array operator==(const Array& a, const Array& b) {
  return binary_op(Code::Eq, a, b);
}
Array operator!=(const Array& a, const Array& b) {
  return binary_op(Code::Ne, a, b);
}
Array operator<(const Array& a, const Array& b) {
  return binary_op(Code::Lt, a, b);
}
Array operator<=(const Array& a, const Array& b) {
  return binary_op(Code::Le, a, b);
}
Array operator>(const Array& a, const Array& b) {
  return binary_op(Code::Gt, a, b);
}
Array operator>=(const Array& a, const Array& b) {
  return binary_op(Code::Ge, a, b);
}
Array operator&(const Array& a, const Array& b) {
  return binary_op(Code::And, a, b);
}
Array operator|(const Array& a, const Array& b) {
  return binary_op(Code::Or, a, b);
}
Array operator^(const Array& a, const Array& b) {
  return binary_op(Code::Xor, a, b);
}
Array maximum(const Array& a, const Array& b) {
  return binary_op(Code::Max, a, b);
}
Array minimum(const Array& a, const Array& b) {
  return binary_op(Code::Min, a, b);
}
Array power(const Array& a, const Array& b) {
  return binary_op(Code::Pow, a, b);
}

Array operator-(const Array& a) {
  if (a.dtype() == DType::Bool) {
    throw TypeError(
        "The numpy boolean negative, the `-` operator, is not supported, use the `~` "
        "operator or the logical_not function instead.");
  }
  return elementwise(Code::Neg, a.dtype(), a.dtype(), {a});
}
Array operator~(const Array& a) {
  if (is_floating(a.dtype())) {
    throw TypeError(fmt::format("invert (~) is not supported for {} (integer or bool only)",
                                dtype_name(a.dtype())));
  }
  return elementwise(Code::Not, a.dtype(), a.dtype(), {a});
}

Array exp(const Array& a) {
  return float_op(Code::Exp, a);
}
Array log(const Array& a) {
  return float_op(Code::Log, a);
}
Array sqrt(const Array& a) {
  return float_op(Code::Sqrt, a);
}
Array sin(const Array& a) {
  return float_op(Code::Sin, a);
}
Array cos(const Array& a) {
  return float_op(Code::Cos, a);
}
Array tanh(const Array& a) {
  return float_op(Code::Tanh, a);
}
Array floor(const Array& a) {
  return float_op(Code::Floor, a);
}
Array ceil(const Array& a) {
  return float_op(Code::Ceil, a);
}
Array abs(const Array& a) {
  return elementwise(Code::Abs, a.dtype(), a.dtype(), {a});
}
// Bool rounds to float64 (NumPy's float16, which tessera does not have), as float functions do.
Array round(const Array& a) {
  const DType t = a.dtype() == DType::Bool ? DType::Float64 : a.dtype();
  return elementwise(Code::Round, t, t, {a});
}
Array isnan(const Array& a) {
  return elementwise(Code::IsNan, DType::Bool, a.dtype(), {a});
}

Array where(const Array& condition, const Array& a, const Array& b) {
  const DType t = promote(a, b);
  return elementwise(Code::Where, t, t, {condition, a, b});
}

Array clip(const Array& a, double lo, double hi) {
  if (lo > hi)
    throw ValueError(fmt::format("clip: lower bound {} is above upper bound {}", lo, hi));
  // Integral bounds keep an integer array's type, as NumPy's Python ints do.
  const bool ints = !is_floating(a.dtype()) && lo == std::floor(lo) && hi == std::floor(hi) &&
                    std::abs(lo) < 9e18 && std::abs(hi) < 9e18;
  const Array l = ints ? scalar(static_cast<int64_t>(lo)) : scalar(lo);
  const Array h = ints ? scalar(static_cast<int64_t>(hi)) : scalar(hi);
  return minimum(maximum(a, l), h);
}

Array astype(const Array& a, DType dtype) {
  if (a.dtype() == dtype) return a;
  return elementwise(Code::Cast, dtype, dtype, {a});
}

}  // namespace tessera::array

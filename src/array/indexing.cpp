// Indexing and shape: basic indexing (integers and slices), take/compress, reshape,
// squeeze/expand_dims, concatenate/stack and broadcast_to. Views are made per block without
// copies wherever the block allows it.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "array/array_internal.hpp"
#include "array/elementwise_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

// spec: n (input axes), then per input axis (first, count, step, keep), then the output
// positions where a length-1 axis is inserted. No element is copied.
NDArray view_block(const NDArray& a, const std::vector<int64_t>& spec) {
  if (spec.empty() || spec[0] != a.ndim() || spec.size() < 1 + 4 * static_cast<size_t>(a.ndim())) {
    throw ValueError("array.view: spec does not fit the block");
  }
  const int nd = a.ndim();
  const int64_t item = static_cast<int64_t>(dtype_size(a.dtype()));
  const auto* p = static_cast<const std::byte*>(a.raw_data());
  Shape sh;
  std::vector<int64_t> st;
  for (int k = 0; k < nd; ++k) {
    const int64_t first = spec[1 + 4 * k], count = spec[2 + 4 * k], step = spec[3 + 4 * k],
                  keep = spec[4 + 4 * k];
    const int64_t n = a.shape()[k];
    const int64_t last = first + (count - 1) * step;
    if (count < 0 || (count > 0 && (first < 0 || first >= n || last < 0 || last >= n)) ||
        (!keep && count != 1)) {
      throw IndexError(fmt::format("array.view: selection out of range for axis {} of block {}", k,
                                   shape_str(a.shape())));
    }
    if (count > 0) p += first * a.strides()[k] * item;
    if (keep) {
      sh.push_back(count);
      st.push_back(a.strides()[k] * step);
    }
  }
  for (size_t i = 1 + 4 * static_cast<size_t>(nd); i < spec.size(); ++i) {
    const auto pos = static_cast<size_t>(spec[i]);
    if (pos > sh.size()) throw ValueError("array.view: bad new axis position");
    sh.insert(sh.begin() + static_cast<int64_t>(pos), 1);
    st.insert(st.begin() + static_cast<int64_t>(pos), 0);
  }
  return NDArrayAccess::view(a, a.dtype(), std::move(sh), std::move(st), p);
}
TESSERA_REGISTER_AS("array.view", view_block, tessera::OpOptions{.cheap = true});

NDArray broadcast_block(const NDArray& a, const std::vector<int64_t>& shape) {
  return a.broadcast_to(shape);
}
TESSERA_REGISTER_AS("array.broadcast", broadcast_block, tessera::OpOptions{.cheap = true});

NDArray astype_block(const NDArray& a, const std::string& dtype) {
  return a.astype(dtype_from_name(dtype));
}
TESSERA_REGISTER_AS("array.astype", astype_block);

// Slabs gathered along `axis`: position j of the result is index picks[j].second of
// sources[picks[j].first] (the sources share every other extent).
NDArray gather_along(int axis, std::span<const NDArray> sources,
                     std::span<const std::pair<int64_t, int64_t>> picks, DType dtype,
                     Shape shape) {
  shape[axis] = static_cast<int64_t>(picks.size());
  NDArray out = NDArray::empty(dtype, shape);
  const int64_t item = static_cast<int64_t>(dtype_size(dtype));
  const int64_t outer =
      std::accumulate(shape.begin(), shape.begin() + axis, int64_t{1}, std::multiplies<>());
  const int64_t inner = item * std::accumulate(shape.begin() + axis + 1, shape.end(), int64_t{1},
                                               std::multiplies<>());
  if (outer == 0 || inner == 0) return out;
  auto* dst = static_cast<std::byte*>(out.raw_mutable_data());
  for (int64_t o = 0; o < outer; ++o) {
    for (const auto& [src, local] : picks) {
      const NDArray& b = sources[static_cast<size_t>(src)];
      const int64_t len = b.shape()[axis];
      std::memcpy(dst, static_cast<const std::byte*>(b.raw_data()) + (o * len + local) * inner,
                  static_cast<size_t>(inner));
      dst += inner;
    }
  }
  return out;
}

// The blocks of `args` from `first` on, contiguous and of `dtype`.
std::vector<NDArray> contiguous_blocks(std::span<const Value> args, size_t first, DType dtype,
                                       const char* op) {
  std::vector<NDArray> out;
  for (size_t i = first; i < args.size(); ++i) {
    NDArray b = as_ndarray(arg_at(args, i, op));
    if (b.dtype() != dtype) b = b.astype(dtype);
    out.push_back(b.contiguous());
  }
  return out;
}

// Gathers elements along `axis` from several blocks: spec = axis, then per output position
// (source list index, local index); args: spec, then the source blocks.
Value take_block(std::span<const Value> args) {
  const auto& spec = arg_at(args, 0, "array.take").get<std::vector<int64_t>>();
  if (spec.empty() || spec.size() % 2 != 1) throw ValueError("array.take: malformed spec");
  const auto axis = static_cast<int>(spec[0]);
  const NDArray& first = as_ndarray(arg_at(args, 1, "array.take"));
  if (axis < 0 || axis >= first.ndim()) throw ValueError("array.take: bad axis");
  const std::vector<NDArray> src = contiguous_blocks(args, 1, first.dtype(), "array.take");
  std::vector<std::pair<int64_t, int64_t>> picks;
  for (size_t j = 1; j + 1 < spec.size(); j += 2) {
    if (spec[j] < 0 || spec[j] >= static_cast<int64_t>(src.size()) || spec[j + 1] < 0 ||
        spec[j + 1] >= src[static_cast<size_t>(spec[j])].shape()[axis]) {
      throw ValueError("array.take: malformed spec");
    }
    picks.emplace_back(spec[j], spec[j + 1]);
  }
  return Value::of(gather_along(axis, src, picks, first.dtype(), first.shape()));
}
TESSERA_REGISTER_AS("array.take", take_block);

// Gathers along `axis` at indices read from an index block: spec = axis, then the global
// start of every source block along the axis and the axis length; args: spec, the index
// block (integers; negative ones count from the end), then every source block along the axis.
Value take_indexed_block(std::span<const Value> args) {
  const char* op = "array.take_indexed";
  const auto& spec = arg_at(args, 0, op).get<std::vector<int64_t>>();
  const size_t nsrc = args.size() < 3 ? 0 : args.size() - 2;
  if (spec.size() != nsrc + 2 || nsrc == 0) throw ValueError("array.take_indexed: malformed spec");
  const auto axis = static_cast<int>(spec[0]);
  const std::span<const int64_t> starts(spec.data() + 1, nsrc);
  const int64_t n = spec.back();
  const NDArray idx = as_ndarray(arg_at(args, 1, op)).astype(DType::Int64).contiguous();
  const NDArray& first = as_ndarray(arg_at(args, 2, op));
  if (idx.ndim() != 1 || axis < 0 || axis >= first.ndim())
    throw ValueError("array.take_indexed: malformed arguments");
  const std::vector<NDArray> src = contiguous_blocks(args, 2, first.dtype(), op);
  std::vector<std::pair<int64_t, int64_t>> picks;
  picks.reserve(static_cast<size_t>(idx.size()));
  const int64_t* p = idx.data<int64_t>();
  for (int64_t j = 0; j < idx.size(); ++j) {
    int64_t i = p[j];
    if (i < -n || i >= n) {
      throw IndexError(fmt::format("index {} is out of bounds for axis {} with size {}", i, axis, n));
    }
    if (i < 0) i += n;
    const auto b = static_cast<int64_t>(std::upper_bound(starts.begin(), starts.end(), i) -
                                        starts.begin()) - 1;
    picks.emplace_back(b, i - starts[static_cast<size_t>(b)]);
  }
  return Value::of(gather_along(axis, src, picks, first.dtype(), first.shape()));
}
TESSERA_REGISTER_AS("array.take_indexed", take_indexed_block);

// Rows [r0, r1) of the flattened input, reshaped: spec = dtype, first row of the first
// block, row length (elements), flat start, flat count, then the output block shape.
Value reshape_block(std::span<const Value> args) {
  const auto& spec = arg_at(args, 0, "array.reshape").get<std::vector<int64_t>>();
  if (spec.size() < 5) throw ValueError("array.reshape: malformed spec");
  const auto dtype = static_cast<DType>(spec[0]);
  const int64_t row0 = spec[1], rowlen = spec[2], start = spec[3], count = spec[4];
  Shape shape(spec.begin() + 5, spec.end());
  NDArray out = NDArray::empty(dtype, shape);
  const int64_t item = static_cast<int64_t>(dtype_size(dtype));
  int64_t row = row0;  // global row at the start of the current block
  int64_t done = 0;
  for (size_t i = 1; i < args.size() && done < count; ++i) {
    const NDArray b = as_ndarray(args[i]).contiguous();
    const int64_t rows = b.shape().empty() ? 1 : b.shape()[0];
    const int64_t lo = std::max(start + done, row * rowlen);
    const int64_t hi = std::min(start + count, (row + rows) * rowlen);
    if (hi > lo) {
      std::memcpy(static_cast<std::byte*>(out.raw_mutable_data()) + (lo - start) * item,
                  static_cast<const std::byte*>(b.raw_data()) + (lo - row * rowlen) * item,
                  static_cast<size_t>((hi - lo) * item));
      done = hi - start;
    }
    row += rows;
  }
  if (done != count) throw ValueError("array.reshape: blocks do not cover the range");
  return Value::of(std::move(out));
}
TESSERA_REGISTER_AS("array.reshape", reshape_block);

struct AxisPiece {
  int64_t block, first, count, step;
};

// Python's slice.indices(n): normalized start, step and the number of elements.
void normalize_slice(const Slice& s, int64_t n, int axis, int64_t& start, int64_t& step,
                     int64_t& count) {
  step = s.step.value_or(1);
  if (step == 0) throw ValueError(fmt::format("slice step cannot be zero (axis {})", axis));
  int64_t stop;
  if (step > 0) {
    start =
        s.start ? (*s.start < 0 ? std::max<int64_t>(0, *s.start + n) : std::min(*s.start, n)) : 0;
    stop = s.stop ? (*s.stop < 0 ? std::max<int64_t>(0, *s.stop + n) : std::min(*s.stop, n)) : n;
    count = stop > start ? (stop - start + step - 1) / step : 0;
  } else {
    start = s.start
                ? (*s.start < 0 ? std::max<int64_t>(-1, *s.start + n) : std::min(*s.start, n - 1))
                : n - 1;
    stop =
        s.stop ? (*s.stop < 0 ? std::max<int64_t>(-1, *s.stop + n) : std::min(*s.stop, n - 1)) : -1;
    count = start > stop ? (start - stop + (-step) - 1) / (-step) : 0;
  }
}

// The output blocks of selecting start + j*step (j < count) along an axis cut by `chunks`.
std::vector<AxisPiece> select_axis(const std::vector<int64_t>& chunks, int64_t start, int64_t step,
                                   int64_t count) {
  std::vector<int64_t> off{0};
  for (int64_t c : chunks) off.push_back(off.back() + c);
  std::vector<AxisPiece> out;
  int64_t j = 0;
  while (j < count) {
    const int64_t g = start + j * step;
    const auto b =
        static_cast<int64_t>(std::upper_bound(off.begin(), off.end(), g) - off.begin()) - 1;
    // How many further selected elements stay in block b.
    int64_t n;
    if (step > 0) {
      n = (off[b + 1] - 1 - g) / step + 1;
    } else {
      n = (g - off[b]) / (-step) + 1;
    }
    n = std::min(n, count - j);
    out.push_back({b, g - off[b], n, step});
    j += n;
  }
  if (out.empty()) out.push_back({0, 0, 0, 1});
  return out;
}

Array view_array(const Array& a, const std::string& label,
                 const std::vector<std::vector<AxisPiece>>& pieces, const std::vector<bool>& keep,
                 const std::vector<int64_t>& inserts, const Shape& shape, Chunks chunks,
                 const std::vector<Value>& token_parts) {
  std::vector<Value> token{token_of(a)};
  token.insert(token.end(), token_parts.begin(), token_parts.end());
  std::string name = make_name(label, token);
  const std::string in = a.name();
  const int nd = a.ndim();
  // Output block coordinates -> per input axis piece index.
  std::vector<int> out_axis_of(static_cast<size_t>(nd), -1);
  {
    int o = 0;
    for (int k = 0; k < nd; ++k) {
      while (std::find(inserts.begin(), inserts.end(), o) != inserts.end()) ++o;
      if (keep[k]) out_axis_of[k] = o++;
    }
  }
  auto layer = std::make_shared<BlockLayer>(
      name, label, numblocks_of(chunks), std::vector<std::string>{in},
      [in, pieces, keep, inserts, out_axis_of, nd](std::span<const int64_t> c,
                                                   std::vector<Key>& external) {
        std::vector<int64_t> src(static_cast<size_t>(nd));
        std::vector<int64_t> spec{nd};
        for (int k = 0; k < nd; ++k) {
          const AxisPiece& p = pieces[k][keep[k] ? c[out_axis_of[k]] : 0];
          src[k] = p.block;
          spec.insert(spec.end(), {p.first, p.count, p.step, keep[k] ? 1 : 0});
        }
        spec.insert(spec.end(), inserts.begin(), inserts.end());
        Key k(in, src);
        external.push_back(k);
        return Task::call(get_op("array.view"),
                          {Arg::ref(std::move(k)), Arg(Value::of(std::move(spec)))});
      });
  return make_array(std::move(name), label, a.dtype(), shape, std::move(chunks), std::move(layer),
                    std::span<const Array>(&a, 1));
}

// The elements of `a` along `axis` where `mask` (1-D bool) is true.
NDArray compress_block(const NDArray& a, const NDArray& mask, int64_t axis) {
  if (axis < 0 || axis >= a.ndim() || mask.ndim() != 1 || mask.shape()[0] != a.shape()[axis]) {
    throw ValueError("array.compress: the mask does not fit the block");
  }
  const NDArray m = mask.astype(DType::Bool);
  const bool* p = m.data<bool>();
  const auto n = static_cast<int64_t>(std::count(p, p + m.size(), true));
  Shape shape = a.shape();
  shape[axis] = n;
  NDArray out = NDArray::empty(a.dtype(), shape);
  const std::vector<int64_t> zero(static_cast<size_t>(a.ndim()), 0);
  std::vector<int64_t> at(static_cast<size_t>(a.ndim()), 0);
  const auto ax = static_cast<int>(axis);
  int64_t j = 0;
  for (int64_t i = 0; i < m.size(); ++i) {
    if (!p[i]) continue;
    const NDArray piece = a.slice(ax, i, i + 1).contiguous();
    const int64_t outer =
        std::accumulate(shape.begin(), shape.begin() + ax, int64_t{1}, std::multiplies<>());
    const int64_t inner =
        std::accumulate(shape.begin() + ax + 1, shape.end(), int64_t{1}, std::multiplies<>());
    const auto item = static_cast<int64_t>(dtype_size(a.dtype()));
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(static_cast<std::byte*>(out.raw_mutable_data()) + ((o * n + j) * inner) * item,
                  static_cast<const std::byte*>(piece.raw_data()) + o * inner * item,
                  static_cast<size_t>(inner * item));
    }
    ++j;
  }
  return out;
}
TESSERA_REGISTER_AS("array.compress", compress_block);

}  // namespace

Array compress(const Array& condition, const Array& a, int axis) {
  const int ax = normalize_axis(axis, a.ndim());
  if (condition.ndim() != 1) {
    throw ValueError(fmt::format("compress: the condition must be 1-D, not shape {}",
                                 shape_str(condition.shape())));
  }
  if (condition.dtype() != DType::Bool) {
    throw TypeError(
        fmt::format("compress: the condition must be bool, not {}", dtype_name(condition.dtype())));
  }
  require_known_chunks(condition, "compress");
  if (a.shape()[ax] < 0) require_known_chunks(a, "compress");
  if (condition.shape()[0] != a.shape()[ax]) {
    throw ValueError(
        fmt::format("boolean index of length {} does not match axis {} of length {} (shape {})",
                    condition.shape()[0], ax, a.shape()[ax], shape_str(a.shape())));
  }
  const Array cond = condition.chunks()[0] == a.chunks()[ax]
                         ? condition
                         : condition.rechunk(Chunks{a.chunks()[ax]});
  Chunks chunks = a.chunks();
  for (int64_t& c : chunks[ax]) c = -1;
  Shape shape = a.shape();
  shape[ax] = -1;
  std::string name = make_name("getitem", std::vector<Value>{token_of(a), token_of(cond),
                                                             Value::of(static_cast<int64_t>(ax))});
  const std::string in = a.name(), cn = cond.name();
  auto layer = std::make_shared<BlockLayer>(
      name, "compress", a.numblocks(), std::vector<std::string>{in, cn},
      [in, cn, ax](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k(in, c), m(cn, {c[ax]});
        external.push_back(k);
        external.push_back(m);
        return Task::call(get_op("array.compress"), {Arg::ref(std::move(k)), Arg::ref(std::move(m)),
                                                     Arg(Value::of(static_cast<int64_t>(ax)))});
      });
  const Array inputs[] = {a, cond};
  return make_array(std::move(name), "getitem", a.dtype(), std::move(shape), std::move(chunks),
                    std::move(layer), inputs);
}

Array Array::operator[](const Array& mask) const {
  if (mask.dtype() != DType::Bool) {
    if (ndim() == 0) throw IndexError("too many indices for array: array is 0-dimensional");
    return take(*this, mask, 0);
  }
  if (mask.ndim() == 1 && ndim() >= 1 && mask.shape()[0] >= 0 && shape()[0] >= 0 &&
      mask.shape()[0] != shape()[0]) {
    throw IndexError(fmt::format(
        "boolean index did not match indexed array along dimension 0; dimension is {} but "
        "corresponding boolean dimension is {}",
        shape()[0], mask.shape()[0]));
  }
  if (mask.ndim() == 1 && (ndim() != 1 || mask.shape() == shape())) return compress(mask, *this, 0);
  if (mask.shape() == shape()) return compress(mask.ravel(), ravel(), 0);
  throw IndexError(fmt::format(
      "boolean index of shape {} does not match the array's shape {} (or its first axis)",
      shape_str(mask.shape()), shape_str(shape())));
}

Array Array::operator[](std::initializer_list<Index> index) const {
  return getitem(std::span<const Index>(index.begin(), index.size()));
}

Array Array::getitem(std::span<const Index> index) const {
  require_known_chunks(*this, "indexing");
  const int nd = ndim();
  if (static_cast<int>(index.size()) > nd) {
    throw IndexError(
        fmt::format("too many indices for array: array is {}-dimensional, but {} were indexed", nd,
                    index.size()));
  }
  std::vector<std::vector<AxisPiece>> pieces(static_cast<size_t>(nd));
  std::vector<bool> keep(static_cast<size_t>(nd), true);
  Shape shape;
  Chunks chunks;
  std::vector<int64_t> token;
  for (int k = 0; k < nd; ++k) {
    const int64_t n = this->shape()[k];
    if (k < static_cast<int>(index.size()) && index[k].is_integer()) {
      int64_t i = index[k].integer();
      if (i < -n || i >= n) {
        throw IndexError(
            fmt::format("index {} is out of bounds for axis {} with size {}", i, k, n));
      }
      if (i < 0) i += n;
      pieces[k] = select_axis(this->chunks()[k], i, 1, 1);
      keep[k] = false;
      token.insert(token.end(), {0, i});
      continue;
    }
    const Slice s = k < static_cast<int>(index.size()) ? index[k].slice() : Slice{};
    int64_t start, step, count;
    normalize_slice(s, n, k, start, step, count);
    pieces[k] = select_axis(this->chunks()[k], start, step, count);
    shape.push_back(count);
    std::vector<int64_t> ch;
    for (const AxisPiece& p : pieces[k]) ch.push_back(p.count);
    chunks.push_back(std::move(ch));
    token.insert(token.end(), {1, start, step, count});
  }
  bool identity = true;
  for (int k = 0; k < nd; ++k)
    identity = identity && keep[k] && shape[k] == this->shape()[k] && pieces[k][0].step == 1;
  if (identity) return *this;
  return view_array(*this, "getitem", pieces, keep, {}, shape, std::move(chunks),
                    {Value::of(token)});
}

Array squeeze(const Array& a, Axes axis) {
  std::vector<int> axes;
  if (axis.all()) {
    for (int k = 0; k < a.ndim(); ++k) {
      if (a.shape()[k] == 1) axes.push_back(k);
    }
  } else {
    axes = axis.resolve(a.ndim());
    for (int k : axes) {
      if (a.shape()[k] != 1) {
        throw ValueError(
            fmt::format("cannot select an axis to squeeze out which has size not equal to one "
                        "(axis {} of shape {})",
                        k, shape_str(a.shape())));
      }
    }
  }
  if (axes.empty()) return a;
  std::vector<Index> idx;
  for (int k = 0; k < a.ndim(); ++k) {
    if (std::find(axes.begin(), axes.end(), k) != axes.end()) {
      idx.emplace_back(int64_t{0});
    } else {
      idx.emplace_back(Slice{});
    }
  }
  return a.getitem(idx);
}

Array expand_dims(const Array& a, int axis) {
  const int nd = a.ndim() + 1;
  const int ax = normalize_axis(axis, nd);
  std::vector<std::vector<AxisPiece>> pieces;
  Shape shape;
  Chunks chunks;
  for (int k = 0; k < a.ndim(); ++k) {
    std::vector<AxisPiece> p;
    for (size_t b = 0; b < a.chunks()[k].size(); ++b)
      p.push_back({static_cast<int64_t>(b), 0, a.chunks()[k][b], 1});
    pieces.push_back(std::move(p));
  }
  shape = a.shape();
  chunks = a.chunks();
  shape.insert(shape.begin() + ax, 1);
  chunks.insert(chunks.begin() + ax, std::vector<int64_t>{1});
  return view_array(a, "expand_dims", pieces,
                    std::vector<bool>(static_cast<size_t>(a.ndim()), true), {ax}, shape,
                    std::move(chunks), {Value::of(static_cast<int64_t>(ax))});
}

Array broadcast_to(const Array& a, const Shape& shape) {
  require_known_chunks(a, "broadcast_to");
  if (shape.size() < static_cast<size_t>(a.ndim())) {
    throw ValueError(
        fmt::format("cannot broadcast shape {} to {}", shape_str(a.shape()), shape_str(shape)));
  }
  const size_t lead = shape.size() - static_cast<size_t>(a.ndim());
  Chunks chunks;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] < 0)
      throw ValueError(
          fmt::format("negative dimensions are not allowed: shape {}", shape_str(shape)));
    if (k < lead) {
      chunks.push_back({shape[k]});
      continue;
    }
    const int64_t have = a.shape()[k - lead];
    if (have == shape[k]) {
      chunks.push_back(a.chunks()[k - lead]);
    } else if (have == 1) {
      chunks.push_back({shape[k]});
    } else {
      throw ValueError(
          fmt::format("cannot broadcast shape {} to {}", shape_str(a.shape()), shape_str(shape)));
    }
  }
  if (shape == a.shape()) return a;
  std::string name = make_name("broadcast_to", std::vector<Value>{token_of(a), Value::of(shape)});
  const std::string in = a.name();
  const Chunks ch = chunks;
  const int nd_in = a.ndim();
  const Shape in_shape = a.shape();
  auto layer = std::make_shared<BlockLayer>(
      name, "broadcast_to", numblocks_of(chunks), std::vector<std::string>{in},
      [in, ch, lead, nd_in, in_shape](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> src(static_cast<size_t>(nd_in));
        for (int k = 0; k < nd_in; ++k) src[k] = in_shape[k] == 1 ? 0 : c[lead + k];
        Key k(in, src);
        external.push_back(k);
        return Task::call(get_op("array.broadcast"),
                          {Arg::ref(std::move(k)), Arg(Value::of(block_shape(ch, c)))});
      });
  return make_array(std::move(name), "broadcast_to", a.dtype(), shape, std::move(chunks),
                    std::move(layer), std::span<const Array>(&a, 1));
}

Array take(const Array& a, const std::vector<int64_t>& indices, int axis) {
  require_known_chunks(a, "take");
  const int ax = normalize_axis(axis, a.ndim());
  const int64_t n = a.shape()[ax];
  std::vector<int64_t> idx(indices);
  for (int64_t& i : idx) {
    if (i < -n || i >= n) {
      throw IndexError(fmt::format("index {} is out of bounds for axis {} with size {}", i, ax, n));
    }
    if (i < 0) i += n;
  }
  const auto& in_chunks = a.chunks()[ax];
  std::vector<int64_t> off{0};
  for (int64_t c : in_chunks) off.push_back(off.back() + c);
  // Output blocks along the axis: as large as the input's largest block.
  const int64_t width = std::max<int64_t>(1, *std::max_element(in_chunks.begin(), in_chunks.end()));
  std::vector<int64_t> out_chunks = regular_chunks(static_cast<int64_t>(idx.size()), width);
  Chunks chunks = a.chunks();
  chunks[ax] = out_chunks;
  Shape shape = a.shape();
  shape[ax] = static_cast<int64_t>(idx.size());
  if (idx.empty()) return zeros(shape, chunks, a.dtype());
  std::string name = make_name(
      "take", std::vector<Value>{token_of(a), Value::of(idx), Value::of(static_cast<int64_t>(ax))});
  const std::string in = a.name();
  std::vector<int64_t> starts{0};
  for (int64_t c : out_chunks) starts.push_back(starts.back() + c);
  auto layer = std::make_shared<BlockLayer>(
      name, "take", numblocks_of(chunks), std::vector<std::string>{in},
      [in, idx, off, starts, ax](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> spec{ax};
        std::vector<int64_t> blocks;  // distinct source blocks, in first-use order
        for (int64_t j = starts[c[ax]]; j < starts[c[ax] + 1]; ++j) {
          const auto b =
              static_cast<int64_t>(std::upper_bound(off.begin(), off.end(), idx[j]) - off.begin()) -
              1;
          auto it = std::find(blocks.begin(), blocks.end(), b);
          if (it == blocks.end()) {
            blocks.push_back(b);
            it = blocks.end() - 1;
          }
          spec.insert(spec.end(), {static_cast<int64_t>(it - blocks.begin()), idx[j] - off[b]});
        }
        std::vector<Arg> args{Arg(Value::of(std::move(spec)))};
        std::vector<int64_t> src(c.begin(), c.end());
        for (int64_t b : blocks) {
          src[ax] = b;
          Key k(in, src);
          external.push_back(k);
          args.push_back(Arg::ref(std::move(k)));
        }
        return Task::call(get_op("array.take"), std::move(args));
      });
  return make_array(std::move(name), "take", a.dtype(), std::move(shape), std::move(chunks),
                    std::move(layer), std::span<const Array>(&a, 1));
}

Array take(const Array& a, const Array& indices, int axis) {
  const int ax = normalize_axis(axis, a.ndim());
  if (indices.dtype() != DType::Int64 && indices.dtype() != DType::Int32) {
    throw TypeError(fmt::format("take: indices must be integers, not {}{}",
                                dtype_name(indices.dtype()),
                                indices.dtype() == DType::Bool ? " (use compress for a mask)" : ""));
  }
  if (indices.ndim() == 0) return squeeze(take(a, indices.reshape({1}), ax), ax);
  if (indices.ndim() != 1) {
    throw IndexError(fmt::format(
        "take: indices must be 0-D or 1-D, not of shape {} (an integer array indexes one axis)",
        shape_str(indices.shape())));
  }
  require_known_chunks(a, "take");
  const auto& in_chunks = a.chunks()[ax];
  std::vector<int64_t> spec{ax};
  {
    int64_t s = 0;
    for (int64_t c : in_chunks) spec.push_back(s), s += c;
    spec.push_back(s);
  }
  Chunks chunks = a.chunks();
  chunks[ax] = indices.chunks()[0];
  Shape shape = a.shape();
  shape[ax] = indices.shape()[0];
  std::string name = make_name("take", std::vector<Value>{token_of(a), token_of(indices),
                                                          Value::of(static_cast<int64_t>(ax))});
  const std::string in = a.name(), ix = indices.name();
  const auto nin = static_cast<int64_t>(in_chunks.size());
  auto layer = std::make_shared<BlockLayer>(
      name, "take", numblocks_of(chunks), std::vector<std::string>{in, ix},
      [in, ix, ax, nin, spec](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k(ix, {c[ax]});
        external.push_back(k);
        std::vector<Arg> args{Arg(Value::of(spec)), Arg::ref(std::move(k))};
        std::vector<int64_t> src(c.begin(), c.end());
        for (int64_t b = 0; b < nin; ++b) {
          src[ax] = b;
          Key s(in, src);
          external.push_back(s);
          args.push_back(Arg::ref(std::move(s)));
        }
        return Task::call(get_op("array.take_indexed"), std::move(args));
      });
  const Array inputs[] = {a, indices};
  return make_array(std::move(name), "take", a.dtype(), std::move(shape), std::move(chunks),
                    std::move(layer), inputs);
}

Array compress(const std::vector<bool>& condition, const Array& a, int axis) {
  const int ax = normalize_axis(axis, a.ndim());
  if (static_cast<int64_t>(condition.size()) != a.shape()[ax]) {
    throw ValueError(
        fmt::format("boolean index of length {} does not match axis {} of length {} (shape {})",
                    condition.size(), ax, a.shape()[ax], shape_str(a.shape())));
  }
  std::vector<int64_t> idx;
  for (size_t i = 0; i < condition.size(); ++i) {
    if (condition[i]) idx.push_back(static_cast<int64_t>(i));
  }
  return take(a, idx, ax);
}

Array reshape(const Array& a, Shape shape) {
  require_known_chunks(a, "reshape");
  int64_t known = 1;
  int unknown = -1;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == -1 && unknown < 0) {
      unknown = static_cast<int>(k);
    } else if (shape[k] < 0) {
      throw ValueError(
          fmt::format("can only specify one unknown dimension, and no other negative one: {}",
                      shape_str(shape)));
    } else {
      known *= shape[k];
    }
  }
  if (unknown >= 0 && known > 0 && a.size() % known == 0) shape[unknown] = a.size() / known;
  int64_t total = 1;
  for (int64_t s : shape) total *= s;
  if (total != a.size() || (unknown >= 0 && shape[unknown] < 0)) {
    throw ValueError(
        fmt::format("cannot reshape array of size {} into shape {}", a.size(), shape_str(shape)));
  }
  if (shape == a.shape()) return a;
  if (a.size() == 0) return zeros(shape, -1, a.dtype());
  const int64_t item = static_cast<int64_t>(dtype_size(a.dtype()));
  // Input as rows: axis 0 cut, the other axes whole (a 0-d input is one row of one).
  const int64_t in_rows = a.ndim() == 0 ? 1 : a.shape()[0];
  const int64_t in_rowlen = a.ndim() == 0 ? 1 : a.size() / in_rows;
  Array src = a;
  if (a.ndim() > 0) {
    Chunks want = a.chunks();
    bool differs = false;
    for (int k = 1; k < a.ndim(); ++k) {
      if (want[k].size() != 1) {
        want[k] = {a.shape()[k]};
        differs = true;
      }
    }
    if (differs) {
      const int64_t rows =
          std::max<int64_t>(1, chunk_size_limit() / std::max<int64_t>(1, in_rowlen * item));
      want[0] = regular_chunks(in_rows, std::min(rows, in_rows));
      src = a.rechunk(want);
    }
  }
  const std::vector<int64_t> in_chunks =
      src.ndim() == 0 ? std::vector<int64_t>{1} : src.chunks()[0];
  std::vector<int64_t> in_off{0};
  for (int64_t c : in_chunks) in_off.push_back(in_off.back() + c);
  // Output as rows too, each block about the input's block size.
  const int64_t out_rows = shape.empty() ? 1 : shape[0];
  const int64_t out_rowlen = shape.empty() ? 1 : total / out_rows;
  const int64_t in_block_elems =
      std::max<int64_t>(1, *std::max_element(in_chunks.begin(), in_chunks.end()) * in_rowlen);
  const int64_t rows_per_block = std::max<int64_t>(1, in_block_elems / out_rowlen);
  Chunks chunks;
  if (!shape.empty()) {
    chunks.push_back(regular_chunks(out_rows, std::min(rows_per_block, out_rows)));
    for (size_t k = 1; k < shape.size(); ++k) chunks.push_back({shape[k]});
  }
  std::string name = make_name("reshape", std::vector<Value>{token_of(src), Value::of(shape)});
  const std::string in = src.name();
  const int in_nd = src.ndim();
  const auto dt = static_cast<int64_t>(a.dtype());
  const std::vector<int64_t> out_chunks0 = shape.empty() ? std::vector<int64_t>{1} : chunks[0];
  std::vector<int64_t> out_off{0};
  for (int64_t c : out_chunks0) out_off.push_back(out_off.back() + c);
  const Shape out_shape = shape;
  auto layer = std::make_shared<BlockLayer>(
      name, "reshape", numblocks_of(chunks), std::vector<std::string>{in},
      [=](std::span<const int64_t> c, std::vector<Key>& external) {
        const int64_t b = c.empty() ? 0 : c[0];
        const int64_t start = out_off[b] * out_rowlen,
                      count = (out_off[b + 1] - out_off[b]) * out_rowlen;
        const int64_t r0 = start / in_rowlen, r1 = (start + count + in_rowlen - 1) / in_rowlen;
        const auto first = static_cast<int64_t>(std::upper_bound(in_off.begin(), in_off.end(), r0) -
                                                in_off.begin()) -
                           1;
        std::vector<int64_t> spec{dt, in_off[first], in_rowlen, start, count};
        Shape bs = out_shape;
        if (!bs.empty()) bs[0] = out_off[b + 1] - out_off[b];
        spec.insert(spec.end(), bs.begin(), bs.end());
        std::vector<Arg> args{Arg(Value::of(std::move(spec)))};
        for (int64_t i = first; i + 1 < static_cast<int64_t>(in_off.size()) && in_off[i] < r1;
             ++i) {
          std::vector<int64_t> src_idx(static_cast<size_t>(in_nd), 0);
          if (in_nd > 0) src_idx[0] = i;
          Key k(in, src_idx);
          external.push_back(k);
          args.push_back(Arg::ref(std::move(k)));
        }
        return Task::call(get_op("array.reshape"), std::move(args));
      });
  return make_array(std::move(name), "reshape", a.dtype(), std::move(shape), std::move(chunks),
                    std::move(layer), std::span<const Array>(&src, 1));
}

Array ravel(const Array& a) {
  return reshape(a, {-1});
}
Array Array::reshape(Shape shape) const {
  return array::reshape(*this, std::move(shape));
}
Array Array::ravel() const {
  return array::ravel(*this);
}

Array concatenate(const std::vector<Array>& arrays, int axis) {
  if (arrays.empty()) throw ValueError("need at least one array to concatenate");
  for (const Array& a : arrays) require_known_chunks(a, "concatenate");
  const int nd = arrays[0].ndim();
  if (nd == 0) throw ValueError("zero-dimensional arrays cannot be concatenated");
  const int ax = normalize_axis(axis, nd);
  DType dt = arrays[0].dtype();
  for (size_t i = 1; i < arrays.size(); ++i) {
    const Array& x = arrays[i];
    bool fits = x.ndim() == nd;
    for (int k = 0; fits && k < nd; ++k) fits = k == ax || x.shape()[k] == arrays[0].shape()[k];
    if (!fits) {
      throw ValueError(
          fmt::format("all the input array dimensions except for the concatenation axis must match "
                      "exactly: array 0 has shape {}, array {} has shape {} (axis {})",
                      shape_str(arrays[0].shape()), i, shape_str(x.shape()), ax));
    }
    dt = result_type(dt, x.dtype());
  }
  if (arrays.size() == 1) return astype(arrays[0], dt);
  // The other axes are cut like the first array.
  std::vector<Array> in;
  Chunks chunks = arrays[0].chunks();
  chunks[ax].clear();
  Shape shape = arrays[0].shape();
  shape[ax] = 0;
  std::vector<std::pair<size_t, int64_t>> source;  // output block along ax -> (array, block)
  std::vector<Value> token{Value::of(static_cast<int64_t>(ax))};
  for (size_t i = 0; i < arrays.size(); ++i) {
    Chunks want = arrays[0].chunks();
    want[ax] = arrays[i].chunks()[ax];
    Array x = arrays[i].chunks() == want ? arrays[i] : arrays[i].rechunk(want);
    if (x.dtype() != dt) x = astype(x, dt);
    for (size_t b = 0; b < x.chunks()[ax].size(); ++b) {
      chunks[ax].push_back(x.chunks()[ax][b]);
      source.emplace_back(in.size(), static_cast<int64_t>(b));
    }
    shape[ax] += x.shape()[ax];
    token.push_back(token_of(x));
    in.push_back(std::move(x));
  }
  std::string name = make_name("concatenate", token);
  std::vector<std::string> names;
  for (const Array& x : in) names.push_back(x.name());
  auto layer = std::make_shared<BlockLayer>(
      name, "concatenate", numblocks_of(chunks), names,
      [names, source, ax](std::span<const int64_t> c, std::vector<Key>& external) {
        const auto& [i, b] = source[c[ax]];
        std::vector<int64_t> src(c.begin(), c.end());
        src[ax] = b;
        Key k(names[i], src);
        external.push_back(k);
        return Task::alias(std::move(k));
      });
  return make_array(std::move(name), "concatenate", dt, std::move(shape), std::move(chunks),
                    std::move(layer), in);
}

Array stack(const std::vector<Array>& arrays, int axis) {
  if (arrays.empty()) throw ValueError("need at least one array to stack");
  for (size_t i = 1; i < arrays.size(); ++i) {
    if (arrays[i].shape() != arrays[0].shape()) {
      throw ValueError(fmt::format(
          "all input arrays must have the same shape: array 0 has shape {}, array {} has {}",
          shape_str(arrays[0].shape()), i, shape_str(arrays[i].shape())));
    }
  }
  const int ax = normalize_axis(axis, arrays[0].ndim() + 1);
  std::vector<Array> expanded;
  for (const Array& a : arrays) expanded.push_back(expand_dims(a, ax));
  return concatenate(expanded, ax);
}

}  // namespace tessera::array

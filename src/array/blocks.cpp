// User functions over blocks (map_blocks, unify_chunks) and cumulative sums and products.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>

#include "array/array_internal.hpp"
#include "array/elementwise_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/tokenize.hpp"

namespace tessera::array {

std::vector<Array> unify_chunks(std::vector<Array> arrays) {
  Shape shape;
  for (const Array& a : arrays) {
    try {
      shape = broadcast_shapes(shape, a.shape());
    } catch (const ValueError&) {
      std::vector<std::string> shapes;
      for (const Array& x : arrays) shapes.push_back(shape_str(x.shape()));
      throw ValueError(
          fmt::format("unify_chunks: shapes {} do not broadcast", fmt::join(shapes, " ")));
    }
  }
  unify(arrays, shape);
  return arrays;
}

Array map_blocks(std::shared_ptr<const Op> op, const std::vector<Array>& arrays,
                 MapBlocksOptions options) {
  if (arrays.empty()) throw ValueError("map_blocks needs at least one array");
  if (!op) throw ValueError("map_blocks: no function");
  if (op->arity >= 0 && static_cast<size_t>(op->arity) != arrays.size()) {
    throw ValueError(fmt::format("map_blocks: '{}' takes {} arguments, {} arrays were given",
                                 op->name, op->arity, arrays.size()));
  }
  std::vector<Array> in = arrays;
  Shape shape;
  for (const Array& a : in) shape = broadcast_shapes(shape, a.shape());
  Chunks chunks = unify(in, shape);
  if (options.chunks) {
    if (options.chunks->size() != chunks.size()) {
      throw ValueError(fmt::format("map_blocks: chunks {} have {} axes, the blocks have {}",
                                   chunks_str(*options.chunks), options.chunks->size(),
                                   chunks.size()));
    }
    for (size_t k = 0; k < chunks.size(); ++k) {
      if ((*options.chunks)[k].size() != chunks[k].size()) {
        throw ValueError(fmt::format(
            "map_blocks: chunks {} have {} blocks along axis {}, the input has {}",
            chunks_str(*options.chunks), (*options.chunks)[k].size(), k, chunks[k].size()));
      }
    }
    chunks = *options.chunks;
    shape.clear();
    for (const auto& c : chunks) {
      int64_t n = 0;
      for (int64_t x : c) n += x;
      shape.push_back(n);
    }
  }
  const std::string label = options.name.empty() ? op->key_prefix : options.name;
  std::vector<Value> token{Value::of(tokenize(*op, {})), Value::of(chunks_str(chunks))};
  for (const Array& a : in) token.push_back(token_of(a));
  std::string name = make_name(label, token);
  const AlignedInputs inputs(in, chunks);
  auto layer = std::make_shared<BlockLayer>(
      name, "map_blocks", numblocks_of(chunks), inputs.names(),
      [op, inputs](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<Arg> args;
        inputs.append_refs(c, args, external);
        return Task::call(op, std::move(args));
      });
  return make_array(std::move(name), label, options.dtype.value_or(in[0].dtype()), std::move(shape),
                    std::move(chunks), std::move(layer), in);
}

namespace {

// An input of blockwise with concatenate=true.
struct ConcatInput {
  std::string name, index;
  Chunks chunks;
  DType dtype;
};

std::vector<std::string> arrays_names(const std::vector<Array>& arrays) {
  std::vector<std::string> out;
  for (const Array& a : arrays) {
    if (std::find(out.begin(), out.end(), a.name()) == out.end()) out.push_back(a.name());
  }
  return out;
}

// The argument of output block `c` for `in`: its block, or (when it has letters the output
// lacks) a nested task joining every block along those letters (array.assemble).
Arg concatenated_arg(const ConcatInput& in, const std::string& out_index,
                     std::span<const int64_t> c, std::vector<Key>& external) {
  const size_t nd = in.index.size();
  std::vector<int64_t> at(nd, 0);
  std::vector<size_t> joined;  // axes of `in` whose letters the output lacks
  for (size_t j = 0; j < nd; ++j) {
    const size_t o = out_index.find(in.index[j]);
    if (o == std::string::npos) {
      joined.push_back(j);
    } else if (in.chunks[j].size() > 1) {
      at[j] = c[o];
    }
  }
  Shape counts;
  for (size_t j : joined) counts.push_back(static_cast<int64_t>(in.chunks[j].size()));
  bool single = true;
  for (int64_t n : counts) single = single && n == 1;
  if (single) {
    Key k(in.name, at);
    external.push_back(k);
    return Arg::ref(std::move(k));
  }
  std::vector<int64_t> spec{static_cast<int64_t>(in.dtype), static_cast<int64_t>(nd)};
  for (size_t j = 0; j < nd; ++j) {
    const bool join = std::find(joined.begin(), joined.end(), j) != joined.end();
    spec.push_back(join ? std::accumulate(in.chunks[j].begin(), in.chunks[j].end(), int64_t{0})
                        : in.chunks[j][static_cast<size_t>(at[j])]);
  }
  std::vector<Arg> args{Arg(Value())};  // the spec, set below
  for_each_block(counts, [&](std::span<const int64_t> pc) {
    for (size_t q = 0; q < joined.size(); ++q) at[joined[q]] = pc[q];
    for (size_t j = 0; j < nd; ++j) {
      const auto b = static_cast<size_t>(at[j]);
      const int64_t dst = std::find(joined.begin(), joined.end(), j) == joined.end()
                              ? 0
                              : std::accumulate(in.chunks[j].begin(),
                                                in.chunks[j].begin() + static_cast<int64_t>(b),
                                                int64_t{0});
      spec.insert(spec.end(), {0, in.chunks[j][b], dst});
    }
    Key k(in.name, at);
    external.push_back(k);
    args.push_back(Arg::ref(std::move(k)));
  });
  args[0] = Arg(Value::of(std::move(spec)));
  return Arg::task(Task::call(get_op("array.assemble"), std::move(args)));
}

}  // namespace

Array blockwise(std::shared_ptr<const Op> op, const std::string& out_index,
                std::vector<BlockwiseInput> inputs, BlockwiseOptions options) {
  if (!op) throw ValueError("blockwise: no function");
  if (inputs.empty()) throw ValueError("blockwise needs at least one input");
  if (op->arity >= 0 && static_cast<size_t>(op->arity) != inputs.size()) {
    throw ValueError(fmt::format("blockwise: '{}' takes {} arguments, {} inputs were given",
                                 op->name, op->arity, inputs.size()));
  }
  // Chunks per letter: the first input with more than one block along it decides.
  std::map<char, std::vector<int64_t>> letter_chunks;
  for (const BlockwiseInput& in : inputs) {
    if (static_cast<int>(in.index.size()) != in.array.ndim()) {
      throw ValueError(fmt::format("blockwise: index '{}' has {} letters for an array of shape {}",
                                   in.index, in.index.size(), shape_str(in.array.shape())));
    }
    require_known_chunks(in.array, "blockwise");
    for (size_t k = 0; k < in.index.size(); ++k) {
      const char l = in.index[k];
      auto& c = letter_chunks[l];
      if (c.empty() || (c.size() == 1 && in.array.chunks()[k].size() > 1)) c = in.array.chunks()[k];
    }
  }
  for (const auto& [l, len] : options.new_axes) {
    if (out_index.find(l) == std::string::npos) {
      throw ValueError(
          fmt::format("blockwise: new axis '{}' is not in the output index '{}'", l, out_index));
    }
    if (letter_chunks.count(l))
      throw ValueError(fmt::format("blockwise: new axis '{}' is also in an input index", l));
    if (len < 0)
      throw ValueError(fmt::format("blockwise: new axis '{}' has negative length {}", l, len));
  }
  for (const auto& [l, len] : options.new_axes) letter_chunks[l] = {len};
  for (char l : out_index) {
    if (!letter_chunks.count(l))
      throw ValueError(fmt::format("blockwise: output letter '{}' is in no input index", l));
  }
  std::vector<BlockwiseArg> args;
  std::vector<Array> arrays;
  std::vector<Value> token{Value::of(tokenize(*op, {})), Value::of(out_index)};
  for (BlockwiseInput& in : inputs) {
    Chunks want = in.array.chunks();
    for (size_t k = 0; k < in.index.size(); ++k) {
      const auto& target = letter_chunks[in.index[k]];
      const bool broadcast = in.array.shape()[k] == 1 && want[k].size() == 1;
      if (!broadcast && want[k] != target) {
        int64_t total = 0;
        for (int64_t x : target) total += x;
        if (total != in.array.shape()[k]) {
          throw ValueError(
              fmt::format("blockwise: letter '{}' has length {} in one input and {} in another",
                          in.index[k], total, in.array.shape()[k]));
        }
        want[k] = target;
      }
    }
    Array a = want == in.array.chunks() ? in.array : in.array.rechunk(want);
    args.push_back(BlockwiseArg::blocks(a.name(), in.index, a.numblocks()));
    token.push_back(token_of(a));
    token.push_back(Value::of(in.index));
    arrays.push_back(std::move(a));
  }
  Chunks chunks;
  Shape shape, nb;
  for (char l : out_index) {
    chunks.push_back(letter_chunks[l]);
    int64_t total = 0;
    for (int64_t x : letter_chunks[l]) total += x;
    shape.push_back(total);
    nb.push_back(static_cast<int64_t>(letter_chunks[l].size()));
  }
  const std::string label = options.name.empty() ? op->key_prefix : options.name;
  bool contracts = false;
  for (const BlockwiseInput& in : inputs) {
    for (char l : in.index) contracts = contracts || out_index.find(l) == std::string::npos;
  }
  for (const auto& [l, len] : options.new_axes) {
    token.push_back(Value::of(std::string(1, l)));
    token.push_back(Value::of(len));
  }
  LayerPtr layer;
  if (options.concatenate && contracts) {
    token.push_back(Value::of(std::string("concatenate")));
    std::string name = make_name(label, token);
    std::vector<ConcatInput> cin;
    for (size_t i = 0; i < arrays.size(); ++i)
      cin.push_back({arrays[i].name(), inputs[i].index, arrays[i].chunks(), arrays[i].dtype()});
    layer = std::make_shared<BlockLayer>(
        name, "blockwise", nb, arrays_names(arrays),
        [op, out_index, cin](std::span<const int64_t> c, std::vector<Key>& external) {
          std::vector<Arg> a;
          for (const ConcatInput& in : cin) a.push_back(concatenated_arg(in, out_index, c, external));
          return Task::call(op, std::move(a));
        });
    return make_array(std::move(name), label, options.dtype.value_or(arrays[0].dtype()),
                      std::move(shape), std::move(chunks), std::move(layer), arrays);
  }
  std::string name = make_name(label, token);
  layer = std::make_shared<BlockwiseLayer>(name, out_index, nb, op, std::move(args));
  return make_array(std::move(name), label, options.dtype.value_or(arrays[0].dtype()),
                    std::move(shape), std::move(chunks), std::move(layer), arrays);
}

// ---- cumulative sums and products ----

namespace {

// Cumulates `a` along `axis` into a new array of `dtype` (sum, or product when `product`),
// starting from `carry` (a block with length 1 along axis) when given.
NDArray cumulate(const NDArray& a, int axis, bool product, DType dtype, const NDArray* carry) {
  NDArray out = a.astype(dtype);
  if (out.raw_data() == a.raw_data()) {  // astype returned `a` itself: copy before writing
    NDArray c = NDArray::empty(dtype, a.shape());
    std::memcpy(c.raw_mutable_data(), a.raw_data(), a.nbytes());
    out = c;
  }
  const Shape& sh = out.shape();
  const int64_t outer =
      std::accumulate(sh.begin(), sh.begin() + axis, int64_t{1}, std::multiplies<>());
  const int64_t n = sh[axis];
  const int64_t inner =
      std::accumulate(sh.begin() + axis + 1, sh.end(), int64_t{1}, std::multiplies<>());
  NDArray cc;
  if (carry) cc = carry->astype(dtype);
  visit_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (!std::is_same_v<T, bool>) {
      T* p = out.mutable_data<T>();
      const T* cp = carry ? cc.data<T>() : nullptr;
      auto op = [product](T x, T y) -> T {
        if constexpr (std::is_integral_v<T>) {
          using U = std::make_unsigned_t<T>;
          return static_cast<T>(product ? static_cast<U>(x) * static_cast<U>(y)
                                        : static_cast<U>(x) + static_cast<U>(y));
        } else {
          return product ? x * y : x + y;
        }
      };
      for (int64_t o = 0; o < outer; ++o) {
        T* base = p + o * n * inner;
        if (cp && n > 0) {
          for (int64_t i = 0; i < inner; ++i) base[i] = op(cp[o * inner + i], base[i]);
        }
        for (int64_t j = 1; j < n; ++j) {
          for (int64_t i = 0; i < inner; ++i)
            base[j * inner + i] = op(base[(j - 1) * inner + i], base[j * inner + i]);
        }
      }
    }
  });
  return out;
}

// args: block, axis, product, dtype[, carry]
Value cumulate_block(std::span<const Value> args) {
  const NDArray& a = as_ndarray(arg_at(args, 0, "array.cumulate"));
  const auto axis = static_cast<int>(arg_at(args, 1, "array.cumulate").as<int64_t>());
  const bool product = arg_at(args, 2, "array.cumulate").as<int64_t>() != 0;
  const DType dtype = dtype_from_name(arg_at(args, 3, "array.cumulate").get<std::string>());
  if (axis < 0 || axis >= a.ndim()) throw ValueError("array.cumulate: bad axis");
  const NDArray* carry = args.size() > 4 ? &as_ndarray(args[4]) : nullptr;
  return Value::of(cumulate(a, axis, product, dtype, carry));
}
TESSERA_REGISTER_AS("array.cumulate", cumulate_block);

// The last slice along `axis` of a cumulated block (length 1 kept).
NDArray last_slice(const NDArray& a, int64_t axis) {
  const int64_t n = a.shape().at(static_cast<size_t>(axis));
  return a.slice(static_cast<int>(axis), n - 1, n).contiguous();
}
TESSERA_REGISTER_AS("array.last-slice", last_slice, tessera::OpOptions{.cheap = true});

Array cumulative(const Array& input, std::optional<int> axis, bool product) {
  Array a = axis ? input : ravel(input);
  const int ax = axis ? normalize_axis(*axis, a.ndim()) : 0;
  const DType dt = is_floating(a.dtype()) ? a.dtype() : DType::Int64;
  const char* label = product ? "cumprod" : "cumsum";
  const std::string dts(dtype_name(dt));
  // 1: each block cumulated on its own; 2: the running carry into each block along the axis
  // (a chain); 3: blocks after the first start from their carry.
  std::vector<Value> token{token_of(a), Value::of(static_cast<int64_t>(ax))};
  const std::string local = make_name(std::string(label) + "-local", token);
  const std::string carry = make_name(std::string(label) + "-carry", token);
  const std::string name = make_name(label, token);
  const std::string in = a.name();
  const Value axv = Value::of(static_cast<int64_t>(ax)),
              prodv = Value::of(static_cast<int64_t>(product)), dtv = Value::of(dts);
  auto l1 = std::make_shared<BlockLayer>(
      local, "cumulate", a.numblocks(), std::vector<std::string>{in},
      [=](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k(in, c);
        external.push_back(k);
        return Task::call(get_op("array.cumulate"),
                          {Arg::ref(std::move(k)), Arg(axv), Arg(prodv), Arg(dtv)});
      });
  const Array l1a =
      make_array(local, label, dt, a.shape(), a.chunks(), l1, std::span<const Array>(&a, 1));
  // carry[i] (i >= 1) = carry[i-1] (+ or ×) last slice of local[i-1]; carry[1] = that slice.
  auto l2 = std::make_shared<BlockLayer>(
      carry, "cumulate-carry", a.numblocks(), std::vector<std::string>{local},
      [=](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> prev(c.begin(), c.end());
        if (prev[ax] == 0) return Task::literal(Value());  // no carry into the first block
        --prev[ax];
        Key lk(local, prev);
        external.push_back(lk);
        Arg last =
            Arg::task(Task::call(get_op("array.last-slice"), {Arg::ref(std::move(lk)), Arg(axv)}));
        if (prev[ax] == 0) return Task::of_arg(std::move(last));
        Key ck(carry, prev);
        external.push_back(ck);
        return Task::call(get_op("array.cumulate"), {std::move(last), Arg(axv), Arg(prodv),
                                                     Arg(dtv), Arg::ref(std::move(ck))});
      });
  const Array l2a =
      make_array(carry, label, dt, a.shape(), a.chunks(), l2, std::span<const Array>(&l1a, 1));
  auto l3 = std::make_shared<BlockLayer>(
      name, "cumulate-apply", a.numblocks(), std::vector<std::string>{local, carry},
      [=](std::span<const int64_t> c, std::vector<Key>& external) {
        Key lk(local, c);
        external.push_back(lk);
        if (c[ax] == 0) return Task::alias(std::move(lk));
        Key ck(carry, c);
        external.push_back(ck);
        // Adding the carry to a cumulated block: cumulate with a carry on a length-n block
        // adds carry to the first row and runs on; since local is already cumulated, apply
        // the carry to every row instead.
        return Task::call(get_op("array.apply-carry"),
                          {Arg::ref(std::move(lk)), Arg::ref(std::move(ck)), Arg(axv), Arg(prodv)});
      });
  return make_array(name, label, dt, a.shape(), a.chunks(), l3, std::span<const Array>(&l2a, 1));
}

NDArray apply_carry(const NDArray& local, const NDArray& carry, int64_t axis, int64_t product) {
  NDArray out = NDArray::empty(local.dtype(), local.shape());
  const NDArray b = carry.broadcast_to(local.shape());
  visit_dtype(local.dtype(), [&](auto t) {
    using T = decltype(t);
    if constexpr (!std::is_same_v<T, bool>) {
      std::vector<T> lv = local.to_vector<T>(), cv = b.to_vector<T>();
      T* o = out.mutable_data<T>();
      for (size_t i = 0; i < lv.size(); ++i) {
        if constexpr (std::is_integral_v<T>) {
          using U = std::make_unsigned_t<T>;
          o[i] = static_cast<T>(product ? static_cast<U>(lv[i]) * static_cast<U>(cv[i])
                                        : static_cast<U>(lv[i]) + static_cast<U>(cv[i]));
        } else {
          o[i] = product ? lv[i] * cv[i] : lv[i] + cv[i];
        }
      }
    }
  });
  (void)axis;
  return out;
}
TESSERA_REGISTER_AS("array.apply-carry", apply_carry);

}  // namespace

Array cumsum(const Array& a, std::optional<int> axis) {
  return cumulative(a, axis, false);
}
Array cumprod(const Array& a, std::optional<int> axis) {
  return cumulative(a, axis, true);
}

}  // namespace tessera::array

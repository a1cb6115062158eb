// Operations that move elements between blocks or axes: transpose and rechunk.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

NDArray transpose_block(const NDArray& a, const std::vector<int64_t>& axes) {
  std::vector<int> ax(axes.begin(), axes.end());
  return a.transpose(ax);
}
TESSERA_REGISTER_AS("array.transpose", transpose_block, tessera::OpOptions{.cheap = true});

// Copies `src` into `dst` (contiguous) at element offsets `at`.
void copy_into(NDArray& dst, std::span<const int64_t> at, const NDArray& src) {
  if (src.size() == 0) return;
  const size_t w = dtype_size(dst.dtype());
  const std::vector<int64_t> dstr = contiguous_strides(dst.shape());
  int64_t base = 0;
  for (size_t k = 0; k < at.size(); ++k) base += at[k] * dstr[k];
  auto* out = static_cast<std::byte*>(dst.raw_mutable_data()) + base * static_cast<int64_t>(w);
  const int nd = src.ndim();
  if (nd == 0) {
    std::memcpy(out, src.raw_data(), w);
    return;
  }
  const auto& sh = src.shape();
  const auto& ss = src.strides();
  const int64_t len = sh[nd - 1], ls = ss[nd - 1];
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  const auto* in = static_cast<const std::byte*>(src.raw_data());
  while (true) {
    int64_t so = 0, d = 0;
    for (int k = 0; k < nd - 1; ++k) {
      so += idx[k] * ss[k];
      d += idx[k] * dstr[k];
    }
    std::byte* o = out + d * static_cast<int64_t>(w);
    const std::byte* i = in + so * static_cast<int64_t>(w);
    if (ls == 1) {
      std::memcpy(o, i, static_cast<size_t>(len) * w);
    } else {
      for (int64_t e = 0; e < len; ++e)
        std::memcpy(o + e * static_cast<int64_t>(w), i + e * ls * static_cast<int64_t>(w), w);
    }
    int k = nd - 2;
    for (; k >= 0; --k) {
      if (++idx[k] < sh[k]) break;
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

// spec: dtype, ndim, block shape, then per piece ndim × (start, stop, dst); args: the pieces'
// source blocks in the same order.
Value assemble_block(std::span<const Value> args) {
  const auto& spec = arg_at(args, 0, "array.assemble").get<std::vector<int64_t>>();
  if (spec.size() < 2) throw ValueError("array.assemble: malformed spec");
  const auto dtype = static_cast<DType>(spec[0]);
  const auto nd = static_cast<size_t>(spec[1]);
  if (spec.size() != 2 + nd + (args.size() - 1) * 3 * nd)
    throw ValueError("array.assemble: malformed spec");
  Shape shape(spec.begin() + 2, spec.begin() + 2 + static_cast<int64_t>(nd));
  NDArray out = NDArray::empty(dtype, shape);
  size_t p = 2 + nd;
  std::vector<int64_t> at(nd);
  for (size_t i = 1; i < args.size(); ++i) {
    NDArray v = as_ndarray(args[i]);
    if (v.dtype() != dtype) v = v.astype(dtype);
    for (size_t k = 0; k < nd; ++k, p += 3) {
      v = v.slice(static_cast<int>(k), spec[p], spec[p + 1]);
      at[k] = spec[p + 2];
    }
    copy_into(out, at, v);
  }
  return Value::of(std::move(out));
}
TESSERA_REGISTER_AS("array.assemble", assemble_block);

struct Piece {
  int64_t block, start, stop, dst;
};

// For each output block along one axis: the input pieces that fill it.
std::vector<std::vector<Piece>> plan_axis(const std::vector<int64_t>& from,
                                          const std::vector<int64_t>& to) {
  std::vector<int64_t> in{0};
  for (int64_t f : from) in.push_back(in.back() + f);
  const auto nin = static_cast<int64_t>(from.size());
  std::vector<std::vector<Piece>> out(to.size());
  int64_t s = 0;
  int64_t i = 0;
  for (size_t j = 0; j < to.size(); ++j) {
    const int64_t e = s + to[j];
    while (i + 1 < nin && in[i + 1] <= s) ++i;
    if (e == s) {
      out[j].push_back({i, s - in[i], s - in[i], 0});
      continue;
    }
    for (int64_t b = i; b < nin && in[b] < e; ++b) {
      if (in[b + 1] <= s) continue;
      const int64_t lo = std::max(s, in[b]), hi = std::min(e, in[b + 1]);
      out[j].push_back({b, lo - in[b], hi - in[b], lo - s});
    }
    s = e;
  }
  return out;
}

}  // namespace

Array Array::transpose(std::vector<int> axes) const {
  const int nd = ndim();
  if (static_cast<int>(axes.size()) != nd) {
    throw ValueError(fmt::format("axes ({}) don't match array of shape {}", fmt::join(axes, ", "),
                                 shape_str(shape())));
  }
  std::vector<bool> seen(static_cast<size_t>(nd));
  for (int& a : axes) {
    a = normalize_axis(a, nd);
    if (seen[a])
      throw ValueError(fmt::format("repeated axis in transpose ({})", fmt::join(axes, ", ")));
    seen[a] = true;
  }
  bool identity = true;
  for (int k = 0; k < nd; ++k) identity = identity && axes[k] == k;
  if (identity) return *this;
  Shape sh(static_cast<size_t>(nd));
  Chunks ch(static_cast<size_t>(nd));
  for (int k = 0; k < nd; ++k) {
    sh[k] = shape()[axes[k]];
    ch[k] = chunks()[axes[k]];
  }
  const std::vector<int64_t> ax64(axes.begin(), axes.end());
  std::string name = make_name("transpose", std::vector<Value>{token_of(*this), Value::of(ax64)});
  const std::string in = this->name();
  auto layer = std::make_shared<BlockLayer>(
      name, "transpose", numblocks_of(ch), std::vector<std::string>{in},
      [in, axes, ax64](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> src(c.size());
        for (size_t k = 0; k < c.size(); ++k) src[axes[k]] = c[k];
        Key k(in, src);
        external.push_back(k);
        return Task::call(get_op("array.transpose"),
                          {Arg::ref(std::move(k)), Arg(Value::of(ax64))});
      });
  return make_array(std::move(name), "transpose", dtype(), std::move(sh), std::move(ch),
                    std::move(layer), std::span<const Array>(this, 1));
}

Array Array::rechunk(const ChunkSpec& spec) const {
  require_known_chunks(*this, "rechunk");
  const Chunks to = spec.resolve(shape(), dtype());
  if (to == chunks()) return *this;
  const int nd = ndim();
  std::vector<std::vector<std::vector<Piece>>> plans;
  for (int k = 0; k < nd; ++k) plans.push_back(plan_axis(chunks()[k], to[k]));
  std::string name =
      make_name("rechunk", std::vector<Value>{token_of(*this), Value::of(chunks_str(to))});
  const std::string in = this->name();
  const DType dt = dtype();
  auto layer = std::make_shared<BlockLayer>(
      name, "rechunk", numblocks_of(to), std::vector<std::string>{in},
      [in, plans, to, dt, nd](std::span<const int64_t> c, std::vector<Key>& external) {
        // Every combination of the per-axis pieces.
        std::vector<const std::vector<Piece>*> per(static_cast<size_t>(nd));
        Shape counts(static_cast<size_t>(nd));
        for (int k = 0; k < nd; ++k) {
          per[k] = &plans[k][c[k]];
          counts[k] = static_cast<int64_t>(per[k]->size());
        }
        std::vector<int64_t> spec{static_cast<int64_t>(dt), nd};
        for (int k = 0; k < nd; ++k) spec.push_back(to[k][c[k]]);
        std::vector<Arg> args;
        args.emplace_back(Value());  // the spec, set below
        bool single = true;
        std::vector<int64_t> src(static_cast<size_t>(nd)), lo(static_cast<size_t>(nd)),
            hi(static_cast<size_t>(nd));
        for_each_block(counts, [&](std::span<const int64_t> pc) {
          for (int k = 0; k < nd; ++k) {
            const Piece& p = (*per[k])[pc[k]];
            src[k] = p.block;
            lo[k] = p.start;
            hi[k] = p.stop;
            spec.insert(spec.end(), {p.start, p.stop, p.dst});
          }
          Key key(in, src);
          external.push_back(key);
          args.push_back(Arg::ref(std::move(key)));
        });
        single = args.size() == 2;
        if (single) {
          // One source block: a view of it.
          return Task::call(get_op("array.getitem"),
                            {args[1], Arg(Value::of(lo)), Arg(Value::of(hi))});
        }
        args[0] = Arg(Value::of(std::move(spec)));
        return Task::call(get_op("array.assemble"), std::move(args));
      });
  return make_array(std::move(name), "rechunk", dtype(), shape(), to, std::move(layer),
                    std::span<const Array>(this, 1));
}

}  // namespace tessera::array

// overlap and map_overlap: blocks extended by their neighbours' edges (ghost cells), for
// stencils and filters; the boundary rule supplies what lies outside the array.
#include <fmt/format.h>

#include <cstring>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/tokenize.hpp"

namespace tessera::array {

namespace {

// spec: dtype, constant (as bits), ndim, then per axis: number of distinct source blocks
// s_k, number of positions m_k, and m_k (slot, local) pairs (slot -1: the constant).
// args after the spec: the source blocks, row-major over the per-axis slots.
Value overlap_block(std::span<const Value> args) {
  const auto& spec = arg_at(args, 0, "array.overlap").get<std::vector<int64_t>>();
  if (spec.size() < 3) throw ValueError("array.overlap: malformed spec");
  const auto dtype = static_cast<DType>(spec[0]);
  double constant;
  std::memcpy(&constant, &spec[1], sizeof constant);
  const auto nd = static_cast<size_t>(spec[2]);
  std::vector<int64_t> slots(nd);
  std::vector<std::vector<std::pair<int64_t, int64_t>>> pos(nd);
  size_t p = 3;
  Shape shape(nd);
  for (size_t k = 0; k < nd; ++k) {
    if (p + 2 > spec.size()) throw ValueError("array.overlap: malformed spec");
    slots[k] = spec[p];
    const int64_t m = spec[p + 1];
    p += 2;
    if (m < 0 || p + 2 * static_cast<size_t>(m) > spec.size())
      throw ValueError("array.overlap: malformed spec");
    for (int64_t i = 0; i < m; ++i, p += 2) pos[k].emplace_back(spec[p], spec[p + 1]);
    shape[k] = m;
  }
  size_t nblocks = 1;
  for (int64_t s : slots) nblocks *= static_cast<size_t>(s);
  if (args.size() != 1 + nblocks) throw ValueError("array.overlap: wrong number of blocks");
  std::vector<NDArray> blocks;
  for (size_t i = 0; i < nblocks; ++i) blocks.push_back(as_ndarray(args[1 + i]).astype(dtype));
  NDArray out = NDArray::empty(dtype, shape);
  visit_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    T* o = out.mutable_data<T>();
    const T fill = convert<T, double>(constant);
    if (out.size() == 0) return;
    std::vector<int64_t> idx(nd, 0);
    for (int64_t e = 0; e < out.size(); ++e) {
      size_t slot = 0;
      bool outside = false;
      std::vector<int64_t> local(nd);
      for (size_t k = 0; k < nd; ++k) {
        const auto& [s, l] = pos[k][static_cast<size_t>(idx[k])];
        if (s < 0) outside = true;
        slot = slot * static_cast<size_t>(slots[k]) + static_cast<size_t>(std::max<int64_t>(s, 0));
        local[k] = l;
      }
      o[e] = outside ? fill : blocks[slot].at<T>(std::span<const int64_t>(local));
      for (size_t k = nd; k-- > 0;) {
        if (++idx[k] < shape[k]) break;
        idx[k] = 0;
      }
    }
  });
  return Value::of(std::move(out));
}
TESSERA_REGISTER_AS("array.overlap", overlap_block);

// Global source index of extended position g along an axis of n elements, or -1 (constant).
int64_t source_index(int64_t g, int64_t n, Boundary b) {
  if (g >= 0 && g < n) return g;
  switch (b) {
    case Boundary::Reflect:
      return g < 0 ? -1 - g : 2 * n - 1 - g;
    case Boundary::Periodic:
      return ((g % n) + n) % n;
    case Boundary::Nearest:
      return g < 0 ? 0 : n - 1;
    default:
      return -1;
  }
}

std::vector<int64_t> depths_of(const Array& a, const OverlapOptions& o) {
  std::vector<int64_t> d = o.depth;
  if (d.size() == 1) d.assign(static_cast<size_t>(a.ndim()), d[0]);
  if (static_cast<int>(d.size()) != a.ndim()) {
    throw ValueError(
        fmt::format("overlap: {} depths for an array of {} dimensions", d.size(), a.ndim()));
  }
  for (size_t k = 0; k < d.size(); ++k) {
    if (d[k] < 0) throw ValueError(fmt::format("overlap: negative depth {} on axis {}", d[k], k));
    for (int64_t c : a.chunks()[k]) {
      if (d[k] > c && a.chunks()[k].size() > 1) {
        throw ValueError(fmt::format(
            "overlap: depth {} on axis {} is larger than a block of {} (chunks {}); rechunk first",
            d[k], k, c, chunks_str(a.chunks())));
      }
    }
    if (o.boundary != Boundary::None && o.boundary != Boundary::Constant && d[k] > a.shape()[k]) {
      throw ValueError(
          fmt::format("overlap: depth {} on axis {} exceeds its length {}", d[k], k, a.shape()[k]));
    }
  }
  return d;
}

// The extension of block b along an axis: (left, right) elements added.
std::pair<int64_t, int64_t> margins(int64_t b, int64_t nblocks, int64_t depth, Boundary boundary) {
  if (boundary != Boundary::None) return {depth, depth};
  return {b > 0 ? depth : 0, b + 1 < nblocks ? depth : 0};
}

}  // namespace

Array overlap(const Array& a, const OverlapOptions& options) {
  require_known_chunks(a, "overlap");
  const std::vector<int64_t> depth = depths_of(a, options);
  const int nd = a.ndim();
  const auto offs = offsets_of(a.chunks());
  Chunks chunks = a.chunks();
  for (int k = 0; k < nd; ++k) {
    const auto nb = static_cast<int64_t>(chunks[k].size());
    for (int64_t b = 0; b < nb; ++b) {
      const auto [l, r] = margins(b, nb, depth[k], options.boundary);
      chunks[k][b] += l + r;
    }
  }
  int64_t bits;
  std::memcpy(&bits, &options.constant, sizeof bits);
  std::string name =
      make_name("overlap", std::vector<Value>{token_of(a), Value::of(depth),
                                              Value::of(static_cast<int64_t>(options.boundary)),
                                              Value::of(bits)});
  const std::string in = a.name();
  const Shape shape = a.shape();
  const Boundary boundary = options.boundary;
  const auto dt = static_cast<int64_t>(a.dtype());
  const Shape nbs = a.numblocks();
  auto layer = std::make_shared<BlockLayer>(
      name, "overlap", numblocks_of(chunks), std::vector<std::string>{in},
      [=](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> spec{dt, bits, nd};
        std::vector<std::vector<int64_t>> distinct(static_cast<size_t>(nd));
        for (int k = 0; k < nd; ++k) {
          const auto [l, r] = margins(c[k], nbs[k], depth[k], boundary);
          const int64_t lo = offs[k][c[k]] - l, hi = offs[k][c[k] + 1] + r;
          std::vector<std::pair<int64_t, int64_t>> pos;
          for (int64_t g = lo; g < hi; ++g) {
            const int64_t s = source_index(g, shape[k], boundary);
            if (s < 0) {
              pos.emplace_back(-1, 0);
              continue;
            }
            const auto b =
                static_cast<int64_t>(std::upper_bound(offs[k].begin(), offs[k].end(), s) -
                                     offs[k].begin()) -
                1;
            auto it = std::find(distinct[k].begin(), distinct[k].end(), b);
            if (it == distinct[k].end()) {
              distinct[k].push_back(b);
              it = distinct[k].end() - 1;
            }
            pos.emplace_back(it - distinct[k].begin(), s - offs[k][b]);
          }
          if (distinct[k].empty()) distinct[k].push_back(0);  // all constant: any block will do
          spec.push_back(static_cast<int64_t>(distinct[k].size()));
          spec.push_back(static_cast<int64_t>(pos.size()));
          for (const auto& [s, l2] : pos) spec.insert(spec.end(), {s, l2});
        }
        std::vector<Arg> args{Arg(Value::of(std::move(spec)))};
        std::vector<int64_t> counts;
        for (const auto& d : distinct) counts.push_back(static_cast<int64_t>(d.size()));
        std::vector<int64_t> src(static_cast<size_t>(nd));
        for_each_block(counts, [&](std::span<const int64_t> s) {
          for (int k = 0; k < nd; ++k) src[k] = distinct[k][s[k]];
          Key key(in, src);
          external.push_back(key);
          args.push_back(Arg::ref(std::move(key)));
        });
        return Task::call(get_op("array.overlap"), std::move(args));
      });
  Shape out_shape;
  for (const auto& ch : chunks) {
    int64_t n = 0;
    for (int64_t x : ch) n += x;
    out_shape.push_back(n);
  }
  return make_array(std::move(name), "overlap", a.dtype(), std::move(out_shape), std::move(chunks),
                    std::move(layer), std::span<const Array>(&a, 1));
}

Array map_overlap(std::shared_ptr<const Op> op, const Array& a, const OverlapOptions& options) {
  const std::vector<int64_t> depth = depths_of(a, options);
  const Array ext = overlap(a, options);
  const Array mapped = map_blocks(
      std::move(op), {ext}, {.dtype = options.dtype, .chunks = ext.chunks(), .name = options.name});
  // Trim each block back to its original extent.
  const int nd = a.ndim();
  const Shape nbs = a.numblocks();
  const Chunks ch = a.chunks();
  const Boundary boundary = options.boundary;
  std::string name = make_name("trim", std::vector<Value>{token_of(mapped), Value::of(depth)});
  const std::string in = mapped.name();
  auto layer = std::make_shared<BlockLayer>(
      name, "trim", nbs, std::vector<std::string>{in},
      [=](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> spec{nd};
        for (int k = 0; k < nd; ++k) {
          const auto [l, r] = margins(c[k], nbs[k], depth[k], boundary);
          spec.insert(spec.end(), {l, ch[k][c[k]], 1, 1});
        }
        Key key(in, c);
        external.push_back(key);
        return Task::call(get_op("array.view"),
                          {Arg::ref(std::move(key)), Arg(Value::of(std::move(spec)))});
      });
  return make_array(std::move(name), mapped.data().label, mapped.dtype(), a.shape(), a.chunks(),
                    std::move(layer), std::span<const Array>(&mapped, 1));
}

}  // namespace tessera::array

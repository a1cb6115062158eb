// Transpose: axes permuted per block (a view), blocks permuted in the grid.
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

}  // namespace tessera::array

// Array: the collection itself (metadata, graph, compute), chunk specs and the block layer.
#include "tessera/array/array.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ostream>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/tokenize.hpp"

TESSERA_REGISTER_TYPE(tessera::array::NDArray);

namespace tessera::array {

// ---- chunk specs ---------------------------------------------------------------------------

namespace {

int64_t initial_chunk_size() {
  if (const char* s = std::getenv("TESSERA_ARRAY_CHUNK_SIZE")) {
    char* end = nullptr;
    const long long v = std::strtoll(s, &end, 10);
    if (end && *end == '\0' && v > 0) return v;
  }
  return int64_t{128} << 20;
}

std::atomic<int64_t>& chunk_limit() {
  static std::atomic<int64_t> limit{initial_chunk_size()};
  return limit;
}

}  // namespace

int64_t chunk_size_limit() {
  return chunk_limit().load();
}

int64_t set_chunk_size_limit(int64_t bytes) {
  if (bytes <= 0) throw ValueError(fmt::format("chunk size limit must be positive, not {}", bytes));
  return chunk_limit().exchange(bytes);
}

ChunkSpec::ChunkSpec(std::string spec) : kind_(Kind::Auto) {
  if (spec != "auto") {
    throw ValueError(
        fmt::format("chunks='{}': expected \"auto\", a block size, a block shape or "
                    "explicit block sizes",
                    spec));
  }
}
ChunkSpec::ChunkSpec(int64_t uniform) : kind_(Kind::Uniform), uniform_(uniform) {}
ChunkSpec::ChunkSpec(std::initializer_list<int64_t> block_shape)
    : kind_(Kind::BlockShape), block_shape_(block_shape) {}
ChunkSpec::ChunkSpec(Shape block_shape)
    : kind_(Kind::BlockShape), block_shape_(std::move(block_shape)) {}
ChunkSpec::ChunkSpec(Chunks chunks) : kind_(Kind::Explicit), chunks_(std::move(chunks)) {}

std::vector<int64_t> regular_chunks(int64_t size, int64_t block) {
  std::vector<int64_t> out;
  if (size == 0) return {0};
  for (int64_t done = 0; done < size; done += block) out.push_back(std::min(block, size - done));
  return out;
}

void check_chunks(const Chunks& chunks, const Shape& shape) {
  if (chunks.size() != shape.size()) {
    throw ValueError(fmt::format("chunks {} have {} axes, the shape {} has {}", chunks_str(chunks),
                                 chunks.size(), shape_str(shape), shape.size()));
  }
  for (size_t k = 0; k < shape.size(); ++k) {
    int64_t total = 0;
    for (int64_t c : chunks[k]) {
      if (c < 0)
        throw ValueError(fmt::format("chunks {} hold a negative size", chunks_str(chunks)));
      total += c;
    }
    if (chunks[k].empty() || total != shape[k] ||
        (shape[k] > 0 && std::count(chunks[k].begin(), chunks[k].end(), 0) > 0)) {
      throw ValueError(fmt::format("chunks {} do not add up to shape {} along axis {}",
                                   chunks_str(chunks), shape_str(shape), k));
    }
  }
}

Chunks ChunkSpec::resolve(const Shape& shape, DType dtype) const {
  for (int64_t s : shape) {
    if (s < 0)
      throw ValueError(
          fmt::format("negative dimensions are not allowed: shape {}", shape_str(shape)));
  }
  const size_t nd = shape.size();
  Chunks out(nd);
  switch (kind_) {
    case Kind::Explicit:
      check_chunks(chunks_, shape);
      return chunks_;
    case Kind::Uniform:
      if (uniform_ <= 0 && uniform_ != -1) {
        throw ValueError(
            fmt::format("chunks={} for shape {}: a block size must be positive (or -1)", uniform_,
                        shape_str(shape)));
      }
      for (size_t k = 0; k < nd; ++k) {
        out[k] =
            regular_chunks(shape[k], uniform_ == -1 ? std::max<int64_t>(shape[k], 1) : uniform_);
      }
      return out;
    case Kind::BlockShape:
      if (block_shape_.size() != nd) {
        throw ValueError(fmt::format("chunks {} have {} axes, the shape {} has {}",
                                     shape_str(block_shape_), block_shape_.size(), shape_str(shape),
                                     nd));
      }
      for (size_t k = 0; k < nd; ++k) {
        const int64_t b = block_shape_[k];
        if (b <= 0 && b != -1) {
          throw ValueError(
              fmt::format("chunks {} for shape {}: block sizes must be positive (or -1)",
                          shape_str(block_shape_), shape_str(shape)));
        }
        out[k] = regular_chunks(shape[k], b == -1 ? std::max<int64_t>(shape[k], 1) : b);
      }
      return out;
    case Kind::Auto:
      break;
  }
  // "auto": square-ish blocks of about chunk_size_limit() bytes, as dask does.
  const double target =
      static_cast<double>(chunk_size_limit()) / static_cast<double>(dtype_size(dtype));
  Shape block(nd, 1);
  double total = 1;
  for (int64_t s : shape) total *= static_cast<double>(std::max<int64_t>(s, 1));
  if (total <= target) {
    for (size_t k = 0; k < nd; ++k) block[k] = std::max<int64_t>(shape[k], 1);
  } else {
    // Grow every axis equally (capped by its extent) until the block reaches the target.
    std::vector<bool> capped(nd, false);
    double remaining = target;
    size_t free_axes = nd;
    for (int pass = 0; pass < static_cast<int>(nd) + 1 && free_axes > 0; ++pass) {
      const double side = std::pow(remaining, 1.0 / static_cast<double>(free_axes));
      bool changed = false;
      for (size_t k = 0; k < nd; ++k) {
        if (!capped[k] && static_cast<double>(shape[k]) <= side) {
          capped[k] = true;
          block[k] = std::max<int64_t>(shape[k], 1);
          remaining /= static_cast<double>(block[k]);
          --free_axes;
          changed = true;
        }
      }
      if (!changed) {
        for (size_t k = 0; k < nd; ++k) {
          if (!capped[k]) block[k] = std::max<int64_t>(1, static_cast<int64_t>(side));
        }
        break;
      }
    }
  }
  for (size_t k = 0; k < nd; ++k) out[k] = regular_chunks(shape[k], block[k]);
  return out;
}

std::vector<int> Axes::resolve(int ndim) const {
  std::vector<int> out;
  if (all_) {
    for (int k = 0; k < ndim; ++k) out.push_back(k);
    return out;
  }
  for (int a : axes_) out.push_back(normalize_axis(a, ndim));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end()) {
    throw ValueError(fmt::format("duplicate value in axis ({})", fmt::join(axes_, ", ")));
  }
  return out;
}

int normalize_axis(int axis, int ndim) {
  if (axis < -ndim || axis >= ndim) {
    throw AxisError(fmt::format("axis {} is out of bounds for array of dimension {}", axis, ndim));
  }
  return axis < 0 ? axis + ndim : axis;
}

// ---- helpers -------------------------------------------------------------------------------

Shape numblocks_of(const Chunks& chunks) {
  Shape out;
  for (const auto& c : chunks) out.push_back(static_cast<int64_t>(c.size()));
  return out;
}

void throw_unknown_chunks(std::string_view op) {
  throw ValueError(
      fmt::format("{}: the array's chunk sizes are unknown (after boolean-mask indexing); call "
                  "compute_chunk_sizes() first",
                  op));
}

void require_known_chunks(const Array& a, std::string_view op) {
  if (a.has_unknown_chunks()) throw_unknown_chunks(op);
}

std::vector<std::vector<int64_t>> offsets_of(const Chunks& chunks) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& c : chunks) {
    for (int64_t s : c) {
      if (s < 0) throw_unknown_chunks("this operation");
    }
    std::vector<int64_t> o{0};
    for (int64_t s : c) o.push_back(o.back() + s);
    out.push_back(std::move(o));
  }
  return out;
}

Shape block_shape(const Chunks& chunks, std::span<const int64_t> coords) {
  Shape out(chunks.size());
  for (size_t k = 0; k < chunks.size(); ++k) out[k] = chunks[k][coords[k]];
  return out;
}

void for_each_block(std::span<const int64_t> numblocks,
                    const std::function<void(std::span<const int64_t>)>& f) {
  for (int64_t n : numblocks) {
    if (n == 0) return;
  }
  std::vector<int64_t> c(numblocks.size(), 0);
  while (true) {
    f(c);
    size_t k = c.size();
    while (k > 0) {
      --k;
      if (++c[k] < numblocks[k]) break;
      c[k] = 0;
      if (k == 0) return;
    }
    if (c.empty()) return;
  }
}

std::string chunks_str(const Chunks& chunks) {
  std::vector<std::string> axes;
  for (const auto& c : chunks) axes.push_back(shape_str(c));
  if (axes.size() == 1) return fmt::format("({},)", axes[0]);
  return fmt::format("({})", fmt::join(axes, ", "));
}

std::string dtype_str(DType t) {
  return std::string(dtype_name(t));
}

const NDArray& as_ndarray(const Value& v) {
  return v.get<NDArray>();
}

const Value& arg_at(std::span<const Value> args, size_t i, const char* op) {
  if (i >= args.size())
    throw ValueError(fmt::format("{}: expected more than {} arguments", op, args.size()));
  return args[i];
}

std::string make_name(std::string_view label, std::span<const Value> parts) {
  return fmt::format("{}-{}", label, tokenize(parts));
}

Value token_of(const Array& a) {
  return Value::of(a.name());
}

AlignedInputs::AlignedInputs(std::span<const Array> arrays, const Chunks& out_chunks) {
  const size_t nd = out_chunks.size();
  for (const Array& a : arrays) {
    names_.push_back(a.name());
    std::vector<int> m;
    const size_t lead = nd - static_cast<size_t>(a.ndim());
    for (size_t k = 0; k < static_cast<size_t>(a.ndim()); ++k) {
      m.push_back(a.numblocks()[k] == 1 && out_chunks[lead + k].size() != 1
                      ? -1
                      : static_cast<int>(lead + k));
    }
    axes_.push_back(std::move(m));
  }
}

void AlignedInputs::append_refs(std::span<const int64_t> c, std::vector<Arg>& args,
                                std::vector<Key>& external) const {
  std::vector<int64_t> idx;
  for (size_t i = 0; i < names_.size(); ++i) {
    idx.clear();
    for (int ax : axes_[i]) idx.push_back(ax < 0 ? 0 : c[ax]);
    Key k(names_[i], idx);
    external.push_back(k);
    args.push_back(Arg::ref(std::move(k)));
  }
}

void compute_per_block(const Array& a, const std::string& name,
                       const std::function<Task(std::span<const int64_t>, Key)>& make,
                       const ComputeOptions& options) {
  const std::string in = a.name();
  HighLevelGraph hlg = a.graph();
  hlg.add_layer(std::make_shared<BlockLayer>(
      name, "store", a.numblocks(), std::vector<std::string>{in},
      [in, make](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k(in, c);
        external.push_back(k);
        return make(c, std::move(k));
      }));
  std::vector<Key> keys;
  for_each_block(a.numblocks(), [&](std::span<const int64_t> c) { keys.emplace_back(name, c); });
  tessera::detail::compute_keys(hlg, keys, {}, options);
}

std::string numpy_descr(DType t) {
  switch (t) {
    case DType::Bool:
      return "|b1";
    case DType::Int32:
      return "<i4";
    case DType::Int64:
      return "<i8";
    case DType::Float32:
      return "<f4";
    case DType::Float64:
      break;
  }
  return "<f8";
}

DType dtype_of_descr(const std::string& descr, const std::string& what) {
  if (!descr.empty() && descr[0] == '>') {
    throw IOError(fmt::format("{}: big-endian data ('{}') is not supported", what, descr));
  }
  try {
    return dtype_from_name(descr == "|b1" ? "bool" : descr);
  } catch (const ValueError&) {
    throw IOError(fmt::format(
        "{}: dtype '{}' is not supported (bool, int32, int64, float32, float64 are)", what, descr));
  }
}

Arg block_ref(const Array& a, std::span<const int64_t> coords) {
  return Arg::ref(Key(a.name(), coords));
}

// ---- the block layer -----------------------------------------------------------------------

BlockLayer::BlockLayer(std::string name, std::string kind, Shape numblocks,
                       std::vector<std::string> dependencies, Builder build)
    : Layer(std::move(name)),
      kind_(std::move(kind)),
      numblocks_(std::move(numblocks)),
      deps_(std::move(dependencies)),
      build_(std::move(build)) {}

size_t BlockLayer::size() const {
  size_t n = 1;
  for (int64_t b : numblocks_) n *= static_cast<size_t>(b);
  return n;
}

std::vector<Key> BlockLayer::keys() const {
  std::vector<Key> out;
  out.reserve(size());
  for_each_block(numblocks_, [&](std::span<const int64_t> c) { out.emplace_back(name(), c); });
  return out;
}

bool BlockLayer::has_key(const Key& key) const {
  if (key.name() != name()) return false;
  const auto idx = key.index();
  if (idx.size() != numblocks_.size()) return false;
  for (size_t k = 0; k < idx.size(); ++k) {
    if (idx[k] < 0 || idx[k] >= numblocks_[k]) return false;
  }
  return true;
}

void BlockLayer::materialize(std::span<const Key> keys, Graph& out,
                             std::vector<Key>& external) const {
  for (const Key& k : keys) {
    if (out.contains(k)) continue;
    out.add(k, build_(k.index(), external));
  }
}

// ---- Array ---------------------------------------------------------------------------------

Array make_array(std::string name, std::string label, DType dtype, Shape shape, Chunks chunks,
                 LayerPtr layer, std::span<const Array> inputs, std::shared_ptr<const Expr> expr) {
  auto d = std::make_shared<ArrayData>();
  d->name = std::move(name);
  d->label = std::move(label);
  d->dtype = dtype;
  d->shape = std::move(shape);
  d->chunks = std::move(chunks);
  d->expr = std::move(expr);
  auto hlg = std::make_shared<HighLevelGraph>();
  for (const Array& in : inputs) hlg->merge(in.graph());
  if (layer) hlg->add_layer(std::move(layer));
  d->hlg = std::move(hlg);
  return Array(std::move(d));
}

Array::Array() : Array(zeros({}, "auto")) {}

const std::string& Array::name() const noexcept {
  return d_->name;
}
DType Array::dtype() const noexcept {
  return d_->dtype;
}
const Shape& Array::shape() const noexcept {
  return d_->shape;
}
int Array::ndim() const noexcept {
  return static_cast<int>(d_->shape.size());
}
int64_t Array::size() const noexcept {
  int64_t n = 1;
  for (int64_t s : d_->shape) {
    if (s < 0) return -1;
    n *= s;
  }
  return n;
}
int64_t Array::nbytes() const noexcept {
  return size() * static_cast<int64_t>(dtype_size(dtype()));
}
const Chunks& Array::chunks() const noexcept {
  return d_->chunks;
}
Shape Array::chunksize() const {
  Shape out;
  for (const auto& c : d_->chunks) out.push_back(*std::max_element(c.begin(), c.end()));
  return out;
}
Shape Array::numblocks() const {
  return numblocks_of(d_->chunks);
}
bool Array::has_unknown_chunks() const noexcept {
  for (int64_t s : d_->shape) {
    if (s < 0) return true;
  }
  return false;
}

int64_t Array::npartitions() const {
  int64_t n = 1;
  for (const auto& c : d_->chunks) n *= static_cast<int64_t>(c.size());
  return n;
}

std::vector<Key> Array::keys() const {
  std::vector<Key> out;
  for_each_block(numblocks(), [&](std::span<const int64_t> c) { out.emplace_back(name(), c); });
  return out;
}

Key Array::block_key(std::span<const int64_t> block) const {
  const Shape nb = numblocks();
  if (block.size() != nb.size()) {
    throw IndexError(
        fmt::format("{} block indices for an array of {} dimensions", block.size(), nb.size()));
  }
  for (size_t k = 0; k < nb.size(); ++k) {
    if (block[k] < 0 || block[k] >= nb[k]) {
      throw IndexError(fmt::format("block index {} is out of bounds for axis {} with {} blocks",
                                   block[k], k, nb[k]));
    }
  }
  return Key(name(), block);
}

const HighLevelGraph& Array::graph() const {
  return *d_->hlg;
}

Graph Array::materialize() const {
  const std::vector<Key> k = keys();
  return d_->hlg->materialize(k);
}

NDArray Array::compute(const ComputeOptions& options) const {
  return std::get<0>(tessera::compute(*this, options));
}

Array Array::persist(const ComputeOptions& options) const {
  return std::get<0>(tessera::persist(*this, options));
}

void Array::visualize(const std::string& filename, const VisualizeOptions& options) const {
  tessera::visualize(materialize(), filename, options);
}

Array Array::T() const {
  std::vector<int> axes(static_cast<size_t>(ndim()));
  for (int k = 0; k < ndim(); ++k) axes[k] = ndim() - 1 - k;
  return transpose(std::move(axes));
}

Array Array::sum(Axes axis, ReduceOptions o) const {
  return array::sum(*this, std::move(axis), o);
}
Array Array::prod(Axes axis, ReduceOptions o) const {
  return array::prod(*this, std::move(axis), o);
}
Array Array::mean(Axes axis, ReduceOptions o) const {
  return array::mean(*this, std::move(axis), o);
}
Array Array::var(Axes axis, ReduceOptions o) const {
  return array::var(*this, std::move(axis), o);
}
Array Array::std(Axes axis, ReduceOptions o) const {
  return array::std(*this, std::move(axis), o);
}
Array Array::min(Axes axis, ReduceOptions o) const {
  return array::min(*this, std::move(axis), o);
}
Array Array::max(Axes axis, ReduceOptions o) const {
  return array::max(*this, std::move(axis), o);
}
Array Array::any(Axes axis, ReduceOptions o) const {
  return array::any(*this, std::move(axis), o);
}
Array Array::all(Axes axis, ReduceOptions o) const {
  return array::all(*this, std::move(axis), o);
}
Array Array::argmin(std::optional<int> axis, ReduceOptions o) const {
  return array::argmin(*this, axis, o);
}
Array Array::argmax(std::optional<int> axis, ReduceOptions o) const {
  return array::argmax(*this, axis, o);
}
Array Array::astype(DType dtype) const {
  return array::astype(*this, dtype);
}

namespace {
// A shape as dask prints it: unknown extents are "nan".
std::string dask_shape(const Shape& s) {
  std::vector<std::string> parts;
  for (int64_t x : s) parts.push_back(x < 0 ? "nan" : std::to_string(x));
  if (parts.size() == 1) return fmt::format("({},)", parts[0]);
  return fmt::format("({})", fmt::join(parts, ", "));
}
}  // namespace

std::string repr(const Array& a) {
  return fmt::format("tessera.array<{}, shape={}, dtype={}, chunksize={}>", a.data().label,
                     dask_shape(a.shape()), dtype_name(a.dtype()), dask_shape(a.chunksize()));
}

std::ostream& operator<<(std::ostream& os, const Array& a) {
  return os << repr(a);
}

Array with_chunks_of(const Array& a, std::span<const Value> values) {
  const Shape nb = a.numblocks();
  Chunks chunks = a.chunks();
  size_t i = 0;
  for_each_block(nb, [&](std::span<const int64_t> c) {
    const Value& v = values[i++];
    if (!v.is<NDArray>()) return;
    const NDArray& b = v.get<NDArray>();
    if (b.ndim() != a.ndim()) {
      throw ValueError(fmt::format("block {} has {} dimensions, the array {}",
                                   Key(a.name(), c).str(), b.ndim(), a.ndim()));
    }
    for (size_t k = 0; k < c.size(); ++k) {
      if (a.chunks()[k][c[k]] < 0) chunks[k][c[k]] = b.shape()[k];
    }
  });
  auto d = std::make_shared<ArrayData>(a.data());
  d->chunks = chunks;
  for (size_t k = 0; k < chunks.size(); ++k) {
    int64_t n = 0;
    for (int64_t s : chunks[k]) n += s;
    d->shape[k] = n;
  }
  d->expr = nullptr;
  return Array(std::move(d));
}

namespace {
std::vector<int64_t> shape_of(const NDArray& a) {
  return a.shape();
}
TESSERA_REGISTER_AS("array.shape-of", shape_of, tessera::OpOptions{.cheap = true});
}  // namespace

Array Array::compute_chunk_sizes(const ComputeOptions& options) const {
  if (!has_unknown_chunks()) return *this;
  const std::string sizes = make_name("chunk-sizes", std::vector<Value>{token_of(*this)});
  const std::string in = name();
  HighLevelGraph hlg = graph();
  hlg.add_layer(std::make_shared<BlockLayer>(
      sizes, "chunk-sizes", numblocks(), std::vector<std::string>{in},
      [in](std::span<const int64_t> c, std::vector<Key>& external) {
        Key k(in, c);
        external.push_back(k);
        return Task::call(get_op("array.shape-of"), {Arg::ref(std::move(k))});
      }));
  std::vector<Key> keys;
  for_each_block(numblocks(), [&](std::span<const int64_t> c) { keys.emplace_back(sizes, c); });
  const std::vector<Value> shapes = tessera::detail::compute_keys(hlg, keys, {}, options);
  std::vector<Value> fake;
  for (const Value& s : shapes)
    fake.push_back(Value::of(NDArray::constant(DType::Bool, s.get<std::vector<int64_t>>(), 0)));
  return with_chunks_of(*this, fake);
}

}  // namespace tessera::array

namespace tessera {

using array::Array;
using array::NDArray;

void CollectionTraits<Array>::graph(const Array& a, HighLevelGraph& out) {
  out.merge(a.graph());
}

void CollectionTraits<Array>::keys(const Array& a, std::vector<Key>& out) {
  array::for_each_block(a.numblocks(),
                        [&](std::span<const int64_t> c) { out.emplace_back(a.name(), c); });
}

NDArray CollectionTraits<Array>::finalize(const Array& input, std::span<const Value> values) {
  using namespace array;
  // Unknown block sizes are learned from the blocks themselves.
  const Array a = input.has_unknown_chunks() ? with_chunks_of(input, values) : input;
  const Shape nb = a.numblocks();
  NDArray out = NDArray::empty(a.dtype(), a.shape());
  const auto offs = offsets_of(a.chunks());
  const size_t item = dtype_size(a.dtype());
  const std::vector<int64_t> ostr = contiguous_strides(a.shape());
  size_t i = 0;
  for_each_block(nb, [&](std::span<const int64_t> c) {
    const Value& v = values[i++];
    if (!v.is<NDArray>()) {
      throw TypeError(fmt::format("block {} of {} holds {}, not an array", Key(a.name(), c).str(),
                                  a.name(), v.type().name));
    }
    const NDArray& b = v.get<NDArray>();
    const Shape want = block_shape(a.chunks(), c);
    if (b.shape() != want || b.dtype() != a.dtype()) {
      throw ValueError(fmt::format("block {} is {} {}, expected {} {}", Key(a.name(), c).str(),
                                   dtype_name(b.dtype()), shape_str(b.shape()),
                                   dtype_name(a.dtype()), shape_str(want)));
    }
    // The destination of this block: a strided view into `out`.
    int64_t off = 0;
    for (size_t k = 0; k < c.size(); ++k) off += offs[k][c[k]] * ostr[k];
    auto* dst = static_cast<std::byte*>(out.raw_mutable_data()) + off * static_cast<int64_t>(item);
    if (b.size() == 0) return;
    const int nd = b.ndim();
    if (nd == 0) {
      std::memcpy(dst, b.raw_data(), item);
      return;
    }
    const int64_t row = want[nd - 1];
    const NDArray src = b.is_contiguous() ? b : b.contiguous();
    const auto* s = static_cast<const std::byte*>(src.raw_data());
    // Copy row by row (the last axis is contiguous in both).
    std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
    const int64_t rows = b.size() / row;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t doff = 0;
      for (int k = 0; k < nd - 1; ++k) doff += idx[k] * ostr[k];
      std::memcpy(dst + doff * static_cast<int64_t>(item), s + r * row * static_cast<int64_t>(item),
                  static_cast<size_t>(row) * item);
      for (int k = nd - 2; k >= 0; --k) {
        if (++idx[k] < want[k]) break;
        idx[k] = 0;
      }
    }
  });
  return out;
}

Array CollectionTraits<Array>::rebuild(const Array& a, std::span<const Value> values) {
  using namespace array;
  Graph g;
  size_t i = 0;
  for_each_block(a.numblocks(), [&](std::span<const int64_t> c) {
    g.add(Key(a.name(), c), Task::literal(values[i++]));
  });
  auto d = std::make_shared<ArrayData>(a.data());
  d->expr = nullptr;
  d->hlg =
      std::make_shared<HighLevelGraph>(std::make_shared<MaterializedLayer>(a.name(), std::move(g)));
  return Array(std::move(d));
}

void CollectionTraits<Array>::optimize(Graph&, std::span<const Key>, const ComputeOptions&) {
  // Elementwise chains are fused when the expression is built (one layer per chain), and
  // materialize() already culls; nothing is left to do on the task graph.
}

}  // namespace tessera

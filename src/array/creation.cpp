// Creation functions: constant, ranges, identity, in-memory arrays and seeded random blocks.
#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "array/array_internal.hpp"
#include "array/ndarray_internal.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera::array {

namespace {

// ---- block ops (registered, so graphs of arrays can be shipped) ----

NDArray constant_block(const std::string& dtype, const std::vector<int64_t>& shape, double value) {
  return NDArray::constant(dtype_from_name(dtype), shape, value);
}
TESSERA_REGISTER_AS("array.constant", constant_block);

// Values start + (offset + i) * step, i < n; element `last` (if in range) is `stop` exactly.
// With `floor`, integer dtypes take the floor of each value (NumPy's linspace), not the value
// truncated toward zero.
NDArray range_block(const std::string& dtype, double start, double step, int64_t offset, int64_t n,
                    int64_t last, double stop, bool floor) {
  NDArray out = NDArray::empty(dtype_from_name(dtype), {n});
  visit_dtype(out.dtype(), [&](auto t) {
    using T = decltype(t);
    T* p = static_cast<T*>(out.raw_mutable_data());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = offset + i;
      double v = g == last ? stop : start + static_cast<double>(g) * step;
      if (floor && is_integer(out.dtype())) v = std::floor(v);
      p[i] = convert<T, double>(v);
    }
  });
  return out;
}
TESSERA_REGISTER_AS("array.range", range_block);

NDArray eye_block(const std::string& dtype, int64_t rows, int64_t cols, int64_t row0, int64_t col0,
                  int64_t k) {
  NDArray out = NDArray::zeros(dtype_from_name(dtype), {rows, cols});
  visit_dtype(out.dtype(), [&](auto t) {
    using T = decltype(t);
    T* p = static_cast<T*>(out.raw_mutable_data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t c = row0 + r + k - col0;
      if (c >= 0 && c < cols) p[r * cols + c] = T(1);
    }
  });
  return out;
}
TESSERA_REGISTER_AS("array.eye", eye_block);

// A view of [starts, stops) of an in-memory array.
NDArray getitem_block(const NDArray& a, const std::vector<int64_t>& starts,
                      const std::vector<int64_t>& stops) {
  NDArray v = a;
  for (size_t k = 0; k < starts.size(); ++k) v = v.slice(static_cast<int>(k), starts[k], stops[k]);
  return v;
}
TESSERA_REGISTER_AS("array.getitem", getitem_block, tessera::OpOptions{.cheap = true});

// ---- random: xoshiro256++ seeded per block through splitmix64 ----

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// xoshiro256++ (Blackman and Vigna, "Scrambled linear pseudorandom number generators", 2021).
class Xoshiro {
 public:
  Xoshiro(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (splitmix64(stream) + 0x632be59bd9b4e019ULL);
    for (auto& w : s_) w = splitmix64(x);
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[0] + s_[3], 23) + s_[0];
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

NDArray random_block(const std::string& kind, const std::vector<int64_t>& shape, int64_t seed,
                     int64_t stream, double a, double b) {
  Xoshiro rng(static_cast<uint64_t>(seed), static_cast<uint64_t>(stream));
  if (kind == "integers") {
    NDArray out = NDArray::empty(DType::Int64, shape);
    auto* p = out.mutable_data<int64_t>();
    const auto lo = static_cast<int64_t>(a);
    const auto span = static_cast<uint64_t>(static_cast<int64_t>(b) - lo);
    // Lemire's nearly divisionless bounded integers (ACM TOMACS 2019), exact (rejection).
    for (int64_t i = 0; i < out.size(); ++i) {
      __uint128_t m = static_cast<__uint128_t>(rng.next()) * span;
      auto low = static_cast<uint64_t>(m);
      if (low < span) {
        const uint64_t threshold = -span % span;
        while (low < threshold) {
          m = static_cast<__uint128_t>(rng.next()) * span;
          low = static_cast<uint64_t>(m);
        }
      }
      p[i] = lo + static_cast<int64_t>(m >> 64);
    }
    return out;
  }
  NDArray out = NDArray::empty(DType::Float64, shape);
  double* p = out.mutable_data<double>();
  const int64_t n = out.size();
  if (kind == "uniform") {
    const double w = b - a;
    for (int64_t i = 0; i < n; ++i) p[i] = a + w * rng.uniform();
  } else {  // normal: Box-Muller, two values per pair of uniforms
    for (int64_t i = 0; i < n; i += 2) {
      const double u1 = 1.0 - rng.uniform();  // (0, 1]: log is finite
      const double u2 = rng.uniform();
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double t = 2.0 * std::numbers::pi * u2;
      p[i] = a + b * r * std::cos(t);
      if (i + 1 < n) p[i + 1] = a + b * r * std::sin(t);
    }
  }
  return out;
}
TESSERA_REGISTER_AS("array.random", random_block);

Array block_array(std::string label, std::vector<Value> token, DType dtype, Shape shape,
                  Chunks chunks, std::function<Task(std::span<const int64_t>, const Shape&)> make) {
  token.push_back(Value::of(std::string(dtype_name(dtype))));
  token.push_back(Value::of(shape));
  for (const auto& c : chunks) token.push_back(Value::of(c));
  std::string name = make_name(label, token);
  const Chunks ch = chunks;
  auto layer = std::make_shared<BlockLayer>(
      name, label, numblocks_of(chunks), std::vector<std::string>{},
      [ch, make = std::move(make)](std::span<const int64_t> c, std::vector<Key>&) {
        return make(c, block_shape(ch, c));
      });
  return make_array(std::move(name), std::move(label), dtype, std::move(shape), std::move(chunks),
                    std::move(layer), {});
}

Array constant_array(std::string label, const Shape& shape, double value, const ChunkSpec& chunks,
                     DType dtype) {
  Chunks ch = chunks.resolve(shape, dtype);
  const std::string dt(dtype_name(dtype));
  return block_array(label, {Value::of(value)}, dtype, shape, std::move(ch),
                     [dt, value](std::span<const int64_t>, const Shape& s) {
                       return Task::call(
                           get_op("array.constant"),
                           {Arg(Value::of(dt)), Arg(Value::of(s)), Arg(Value::of(value))});
                     });
}

}  // namespace

Array zeros(const Shape& shape, const ChunkSpec& chunks, DType dtype) {
  return constant_array("zeros", shape, 0, chunks, dtype);
}
Array ones(const Shape& shape, const ChunkSpec& chunks, DType dtype) {
  return constant_array("ones", shape, 1, chunks, dtype);
}
Array empty(const Shape& shape, const ChunkSpec& chunks, DType dtype) {
  return constant_array("empty", shape, 0, chunks, dtype);
}
Array full(const Shape& shape, double fill_value, const ChunkSpec& chunks, DType dtype) {
  return constant_array("full", shape, fill_value, chunks, dtype);
}
Array zeros_like(const Array& a, std::optional<DType> dtype) {
  return zeros(a.shape(), a.chunks(), dtype.value_or(a.dtype()));
}
Array ones_like(const Array& a, std::optional<DType> dtype) {
  return ones(a.shape(), a.chunks(), dtype.value_or(a.dtype()));
}
Array empty_like(const Array& a, std::optional<DType> dtype) {
  return empty(a.shape(), a.chunks(), dtype.value_or(a.dtype()));
}
Array full_like(const Array& a, double fill_value, std::optional<DType> dtype) {
  return full(a.shape(), fill_value, a.chunks(), dtype.value_or(a.dtype()));
}

namespace {

Array range_array(std::string label, std::vector<Value> token, double start, double step, int64_t n,
                  int64_t last, double stop, bool floor, const ChunkSpec& chunks, DType dtype) {
  Chunks ch = chunks.resolve({n}, dtype);
  const auto offs = offsets_of(ch);
  const std::string dt(dtype_name(dtype));
  return block_array(std::move(label), std::move(token), dtype, {n}, std::move(ch),
                     [=](std::span<const int64_t> c, const Shape& s) {
                       return Task::call(
                           get_op("array.range"),
                           {Arg(Value::of(dt)), Arg(Value::of(start)), Arg(Value::of(step)),
                            Arg(Value::of(offs[0][c[0]])), Arg(Value::of(s[0])),
                            Arg(Value::of(last)), Arg(Value::of(stop)), Arg(Value::of(floor))});
                     });
}

}  // namespace

Array arange(double start, double stop, double step, const ChunkSpec& chunks, DType dtype) {
  if (step == 0 || !std::isfinite(step) || !std::isfinite(start) || !std::isfinite(stop)) {
    throw ValueError(fmt::format(
        "arange({}, {}, {}): step must be finite and nonzero, bounds finite", start, stop, step));
  }
  const auto n = static_cast<int64_t>(std::max(0.0, std::ceil((stop - start) / step)));
  return range_array("arange", {Value::of(start), Value::of(stop), Value::of(step)}, start, step, n,
                     -1, 0, false, chunks, dtype);
}

Array arange(double stop) {
  return arange(0, stop, 1, "auto", DType::Float64);
}

Array linspace(double start, double stop, int64_t num, const ChunkSpec& chunks, bool endpoint,
               DType dtype) {
  if (num < 0)
    throw ValueError(fmt::format("linspace: number of samples, {}, must be non-negative", num));
  const int64_t div = endpoint ? num - 1 : num;
  const double step = div > 0 ? (stop - start) / static_cast<double>(div) : 0.0;
  const int64_t last = endpoint && num > 1 ? num - 1 : -1;
  return range_array("linspace",
                     {Value::of(start), Value::of(stop), Value::of(num), Value::of(endpoint)},
                     start, step, num, last, stop, true, chunks, dtype);
}

Array eye(int64_t n, const ChunkSpec& chunks, std::optional<int64_t> m, int64_t k, DType dtype) {
  const int64_t cols = m.value_or(n);
  if (n < 0 || cols < 0)
    throw ValueError(fmt::format("eye: negative dimensions ({}, {})", n, cols));
  Chunks ch = chunks.resolve({n, cols}, dtype);
  const auto offs = offsets_of(ch);
  const std::string dt(dtype_name(dtype));
  return block_array("eye", {Value::of(k)}, dtype, {n, cols}, std::move(ch),
                     [=](std::span<const int64_t> c, const Shape& s) {
                       return Task::call(get_op("array.eye"),
                                         {Arg(Value::of(dt)), Arg(Value::of(s[0])),
                                          Arg(Value::of(s[1])), Arg(Value::of(offs[0][c[0]])),
                                          Arg(Value::of(offs[1][c[1]])), Arg(Value::of(k))});
                     });
}

Array from_ndarray(const NDArray& a, const ChunkSpec& chunks) {
  Chunks ch = chunks.resolve(a.shape(), a.dtype());
  const Value held = Value::of(a);
  const std::string original = make_name("array-original", std::span<const Value>(&held, 1));
  Graph g;
  g.add(Key(original), Task::literal(held));
  const auto offs = offsets_of(ch);
  std::string name =
      make_name("array", std::vector<Value>{Value::of(original), Value::of(chunks_str(ch))});
  auto layer = std::make_shared<BlockLayer>(
      name, "from-ndarray", numblocks_of(ch), std::vector<std::string>{original},
      [original, offs](std::span<const int64_t> c, std::vector<Key>& external) {
        std::vector<int64_t> lo(c.size()), hi(c.size());
        for (size_t k = 0; k < c.size(); ++k) {
          lo[k] = offs[k][c[k]];
          hi[k] = offs[k][c[k] + 1];
        }
        external.emplace_back(original);
        return Task::call(get_op("array.getitem"),
                          {Arg::ref(Key(original)), Arg(Value::of(lo)), Arg(Value::of(hi))});
      });
  auto hold = make_array(original, "array", a.dtype(), a.shape(), {},
                         std::make_shared<MaterializedLayer>(original, std::move(g)), {});
  return make_array(std::move(name), "array", a.dtype(), a.shape(), std::move(ch), std::move(layer),
                    std::span<const Array>(&hold, 1));
}

namespace random {

namespace {

Array random_array(const std::string& kind, const Shape& shape, const ChunkSpec& chunks,
                   uint64_t seed, double a, double b, DType dtype) {
  Chunks ch = chunks.resolve(shape, dtype);
  const Shape nb = numblocks_of(ch);
  return block_array(
      kind, {Value::of(static_cast<int64_t>(seed)), Value::of(a), Value::of(b)}, dtype, shape,
      std::move(ch), [=](std::span<const int64_t> c, const Shape& s) {
        int64_t linear = 0;
        for (size_t k = 0; k < c.size(); ++k) linear = linear * nb[k] + c[k];
        return Task::call(
            get_op("array.random"),
            {Arg(Value::of(kind)), Arg(Value::of(s)), Arg(Value::of(static_cast<int64_t>(seed))),
             Arg(Value::of(linear)), Arg(Value::of(a)), Arg(Value::of(b))});
      });
}

}  // namespace

Array uniform(const Shape& shape, const ChunkSpec& chunks, uint64_t seed, double low, double high) {
  if (!(low <= high) || !std::isfinite(high - low)) {
    throw ValueError(fmt::format("uniform: need finite low <= high, got [{}, {})", low, high));
  }
  return random_array("uniform", shape, chunks, seed, low, high, DType::Float64);
}

Array random(const Shape& shape, const ChunkSpec& chunks, uint64_t seed) {
  return uniform(shape, chunks, seed, 0, 1);
}

Array normal(const Shape& shape, const ChunkSpec& chunks, uint64_t seed, double loc, double scale) {
  if (!(scale >= 0))
    throw ValueError(fmt::format("normal: scale must be non-negative, not {}", scale));
  return random_array("normal", shape, chunks, seed, loc, scale, DType::Float64);
}

Array integers(int64_t low, int64_t high, const Shape& shape, const ChunkSpec& chunks,
               uint64_t seed) {
  if (low >= high) throw ValueError(fmt::format("integers: low >= high ({} >= {})", low, high));
  return random_array("integers", shape, chunks, seed, static_cast<double>(low),
                      static_cast<double>(high), DType::Int64);
}

}  // namespace random

}  // namespace tessera::array

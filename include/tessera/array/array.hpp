// File: tessera/array/array.hpp
//
// Array: a lazy N-d array cut into chunks (NDArrays), tessera's dask.array. Every operation
// adds a high-level layer to the array's graph and returns at once, after checking shapes,
// dtypes and chunks; nothing is computed until compute(), store() or to_npy().
//
//   namespace ta = tessera::array;
//   auto y = ta::ones({15}, {5});
//   std::cout << y;     // tessera.array<ones, shape=(15,), dtype=float64, chunksize=(5,)>
//   double v = y.sum().compute().item<double>();                    // 15
//   auto X = ta::random::uniform({10, 10}, {3, 3}, /*seed=*/42);
//   ta::NDArray z = (ta::matmul(X.T(), X) + X.T()).compute();
//   auto m = X.mean(0, {.keepdims = true});                         // shape (1, 10)
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessera/array/dtype.hpp"
#include "tessera/array/ndarray.hpp"
#include "tessera/core/collection.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"
#include "tessera/diagnostics/visualize.hpp"

namespace tessera::array {

// Block sizes along each axis: chunks[axis][i] is the extent of block i along axis.
using Chunks = std::vector<std::vector<int64_t>>;

// How to cut an array into chunks, as dask's `chunks=` argument:
//   "auto"         blocks near the configured chunk size (chunk_size_limit())
//   5              blocks of 5 along every axis
//   {1000, -1}     block shape per axis (-1: the whole axis)
//   Chunks{{2, 3}} explicit block sizes per axis
class ChunkSpec {
 public:
  ChunkSpec(const char* spec) : ChunkSpec(std::string(spec)) {}         // NOLINT
  ChunkSpec(std::string spec);                                          // NOLINT
  ChunkSpec(int64_t uniform);                                           // NOLINT
  ChunkSpec(int uniform) : ChunkSpec(static_cast<int64_t>(uniform)) {}  // NOLINT
  ChunkSpec(std::initializer_list<int64_t> block_shape);                // NOLINT
  ChunkSpec(Shape block_shape);                                         // NOLINT
  ChunkSpec(Chunks chunks);                                             // NOLINT

  // The chunks this spec gives an array of `shape` and `dtype`; ValueError naming the
  // spec and the shape when they do not fit.
  Chunks resolve(const Shape& shape, DType dtype) const;

 private:
  enum class Kind { Auto, Uniform, BlockShape, Explicit } kind_;
  int64_t uniform_ = 0;
  Shape block_shape_;
  Chunks chunks_;
};

// The chunk size "auto" aims for, in bytes (dask's array.chunk-size; 128 MiB by default,
// or TESSERA_ARRAY_CHUNK_SIZE).
int64_t chunk_size_limit();
// Sets it; returns the previous value.
int64_t set_chunk_size_limit(int64_t bytes);

// How rechunk plans its stages (dask's rechunk(threshold=, block_size_limit=)).
struct RechunkOptions {
  // Go through intermediate chunkings when one step would cut the blocks into more than
  // `threshold` times as many pieces as there are input and output blocks together.
  double threshold = 4.0;
  // No intermediate block above this many bytes (0: chunk_size_limit()). A limit below the
  // largest input or output block is raised to it.
  int64_t block_size_limit = 0;
  // What handling one piece costs, in bytes of copying: a staged plan is taken only when
  // its extra copies of the array cost less than the pieces it saves. 0: stage whenever the
  // pieces pass the threshold, as dask does.
  int64_t piece_cost_bytes = 8192;
};

// The chunkings a rechunk from `from` to `to` goes through; the last is `to`.
std::vector<Chunks> plan_rechunk(const Chunks& from, const Chunks& to, DType dtype,
                                 const RechunkOptions& options = {});

// Which axes a reduction reduces: all of them (the default), one, or several.
class Axes {
 public:
  Axes() = default;                                                     // every axis
  Axes(int axis) : axes_{axis}, all_(false) {}                          // NOLINT
  Axes(std::initializer_list<int> axes) : axes_(axes), all_(false) {}   // NOLINT
  Axes(std::vector<int> axes) : axes_(std::move(axes)), all_(false) {}  // NOLINT
  // The axes, normalized for an array of `ndim` dimensions (negative counted from the end,
  // sorted); AxisError naming the axis otherwise.
  std::vector<int> resolve(int ndim) const;
  bool all() const noexcept { return all_; }

 private:
  std::vector<int> axes_;
  bool all_ = true;
};

// Options of reductions, as NumPy's and dask's keyword arguments.
struct ReduceOptions {
  bool keepdims = false;  // keep reduced axes with length 1
  int split_every = 0;    // blocks combined per tree node (0: 4, or 2 when reducing 3+ axes)
  int ddof = 0;           // var and std: delta degrees of freedom
};

// A slice along one axis, as Python's start:stop:step (negative values count from the end;
// a negative step walks backwards). Slice{} is the whole axis.
struct Slice {
  std::optional<int64_t> start, stop, step;
};
// x[{ta::slice(1, 8, 2)}] is NumPy's x[1:8:2]; ta::slice() is the whole axis (`:`).
inline Slice slice(std::optional<int64_t> start = {}, std::optional<int64_t> stop = {},
                   std::optional<int64_t> step = {}) {
  return Slice{start, stop, step};
}

// One entry of an index: an integer (the axis disappears) or a slice.
class Index {
 public:
  Index(int64_t i) : integer_(i), is_integer_(true) {}  // NOLINT
  Index(int i) : Index(static_cast<int64_t>(i)) {}      // NOLINT
  Index(Slice s) : slice_(s) {}                         // NOLINT
  bool is_integer() const noexcept { return is_integer_; }
  int64_t integer() const noexcept { return integer_; }
  const Slice& slice() const noexcept { return slice_; }

 private:
  int64_t integer_ = 0;
  Slice slice_;
  bool is_integer_ = false;
};

class Array;
struct ArrayData;

// A lazy chunked N-d array.
class Array {
 public:
  // A 0-d float64 array holding 0 (so that Array is default-constructible).
  Array();
  explicit Array(std::shared_ptr<const ArrayData> data) : d_(std::move(data)) {}

  // The name of its keys: "<op>-<token>", deterministic.
  const std::string& name() const noexcept;
  DType dtype() const noexcept;
  const Shape& shape() const noexcept;
  int ndim() const noexcept;
  // Number of elements.
  int64_t size() const noexcept;
  // Bytes of the whole array.
  int64_t nbytes() const noexcept;
  const Chunks& chunks() const noexcept;
  // The largest block extent along each axis.
  Shape chunksize() const;
  // Blocks along each axis.
  Shape numblocks() const;
  // Total number of blocks.
  int64_t npartitions() const;
  // True after boolean-mask indexing: some block sizes (and the shape along those axes) are
  // not known until computed; they read as -1. compute_chunk_sizes() finds them.
  bool has_unknown_chunks() const noexcept;
  // The same array with its unknown block sizes computed (the blocks are computed to learn
  // their sizes, and not kept), as dask's compute_chunk_sizes().
  Array compute_chunk_sizes(const ComputeOptions& options = {}) const;

  // The keys of its blocks, row-major over the block grid.
  std::vector<Key> keys() const;
  // The key of one block.
  Key block_key(std::span<const int64_t> block) const;
  // Its high-level graph (layers; nothing materialized).
  const HighLevelGraph& graph() const;
  // Its block tasks as a Graph (materialized).
  Graph materialize() const;

  // Computes the array into one contiguous NDArray.
  NDArray compute(const ComputeOptions& options = {}) const;
  // Computes the blocks and returns an array holding them (same keys).
  Array persist(const ComputeOptions& options = {}) const;
  // Draws its task graph (DOT, or SVG/PNG/PDF through graphviz's `dot`).
  void visualize(const std::string& filename, const VisualizeOptions& options = {}) const;

  // ---- shape ----
  // Axes reversed (NumPy's .T).
  Array T() const;
  Array transpose() const { return T(); }
  // Axes permuted: axis i of the result is axis axes[i] of this array.
  Array transpose(std::vector<int> axes) const;
  // Elements converted to `dtype`.
  Array astype(DType dtype) const;
  // The same array cut into other chunks, through intermediate chunkings when one step
  // would cut the blocks into too many pieces (see RechunkOptions and plan_rechunk).
  Array rechunk(const ChunkSpec& chunks, const RechunkOptions& options = {}) const;
  // NumPy's basic indexing: x[{2, ta::slice(1, -1), ta::slice()}]. Missing trailing entries mean
  // whole axes. IndexError naming the index, axis and size when out of bounds.
  Array operator[](std::initializer_list<Index> index) const;
  // Indexing with a lazy array. A bool mask: a 1-D mask selects along axis 0, a mask of this
  // array's shape selects elements (flattened); the result's length is unknown until
  // computed (has_unknown_chunks()). Integers (0-D or 1-D): take(*this, index, 0).
  Array operator[](const Array& index) const;
  Array getitem(std::span<const Index> index) const;
  // The same elements in another shape (one entry may be -1).
  Array reshape(Shape shape) const;
  // The elements as one axis.
  Array ravel() const;

  // ---- reductions (NumPy's names; `axis` defaults to every axis) ----
  Array sum(Axes axis = {}, ReduceOptions options = {}) const;
  Array prod(Axes axis = {}, ReduceOptions options = {}) const;
  Array mean(Axes axis = {}, ReduceOptions options = {}) const;
  Array var(Axes axis = {}, ReduceOptions options = {}) const;
  Array std(Axes axis = {}, ReduceOptions options = {}) const;
  Array min(Axes axis = {}, ReduceOptions options = {}) const;
  Array max(Axes axis = {}, ReduceOptions options = {}) const;
  Array any(Axes axis = {}, ReduceOptions options = {}) const;
  Array all(Axes axis = {}, ReduceOptions options = {}) const;
  // Index of the smallest / largest element along one axis (or of the flattened array).
  Array argmin(std::optional<int> axis = {}, ReduceOptions options = {}) const;
  Array argmax(std::optional<int> axis = {}, ReduceOptions options = {}) const;

  const ArrayData& data() const noexcept { return *d_; }
  const std::shared_ptr<const ArrayData>& data_ptr() const noexcept { return d_; }

 private:
  std::shared_ptr<const ArrayData> d_;
};

// "tessera.array<ones, shape=(15,), dtype=float64, chunksize=(5,)>"
std::ostream& operator<<(std::ostream& os, const Array& a);
std::string repr(const Array& a);

// ---- creation -------------------------------------------------------------------------------
Array zeros(const Shape& shape, const ChunkSpec& chunks = "auto", DType dtype = DType::Float64);
Array ones(const Shape& shape, const ChunkSpec& chunks = "auto", DType dtype = DType::Float64);
// Uninitialized in NumPy; here zeros (tessera never hands out unspecified memory).
Array empty(const Shape& shape, const ChunkSpec& chunks = "auto", DType dtype = DType::Float64);
Array full(const Shape& shape, double fill_value, const ChunkSpec& chunks = "auto",
           DType dtype = DType::Float64);
Array zeros_like(const Array& a, std::optional<DType> dtype = {});
Array ones_like(const Array& a, std::optional<DType> dtype = {});
Array empty_like(const Array& a, std::optional<DType> dtype = {});
Array full_like(const Array& a, double fill_value, std::optional<DType> dtype = {});
// Values start, start + step, … below stop (NumPy's arange; float64 unless given).
Array arange(double start, double stop, double step = 1, const ChunkSpec& chunks = "auto",
             DType dtype = DType::Float64);
Array arange(double stop);
// `num` values evenly spaced over [start, stop] (or [start, stop) without endpoint); integer
// dtypes take the floor, as in NumPy.
Array linspace(double start, double stop, int64_t num, const ChunkSpec& chunks = "auto",
               bool endpoint = true, DType dtype = DType::Float64);
// An N×M matrix with ones on the k-th diagonal.
Array eye(int64_t n, const ChunkSpec& chunks = "auto", std::optional<int64_t> m = {}, int64_t k = 0,
          DType dtype = DType::Float64);
// An in-memory array cut into chunks (one task holds it; blocks are views of it).
Array from_ndarray(const NDArray& a, const ChunkSpec& chunks = "auto");

namespace random {
// Uniform on [low, high), seeded per block: the result depends on seed and chunks only,
// never on the scheduler or the number of threads.
Array uniform(const Shape& shape, const ChunkSpec& chunks = "auto", uint64_t seed = 0,
              double low = 0, double high = 1);
// NumPy's random.random: uniform on [0, 1).
Array random(const Shape& shape, const ChunkSpec& chunks = "auto", uint64_t seed = 0);
// Normal with mean `loc` and standard deviation `scale`.
Array normal(const Shape& shape, const ChunkSpec& chunks = "auto", uint64_t seed = 0,
             double loc = 0, double scale = 1);
// Integers on [low, high), int64.
Array integers(int64_t low, int64_t high, const Shape& shape, const ChunkSpec& chunks = "auto",
               uint64_t seed = 0);
}  // namespace random

// ---- elementwise (NumPy broadcasting and type promotion) --------------------------------------
// A number on either side of an operator is a 0-d array promoted by value like NumPy 1.24's
// Python scalars: it keeps the array's type when the value fits (float32 + 1.5, int32 + 1)
// and widens it otherwise (int32 + 3000000000 is int64; float32 + 70000 or + 1e300 is
// float64); a number of a higher kind gives its default type (int32 + 1.5 is float64).
Array operator+(const Array& a, const Array& b);
Array operator-(const Array& a, const Array& b);
Array operator*(const Array& a, const Array& b);
Array operator/(const Array& a, const Array& b);
Array operator-(const Array& a);
Array operator==(const Array& a, const Array& b);
Array operator!=(const Array& a, const Array& b);
Array operator<(const Array& a, const Array& b);
Array operator<=(const Array& a, const Array& b);
Array operator>(const Array& a, const Array& b);
Array operator>=(const Array& a, const Array& b);
Array operator&(const Array& a, const Array& b);
Array operator|(const Array& a, const Array& b);
Array operator^(const Array& a, const Array& b);
Array operator~(const Array& a);

// A number as a 0-d array that adapts to the other operand's type (see above).
Array scalar(double v);
Array scalar(int64_t v);
Array scalar(bool v);
Array scalar(int v);

#define TESSERA_ARRAY_SCALAR_OPS(op)                    \
  inline Array operator op(const Array& a, double b) {  \
    return a op scalar(b);                              \
  }                                                     \
  inline Array operator op(double a, const Array& b) {  \
    return scalar(a) op b;                              \
  }                                                     \
  inline Array operator op(const Array& a, int b) {     \
    return a op scalar(static_cast<int64_t>(b));        \
  }                                                     \
  inline Array operator op(int a, const Array& b) {     \
    return scalar(static_cast<int64_t>(a)) op b;        \
  }                                                     \
  inline Array operator op(const Array& a, int64_t b) { \
    return a op scalar(b);                              \
  }                                                     \
  inline Array operator op(int64_t a, const Array& b) { \
    return scalar(a) op b;                              \
  }
TESSERA_ARRAY_SCALAR_OPS(+)
TESSERA_ARRAY_SCALAR_OPS(-)
TESSERA_ARRAY_SCALAR_OPS(*)
TESSERA_ARRAY_SCALAR_OPS(/)
TESSERA_ARRAY_SCALAR_OPS(==)
TESSERA_ARRAY_SCALAR_OPS(!=)
TESSERA_ARRAY_SCALAR_OPS(<)
TESSERA_ARRAY_SCALAR_OPS(<=)
TESSERA_ARRAY_SCALAR_OPS(>)
TESSERA_ARRAY_SCALAR_OPS(>=)
#undef TESSERA_ARRAY_SCALAR_OPS

// Float functions: integers and bools give float64, floats keep their type.
Array exp(const Array& a);
Array log(const Array& a);
Array sqrt(const Array& a);
Array sin(const Array& a);
Array cos(const Array& a);
Array tanh(const Array& a);
// Floor and ceiling: float results, as in NumPy 1.24 (integers and bools give float64).
Array floor(const Array& a);
Array ceil(const Array& a);
// Type-preserving functions.
Array abs(const Array& a);
// Rounds half to even, like NumPy (bool gives float64).
Array round(const Array& a);
// True where an element is NaN (bool).
Array isnan(const Array& a);
// `a` where `condition`, else `b`.
Array where(const Array& condition, const Array& a, const Array& b);
// Elements limited to [lo, hi].
Array clip(const Array& a, double lo, double hi);
// Elementwise maximum / minimum (NaN wins, as in NumPy).
Array maximum(const Array& a, const Array& b);
Array minimum(const Array& a, const Array& b);
// a ** b.
Array power(const Array& a, const Array& b);
Array astype(const Array& a, DType dtype);

// ---- reductions -----------------------------------------------------------------------------
Array sum(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array prod(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array mean(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array var(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array std(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array min(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array max(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array any(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array all(const Array& a, Axes axis = {}, ReduceOptions options = {});
// Sum and mean ignoring NaN.
Array nansum(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array nanmean(const Array& a, Axes axis = {}, ReduceOptions options = {});
// Number of elements that are not zero (int64).
Array count_nonzero(const Array& a, Axes axis = {}, ReduceOptions options = {});
Array argmin(const Array& a, std::optional<int> axis = {}, ReduceOptions options = {});
Array argmax(const Array& a, std::optional<int> axis = {}, ReduceOptions options = {});

// ---- indexing and shape ---------------------------------------------------------------------
// Elements at `indices` along `axis` (NumPy's take; negative indices count from the end).
Array take(const Array& a, const std::vector<int64_t>& indices, int axis = 0);
// The same with lazy indices (a 0-D or 1-D integer array): the result's blocks along `axis`
// are the index array's, and an index out of range fails the computation with IndexError.
Array take(const Array& a, const Array& indices, int axis = 0);
// Elements where `condition` is true along `axis` (NumPy's compress / boolean-mask indexing);
// ValueError when the mask's length differs from the axis.
Array compress(const std::vector<bool>& condition, const Array& a, int axis = 0);
// The same with a lazy 1-D bool mask: the result's block sizes along `axis` are unknown until
// computed (see Array::has_unknown_chunks).
Array compress(const Array& condition, const Array& a, int axis = 0);
Array reshape(const Array& a, Shape shape);
Array ravel(const Array& a);
// Drops length-1 axes (all of them, or those given; ValueError if one is longer).
Array squeeze(const Array& a, Axes axis = {});
// Inserts a length-1 axis at `axis`.
Array expand_dims(const Array& a, int axis);
// Joins arrays along an existing axis; the other axes must match.
Array concatenate(const std::vector<Array>& arrays, int axis = 0);
// Joins arrays along a new axis; all shapes must match.
Array stack(const std::vector<Array>& arrays, int axis = 0);
// `a` broadcast to `shape` (NumPy's rules; no copy per block).
Array broadcast_to(const Array& a, const Shape& shape);

// ---- block functions ------------------------------------------------------------------------
// Options of map_blocks.
struct MapBlocksOptions {
  std::optional<DType> dtype{};    // of the result blocks (default: the first input's)
  std::optional<Chunks> chunks{};  // of the result (default: the first input's)
  std::string name{};              // key prefix (default: the function's name)
};

// Applies `op` (NDArray f(const NDArray&, ...), one argument per array) to corresponding
// blocks. The arrays are aligned like elementwise operands (chunks unified, broadcasting).
Array map_blocks(std::shared_ptr<const Op> op, const std::vector<Array>& arrays,
                 MapBlocksOptions options = {});

namespace detail {
// The op for a block function: the registered op of a registered free function (shippable
// to other processes), else a local closure op named `label`.
template <class F>
std::shared_ptr<const Op> block_function_op(F&& fn, const std::string& label) {
  using Fn = std::decay_t<F>;
  if constexpr (std::is_pointer_v<Fn> && std::is_function_v<std::remove_pointer_t<Fn>>) {
    const Fn ptr = fn;
    if (const Op* op = find_op_by_fn(reinterpret_cast<void (*)()>(ptr))) {
      return std::shared_ptr<const Op>(std::shared_ptr<const Op>(), op);
    }
    return make_closure_op(label, ptr);
  } else {
    return make_closure_op(label, std::forward<F>(fn));
  }
}
}  // namespace detail

// map_blocks with a registered function (shippable), a plain function or a lambda (local).
template <class F>
Array map_blocks(F&& fn, const std::vector<Array>& arrays, MapBlocksOptions options = {}) {
  auto op = detail::block_function_op(std::forward<F>(fn),
                                      options.name.empty() ? "map_blocks" : options.name);
  return map_blocks(std::move(op), arrays, std::move(options));
}
template <class F>
Array map_blocks(F&& fn, const Array& a, MapBlocksOptions options = {}) {
  return map_blocks(std::forward<F>(fn), std::vector<Array>{a}, std::move(options));
}

// One input of blockwise: an array and one index letter per axis ("ij").
struct BlockwiseInput {
  Array array;
  std::string index;
};
// Options of blockwise.
struct BlockwiseOptions {
  std::optional<DType> dtype{};  // of the result (default: the first input's)
  std::string name{};            // key prefix (default: the function's name)
  // Contracted letters hand the op one NDArray, the blocks along them concatenated
  // (dask's concatenate=True), instead of a list of blocks.
  bool concatenate = false;
  // Output letters no input has, with their lengths (one block each), as dask's new_axes.
  std::map<char, int64_t> new_axes{};
};
// dask's blockwise: output block (i, j, …) of index `out_index` calls `op` on the input
// blocks whose letters match. A letter missing from the output is contracted: the op
// receives the list of blocks along it (a std::vector<Value> of NDArrays, nested one level
// per contracted letter), or with `concatenate` those blocks joined into one. Arrays sharing
// a letter are rechunked to the same blocks along it; an axis of one block broadcasts.
Array blockwise(std::shared_ptr<const Op> op, const std::string& out_index,
                std::vector<BlockwiseInput> inputs, BlockwiseOptions options = {});
template <class F>
Array blockwise(F&& fn, const std::string& out_index, std::vector<BlockwiseInput> inputs,
                BlockwiseOptions options = {}) {
  auto op = detail::block_function_op(std::forward<F>(fn),
                                      options.name.empty() ? "blockwise" : options.name);
  return blockwise(std::move(op), out_index, std::move(inputs), std::move(options));
}

// The arrays rechunked so that their blocks line up (dask's unify_chunks), as elementwise
// operations do: axes aligned from the right, length-1 axes broadcast.
std::vector<Array> unify_chunks(std::vector<Array> arrays);

// What lies beyond the array's edges when blocks are extended by their neighbours.
enum class Boundary {
  None,      // nothing: edge blocks are not extended outward (dask's default)
  Reflect,   // mirrored, edge included (dask's "reflect", NumPy's pad "symmetric")
  Periodic,  // wrapped around from the other side
  Nearest,   // the edge value repeated
  Constant,  // a constant (OverlapOptions::constant)
};

// Options of overlap and map_overlap.
struct OverlapOptions {
  std::vector<int64_t> depth{};  // per axis, or one value for every axis
  Boundary boundary = Boundary::None;
  double constant = 0;
  std::optional<DType> dtype{};  // of map_overlap's result (default: the input's)
  std::string name{};            // key prefix of map_overlap's function
};

// Each block extended by `depth` elements of its neighbours along each axis (and the
// boundary rule at the array's edges). ValueError if a depth exceeds a neighbour block.
Array overlap(const Array& a, const OverlapOptions& options);

// Applies `op` to each block extended by its neighbours, then trims the extension: the
// stencil pattern (dask's map_overlap). The function must keep its block's shape.
Array map_overlap(std::shared_ptr<const Op> op, const Array& a, const OverlapOptions& options);
template <class F>
Array map_overlap(F&& fn, const Array& a, OverlapOptions options) {
  auto op = detail::block_function_op(std::forward<F>(fn),
                                      options.name.empty() ? "map_overlap" : options.name);
  return map_overlap(std::move(op), a, options);
}

// Cumulative sum / product along `axis` (every element when axis is not given, flattened).
Array cumsum(const Array& a, std::optional<int> axis = {});
Array cumprod(const Array& a, std::optional<int> axis = {});

// ---- linear algebra -------------------------------------------------------------------------
// Matrix product of 2-D arrays (BLAS gemm per block pair); 1-D operands are promoted as in
// NumPy. ValueError naming both shapes when the inner dimensions differ.
Array matmul(const Array& a, const Array& b);
// NumPy's dot for 1-D and 2-D operands (matmul for 2-D).
Array dot(const Array& a, const Array& b);
// Sum of products over the last `axes` axes of a and the first `axes` of b.
Array tensordot(const Array& a, const Array& b, int axes = 2);
// Sum of products over the given axes of a and b (pairwise).
Array tensordot(const Array& a, const Array& b, const std::vector<int>& a_axes,
                const std::vector<int>& b_axes);

// A matrix that LAPACK cannot factor (not positive definite, singular); NumPy's LinAlgError.
class LinAlgError : public ValueError {
 public:
  using ValueError::ValueError;
};

// Decompositions and solvers (LAPACK per block). Results are lazy arrays.
namespace linalg {
struct QR {
  Array q, r;
};
struct SVD {
  Array u, s, v;  // a = u @ diag(s) @ v (v is NumPy's vh)
};
struct Lstsq {
  Array x, residuals;
};
// QR of a tall-and-skinny matrix (Benson, Gleich and Demmel, "Direct QR factorizations for
// tall-and-skinny matrices in MapReduce architectures", 2013): QR per row block, then of the
// stacked R factors. The columns are one block (rechunked if they are not).
QR tsqr(const Array& a);
QR qr(const Array& a);
// Thin SVD of a tall-and-skinny matrix, through tsqr.
SVD svd(const Array& a);
// Rank-k randomized SVD (Halko, Martinsson and Tropp, SIAM Review 2011), with
// `n_power_iter` power iterations; any shape.
SVD svd_compressed(const Array& a, int64_t k, int n_power_iter = 0, uint64_t seed = 0);
// Lower-triangular L with a = L @ L.T (blocked, right-looking); LinAlgError if a is not
// positive definite.
Array cholesky(const Array& a);
// x with a @ x = b (a square), by blocked LU as dask's solve: getrf on each diagonal block
// (partial pivoting within it), trsm and gemm between blocks, b eliminated as one more
// block column. LinAlgError if a diagonal block is singular after elimination (which a
// nonsingular a can cause, since pivoting does not cross blocks; larger blocks avoid it).
Array solve(const Array& a, const Array& b);
// Least squares of a tall-and-skinny a (through tsqr): x minimizing |a @ x - b|, and the
// squared residual per column of b.
Lstsq lstsq(const Array& a, const Array& b);
// Vector norms (ord: 2 by default, inf, -inf, 0, 1 or any p) of 1-D arrays; matrix norms
// (Frobenius by default, 1, -1, inf, -inf, 2 for tall-and-skinny) of 2-D arrays.
Array norm(const Array& x, std::optional<double> ord = {});
// "fro" (Frobenius) or "nuc" (nuclear, tall-and-skinny).
Array norm(const Array& x, const std::string& ord);
}  // namespace linalg

// The OpenBLAS kernel in use ("Haswell", "SkylakeX", …; OPENBLAS_CORETYPE chooses it).
std::string blas_core();
// Threads BLAS may use inside one task (default 1, or TESSERA_BLAS_THREADS): tessera already
// runs blocks in parallel, and both at once oversubscribe the cores. Returns the old value.
int set_blas_threads(int n);

// ---- IO -------------------------------------------------------------------------------------
// Writes an NDArray as a .npy file (format 1.0, little-endian, C order).
void write_npy(const NDArray& a, const std::string& path);
// Reads a whole .npy file; IOError naming the path and the problem when it cannot.
NDArray read_npy(const std::string& path);
// A chunked view of a .npy file: each block reads its own part of the file.
Array from_npy(const std::string& path, const ChunkSpec& chunks = "auto");
// Computes `a` and writes it to `path` as .npy, block by block (the whole array is never
// held in memory at once).
void to_npy(const Array& a, const std::string& path, const ComputeOptions& options = {});

// How to_zarr compresses chunks (numcodecs' codecs, readable by python zarr).
struct ZarrOptions {
  std::string compressor = "zlib";        // "zlib", "zstd", "blosc" or "none"
  int level = 1;                          // zlib/zstd level, blosc clevel
  std::string blosc_cname = "lz4";        // blosc's inner codec: lz4, lz4hc, blosclz, zstd, zlib
  int blosc_shuffle = 1;                  // 0 none, 1 byte shuffle, 2 bit shuffle
  std::string dimension_separator = ".";  // chunk file names "0.1" or "0/1"
};
// Writes `a` as a Zarr v2 directory store at `path`, one chunk file per block, computed and
// written block by block. The blocks must be regular (all equal but the last per axis), as
// Zarr chunks are; ValueError naming the chunks otherwise.
void to_zarr(const Array& a, const std::string& path, const ZarrOptions& zarr = {},
             const ComputeOptions& options = {});
// A Zarr v2 array (directory store) as an Array with the store's chunks (or rechunked to
// `chunks`); each block reads and decompresses its own chunk file. IOError naming the path
// for a missing or unsupported store (dtype, compressor, filters, order).
Array from_zarr(const std::string& path);
Array from_zarr(const std::string& path, const ChunkSpec& chunks);

// Writes `a` as dataset `dataset` of the HDF5 file `path` (created or opened), block by
// block, with the blocks' chunk shape.
void to_hdf5(const Array& a, const std::string& path, const std::string& dataset,
             const ComputeOptions& options = {});
// A dataset of an HDF5 file as an Array; each block reads its hyperslab. IOError naming the
// file and dataset when it cannot.
Array from_hdf5(const std::string& path, const std::string& dataset,
                const ChunkSpec& chunks = "auto");

// Computes `a` and hands each block, as soon as it exists, to `sink(block_index, block)`
// (called from worker threads, possibly concurrently), so a target receives the array
// without it ever being held whole (dask's store).
void store(const Array& a,
           std::function<void(std::span<const int64_t> block, const NDArray& data)> sink,
           const ComputeOptions& options = {});

}  // namespace tessera::array

template <>
struct tessera::CollectionTraits<tessera::array::Array> {
  using Result = tessera::array::NDArray;
  static void graph(const tessera::array::Array& a, HighLevelGraph& out);
  static void keys(const tessera::array::Array& a, std::vector<Key>& out);
  static Result finalize(const tessera::array::Array& a, std::span<const Value> values);
  static tessera::array::Array rebuild(const tessera::array::Array& a,
                                       std::span<const Value> values);
  static void optimize(Graph& g, std::span<const Key> keys, const ComputeOptions& options);
};

// What the array layer's sources share: the data behind an Array, the block layer every
// array operation emits, and helpers for chunks and block coordinates.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/array/array.hpp"
#include "tessera/core/layer.hpp"

namespace tessera::array {

struct Expr;  // a fusable elementwise expression (elementwise.cpp)

struct ArrayData {
  std::string name;   // key name of the blocks
  std::string label;  // what made it ("ones", "add", …), for repr
  DType dtype = DType::Float64;
  Shape shape;
  Chunks chunks;
  std::shared_ptr<const HighLevelGraph> hlg;
  // Set for elementwise results: later elementwise operations inline it instead of reading
  // its blocks, so a chain of them becomes one task per block.
  std::shared_ptr<const Expr> expr;
  // Set for numbers used as operands (scalar(1.5)): a literal that, like NumPy's Python
  // scalars, does not widen the other operand's type within its kind.
  std::optional<NDArray> literal;
  bool weak = false;
};

// A layer with one task per block of a grid, each built on demand by a function of the
// block's coordinates. Every array operation is one of these (or a core tree reduction).
class BlockLayer final : public Layer {
 public:
  // Builds the task of block `coords`, appending the keys of other layers it reads.
  using Builder = std::function<Task(std::span<const int64_t> coords, std::vector<Key>& external)>;

  BlockLayer(std::string name, std::string kind, Shape numblocks,
             std::vector<std::string> dependencies, Builder build);
  std::string_view kind() const noexcept override { return kind_; }
  std::vector<std::string> dependencies() const override { return deps_; }
  size_t size() const override;
  std::vector<Key> keys() const override;
  bool has_key(const Key& key) const override;
  void materialize(std::span<const Key> keys, Graph& out,
                   std::vector<Key>& external) const override;

 private:
  std::string kind_;
  Shape numblocks_;
  std::vector<std::string> deps_;
  Builder build_;
};

// Makes an Array from its parts: the new layer is added to the union of the inputs' graphs.
Array make_array(std::string name, std::string label, DType dtype, Shape shape, Chunks chunks,
                 LayerPtr layer, std::span<const Array> inputs,
                 std::shared_ptr<const Expr> expr = nullptr);

// "<label>-<token of parts>": a deterministic key name for an operation.
std::string make_name(std::string_view label, std::span<const Value> parts);
// Token parts describing an input array (its name is its identity).
Value token_of(const Array& a);

// ValueError naming `op` if `a` has unknown block sizes (after boolean-mask indexing).
void require_known_chunks(const Array& a, std::string_view op);
// `a` with its unknown block sizes taken from computed blocks `values` (row-major).
Array with_chunks_of(const Array& a, std::span<const Value> values);

// Number of blocks along each axis.
Shape numblocks_of(const Chunks& chunks);
// Offsets where each block starts, per axis (size: blocks + 1).
std::vector<std::vector<int64_t>> offsets_of(const Chunks& chunks);
// The shape of block `coords`.
Shape block_shape(const Chunks& chunks, std::span<const int64_t> coords);
// Calls f(coords) for every block of the grid, row-major.
void for_each_block(std::span<const int64_t> numblocks,
                    const std::function<void(std::span<const int64_t>)>& f);
// Chunks as text: "((5, 5, 5),)".
std::string chunks_str(const Chunks& chunks);
// Checks explicit chunks against a shape; ValueError naming both otherwise.
void check_chunks(const Chunks& chunks, const Shape& shape);
// Block sizes of `size` elements in blocks of `block` (the last one shorter).
std::vector<int64_t> regular_chunks(int64_t size, int64_t block);

// The blocks of arrays aligned like broadcast operands of an output grid cut by `out_chunks`:
// axes line up from the right, and an axis of one block facing several output blocks always
// reads block 0 (elementwise operations, map_blocks).
class AlignedInputs {
 public:
  AlignedInputs(std::span<const Array> arrays, const Chunks& out_chunks);
  const std::vector<std::string>& names() const noexcept { return names_; }
  // Appends a reference to each array's block read by output block `c`, and its key to
  // `external`.
  void append_refs(std::span<const int64_t> c, std::vector<Arg>& args,
                   std::vector<Key>& external) const;

 private:
  std::vector<std::string> names_;
  std::vector<std::vector<int>> axes_;  // per array, per axis: the output axis, or -1 (block 0)
};

// Adds a layer with one task per block of `a` (made by `make` from the block's coordinates
// and key) on top of a's graph, and computes those tasks: how writers and store() consume an
// array block by block without holding it whole.
void compute_per_block(const Array& a, const std::string& name,
                       const std::function<Task(std::span<const int64_t> block, Key key)>& make,
                       const ComputeOptions& options);

// The NumPy type string of a dtype in .npy headers and Zarr metadata ("<f8", "|b1", …).
std::string numpy_descr(DType t);
// The dtype of a NumPy type string; `what` names the file in the IOError otherwise.
DType dtype_of_descr(const std::string& descr, const std::string& what);

// The value of block `coords` of array `a` as a task argument.
Arg block_ref(const Array& a, std::span<const int64_t> coords);

// The NDArray a task result holds; TypeError naming the task context otherwise.
const NDArray& as_ndarray(const Value& v);

// Argument i of a variadic block op; ValueError naming the op when there are fewer.
const Value& arg_at(std::span<const Value> args, size_t i, const char* op);

// Normalizes an axis for ndim dimensions; AxisError naming it otherwise.
int normalize_axis(int axis, int ndim);

// Values of NumPy-like printing used in error messages.
std::string dtype_str(DType t);

}  // namespace tessera::array

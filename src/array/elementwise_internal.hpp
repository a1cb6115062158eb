// Fusable elementwise expressions: a small register program over leaf blocks, evaluated per
// block by the op "array.elementwise".
#pragma once

#include <cstdint>
#include <vector>

#include "array/array_internal.hpp"

namespace tessera::array {

enum class Code : int32_t {
  Load,
  Cast,
  Add,
  Sub,
  Mul,
  Div,
  Pow,
  Max,
  Min,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,
  And,
  Or,
  Xor,
  Neg,
  Not,
  Abs,
  Exp,
  Log,
  Sqrt,
  Sin,
  Cos,
  Tanh,
  Floor,
  Ceil,
  Round,
  IsNan,
  Where
};

// One instruction: its result has `dtype`; a, b, c are earlier nodes (Load: a leaf index).
struct Node {
  Code code;
  DType dtype;
  int32_t a = -1, b = -1, c = -1;
};

struct Program {
  std::vector<Node> nodes;  // the last node is the result
  std::vector<int64_t> encode() const;
  // ValueError on a malformed program (it may come from the network).
  static Program decode(const std::vector<int64_t>& code);
};

struct Expr {
  Program prog;
  std::vector<Array> leaves;      // arrays whose blocks are read
  std::vector<NDArray> literals;  // literal leaves
};

// NumPy's broadcast of two shapes; ValueError naming both otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// The chunks of the broadcast result of `inputs` (shape `out_shape`); inputs cut otherwise
// are replaced by rechunked ones.
Chunks unify(std::vector<Array>& inputs, const Shape& out_shape);

// An elementwise array evaluating `prog` over `leaves` (block by block) and `literals`.
Array make_elementwise(std::string label, DType dtype, Shape shape, Chunks chunks, Program prog,
                       std::vector<Array> leaves, std::vector<NDArray> literals);

}  // namespace tessera::array

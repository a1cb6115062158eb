// File: tessera/core/layer.hpp
//
// High-level graphs: collections emit layers (blockwise, tree reduction, materialized
// tasks) instead of tasks, so a million-block array costs nothing until it is computed,
// and computing part of it materializes only the tasks that part needs.
//
//   using namespace tessera;
//   HighLevelGraph hlg;
//   hlg.add_layer(std::make_shared<BlockwiseLayer>(
//       "y", "ij", std::vector<int64_t>{1000, 1000}, get_op("neg"),
//       std::vector{BlockwiseArg::blocks("x", "ij", {1000, 1000})}));
//   Graph g = hlg.materialize({Key("y", {0, 0})});   // one task, plus what it reads
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/graph.hpp"

namespace tessera {

// One high-level operation: a set of output keys that can be produced on demand.
class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;

  // The layer's name (for blockwise and reduction layers, the name of its keys).
  const std::string& name() const noexcept { return name_; }
  // What kind of layer this is ("blockwise", "tree-reduction", "materialized", …).
  virtual std::string_view kind() const noexcept = 0;
  // Names of the layers this one reads.
  virtual std::vector<std::string> dependencies() const { return {}; }
  // Number of output keys, without materializing them.
  virtual size_t size() const = 0;
  // Every output key.
  virtual std::vector<Key> keys() const = 0;
  // True if this layer produces `key`.
  virtual bool has_key(const Key& key) const = 0;
  // The key names this layer's keys (and internal keys) use; empty when the layer cannot
  // list them cheaply (then has_key() is asked).
  virtual std::vector<std::string> key_names() const { return {name_}; }
  // Adds to `out` the tasks producing `keys` and the layer-internal tasks they need; appends
  // to `external` the keys of other layers those tasks read.
  virtual void materialize(std::span<const Key> keys, Graph& out,
                           std::vector<Key>& external) const = 0;

 private:
  std::string name_;
};

using LayerPtr = std::shared_ptr<const Layer>;

// Layers plus the keys they produce; merged by layer name.
class HighLevelGraph {
 public:
  HighLevelGraph() = default;
  explicit HighLevelGraph(LayerPtr layer) { add_layer(std::move(layer)); }

  // Adds a layer; a layer with the same name already present is kept (same name, same work).
  void add_layer(LayerPtr layer);
  // Adds every layer of `other`.
  void merge(const HighLevelGraph& other);

  std::span<const LayerPtr> layers() const noexcept { return layers_; }
  // The layer named `name`, or nullptr.
  const Layer* layer(std::string_view name) const;
  // Total number of output keys over all layers.
  size_t size() const;

  // The tasks `outputs` need, and nothing else. KeyError if a key is not produced by any
  // layer.
  Graph materialize(std::span<const Key> outputs) const;
  // Every task of every layer.
  Graph materialize_all() const;

 private:
  std::vector<LayerPtr> layers_;
};

// A layer holding ready-made tasks (what Dask calls a MaterializedLayer).
class MaterializedLayer final : public Layer {
 public:
  MaterializedLayer(std::string name, Graph graph);
  std::string_view kind() const noexcept override { return "materialized"; }
  size_t size() const override { return graph_.size(); }
  std::vector<Key> keys() const override;
  bool has_key(const Key& key) const override { return graph_.contains(key); }
  std::vector<std::string> key_names() const override { return {}; }
  void materialize(std::span<const Key> keys, Graph& out,
                   std::vector<Key>& external) const override;
  const Graph& graph() const noexcept { return graph_; }

 private:
  Graph graph_;
};

// One argument of a blockwise layer: blocks of another layer indexed by letters, or a
// literal value passed to every task.
struct BlockwiseArg {
  std::string name;                // key name of the input blocks (empty for a literal)
  std::string index;               // one letter per block dimension, e.g. "ij"
  std::vector<int64_t> numblocks;  // blocks along each of those dimensions
  Value literal;

  static BlockwiseArg blocks(std::string name, std::string index, std::vector<int64_t> numblocks);
  static BlockwiseArg value(Value v);
  bool is_literal() const noexcept { return name.empty(); }
};

// Applies an op block by block, like dask's blockwise: output block (i, j) of index "ij"
// calls op on the input blocks whose letters match. An input dimension with one block is
// broadcast. A letter an input has and the output lacks is contracted: the op receives a
// list of the blocks along it (nested, one level per contracted letter, in order of first
// appearance), as matmul's "ik,kj->ij" needs.
class BlockwiseLayer final : public Layer {
 public:
  BlockwiseLayer(std::string name, std::string out_index, std::vector<int64_t> out_numblocks,
                 std::shared_ptr<const Op> op, std::vector<BlockwiseArg> args);
  BlockwiseLayer(std::string name, std::string out_index, std::vector<int64_t> out_numblocks,
                 const Op& op, std::vector<BlockwiseArg> args);

  std::string_view kind() const noexcept override { return "blockwise"; }
  std::vector<std::string> dependencies() const override;
  size_t size() const override;
  std::vector<Key> keys() const override;
  bool has_key(const Key& key) const override;
  void materialize(std::span<const Key> keys, Graph& out,
                   std::vector<Key>& external) const override;

  const std::string& out_index() const noexcept { return out_index_; }
  std::span<const int64_t> out_numblocks() const noexcept { return out_numblocks_; }
  std::span<const BlockwiseArg> args() const noexcept { return args_; }
  const std::shared_ptr<const Op>& op() const noexcept { return op_; }

 private:
  Arg arg_for(const BlockwiseArg& a, std::span<const int64_t> coords,
              std::vector<Key>& external) const;

  std::string out_index_;
  std::vector<int64_t> out_numblocks_;
  std::shared_ptr<const Op> op_;
  std::vector<BlockwiseArg> args_;
  std::string contracted_;  // letters contracted, in order of first appearance
  std::vector<int64_t> contracted_numblocks_;
};

// Reduces the blocks of one layer along some axes with a tree of `split_every`-wide
// combines, like dask's reduction: level k groups up to split_every[axis] blocks along each
// reduced axis and calls `combine` on them (a nested list, one level per reduced axis);
// the last level calls `aggregate`. Extra literal arguments follow the list. Intermediate
// keys are named "<name>-partial-<level>"; output keys keep the other axes' block indices,
// and 0 for reduced axes when keepdims (else those axes are dropped).
class TreeReductionLayer final : public Layer {
 public:
  struct Spec {
    std::string input;                 // key name of the input blocks
    std::vector<int64_t> numblocks;    // input blocks along each axis
    std::vector<int> axes;             // axes to reduce (sorted, distinct)
    std::vector<int64_t> split_every;  // group width per reduced axis (>= 2); empty: 4 each
    bool keepdims = false;
    std::shared_ptr<const Op> combine;
    std::shared_ptr<const Op> aggregate;
    std::vector<Value> extra_args;  // appended to every combine/aggregate call
  };

  TreeReductionLayer(std::string name, Spec spec);

  std::string_view kind() const noexcept override { return "tree-reduction"; }
  std::vector<std::string> dependencies() const override { return {spec_.input}; }
  size_t size() const override;
  std::vector<Key> keys() const override;
  bool has_key(const Key& key) const override;
  std::vector<std::string> key_names() const override;
  void materialize(std::span<const Key> keys, Graph& out,
                   std::vector<Key>& external) const override;
  // Number of levels of the tree (1 when one aggregate reads every block).
  int depth() const noexcept { return static_cast<int>(level_counts_.size()) - 1; }

 private:
  Key level_key(int level, std::span<const int64_t> coords) const;
  void build(int level, std::span<const int64_t> coords, Graph& out,
             std::vector<Key>& external) const;

  Spec spec_;
  std::vector<bool> reduced_;                       // per input axis
  std::vector<std::vector<int64_t>> level_counts_;  // blocks per axis at each level (0 = input)
};

}  // namespace tessera

#include "tessera/core/layer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera {

// ---- HighLevelGraph ---------------------------------------------------------------------

void HighLevelGraph::add_layer(LayerPtr layer) {
  if (!layer) throw ValueError("HighLevelGraph::add_layer: null layer");
  if (this->layer(layer->name())) return;
  layers_.push_back(std::move(layer));
}

void HighLevelGraph::merge(const HighLevelGraph& other) {
  for (const LayerPtr& l : other.layers_) add_layer(l);
}

const Layer* HighLevelGraph::layer(std::string_view name) const {
  for (const LayerPtr& l : layers_) {
    if (l->name() == name) return l.get();
  }
  return nullptr;
}

size_t HighLevelGraph::size() const {
  size_t n = 0;
  for (const LayerPtr& l : layers_) n += l->size();
  return n;
}

namespace {

// Layers in an order where consumers come before the layers they read.
std::vector<size_t> consumers_first(const std::vector<LayerPtr>& layers) {
  std::unordered_map<std::string_view, size_t> index;
  for (size_t i = 0; i < layers.size(); ++i) index.emplace(layers[i]->name(), i);
  std::vector<char> state(layers.size(), 0);
  std::vector<size_t> post;
  std::vector<std::pair<size_t, std::vector<std::string>>> stack;
  for (size_t r = 0; r < layers.size(); ++r) {
    if (state[r]) continue;
    state[r] = 1;
    stack.emplace_back(r, layers[r]->dependencies());
    while (!stack.empty()) {
      auto& [v, deps] = stack.back();
      if (deps.empty()) {
        post.push_back(v);
        stack.pop_back();
        continue;
      }
      const std::string d = std::move(deps.back());
      deps.pop_back();
      auto it = index.find(d);
      if (it != index.end() && !state[it->second]) {
        state[it->second] = 1;
        stack.emplace_back(it->second, layers[it->second]->dependencies());
      }
    }
  }
  std::reverse(post.begin(), post.end());  // post-order lists dependencies first
  return post;
}

}  // namespace

Graph HighLevelGraph::materialize(std::span<const Key> outputs) const {
  std::unordered_map<std::string, size_t> by_name;
  std::vector<size_t> opaque;
  for (size_t i = 0; i < layers_.size(); ++i) {
    std::vector<std::string> names = layers_[i]->key_names();
    if (names.empty()) opaque.push_back(i);
    for (std::string& nm : names) by_name.emplace(std::move(nm), i);
  }
  auto layer_of = [&](const Key& k) -> size_t {
    if (auto it = by_name.find(std::string(k.name()));
        it != by_name.end() && layers_[it->second]->has_key(k)) {
      return it->second;
    }
    for (size_t i : opaque) {
      if (layers_[i]->has_key(k)) return i;
    }
    std::vector<std::string> names;
    for (const LayerPtr& l : layers_) names.push_back(l->name());
    if (names.size() > 8) {
      names.resize(8);
      names.push_back("...");
    }
    throw KeyError(fmt::format("key '{}' is not produced by any layer of the graph (layers: {})",
                               k.str(), fmt::join(names, ", ")));
  };

  Graph out;
  std::vector<std::vector<Key>> pending(layers_.size());
  std::unordered_set<Key, KeyHash> requested;
  for (const Key& k : outputs) {
    if (requested.insert(k).second) pending[layer_of(k)].push_back(k);
  }
  const std::vector<size_t> order = consumers_first(layers_);
  std::vector<Key> external;
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t li : order) {
      if (pending[li].empty()) continue;
      std::vector<Key> keys = std::move(pending[li]);
      pending[li].clear();
      external.clear();
      layers_[li]->materialize(keys, out, external);
      for (Key& e : external) {
        if (out.contains(e) || !requested.insert(e).second) continue;
        pending[layer_of(e)].push_back(std::move(e));
      }
      progress = true;
    }
  }
  return out;
}

Graph HighLevelGraph::materialize_all() const {
  std::vector<Key> all;
  for (const LayerPtr& l : layers_) {
    std::vector<Key> ks = l->keys();
    all.insert(all.end(), ks.begin(), ks.end());
  }
  return materialize(all);
}

// ---- MaterializedLayer ------------------------------------------------------------------

MaterializedLayer::MaterializedLayer(std::string name, Graph graph)
    : Layer(std::move(name)), graph_(std::move(graph)) {}

std::vector<Key> MaterializedLayer::keys() const {
  std::vector<Key> out;
  out.reserve(graph_.size());
  for (const auto& e : graph_.entries()) out.push_back(e.key);
  return out;
}

void MaterializedLayer::materialize(std::span<const Key> keys, Graph& out,
                                    std::vector<Key>& external) const {
  std::vector<Key> stack(keys.begin(), keys.end());
  std::vector<Key> refs;
  while (!stack.empty()) {
    Key k = std::move(stack.back());
    stack.pop_back();
    if (out.contains(k)) continue;
    const int64_t i = graph_.index_of(k);
    if (i < 0) {
      external.push_back(std::move(k));
      continue;
    }
    const Graph::Entry& e = graph_[static_cast<size_t>(i)];
    out.add(e.key, e.task);
    refs.clear();
    e.task->collect_refs(refs);
    for (Key& r : refs) stack.push_back(std::move(r));
  }
}

// ---- BlockwiseLayer ---------------------------------------------------------------------

BlockwiseArg BlockwiseArg::blocks(std::string name, std::string index,
                                  std::vector<int64_t> numblocks) {
  if (name.empty()) throw ValueError("BlockwiseArg::blocks: empty input name");
  BlockwiseArg a;
  a.name = std::move(name);
  a.index = std::move(index);
  a.numblocks = std::move(numblocks);
  return a;
}

BlockwiseArg BlockwiseArg::value(Value v) {
  BlockwiseArg a;
  a.literal = std::move(v);
  return a;
}

namespace {

void check_letters(std::string_view where, std::string_view index) {
  for (size_t i = 0; i < index.size(); ++i) {
    if (index.find(index[i], i + 1) != std::string_view::npos) {
      throw ValueError(
          fmt::format("{}: index '{}' repeats the letter '{}'", where, index, index[i]));
    }
  }
}

std::shared_ptr<const Op> immortal(const Op& op) {
  return std::shared_ptr<const Op>(std::shared_ptr<const Op>(), &op);
}

}  // namespace

BlockwiseLayer::BlockwiseLayer(std::string name, std::string out_index,
                               std::vector<int64_t> out_numblocks, const Op& op,
                               std::vector<BlockwiseArg> args)
    : BlockwiseLayer(std::move(name), std::move(out_index), std::move(out_numblocks), immortal(op),
                     std::move(args)) {}

BlockwiseLayer::BlockwiseLayer(std::string name, std::string out_index,
                               std::vector<int64_t> out_numblocks, std::shared_ptr<const Op> op,
                               std::vector<BlockwiseArg> args)
    : Layer(std::move(name)),
      out_index_(std::move(out_index)),
      out_numblocks_(std::move(out_numblocks)),
      op_(std::move(op)),
      args_(std::move(args)) {
  const std::string where = fmt::format("blockwise layer '{}'", this->name());
  if (!op_) throw ValueError(where + ": null op");
  check_letters(where, out_index_);
  if (out_numblocks_.size() != out_index_.size()) {
    throw ValueError(
        fmt::format("{}: output index '{}' has {} letters but {} block counts were given", where,
                    out_index_, out_index_.size(), out_numblocks_.size()));
  }
  for (size_t i = 0; i < out_numblocks_.size(); ++i) {
    if (out_numblocks_[i] < 0) {
      throw ValueError(fmt::format("{}: negative block count {} along '{}'", where,
                                   out_numblocks_[i], out_index_[i]));
    }
  }
  if (op_->arity >= 0 && static_cast<size_t>(op_->arity) != args_.size()) {
    throw ValueError(fmt::format("{}: op '{}' takes {} arguments but {} were given", where,
                                 op_->name, op_->arity, args_.size()));
  }
  for (const BlockwiseArg& a : args_) {
    if (a.is_literal()) continue;
    check_letters(where, a.index);
    if (a.index.size() != a.numblocks.size()) {
      throw ValueError(fmt::format("{}: input '{}' has index '{}' but {} block counts", where,
                                   a.name, a.index, a.numblocks.size()));
    }
    for (size_t j = 0; j < a.index.size(); ++j) {
      const char letter = a.index[j];
      const int64_t nb = a.numblocks[j];
      if (nb < 0)
        throw ValueError(fmt::format("{}: input '{}' has a negative block count", where, a.name));
      const size_t o = out_index_.find(letter);
      if (o != std::string::npos) {
        if (nb != out_numblocks_[o] && nb != 1) {
          throw ValueError(
              fmt::format("{}: input '{}' has {} blocks along '{}' but the output has {}", where,
                          a.name, nb, letter, out_numblocks_[o]));
        }
        continue;
      }
      const size_t c = contracted_.find(letter);
      if (c == std::string::npos) {
        contracted_ += letter;
        contracted_numblocks_.push_back(nb);
      } else if (contracted_numblocks_[c] != nb) {
        throw ValueError(fmt::format(
            "{}: inputs disagree on the number of blocks along contracted index '{}' ({} and {})",
            where, letter, contracted_numblocks_[c], nb));
      }
    }
  }
}

std::vector<std::string> BlockwiseLayer::dependencies() const {
  std::vector<std::string> out;
  for (const BlockwiseArg& a : args_) {
    if (!a.is_literal() && std::find(out.begin(), out.end(), a.name) == out.end())
      out.push_back(a.name);
  }
  return out;
}

size_t BlockwiseLayer::size() const {
  size_t n = 1;
  for (int64_t nb : out_numblocks_) n *= static_cast<size_t>(nb);
  return n;
}

namespace {

// Calls f(coords) for every block index of a grid, in C order.
template <class F>
void for_each_block(std::span<const int64_t> counts, F&& f) {
  for (int64_t c : counts) {
    if (c == 0) return;
  }
  std::vector<int64_t> idx(counts.size(), 0);
  while (true) {
    f(std::span<const int64_t>(idx));
    size_t d = counts.size();
    while (d > 0) {
      if (++idx[d - 1] < counts[d - 1]) break;
      idx[d - 1] = 0;
      --d;
    }
    if (d == 0) return;
  }
}

bool in_grid(std::span<const int64_t> idx, std::span<const int64_t> counts) {
  if (idx.size() != counts.size()) return false;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= counts[i]) return false;
  }
  return true;
}

}  // namespace

std::vector<Key> BlockwiseLayer::keys() const {
  std::vector<Key> out;
  out.reserve(size());
  for_each_block(out_numblocks_,
                 [&](std::span<const int64_t> idx) { out.emplace_back(name(), idx); });
  return out;
}

bool BlockwiseLayer::has_key(const Key& key) const {
  return key.name() == name() && in_grid(key.index(), out_numblocks_);
}

Arg BlockwiseLayer::arg_for(const BlockwiseArg& a, std::span<const int64_t> coords,
                            std::vector<Key>& external) const {
  if (a.is_literal()) return Arg(a.literal);
  std::vector<int64_t> in(a.index.size(), 0);
  std::vector<size_t> contracted_dims;  // dims of `a` that are contracted, in contracted_ order
  for (size_t j = 0; j < a.index.size(); ++j) {
    const size_t o = out_index_.find(a.index[j]);
    if (o != std::string::npos) {
      in[j] = a.numblocks[j] == 1 ? 0 : coords[o];
    }
  }
  for (char letter : contracted_) {
    const size_t j = a.index.find(letter);
    if (j != std::string::npos) contracted_dims.push_back(j);
  }
  auto build = [&](auto&& self, size_t level) -> Arg {
    if (level == contracted_dims.size()) {
      Key k(a.name, in);
      external.push_back(k);
      return Arg::ref(std::move(k));
    }
    const size_t j = contracted_dims[level];
    std::vector<Arg> items;
    items.reserve(static_cast<size_t>(a.numblocks[j]));
    for (int64_t c = 0; c < a.numblocks[j]; ++c) {
      in[j] = c;
      items.push_back(self(self, level + 1));
    }
    return Arg::list(std::move(items));
  };
  return build(build, 0);
}

void BlockwiseLayer::materialize(std::span<const Key> keys, Graph& out,
                                 std::vector<Key>& external) const {
  std::vector<Arg> args;
  for (const Key& k : keys) {
    if (!has_key(k))
      throw KeyError(fmt::format("key '{}' is not a block of layer '{}'", k.str(), name()));
    if (out.contains(k)) continue;
    args.clear();
    for (const BlockwiseArg& a : args_) args.push_back(arg_for(a, k.index(), external));
    out.add(k, Task::call(op_, std::vector<Arg>(args)));
  }
}

// ---- TreeReductionLayer ----------------------------------------------------------------

TreeReductionLayer::TreeReductionLayer(std::string name, Spec spec)
    : Layer(std::move(name)), spec_(std::move(spec)) {
  const std::string where = fmt::format("tree reduction '{}'", this->name());
  const size_t ndim = spec_.numblocks.size();
  if (spec_.input.empty()) throw ValueError(where + ": empty input name");
  if (!spec_.combine || !spec_.aggregate)
    throw ValueError(where + ": combine and aggregate ops are required");
  for (int64_t nb : spec_.numblocks) {
    if (nb < 1)
      throw ValueError(fmt::format("{}: every axis needs at least one block, got {}", where, nb));
  }
  if (spec_.split_every.empty()) spec_.split_every.assign(spec_.axes.size(), 4);
  if (spec_.split_every.size() != spec_.axes.size()) {
    throw ValueError(fmt::format("{}: {} split_every values for {} axes", where,
                                 spec_.split_every.size(), spec_.axes.size()));
  }
  reduced_.assign(ndim, false);
  for (size_t i = 0; i < spec_.axes.size(); ++i) {
    const int a = spec_.axes[i];
    if (a < 0 || static_cast<size_t>(a) >= ndim) {
      throw ValueError(
          fmt::format("{}: axis {} is out of range for {} dimensions", where, a, ndim));
    }
    if (reduced_[static_cast<size_t>(a)])
      throw ValueError(fmt::format("{}: axis {} is given twice", where, a));
    if (i > 0 && a < spec_.axes[i - 1])
      throw ValueError(fmt::format("{}: axes must be sorted", where));
    if (spec_.split_every[i] < 2) {
      throw ValueError(fmt::format("{}: split_every must be at least 2, got {} for axis {}", where,
                                   spec_.split_every[i], a));
    }
    reduced_[static_cast<size_t>(a)] = true;
  }
  level_counts_.push_back(spec_.numblocks);
  bool more = true;
  while (more) {
    std::vector<int64_t> next = level_counts_.back();
    more = false;
    for (size_t i = 0; i < spec_.axes.size(); ++i) {
      const auto a = static_cast<size_t>(spec_.axes[i]);
      next[a] = (next[a] + spec_.split_every[i] - 1) / spec_.split_every[i];
      more |= next[a] > 1;
    }
    level_counts_.push_back(std::move(next));
  }
}

size_t TreeReductionLayer::size() const {
  size_t n = 1;
  for (size_t a = 0; a < reduced_.size(); ++a) {
    if (!reduced_[a]) n *= static_cast<size_t>(spec_.numblocks[a]);
  }
  return n;
}

Key TreeReductionLayer::level_key(int level, std::span<const int64_t> coords) const {
  if (level < depth()) return Key(fmt::format("{}-partial-{}", name(), level), coords);
  std::vector<int64_t> out;
  for (size_t a = 0; a < coords.size(); ++a) {
    if (!reduced_[a])
      out.push_back(coords[a]);
    else if (spec_.keepdims)
      out.push_back(0);
  }
  return Key(name(), out);
}

std::vector<Key> TreeReductionLayer::keys() const {
  std::vector<Key> out;
  for_each_block(level_counts_.back(),
                 [&](std::span<const int64_t> c) { out.push_back(level_key(depth(), c)); });
  return out;
}

std::vector<std::string> TreeReductionLayer::key_names() const {
  std::vector<std::string> out{name()};
  for (int l = 1; l < depth(); ++l) out.push_back(fmt::format("{}-partial-{}", name(), l));
  return out;
}

bool TreeReductionLayer::has_key(const Key& key) const {
  if (key.name() == name()) {
    const size_t ndim = reduced_.size();
    const size_t expect = spec_.keepdims ? ndim : ndim - spec_.axes.size();
    if (key.index().size() != expect) return false;
    size_t j = 0;
    for (size_t a = 0; a < ndim; ++a) {
      if (reduced_[a] && !spec_.keepdims) continue;
      const int64_t c = key.index()[j++];
      if (c < 0 || c >= level_counts_.back()[a]) return false;
    }
    return true;
  }
  for (int l = 1; l < depth(); ++l) {
    if (key.name() == fmt::format("{}-partial-{}", name(), l))
      return in_grid(key.index(), level_counts_[l]);
  }
  return false;
}

void TreeReductionLayer::build(int level, std::span<const int64_t> coords, Graph& out,
                               std::vector<Key>& external) const {
  Key key = level_key(level, coords);
  if (out.contains(key)) return;
  const std::vector<int64_t>& below = level_counts_[static_cast<size_t>(level - 1)];
  std::vector<int64_t> child(coords.begin(), coords.end());
  // Nested lists, one level per reduced axis, of the blocks this one combines.
  auto gather = [&](auto&& self, size_t r) -> Arg {
    if (r == spec_.axes.size()) {
      if (level == 1) {
        Key k(spec_.input, child);
        external.push_back(k);
        return Arg::ref(std::move(k));
      }
      build(level - 1, child, out, external);
      return Arg::ref(level_key(level - 1, child));
    }
    const auto a = static_cast<size_t>(spec_.axes[r]);
    const int64_t w = spec_.split_every[r];
    const int64_t lo = coords[a] * w, hi = std::min(below[a], lo + w);
    std::vector<Arg> items;
    for (int64_t c = lo; c < hi; ++c) {
      child[a] = c;
      items.push_back(self(self, r + 1));
    }
    child[a] = coords[a];
    return Arg::list(std::move(items));
  };
  std::vector<Arg> args;
  args.push_back(gather(gather, 0));
  for (const Value& v : spec_.extra_args) args.emplace_back(v);
  const auto& op = level == depth() ? spec_.aggregate : spec_.combine;
  out.add(std::move(key), Task::call(op, std::move(args)));
}

void TreeReductionLayer::materialize(std::span<const Key> keys, Graph& out,
                                     std::vector<Key>& external) const {
  const size_t ndim = reduced_.size();
  for (const Key& k : keys) {
    if (!has_key(k))
      throw KeyError(fmt::format("key '{}' is not produced by layer '{}'", k.str(), name()));
    int level = depth();
    std::vector<int64_t> coords(ndim, 0);
    if (k.name() == name()) {
      size_t j = 0;
      for (size_t a = 0; a < ndim; ++a) {
        if (reduced_[a] && !spec_.keepdims) continue;
        coords[a] = reduced_[a] ? 0 : k.index()[j];
        ++j;
      }
    } else {
      for (int l = 1; l < depth(); ++l) {
        if (k.name() == fmt::format("{}-partial-{}", name(), l)) level = l;
      }
      coords.assign(k.index().begin(), k.index().end());
    }
    build(level, coords, out, external);
  }
}

}  // namespace tessera

#include "tessera/delayed/delayed.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include "tessera/core/error.hpp"

namespace tessera::detail {

DelayedNode::~DelayedNode() {
  std::vector<DelayedNodePtr> stack = std::move(deps);
  while (!stack.empty()) {
    DelayedNodePtr p = std::move(stack.back());
    stack.pop_back();
    if (p.use_count() == 1) {
      // The last owner: adopt its dependencies so that its destruction does not recurse.
      auto& inner = const_cast<DelayedNode&>(*p).deps;
      for (auto& d : inner) stack.push_back(std::move(d));
      inner.clear();
    }
  }
}

namespace {

// The tasks of a web of delayed nodes, discovered from some roots on demand.
class DelayedLayer final : public Layer {
 public:
  explicit DelayedLayer(DelayedNodePtr root) : Layer(root->key.str()), root_(std::move(root)) {}

  std::string_view kind() const noexcept override { return "delayed"; }
  size_t size() const override { return 1; }
  std::vector<Key> keys() const override { return {root_->key}; }
  bool has_key(const Key& key) const override { return key == root_->key; }
  std::vector<std::string> key_names() const override { return {std::string(root_->key.name())}; }

  void materialize(std::span<const Key> keys, Graph& out,
                   std::vector<Key>& external) const override {
    if (keys.empty()) return;
    // Depth-first without recursion (chains can be millions long). A key already present
    // means the same work, and everything below it, is already there.
    std::vector<const DelayedNode*> stack{root_.get()};
    while (!stack.empty()) {
      const DelayedNode* n = stack.back();
      stack.pop_back();
      // The graph's task shares the node's lifetime (an aliasing pointer, no copy).
      if (!out.add(n->key, TaskPtr(holder_of(n), &n->task))) continue;
      for (const DelayedNodePtr& d : n->deps) stack.push_back(d.get());
    }
    (void)external;
  }

 private:
  // Nodes are owned by their dependents' `deps` vectors; the root by this layer. Holding
  // the root keeps every node below it alive, so tasks may alias the root's control block.
  std::shared_ptr<const void> holder_of(const DelayedNode*) const { return root_; }

  DelayedNodePtr root_;
};

std::string literal_prefix(const TypeInfo& t) {
  switch (t.kind) {
    case TypeKind::List:
    case TypeKind::Sequence:
      return "list";
    case TypeKind::Other:
      return key_prefix_of(t.name);
    default:
      return t.name;
  }
}

}  // namespace

LayerPtr delayed_layer(DelayedNodePtr root) {
  return std::make_shared<DelayedLayer>(std::move(root));
}

Graph delayed_graph(const DelayedNodePtr& root) {
  HighLevelGraph hlg(delayed_layer(root));
  const Key keys[] = {root->key};
  return hlg.materialize(keys);
}

DelayedNodePtr delayed_value(Value v, const std::string& name) {
  Key key(name.empty() ? fmt::format("{}-{}", literal_prefix(v.type()), tokenize(v)) : name);
  return std::make_shared<const DelayedNode>(
      DelayedNode{std::move(key), Task::literal(std::move(v)), {}});
}

DelayedNodePtr delayed_result(const Key& key, Value v) {
  return std::make_shared<const DelayedNode>(DelayedNode{key, Task::literal(std::move(v)), {}});
}

Key delayed_key(const Op& op, std::span<const Arg> args, bool pure) {
  if (pure) return key_of_call(op, args);
  return Key(op.key_prefix + "-" + random_token());
}

std::string function_name(void (*fn)()) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(fn), &info) && info.dli_sname) {
    std::string name = info.dli_sname;
    int status = 0;
    if (char* d = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status); d) {
      name = d;
      std::free(d);
    }
    if (auto paren = name.find('('); paren != std::string::npos) name.resize(paren);
    return name;
  }
  return "function";
}

void throw_result_type(const Key& key, const std::exception& e) {
  throw TypeError(fmt::format("result of '{}': {}", key.str(), e.what()));
}

}  // namespace tessera::detail

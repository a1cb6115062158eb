// File: tessera/delayed/delayed.hpp
//
// delayed: lazy function calls that build a task graph, like dask.delayed.
//
//   int64_t inc(int64_t x) { return x + 1; }
//   int64_t add(int64_t x, int64_t y) { return x + y; }
//   TESSERA_REGISTER(inc);
//   TESSERA_REGISTER(add);
//
//   auto a = tessera::delayed(inc)(1);           // Delayed<int64_t>, key "inc-<token>"
//   auto b = tessera::delayed(add)(a, 10);       // a is a dependency
//   int64_t r = b.compute();                     // 12, on the default (threads) scheduler
//   auto [x, y] = tessera::compute(a, b);        // one graph: `a` runs once
//   auto v = tessera::delayed(std::vector<double>{1, 2, 3});   // a value as a graph leaf
//
// Arguments are checked against the function's parameters when the call is built: a
// Delayed<U> or a plain value must convert to the parameter type. Keys are deterministic
// (tokenize of op and arguments), so equal calls are computed once. Registered functions
// can run in other processes; lambdas and unregistered functions stay in this one.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/collection.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/tokenize.hpp"
#include "tessera/diagnostics/visualize.hpp"

namespace tessera {

template <class T>
class Delayed;

namespace detail {

// One delayed call: its key, its task and the delayed values it reads.
struct DelayedNode {
  Key key;
  Task task;
  std::vector<std::shared_ptr<const DelayedNode>> deps;
  // Releases long chains iteratively (a million-long chain must not recurse).
  ~DelayedNode();
};
using DelayedNodePtr = std::shared_ptr<const DelayedNode>;

// The layer computing `roots` (and everything they read).
LayerPtr delayed_layer(DelayedNodePtr root);
// The tasks `root` needs.
Graph delayed_graph(const DelayedNodePtr& root);
// A leaf holding `v`, keyed "<name>-<token of v>" (or exactly `name` when given).
DelayedNodePtr delayed_value(Value v, const std::string& name);
// A leaf holding `v` under `key` (what persist() gives back).
DelayedNodePtr delayed_result(const Key& key, Value v);
// Key of a call: "<prefix>-<token>", or a random token for impure calls.
Key delayed_key(const Op& op, std::span<const Arg> args, bool pure);
// A name for an unregistered function pointer (its symbol, when the program exports it).
std::string function_name(void (*fn)());
[[noreturn]] void throw_result_type(const Key& key, const std::exception& e);

template <class T>
struct IsDelayed : std::false_type {};
template <class T>
struct IsDelayed<Delayed<T>> : std::true_type {
  using type = T;
};
template <class T>
struct IsDelayedVector : std::false_type {};
template <class T, class A>
struct IsDelayedVector<std::vector<Delayed<T>, A>> : std::true_type {
  using type = T;
};

template <class P>
using Param = std::remove_cvref_t<P>;

// Turns one call argument into a task argument for a parameter of type D.
template <class D, class A>
Arg to_arg(const A& a, std::vector<DelayedNodePtr>& deps) {
  if constexpr (IsDelayed<A>::value) {
    using U = typename IsDelayed<A>::type;
    static_assert(
        std::is_same_v<D, Value> || std::is_same_v<U, Value> || std::is_convertible_v<U, D>,
        "a Delayed<U> argument must convert to the function's parameter type");
    deps.push_back(a.node());
    return Arg::ref(a.key());
  } else if constexpr (IsDelayedVector<A>::value) {
    using U = typename IsDelayedVector<A>::type;
    if constexpr (!std::is_same_v<D, Value>) {
      static_assert(IsVector<D>::value, "a vector of Delayed values needs a std::vector parameter");
      using E = typename IsVector<D>::element;
      static_assert(
          std::is_same_v<E, Value> || std::is_same_v<U, Value> || std::is_convertible_v<U, E>,
          "the vector's Delayed<U> elements must convert to the parameter's element type");
    }
    std::vector<Arg> items;
    items.reserve(a.size());
    for (const auto& d : a) {
      deps.push_back(d.node());
      items.push_back(Arg::ref(d.key()));
    }
    return Arg::list(std::move(items));
  } else if constexpr (std::is_same_v<A, Value>) {
    return Arg(a);
  } else if constexpr (std::is_same_v<D, Value>) {
    return Arg(Value::of(a));
  } else {
    static_assert(std::is_convertible_v<const A&, D>,
                  "argument does not convert to the function's parameter type");
    return Arg(Value::of(static_cast<D>(a)));
  }
}

template <class R>
using DelayedResult = std::conditional_t<std::is_void_v<R>, void, std::remove_cvref_t<R>>;

}  // namespace detail

// How delayed() names and keys its calls.
struct DelayedOptions {
  // Lambdas and unregistered functions: the op's name (the key prefix). Values: the key.
  std::string name = {};
  // false: every call gets a fresh key (for functions with side effects), as dask's pure=False.
  bool pure = true;
};

// A lazy value of type T: the result of a delayed call, or a value placed in the graph.
template <class T>
class Delayed {
 public:
  using value_type = T;

  explicit Delayed(detail::DelayedNodePtr node) : node_(std::move(node)) {}

  // The deterministic key of this value.
  const Key& key() const noexcept { return node_->key; }
  // Computes the value (on the default scheduler unless options say otherwise).
  T compute(const ComputeOptions& options = {}) const {
    if constexpr (std::is_void_v<T>) {
      tessera::compute(*this, options);
    } else {
      return std::get<0>(tessera::compute(*this, options));
    }
  }
  // Computes the value and returns a Delayed holding it, under the same key.
  Delayed persist(const ComputeOptions& options = {}) const {
    return std::get<0>(tessera::persist(*this, options));
  }
  // The tasks this value needs.
  Graph graph() const { return detail::delayed_graph(node_); }
  // A picture of graph(): .svg, .png, .pdf (through graphviz) or .dot.
  void visualize(const std::string& filename, const VisualizeOptions& options = {}) const {
    tessera::visualize(graph(), filename, options);
  }
  const detail::DelayedNodePtr& node() const noexcept { return node_; }

 private:
  detail::DelayedNodePtr node_;
};

template <class T>
struct CollectionTraits<Delayed<T>> {
  using Result = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  static void graph(const Delayed<T>& d, HighLevelGraph& out) {
    out.add_layer(detail::delayed_layer(d.node()));
  }
  static void keys(const Delayed<T>& d, std::vector<Key>& out) { out.push_back(d.key()); }
  static Result finalize(const Delayed<T>& d, std::span<const Value> values) {
    if constexpr (std::is_void_v<T>) {
      return {};
    } else {
      try {
        return values[0].as<T>();
      } catch (const std::exception& e) {
        detail::throw_result_type(d.key(), e);
      }
    }
  }
  static Delayed<T> rebuild(const Delayed<T>& d, std::span<const Value> values) {
    return Delayed<T>(detail::delayed_result(d.key(), values[0]));
  }
};

// A function wrapped by delayed(): calling it builds a Delayed instead of running.
template <class Fp>
class DelayedFunction {
  using Traits = detail::FnTraits<Fp>;
  using R = detail::DelayedResult<typename Traits::result>;

 public:
  DelayedFunction(std::shared_ptr<const Op> op, DelayedOptions options)
      : op_(std::move(op)), options_(std::move(options)) {}

  template <class... A>
  Delayed<R> operator()(const A&... args) const {
    std::vector<detail::DelayedNodePtr> deps;
    if constexpr (!detail::kVariadic<Fp>) {
      static_assert(sizeof...(A) == Traits::arity, "wrong number of arguments for this function");
    }
    if constexpr (sizeof...(A) == 0) {
      return make({}, std::move(deps));
    } else {
      auto all = std::forward_as_tuple(args...);
      // Braced initialization evaluates left to right: dependencies keep argument order.
      auto task_args = [&]<size_t... I>(std::index_sequence<I...>) {
        if constexpr (detail::kVariadic<Fp>) {
          return std::array<Arg, sizeof...(A)>{detail::to_arg<Value>(std::get<I>(all), deps)...};
        } else {
          return std::array<Arg, sizeof...(A)>{
              detail::to_arg<detail::Param<std::tuple_element_t<I, typename Traits::args>>>(
                  std::get<I>(all), deps)...};
        }
      }
      (std::index_sequence_for<A...>{});
      return make(task_args, std::move(deps));
    }
  }

  const Op& op() const noexcept { return *op_; }

 private:
  Delayed<R> make(std::span<Arg> task_args, std::vector<detail::DelayedNodePtr> deps) const {
    Key key = detail::delayed_key(*op_, task_args, options_.pure);
    return Delayed<R>(std::make_shared<const detail::DelayedNode>(
        detail::DelayedNode{std::move(key), Task::call_moving(op_, task_args), std::move(deps)}));
  }

  std::shared_ptr<const Op> op_;
  DelayedOptions options_;
};

// Wraps a function: a registered one (TESSERA_REGISTER) by name, an unregistered one as a
// local closure.
template <class R, class... P>
DelayedFunction<R (*)(P...)> delayed(R (*fn)(P...), DelayedOptions options = {}) {
  const auto erased = reinterpret_cast<void (*)()>(fn);
  if (const Op* op = find_op_by_fn(erased)) {
    return {std::shared_ptr<const Op>(std::shared_ptr<const Op>(), op), std::move(options)};
  }
  std::string name = options.name.empty() ? detail::function_name(erased) : options.name;
  return {make_closure_op(std::move(name), fn), std::move(options)};
}

// Wraps a lambda or function object as a local closure (named by options.name, else
// "lambda"). Its calls' keys are deterministic within this process.
template <class F>
requires requires {
  &std::remove_cvref_t<F>::operator();
}
DelayedFunction<std::remove_cvref_t<F>> delayed(F&& f, DelayedOptions options = {}) {
  std::string name = options.name.empty() ? std::string("lambda") : options.name;
  return {make_closure_op(std::move(name), std::forward<F>(f)), std::move(options)};
}

// Places a value in the graph: delayed(std::vector<double>{1, 2, 3}).
template <class T>
requires(!std::is_function_v<std::remove_pointer_t<std::remove_cvref_t<T>>> &&
         !requires { &std::remove_cvref_t<T>::operator(); } &&
         !detail::IsDelayed<std::remove_cvref_t<T>>::value)
    Delayed<detail::StoredType<T>> delayed(T&& value, DelayedOptions options = {}) {
  return Delayed<detail::StoredType<T>>(
      detail::delayed_value(Value::of(std::forward<T>(value)), options.name));
}

// delayed() of a Delayed is the Delayed itself.
template <class T>
Delayed<T> delayed(Delayed<T> d) {
  return d;
}

}  // namespace tessera

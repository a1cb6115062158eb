// File: tessera/core/collection.hpp
//
// What makes something computable: a collection type C specializes CollectionTraits<C>
// (how to get its high-level graph and output keys, and how to turn the computed values
// into its result), and then tessera::compute and tessera::persist accept it, alone or
// together with other collections, sharing the work they have in common.
//
//   auto [x, y] = tessera::compute(a, b);                          // one graph, a's work once
//   auto [x2] = tessera::compute(a, tessera::ComputeOptions{.scheduler = "sync"});
//   std::vector<int64_t> xs = tessera::compute(std::vector{a, b});
//
// Traits members:
//   using Result = …;                                          // what compute() returns
//   static void graph(const C&, HighLevelGraph& out);          // add its layers
//   static void keys(const C&, std::vector<Key>& out);         // append its output keys
//   static Result finalize(const C&, std::span<const Value>);  // values of those keys
//   static C rebuild(const C&, std::span<const Value>);        // persist(): same keys, values held
//   static void optimize(Graph&, std::span<const Key>, const ComputeOptions&);  // optional
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/layer.hpp"
#include "tessera/core/scheduler.hpp"

namespace tessera {

template <class C>
struct CollectionTraits;

template <class C>
concept Collection = requires {
  typename CollectionTraits<std::remove_cvref_t<C>>::Result;
};

namespace detail {

using OptimizeFn = void (*)(Graph&, std::span<const Key>, const ComputeOptions&);

// Materializes what `keys` need, applies the optimizers (when options ask for it) and runs
// the chosen scheduler.
std::vector<Value> compute_keys(const HighLevelGraph& hlg, std::span<const Key> keys,
                                std::span<const OptimizeFn> optimizers,
                                const ComputeOptions& options);

template <class C>
OptimizeFn optimizer_of() {
  if constexpr (requires(Graph & g, std::span<const Key> k, const ComputeOptions& o) {
                  CollectionTraits<C>::optimize(g, k, o);
                }) {
    return &CollectionTraits<C>::optimize;
  } else {
    return nullptr;
  }
}

// Gathers graphs and keys of several collections, computes, and hands each its values.
template <class... C>
struct Batch {
  HighLevelGraph hlg;
  std::vector<Key> keys;
  std::vector<size_t> offsets;
  std::vector<OptimizeFn> optimizers;

  explicit Batch(const C&... cs) {
    (add(cs), ...);
    offsets.push_back(keys.size());
  }
  template <class X>
  void add(const X& c) {
    CollectionTraits<X>::graph(c, hlg);
    offsets.push_back(keys.size());
    CollectionTraits<X>::keys(c, keys);
    OptimizeFn f = optimizer_of<X>();
    if (f && std::find(optimizers.begin(), optimizers.end(), f) == optimizers.end())
      optimizers.push_back(f);
  }
  std::span<const Value> slice(const std::vector<Value>& values, size_t i) const {
    return std::span<const Value>(values).subspan(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

template <class... C, size_t... I>
auto compute_impl(const ComputeOptions& options, std::index_sequence<I...>, const C&... cs) {
  Batch<C...> batch(cs...);
  std::vector<Value> values = compute_keys(batch.hlg, batch.keys, batch.optimizers, options);
  return std::tuple<typename CollectionTraits<C>::Result...>(
      CollectionTraits<C>::finalize(cs, batch.slice(values, I))...);
}

template <class... C, size_t... I>
auto persist_impl(const ComputeOptions& options, std::index_sequence<I...>, const C&... cs) {
  Batch<C...> batch(cs...);
  std::vector<Value> values = compute_keys(batch.hlg, batch.keys, batch.optimizers, options);
  return std::tuple<C...>(CollectionTraits<C>::rebuild(cs, batch.slice(values, I))...);
}

template <class... Args>
using LastOf = std::tuple_element_t<sizeof...(Args) - 1, std::tuple<Args...>>;

template <class... Args>
inline constexpr bool kEndsWithOptions =
    sizeof...(Args) > 0 && std::is_same_v<std::remove_cvref_t<LastOf<Args...>>, ComputeOptions>;

template <class X>
inline constexpr bool kComputeArg =
    Collection<X> || std::is_same_v<std::remove_cvref_t<X>, ComputeOptions>;

template <bool Persist, class... Args>
auto dispatch(const Args&... args) {
  if constexpr (kEndsWithOptions<Args...>) {
    auto all = std::forward_as_tuple(args...);
    constexpr size_t n = sizeof...(Args) - 1;
    return [&]<size_t... I>(std::index_sequence<I...>) {
      const ComputeOptions& options = std::get<n>(all);
      if constexpr (Persist)
        return persist_impl(options, std::make_index_sequence<n>{}, std::get<I>(all)...);
      else
        return compute_impl(options, std::make_index_sequence<n>{}, std::get<I>(all)...);
    }
    (std::make_index_sequence<n>{});
  } else {
    if constexpr (Persist)
      return persist_impl(ComputeOptions{}, std::index_sequence_for<Args...>{}, args...);
    else
      return compute_impl(ComputeOptions{}, std::index_sequence_for<Args...>{}, args...);
  }
}

}  // namespace detail

// Computes several collections in one graph; returns a tuple of their results. The last
// argument may be ComputeOptions.
template <class... Args>
requires(sizeof...(Args) > 0 &&
         (detail::kComputeArg<Args> && ...)) auto compute(const Args&... args) {
  return detail::dispatch<false>(args...);
}

// Computes a vector of collections of one type; returns their results in order.
template <Collection C>
std::vector<typename CollectionTraits<C>::Result> compute(const std::vector<C>& cs,
                                                          const ComputeOptions& options = {}) {
  HighLevelGraph hlg;
  std::vector<Key> keys;
  std::vector<size_t> offsets;
  for (const C& c : cs) {
    CollectionTraits<C>::graph(c, hlg);
    offsets.push_back(keys.size());
    CollectionTraits<C>::keys(c, keys);
  }
  offsets.push_back(keys.size());
  std::vector<detail::OptimizeFn> opt;
  if (auto f = detail::optimizer_of<C>()) opt.push_back(f);
  std::vector<Value> values = detail::compute_keys(hlg, keys, opt, options);
  std::vector<typename CollectionTraits<C>::Result> out;
  out.reserve(cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    out.push_back(CollectionTraits<C>::finalize(
        cs[i], std::span<const Value>(values).subspan(offsets[i], offsets[i + 1] - offsets[i])));
  }
  return out;
}

// Computes collections and returns them with their results held in memory (same keys), so
// later computations that use them start from there.
template <class... Args>
requires(sizeof...(Args) > 0 &&
         (detail::kComputeArg<Args> && ...)) auto persist(const Args&... args) {
  return detail::dispatch<true>(args...);
}

}  // namespace tessera

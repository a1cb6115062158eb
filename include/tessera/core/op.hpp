// File: tessera/core/op.hpp
//
// The op registry. TESSERA_REGISTER(fn) registers a free function under its name, so tasks
// that call it can be serialized and run in any process that links the same code (or
// preloads it as a plugin). Arguments and results convert to and from Value
// automatically: numbers, strings, std::vector, and any type with a tessera::Codec.
//
//   int64_t inc(int64_t x) { return x + 1; }
//   TESSERA_REGISTER(inc);
//
//   const tessera::Op& op = tessera::get_op("inc");
//   tessera::Value r = op.invoke(op, std::vector{tessera::Value::of(int64_t{1})});  // 2
//
// Parameters may be taken by value or by const reference (no copy: the reference points
// at the shared result). A function `tessera::Value f(std::span<const tessera::Value>)`
// is registered as variadic and receives the evaluated arguments as they are.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/task.hpp"
#include "tessera/core/value.hpp"

namespace tessera {

// How an op behaves in graph optimizations.
struct OpOptions {
  // Cheap ops (getitem-like) may be inlined into every dependent by inline_cheap().
  bool cheap = false;
};

// The op registered under `name`, or nullptr.
const Op* find_op(std::string_view name);
// The op registered under `name`; OpError naming it (and suggesting the fix) otherwise.
const Op& get_op(std::string_view name);
// The registered op for a function pointer, or nullptr.
const Op* find_op_by_fn(void (*fn)());
// Names of all registered ops, sorted.
std::vector<std::string> registered_op_names();
// Registers `op` (op.registered is set); returns the registry's copy, which lives forever.
// Registering the same function twice under one name is a no-op; two different functions
// under one name make that name unusable (OpError when it is looked up).
const Op& register_op(Op op);

namespace detail {

template <class F>
struct FnTraits;
template <class R, class... A>
struct FnTraits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<A...>;
  static constexpr size_t arity = sizeof...(A);
};
template <class R, class... A>
struct FnTraits<R (*)(A...) noexcept> : FnTraits<R (*)(A...)> {};
template <class C, class R, class... A>
struct FnTraits<R (C::*)(A...) const> : FnTraits<R (*)(A...)> {};
template <class C, class R, class... A>
struct FnTraits<R (C::*)(A...)> : FnTraits<R (*)(A...)> {};
template <class C, class R, class... A>
struct FnTraits<R (C::*)(A...) const noexcept> : FnTraits<R (*)(A...)> {};
template <class C, class R, class... A>
struct FnTraits<R (C::*)(A...) noexcept> : FnTraits<R (*)(A...)> {};

// The signature of a lambda or function object.
template <class F>
requires requires {
  &F::operator();
}
struct FnTraits<F> : FnTraits<decltype(&F::operator())> {};

template <class P>
inline constexpr bool kValidParam =
    !std::is_lvalue_reference_v<P> || std::is_const_v<std::remove_reference_t<P>>;

[[noreturn]] void throw_arity(const Op& op, size_t got);
[[noreturn]] void throw_arg_type(const Op& op, size_t position, const TypeInfo& held,
                                 std::string_view wanted, const char* detail);
std::string key_prefix_of(std::string_view name);

// Gives a parameter its argument: a reference to the held object when the type matches
// exactly, else a converted temporary.
template <class D>
class ArgRef {
 public:
  ArgRef(const Op& op, size_t position, const Value& v) {
    if constexpr (std::is_same_v<D, Value>) {
      ptr_ = &v;
    } else {
      if (v.is<D>()) {
        ptr_ = &v.get<D>();
      } else {
        try {
          tmp_.emplace(v.as<D>());
        } catch (const std::exception& e) {
          throw_arg_type(op, position, v.type(), type_of<D>().name, e.what());
        }
      }
    }
  }
  // Resolved here, not stored: an ArgRef is moved into a tuple after construction.
  const D& get() const { return tmp_ ? *tmp_ : *ptr_; }

 private:
  const D* ptr_ = nullptr;
  std::optional<D> tmp_;
};

// Passes an argument: a const reference, or a copy for `T&&` parameters.
template <class A, class D>
decltype(auto) pass(const ArgRef<D>& r) {
  if constexpr (std::is_rvalue_reference_v<A>)
    return D(r.get());
  else
    return r.get();
}

template <class R, class... A, class F, size_t... I>
Value call_with(const Op& op, F&& f, std::span<const Value> args, std::index_sequence<I...>) {
  if (args.size() != sizeof...(A)) throw_arity(op, args.size());
  std::tuple<ArgRef<std::remove_cvref_t<A>>...> refs{
      ArgRef<std::remove_cvref_t<A>>(op, I, args[I])...};
  if constexpr (std::is_void_v<R>) {
    f(pass<A>(std::get<I>(refs))...);
    return Value();
  } else if constexpr (std::is_same_v<std::remove_cvref_t<R>, Value>) {
    return f(pass<A>(std::get<I>(refs))...);
  } else {
    return Value::of(f(pass<A>(std::get<I>(refs))...));
  }
}

template <class Fp, class R, class... A>
Value invoke_fn(const Op& op, std::span<const Value> args) {
  auto f = reinterpret_cast<Fp>(op.fn);
  return call_with<R, A...>(op, f, args, std::index_sequence_for<A...>{});
}

template <class F, class R, class... A>
Value invoke_closure(const Op& op, std::span<const Value> args) {
  auto& f = *static_cast<F*>(op.closure.get());
  return call_with<R, A...>(op, f, args, std::index_sequence_for<A...>{});
}

Value invoke_variadic_fn(const Op& op, std::span<const Value> args);
Value invoke_variadic_closure(const Op& op, std::span<const Value> args);

template <class F>
inline constexpr bool kVariadic =
    std::is_same_v<typename FnTraits<F>::args, std::tuple<std::span<const Value>>>&&
        std::is_same_v<typename FnTraits<F>::result, Value>;

template <class T>
void register_param_type() {
  using D = std::remove_cvref_t<T>;
  if constexpr (!std::is_void_v<D> && !std::is_same_v<D, Value> &&
                !std::is_same_v<D, std::span<const Value>>) {
    (void)type_of<D>();
  }
}

template <class T>
std::string param_type_name() {
  using D = std::remove_cvref_t<T>;
  if constexpr (std::is_void_v<D>)
    return "none";
  else if constexpr (std::is_same_v<D, Value>)
    return "any";
  else if constexpr (std::is_same_v<D, std::span<const Value>>)
    return "any...";
  else
    return type_of<D>().name;
}

template <class Traits, size_t... I>
std::vector<std::string> param_names(std::index_sequence<I...>) {
  return {param_type_name<std::tuple_element_t<I, typename Traits::args>>()...};
}

template <class Fp, class R, class... A>
void fill_signature(Op& op, std::tuple<A...>*) {
  static_assert(
      (kValidParam<A> && ...),
      "op parameters must be taken by value or by const reference: results are immutable");
  (register_param_type<A>(), ...);
  register_param_type<R>();
  op.param_types = {param_type_name<A>()...};
  op.result_type = param_type_name<R>();
  op.arity = static_cast<int>(sizeof...(A));
}

template <class F, class R, class... A>
void set_closure_invoke(Op& op, std::tuple<A...>*) {
  op.invoke = &invoke_closure<F, R, A...>;
}
template <class Fp, class R, class... A>
void set_fn_invoke(Op& op, std::tuple<A...>*) {
  op.invoke = &invoke_fn<Fp, R, A...>;
}

}  // namespace detail

// Describes a free function as an op named `name` (not registered).
template <class Fp>
requires std::is_pointer_v<Fp> && std::is_function_v<std::remove_pointer_t<Fp>> Op
make_op(std::string name, Fp fn, OpOptions options = {}) {
  using Traits = detail::FnTraits<Fp>;
  Op op;
  op.key_prefix = detail::key_prefix_of(name);
  op.name = std::move(name);
  op.fn = reinterpret_cast<void (*)()>(fn);
  op.cheap = options.cheap;
  if constexpr (detail::kVariadic<Fp>) {
    op.arity = -1;
    op.param_types = {"any..."};
    op.result_type = "any";
    op.invoke = &detail::invoke_variadic_fn;
  } else {
    using R = typename Traits::result;
    detail::fill_signature<Fp, R>(op, static_cast<typename Traits::args*>(nullptr));
    detail::set_fn_invoke<Fp, R>(op, static_cast<typename Traits::args*>(nullptr));
  }
  return op;
}

// Describes a lambda or function object as a local op (a closure: usable in graphs that
// stay in this process; a scheduler that must ship it refuses with an error naming it).
template <class F>
std::shared_ptr<const Op> make_closure_op(std::string name, F f, OpOptions options = {}) {
  using Fn = std::remove_cvref_t<F>;
  using Traits = detail::FnTraits<Fn>;
  auto op = std::make_shared<Op>();
  op->key_prefix = detail::key_prefix_of(name);
  op->name = std::move(name);
  op->cheap = options.cheap;
  if constexpr (detail::kVariadic<Fn>) {
    op->closure = std::make_shared<std::function<Value(std::span<const Value>)>>(std::move(f));
    op->arity = -1;
    op->param_types = {"any..."};
    op->result_type = "any";
    op->invoke = &detail::invoke_variadic_closure;
  } else {
    op->closure = std::make_shared<Fn>(std::move(f));
    using R = typename Traits::result;
    detail::fill_signature<Fn, R>(*op, static_cast<typename Traits::args*>(nullptr));
    detail::set_closure_invoke<Fn, R>(*op, static_cast<typename Traits::args*>(nullptr));
  }
  return op;
}

// Registers a free function under `name`.
template <class Fp>
const Op& register_function(std::string name, Fp fn, OpOptions options = {}) {
  return register_op(make_op(std::move(name), fn, options));
}

}  // namespace tessera

#ifndef TESSERA_CONCAT_
#define TESSERA_CONCAT_INNER_(a, b) a##b
#define TESSERA_CONCAT_(a, b) TESSERA_CONCAT_INNER_(a, b)
#endif

// TESSERA_REGISTER(fn): registers the free function `fn` under the name "fn" (qualified
// names such as mylib::fn keep their qualification; keys use the last part).
#define TESSERA_REGISTER(fn)                                                       \
  static const ::tessera::Op& TESSERA_CONCAT_(tessera_registered_op_, __COUNTER__) \
      [[maybe_unused]] = ::tessera::register_function(#fn, &fn)

// TESSERA_REGISTER_AS("name", fn, options...): registers `fn` under an explicit name.
#define TESSERA_REGISTER_AS(name, fn, ...)                                         \
  static const ::tessera::Op& TESSERA_CONCAT_(tessera_registered_op_, __COUNTER__) \
      [[maybe_unused]] = ::tessera::register_function(name, &fn __VA_OPT__(, ) __VA_ARGS__)

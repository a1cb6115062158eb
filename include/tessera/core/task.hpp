// File: tessera/core/task.hpp
//
// A Task is a registered op plus arguments. An argument is a literal Value, a reference to
// another task's Key, a list of arguments, or a nested Task evaluated in place (what
// fusion and inlining produce). Because ops are named, a task can be hashed, serialized and
// run in any process that registered the same op (../../docs/architecture.md).
//
//   using tessera::Arg;
//   auto t = tessera::Task::call("add", {Arg::ref(tessera::Key("a")),
//   Arg(tessera::Value::of(int64_t{1}))}); t.dependencies();   // {Key("a")}
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tessera/core/key.hpp"
#include "tessera/core/value.hpp"

namespace tessera {

// A callable a task runs: its name, how it converts arguments, and whether it can be
// shipped to another process (registered by name) or is a local closure.
struct Op {
  // Calls the op on evaluated arguments.
  using Invoke = Value (*)(const Op& op, std::span<const Value> args);

  std::string name;                      // registry name, e.g. "inc" or "mylib::inc"
  std::string key_prefix;                // prefix of the keys delayed() gives it: "inc"
  int arity = -1;                        // number of arguments, -1 when variadic
  std::vector<std::string> param_types;  // type names, for messages
  std::string result_type;
  Invoke invoke = nullptr;
  void (*fn)() = nullptr;         // the registered function (type-erased pointer)
  std::shared_ptr<void> closure;  // a lambda's state (closures only)
  bool registered = false;        // found by name in every process that links it
  bool cheap = false;             // cheap enough to be inlined into its dependents
};

class Task;

// One argument of a task.
class Arg {
 public:
  enum class Kind : uint8_t { kValue, kRef, kList, kTask };

  // A literal value.
  Arg(Value v) : v_(std::move(v)) {}  // NOLINT(google-explicit-constructor)
  // A literal of any type T that a Value can hold.
  template <class T>
  requires(!std::is_same_v<std::remove_cvref_t<T>, Arg> &&
           !std::is_same_v<std::remove_cvref_t<T>, Value> &&
           !std::is_same_v<std::remove_cvref_t<T>, Key> &&
           !std::is_same_v<std::remove_cvref_t<T>, Task>) static Arg literal(T&& x) {
    return Arg(Value::of(std::forward<T>(x)));
  }
  // A reference to another task's result.
  static Arg ref(Key key) {
    Arg a;
    a.v_ = std::move(key);
    return a;
  }
  // A list of arguments; evaluates to a Value of type "list".
  static Arg list(std::vector<Arg> items);
  // A nested task, evaluated in place when this argument is needed.
  static Arg task(Task t);
  static Arg task(std::shared_ptr<const Task> t);

  Kind kind() const noexcept { return static_cast<Kind>(v_.index()); }
  const Value& value() const { return std::get<0>(v_); }
  const Key& ref() const { return std::get<1>(v_); }
  std::span<const Arg> list() const { return *std::get<2>(v_); }
  const Task& task() const { return *std::get<3>(v_); }
  const std::shared_ptr<const Task>& task_ptr() const { return std::get<3>(v_); }
  const std::shared_ptr<const std::vector<Arg>>& list_ptr() const { return std::get<2>(v_); }

 private:
  Arg() = default;
  std::variant<Value, Key, std::shared_ptr<const std::vector<Arg>>, std::shared_ptr<const Task>> v_;
};

namespace detail {
// A task's arguments: up to two stored inline (most tasks), more on the heap. Immutable
// once built.
class ArgStorage {
 public:
  ArgStorage() noexcept = default;
  explicit ArgStorage(std::vector<Arg>&& args);
  explicit ArgStorage(std::initializer_list<Arg> args);
  explicit ArgStorage(std::span<Arg> moved_from);
  ArgStorage(const ArgStorage& o);
  ArgStorage(ArgStorage&& o) noexcept;
  ArgStorage& operator=(ArgStorage o) noexcept;
  ~ArgStorage();
  std::span<const Arg> span() const noexcept { return {data(), size_}; }

 private:
  static constexpr uint32_t kInline = 2;
  // Where size_ arguments go: the inline buffer, or a new heap block.
  Arg* storage();
  const Arg* data() const noexcept {
    return size_ > kInline ? heap_ : reinterpret_cast<const Arg*>(inline_);
  }
  uint32_t size_ = 0;
  union {
    alignas(8) unsigned char inline_[kInline * 24];
    Arg* heap_;
  };
};
}  // namespace detail

// An op applied to arguments; or, without an op, the value of its single argument (a
// literal, an alias of another key, or a list).
class Task {
 public:
  // The empty task: evaluates to the empty value.
  Task() = default;
  // A call of a registered (or otherwise immortal) op.
  static Task call(const Op& op, std::vector<Arg> args);
  // The same from a braced list, without building a temporary vector.
  static Task call(const Op& op, std::initializer_list<Arg> args);
  // A call of an op kept alive by the task (closures).
  static Task call(std::shared_ptr<const Op> op, std::vector<Arg> args);
  // A call whose arguments are moved out of `args` (left valid but unspecified).
  static Task call_moving(std::shared_ptr<const Op> op, std::span<Arg> args);
  // A call of the op registered under `name`; OpError naming it if there is none.
  static Task call(std::string_view op_name, std::vector<Arg> args);
  // A task whose result is this literal value.
  static Task literal(Value v);
  // A task whose result is the result of `key`.
  static Task alias(Key key);
  // A task whose result is this argument evaluated (a list of references, say).
  static Task of_arg(Arg arg);

  // The op, or nullptr when the task just evaluates its argument.
  const Op* op() const noexcept { return op_.get(); }
  const std::shared_ptr<const Op>& op_ptr() const noexcept { return op_; }
  std::span<const Arg> args() const noexcept { return args_.span(); }
  bool is_call() const noexcept { return op_ != nullptr; }
  // The name shown in pictures and profiles: the op's name, or "literal"/"alias"/"list".
  std::string_view label() const noexcept;

  // The same op with other arguments.
  Task with_args(std::vector<Arg> args) const;

  // Every key this task references, in argument order, duplicates included.
  void collect_refs(std::vector<Key>& out) const;
  // The distinct keys this task references, in order of first appearance.
  std::vector<Key> dependencies() const;

 private:
  std::shared_ptr<const Op> op_;
  detail::ArgStorage args_;
};

using TaskPtr = std::shared_ptr<const Task>;

}  // namespace tessera

#include "tessera/core/op.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "tessera/core/error.hpp"

namespace tessera {

namespace {

struct OpRegistry {
  std::shared_mutex mutex;
  std::deque<Op> ops;  // stable addresses
  std::map<std::string, Op*, std::less<>> by_name;
  std::unordered_map<void (*)(), Op*> by_fn;
  std::map<std::string, std::string, std::less<>> conflicts;  // name -> description
};

OpRegistry& registry() {
  static OpRegistry* r = new OpRegistry();  // never destroyed: ops are used until exit
  return *r;
}

}  // namespace

const Op& register_op(Op op) {
  OpRegistry& r = registry();
  std::unique_lock lock(r.mutex);
  if (auto it = r.by_name.find(op.name); it != r.by_name.end()) {
    Op* existing = it->second;
    if (existing->fn == op.fn && existing->invoke == op.invoke && existing->closure == op.closure)
      return *existing;
    r.conflicts[op.name] = fmt::format(
        "op '{}' is registered twice, by two different functions ({}({}) and {}({})); "
        "register one of them under another name with TESSERA_REGISTER_AS",
        op.name, existing->result_type, fmt::join(existing->param_types, ", "), op.result_type,
        fmt::join(op.param_types, ", "));
    op.registered = true;
    r.ops.push_back(std::move(op));
    Op& added = r.ops.back();
    if (added.fn) r.by_fn.emplace(added.fn, &added);
    return added;
  }
  op.registered = true;
  r.ops.push_back(std::move(op));
  Op& added = r.ops.back();
  r.by_name.emplace(added.name, &added);
  if (added.fn) r.by_fn.emplace(added.fn, &added);
  return added;
}

const Op* find_op(std::string_view name) {
  OpRegistry& r = registry();
  std::shared_lock lock(r.mutex);
  if (r.conflicts.count(name)) return nullptr;
  auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : it->second;
}

const Op& get_op(std::string_view name) {
  OpRegistry& r = registry();
  std::shared_lock lock(r.mutex);
  if (auto c = r.conflicts.find(name); c != r.conflicts.end()) throw OpError(c->second);
  auto it = r.by_name.find(name);
  if (it == r.by_name.end()) {
    throw OpError(
        fmt::format("unknown op '{}': no function is registered under that name in this process; "
                    "register it with "
                    "TESSERA_REGISTER({}) in code linked into this program (or a plugin preloaded "
                    "by the worker)",
                    name, name));
  }
  return *it->second;
}

const Op* find_op_by_fn(void (*fn)()) {
  OpRegistry& r = registry();
  std::shared_lock lock(r.mutex);
  auto it = r.by_fn.find(fn);
  if (it == r.by_fn.end() || r.conflicts.count(it->second->name)) return nullptr;
  return it->second;
}

std::vector<std::string> registered_op_names() {
  OpRegistry& r = registry();
  std::shared_lock lock(r.mutex);
  std::vector<std::string> out;
  for (const auto& [name, op] : r.by_name) out.push_back(name);
  return out;
}

namespace detail {

void throw_arity(const Op& op, size_t got) {
  throw TypeError(fmt::format("op '{}' takes {} argument{} ({}), but {} were given", op.name,
                              op.arity, op.arity == 1 ? "" : "s", fmt::join(op.param_types, ", "),
                              got));
}

void throw_arg_type(const Op& op, size_t position, const TypeInfo& held, std::string_view wanted,
                    const char* detail) {
  throw TypeError(
      fmt::format("op '{}' argument {} expects '{}', but the value given has type '{}' ({})",
                  op.name, position + 1, wanted, held.name, detail));
}

std::string key_prefix_of(std::string_view name) {
  while (!name.empty() && (name.front() == '&' || name.front() == ' ')) name.remove_prefix(1);
  if (auto p = name.rfind("::"); p != std::string_view::npos) name.remove_prefix(p + 2);
  std::string out(name);
  for (char& c : out) {
    if (c == '<' || c == '>' || c == ' ' || c == ',' || c == '(' || c == ')') c = '_';
  }
  return out.empty() ? std::string("op") : out;
}

Value invoke_variadic_fn(const Op& op, std::span<const Value> args) {
  auto f = reinterpret_cast<Value (*)(std::span<const Value>)>(op.fn);
  return f(args);
}

Value invoke_variadic_closure(const Op& op, std::span<const Value> args) {
  // Variadic closures are stored as a std::function (see make_closure_op).
  auto* f = static_cast<std::function<Value(std::span<const Value>)>*>(op.closure.get());
  return (*f)(args);
}

}  // namespace detail

}  // namespace tessera

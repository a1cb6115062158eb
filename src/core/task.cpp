#include "tessera/core/task.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "tessera/core/error.hpp"
#include "tessera/core/op.hpp"

namespace tessera {

Arg Arg::list(std::vector<Arg> items) {
  Arg a;
  a.v_ = std::make_shared<const std::vector<Arg>>(std::move(items));
  return a;
}

Arg Arg::task(Task t) { return task(std::make_shared<const Task>(std::move(t))); }

Arg Arg::task(std::shared_ptr<const Task> t) {
  Arg a;
  a.v_ = std::move(t);
  return a;
}

Task Task::call(const Op& op, std::vector<Arg> args) {
  Task t;
  // Registered ops live forever: an aliasing pointer with no control block costs no atomics.
  t.op_ = std::shared_ptr<const Op>(std::shared_ptr<const Op>(), &op);
  t.args_ = std::move(args);
  return t;
}

Task Task::call(std::shared_ptr<const Op> op, std::vector<Arg> args) {
  if (!op) throw ValueError("Task::call: null op");
  Task t;
  t.op_ = std::move(op);
  t.args_ = std::move(args);
  return t;
}

Task Task::call(std::string_view op_name, std::vector<Arg> args) { return call(get_op(op_name), std::move(args)); }

Task Task::literal(Value v) { return of_arg(Arg(std::move(v))); }

Task Task::alias(Key key) { return of_arg(Arg::ref(std::move(key))); }

Task Task::of_arg(Arg arg) {
  Task t;
  t.args_.push_back(std::move(arg));
  return t;
}

Task Task::with_args(std::vector<Arg> args) const {
  Task t;
  t.op_ = op_;
  t.args_ = std::move(args);
  return t;
}

std::string_view Task::label() const noexcept {
  if (op_) return op_->name;
  if (args_.empty()) return "none";
  switch (args_[0].kind()) {
    case Arg::Kind::kValue: return "literal";
    case Arg::Kind::kRef: return "alias";
    case Arg::Kind::kList: return "list";
    case Arg::Kind::kTask: return args_[0].task().label();
  }
  return "task";
}

namespace {

void collect(std::span<const Arg> args, std::vector<Key>& out) {
  for (const Arg& a : args) {
    switch (a.kind()) {
      case Arg::Kind::kValue: break;
      case Arg::Kind::kRef: out.push_back(a.ref()); break;
      case Arg::Kind::kList: collect(a.list(), out); break;
      case Arg::Kind::kTask: collect(a.task().args(), out); break;
    }
  }
}

}  // namespace

void Task::collect_refs(std::vector<Key>& out) const { collect(args_, out); }

std::vector<Key> Task::dependencies() const {
  std::vector<Key> refs;
  collect_refs(refs);
  std::vector<Key> out;
  for (Key& k : refs) {
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(std::move(k));
  }
  return out;
}

}  // namespace tessera

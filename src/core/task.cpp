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

Arg Arg::task(Task t) {
  return task(std::make_shared<const Task>(std::move(t)));
}

Arg Arg::task(std::shared_ptr<const Task> t) {
  Arg a;
  a.v_ = std::move(t);
  return a;
}

namespace detail {

static_assert(sizeof(Arg) == 24, "ArgStorage's inline buffer is sized for 24-byte arguments");

ArgStorage::ArgStorage(std::vector<Arg>&& args) : ArgStorage(std::span<Arg>(args)) {}

Arg* ArgStorage::storage() {
  if (size_ <= kInline) return reinterpret_cast<Arg*>(inline_);
  heap_ = static_cast<Arg*>(::operator new(size_ * sizeof(Arg)));
  return heap_;
}

ArgStorage::ArgStorage(std::span<Arg> args) : size_(static_cast<uint32_t>(args.size())) {
  Arg* out = storage();
  for (uint32_t i = 0; i < size_; ++i) new (out + i) Arg(std::move(args[i]));
}

ArgStorage::ArgStorage(std::initializer_list<Arg> args)
    : size_(static_cast<uint32_t>(args.size())) {
  Arg* out = storage();
  for (uint32_t i = 0; i < size_; ++i) new (out + i) Arg(args.begin()[i]);
}

ArgStorage::ArgStorage(const ArgStorage& o) : size_(o.size_) {
  Arg* out = storage();
  const Arg* in = o.data();
  for (uint32_t i = 0; i < size_; ++i) new (out + i) Arg(in[i]);
}

ArgStorage::ArgStorage(ArgStorage&& o) noexcept : size_(o.size_) {
  if (size_ > kInline) {
    heap_ = o.heap_;
  } else {
    Arg* out = reinterpret_cast<Arg*>(inline_);
    Arg* in = reinterpret_cast<Arg*>(o.inline_);
    for (uint32_t i = 0; i < size_; ++i) {
      new (out + i) Arg(std::move(in[i]));
      in[i].~Arg();
    }
  }
  o.size_ = 0;
}

ArgStorage& ArgStorage::operator=(ArgStorage o) noexcept {
  this->~ArgStorage();
  new (this) ArgStorage(std::move(o));
  return *this;
}

ArgStorage::~ArgStorage() {
  Arg* a = const_cast<Arg*>(data());
  for (uint32_t i = 0; i < size_; ++i) a[i].~Arg();
  if (size_ > kInline) ::operator delete(heap_);
  size_ = 0;
}

}  // namespace detail

Task Task::call(const Op& op, std::vector<Arg> args) {
  Task t;
  // Registered ops live forever: an aliasing pointer with no control block costs no atomics.
  t.op_ = std::shared_ptr<const Op>(std::shared_ptr<const Op>(), &op);
  t.args_ = detail::ArgStorage(std::move(args));
  return t;
}

Task Task::call(const Op& op, std::initializer_list<Arg> args) {
  Task t;
  t.op_ = std::shared_ptr<const Op>(std::shared_ptr<const Op>(), &op);
  t.args_ = detail::ArgStorage(args);
  return t;
}

Task Task::call_moving(std::shared_ptr<const Op> op, std::span<Arg> args) {
  if (!op) throw ValueError("Task::call: null op");
  Task t;
  t.op_ = std::move(op);
  t.args_ = detail::ArgStorage(args);
  return t;
}

Task Task::call(std::shared_ptr<const Op> op, std::vector<Arg> args) {
  if (!op) throw ValueError("Task::call: null op");
  Task t;
  t.op_ = std::move(op);
  t.args_ = detail::ArgStorage(std::move(args));
  return t;
}

Task Task::call(std::string_view op_name, std::vector<Arg> args) {
  return call(get_op(op_name), std::move(args));
}

Task Task::literal(Value v) {
  return of_arg(Arg(std::move(v)));
}

Task Task::alias(Key key) {
  return of_arg(Arg::ref(std::move(key)));
}

Task Task::of_arg(Arg arg) {
  Task t;
  std::vector<Arg> one;
  one.push_back(std::move(arg));
  t.args_ = detail::ArgStorage(std::move(one));
  return t;
}

Task Task::with_args(std::vector<Arg> args) const {
  if (!op_ && args.size() != 1) {
    throw ValueError(
        fmt::format("a task without an op evaluates one argument, not {}", args.size()));
  }
  Task t;
  t.op_ = op_;
  t.args_ = detail::ArgStorage(std::move(args));
  return t;
}

std::string_view Task::label() const noexcept {
  if (op_) return op_->name;
  const auto args = args_.span();
  if (args.empty()) return "none";
  switch (args[0].kind()) {
    case Arg::Kind::kValue:
      return "literal";
    case Arg::Kind::kRef:
      return "alias";
    case Arg::Kind::kList:
      return "list";
    case Arg::Kind::kTask:
      return args[0].task().label();
  }
  return "task";
}

namespace {

void collect(std::span<const Arg> args, std::vector<Key>& out) {
  for (const Arg& a : args) {
    switch (a.kind()) {
      case Arg::Kind::kValue:
        break;
      case Arg::Kind::kRef:
        out.push_back(a.ref());
        break;
      case Arg::Kind::kList:
        collect(a.list(), out);
        break;
      case Arg::Kind::kTask:
        collect(a.task().args(), out);
        break;
    }
  }
}

}  // namespace

void Task::collect_refs(std::vector<Key>& out) const {
  collect(args_.span(), out);
}

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

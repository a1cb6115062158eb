#include "local/execute_internal.hpp"

#include <fmt/format.h>

#include <array>

#include "tessera/core/error.hpp"

namespace tessera::local {

namespace {

Value evaluate(const Arg& a, std::span<const uint32_t> refs, size_t& cursor, const Value* results);

Value call(const Task& task, std::span<const uint32_t> refs, size_t& cursor, const Value* results) {
  const auto args = task.args();
  const Op* op = task.op();
  if (!op) return args.empty() ? Value() : evaluate(args[0], refs, cursor, results);
  // Most ops take few arguments: evaluate them on the stack.
  if (args.size() <= 6) {
    std::array<Value, 6> buf;
    for (size_t i = 0; i < args.size(); ++i) buf[i] = evaluate(args[i], refs, cursor, results);
    return op->invoke(*op, std::span<const Value>(buf.data(), args.size()));
  }
  std::vector<Value> buf;
  buf.reserve(args.size());
  for (const Arg& a : args) buf.push_back(evaluate(a, refs, cursor, results));
  return op->invoke(*op, buf);
}

Value evaluate(const Arg& a, std::span<const uint32_t> refs, size_t& cursor, const Value* results) {
  switch (a.kind()) {
    case Arg::Kind::kValue:
      return a.value();
    case Arg::Kind::kRef:
      return results[refs[cursor++]];
    case Arg::Kind::kList: {
      std::vector<Value> items;
      items.reserve(a.list().size());
      for (const Arg& x : a.list()) items.push_back(evaluate(x, refs, cursor, results));
      return Value::list(std::move(items));
    }
    case Arg::Kind::kTask:
      return call(a.task(), refs, cursor, results);
  }
  return Value();
}

}  // namespace

Value execute_task(const Task& task, std::span<const uint32_t> refs, const Value* results) {
  size_t cursor = 0;
  return call(task, refs, cursor, results);
}

Value execute_task(const Task& task, std::span<const uint32_t> refs, const Value* results,
                   uint32_t retries, const std::atomic<bool>* stop) {
  for (uint32_t attempt = 0;; ++attempt) {
    try {
      return execute_task(task, refs, results);
    } catch (...) {
      if (attempt >= retries || (stop && stop->load(std::memory_order_relaxed))) throw;
    }
  }
}

std::exception_ptr task_failure(const Key& key, const Task& task, std::exception_ptr error) {
  std::string what;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = fmt::format("{}: {}", detail::demangle(typeid(e)), e.what());
  } catch (...) {
    what = "an exception that is not a std::exception";
  }
  return std::make_exception_ptr(
      TaskError(key.str(), std::string(task.label()), error,
                fmt::format("task '{}' (op '{}') raised {}", key.str(), task.label(), what)));
}

}  // namespace tessera::local

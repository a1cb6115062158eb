// File: tessera/core/error.hpp
//
// The exceptions tessera throws. Everything derives from tessera::Error, so one catch
// clause handles any tessera failure; the subclasses say what kind of mistake it was, and
// every message names the offending key, op, type, shape or file.
//
//   try {
//     auto r = tessera::delayed(parse)("x").compute();
//   } catch (const tessera::TaskError& e) {   // the task `parse-…` threw
//     std::cerr << e.key() << ": " << e.what();
//   }
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

namespace tessera {

// Base class of every exception tessera throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An argument has the wrong value: a bad option, a shape that does not fit, …
class ValueError : public Error {
 public:
  using Error::Error;
};

// A Value was read as a type it does not hold; the message names both types.
class TypeError : public Error {
 public:
  using Error::Error;
};

// A key is missing: not in the graph, not produced by any layer, or not registered.
class KeyError : public Error {
 public:
  using Error::Error;
};

// The graph itself is malformed: a cycle, a reference to a key that is not there.
class GraphError : public Error {
 public:
  using Error::Error;
};

// An op name is not registered in this process (or two functions claim the same name).
class OpError : public Error {
 public:
  using Error::Error;
};

// Bytes that do not decode, or a value that cannot be encoded (no codec, a closure).
class SerializationError : public Error {
 public:
  using Error::Error;
};

// An index or axis out of range; the message names it and the shape or number of axes.
class IndexError : public Error {
 public:
  using Error::Error;
};

// An axis out of range for an array's number of dimensions (NumPy's AxisError).
class AxisError : public IndexError {
 public:
  using IndexError::IndexError;
};

// A file that cannot be read or written, or whose contents are not what they should be;
// the message names the path.
class IOError : public Error {
 public:
  using Error::Error;
};

// A failure inside a scheduler itself, not in a task (an unknown scheduler name, …).
class SchedulerError : public Error {
 public:
  using Error::Error;
};

// An exception raised inside a task. what() names the task's key and op and carries the
// original message; original() is the exception the task threw, for rethrowing.
class TaskError : public Error {
 public:
  TaskError(std::string key, std::string op, std::exception_ptr original,
            const std::string& message);
  // The key of the task that failed.
  const std::string& key() const noexcept { return key_; }
  // The op the task ran.
  const std::string& op() const noexcept { return op_; }
  // The exception the task threw.
  std::exception_ptr original() const noexcept { return original_; }
  // Throws the exception the task threw.
  [[noreturn]] void rethrow_original() const { std::rethrow_exception(original_); }

 private:
  std::string key_;
  std::string op_;
  std::exception_ptr original_;
};

namespace detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* message);
}  // namespace detail

}  // namespace tessera

// TESSERA_ASSERT(cond, "why"): an invariant check, active in debug and sanitizer builds
// (and with -DTESSERA_ASSERTS=ON); compiled out otherwise.
#if defined(TESSERA_ENABLE_ASSERTS)
#define TESSERA_ASSERT(cond, msg) \
  ((cond) ? (void)0 : ::tessera::detail::assert_fail(#cond, __FILE__, __LINE__, msg))
#else
#define TESSERA_ASSERT(cond, msg) ((void)0)
#endif

#include "tessera/core/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace tessera {

TaskError::TaskError(std::string key, std::string op, std::exception_ptr original,
                     const std::string& message)
    : Error(message), key_(std::move(key)), op_(std::move(op)), original_(std::move(original)) {}

namespace detail {
void assert_fail(const char* expr, const char* file, int line, const char* message) {
  std::fprintf(stderr, "tessera: assertion failed: %s (%s) at %s:%d\n", expr, message, file, line);
  std::abort();
}
}  // namespace detail

}  // namespace tessera

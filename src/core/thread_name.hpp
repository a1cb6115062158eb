// File: src/core/thread_name.hpp (internal)
//
// Names the calling thread, so that `top -H`, `perf`, gdb and /proc/PID/task/*/comm tell
// tessera's threads apart ("tsr-scheduler", "tsr-worker", "tsr-client-io", ...).
#pragma once

#include <pthread.h>

namespace tessera::detail {

// `name` is cut to the kernel's 15 characters. Best effort: a failure changes nothing.
inline void name_this_thread(const char* name) noexcept {
#if defined(__linux__)
  char buf[16];
  size_t i = 0;
  for (; name[i] != '\0' && i < sizeof buf - 1; ++i) buf[i] = name[i];
  buf[i] = '\0';
  (void)pthread_setname_np(pthread_self(), buf);
#else
  (void)name;
#endif
}

}  // namespace tessera::detail

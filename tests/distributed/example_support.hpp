// What the cluster example programs (mpi_example.cpp, machines_example.cpp) share: the
// ops `add` and `where`, and CHECK, which makes main() fail with the condition's line.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <thread>

#include "tessera/core/op.hpp"

inline int64_t add(int64_t x, int64_t y) {
  return x + y;
}
TESSERA_REGISTER(add);
// The process that ran the task, after a pause (so that tasks spread over the workers).
inline int64_t where(int64_t) {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  return static_cast<int64_t>(::getpid());
}
TESSERA_REGISTER(where);

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                       \
    }                                                                 \
  } while (0)

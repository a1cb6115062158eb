// File: tessera/tessera.hpp
//
// Everything a tessera program starts with: the core, the local schedulers, diagnostics,
// delayed, and clients of the distributed runtime.
//
//   #include <tessera/tessera.hpp>
//   int64_t inc(int64_t x) { return x + 1; }
//   TESSERA_REGISTER(inc);
//   int main(int argc, char** argv) {
//     tessera::init(argc, argv);
//     auto a = tessera::delayed(inc)(1);
//     { tessera::ProgressBar progress; return a.compute() == 2 ? 0 : 1; }
//   }
#pragma once

#include "tessera/core.hpp"
#include "tessera/delayed.hpp"
#include "tessera/diagnostics.hpp"
#include "tessera/distributed.hpp"
#include "tessera/local.hpp"

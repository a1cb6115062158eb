// File: tessera/array.hpp
//
// Everything an array user needs: chunked N-d arrays with NumPy's names (tessera's
// dask.array), their in-memory results, and the compute machinery.
//
//   #include <tessera/array.hpp>
//   namespace ta = tessera::array;
//   auto x = ta::random::uniform({10000, 10000}, {1000, 1000}, /*seed=*/0);
//   double m = x.mean().compute().item<double>();
#pragma once

#include "tessera/array/array.hpp"
#include "tessera/array/dtype.hpp"
#include "tessera/array/ndarray.hpp"
#include "tessera/core/init.hpp"
#include "tessera/diagnostics/progress.hpp"

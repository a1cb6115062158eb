// File: tessera/diagnostics.hpp — everything for watching computations: callbacks, the
// progress bar, the profiler and task stream, and graph pictures.
#pragma once

#include "tessera/core/callbacks.hpp"
#include "tessera/diagnostics/profiler.hpp"
#include "tessera/diagnostics/progress.hpp"
#include "tessera/diagnostics/visualize.hpp"

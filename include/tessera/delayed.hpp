// File: tessera/delayed.hpp — lazy function calls (dask.delayed). See delayed/delayed.hpp.
#pragma once

#include "tessera/delayed/delayed.hpp"

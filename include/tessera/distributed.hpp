// File: tessera/distributed.hpp — clients, futures and local clusters (dask.distributed).
// See distributed/client.hpp and distributed/local_cluster.hpp.
#pragma once

#include "tessera/distributed/client.hpp"
#include "tessera/distributed/local_cluster.hpp"
#include "tessera/distributed/security.hpp"

// File: tessera/core.hpp — the task-graph core: keys, values, tasks, the op registry,
// graphs and their optimizations, high-level layers, serialization, schedulers' interface.
#pragma once

#include "tessera/core/callbacks.hpp"
#include "tessera/core/collection.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/graph.hpp"
#include "tessera/core/init.hpp"
#include "tessera/core/key.hpp"
#include "tessera/core/layer.hpp"
#include "tessera/core/op.hpp"
#include "tessera/core/optimize.hpp"
#include "tessera/core/order.hpp"
#include "tessera/core/scheduler.hpp"
#include "tessera/core/serialize.hpp"
#include "tessera/core/task.hpp"
#include "tessera/core/tokenize.hpp"
#include "tessera/core/value.hpp"

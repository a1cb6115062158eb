// Memory for array blocks: 64-byte aligned, and for large blocks recycled through a small
// process-wide cache, so that a stream of equally sized blocks (an out-of-core reduction)
// reuses memory the kernel has already mapped instead of faulting in fresh pages each time.
#pragma once

#include <cstddef>
#include <memory>

namespace tessera::array {

// At least `bytes` of 64-byte aligned memory, freed (or cached) when the last owner goes.
std::shared_ptr<void> allocate_buffer(size_t bytes);

// Bytes currently held by the cache (for tests and diagnostics).
size_t cached_buffer_bytes();

}  // namespace tessera::array

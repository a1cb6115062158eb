// Zeroed memory for large random-access tables (hash indexes, scheduler state). Above a
// few megabytes it is 2 MiB aligned and marked for transparent huge pages, which removes
// most TLB misses from random lookups (measured: the first load of a hash slot was ~96% of
// Graph::index_of on a 2,000,000-key graph with 4 KiB pages).
#pragma once

#include <cstddef>

namespace tessera::detail {

// `bytes` zeroed bytes; release with free_zeroed.
void* allocate_zeroed(size_t bytes);
void free_zeroed(void* p) noexcept;

}  // namespace tessera::detail

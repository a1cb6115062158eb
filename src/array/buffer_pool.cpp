// The block memory cache (see buffer_pool_internal.hpp).
#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "array/buffer_pool_internal.hpp"

namespace tessera::array {

namespace {

constexpr size_t kLarge = size_t{1} << 20;  // blocks from 1 MiB are cached
constexpr size_t kHuge = size_t{2} << 20;   // and aligned to huge pages

struct Cache {
  std::mutex mutex;
  struct Entry {
    void* ptr;
    size_t size;
  };
  std::vector<Entry> free;
  size_t held = 0;
  // At most this much idle memory is kept: a few blocks per thread is what a streaming
  // computation recycles.
  size_t limit() const {
    static const size_t kLimit = [] {
      if (const char* s = std::getenv("TESSERA_ARRAY_BUFFER_CACHE"))
        return static_cast<size_t>(std::strtoull(s, nullptr, 10));
      return size_t{1} << 30;
    }();
    return kLimit;
  }
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: buffers may be released during exit
  return *c;
}

void release(void* p, size_t size) {
  Cache& c = cache();
  {
    std::lock_guard lock(c.mutex);
    if (c.held + size <= c.limit()) {
      c.free.push_back({p, size});
      c.held += size;
      return;
    }
  }
  std::free(p);
}

}  // namespace

std::shared_ptr<void> allocate_buffer(size_t bytes) {
  if (bytes < kLarge) {
    const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  }
  const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
  Cache& c = cache();
  {
    std::lock_guard lock(c.mutex);
    // The smallest cached block that fits without wasting more than half of it.
    size_t best = c.free.size();
    for (size_t i = 0; i < c.free.size(); ++i) {
      if (c.free[i].size >= size && c.free[i].size / 2 <= size &&
          (best == c.free.size() || c.free[i].size < c.free[best].size)) {
        best = i;
      }
    }
    if (best != c.free.size()) {
      const auto e = c.free[best];
      c.free[best] = c.free.back();
      c.free.pop_back();
      c.held -= e.size;
      return std::shared_ptr<void>(e.ptr, [size = e.size](void* q) { release(q, size); });
    }
  }
  void* p = std::aligned_alloc(kHuge, size);
  if (!p) throw std::bad_alloc();
  // Transparent huge pages where the system allows them ("madvise" mode): 512x fewer faults.
  ::madvise(p, size, MADV_HUGEPAGE);
  return std::shared_ptr<void>(p, [size](void* q) { release(q, size); });
}

size_t cached_buffer_bytes() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.held;
}

}  // namespace tessera::array

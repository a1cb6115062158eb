#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/huge_buffer_internal.hpp"

namespace tessera::detail {

void* allocate_zeroed(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes >= 2 * kHuge) {
    void* p = nullptr;
    if (posix_memalign(&p, kHuge, (bytes + kHuge - 1) / kHuge * kHuge) != 0) throw std::bad_alloc();
    madvise(p, bytes, MADV_HUGEPAGE);
    std::memset(p, 0, bytes);
    return p;
  }
  void* p = std::calloc(bytes ? bytes : 1, 1);
  if (!p) throw std::bad_alloc();
  return p;
}

void free_zeroed(void* p) noexcept {
  std::free(p);
}

}  // namespace tessera::detail

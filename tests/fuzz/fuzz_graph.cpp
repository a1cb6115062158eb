// libFuzzer target: core's decoders of bytes from other processes (a serialized graph and a
// serialized value, DESIGN.md decision 7). Either they decode or they throw tessera::Error.
#include <cstddef>
#include <cstdint>
#include <span>

#include "tessera/core.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  const tessera::DecodeLimits limits{.max_header_bytes = 1 << 16, .max_frames = 64, .max_depth = 16};
  try {
    const tessera::Message m = tessera::from_bytes(bytes, limits);
    if (size % 2 == 0) {
      (void)tessera::decode_graph(m, limits);
    } else {
      (void)tessera::decode_value(m, limits);
    }
  } catch (const tessera::Error&) {
  }
  return 0;
}
